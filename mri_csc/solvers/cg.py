r"""Conjugate gradient for Hermitian positive (semi-)definite systems.

Solves :math:`(A^H A + \mu I) x = b` (or any ``normal(x) = b``) on NumPy or
CuPy arrays; used for the SENSE least-squares step and inside ADMM, where
it is warm-started from the previous iterate.
"""

from __future__ import annotations

from collections.abc import Callable

from ..backend import get_xp

__all__ = ["conjugate_gradient"]


def conjugate_gradient(normal: Callable, b, x0=None, *, max_iter: int = 10, tol: float = 0.0,
                       callback: Callable | None = None, residual=None, return_residual: bool = False):
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
    residual : array, optional
        :math:`b - \mathrm{normal}(x_0)` when the caller already knows it, which saves one
        application of ``normal``. A warm-started outer loop whose right-hand side changes
        from :math:`b'` to :math:`b` passes :math:`r' + (b - b')` with :math:`r'` the
        residual the previous call returned (copied, never modified).
    return_residual : bool
        Also return the final residual :math:`b - \mathrm{normal}(x)` (CG's recursively
        updated one, exact up to rounding).

    Returns
    -------
    x : array
    r : array
        Only with ``return_residual``.
    """
    xp = get_xp(b)
    x = xp.zeros_like(b) if x0 is None else x0.copy()
    if residual is not None:
        if residual.shape != b.shape:
            raise ValueError(f"residual must have the shape of b {tuple(b.shape)}; got {tuple(residual.shape)}")
        r = residual.astype(b.dtype, copy=True)
    else:
        r = b - normal(x) if x0 is not None else b.copy()
    p = r.copy()
    rdt = r.real.dtype

    def dot(a, c):  # Re<a, c> as a 0-d array on the device (no host sync)
        return xp.vdot(a.ravel(), c.ravel()).real

    rr = dot(r, r)
    # Host syncs only where stopping needs them: with tol == 0 and no callback, the
    # iteration runs on device scalars (the pap <= 0 / rr == 0 breaks become a
    # frozen x), so a GPU never waits for the host between CG steps.
    check = tol > 0 or callback is not None
    stop = (tol ** 2) * float(dot(b, b).real) if tol > 0 else 0.0
    alive = None
    buf = xp.empty_like(p)
    zero = rdt.type(0)
    for k in range(max_iter):
        if check:
            rr_h = float(rr)
            if rr_h <= stop or rr_h == 0.0:
                break
        ap = normal(p)
        pap = dot(p, ap)
        if check:
            if float(pap) <= 0:
                break
            alpha = rr / pap
        else:
            ok = (pap > 0) & (rr > 0)
            alive = ok if alive is None else alive & ok
            alpha = xp.where(alive, rr / xp.where(ok, pap, 1), zero)
        xp.multiply(p, alpha.astype(rdt), out=buf)
        x += buf
        xp.multiply(ap, alpha.astype(rdt), out=buf)
        r -= buf
        rr_new = dot(r, r)
        beta = rr_new / rr if check else xp.where(rr > 0, rr_new / xp.where(rr > 0, rr, 1), zero)
        p *= beta.astype(rdt)
        p += r
        rr = rr_new
        if callback is not None:
            callback(k, x, float(rr) ** 0.5)
    return (x, r) if return_residual else x
