r"""Reading non-Cartesian trajectories: ``.npy``/``.npz`` (SigPy layout) and BART ``.cfl`` (``bart traj`` layout).

Ours is SigPy's ``coord``: ``(*samples, ndim)``, cycles per FOV, ``coord[..., i]`` along
image axis ``i``. BART stores ``(3, readout, spokes, ...)`` with coordinate ``j`` along its
axis ``j``; BART's axes are ours reversed (BART x, the readout, is our last image axis;
:func:`mri_csc.io.formats.to_bart`), so a BART trajectory becomes
``moveaxis(traj[:ndim][::-1].real, 0, -1)`` with its sample axes reversed,
``(..., spokes, readout, ndim)``, and BART non-Cartesian k-space ``(1, readout, spokes,
..., coils)`` becomes ``(coils, ..., spokes, readout)`` (:func:`bart_noncartesian_kspace`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .limits import check_shape

__all__ = ["read_trajectory", "read_image_shape", "bart_noncartesian_kspace", "describe_trajectory", "TRAJECTORY_KEYS"]

TRAJECTORY_KEYS = ("trajectory", "traj", "coord")


def _drop_trailing_singletons(shape):
    shape = list(shape)
    while len(shape) > 1 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


def read_trajectory(path: "str | os.PathLike", ndim: int | None = None) -> np.ndarray:
    """Read a trajectory file into SigPy's ``(*samples, ndim)`` float32 layout.

    Parameters
    ----------
    path : path
        ``.npy`` (the array), ``.npz`` (key ``trajectory``, ``traj`` or ``coord``, or its only
        array), or a BART ``.cfl``/``.hdr`` pair written by ``bart traj`` (``(3, readout,
        spokes, ...)``).
    ndim : int, optional
        Image dimensions (2 or 3). BART files always hold 3 coordinates: by default the third
        is kept only when it is non-zero somewhere.

    Raises
    ------
    ValueError
        On a file that holds no trajectory, complex values with imaginary parts, NaN/Inf, or
        a shape that is not ``(*samples, 2|3)``.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".cfl", ".hdr")) or (not p.exists() and Path(f"{p}.hdr").exists()):  # "t_r0.5": a name
        from .cfl import cfl_base, read_cfl  # noqa: PLC0415

        base = cfl_base(p)
        t = np.asarray(read_cfl(base))
        if t.ndim < 2 or t.shape[0] != 3:
            raise ValueError(f"{path}: a BART trajectory has shape (3, readout, spokes, ...); got {t.shape}")
        if np.abs(t.imag).max(initial=0) > 0:
            raise ValueError(f"{path}: BART trajectory has non-zero imaginary parts; expected real coordinates")
        t = t.real.reshape((3, *_drop_trailing_singletons(t.shape[1:])))
        if ndim is None:
            ndim = 3 if np.abs(t[2]).max(initial=0) > 0 else 2
        coord = np.moveaxis(t[:ndim][::-1], 0, -1)  # BART (x, y, z) components -> ours (z, y, x)
        samples = tuple(range(coord.ndim - 2, -1, -1))
        coord = coord.transpose((*samples, coord.ndim - 1))  # (..., spokes, readout, ndim)
    elif name.endswith(".npz"):
        with np.load(p) as f:
            keys = [k for k in TRAJECTORY_KEYS if k in f.files] or (f.files if len(f.files) == 1 else [])
            if not keys:
                raise ValueError(f"{path}: no trajectory array; expected one of the keys {TRAJECTORY_KEYS} "
                                 f"(found {f.files})")
            coord = f[keys[0]]
    elif name.endswith(".npy"):
        coord = np.load(p, mmap_mode="r")
    else:
        raise ValueError(f"{path}: trajectory files are .npy, .npz or BART .cfl; got {p.suffix or 'no suffix'!r}")
    check_shape(coord.shape, np.float32, f"trajectory {path}")
    coord = np.asarray(coord)
    if np.iscomplexobj(coord):
        if np.abs(coord.imag).max(initial=0) > 0:
            raise ValueError(f"{path}: trajectory has non-zero imaginary parts; expected real coordinates")
        coord = coord.real
    if coord.ndim < 2 or coord.shape[-1] not in (2, 3) or (ndim is not None and coord.shape[-1] != ndim):
        raise ValueError(f"{path}: trajectory must have shape (*samples, {ndim or '2|3'}); got {coord.shape}")
    if not np.isfinite(coord).all():
        raise ValueError(f"{path}: trajectory contains NaN or Inf")
    return np.ascontiguousarray(coord, dtype=np.float32)


def read_image_shape(path, z, ndim: int, nz: "int | None" = None) -> "tuple[int, ...] | None":
    """The image matrix an open non-Cartesian ``.npz`` declares (member ``image_shape``), or ``None``.

    Parameters
    ----------
    path : path
        The file, for the messages.
    z : numpy.lib.npyio.NpzFile
        The open file.
    ndim : int
        The trajectory's dimensionality (its last axis, 2 or 3): the shape must have as many entries.
    nz : int, optional
        A stack of stars' partitions (3-D trajectory ``(nz, spokes, readout, 3)``): a 2-entry ``(ny, nx)``,
        the per-slice shape the batch reads from the same file, is then also accepted, as ``(nz, ny, nx)``,
        and a 3-entry one must have ``nz`` first.

    Raises
    ------
    ValueError
        When ``image_shape`` is not ``ndim`` positive whole numbers, its ``nz`` is not the stack's, or
        allocating a complex64 image of that shape would exceed the memory budget
        (:func:`mri_csc.io.limits.check_shape`).
    """
    if "image_shape" not in z:
        return None
    raw = np.asarray(z["image_shape"])
    flat = raw.ravel()
    if nz is not None and ndim == 3 and flat.size == 2:  # the batch's per-slice (ny, nx) of a stack of stars
        flat = np.concatenate([[nz], flat])
    if raw.dtype.kind not in "iuf" or flat.size != ndim or not np.isfinite(flat).all() \
            or (flat != np.round(flat)).any() or (flat < 1).any():
        alt = " (or 2, its slices' (ny, nx), for a stack of stars)" if nz is not None and ndim == 3 else ""
        raise ValueError(f"{path}: 'image_shape' must be {ndim} positive whole numbers for a {ndim}-D trajectory"
                         f"{alt}; got {raw.tolist() if raw.size <= 8 else raw.shape}")
    shape = tuple(int(n) for n in flat)
    if nz is not None and ndim == 3 and shape[0] != nz:
        raise ValueError(f"{path}: 'image_shape' {list(shape)} does not hold the {nz} partitions of the stack of "
                         "stars; give (ny, nx) or (nz, ny, nx)")
    check_shape(shape, np.complex64, f"{path}: image_shape")
    return shape


def bart_noncartesian_kspace(k: np.ndarray) -> np.ndarray:
    """BART non-Cartesian k-space ``(1, readout, spokes, coils)`` → ours ``(coils, spokes, readout)``.

    Dimensions after BART's coil dimension (3) must be singletons.
    """
    k = np.asarray(k)
    k = k.reshape(k.shape + (1,) * max(0, 4 - k.ndim))
    if k.shape[0] != 1 or any(n != 1 for n in k.shape[4:]):
        raise ValueError(f"BART non-Cartesian k-space has shape (1, readout, spokes, coils); got {k.shape}")
    return np.ascontiguousarray(k[0, :, :, :, ...].reshape(k.shape[1:4]).transpose(2, 1, 0))


def describe_trajectory(coord: np.ndarray) -> list[str]:
    r"""Lines for ``mri-csc info`` about a trajectory ``(*samples, ndim)`` (SigPy ``coord``, cycles per FOV).

    The extent per image axis; the image matrix it implies, :math:`2\lceil\max_n|k_{n,i}|\rceil`
    along axis ``i`` (a coordinate of :math:`\pm N/2` reaches the edge of an ``N``-voxel matrix);
    and, for a 2-D ``(spokes, readout)`` trajectory whose spokes are straight lines, the
    spokes against the :math:`\frac{\pi}{2}N` a fully sampled radial acquisition needs.
    """
    c = np.asarray(coord, np.float64)
    nd = c.shape[-1]
    lo, hi = c.reshape(-1, nd).min(0), c.reshape(-1, nd).max(0)
    matrix = tuple(2 * int(np.ceil(max(abs(a), abs(b)))) for a, b in zip(lo, hi))
    lines = [f"trajectory: {nd}-D, samples {c.shape[:-1]} (ours (*samples, ndim), cycles per FOV), extent "
             + ", ".join(f"axis {i} [{a:.4g}, {b:.4g}]" for i, (a, b) in enumerate(zip(lo, hi)))
             + f"; implies an image matrix of about {matrix}"]
    if c.ndim == 3 and nd == 2 and c.shape[1] > 2:  # (spokes, readout, 2): radial when every spoke is a line
        d = c[:, -1] - c[:, 0]
        rel = c - c[:, :1]
        cross = np.abs(rel[..., 0] * d[:, None, 1] - rel[..., 1] * d[:, None, 0])
        if cross.max() <= 1e-3 * max(float((d ** 2).sum(-1).max()), 1e-12):
            need = np.pi / 2 * max(matrix)
            lines.append(f"radial: {c.shape[0]} spokes of {c.shape[1]} samples; a fully sampled {max(matrix)}-matrix "
                         f"needs about {need:.0f} spokes (R = {need / c.shape[0]:.2f})")
    return lines
