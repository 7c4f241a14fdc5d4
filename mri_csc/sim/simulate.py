r"""Simulated multi-coil Cartesian k-space and ready-made test data sets.

The forward model is that of :class:`mri_csc.operators.Sense`,

.. math::  y_c = M \left( F (S_c x) + n_c \right),

with complex white Gaussian noise :math:`n_c` at a stated SNR. All random
draws (mask, phase, noise) come from one NumPy ``Generator`` on the CPU, so a
seed gives the same data whatever device later reconstructs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..backend import fftc, to_numpy
from ._checks import check_image_shape
from .coils import birdcage_maps
from .masks import make_rng, realized_acceleration, sample_mask
from .phantoms import brain_slice, brain_volume, nifti_slice, nifti_volume, shepp_logan
from .phase import smooth_phase

__all__ = ["PHANTOMS", "Dataset", "make_dataset", "simulate_kspace", "support_mask"]

log = logging.getLogger(__name__)

PHANTOMS = ("shepp-logan", "brain")


def _resample_centred(a: np.ndarray, out_shape: tuple[int, ...], order: int = 3) -> np.ndarray:
    """Resample the trailing axes of ``a`` onto a finer grid that keeps the FFT centre fixed.

    Output pixel ``j`` along an axis of input size ``n`` and output size ``m`` is
    taken at input coordinate ``n//2 + (j - m//2) * n / m`` so that the centred
    FFT's reference point (index ``n//2``) maps onto the output's (``m//2``):
    no spurious linear phase appears in k-space.
    """
    nd = len(out_shape)
    in_shape = a.shape[-nd:]
    scale = np.array([n / m for n, m in zip(in_shape, out_shape)])
    offset = np.array([n // 2 - (m // 2) * s for n, m, s in zip(in_shape, out_shape, scale)])
    lead = a.shape[:-nd]
    flat = a.reshape((-1,) + in_shape)
    out = np.empty((flat.shape[0],) + tuple(out_shape), dtype=np.complex128)
    for i, img in enumerate(flat):
        parts = []
        for part in (img.real, img.imag):
            parts.append(
                ndimage.affine_transform(
                    part, scale, offset=offset, output_shape=tuple(out_shape), order=order, mode="nearest"
                )
            )
        out[i] = parts[0] + 1j * parts[1]
    return out.reshape(lead + tuple(out_shape))


def simulate_kspace(
    image,
    maps,
    mask=None,
    *,
    snr_db: float | None = None,
    rng: np.random.Generator | None = None,
    seed: int | None = None,
    oversample: float = 1,
) -> np.ndarray:
    r"""Multi-coil k-space of ``image`` seen through coil ``maps``, sampled by ``mask``.

    Parameters
    ----------
    image : array, shape ``(ny, nx)`` or ``(nz, ny, nx)``
        Complex (or real) ground-truth image.
    maps : array, shape ``(coils, *image.shape)``
        Coil sensitivities.
    mask : array, optional
        Sampling mask broadcasting against ``image.shape`` (``None``: fully sampled).
    snr_db : float, optional
        Signal-to-noise ratio in dB, defined on the *sampled* k-space as
        :math:`\mathrm{SNR} = 10\log_{10}\big(\overline{|y|^2} / \sigma^2\big)`,
        where :math:`\overline{|y|^2}` is the mean power of the noiseless
        samples over all coils and sampled locations and :math:`\sigma^2 =
        \mathbb E|n|^2` is the complex noise variance (:math:`\sigma^2/2` in
        each of the real and imaginary parts). ``None`` adds no noise.
    rng, seed
        Noise generator or its seed (not both).
    oversample : float
        ``1`` gives exactly :math:`M F S x` (the "inverse crime" of simulating
        with the reconstruction's own model). ``> 1`` simulates on a grid
        ``oversample`` times finer: image and maps are interpolated (cubic
        spline, FFT centre kept fixed), transformed, the central k-space block
        of the target size is kept and scaled by
        :math:`\sqrt{N/N_\mathrm{fine}}` so intensities match the
        orthonormal FFT at the target size.

    Returns
    -------
    numpy.ndarray
        complex64 k-space ``(coils, *image.shape)``, zero where ``mask`` is 0.
    """
    image = np.asarray(to_numpy(image))
    maps = np.asarray(to_numpy(maps))
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be 2D (ny, nx) or 3D (nz, ny, nx); got shape {image.shape}")
    if maps.ndim != image.ndim + 1 or maps.shape[1:] != image.shape:
        raise ValueError(f"maps must have shape (coils, *{image.shape}); got {maps.shape}")
    if not np.isfinite(image).all() or not np.isfinite(maps).all():
        raise ValueError("image or maps contain NaN or Inf values")
    if mask is not None:
        mask = np.asarray(to_numpy(mask))
        try:
            np.broadcast_shapes(mask.shape, image.shape)
        except ValueError as exc:
            raise ValueError(
                f"mask of shape {mask.shape} does not broadcast against image {image.shape}"
            ) from exc
    try:
        oversample = float(oversample)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"oversample must be a number >= 1; got {oversample!r}") from exc
    if not oversample >= 1:
        raise ValueError(f"oversample must be >= 1; got {oversample}")
    if snr_db is not None and not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be a finite number or None; got {snr_db!r}")
    gen = make_rng(seed, rng)
    axes = tuple(range(-image.ndim, 0))
    x = image.astype(np.complex64)
    s = maps.astype(np.complex64)

    if oversample == 1:
        ksp = fftc(s * x, axes)
    else:
        fine = tuple(round(n * oversample) for n in image.shape)
        x_f = _resample_centred(x, fine).astype(np.complex64)
        s_f = _resample_centred(s, fine).astype(np.complex64)
        k_f = fftc(s_f * x_f, axes)
        crop = tuple(slice(m // 2 - n // 2, m // 2 - n // 2 + n) for n, m in zip(image.shape, fine))
        scale = np.sqrt(np.prod(image.shape) / np.prod(fine))
        ksp = (k_f[(slice(None),) + crop] * scale).astype(np.complex64)

    if mask is not None:
        ksp = ksp * mask.astype(np.float32)
    if snr_db is not None:
        sampled = np.broadcast_to(mask != 0, ksp.shape) if mask is not None else np.ones(ksp.shape, bool)
        p_sig = float(np.mean(np.abs(ksp[sampled]) ** 2))
        sigma2 = p_sig / 10 ** (snr_db / 10)
        noise = gen.standard_normal(ksp.shape + (2,), dtype=np.float32) @ np.array([1, 1j], np.complex64)
        noise *= np.float32(np.sqrt(sigma2 / 2))
        ksp = ksp + noise * sampled
        log.info("simulate_kspace: SNR %.1f dB, noise std %.3g (complex)", snr_db, np.sqrt(sigma2))
    return np.ascontiguousarray(ksp, dtype=np.complex64)


def support_mask(magnitude, threshold: float = 0.05, closing: int = 3) -> np.ndarray:
    """Boolean foreground: ``magnitude > threshold * max``, closed and with holes filled.

    ``closing`` is the half-width of the square structuring element of the
    morphological closing (0 skips it).
    """
    m = np.abs(np.asarray(to_numpy(magnitude)))
    fg = m > threshold * m.max()
    if closing > 0:
        st = np.ones((2 * closing + 1,) * m.ndim, bool)
        fg = ndimage.binary_closing(np.pad(fg, closing), structure=st)[(slice(closing, -closing),) * m.ndim]
    return ndimage.binary_fill_holes(fg)


@dataclass
class Dataset:
    """A simulated acquisition and its ground truth.

    Attributes
    ----------
    kspace : complex64 ``(coils, *shape)``
        Undersampled noisy k-space (zero off the mask).
    maps : complex64 ``(coils, *shape)``
        True coil maps used to simulate.
    mask : float32 ``shape``
        0/1 sampling mask.
    image : complex64 ``shape``
        Ground-truth complex image ``magnitude_ref * exp(1j * phase)``.
    magnitude_ref : float32 ``shape``
        Ground-truth magnitude (max 1).
    support : bool ``shape``
        Foreground for metrics (see :func:`support_mask`).
    acceleration : float
        Realised acceleration of ``mask``.
    phase : float32 ``shape``
        The phase map (zeros when none).
    params : dict
        The arguments that made it.
    """

    kspace: np.ndarray
    maps: np.ndarray
    mask: np.ndarray
    image: np.ndarray
    magnitude_ref: np.ndarray
    support: np.ndarray
    acceleration: float
    phase: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)


def make_dataset(
    phantom: str = "shepp-logan",
    shape: Sequence[int] = (128, 128),
    n_coils: int = 8,
    mask: str = "poisson",
    accel: float = 4,
    calib=None,
    phase: str | None = "random",
    phase_amplitude: float = np.pi,
    snr_db: float | None = 30,
    seed: int | None = 0,
    slice_index: int | None = None,
    *,
    oversample: float = 1,
    rng: np.random.Generator | None = None,
) -> Dataset:
    """Build a complete simulated test case: phantom, phase, coils, mask, noisy k-space.

    Parameters
    ----------
    phantom : str
        ``"shepp-logan"``, ``"brain"`` (the Colin 27 T1 template: an axial slice,
        :func:`~mri_csc.sim.phantoms.brain_slice`, or for a 3D ``shape`` an axial slab,
        :func:`~mri_csc.sim.phantoms.brain_volume`) or the path of a NIfTI volume (the same:
        :func:`~mri_csc.sim.phantoms.nifti_slice`, :func:`~mri_csc.sim.phantoms.nifti_volume`).
    shape : tuple of int
        Image shape ``(ny, nx)`` or ``(nz, ny, nx)``. A 3D brain/NIfTI phantom is an axial slab
        of isotropic voxels (the in-plane pixel size) centred in the z field of view, with
        about 10 % empty slices at each end (:func:`~mri_csc.sim.phantoms.default_slab`); its
        mask is then a pattern over the phase-encoding plane (kz, ky) with the readout kx fully
        sampled (:func:`~mri_csc.sim.masks.sample_mask`).
    n_coils : int
        Birdcage coils.
    mask : str
        Mask kind for :func:`~mri_csc.sim.masks.sample_mask`.
    accel, calib
        Acceleration and calibration size for the mask.
    phase : {"random", "polynomial", None}
        Smooth phase kind (``None``: real image).
    phase_amplitude : float
        Largest absolute phase, radians.
    snr_db : float or None
        k-space SNR (see :func:`simulate_kspace`).
    seed : int, optional
        Seeds the one generator that draws mask, phase and noise in that order.
    slice_index : int, optional
        Slice of a brain/NIfTI volume, or for a 3D ``shape`` the slab's centre slice (image slice
        ``nz // 2``); default the middle of the volume.
    oversample : float
        See :func:`simulate_kspace`.
    rng : numpy.random.Generator, optional
        Use this generator instead of ``seed``.
    """
    shape = check_image_shape(shape)
    if not isinstance(phantom, (str, os.PathLike)):
        raise TypeError(
            f"phantom must be 'shepp-logan', 'brain' or a NIfTI path; got {type(phantom).__name__}"
        )
    if phase not in (None, "random", "polynomial"):
        raise ValueError(f"phase must be 'random', 'polynomial' or None; got {phase!r}")
    gen = make_rng(None if rng is not None else seed, rng)
    if phantom == "shepp-logan":
        mag = shepp_logan(shape)
    elif phantom == "brain":
        mag = (brain_slice if len(shape) == 2 else brain_volume)(index=slice_index, shape=shape)
    elif os.path.isfile(phantom):
        mag = (nifti_slice if len(shape) == 2 else nifti_volume)(phantom, index=slice_index, shape=shape)
    else:
        raise ValueError(
            f"phantom must be one of {PHANTOMS} or the path of an existing NIfTI file; got {phantom!r}"
        )
    m = sample_mask(mask, shape, accel, calib=calib, rng=gen)
    phi = (
        smooth_phase(shape, phase, amplitude=phase_amplitude, rng=gen)
        if phase is not None
        else np.zeros(shape, np.float32)
    )
    image = (mag * np.exp(1j * phi)).astype(np.complex64)
    maps = birdcage_maps(shape, n_coils)
    ksp = simulate_kspace(image, maps, m, snr_db=snr_db, rng=gen, oversample=oversample)
    params = {
        "phantom": str(phantom),
        "shape": shape,
        "n_coils": n_coils,
        "mask": mask,
        "accel": accel,
        "calib": calib,
        "phase": phase,
        "phase_amplitude": phase_amplitude,
        "snr_db": snr_db,
        "seed": seed,
        "slice_index": slice_index,
        "oversample": oversample,
    }
    return Dataset(
        kspace=ksp,
        maps=maps,
        mask=m,
        image=image,
        magnitude_ref=mag.astype(np.float32),
        support=support_mask(mag),
        acceleration=realized_acceleration(m),
        phase=phi,
        params=params,
    )


def phantom_affine(phantom: str, shape, slice_index: "int | None" = None) -> "np.ndarray | None":
    r"""The NIfTI (RAS, mm) affine of the image :func:`make_dataset` makes from a NIfTI phantom.

    The image ``(ny, nx)`` is an axial slice of the phantom reoriented to RAS
    (:func:`nibabel.as_closest_canonical`, affine :math:`A`), shown radiologically
    (:func:`~mri_csc.sim.phantoms.nifti_slice`: display row :math:`\rho = n_y - 1 - j`,
    column :math:`n_x - 1 - i`), resampled towards square pixels of side ``p`` edge to edge
    (``ndimage.zoom`` to :math:`m_x = \operatorname{round}(n_x s_x / p)` columns, so its step is
    :math:`p_x = n_x s_x / m_x`, within that rounding of ``p``; :math:`p_y` likewise) and
    centre-padded or cropped by ``o`` pixels. Output pixel ``(c, r)`` (the NIfTI ``(i, j)``
    of our ``(ny, nx)`` array, the readout ``c`` first) then sits at the canonical voxel
    :math:`i = n_x - \tfrac12 - (c - o_x + \tfrac12)\,p_x/s_x`,
    :math:`j = n_y - \tfrac12 - (r - o_y + \tfrac12)\,p_y/s_y`, ``k`` the slice index, and
    the affine is :math:`A` composed with that map. A volume ``(nz, ny, nx)``
    (:func:`~mri_csc.sim.phantoms.nifti_volume`) has the same in-plane map, and its slice
    ``q`` (the NIfTI's third index) sits at :math:`k = k_0 + (q - \lfloor n_z/2 \rfloor)\,p/s_z`,
    :math:`k_0` the slab's centre slice: voxels of :math:`p_x \times p_y \times p`, cubic up to the
    rounding of :math:`m_x, m_y`. ``None`` for
    ``"shepp-logan"`` (no geometry) or a ``shape`` of neither 2 nor 3 sizes.
    """
    import nibabel as nib  # noqa: PLC0415

    from .phantoms import DEFAULT_BRAIN, _square_pixel  # noqa: PLC0415

    path = DEFAULT_BRAIN if phantom == "brain" else phantom
    if phantom == "shepp-logan" or not os.path.isfile(path) or len(shape) not in (2, 3):
        return None
    img = nib.as_closest_canonical(nib.load(str(path)))
    sx, sy, sz = (float(z) for z in img.header.get_zooms()[:3])
    nx0, ny0, nz0 = img.shape[:3]
    k = nz0 // 2 if slice_index is None else int(slice_index) % nz0
    ny, nx = (int(n) for n in shape[-2:])
    pix = _square_pixel((ny0, nx0), (sy, sx), (ny, nx))  # as _fit_to_shape: square pixels that fit both axes
    offsets, steps = [], []
    for n_disp, spacing, n_out in ((nx0, sx, nx), (ny0, sy, ny)):
        n_in = int(round(n_disp * spacing / pix))  # ndimage.zoom's output size
        offsets.append((n_out - n_in) // 2 if n_in < n_out else -((n_in - n_out) // 2))
        # zoom(grid_mode=True) maps edge to edge: its pixels are n_disp * spacing / n_in wide, not p
        # (ch2 into 64 x 64: 181 mm over 53 columns, 3.415 mm, against p = 3.391 mm)
        steps.append(n_disp * spacing / n_in if not np.isclose(spacing, pix) else pix)
    ox, oy = offsets
    px, py = steps
    # slices: 2-D, the one slice k (the NIfTI's own thickness); 3-D, p apart with slice nz // 2 at k
    dz, kz = (1.0, k) if len(shape) == 2 else (pix / sz, k - (int(shape[0]) // 2) * pix / sz)
    # canonical voxel (i, j, k, 1) = V @ (c, r, q, 1)
    V = np.array([[-px / sx, 0, 0, nx0 - 0.5 - (0.5 - ox) * px / sx],
                  [0, -py / sy, 0, ny0 - 0.5 - (0.5 - oy) * py / sy],
                  [0, 0, dz, kz],
                  [0, 0, 0, 1]])
    return np.asarray(img.affine, float) @ V


def phantom_voxel_mm(phantom: str, shape) -> "tuple[float, float, float] | None":
    """The voxel size (mm; x, y, slice) of the image :func:`make_dataset` makes from a NIfTI phantom.

    The lengths of :func:`phantom_affine`'s columns: in-plane, the resampler's steps :math:`p_x, p_y`
    (within its rounding of the larger field of view over ``shape``); the slice thickness the NIfTI's
    for a 2-D ``shape`` and ``p`` for a 3-D one. ``None`` for ``"shepp-logan"``.
    """
    aff = phantom_affine(phantom, shape)
    if aff is None:
        return None
    return tuple(float(v) for v in np.linalg.norm(aff[:3, :3], axis=0))
