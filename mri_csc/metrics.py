r"""Image-quality metrics on magnitude images, fastMRI conventions.

* Complex inputs are compared by magnitude (``abs``); real inputs as they are.
* The data range is the maximum of the (cropped) reference, as in fastMRI.
* ``crop=(h, w)`` keeps the centred ``h x w`` block of the last two axes first
  (fastMRI's ``center_crop``: start ``(n - h) // 2``).
* ``mask`` (boolean, the image's shape, or the cropped shape) restricts the
  metric to a foreground: PSNR and NMSE are computed over the masked pixels,
  SSIM is the mean of the SSIM map over them.

The SSIM map is scikit-image's (``structural_similarity``) re-implemented with
SciPy filters — 7x7 uniform window with sample covariance by default, or the
Gaussian window of Wang et al. (σ = 1.5, 11x11, population covariance) — so
that the values agree with ``skimage.metrics`` without depending on it. 3D
inputs are scored slice by slice along axis 0 for SSIM (as fastMRI does); PSNR
and NMSE use the whole volume. Inputs may be NumPy or CuPy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .backend import to_numpy

__all__ = ["evaluate", "nmse", "psnr", "ssim", "ssim_map"]


def _center_crop(a: np.ndarray, crop) -> np.ndarray:
    if crop is None:
        return a
    try:
        h, w = (int(c) for c in crop)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"crop must be a pair (h, w) of ints; got {crop!r}") from exc
    H, W = a.shape[-2:]
    if not (0 < h <= H and 0 < w <= W):
        raise ValueError(
            f"crop {(h, w)} must be positive and no larger than the image's last two axes {(H, W)}"
        )
    y0, x0 = (H - h) // 2, (W - w) // 2
    return a[..., y0 : y0 + h, x0 : x0 + w]


def _prepare(ref, img, mask, crop):
    ref, img = to_numpy(ref), to_numpy(img)
    if ref.shape != img.shape:
        raise ValueError(f"ref and img must have the same shape; got {ref.shape} and {img.shape}")
    if ref.ndim not in (2, 3):
        raise ValueError(f"ref must be a 2D or 3D image; got shape {ref.shape}")
    ref = np.abs(ref) if np.iscomplexobj(ref) else ref
    img = np.abs(img) if np.iscomplexobj(img) else img
    ref, img = ref.astype(np.float64), img.astype(np.float64)
    for name, a in (("ref", ref), ("img", img)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or Inf values")
    full_shape = ref.shape
    ref, img = _center_crop(ref, crop), _center_crop(img, crop)
    if mask is not None:
        mask = np.asarray(to_numpy(mask))
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array; got dtype {mask.dtype}")
        if mask.shape == full_shape:
            mask = _center_crop(mask, crop)
        elif mask.shape != ref.shape:
            raise ValueError(
                f"mask must have the image shape {full_shape} or the cropped shape {ref.shape}; got {mask.shape}"
            )
        if not mask.any():
            raise ValueError("mask selects no pixels")
    return ref, img, mask


def _data_range(ref: np.ndarray) -> float:
    dr = float(ref.max())
    if dr <= 0:
        raise ValueError("the reference's maximum is <= 0; the data range (reference max) must be positive")
    return dr


def psnr(ref, img, *, mask=None, crop: Sequence[int] | None = None) -> float:
    r"""Peak signal-to-noise ratio in dB, :math:`10\log_{10}(\max(r)^2 / \mathrm{MSE})`.

    ``max(r)`` is the maximum of the (cropped, magnitude) reference over the
    whole image; the mean squared error is over ``mask`` when given.
    Matches ``skimage.metrics.peak_signal_noise_ratio(ref, img, data_range=ref.max())``.
    """
    ref, img, mask = _prepare(ref, img, mask, crop)
    dr = _data_range(ref)
    d = (ref - img) if mask is None else (ref - img)[mask]
    mse = float(np.mean(d**2))
    return float("inf") if mse == 0 else float(10 * np.log10(dr**2 / mse))


def nmse(ref, img, *, mask=None, crop: Sequence[int] | None = None) -> float:
    r"""Normalised mean squared error :math:`\|r - x\|^2 / \|r\|^2` (over ``mask`` when given).

    Equals ``skimage.metrics.normalized_root_mse(ref, img) ** 2`` (Euclidean normalisation).
    """
    ref, img, mask = _prepare(ref, img, mask, crop)
    if mask is not None:
        ref, img = ref[mask], img[mask]
    den = float(np.sum(ref**2))
    if den == 0:
        raise ValueError("the reference is zero (over the mask): NMSE is undefined")
    return float(np.sum((ref - img) ** 2) / den)


def ssim_map(
    ref: np.ndarray,
    img: np.ndarray,
    data_range: float,
    *,
    gaussian: bool = False,
    win_size: int | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[np.ndarray, int]:
    r"""The 2D SSIM map of two real images and the border width to ignore.

    .. math::
        \mathrm{SSIM} = \frac{(2\mu_r\mu_x + C_1)(2\sigma_{rx} + C_2)}
                             {(\mu_r^2 + \mu_x^2 + C_1)(\sigma_r^2 + \sigma_x^2 + C_2)},
        \quad C_i = (K_i L)^2,

    with local means and (co)variances from a ``win_size``-square uniform
    window (sample covariance, default 7) or a Gaussian window (σ = 1.5,
    truncated at 3.5σ, population covariance), ``reflect`` boundaries — the
    definitions of ``skimage.metrics.structural_similarity``.

    Returns
    -------
    (numpy.ndarray, int)
        The map, and ``(win_size - 1) // 2``: skimage averages the map without
        that many border pixels on each side.
    """
    if gaussian:
        sigma, truncate = 1.5, 3.5
        win = 2 * int(truncate * sigma + 0.5) + 1 if win_size is None else int(win_size)

        def filt(a):
            return ndimage.gaussian_filter(a, sigma=sigma, truncate=truncate)

        cov_norm = 1.0
    else:
        win = 7 if win_size is None else int(win_size)
        if win < 3 or win % 2 == 0:
            raise ValueError(f"win_size must be an odd integer >= 3; got {win_size}")

        def filt(a):
            return ndimage.uniform_filter(a, size=win)

        np_ = win**ref.ndim
        cov_norm = np_ / (np_ - 1)
    if min(ref.shape) < win:
        raise ValueError(f"images of shape {ref.shape} are smaller than the SSIM window {win}")
    ux, uy = filt(ref), filt(img)
    uxx, uyy, uxy = filt(ref * ref), filt(img * img), filt(ref * img)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    return (a1 * a2) / (b1 * b2), (win - 1) // 2


def ssim(
    ref,
    img,
    *,
    mask=None,
    crop: Sequence[int] | None = None,
    gaussian: bool = False,
    win_size: int | None = None,
) -> float:
    """Structural similarity of the magnitudes (data range = reference max).

    Without ``mask`` this equals ``skimage.metrics.structural_similarity(ref,
    img, data_range=ref.max())`` (``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` when ``gaussian=True``): the SSIM map's mean
    without a border of ``(win - 1) // 2`` pixels. With ``mask`` the map is
    averaged over the masked pixels inside that border. 3D inputs: the maps of
    the slices along axis 0 are pooled (data range from the whole volume).
    """
    ref, img, mask = _prepare(ref, img, mask, crop)
    dr = _data_range(ref)
    refs, imgs = (ref[None], img[None]) if ref.ndim == 2 else (ref, img)
    masks = None if mask is None else (mask[None] if mask.ndim == 2 else mask)
    total, count = 0.0, 0
    for i in range(refs.shape[0]):
        s, pad = ssim_map(refs[i], imgs[i], dr, gaussian=gaussian, win_size=win_size)
        inner = np.zeros(s.shape, bool)
        inner[pad : s.shape[0] - pad, pad : s.shape[1] - pad] = True
        if masks is not None:
            inner &= masks[i]
        total += float(s[inner].sum(dtype=np.float64))
        count += int(inner.sum())
    if count == 0:
        raise ValueError("the mask selects no pixels away from the image border")
    return total / count


def evaluate(ref, img, mask=None, crop: Sequence[int] | None = None) -> dict[str, float]:
    """PSNR (dB), SSIM and NMSE of ``img`` against ``ref`` as a dict with those keys."""
    return {
        "psnr": psnr(ref, img, mask=mask, crop=crop),
        "ssim": ssim(ref, img, mask=mask, crop=crop),
        "nmse": nmse(ref, img, mask=mask, crop=crop),
    }
