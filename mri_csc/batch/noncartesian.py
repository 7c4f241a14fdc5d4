r"""Non-Cartesian inputs of a batch: ``.npz`` stacks of radial (or spiral) slices with their trajectory.

An ``.npz`` with ``kspace`` and a trajectory (key ``trajectory``, ``traj`` or ``coord``, SigPy's
``coord`` convention, :mod:`mri_csc.operators.nufft`) is cut into 2-D problems, one task each:

=====================================  ==============================  =====================
``kspace``                             trajectory                      slices
=====================================  ==============================  =====================
``(coils, *samples)``                  ``(*samples, 2)``               1
``(coils, nz, *samples)``              ``(*samples, 2)`` (shared)      ``nz``
``(coils, nz, spokes, readout)``       ``(nz, spokes, readout, 2)``    ``nz``
``(coils, nz, spokes, readout)``       ``(nz, spokes, readout, 3)``    ``nz``: a stack of stars, split by
                                                                       :func:`mri_csc.sim.split_stack_of_stars`
=====================================  ==============================  =====================

Optional members: ``maps`` (``(coils, ny, nx)`` for every slice, or ``(coils, nz, ny, nx)``, the
3-D layout of the k-space) and ``image_shape`` (``(ny, nx)``, needed for ESPIRiT when there are
no maps).
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["noncartesian_count", "load_noncartesian_slice"]


def _trajectory_key(z):
    from mri_csc.io.trajectory import TRAJECTORY_KEYS  # noqa: PLC0415

    return next((k for k in TRAJECTORY_KEYS if k in z), None)


def _layout(path, kshape, cshape) -> tuple[int, str]:
    """``(n_slices, mode)`` with mode ``"single"``, ``"shared"``, ``"per-slice"`` or ``"stars"``."""
    kshape, cshape = tuple(kshape), tuple(cshape)
    if len(cshape) < 2 or cshape[-1] not in (2, 3):
        raise ValueError(f"{path}: trajectory must have shape (*samples, 2|3); got {cshape}")
    samples = cshape[:-1]
    if cshape[-1] == 3 and len(cshape) == 4 and kshape[1:] == samples:
        return cshape[0], "stars"
    if cshape[-1] == 2 and kshape[1:] == samples:  # a 2-D trajectory of 3 sample axes is one per slice
        return (samples[0], "per-slice") if len(samples) >= 3 else (1, "single")
    if cshape[-1] == 2 and len(kshape) >= 3 and kshape[2:] == samples:
        return kshape[1], "shared"
    raise ValueError(f"{path}: k-space {kshape} and trajectory {cshape} do not form (coils, [nz,] *samples) with "
                     "(*samples, 2), (nz, *samples, 2) or a stack of stars (nz, spokes, readout, 3)")


def noncartesian_count(path, z) -> "int | None":
    """The 2-D slices of an open ``.npz`` (headers only), or ``None`` when it holds no trajectory."""
    key = _trajectory_key(z)
    if key is None:
        return None
    if "kspace" not in z:
        raise ValueError(f"{path}: .npz holds a trajectory but no 'kspace' array; found {sorted(z.files)}")
    return _layout(path, z.shape("kspace"), z.shape(key))[0]


def load_noncartesian_slice(path, index: int):
    """Slice ``index`` of a non-Cartesian ``.npz``: ``(kspace (coils, *samples), coord, maps or None, image_shape)``.

    ``image_shape`` is the maps' (when present), else the file's ``image_shape``, else ``None``. The arrays are
    the caller's own. The last file read is kept (:func:`_volume`), so a worker that takes a volume's slices in
    a row reads it (and splits a stack of stars) once, not once per slice.
    """
    k, coord, maps, shape, n, mode = _volume(path)
    if not 0 <= index < n:
        raise ValueError(f"{path}: slice {index} out of range; the file has {n} slice(s)")
    if mode == "stars":
        k = k[index]
    elif mode == "shared":
        k = k[:, index]
    elif mode == "per-slice":
        k, coord = k[:, index], coord[index]
    if maps is not None and maps.ndim == coord.shape[-1] + 2:  # (coils, nz, ny, nx): this slice's maps
        if maps.shape[1] != n:
            raise ValueError(f"{path}: maps of shape {maps.shape} do not hold the {n} slices of the k-space")
        maps = maps[:, index]
    if maps is not None:
        shape = tuple(maps.shape[1:])
    return np.array(k, dtype=np.complex64, order="C"), coord.copy(), None if maps is None else maps.copy(), shape


#: the last volume read, ``(key, arrays)``, and the lock around reading it (threaded Dask workers)
_LAST: list = [None, None]
_LOCK = threading.Lock()


def clear_volume_cache() -> None:
    """Drop the kept volume (:func:`load_noncartesian_slice`), e.g. at the end of a batch."""
    with _LOCK:
        _LAST[:] = [None, None]


def _volume(path):
    """The whole file as ``(kspace, coord, maps, image_shape, n_slices, mode)``, read-only, kept for the next call;
    for a stack of stars ``kspace`` holds the split slices ``(nz, coils, *samples)`` and ``coord`` their 2-D
    trajectory. Keyed by the file's identity, size, mtime and ctime, so a file rewritten in place is read again;
    the kept volume is dropped before another is read (at most one in memory)."""
    import os  # noqa: PLC0415

    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _LOCK:
        if _LAST[0] != key:
            _LAST[:] = [None, None]
            _LAST[:] = [key, _read_volume(path)]
        return _LAST[1]


def _read_volume(path):
    from mri_csc.io.formats import _open_npz  # noqa: PLC0415  (member sizes checked against the budget)
    from mri_csc.io.trajectory import read_image_shape, read_trajectory  # noqa: PLC0415

    coord = read_trajectory(path)
    with _open_npz(path) as z:
        k = np.asarray(z["kspace"])
        maps = np.asarray(z["maps"]).astype(np.complex64) if "maps" in z else None
        n, mode = _layout(path, k.shape, coord.shape)
        # each slice's (ny, nx): a stack of stars is split into 2-D slices, and may declare (nz, ny, nx) as recon reads
        shape = read_image_shape(path, z, 3, nz=n) if mode == "stars" else read_image_shape(path, z, 2)
    if shape is not None and len(shape) == 3:  # a stack of stars' (nz, ny, nx), nz checked by the reader
        shape = shape[1:]
    if mode == "stars":
        from mri_csc.sim.trajectories import split_stack_of_stars  # noqa: PLC0415

        k, coord = split_stack_of_stars(k, coord)  # (nz, coils, spokes, readout), one array
    for a in (k, coord, maps):
        if a is not None:
            a.flags.writeable = False  # shared by the slices: nobody may change the kept copy
    return k, coord, maps, shape, n, mode
