r"""Fused CPU kernels for the sparse coder's element-wise work (numba; NumPy fallback).

One ADMM step of :class:`mri_csc.prior.sparse_coding.ConvSparseCoder` does, per
code sample, the over-relaxation, the soft threshold, the split of ``T`` into
``Y`` and ``U``, the input ``Y - U`` of the next step, five squared norms
for the residuals and the ℓ1 norm of ``Y``. In NumPy that is about 15 passes over the code
arrays, which are memory-bound; :func:`relax_shrink` does all of it in one pass. In the
Fourier domain, :func:`filter_sum` (:math:`\sum_k \hat d_k \hat v_k`) and
:func:`add_filter_product` (:math:`\hat v_k \mathrel{+}= \bar{\hat d}_k \hat t`)
each replace a product written to a buffer and a second pass over it.

For real NumPy codes the coder runs all three on one cache-sized block of code
maps at a time, between that block's inverse and forward FFTs
(:func:`mri_csc.prior.cpu_engine.sweep`, several threads; the kernels release the GIL); for
complex codes it uses the spectral kernels on whole arrays; on CuPy, or without
numba, it runs the same maths as array calls. It imports this module on its
first NumPy solve; the kernels are compiled then, eagerly for the real and
complex dtypes, and cached on disk (numba's ``cache=True``), so later processes
only load them. ``fastmath`` lets
the norms be summed in SIMD order (a float64 accumulation either way).
"""

from __future__ import annotations

import numpy as np

__all__ = ["relax_shrink", "filter_sum", "add_filter_product", "available", "ENABLED"]

#: switch for tests and comparisons: ``False`` makes the coder use its NumPy path
ENABLED = True

try:  # pragma: no cover - exercised wherever numba is installed (always with SigPy)
    import numba
    from numba import float32, float64, types
except ImportError:  # pragma: no cover
    numba = None


def _relax_shrink(X, Yold, U, Y, V, a, thr):
    n = X.size
    r2 = 0.0
    xn2 = 0.0
    yn2 = 0.0
    s2 = 0.0
    un2 = 0.0
    l1 = 0.0
    b = 1 - a
    for i in range(n):
        x = X[i]
        yo = Yold[i]
        t = a * x + b * yo + U[i]
        c = min(max(t, -thr), thr)
        y = t - c
        Y[i] = y
        U[i] = c
        V[i] = y - c
        d = x - y
        e = y - yo
        r2 += d * d
        xn2 += x * x
        yn2 += y * y
        s2 += e * e
        un2 += c * c
        l1 += abs(y)
    return r2, xn2, yn2, s2, un2, l1


def _add_filter_sum(df, vf, dv):
    nb, nk, nf = vf.shape
    for b in range(nb):
        for k in range(nk):
            for f in range(nf):
                dv[b, f] += df[k, f] * vf[b, k, f]


def _add_filter_product(vf, df, tf):
    nb, nk, nf = vf.shape
    for b in range(nb):
        for k in range(nk):
            for f in range(nf):
                vf[b, k, f] += df[k, f].conjugate() * tf[b, f]


if numba is not None:
    _sigs = [types.UniTuple(float64, 6)(ft[::1], ft[::1], ft[::1], ft[::1], ft[::1], ft, ft)
             for ft in (float32, float64)]
    _relax_shrink_jit = numba.njit(_sigs, cache=True, nogil=True, fastmath=True)(_relax_shrink)
    _ct = (types.complex64, types.complex128)
    _add_filter_sum_jit = numba.njit([types.void(c[:, ::1], c[:, :, ::1], c[:, ::1]) for c in _ct],
                                     cache=True, nogil=True, fastmath=True)(_add_filter_sum)
    _add_filter_product_jit = numba.njit([types.void(c[:, :, ::1], c[:, ::1], c[:, ::1]) for c in _ct],
                                         cache=True, nogil=True, fastmath=True)(_add_filter_product)
else:  # pragma: no cover
    _relax_shrink_jit = _add_filter_sum_jit = _add_filter_product_jit = None


def available(*arrays) -> bool:
    """Whether the kernels can run on these arrays: NumPy, C-contiguous, one dtype among
    float32/float64 (:func:`relax_shrink`) or complex64/complex128 (the spectral kernels)."""
    if _relax_shrink_jit is None:
        return False
    dt = arrays[0].dtype
    return all(
        type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous for a in arrays
    ) and dt in (np.float32, np.float64, np.complex64, np.complex128)


def filter_sum(df, vf, dv, accumulate: bool = False):
    r""":math:`dv_b = \sum_k \hat d_k\,\hat v_{b,k}` in place; ``df (K, *F)``, ``vf (*B, K, *F)``, ``dv (*B, *F)``.

    With ``accumulate`` the sum is added to ``dv`` (partial sums over blocks of filters).
    """
    k = df.shape[0]
    if not accumulate:
        dv.fill(0)
    _add_filter_sum_jit(df.reshape(k, -1), vf.reshape(-1, k, df[0].size), dv.reshape(-1, df[0].size))


def add_filter_product(vf, df, tf):
    r""":math:`\hat v_{b,k} \mathrel{+}= \bar{\hat d}_k\,\hat t_b` in place; shapes as :func:`filter_sum`."""
    k = df.shape[0]
    _add_filter_product_jit(vf.reshape(-1, k, df[0].size), df.reshape(k, -1), tf.reshape(-1, df[0].size))


def relax_shrink(X, Yold, U, Y, V, a: float, thr: float):
    r"""Relaxation, soft threshold and residual norms in one pass; arrays of one shape.

    With :math:`T = aX + (1-a)Y_{old} + U`: writes :math:`U \leftarrow \operatorname{clip}(T,
    \pm\,\text{thr})`, :math:`Y \leftarrow T - U` (the soft threshold of ``T``) and
    :math:`V \leftarrow Y - U`, and returns :math:`(\|X-Y\|^2, \|X\|^2, \|Y\|^2,
    \|Y-Y_{old}\|^2, \|U\|^2, \|Y\|_1)` accumulated in float64. ``U`` is updated in place.
    """
    dt = X.dtype.type
    return _relax_shrink_jit(X.ravel(), Yold.ravel(), U.ravel(), Y.ravel(), V.ravel(), dt(a), dt(thr))
