r"""The dictionary update of convolutional dictionary learning, N-D, circular or masked (padded) boundary.

For fixed codes :math:`z_{ik}` of signals :math:`s_i` (one per batch index ``i``: training
images, or the channels of one image), :class:`ConvDictionaryUpdate` runs ADMM iterations of

.. math::
    \min_{\{d_k\}}\ \tfrac12 \sum_i \Big\| C\Big(\sum_k d_k * z_{ik}\Big) - s_i \Big\|^2
    \quad \text{s.t. } \operatorname{supp} d_k \subseteq \text{filter window},\ \|d_k\| \le 1,

with :math:`C` the crop of the ``"pad"`` boundary (the identity for ``"circular"``; see
:mod:`mri_csc.prior.conv`), in the *consensus* form of CCMOD (Garcia-Cardona & Wohlberg,
2018): every signal gets its own copy :math:`d_i` of the dictionary, equal to the consensus
:math:`g` through the scaled dual :math:`h_i`, and :math:`g` is the projection onto the
constraint set (crop to the window, optional smaller ``support``, scale into the unit ball) of
the mean of the relaxed copies plus duals. On the code grid, each copy's sub-problem is one
Sherman–Morrison solve per frequency (:math:`\hat z_i` is one row there, so
:math:`\hat z_i^H\hat z_i` has rank one):

- ``"circular"``: :math:`(\hat z_i^H \hat z_i + \sigma I)\,\hat d_i = \hat z_i^H \hat s_i + \sigma(\hat g - \hat h_i)`;
- ``"pad"`` (mask decoupling, as SPORCO's ``ConvCnstrMODMaskDcpl``): with the split
  :math:`r_i = D z_i - P s_i` (``P`` zero-pads into the grid, ``W`` the indicator of the
  image window) and its scaled dual :math:`u_i`, both with penalty σ,
  :math:`(\hat z_i^H \hat z_i + I)\,\hat d_i = \hat z_i^H F(r_i + P s_i - u_i) + (\hat g - \hat h_i)`,
  then :math:`r_i = \sigma v_i / (W + \sigma)` for :math:`v_i` the relaxed :math:`D z_i - P s_i`
  plus :math:`u_i`, so nothing outside the window is fitted.

Over-relaxation ``relax`` and σ residual-balanced by :class:`~mri_csc.prior.penalty.ResidualBalance`
(default: SPORCO ``ConvBPDNDictLearn``'s rule). Real codes and signals (real FFTs); NumPy or
CuPy, on the filters' device.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_xp
from .conv import _ConvGeometry, _irfftn, _rfftn
from .penalty import ResidualBalance

__all__ = ["ConvDictionaryUpdate"]


class ConvDictionaryUpdate:
    r"""Warm-started consensus-CCMOD ADMM for the dictionary, one :meth:`step` per call (see module docstring).

    Parameters
    ----------
    filters : array ``(K, *filter_shape)``, real
        Initial dictionary (its device is the update's); projected onto the constraint set.
    image_shape : sequence of int
        Shape of one signal.
    n_signals : int
        Number of signals ``s_i`` (the leading axis of the signals and codes).
    boundary : {"pad", "circular"}
        As the sparse coder's (:mod:`mri_csc.prior.conv`).
    sigma : float > 0
        Initial penalty (default 0.5).
    relax : float in (0, 2)
        Over-relaxation (default 1.8).
    support : array ``(K, *filter_shape)`` of 0/1, optional
        A smaller support per filter (multi-scale dictionaries).
    rule : ResidualBalance, optional
        σ balancing (default :meth:`ResidualBalance.dictionary_learning`); ``None`` in ``auto_sigma=False``.
    auto_sigma : bool
        Residual balancing of σ (default on).
    dtype : float32 or float64

    Attributes
    ----------
    filters : array ``(K, *filter_shape)``
        The consensus dictionary after the last step (feasible: inside the window, norm <= 1).
    sigma : float
    n_iter : int
    """

    def __init__(self, filters, image_shape, n_signals: int, *, boundary: str = "circular", sigma: float = 0.5,
                 relax: float = 1.8, support=None, rule: ResidualBalance | None = None, auto_sigma: bool = True,
                 dtype=np.float32):
        self.geom = _ConvGeometry(filters, image_shape, boundary)
        self.xp = xp = self.geom.xp
        self.rdt = np.dtype(dtype)
        if self.rdt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {self.rdt}")
        if isinstance(n_signals, bool) or int(n_signals) != n_signals or int(n_signals) < 1:
            raise ValueError(f"n_signals must be an integer >= 1; got {n_signals!r}")
        sigma = float(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
        relax = float(relax)
        if not 0 < relax < 2:
            raise ValueError(f"relax must lie in (0, 2); got {relax}")
        if support is not None:
            if tuple(support.shape) != tuple(filters.shape):
                raise ValueError(f"support must have the filters' shape {tuple(filters.shape)}; "
                                 f"got {tuple(support.shape)}")
            support = xp.asarray(support, dtype=self.rdt)
        self.support = support
        self.n_signals = int(n_signals)
        self.sigma = sigma
        self.relax = relax
        self.rule = rule if rule is not None else ResidualBalance.dictionary_learning()
        self.auto_sigma = bool(auto_sigma)
        self.n_iter = 0
        self.filters = self.project(xp.asarray(filters, dtype=self.rdt))
        self._G = self._spectrum(self.filters)  # consensus spectra (K, *F)
        self._H = None  # consensus duals (n, K, *F), allocated on the first step
        self._r = self._u = None  # "pad": the split D z_i - P s_i and its dual (n, *code_shape)

    # ------------------------------------------------------------------ helpers
    @property
    def boundary(self) -> str:
        return self.geom.boundary

    @property
    def code_shape(self):
        return self.geom.code_shape

    @property
    def spectrum(self):
        """Real-FFT spectra of :attr:`filters` on the code grid, ``(K, *F)`` (internal: do not modify)."""
        return self._G

    def _spectrum(self, d):
        return self.geom.filter_spectrum(d)

    def project(self, d):
        """Onto the constraint set: times ``support`` (if any), then scaled into the unit ℓ2 ball per filter."""
        xp = self.xp
        if self.support is not None:
            d = d * self.support
        axes = tuple(range(1, d.ndim))
        nrm = xp.sqrt((d * d).sum(axis=axes, keepdims=True))
        return (d / xp.maximum(nrm, 1.0)).astype(self.rdt, copy=False)

    def set_filters(self, filters, reset=None):
        """Replace the consensus dictionary (e.g. re-seeded filters); ``reset``: indices of filters
        whose duals restart from zero."""
        d = self.project(self.xp.asarray(filters, dtype=self.rdt))
        if tuple(d.shape) != tuple(self.filters.shape):
            raise ValueError(f"filters must keep the shape {tuple(self.filters.shape)}; got {tuple(d.shape)}")
        self.filters = d
        self._G = self._spectrum(d)
        if reset is not None and self._H is not None:
            self._H[:, reset] = 0

    def _check(self, codes_f, s):
        n, k = self.n_signals, self.geom.n_filters
        fshape = self._G.shape[1:]
        if tuple(codes_f.shape) != (n, k, *fshape):
            raise ValueError(f"codes_f must be the real-FFT spectra of the codes, shape {(n, k, *fshape)}; "
                             f"got {tuple(codes_f.shape)}")
        if tuple(s.shape) != (n, *self.geom.image_shape):
            raise ValueError(f"s must have shape {(n, *self.geom.image_shape)}; got {tuple(s.shape)}")
        if get_xp(codes_f) is not self.xp or get_xp(s) is not self.xp:
            raise TypeError("codes, signals and filters must be on one device (NumPy and CuPy mixed)")

    # ------------------------------------------------------------------ the iteration
    def step(self, codes_f, s):
        r"""One ADMM iteration for codes with real-FFT spectra ``codes_f`` ``(n, K, *F)`` (on the code
        grid: :meth:`~mri_csc.prior.sparse_coding.ConvSparseCoder.code_spectrum`) and signals
        ``s`` ``(n, *image_shape)``; returns the new consensus dictionary :attr:`filters`."""
        self._check(codes_f, s)
        xp, geom, a = self.xp, self.geom, self.relax
        axes = geom.axes
        G = self._G
        n = self.n_signals
        s = s.astype(self.rdt, copy=False)
        pad = self.boundary == "pad"
        if self._H is None:
            self._H = xp.zeros((n, *G.shape), dtype=G.dtype)
            if pad:  # the split at its exact value for the initial dictionary: the first step starts there
                dz0 = _irfftn((codes_f * G[None]).sum(axis=1), geom.code_shape, axes)
                self._r = (dz0 - geom.pad_image(s)).astype(self.rdt, copy=False)
                self._u = xp.zeros_like(self._r)
        H = self._H
        due = self.auto_sigma and self.rule.due(self.n_iter + 1)
        H_old = H.copy() if due else None
        ew = xp.abs(codes_f)
        ew *= ew
        ew = ew.sum(axis=1)  # ||z_i(w)||^2, (n, *F)
        buf = G[None] - H  # g - h_i, then the scratch of the update below
        buf *= codes_f
        zw = buf.sum(axis=1)  # z_i^T (g - h_i)
        if pad:
            spad = geom.pad_image(s)
            rhs = _rfftn(self._r + spad - self._u, axes)
            t = (rhs - zw) / (1.0 + ew)
        else:
            t = (_rfftn(s, axes) - zw) / (self.sigma + ew)
        # the local dictionaries are d_i = g - h_i + conj(z_i) t_i, so z_i^T d_i = zw + t_i ||z_i||^2
        if pad:  # the split r_i = D z_i - P s_i, relaxed, and its prox 0.5||W r||^2 + sigma/2 ||r - v||^2
            dz = _irfftn(zw + t * ew, geom.code_shape, axes)
            r_old = self._r
            rr = a * (dz - spad) + (1 - a) * r_old
            v = rr + self._u
            r_new = v.copy()
            r_new[(Ellipsis,) + geom.crop] *= self.rdt.type(self.sigma / (1.0 + self.sigma))
            self._u = v - r_new
            self._r = r_new
        # relaxed local copies plus duals, a d_i + (1 - a) g + h_i = g + (1 - a) h_i + a conj(z_i) t_i, in place of H
        W = H
        W *= 1 - a
        W += G[None]
        xp.conjugate(codes_f, out=buf)
        t *= a
        buf *= t[:, None]
        W += buf
        del buf
        mean = W[0] if n == 1 else W.mean(axis=0)
        d = self.project(geom.filters_from_spectrum(mean))
        G_new = self._spectrum(d)
        W -= G_new[None]  # the new duals h_i + d_i - g
        self.n_iter += 1
        if due:
            # normalised residuals (Fourier domain: Parseval up to one factor shared by all terms)
            prim = float(xp.linalg.norm(W - H_old))
            gn = float(xp.linalg.norm(G_new)) * math.sqrt(n)
            dual = self.sigma * float(xp.linalg.norm(G_new - G)) * math.sqrt(n)
            hn = self.sigma * float(xp.linalg.norm(W))
            f = self.rule.factor(prim / max(gn, 1e-30), dual / max(hn, 1e-30))
            if f != 1.0:
                self.sigma *= f
                W /= f
                if pad:
                    self._u /= self.rdt.type(f)
        self._H = W
        self._G = G_new
        self.filters = d
        return d
