r"""Priors with a closed-form or inner-solver prox: the phase term, shifted-wavelet ℓ1, isotropic TV.

Each implements :class:`~mri_csc.prior.base.Prior`; see each class for its :math:`R`.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_xp, to_device, to_numpy
from .base import Prior, check_step
from .prox import soft_threshold

__all__ = ["PhasePrior", "WaveletPrior", "TVPrior", "grad", "grad_adjoint"]


def _weight(name, value, allow_zero=True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0; got {value!r}")
    return v


def _n2(a) -> float:
    xp = get_xp(a)
    return float(xp.vdot(a.ravel(), a.ravel()).real)


class PhasePrior(Prior):
    r"""Phase smoothness :math:`R(x) = \tfrac{\gamma}{2}\|\operatorname{Im}(e^{-i\varphi}x)\|^2`.

    With :math:`u = e^{-i\varphi}v` the prox keeps :math:`\operatorname{Re}u` and shrinks
    :math:`\operatorname{Im}u` by :math:`1/(1+\gamma\,\text{step})` (exact).

    Parameters
    ----------
    gamma : float >= 0
    phasor : array or None
        :math:`e^{i\varphi}` (unit modulus, image shape); ``None`` is :math:`\varphi = 0`.
    """

    name = "phase"

    def __init__(self, gamma: float, phasor=None):
        self.gamma = _weight("gamma", gamma)
        self.phasor = phasor

    def _demod(self, x):
        return x if self.phasor is None else x * self.phasor.conj()

    def _mod(self, u):
        return u if self.phasor is None else u * self.phasor

    def prox(self, v, step):
        step = check_step(step)
        u = self._demod(v)
        rdt = u.real.dtype.type
        out = u.real + (1j * rdt(1.0 / (1.0 + self.gamma * step))) * u.imag
        return self._mod(out.astype(v.dtype, copy=False))

    def value(self, x) -> float:
        return 0.5 * self.gamma * _n2(self._demod(x).imag)


class WaveletPrior(Prior):
    r"""ℓ1 of an orthogonal wavelet transform, :math:`R(x) = \lambda\|\Psi S_s x\|_1`.

    :math:`\Psi` is PyWavelets' ``wavedecn`` with ``mode="periodization"`` (orthogonal when every
    image axis is divisible by :math:`2^{\text{level}}`, which is checked), applied to the real and
    imaginary parts alike; :math:`S_s` a circular shift. With ``shift=True`` each :meth:`prox`
    draws a new shift ``s`` uniformly in :math:`[0, 2^{\text{level}})` per axis (as BART's
    ``pics -l1`` does, against the blocky artefacts of a fixed wavelet grid) and returns the exact
    prox of that shifted ℓ1, :math:`S_s^{-1}\Psi^H\operatorname{soft}(\Psi S_s v,\lambda\,\text{step})`;
    :meth:`value` is the unshifted :math:`\lambda\|\Psi x\|_1`. ``shift=False`` makes the prox the
    exact prox of :meth:`value`'s function. Runs on the CPU (CuPy input is moved there and back,
    as SigPy's wavelets do).

    Parameters
    ----------
    lam : float >= 0
    shape : image shape
    wave : str
        PyWavelets name (default ``"db4"``, SigPy's).
    level : int, optional
        Decomposition levels; default the largest ≤ 4 (and ≤ PyWavelets' ``dwtn_max_level``)
        that divides every axis.
    shift : bool
    rng : numpy Generator or seed
    """

    name = "wavelet"

    def __init__(self, lam: float, shape, *, wave: str = "db4", level: int | None = None, shift: bool = True,
                 rng=None):
        import pywt  # noqa: PLC0415

        self.lam = _weight("lam", lam)
        self.shape = tuple(int(n) for n in shape)
        if wave not in pywt.wavelist(kind="discrete"):
            raise ValueError(f"wave must be a discrete PyWavelets wavelet name; got {wave!r}")
        self.wave = wave
        if level is None:
            level = max(1, min(4, pywt.dwtn_max_level(self.shape, wave)))
            while level > 1 and any(n % (1 << level) for n in self.shape):
                level -= 1
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
            raise ValueError(f"level must be an integer >= 1; got {level!r}")
        bad = [n for n in self.shape if n % (1 << int(level))]
        if bad:
            raise ValueError(f"an orthogonal {level}-level wavelet needs every axis divisible by {1 << int(level)}; "
                             f"got shape {self.shape}")
        self.level = int(level)
        self.shift = bool(shift)
        self.rng = np.random.default_rng(rng)
        self._pywt = pywt

    def _fwd(self, x):
        c = self._pywt.wavedecn(x, self.wave, mode="periodization", level=self.level)
        arr, self._slices = self._pywt.coeffs_to_array(c)
        return arr

    def _inv(self, arr):
        c = self._pywt.array_to_coeffs(arr, self._slices, output_format="wavedecn")
        return self._pywt.waverecn(c, self.wave, mode="periodization")

    def prox(self, v, step):
        step = check_step(step)
        dev_in = get_xp(v)
        x = to_numpy(v)
        axes = tuple(range(x.ndim))
        s = tuple(int(k) for k in self.rng.integers(0, 1 << self.level, x.ndim)) if self.shift else (0,) * x.ndim
        xs = np.roll(x, s, axis=axes)
        w = soft_threshold(self._fwd(xs), self.lam * step)
        out = np.roll(self._inv(w), tuple(-k for k in s), axis=axes).astype(v.dtype, copy=False)
        return out if dev_in is np else to_device(out, "gpu")

    def value(self, x) -> float:
        return self.lam * float(np.abs(self._fwd(to_numpy(x))).sum())


def grad(x):
    r"""Forward differences along every axis, zero at each axis' last sample (Neumann):
    shape ``(x.ndim, *x.shape)``."""
    xp = get_xp(x)
    g = xp.zeros((x.ndim,) + x.shape, dtype=x.dtype)
    for a in range(x.ndim):
        sl = [slice(None)] * x.ndim
        sl[a] = slice(0, -1)
        g[(a, *sl)] = xp.diff(x, axis=a)
    return g


def grad_adjoint(p):
    r"""Adjoint of :func:`grad` (minus the divergence)."""
    xp = get_xp(p)
    nd = p.ndim - 1
    out = xp.zeros(p.shape[1:], dtype=p.dtype)
    for a in range(nd):
        q = p[a]
        lo = [slice(None)] * nd
        hi = [slice(None)] * nd
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        out[tuple(lo)] -= q[tuple(lo)]
        out[tuple(hi)] += q[tuple(lo)]
    return out


class TVPrior(Prior):
    r"""Isotropic total variation :math:`R(x) = \lambda\sum_i \big(\sum_a |(\nabla_a x)_i|^2\big)^{1/2}`.

    Forward differences with Neumann boundary (:func:`grad`), real or complex ``x``. The prox
    :math:`w = v - \lambda\,\text{step}\,\nabla^T p` is computed by ``n_inner`` iterations of
    Beck and Teboulle's fast gradient projection on the dual
    :math:`\min_{|p_i|\le 1}\|v - \lambda\,\text{step}\,\nabla^T p\|^2` (step :math:`1/(4\,d)`
    in :math:`d` dimensions), warm-started from the previous call's dual (``warm=True``), so it is
    inexact by design; ``tol`` stops the inner loop when the relative change of ``w`` falls below it.
    """

    name = "tv"
    exact = False

    def __init__(self, lam: float, *, n_inner: int = 20, tol: float = 0.0, warm: bool = True):
        self.lam = _weight("lam", lam)
        if isinstance(n_inner, bool) or not isinstance(n_inner, (int, np.integer)) or n_inner < 1:
            raise ValueError(f"n_inner must be an integer >= 1; got {n_inner!r}")
        self.n_inner = int(n_inner)
        self.tol = _weight("tol", tol)
        self.warm = bool(warm)
        self._p = None
        self.last_inner = 0

    def prox(self, v, step):
        step = check_step(step)
        xp = get_xp(v)
        t = self.lam * step
        if t == 0:
            return v.copy()
        nd = v.ndim
        lip = 4.0 * nd
        p = self._p if (self.warm and self._p is not None and self._p.shape == (nd,) + v.shape
                        and self._p.dtype == v.dtype) else xp.zeros((nd,) + v.shape, dtype=v.dtype)
        q, theta = p.copy(), 1.0
        w = v - t * grad_adjoint(p)
        k = 0
        for k in range(self.n_inner):  # noqa: B007 (k counts the inner iterations, read after the loop)
            w_q = v - t * grad_adjoint(q)
            g = q + grad(w_q) / (lip * t)
            mag = xp.sqrt((xp.abs(g) ** 2).sum(axis=0))
            p_new = g / xp.maximum(mag, 1.0)
            theta_new = 0.5 * (1 + math.sqrt(1 + 4 * theta * theta))
            q = p_new + ((theta - 1) / theta_new) * (p_new - p)
            p, theta = p_new, theta_new
            if self.tol > 0:
                w_new = v - t * grad_adjoint(p)
                change = _n2(w_new - w) ** 0.5 / max(_n2(w_new) ** 0.5, 1e-30)
                w = w_new
                if change < self.tol:
                    break
        self.last_inner = k + 1
        self._p = p
        return v - t * grad_adjoint(p)

    def value(self, x) -> float:
        xp = get_xp(x)
        g = grad(x)
        return self.lam * float(xp.sqrt((xp.abs(g) ** 2).sum(axis=0)).sum())

    def stats(self) -> dict:
        return {"inner_iters": self.last_inner}
