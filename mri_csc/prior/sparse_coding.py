r"""Stateful, warm-startable convolutional sparse coding (ConvBPDN) by ADMM.

Solves

.. math::
    \min_z \tfrac12 \| C \textstyle\sum_k d_k * z_k - s \|_2^2 + \lambda \|z\|_1

where ``C`` is the crop of the ``"pad"`` boundary (identity for ``"circular"``;
see :mod:`mri_csc.prior.conv`).

``"circular"`` is SPORCO's ``cbpdn.ConvBPDN``: split :math:`z = y`, the
z-step :math:`(D^H D + \rho I) z = D^H s + \rho (y - u)` is solved exactly at
each frequency with Sherman–Morrison (``D^H D`` has rank one there):

.. math::
    \hat z = \hat v + \bar{\hat d}\,\frac{\hat s - \hat d^T \hat v}{\rho + \|\hat d\|^2},
    \qquad v = y - u .

``"pad"`` is SPORCO's ``cbpdn.ConvBPDNMaskDcpl`` (mask decoupling): with
``W`` the indicator of the image window inside the padded grid, split
``y0 = D z - s_pad`` and ``y1 = z``; the z-step
:math:`(D^H D + I) z = D^H(y_0 + s - u_0) + (y_1 - u_1)` is again one
Sherman–Morrison solve per frequency, with a fixed denominator
:math:`1 + \|\hat d\|^2`; ``y0 = \rho r / (W + \rho)`` and ``y1`` is a soft
threshold.

Both use over-relaxation (default 1.8) and residual-balancing ρ
(:class:`~mri_csc.prior.penalty.ResidualBalance`), by default with SPORCO's ConvBPDN rules
(normalised residuals, period 1, adaptive scaling, target ratio
:math:`\xi = 1 + 18.3^{\log_{10}\lambda + 1}`). Real signals use real FFTs and
real codes; complex signals use complex FFTs and complex codes (filters stay
real). Leading axes of ``s`` beyond the image's are a batch (e.g. channels)
sharing the dictionary.

All arrays (filter spectra, Sherman–Morrison denominators, iterates, duals) are
built once and reused: repeated ``solve(s, max_iter=3)`` calls with a slowly
changing ``s`` only transform ``s`` and iterate. Each iteration costs one forward
and one inverse filter-bank FFT, and the synthesis ``D z`` of the current codes
(:meth:`ConvSparseCoder.synthesize`) none: it is kept in the Fourier domain by
linearity (see ``ConvSparseCoder._look_ahead``). On the CPU, real codes go
through each step one cache-sized block of code maps at a time, on
:func:`~mri_csc.backend.fft_workers` threads (:func:`mri_csc.prior.cpu_engine.sweep`), so
the code arrays cross memory about once per step instead of a dozen times.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..backend import get_xp, to_numpy
from . import cpu_engine
from .conv import BOUNDARIES, _ConvGeometry, _fftn, _ifftn, _irfftn, _rfftn
from .penalty import ResidualBalance

__all__ = ["CodeStep", "ConvSparseCoder", "check_lam"]

log = logging.getLogger(__name__)


#: the coder's rho stays within this factor of its initial value (the divergence guard allows 1e8)
RHO_RANGE = 1e6

def check_lam(lam, name: str = "lam") -> float:
    try:
        val = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number >= 0; got {lam!r}") from None
    if not math.isfinite(val) or val < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {lam!r}")
    return val


def _shrink_split(t_arr, thr, u_out, xp):
    """In place: ``u_out <- t - soft(t, thr)`` and ``t <- soft(t, thr)``."""
    if xp.iscomplexobj(t_arr):
        a = xp.abs(t_arr)
        xp.maximum(a, np.finfo(a.dtype).tiny, out=a)
        # fraction kept in the dual part: min(thr/|t|, 1)
        np_ = xp.minimum(thr / a, 1, out=a)
        xp.multiply(t_arr, np_, out=u_out)
    else:
        xp.clip(t_arr, -thr, thr, out=u_out)
    t_arr -= u_out


class CodeStep(NamedTuple):
    """What :meth:`ConvSparseCoder.step` returns: the codes after the step and what depends on them."""

    #: the coder's current code array ``(..., K, *code_shape)`` (internal: the next solve or step
    #: overwrites it; copy it to keep it)
    codes: object
    #: ``C D z`` of those codes, ``(..., *image_shape)``, a new array
    synthesis: object
    #: :math:`\|z\|_1` (summed over the batch), a float
    l1: float
    #: iterations run by this step
    n_iter: int


class _State:
    """Iterates and buffers for one (batch shape, real/complex, dtype) problem."""

    def __init__(self, xp, batch, geom, cdt, rdt, real):
        self.batch = batch
        self.real = real
        self.cdt = cdt  # dtype of codes (real or complex)
        cshape = batch + (geom.n_filters,) + geom.code_shape
        self.X = None  # the z-step's solution, kept by the full-array path only
        self.Y = xp.zeros(cshape, dtype=cdt)
        self.U = xp.zeros(cshape, dtype=cdt)
        self.Yold = xp.zeros(cshape, dtype=cdt)
        self.tmp = xp.zeros(cshape, dtype=cdt)
        if geom.boundary == "pad":
            gshape = batch + geom.code_shape
            self.spad = xp.zeros(gshape, dtype=cdt)
            self.Y0 = xp.zeros(gshape, dtype=cdt)
            self.U0 = xp.zeros(gshape, dtype=cdt)
            self.Y0old = xp.zeros(gshape, dtype=cdt)
        self._buf = None
        # Fourier-domain quantities on the code grid: vf = F(Y - U) and dv = sum_k d_k^ vf_k for
        # the next z-step (``vf is None``: not computed yet), the syntheses DY = F(D Y) and
        # DU = F(D U) (per channel, no filter axis), and the pending DT = F(D T) of the last
        # relaxation with the scale applied to U since (see ConvSparseCoder._look_ahead)
        self.vf = None
        self.dv = None
        self.DY = None
        self.DU = None
        self.DT = None
        self.YF = None  # F(Y), computed on request (ConvSparseCoder.code_spectrum), dropped when Y changes
        self.u_scale = 1.0
        self.n_iter = 0

    def spectrum_scratch(self, like):
        """A scratch array shaped like the code spectra (the array path's products; the
        sweep never needs one, so it is allocated on first use)."""
        if self._buf is None:
            self._buf = get_xp(like).empty_like(like)
        return self._buf


class ConvSparseCoder:
    r"""Warm-startable ADMM solver for :math:`\min_z \frac12\|Dz - s\|^2 + \lambda\|z\|_1`.

    Parameters
    ----------
    filters : array ``(K, fy, fx)`` or ``(K, fz, fy, fx)``
        Real dictionary (NumPy or CuPy; the solver runs on that device).
    image_shape : sequence of int
        Shape of one signal ``s`` (without batch axes).
    lam : float >= 0
        ℓ1 weight λ.
    rho : float > 0, optional
        Initial ADMM penalty; default ``50 λ + 1`` (SPORCO's).
    relax : float in (0, 2)
        Over-relaxation α (default 1.8).
    dtype : real float dtype
        Working precision (float32 default; complex signals use the matching complex dtype).
    boundary : {"pad", "circular"}
        See :mod:`mri_csc.prior.conv` (default ``"pad"``: no wrap-around).
    auto_rho : bool
        Residual balancing of ρ (default on).
    rho_period : int
        Iterations between ρ updates (SPORCO ConvBPDN uses 1).
    rho_rule : ResidualBalance, optional
        The residual-balancing rule (:mod:`mri_csc.prior.penalty`); default
        ``ResidualBalance.convbpdn(lam, rho_period)``. Give this or ``rho_period``, not both.

    Attributes
    ----------
    rho : float
        Current penalty (kept between calls).
    n_iter : int
        Iterations run since the state was (re)initialised.
    last_iters : int
        Iterations run by the last :meth:`solve`.
    residuals : tuple
        ``(primal, dual)`` normalised residuals of the last iteration that computed them
        (every iteration when ``tol > 0``, otherwise every ``rho_period``-th for ρ balancing).
    """

    def __init__(
        self,
        filters,
        image_shape: Sequence[int],
        lam: float,
        *,
        rho: float | None = None,
        relax: float = 1.8,
        dtype=np.float32,
        boundary: str = "pad",
        auto_rho: bool = True,
        rho_period: int | None = None,
        rho_rule: ResidualBalance | None = None,
    ):
        self.lam = check_lam(lam)
        if rho is not None:
            r = float(rho)
            if not math.isfinite(r) or r <= 0:
                raise ValueError(f"rho must be a finite number > 0; got {rho!r}")
        relax = float(relax)
        if not (0 < relax < 2):
            raise ValueError(f"relax must lie in (0, 2); got {relax}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}; got {boundary!r}")
        rdt = np.dtype(dtype)
        if rdt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {rdt}")
        if rho_rule is not None and rho_period is not None:
            raise ValueError("give rho_period or rho_rule, not both")
        if rho_rule is None:
            period = 1 if rho_period is None else rho_period
            if isinstance(period, bool) or int(period) != period or int(period) < 1:
                raise ValueError(f"rho_period must be an integer >= 1; got {rho_period!r}")
            rho_rule = ResidualBalance.convbpdn(self.lam, int(period))
        elif not isinstance(rho_rule, ResidualBalance):
            raise TypeError(f"rho_rule must be a ResidualBalance; got {type(rho_rule).__name__}")
        self.geom = _ConvGeometry(filters, image_shape, boundary)
        self.xp = self.geom.xp
        self.rdt = rdt
        self.relax = relax
        self.rho0 = float(rho) if rho is not None else 50.0 * self.lam + 1.0
        self.rho = self.rho0
        self.auto_rho = bool(auto_rho)
        self.rho_rule = rho_rule
        self._state: _State | None = None
        self._denom: dict = {}
        self.last_iters = 0
        self.residuals = (np.inf, np.inf)
        self._l1 = None  # ||Y||_1 when the last iteration's sweep gave it, else None
        self._codes_version = 0  # bumped by every change of the codes (codes_token)

    # ------------------------------------------------------------------ properties
    @property
    def image_shape(self):
        return self.geom.image_shape

    @property
    def code_shape(self):
        return self.geom.code_shape

    @property
    def boundary(self):
        return self.geom.boundary

    @property
    def n_iter(self) -> int:
        return 0 if self._state is None else self._state.n_iter

    @property
    def codes(self):
        """The current sparse codes (internal array; copy before modifying)."""
        return None if self._state is None else self._state.Y

    @property
    def codes_token(self):
        """A value that changes whenever :attr:`codes` may have changed (a step, a reset, re-seeded
        filters): callers caching something of the codes compare it (``None`` before any solve)."""
        return None if self._state is None else self._codes_version

    def reset(self):
        """Drop the iterates; the next :meth:`solve` starts from zero with the initial ρ."""
        self._state = None
        self._l1 = None
        self._codes_version += 1
        self.rho = self.rho0

    def set_filters(self, filters, reset=None, spectrum=None):
        """Replace the dictionary (same number and size of filters, same device), keeping the codes.

        Every filter-dependent cache is dropped: the filter spectra, the Sherman–Morrison
        denominators, and the Fourier-domain syntheses ``D Y``, ``D U`` and the pending ``D T``
        of the iteration state, which are recomputed from the codes with the new filters (so
        :meth:`synthesize` and the next :meth:`solve` see the new dictionary). The iterates,
        duals and ρ carry over: the next :meth:`solve` warm-starts from them. ``reset``: indices
        of filters whose codes and duals restart from zero (re-seeded filters). ``spectrum``: the
        new filters' real-FFT spectra on the code grid when the caller has them (the dictionary
        update's :attr:`~mri_csc.prior.dictionary_update.ConvDictionaryUpdate.spectrum`), saving
        their transform.

        Cost: the spectrum of the codes (none when :meth:`code_spectrum` has just given it) and
        products with it; ``F(Y - U)``, which the next step starts from, is filter-independent
        and kept.
        """
        geom = _ConvGeometry(filters, self.image_shape, self.boundary)
        if (geom.n_filters, geom.filter_shape) != (self.geom.n_filters, self.geom.filter_shape):
            raise ValueError(f"filters must keep the shape {(self.geom.n_filters, *self.geom.filter_shape)}; "
                             f"got {tuple(filters.shape)}")
        if geom.xp is not self.xp:
            raise TypeError("filters must stay on the coder's device (NumPy and CuPy mixed)")
        if spectrum is not None:
            geom.seed_spectrum(spectrum, self.rdt, half=True)
        self.geom = geom
        self._denom = {}
        st = self._state
        if st is None or st.n_iter == 0:
            return
        kax = -self.geom.ndim - 1
        if reset is not None:
            self._codes_version += 1
            idx = (Ellipsis, reset) + (slice(None),) * self.geom.ndim
            st.Y[idx] = 0
            st.U[idx] = 0
            for arr in (st.YF, st.vf):
                if arr is not None:
                    arr[idx] = 0
            self._l1 = None
        if st.vf is None:  # F(Y - U) stale (a rho change): transform it now, as the next step would
            st.DT = None
            self._look_ahead(st, st.real)
        df = self._spectra(st.real)[0]
        yf = self.code_spectrum()
        st.DY = (df * yf).sum(axis=kax)
        self._filter_sum(df, st.vf, st.dv)  # D(Y - U), the next z-step's input
        st.DU = st.DY - st.dv
        st.DT, st.u_scale = None, 1.0

    def code_spectrum(self):
        """The DFT of the current codes on the code grid, ``(..., K, *freq_shape)`` (real FFT for
        real codes), cached until the codes change (internal array: do not modify)."""
        st = self._state
        if st is None:
            raise ValueError("code_spectrum() needs a previous solve()")
        if st.YF is None:
            st.YF = self._fwd(st.Y, st.real)
        return st.YF

    def _filter_sum(self, df, vf, out):
        """``out = sum_k df_k vf_k`` (the fused kernel when it applies)."""
        if kern := cpu_engine.fused(df, vf, out):
            kern.filter_sum(df, vf, out)
        else:
            self.xp.sum(df * vf, axis=-self.geom.ndim - 1, out=out)

    def _spectra(self, real):
        df = self.geom.spectrum(self.rdt, half=real)
        key = ("e", real)
        if key not in self._denom:
            self._denom[key] = (df.real**2 + df.imag**2).sum(axis=0)  # ||d(w)||^2, (*freq)
            self._denom[("conj", real)] = df.conj()
        return df, self._denom[("conj", real)], self._denom[key]

    def _inv(self, real, rho):
        """1 / (rho + ||d||^2), recomputed only when rho changes."""
        key = ("inv", real)
        cached = self._denom.get(key)
        if cached is None or cached[0] != rho:
            e = self._spectra(real)[2]
            self._denom[key] = (rho, (1.0 / (rho + e)).astype(self.rdt))
        return self._denom[key][1]

    def _fwd(self, x, real):
        return _rfftn(x, self.geom.axes) if real else _fftn(x, self.geom.axes)

    def _inv_fft(self, xf, real):
        return _irfftn(xf, self.geom.code_shape, self.geom.axes) if real else _ifftn(xf, self.geom.axes)

    def _prepare(self, s, warm):
        xp = self.xp
        if get_xp(s) is not xp:
            raise TypeError(
                "s and the filters live on different devices (NumPy and CuPy mixed); "
                "move them explicitly with mri_csc.backend.to_device"
            )
        nd = self.geom.ndim
        if s.ndim < nd or tuple(s.shape[-nd:]) != self.image_shape:
            raise ValueError(
                f"s must have shape (..., {', '.join(map(str, self.image_shape))}) to match image_shape; "
                f"got {tuple(s.shape)}"
            )
        real = not xp.iscomplexobj(s)
        cdt = self.rdt if real else np.result_type(self.rdt, np.complex64)
        s = s.astype(cdt, copy=False)
        batch = tuple(s.shape[:-nd])
        st = self._state
        if not warm or st is None or st.batch != batch or st.real != real:
            if warm and st is not None:
                log.debug("ConvSparseCoder: problem shape/type changed; restarting from zero")
            st = self._state = _State(xp, batch, self.geom, cdt, self.rdt, real)
            self._codes_version += 1
            self._l1 = None
            self.rho = self.rho0
        return s, st

    # ------------------------------------------------------------------ public
    def solve(self, s, max_iter: int = 100, tol: float = 1e-3, warm: bool = True, copy: bool = True):
        """Run up to ``max_iter`` ADMM iterations on signal ``s``; return the sparse codes.

        Parameters
        ----------
        s : array ``(..., *image_shape)``, real or complex, on the filters' device
        max_iter : int
            Iteration cap for this call.
        tol : float
            Stop when both normalised residuals (SPORCO's ``RelStopTol``) fall below it;
            0 runs exactly ``max_iter`` iterations (residual norms are then skipped
            unless ρ balancing needs them).
        warm : bool
            Continue from the previous call's iterates and ρ (default). ``False`` restarts.
        copy : bool
            Return a copy (default) rather than the internal code array, which the
            next call overwrites.

        Returns
        -------
        z : array ``(..., K, *code_shape)``, exactly sparse (the ℓ1 split variable).
        """
        max_iter = int(max_iter)
        if max_iter < 0:
            raise ValueError(f"max_iter must be >= 0; got {max_iter}")
        tol = float(tol)
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"tol must be a finite number >= 0; got {tol}")
        s, st = self._prepare(s, warm)
        xp = self.xp
        real = st.real
        if not bool(xp.all(xp.isfinite(s))):
            raise ValueError("s contains NaN or Inf values; the sparse coder needs finite data")
        df, dfc, e = self._spectra(real)
        kax = -self.geom.ndim - 1
        a = self.relax
        rdt = self.rdt
        lam = self.lam
        pad = self.geom.boundary == "pad"
        if pad:
            self.geom.pad_image(s, out=st.spad)
            inside = (Ellipsis,) + self.geom.crop
            inv1 = self._denom.get(("inv1", real))
            if inv1 is None:
                inv1 = self._denom[("inv1", real)] = (1.0 / (1.0 + e)).astype(rdt)
        else:
            sf = self._fwd(s, real)
        # real NumPy codes with the kernels: the cache-blocked sweep (cpu_engine.sweep)
        sweep = real and cpu_engine.fused(st.Y, st.U) is not None
        it = 0
        if max_iter > 0:
            self._l1 = None
            st.YF = None
        for it in range(1, max_iter + 1):  # noqa: B007 (it counts the iterations run, read after the loop)
            rho = self.rho
            # ---- z-step (Sherman-Morrison per frequency) from vf = F(Y - U), dv = D^ vf
            if st.vf is None:
                self._look_ahead(st, real)
            vf, dv = st.vf, st.dv
            st.vf = None  # consumed: becomes F(X) below
            if pad:
                xp.add(st.Y0, st.spad, out=st.Y0old)  # reuse as scratch: y0 + s - u0
                st.Y0old -= st.U0
                tf = self._fwd(st.Y0old, real)
                tf -= dv
                tf *= inv1
            else:
                tf = sf - dv
                tf *= self._inv(real, rho)
            dxf = dv + e * tf  # F(D X): sum_k d_k^ (v_k^ + conj(d_k^) tf) = dv + ||d^||^2 tf
            st.DT = a * dxf + (1 - a) * st.DY + st.DU  # F(D T), T = a X + (1 - a) Y + U, by linearity
            st.u_scale = 1.0
            st.Yold, st.Y = st.Y, st.Yold
            if sweep:
                # X, the relaxation, the y-step and the next F(Y - U) in one cache-blocked sweep
                code_norms = cpu_engine.sweep(st.Y, st.Yold, st.U, vf, st.dv, df, tf, self.geom.code_shape,
                                              a, lam / rho)
                st.vf = vf
                self._resolve_synthesis(st)
                self._l1 = code_norms[5]
            else:
                code_norms = None
                if kern := cpu_engine.fused(vf, df, tf):
                    kern.add_filter_product(vf, df, tf)
                else:
                    buf = st.spectrum_scratch(vf)
                    xp.multiply(dfc, xp.expand_dims(tf, kax), out=buf)
                    vf += buf
                st.X = self._inv_fft(vf, real)
                del vf
                # relaxation and y-step:  T = a X + (1 - a) Y + U,
                # Y <- soft(T, lam/rho),  U <- T - Y (= the clipped part of T)
                T = st.Y
                xp.multiply(st.X, a, out=T)
                xp.multiply(st.Yold, 1 - a, out=st.tmp)
                T += st.tmp
                T += st.U
                _shrink_split(T, rdt.type(lam / rho), st.U, xp)
            if pad:
                dx = self._inv_fft(dxf, real)
                st.Y0old[...] = st.Y0
                # relaxed D x - s:  a (Dx - s) + (1 - a) y0_old
                r0 = a * (dx - st.spad) + (1 - a) * st.Y0old
                st.Y0[...] = r0 + st.U0
                st.Y0[inside] *= rdt.type(rho / (1.0 + rho))
                st.U0 += r0
                st.U0 -= st.Y0
            st.n_iter += 1
            self._codes_version += 1
            # residual norms only where stopping or ρ balancing reads them (7 passes over the codes
            # on the array path; the fused kernel gives them for free, but one host transfer remains)
            update_rho = self.auto_rho and self.rho_rule.due(st.n_iter)
            if tol > 0 or update_rho:
                r, sd = self._residuals(st, dx if pad else None, code_norms)
                self.residuals = (r, sd)
                if tol > 0 and r < tol and sd < tol:
                    break
                if update_rho:
                    self._update_rho(st, r, sd)
        self.last_iters = it if max_iter > 0 else 0
        return st.Y.copy() if copy else st.Y

    def _look_ahead(self, st, real):
        r"""Transform the next z-step's input and resolve the synthesis of the last iterate.

        Sets ``vf = F(Y - U)`` and ``dv = \sum_k \hat d_k \hat v_k``, the one filter-bank FFT
        an ADMM iteration needs besides the inverse one for ``X``. The synthesis ``D Y``
        then costs no FFT of its own: the last relaxation gave ``D T = D Y + D U`` by
        linearity (``T = aX + (1-a)Y_{old} + U_{old}``, all of whose syntheses are known),
        and ``dv = D Y - c\,D U`` with ``c`` the factor ρ balancing applied to ``U`` since, so

        .. math::
            D U = \frac{D T - dv}{1 + c}, \qquad D Y = D T - D U .

        Rounding errors in ``D Y`` and ``D U`` are damped, not accumulated: an error
        :math:`(\epsilon_Y, \epsilon_U)` of the previous pair enters both of the next as
        :math:`\tfrac{c}{1+c}\,((1-a)\epsilon_Y + \epsilon_U)`, a rank-one map whose only
        non-zero eigenvalue is :math:`\tfrac{c}{1+c}(2-a)`, which is ``(2-a)/2 < 1`` between
        ρ changes.
        """
        xp = self.xp
        df = self._spectra(real)[0]
        kax = -self.geom.ndim - 1
        if st.n_iter == 0:  # fresh state: Y = U = 0, nothing to transform
            fshape = st.tmp.shape[:-1] + (st.tmp.shape[-1] // 2 + 1 if real else st.tmp.shape[-1],)
            st.vf = xp.zeros(fshape, dtype=np.result_type(st.tmp.dtype, np.complex64))
        else:
            xp.subtract(st.Y, st.U, out=st.tmp)
            st.vf = self._fwd(st.tmp, real)
        if st.dv is None:  # allocated once per state
            fshape = st.vf.shape[:kax] + st.vf.shape[kax + 1 :]
            st.dv = xp.empty(fshape, dtype=st.vf.dtype)
            st.DY = xp.zeros(fshape, dtype=st.vf.dtype)
            st.DU = xp.zeros(fshape, dtype=st.vf.dtype)
        if kern := cpu_engine.fused(df, st.vf, st.dv):
            kern.filter_sum(df, st.vf, st.dv)
        else:
            buf = st.spectrum_scratch(st.vf)
            xp.multiply(df, st.vf, out=buf)
            buf.sum(axis=kax, out=st.dv)
        self._resolve_synthesis(st)

    def _resolve_synthesis(self, st):
        """Split the pending ``D T`` into ``D Y`` and ``D U`` once ``dv`` holds ``F(D(Y - cU))``."""
        if st.DT is not None:
            c = st.u_scale
            du = (st.DT - st.dv) * (1.0 / (1.0 + c))
            self.xp.subtract(st.DT, du, out=st.DY)
            self.xp.multiply(du, c, out=st.DU)
            st.DT = None
            st.u_scale = 1.0

    def _residuals(self, st, dx, code_norms=None):
        """Normalised (primal, dual) residuals; ``code_norms``: the five code-array norms if known."""
        xp = self.xp

        def sq(a):  # squared norm as a device scalar: no host sync here
            return xp.vdot(a.ravel(), a.ravel()).real

        parts = []
        if code_norms is None:
            xp.subtract(st.X, st.Y, out=st.tmp)
            parts += [sq(st.tmp), sq(st.X), sq(st.Y)]
            xp.subtract(st.Y, st.Yold, out=st.tmp)
            parts += [sq(st.tmp), sq(st.U)]
        if dx is not None:
            d0 = dx - st.spad
            parts += [sq(d0 - st.Y0), sq(d0), sq(st.Y0), sq(st.Y0 - st.Y0old), sq(st.U0)]
        # one device-to-host transfer for all the norms (one GPU sync per ADMM step, not 5-10)
        v = [float(t) for t in to_numpy(xp.stack(parts).astype(np.float64))] if parts else []
        if code_norms is not None:
            v = list(code_norms[:5]) + v
        r2, xn2, yn2, s2, un2 = v[:5]
        if dx is not None:
            r2 += v[5]
            xn2 += v[6]
            yn2 += v[7]
            s2 += v[8]
            un2 += v[9]
        rho = self.rho
        rn = max(math.sqrt(xn2), math.sqrt(yn2))
        sn = rho * math.sqrt(un2)
        r = math.sqrt(r2) / rn if rn > 0 else 0.0
        sd = rho * math.sqrt(s2) / sn if sn > 0 else (0.0 if s2 == 0 else np.inf)
        return r, sd

    def _update_rho(self, st, r, s):
        # within RHO_RANGE of the initial rho: with every code at zero (a lam above every coefficient) the dual
        # residual is 0 and the rule multiplies rho by its largest factor each time, without end
        rsf = self.rho_rule.factor(r, s)
        rsf = min(max(self.rho * rsf, self.rho0 / RHO_RANGE), self.rho0 * RHO_RANGE) / self.rho
        if rsf != 1.0:
            self.rho *= rsf
            st.U *= self.rdt.type(1.0 / rsf)
            if st.DT is None:  # the sweep already split D T: rescale D U with U
                st.DU *= self.rdt.type(1.0 / rsf)
            else:
                st.u_scale /= rsf
            st.vf = None  # F(Y - U) is stale; the next step transforms it again
            if self.geom.boundary == "pad":
                st.U0 *= self.rdt.type(1.0 / rsf)

    def step(self, s, max_iter: int = 1, *, tol: float = 0.0, warm: bool = True) -> CodeStep:
        r""":meth:`solve` (warm-started, ``max_iter`` iterations, ``tol`` 0 by default) returning the
        codes together with their synthesis :math:`C D z` and :math:`\|z\|_1`, as a :class:`CodeStep`.

        This is the call for a caller that needs ``D z`` after each step (the CSC prior): the
        synthesis comes from the Fourier-domain state the iteration keeps (no filter-bank FFT, see
        :meth:`_look_ahead`), and the ℓ1 norm from the CPU sweep when it ran (else one pass).
        """
        z = self.solve(s, max_iter=max_iter, tol=tol, warm=warm, copy=False)
        l1 = self._l1 if self._l1 is not None else float(self.xp.abs(z).sum())
        return CodeStep(z, self.synthesize(), l1, self.last_iters)

    def synthesize(self, z=None):
        """``D z`` cropped to the image (``z`` defaults to the coder's current codes).

        For the current codes this costs no filter-bank FFT: it reuses the Fourier-domain
        synthesis the iteration keeps (see :meth:`_look_ahead`), whose transform of
        ``Y - U`` the next :meth:`solve` then starts from. Callers that need both the codes
        and their synthesis after each step use :meth:`step`.
        """
        if z is None:
            st = self._state
            if st is None:
                raise ValueError("synthesize() without z needs a previous solve()")
            if st.vf is None:
                self._look_ahead(st, st.real)
            return self.geom.crop_image(self._inv_fft(st.DY, st.real))
        z = z.astype(
            self.rdt if not self.xp.iscomplexobj(z) else np.result_type(self.rdt, np.complex64), copy=False
        )
        return self.geom.synth(z)

    def objective(self, s, z=None) -> float:
        r""":math:`\tfrac12\|Dz - s\|^2 + \lambda\|z\|_1` (summed over the batch) at ``z`` (default: current codes)."""
        if z is None:
            if self._state is None:
                raise ValueError("objective() without z needs a previous solve()")
            z, dz, l1 = self._state.Y, self.synthesize(), self._l1
        else:
            dz, l1 = self.synthesize(z), None
        xp = self.xp
        res = dz - s
        if l1 is None:
            l1 = xp.abs(z).sum()
        return float(0.5 * xp.vdot(res.ravel(), res.ravel()).real + self.lam * l1)
