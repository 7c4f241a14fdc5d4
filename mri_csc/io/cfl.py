r"""Read and write BART's ``.cfl``/``.hdr`` file pair.

A BART array is stored as two files: ``name.hdr`` (a comment line ``# Dimensions``
and a line of the dimensions) and ``name.cfl`` (raw little-endian complex64
samples in column-major, i.e. Fortran, order). These helpers follow BART's own
``python/cfl.py``: :func:`read_cfl` returns an array whose shape *is* BART's
dimension list (``[x, y, z, coils, ...]``), with trailing singleton dimensions
dropped; :func:`write_cfl` writes an array's shape as the dimension list.

Converting between BART's order and mri_csc's SigPy-style order is a reversal of
the axes: a k-space ``(coils, nz, ny, nx)`` is BART's ``(nx, ny, nz, coils)``, so
``write_cfl(name, ksp.T)`` and ``read_cfl(name).T`` convert (for 2D insert
``nz = 1``: ``ksp[:, None]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_cfl", "write_cfl", "cfl_base"]


def cfl_base(name: "str | os.PathLike") -> str:
    """The BART base name of ``name``: without a ``.cfl`` or ``.hdr`` extension (any case); a name may hold
    other dots (``k_r0.5`` is a name, not ``k_r0`` with suffix ``.5``)."""
    s = str(name)
    return s[:-4] if s.lower().endswith((".cfl", ".hdr")) else s


def _base(name: str | os.PathLike) -> Path:
    return Path(cfl_base(name))


def read_cfl(name: str | os.PathLike) -> np.ndarray:
    """Read ``name.cfl`` / ``name.hdr`` (with or without the extension) as complex64.

    Returns
    -------
    numpy.ndarray
        complex64 array of shape BART's dimensions (trailing 1s removed),
        in Fortran order.

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If the header is malformed or the data size does not match it.
    """
    base = _base(name)
    hdr, cfl = Path(f"{base}.hdr"), Path(f"{base}.cfl")  # not with_suffix: "k_r0.5" is a name, not ".5"
    for f in (hdr, cfl):
        if not f.is_file():
            raise FileNotFoundError(f"BART file {str(f)!r} does not exist")
    lines = [ln.strip() for ln in hdr.read_text().splitlines()]
    try:
        i = lines.index("# Dimensions")
        dims = [int(d) for d in lines[i + 1].split()]
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{str(hdr)!r} is not a BART header (no '# Dimensions' line)") from exc
    n = int(np.prod(dims))
    data = np.fromfile(cfl, dtype="<c8")
    if data.size != n:
        raise ValueError(f"{str(cfl)!r} holds {data.size} complex samples; header {dims} needs {n}")
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return data.reshape(dims, order="F").astype(np.complex64, copy=False)


def write_cfl(name: str | os.PathLike, array, *, overwrite: bool = True) -> None:
    """Write ``array`` as ``name.cfl`` / ``name.hdr``; its shape becomes BART's dimensions.

    Parameters
    ----------
    name : str or path
        Base name (an extension ``.cfl``/``.hdr`` is stripped).
    array : array_like
        Any numeric array (NumPy or CuPy); stored as complex64 in Fortran order.
    overwrite : bool
        When False, refuse to replace existing files (``FileExistsError``).
    """
    from ..backend import to_numpy

    a = np.asarray(to_numpy(array))
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"array must be numeric; got dtype {a.dtype}")
    base = _base(name)
    hdr, cfl = Path(f"{base}.hdr"), Path(f"{base}.cfl")  # not with_suffix: "k_r0.5" is a name, not ".5"
    if not overwrite and (hdr.exists() or cfl.exists()):
        raise FileExistsError(f"{str(base)!r}.cfl/.hdr exist; pass overwrite=True to replace them")
    dims = list(a.shape) or [1]
    # write each file under a temporary name, then rename: no half-written pair
    tmp_cfl = cfl.with_name(cfl.name + ".part")
    tmp_hdr = hdr.with_name(hdr.name + ".part")
    a.astype("<c8").ravel(order="F").tofile(tmp_cfl)
    tmp_hdr.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    os.replace(tmp_cfl, cfl)
    os.replace(tmp_hdr, hdr)
