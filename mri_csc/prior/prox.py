r"""Proximal operators used by the CSC prior."""

from __future__ import annotations

import numpy as np

from ..backend import get_xp

__all__ = ["soft_threshold"]


def soft_threshold(v, t, out=None):
    r"""Complex-safe soft threshold, the prox of :math:`t\|\cdot\|_1`.

    .. math::
        \operatorname{prox}_{t|\cdot|}(v) = v \,\max\!\left(1 - \frac{t}{|v|}, 0\right),

    computed as ``v * max(|v| - t, 0) / max(|v|, tiny)`` so that ``|v| = 0``
    gives exactly 0 (never NaN). For real ``v`` this is
    ``sign(v) * max(|v| - t, 0)``.

    Parameters
    ----------
    v : array (NumPy or CuPy), real or complex
    t : float or real array broadcasting against ``v``, >= 0
    out : array, optional
        Where to write the result (may be ``v`` itself).

    Returns
    -------
    array with ``v``'s dtype and device.

    Raises
    ------
    ValueError
        A negative or NaN threshold (``t < 0`` would enlarge the values: it is no prox).
    """
    xp = get_xp(v)
    rdt = v.real.dtype if xp.iscomplexobj(v) else v.dtype
    if not np.issubdtype(rdt, np.floating):
        v = v.astype(np.float64)
        rdt = v.dtype
    if not hasattr(t, "shape") or getattr(t, "ndim", 0) == 0:
        if not float(t) >= 0:
            raise ValueError(f"t must be >= 0 (the threshold of a prox); got {t!r}")
        t = rdt.type(float(t))
    elif not bool((t >= 0).all()):
        raise ValueError(f"t must be >= 0 (the threshold of a prox); got values down to {float(t.min()):.4g}")
    a = xp.abs(v)
    scale = xp.maximum(a - t, 0)
    xp.maximum(a, np.finfo(rdt).tiny, out=a)
    scale /= a
    if scale.dtype != rdt:
        scale = scale.astype(rdt)
    if out is None:
        return v * scale
    return xp.multiply(v, scale, out=out)
