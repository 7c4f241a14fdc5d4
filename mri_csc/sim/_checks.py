"""Argument checks shared by the simulation modules."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["check_image_shape"]


def check_image_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """Return ``shape`` as a tuple of 2 or 3 positive ints, or raise naming ``name`` and the value."""
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be a tuple of ints (ny, nx) or (nz, ny, nx); got {shape!r}") from exc
    if len(out) not in (2, 3) or any(s < 1 for s in out):
        raise ValueError(f"{name} must be (ny, nx) or (nz, ny, nx) with positive sizes; got {out}")
    return out
