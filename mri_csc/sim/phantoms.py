r"""Test images: the modified Shepp–Logan phantom and slices of real NIfTI volumes.

All images are float32 magnitudes normalised to a maximum of 1, in display
orientation (row 0 at the top of the picture).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_BRAIN",
    "SHEPP_LOGAN_ELLIPSES",
    "brain_slice",
    "ellipse_phantom",
    "load_ellipses",
    "nifti_slice",
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


def _fit_to_shape(img: np.ndarray, spacing: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """Resample to square pixels that fit ``shape`` (aspect kept), then centre-pad/crop."""
    phys = (img.shape[0] * spacing[0], img.shape[1] * spacing[1])
    pix = max(phys[0] / shape[0], phys[1] / shape[1])  # output pixel size that fits both axes
    zoom = (spacing[0] / pix, spacing[1] / pix)
    if not np.allclose(zoom, 1):
        img = ndimage.zoom(img, zoom, order=1, mode="nearest", grid_mode=True)
    out = np.zeros(shape, dtype=img.dtype)
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
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NIfTI file {str(p)!r} does not exist")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial); got {axis!r}")
    if shape is not None:
        shape = _check_shape(shape, ndims=(2,))
    from ..io.formats import load_nifti  # noqa: PLC0415  (header, size and budget checks)

    raw = load_nifti(p)
    try:
        img = nib.as_closest_canonical(raw)
    except Exception as exc:  # nibabel raises several types for non-NIfTI input
        raise ValueError(f"could not read {str(p)!r} as a NIfTI image: {exc}") from exc
    if len(img.shape) < 3:
        raise ValueError(f"{str(p)!r} holds a {len(img.shape)}D image; a 3D (or 4D) volume is needed")
    n = img.shape[axis]
    if index is None:
        index = n // 2
    if not (-n <= int(index) < n):
        raise ValueError(f"index {index} is out of range for axis {axis} of size {n} in {str(p)!r}")
    index = int(index) % n
    sl = [slice(None)] * 3 + [0] * (len(img.shape) - 3)
    sl[axis] = index
    try:
        data = np.asarray(img.dataobj[tuple(sl)], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt data: EOFError, zlib.error, OSError...)
        raise ValueError(f"could not read slice {index} of {str(p)!r}: {type(exc).__name__}: {exc}") from None
    zooms = [z for i, z in enumerate(img.header.get_zooms()[:3]) if i != axis]
    # remaining axes are (first, second) in RAS order; display rows = second axis reversed
    # (superior/anterior at the top), columns = first axis reversed (patient right on the left)
    disp = data.T[::-1, ::-1]
    spacing = (float(zooms[1]), float(zooms[0]))
    if shape is not None:
        disp = _fit_to_shape(disp, spacing, shape)
    disp = np.clip(np.nan_to_num(disp), 0, None)
    m = disp.max()
    if m > 0:
        disp = disp / m
    else:
        log.warning("slice %d along axis %d of %s is empty (all zero)", index, axis, p)
    return np.ascontiguousarray(disp, dtype=np.float32)


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
    if path is None:
        path = DEFAULT_BRAIN
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"the default brain template {DEFAULT_BRAIN!r} is not installed; install it with "
                "'apt-get install mricron-data' or pass path= to any NIfTI volume"
            )
    return nifti_slice(path, index=index, axis=axis, shape=shape)
