r"""The CSC image prior as a :class:`~mri_csc.prior.base.Prior`: codes of the high-pass part, phase demodulation.

With :math:`u = e^{-i\varphi}x` the phase-demodulated image, seen as its two real channels
(:math:`\operatorname{Re}u`, :math:`\operatorname{Im}u`), the prior is

.. math::
    R(x) = \mu \min_{z}\ \tfrac12\big\|H u - Dz\big\|^2 + \lambda\|z\|_1 ,
    \qquad H = I - L,\quad L = (I + \lambda_{lp}\nabla^T\nabla)^{-1},

the convolutional sparse coding of the high-pass part of :math:`u`. :math:`L u` is the low-pass
part :math:`l`, the exact minimiser of :math:`\tfrac12\|l - u\|^2 + \tfrac{\lambda_{lp}}{2}\|\nabla l\|^2`
(:class:`~mri_csc.prior.lowpass.NeumannTikhonov`: forward differences inside the image, Neumann
boundary, diagonal in the DCT-II), which the prior leaves free (it is fixed by the data); :math:`D`
is the dictionary's synthesis (real filters) and :math:`z` real codes of the real channel only, or
of both with ``imag_codes`` (the imaginary channel's high-pass part is then pulled to zero).
This is SPORCO's way of coding an image (code its Tikhonov high-pass part) made a function of
:math:`x`.

Why not a free low-pass part: the joint prior
:math:`\mu\min_{l,z}\tfrac12\|u - l - Dz\|^2 + \lambda\|z\|_1 + \tfrac{\lambda_{lp}}{2}\|\nabla l\|^2`
(whose exact l-step filters :math:`u - Dz`) equals :math:`\mu\min_z \tfrac12\|H^{1/2}(u - Dz)\|^2 + \lambda\|z\|_1`:
it leaves the low frequencies of :math:`Dz` unpenalised, and on brain slices it lost 0.6 dB at the
defaults (1 dB converged) against this prior.

Steps
-----
:meth:`CSCPrior.code` is the z block step: ``coder_iter`` warm-started ADMM steps of
:class:`~mri_csc.prior.sparse_coding.ConvSparseCoder` on :math:`Hu` with ℓ1 weight λ (the
coupling weight μ factors out), taken through :meth:`ConvSparseCoder.step`, which returns the
coder's codes with their synthesis :math:`Dz`. The prior keeps its own codes :math:`z` (its
attributes ``codes``, ``dz``, ``code_l1``), apart from the coder's ADMM iterate: with
``monotone`` (default) a step's codes replace them only when they do not raise
:math:`c(z) = \tfrac12\|Hu - Dz\|^2 + \lambda\|z\|_1` at this :math:`Hu`, so the block step is a
descent step (the coder's iterate goes on either way, as monotone FISTA keeps its momentum
sequence); a step whose codes are not kept is followed by up to ``max_retries`` (2) more coder
steps on the same :math:`Hu`, where ADMM converges, before the old codes are kept. The coder's
ADMM step alone is not a descent step: it raised the CSC solver's objective by up to 5 % on
BART phantoms (``benchmarks/monotonicity.py``).
:meth:`CSCPrior.prox` alternates once between that z-step (on the previous prox output) and the
exact w-step :math:`w = (I + \mu t H^2)^{-1}(u_v + \mu t\,H Dz)` (diagonal in the DCT-II), so it
is inexact and warm-started.
"""

from __future__ import annotations

import math

from ..backend import get_xp, to_numpy
from .base import Prior, check_step
from .conv import _irfftn, _rfftn
from .dictionary_update import ConvDictionaryUpdate
from .lowpass import NeumannTikhonov
from .sparse_coding import ConvSparseCoder

__all__ = ["CSCPrior"]


class CSCPrior(Prior):
    """See the module docstring.

    Parameters
    ----------
    coder : ConvSparseCoder
        Over the image shape, with ℓ1 weight ``lam``; its state is the warm start.
    mu, lam_lp : float
        μ (> 0) and :math:`\\lambda_{lp}` (>= 0).
    phasor : array or None
        :math:`e^{i\\varphi}`; ``None`` is no demodulation.
    imag_codes : bool
        Code :math:`\\operatorname{Im}u` too (two coder channels), not only the real part.
    coder_iter : int
        Coder ADMM steps per block step.
    monotone : bool
        Keep the coder's new codes only when they lower the CSC part at the current image (see
        the module docstring; default on).
    adapt_every : int
        Blind CSC: every this many block steps, one dictionary-update step (:meth:`adapt`); 0 (default) off.
    max_retries : int
        With ``monotone``, further ``coder_iter`` coder steps on the same signal when a step's
        codes are not kept, at most this many (default 2), before the block step keeps the old codes.

    Attributes
    ----------
    codes : array or None
        The prior's codes :math:`z` (a copy, owned by the prior; ``None`` before the first step).
    dz : array or None
        Channels ``(2, *shape)`` of :math:`Dz` for ``codes`` (the uncoded imaginary channel is 0).
    code_l1 : float
        :math:`\\|z\\|_1` of ``codes``.
    n_rejected : int
        Block steps that kept the old codes (``monotone``).
    n_retries : int
        Coder steps repeated because their codes were not kept.
    """

    name = "csc"
    exact = False

    def __init__(self, coder: ConvSparseCoder, *, mu: float, lam_lp: float, phasor=None,
                 imag_codes: bool = True, coder_iter: int = 1, monotone: bool = True, max_retries: int = 2,
                 adapt_every: int = 0):
        for name, val, zero_ok in (("mu", mu, False), ("lam_lp", lam_lp, True)):
            if not (isinstance(val, (int, float)) and math.isfinite(val) and (val > 0 or (zero_ok and val == 0))):
                raise ValueError(f"{name} must be a finite number {'>=' if zero_ok else '>'} 0; got {val!r}")
        if isinstance(coder_iter, bool) or not isinstance(coder_iter, int) or coder_iter < 1:
            raise ValueError(f"coder_iter must be an integer >= 1; got {coder_iter!r}")
        for name, val in (("max_retries", max_retries), ("adapt_every", adapt_every)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {val!r}")
        self.coder = coder
        self.mu, self.lam_lp = float(mu), float(lam_lp)
        self.phasor = phasor
        self.n_coded = 2 if imag_codes else 1
        self.coder_iter = int(coder_iter)
        self.filter = NeumannTikhonov(coder.image_shape, lam_lp, coder.xp, coder.rdt)
        self.monotone = bool(monotone)
        self.dz = None  # D z, channels (2, *shape); the imaginary channel stays 0 without imag_codes
        self.codes = None
        self.code_l1 = 0.0
        self.n_rejected = 0
        self.n_retries = 0
        self.retries = int(max_retries)
        self.adapt_every = int(adapt_every)
        self.n_adapted = 0
        self._n_code = 0
        self._kept_token = None  # the coder's codes_token when its codes were last kept as the prior's
        self._update = None  # the ConvDictionaryUpdate of blind CSC, built on the first adapt()
        self._w = None  # the last prox output's channels (the next prox's z-step codes H of it)

    @property
    def lam(self) -> float:
        return self.coder.lam

    # -- demodulation ---------------------------------------------------------------------
    def demod(self, x):
        return x if self.phasor is None else x * self.phasor.conj()

    def mod(self, u):
        return u if self.phasor is None else u * self.phasor

    @staticmethod
    def channels(u):
        return get_xp(u).stack([u.real, u.imag])

    @staticmethod
    def complex(ch, dtype):
        return (ch[0] + 1j * ch[1]).astype(dtype, copy=False)

    # -- block steps ----------------------------------------------------------------------------
    def code(self, hu):
        """The z block step on the high-pass channels ``hu = H (Re u, Im u)``; returns the channels of Dz.

        With ``monotone``, the coder's new codes are kept only when
        :math:`\tfrac12\\|hu - Dz\\|^2 + \\lambda\\|z\\|_1` (coded channels) is not larger than at the
        kept codes; otherwise the coder steps again on ``hu`` (up to ``max_retries`` times) and, if
        no step qualifies, the kept codes, ``dz`` and ``code_l1`` stay."""
        xp = get_xp(hu)
        n = self.n_coded
        if self.dz is None or self.dz.shape != hu.shape:
            self.dz = xp.zeros_like(hu)
            self.codes = None
        self._n_code += 1
        old = None  # c(z) at the kept codes and this hu: the same for every retry, so computed once
        for _ in range(1 + self.retries):
            res = self.coder.step(hu[:n], max_iter=self.coder_iter)
            if not (self.monotone and self.codes is not None and self.codes.shape == res.codes.shape):
                break
            if old is None:
                old = 0.5 * self._misfit2(hu[:n], self.dz[:n]) + self.lam * self.code_l1
            if 0.5 * self._misfit2(hu[:n], res.synthesis) + self.lam * res.l1 <= old:
                break
            self.n_retries += 1
        else:
            self.n_rejected += 1
            self._maybe_adapt(hu)
            return self.dz
        if self.codes is None or self.codes.shape != res.codes.shape:
            self.codes = res.codes.copy()
        else:
            xp.copyto(self.codes, res.codes)
        self.dz[:n] = res.synthesis
        self.code_l1 = res.l1
        self._kept_token = self.coder.codes_token
        self._maybe_adapt(hu)
        return self.dz

    @staticmethod
    def _misfit2(h, s) -> float:
        r""":math:`\|h - s\|^2` as a float (one temporary, one host transfer)."""
        r = (h - s).ravel()
        return float(to_numpy(get_xp(h).vdot(r, r).real))

    def _maybe_adapt(self, hu):
        if self.adapt_every and self._n_code % self.adapt_every == 0:
            self.adapt(hu)

    def adapt(self, hu) -> bool:
        r"""Blind CSC: one masked dictionary-update step for the prior's codes and ``hu``.

        One iteration of :class:`~mri_csc.prior.dictionary_update.ConvDictionaryUpdate` (the
        coder's boundary, warm-started across calls; channels are its signals) on
        :math:`\min_D 	frac12\|hu - C D z\|^2` over unit-ball filters. The new dictionary is
        kept (the coder's filters replaced, ``dz`` recomputed) only when it lowers
        :math:`\|hu - Dz\|^2` at the prior's codes, so the objective never rises and a step that
        does not help leaves the dictionary as it was. Returns whether it was kept.
        """
        if self.codes is None:
            return False
        geom = self.coder.geom
        n = self.n_coded
        if self._update is None:
            self._update = ConvDictionaryUpdate(geom.filters, geom.image_shape, n, boundary=geom.boundary,
                                                dtype=self.coder.rdt)
        upd = self._update
        # the coder's cached spectrum when its codes are still the kept ones (nothing stepped it since)
        zf = self.coder.code_spectrum() if self._kept_token == self.coder.codes_token else _rfftn(self.codes, geom.axes)
        d = upd.step(zf, hu[:n])
        dz_new = geom.crop_image(_irfftn((upd.spectrum[None] * zf).sum(axis=1), geom.code_shape, geom.axes))
        if self._misfit2(hu[:n], dz_new) >= self._misfit2(hu[:n], self.dz[:n]):
            return False
        self.coder.set_filters(d, spectrum=upd.spectrum)
        self.dz[:n] = dz_new
        self.n_adapted += 1
        return True

    @property
    def filters(self):
        """The dictionary in use (the shipped or given one, or the adapted one in blind CSC)."""
        return self.coder.geom.filters

    def misfit(self, x):
        """The channels of :math:`Hu - Dz` at the current codes."""
        hu = self.filter.high(self.channels(self.demod(x)))
        return hu if self.dz is None else hu - self.dz

    # -- the Prior interface --------------------------------------------------------------------
    def prox(self, v, step):
        t = check_step(step)
        uch = self.channels(self.demod(v))
        w_prev = uch if self._w is None or self._w.shape != uch.shape else self._w
        dz = self.code(self.filter.high(w_prev))
        mt = self.mu * t
        w = self.filter.apply_gain(uch + mt * self.filter.high(dz), 1.0 / (1.0 + mt * self.filter.high_gain ** 2))
        self._w = w
        return self.mod(self.complex(w, v.dtype))

    def value(self, x) -> float:
        """μ(½‖Hu − Dz‖² + λ‖z‖₁) at the prior's codes: an upper bound of R(x) (R minimises over z),
        equal to it once the codes have converged."""
        xp = get_xp(x)
        d = self.misfit(x)
        return self.mu * (0.5 * float(xp.vdot(d.ravel(), d.ravel()).real) + self.lam * self.code_l1)

    def stats(self) -> dict:
        return {"code_l1": self.code_l1, "coder_rho": self.coder.rho, "rejected": self.n_rejected,
                "adapted": self.n_adapted}
