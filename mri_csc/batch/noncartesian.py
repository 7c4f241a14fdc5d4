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

import functools

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

    ``image_shape`` is the maps' (when present), else the file's ``image_shape``, else ``None``. The file is read
    (and a stack of stars split) once per worker process for all of its slices (:func:`_read_volume`).
    """
    import os  # noqa: PLC0415

    st = os.stat(path)
    k, coord, maps, shape, n, mode = _read_volume(os.path.realpath(path), st.st_size, st.st_mtime_ns)
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


@functools.lru_cache(maxsize=1)
def _read_volume(path: str, size: int, mtime_ns: int):
    """The whole file, read once: ``(kspace, coord, maps, image_shape, n_slices, mode)``; for a stack of stars
    ``kspace`` is the split slices, ``(nz, coils, *samples)``, and ``coord`` their 2-D trajectory.

    Cached for the last file (a batch worker takes a volume's slices in a row); ``size`` and ``mtime_ns`` are
    part of the key, so a file rewritten in place is read again. Callers copy what they hand on.
    """
    from mri_csc.io.formats import _open_npz  # noqa: PLC0415  (member sizes checked against the budget)
    from mri_csc.io.trajectory import read_trajectory  # noqa: PLC0415

    coord = read_trajectory(path)
    with _open_npz(path) as z:
        k = np.asarray(z["kspace"])
        maps = np.asarray(z["maps"]).astype(np.complex64) if "maps" in z else None
        shape = tuple(int(n) for n in np.asarray(z["image_shape"]).ravel()) if "image_shape" in z else None
    n, mode = _layout(path, k.shape, coord.shape)
    if mode == "stars":
        from mri_csc.sim.trajectories import split_stack_of_stars  # noqa: PLC0415

        slices, coord = split_stack_of_stars(k, coord)
        k = np.stack(slices)
    for a in (k, coord, maps):
        if a is not None:
            a.flags.writeable = False  # shared by the slices: nobody may change the cached copy
    return k, coord, maps, shape, n, mode
