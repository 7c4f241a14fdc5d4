r"""Test images: the modified Shepp–Logan phantom, slices and slabs of real NIfTI volumes.

All images are float32 magnitudes normalised to a maximum of 1, in display
orientation (row 0 at the top of the picture).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_BRAIN",
    "SHEPP_LOGAN_ELLIPSES",
    "brain_slice",
    "brain_volume",
    "default_slab",
    "ellipse_phantom",
    "load_ellipses",
    "nifti_slice",
    "nifti_volume",
    "shepp_logan",
]

log = logging.getLogger(__name__)

#: MNI "Colin 27" T1 template shipped by Debian/Ubuntu's ``mricron-data`` package
DEFAULT_BRAIN = "/usr/share/mricron/templates/ch2.nii.gz"

#: Modified Shepp–Logan (Toft 1996): intensity, semi-axes (a_x, a_y), centre (x, y), angle in degrees.
#: ``phantoms/shepp_logan.json`` in the repository holds the same table.
SHEPP_LOGAN_ELLIPSES = np.array(
    [
        [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0],
        [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0],
        [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0],
        [0.1, 0.21, 0.25, 0.0, 0.35, 0.0],
        [0.1, 0.046, 0.046, 0.0, 0.1, 0.0],
        [0.1, 0.046, 0.046, 0.0, -0.1, 0.0],
        [0.1, 0.046, 0.023, -0.08, -0.605, 0.0],
        [0.1, 0.023, 0.023, 0.0, -0.606, 0.0],
        [0.1, 0.023, 0.046, 0.06, -0.605, 0.0],
    ]
)


def _check_shape(shape, name="shape", ndims=(2, 3)) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise TypeError(f"{name} must be a tuple of ints; got {shape!r}") from exc
    if len(shape) not in ndims or any(s < 1 for s in shape):
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} positive sizes; got {shape}")
    return shape


def load_ellipses(path: str | os.PathLike) -> np.ndarray:
    """Read an ellipse table (JSON with an ``"ellipses"`` list of 6-number rows)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"phantom definition {str(p)!r} does not exist")
    data = json.loads(p.read_text())
    e = np.asarray(data["ellipses"] if isinstance(data, dict) else data, dtype=float)
    if e.ndim != 2 or e.shape[1] != 6:
        raise ValueError(
            f"{str(p)!r}: ellipses must be rows of 6 numbers (intensity, a_x, a_y, x, y, angle); got {e.shape}"
        )
    return e


def ellipse_phantom(shape: Sequence[int], ellipses) -> np.ndarray:
    r"""Sum of constant-intensity ellipses on ``[-1, 1]^2`` sampled on a ``shape`` grid.

    Pixel :math:`(i, j)` sits at :math:`x = (2j - n_x + 1)/n_x`,
    :math:`y = (n_y - 1 - 2i)/n_y` (y points up). Each row of ``ellipses`` is
    ``(A, a_x, a_y, x_0, y_0, \theta)``; the ellipse adds :math:`A` where
    :math:`(x'/a_x)^2 + (y'/a_y)^2 \le 1` in coordinates rotated by
    :math:`\theta` about :math:`(x_0, y_0)`. Not normalised.
    """
    ny, nx = _check_shape(shape, ndims=(2,))
    y = (ny - 1 - 2 * np.arange(ny)) / ny
    x = (2 * np.arange(nx) - nx + 1) / nx
    X, Y = np.meshgrid(x, y)
    img = np.zeros((ny, nx))
    for A, ax, ay, x0, y0, th in np.asarray(ellipses, dtype=float):
        c, s = np.cos(np.deg2rad(th)), np.sin(np.deg2rad(th))
        xr = (X - x0) * c + (Y - y0) * s
        yr = -(X - x0) * s + (Y - y0) * c
        img[(xr / ax) ** 2 + (yr / ay) ** 2 <= 1] += A
    return img


def shepp_logan(shape: Sequence[int] = (128, 128)) -> np.ndarray:
    """Modified Shepp–Logan phantom, float32 with maximum 1.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``, or ``(nz, ny, nx)`` for a simple 3D version: the 2D
        phantom scaled by an ellipsoidal envelope :math:`\\sqrt{1 - z^2/0.9^2}`
        of its semi-axes along z (zero beyond :math:`|z| > 0.9`).
    """
    shape = _check_shape(shape)
    if len(shape) == 2:
        img = ellipse_phantom(shape, SHEPP_LOGAN_ELLIPSES)
    else:
        nz = shape[0]
        z = (2 * np.arange(nz) - nz + 1) / nz
        img = np.zeros(shape)
        for k, zk in enumerate(z):
            f = 1 - (zk / 0.9) ** 2
            if f <= 0:
                continue
            e = SHEPP_LOGAN_ELLIPSES.copy()
            e[:, 1:5] *= np.sqrt(f)
            img[k] = ellipse_phantom(shape[1:], e)
    img = np.clip(img, 0, None)
    return (img / img.max()).astype(np.float32)


def _centre_fit(img: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``img`` zero-padded or cropped about its centre to ``shape``, axis by axis (same number of axes).

    Along an axis of input size ``n`` and output size ``m`` the input starts at output index
    ``(m - n) // 2`` when it is smaller, and the output starts at input index ``(n - m) // 2`` when
    it is larger.
    """
    out = np.zeros(tuple(shape), dtype=img.dtype)
    src, dst = [], []
    for n_in, n_out in zip(img.shape, shape):
        if n_in >= n_out:
            s = (n_in - n_out) // 2
            src.append(slice(s, s + n_out))
            dst.append(slice(0, n_out))
        else:
            d = (n_out - n_in) // 2
            src.append(slice(0, n_in))
            dst.append(slice(d, d + n_in))
    out[tuple(dst)] = img[tuple(src)]
    return out


def _square_pixel(n_rows_cols: Sequence[int], spacing: Sequence[float], shape: Sequence[int]) -> float:
    """The side (mm) of the square pixels that fit an image of ``n_rows_cols`` pixels of ``spacing`` into
    ``shape`` with its aspect ratio kept: the larger of the two fields of view over the output size."""
    return max(n * s / m for n, s, m in zip(n_rows_cols, spacing, shape))


def _fit_to_shape(img: np.ndarray, spacing: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """Resample to square pixels that fit ``shape`` (aspect kept), then centre-pad/crop."""
    pix = _square_pixel(img.shape, spacing, shape)  # output pixel size that fits both axes
    zoom = (spacing[0] / pix, spacing[1] / pix)
    if not np.allclose(zoom, 1):
        img = ndimage.zoom(img, zoom, order=1, mode="nearest", grid_mode=True)
    return _centre_fit(img, shape)


def _open_canonical(path: str | os.PathLike):
    """A NIfTI file checked (:func:`mri_csc.io.formats.load_nifti`) and reoriented to RAS+; 3D or 4D."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NIfTI file {str(p)!r} does not exist")
    from ..io.formats import load_nifti  # noqa: PLC0415  (header, size and budget checks)

    raw = load_nifti(p)
    try:
        img = nib.as_closest_canonical(raw)
    except Exception as exc:  # nibabel raises several types for non-NIfTI input
        raise ValueError(f"could not read {str(p)!r} as a NIfTI image: {exc}") from exc
    if len(img.shape) < 3:
        raise ValueError(f"{str(p)!r} holds a {len(img.shape)}D image; a 3D (or 4D) volume is needed")
    return img


def _check_axis(axis) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial); got {axis!r}")
    return int(axis)


def _check_index(index, n: int, axis: int, path) -> int:
    """``index`` along ``axis`` (size ``n``; default the middle) checked and made non-negative."""
    if index is None:
        return n // 2
    if not (-n <= int(index) < n):
        raise ValueError(f"index {index} is out of range for axis {axis} of size {n} in {str(path)!r}")
    return int(index) % n


def _read_slices(img, axis: int, lo: int, hi: int, path) -> np.ndarray:
    """Slices ``lo .. hi - 1`` along ``axis`` of a canonical image (first volume of a 4D one), that axis first."""
    sl = [slice(None)] * 3 + [0] * (len(img.shape) - 3)
    sl[axis] = slice(lo, hi)
    try:
        data = np.asarray(img.dataobj[tuple(sl)], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt data: EOFError, zlib.error, OSError...)
        what = f"slice {lo}" if hi == lo + 1 else f"slices {lo}-{hi - 1}"
        raise ValueError(f"could not read {what} of {str(path)!r}: {type(exc).__name__}: {exc}") from None
    return np.moveaxis(data, axis, 0)


def _display_slice(data: np.ndarray, zooms, axis: int, shape) -> np.ndarray:
    """A canonical slice (the two remaining RAS axes, in order) in radiological display orientation, resampled
    into ``shape`` by :func:`_fit_to_shape` when given; NaN set to 0, negative values clipped, not normalised."""
    zooms = [z for i, z in enumerate(zooms[:3]) if i != axis]
    # remaining axes are (first, second) in RAS order; display rows = second axis reversed
    # (superior/anterior at the top), columns = first axis reversed (patient right on the left)
    disp = data.T[::-1, ::-1]
    spacing = (float(zooms[1]), float(zooms[0]))
    if shape is not None:
        disp = _fit_to_shape(disp, spacing, shape)
    return np.clip(np.nan_to_num(disp), 0, None)


def nifti_slice(
    path: str | os.PathLike,
    index: int | None = None,
    axis: int = 2,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """One 2D slice of a NIfTI volume, in radiological display orientation.

    The volume is first reoriented to the closest canonical RAS+ orientation
    (:func:`nibabel.as_closest_canonical`), so ``axis`` 0, 1, 2 are sagittal,
    coronal and axial whatever the file's voxel order. The slice is shown with
    superior (or anterior, for axial) at the top and the patient's right on the
    image's left (radiological convention). A 4D file uses its first volume.

    Parameters
    ----------
    path : str or path
        A ``.nii`` or ``.nii.gz`` file.
    index : int, optional
        Slice index along ``axis`` (negative counts from the end); default the middle.
    axis : {0, 1, 2}
        Slicing axis in RAS+ order.
    shape : tuple of int, optional
        Output ``(ny, nx)``: the slice is resampled (linear) to square pixels of
        the size that fits it in ``shape`` with its aspect ratio kept, then
        zero-padded/cropped about the centre.

    Returns
    -------
    numpy.ndarray
        float32 image with maximum 1 (negative values clipped to 0).
    """
    p = Path(path)
    axis = _check_axis(axis)
    if shape is not None:
        shape = _check_shape(shape, ndims=(2,))
    img = _open_canonical(p)
    index = _check_index(index, img.shape[axis], axis, p)
    data = _read_slices(img, axis, index, index + 1, p)[0]
    disp = _display_slice(data, img.header.get_zooms(), axis, shape)
    return _to_unit_max(disp, f"slice {index} along axis {axis} of {p}")


def default_slab(nz: int) -> int:
    """The slices of object in a volume of ``nz`` slices: all but ``ceil(nz / 10)`` empty ones at each end.

    An excited slab lies inside the z field of view; a slab cut through the object at the field of
    view's edges would wrap round in kz (e.g. 32 of 40 slices, 24 of 32; at least 1).
    """
    nz = int(nz)
    return max(1, nz - 2 * math.ceil(nz / 10))


def nifti_volume(
    path: str | os.PathLike,
    shape: Sequence[int],
    index: int | None = None,
    axis: int = 2,
    slab: int | None = None,
) -> np.ndarray:
    r"""A slab of a NIfTI volume, resampled to isotropic voxels inside a ``(nz, ny, nx)`` field of view.

    Each slice is what :func:`nifti_slice` shows (RAS+ reorientation, radiological display,
    resampling to square pixels of side :math:`p` that fit ``(ny, nx)``, centre pad/crop); along
    ``axis`` the slices are :math:`p` apart too (linear interpolation between the file's slices),
    so the voxels are cubes of side :math:`p`. Output slice :math:`q` sits at the file's (canonical)
    slice

    .. math::  t_q = \mathrm{index} + (q - \lfloor n_z/2 \rfloor)\, p / s,

    :math:`s` the file's slice spacing, for the ``slab`` slices
    :math:`q = \lfloor n_z/2 \rfloor - \lfloor \mathrm{slab}/2 \rfloor, \dots`; the other slices
    are zero, so the object lies inside the z field of view as an excited slab does (it does not wrap
    round in kz). Slice ``nz // 2``, the slab's centre and the FFT centre, is the file's slice
    ``index`` itself: it equals ``nifti_slice(path, index, axis, (ny, nx))`` up to the normalisation.
    Positions beyond the file's first or last slice are zero.

    Parameters
    ----------
    path : str or path
        A ``.nii`` or ``.nii.gz`` file (a 4D one: its first volume).
    shape : tuple of int
        ``(nz, ny, nx)``.
    index : int, optional
        The slab's centre slice along ``axis`` (negative counts from the end); default the middle.
    axis : {0, 1, 2}
        Slicing axis in RAS+ order (0 sagittal, 1 coronal, 2 axial).
    slab : int, optional
        Slices of object, ``1 .. nz``; default :func:`default_slab` (``nz`` less about 10 % at each end).

    Returns
    -------
    numpy.ndarray
        float32 ``(nz, ny, nx)`` with maximum 1 (negative values clipped to 0).
    """
    p = Path(path)
    axis = _check_axis(axis)
    nz, ny, nx = _check_shape(shape, ndims=(3,))
    slab = default_slab(nz) if slab is None else slab
    if not (isinstance(slab, (int, np.integer)) and 1 <= slab <= nz):
        raise ValueError(f"slab must be an integer from 1 to nz = {nz}; got {slab!r}")
    img = _open_canonical(p)
    n = img.shape[axis]
    index = _check_index(index, n, axis, p)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    rows, cols = [i for i in range(3) if i != axis][::-1]  # display rows: the second remaining RAS axis
    pix = _square_pixel((img.shape[rows], img.shape[cols]), (zooms[rows], zooms[cols]), (ny, nx))
    q0 = nz // 2 - slab // 2
    t = index + (np.arange(q0, q0 + slab) - nz // 2) * (pix / zooms[axis])
    lo, hi = max(0, int(np.floor(t.min()))), min(n, int(np.floor(t.max())) + 2)
    block = _read_slices(img, axis, lo, hi, p)
    zero = np.zeros(block.shape[1:])

    def at(i):
        return block[i - lo] if lo <= i < hi else zero

    out = np.zeros((nz, ny, nx), np.float64)
    for q, tq in zip(range(q0, q0 + slab), t):
        i0 = int(np.floor(tq))
        w = tq - i0
        data = at(i0) if w == 0 else (1 - w) * at(i0) + w * at(i0 + 1)
        out[q] = _display_slice(data, zooms, axis, (ny, nx))
    outside = int(((t < 0) | (t > n - 1)).sum())
    if outside:  # said, not silent: the user asked for anatomy there (a review)
        log.warning("the slab of %d slices about slice %d of %s (axis %d, %d slices) reaches past the volume's "
                    "ends (slices %.1f to %.1f): %d of its slices are zero; a thinner slab, a smaller (nz) or a "
                    "centre slice further in keeps it inside", slab, index, p, axis, n, t.min(), t.max(), outside)
    return _to_unit_max(out, f"the slab about slice {index} along axis {axis} of {p}")


def _to_unit_max(a, what: str) -> np.ndarray:
    """``a`` scaled to maximum 1, float32; an all-zero ``a`` is returned as it is, with a warning naming ``what``."""
    m = a.max()
    if m > 0:
        a = a / m
    else:
        log.warning("%s is empty (all zero)", what)
    return np.ascontiguousarray(a, dtype=np.float32)


def _brain_path(path):
    """``path``, or :data:`DEFAULT_BRAIN` when ``None`` (refused clearly when it is not installed)."""
    if path is not None:
        return path
    if not Path(DEFAULT_BRAIN).is_file():
        raise FileNotFoundError(
            f"the default brain template {DEFAULT_BRAIN!r} is not installed; install it with "
            "'apt-get install mricron-data' or pass path= to any NIfTI volume"
        )
    return DEFAULT_BRAIN


def brain_slice(
    index: int | None = None,
    shape: Sequence[int] | None = (192, 192),
    path: str | os.PathLike | None = None,
    axis: int = 2,
) -> np.ndarray:
    """An axial slice of a real T1 brain (default: the Colin 27 template ``ch2``).

    See :func:`nifti_slice`; ``path`` defaults to :data:`DEFAULT_BRAIN`.

    Raises
    ------
    FileNotFoundError
        If the default template is not installed (``apt-get install mricron-data``).
    """
    return nifti_slice(_brain_path(path), index=index, axis=axis, shape=shape)


def brain_volume(
    shape: Sequence[int] = (32, 96, 96),
    index: int | None = None,
    path: str | os.PathLike | None = None,
    axis: int = 2,
    slab: int | None = None,
) -> np.ndarray:
    """An axial slab ``(nz, ny, nx)`` of a real T1 brain: :func:`nifti_volume` of ``path``, by default
    :data:`DEFAULT_BRAIN` (the Colin 27 template ``ch2``; :func:`brain_slice` says what is raised when it is
    not installed)."""
    return nifti_volume(_brain_path(path), shape, index=index, axis=axis, slab=slab)
