"""The divergence guard every reconstruction solver runs after each iteration."""

from __future__ import annotations

import math

__all__ = ["DivergenceError", "check_divergence"]


class DivergenceError(ValueError):
    """The iteration diverged (non-finite or exploding image, collapsing penalty)."""


def check_divergence(it: int, xnorm: float, ref: float, *, rho: dict | None = None, hint: str = "",
                     blowup: float = 1e6, rho_range: float = 1e8) -> None:
    """Raise :class:`DivergenceError` when ``xnorm`` is not finite or exceeds ``blowup * ref``, or
    when a penalty in ``rho`` (``{name: (value, initial)}``) left ``[initial/rho_range,
    initial*rho_range]`` or is not finite; ``hint`` says which parameter to change."""
    tail = f"; {hint}" if hint else ""
    if not math.isfinite(xnorm):
        raise DivergenceError(f"the iteration diverged at iteration {it}: the image is not finite{tail}")
    if ref > 0 and xnorm > blowup * ref:
        raise DivergenceError(f"the iteration diverged at iteration {it}: ||x|| = {xnorm:.3g} is over "
                              f"{blowup:.0e} times its initial size {ref:.3g}{tail}")
    for name, (val, init) in (rho or {}).items():
        if not math.isfinite(val) or val < init / rho_range or val > init * rho_range:
            raise DivergenceError(f"the iteration diverged at iteration {it}: the penalty {name} = {val:.3g} "
                                  f"left [{init / rho_range:.3g}, {init * rho_range:.3g}] (started at "
                                  f"{init:.3g}){tail}")
