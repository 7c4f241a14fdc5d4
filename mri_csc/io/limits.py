"""The memory budget a file may make mri_csc allocate, checked from headers alone.

A file's header declares shapes (an ``.npy`` header, an HDF5 dataset, an
ISMRMRD ``matrixSize``, a NIfTI ``dim``); a hostile or broken one can declare
far more than the file holds or the machine has. Every reader checks the bytes a
declared shape would take against :func:`max_bytes` *before* allocating, with
:func:`check_nbytes` / :func:`check_shape`, and refuses with
:class:`BudgetError`, a ``ValueError`` that names the file, what was declared
and the budget.

The budget is ``MRI_CSC_MAX_BYTES`` (bytes; suffixes ``K``, ``M``, ``G``, ``T``
in powers of 1024 are accepted) when set, else half of the machine's physical
memory.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["BudgetError", "max_bytes", "check_nbytes", "check_shape", "format_bytes", "ENV_VAR"]

ENV_VAR = "MRI_CSC_MAX_BYTES"
_DEFAULT_FRACTION = 0.5
_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class BudgetError(ValueError):
    """A header declares more data than the memory budget allows."""


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``'1.5 GiB'``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GiB
        return 8 * 1024**3


def max_bytes() -> int:
    """The allocation budget in bytes: ``$MRI_CSC_MAX_BYTES`` or half the physical memory."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return int(_DEFAULT_FRACTION * _physical_memory())
    text = raw.upper().removesuffix("IB").removesuffix("B")
    suffix = text[-1] if text and text[-1] in _SUFFIXES else ""
    number = text[: len(text) - len(suffix)] if suffix else text
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        raise ValueError(f"{ENV_VAR}={raw!r} is not a size in bytes (e.g. 8G, 512M, 1000000)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{ENV_VAR}={raw!r} must be a positive size")
    return int(value)


def check_nbytes(nbytes: float, what: str, *, budget: int | None = None) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` when it is over the budget.

    Parameters
    ----------
    nbytes : float
        Bytes the declared data would take once in memory.
    what : str
        What is being allocated, naming the file (e.g. ``"case.h5: kspace (8, 16, 640, 320) complex64"``).
    budget : int, optional
        The budget; :func:`max_bytes` by default.

    Raises
    ------
    BudgetError
        ``nbytes`` is negative, not finite, or over the budget.
    """
    limit = max_bytes() if budget is None else int(budget)
    if not math.isfinite(nbytes) or nbytes < 0:
        raise BudgetError(f"{what}: declared size {nbytes!r} bytes is not valid")
    if nbytes > limit:
        raise BudgetError(f"{what} would take {format_bytes(nbytes)}, over the memory budget of "
                          f"{format_bytes(limit)} (set {ENV_VAR} to change it)")


def check_shape(shape, dtype, what: str, *, budget: int | None = None) -> None:
    """:func:`check_nbytes` for an array of ``shape`` and ``dtype``; also refuses negative dimensions."""
    dims = tuple(int(s) for s in shape)
    if any(s < 0 for s in dims):
        raise BudgetError(f"{what}: declared shape {dims} has a negative dimension")
    nbytes = float(np.dtype(dtype).itemsize) * math.prod(float(s) for s in dims)
    check_nbytes(nbytes, f"{what} {dims} {np.dtype(dtype).name}", budget=budget)
