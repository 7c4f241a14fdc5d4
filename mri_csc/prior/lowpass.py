r"""Tikhonov low-pass / high-pass split, as SPORCO's ``tikhonov_filter``.

The low-pass part solves

.. math::
    l = \arg\min_x \tfrac12\|x - s\|^2 + \tfrac{\lambda}{2}\sum_i \|G_i x\|^2,

with :math:`G_i` forward differences along each image axis, in the DFT domain
after symmetric padding by ``npd`` samples (to avoid wrap-around at the border);
the high-pass part is ``s - l``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..backend import dctn_ortho, get_xp, idctn_ortho
from .conv import _fftn, _ifftn, _irfftn, _rfftn

__all__ = ["NeumannTikhonov", "highpass", "lowpass_split", "neumann_gradient_norm2", "smooth_neumann"]


def lowpass_split(s, lam: float, *, npd: int = 16, axes: Sequence[int] = (-2, -1)):
    """Split ``s`` into ``(low, high)`` with ``low + high == s``.

    Parameters
    ----------
    s : array (NumPy or CuPy), real or complex
        Image(s); the filter acts over ``axes`` and broadcasts over the others.
    lam : float >= 0
        Tikhonov weight of the gradient penalty (larger: smoother ``low``).
    npd : int
        Symmetric padding at each border (SPORCO's default 16).
    axes : sequence of int
        Spatial axes (default the last two; pass ``(-3, -2, -1)`` for volumes).

    Returns
    -------
    low, high : arrays of ``s``'s shape and dtype (float input of integer type becomes float32).
    """
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0; got {lam}")
    if int(npd) < 0:
        raise ValueError(f"npd must be >= 0; got {npd}")
    xp = get_xp(s)
    s = xp.asarray(s)
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.complexfloating)):
        s = s.astype(np.float32)
    axes = tuple(a % s.ndim for a in axes)
    real = not xp.iscomplexobj(s)
    pad_width = [(npd, npd) if i in axes else (0, 0) for i in range(s.ndim)]
    sp = xp.pad(s, pad_width, mode="symmetric") if npd else s
    pshape = tuple(sp.shape[a] for a in axes)
    rdt = s.real.dtype
    # |G_i(w)|^2 = 2 - 2 cos(w) per axis, summed, broadcast over the padded grid
    denom = None
    for j, a in enumerate(axes):
        n = sp.shape[a]
        nf = n // 2 + 1 if (real and j == len(axes) - 1) else n
        w = 2 * np.pi * xp.arange(nf, dtype=rdt) / n
        g2 = 2 - 2 * xp.cos(w)
        shape = [1] * s.ndim
        shape[a] = nf
        g2 = g2.reshape(shape)
        denom = g2 if denom is None else denom + g2
    denom = 1 + lam * denom
    if real:
        low = _irfftn(_rfftn(sp, axes) / denom, pshape, axes)
    else:
        low = _ifftn(_fftn(sp, axes) / denom, axes)
    if npd:
        low = low[tuple(slice(npd, sp.shape[i] - npd) if i in axes else slice(None) for i in range(s.ndim))]
    low = low.astype(s.dtype, copy=False)
    return low, s - low


def highpass(image, lam_lp: float = 5.0, **kwargs):
    """The high-pass part of :func:`lowpass_split` (``image - low``)."""
    return lowpass_split(image, lam_lp, **kwargs)[1]



class NeumannTikhonov:
    r"""The Tikhonov low-pass filter :math:`L = (I + w
abla^T
abla)^{-1}` with Neumann boundary.

    :math:`
abla` takes forward differences inside the image along each of the last ``len(shape)``
    axes (none across the border), so :math:`L s = rg\min_l 	frac12\|l - s\|^2 + 	frac{w}{2}\|
abla l\|^2`
    exactly. The Neumann Laplacian is diagonal in the orthonormal DCT-II, with eigenvalues
    :math:`g = \sum_a 2 - 2\cos(\pi k_a/n_a)`: :math:`L` has gain :math:`1/(1 + wg)` and the
    high-pass :math:`H = I - L` gain :math:`h = wg/(1 + wg)`; both are symmetric. Inputs may carry
    leading (batch) axes and be real or complex.

    Parameters
    ----------
    shape : image shape
    weight : float >= 0
    xp : array module
    dtype : real float dtype of the gains
    """

    def __init__(self, shape, weight: float, xp=np, dtype=np.float32):
        w = float(weight)
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight must be a finite number >= 0; got {weight!r}")
        self.shape, self.weight = tuple(int(n) for n in shape), w
        self.axes = tuple(range(-len(self.shape), 0))
        g = 0
        for a, n in enumerate(self.shape):
            view = [1] * len(self.shape)
            view[a] = n
            g = g + (2 - 2 * np.cos(np.pi * np.arange(n) / n)).reshape(view)
        g = np.broadcast_to(g, self.shape)
        self.low_gain = xp.asarray(1 / (1 + w * g), dtype=dtype)
        self.high_gain = xp.asarray(w * g / (1 + w * g), dtype=dtype)

    def apply_gain(self, s, gain):
        r""":math:`C^T \operatorname{diag}(\text{gain})\, C s` with ``C`` the DCT-II over the image axes."""
        return idctn_ortho(dctn_ortho(s, self.axes) * gain, self.axes).astype(s.dtype, copy=False)

    def low(self, s):
        """:math:`L s`."""
        return self.apply_gain(s, self.low_gain)

    def high(self, s):
        """:math:`H s = s - L s`."""
        return self.apply_gain(s, self.high_gain)


def smooth_neumann(s, weight: float, axes: Sequence[int] = (-2, -1)):
    r"""The exact minimiser :math:`\arg\min_l \tfrac12\|l - s\|^2 + \tfrac{w}{2}\|\nabla l\|^2` over ``axes``
    (the last axes of ``s``; Neumann boundary, see :class:`NeumannTikhonov`)."""
    nd = len(tuple(axes))
    return NeumannTikhonov(s.shape[-nd:], weight, get_xp(s), s.real.dtype).low(s)


def neumann_gradient_norm2(x, axes: Sequence[int] = (-2, -1)) -> float:
    r""":math:`\|\nabla x\|^2`, forward differences inside the image along ``axes`` (summed over the rest)."""
    xp = get_xp(x)
    tot = 0.0
    for a in axes:
        d = xp.diff(x, axis=a)
        tot = tot + xp.vdot(d.ravel(), d.ravel()).real
    return tot
