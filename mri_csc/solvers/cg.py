r"""Conjugate gradient for Hermitian positive (semi-)definite systems.

Solves :math:`(A^H A + \mu I) x = b` (or any ``normal(x) = b``) on NumPy or
CuPy arrays; used for the SENSE least-squares step and inside ADMM, where
it is warm-started from the previous iterate.
"""

from __future__ import annotations

from typing import Callable

from ..backend import get_xp

__all__ = ["conjugate_gradient"]


def conjugate_gradient(normal: Callable, b, x0=None, *, max_iter: int = 10, tol: float = 0.0,
                       callback: Callable | None = None):
    r"""Run at most ``max_iter`` CG iterations on ``normal(x) = b``.

    Parameters
    ----------
    normal : callable
        Applies the Hermitian positive semi-definite matrix, e.g. ``lambda x: A.N(x) + mu * x``.
    b : array
        Right-hand side.
    x0 : array, optional
        Warm start (copied, never modified); zeros when ``None``.
    max_iter : int
    tol : float
        Stop when :math:`\|r\| \le \text{tol}\,\|b\|`.
    callback : callable, optional
        ``callback(k, x, residual_norm)`` after each iteration.

    Returns
    -------
    x : array
    """
    xp = get_xp(b)
    x = xp.zeros_like(b) if x0 is None else x0.copy()
    r = b - normal(x) if x0 is not None else b.copy()
    p = r.copy()
    rr = float(xp.vdot(r, r).real)
    bnorm2 = float(xp.vdot(b, b).real)
    stop = (tol ** 2) * bnorm2
    for k in range(max_iter):
        if rr <= stop or rr == 0.0:
            break
        ap = normal(p)
        pap = float(xp.vdot(p, ap).real)
        if pap <= 0:
            break
        alpha = rr / pap
        x += alpha * p
        r -= alpha * ap
        rr_new = float(xp.vdot(r, r).real)
        p *= rr_new / rr
        p += r
        rr = rr_new
        if callback is not None:
            callback(k, x, rr ** 0.5)
    return x
