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

from ..backend import get_xp
from .conv import _fftn, _ifftn, _irfftn, _rfftn

__all__ = ["highpass", "lowpass_split"]


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
