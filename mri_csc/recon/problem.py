r"""Validation and scaling of a reconstruction problem.

:func:`make_problem` checks every input before any heavy work starts, infers
the mask when none is given, scales the data and puts everything on one device.

Scaling follows BART's ``pics``: the k-space is divided by a high percentile
(99th) of the magnitude of the coil-combined low-resolution image
(:math:`\sum_c \bar S_c F^{-1} W y_c` with ``W`` a centre window), so that one
default regularisation weight λ carries across data sets. Results are
multiplied back before they are returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..backend import Device, get_xp, resolve_device, to_device
from ..operators import Sense
from ..prior.phase import box_window, hann_window, lowres_image
from ..validate import check_maps_match_kspace, check_recon_inputs, unit_power_gain

log = logging.getLogger(__name__)

__all__ = ["ReconProblem", "make_problem", "data_scale", "check_scale"]

_COMPLEX = (np.complex64, np.complex128)


@dataclass
class ReconProblem:
    """A validated, scaled reconstruction problem on one device.

    Attributes
    ----------
    kspace : array, ``(coils, *image_shape)``
        Scaled k-space (masked: zero where not sampled).
    maps : array, ``(coils, *image_shape)``
        Coil sensitivities.
    mask : array, broadcastable to ``kspace``
        Sampling mask (float, 0/1 or weights), shape ``image_shape``.
    scale : float
        The factor the k-space was divided by.
    maps_gain : float
        The factor the coil maps were divided by to unit power
        (:func:`~mri_csc.validate.unit_power_gain`); the image of the maps as given is the
        solution divided by it.
    device : Device
    operator : LinearOperator
        The forward operator (built once by :func:`make_problem`, or on first use; SENSE here).
    metadata : dict
        Free-form facts about the data (e.g. from a file header).
    """

    kspace: object
    maps: object
    mask: object
    scale: float
    device: Device
    operator: object = None
    metadata: dict = field(default_factory=dict)
    maps_gain: float = 1.0

    def __post_init__(self):
        if self.operator is None:
            self.operator = Sense(self.maps, self.mask)
        self._support = None
        self._weighted = None

    @property
    def xp(self):
        return get_xp(self.kspace)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.maps.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.image_shape)

    @property
    def support(self):
        """Boolean image-domain support: where any coil map is non-zero (computed once)."""
        if self._support is None:
            self._support = self.xp.any(self.maps != 0, axis=0)
        return self._support

    def sense(self) -> Sense:
        """The forward operator ``A = M F S`` (:attr:`operator`, built once)."""
        return self.operator

    def adjoint_image(self):
        r""":math:`A^H y`."""
        return self.operator.adjoint(self.kspace)

    @property
    def weighted(self) -> bool:
        """Whether the mask holds data weights (values strictly between 0 and 1), not a 0/1 pattern."""
        if self._weighted is None:
            m = self.mask
            self._weighted = m is not None and not bool(self.xp.all((m == 0) | (m == 1)))
        return self._weighted

    def measured(self):
        r"""The samples as acquired: :attr:`kspace` is :math:`w\,y` (``mask`` :math:`w` applied once,
        :math:`A = w F S`, so the data term is :math:`\tfrac12\|w(FSx - y)\|^2`); this is :math:`y` on the
        sampled points, zero elsewhere. The same array for a 0/1 mask or none."""
        if not self.weighted:
            return self.kspace
        xp, m = self.xp, self.mask
        return xp.where(m > 0, self.kspace / xp.where(m > 0, m, 1), 0).astype(self.kspace.dtype, copy=False)

    def data_weights(self):
        r"""The weights :math:`W = w^2` of :math:`\tfrac12\|W^{1/2}(FSx - y)\|^2`, the form of SigPy's ``weights``
        and BART's pattern (both apply :math:`\sqrt W` to model and data; with :meth:`measured` they fit the
        same objective as ours). The mask itself for a 0/1 mask or none."""
        return self.mask * self.mask if self.weighted else self.mask

    def lowres_image(self, width: int = 24):
        r"""Low-resolution image :math:`A^H(h\,y)` of the calibration region (Hann window ``h``, ``width`` wide).

        The phase estimate's input; see :func:`mri_csc.prior.phase.lowres_image`.
        """
        xp = self.xp
        return lowres_image(self.operator, self.kspace,
                            hann_window(self.kspace.shape[1:], width, xp, self.kspace.real.dtype))


def infer_mask(kspace):
    """Sampled points: where any coil's k-space is non-zero (float32, image shape)."""
    xp = get_xp(kspace)
    return xp.any(kspace != 0, axis=0).astype(np.float32)


def data_scale(kspace, maps=None, mask=None, *, op=None, percentile: float = 99.0, calib: int = 24) -> float:
    r"""BART-style data scale: a high percentile of the magnitude of the low-resolution image
    :func:`~mri_csc.prior.phase.lowres_image` (:math:`A^H W y`, ``W`` a centred ``calib``-wide box),
    so the scale reflects the object, not the noise or the aliasing.

    ``op`` is the forward operator; without it, SENSE from ``maps`` and ``mask``.
    """
    xp = get_xp(kspace)
    if op is None:
        op = Sense(maps, mask)
    low = lowres_image(op, kspace, box_window(kspace.shape[1:], calib, xp, kspace.real.dtype))
    combined = xp.abs(low)
    s = float(xp.percentile(combined.ravel(), percentile))
    if not np.isfinite(s) or s <= 0:
        s = float(combined.max())
    return s if s > 0 else 1.0


def check_scale(scale) -> "bool | float":
    """``scale`` checked: ``True`` (data scale, :func:`data_scale`), ``False`` (``None``: the same) or the
    factor to divide the k-space by, a finite number > 0; returned as a bool or a float.

    Raises
    ------
    ValueError
        Anything else (a string such as ``"yes"``, a list, 0, NaN), naming ``scale`` and the accepted values.
    """
    if scale is None or isinstance(scale, (bool, np.bool_)):
        return bool(scale)
    try:
        factor = float(scale) if np.ndim(scale) == 0 and not isinstance(scale, (str, bytes)) else float("nan")
    except (TypeError, ValueError):
        factor = float("nan")
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError("scale must be True (scale the data as BART does), False or None (do not scale) or a "
                         f"finite number > 0 (divide by it); got {scale!r}")
    return factor


def scale_factor(scale, auto) -> float:
    """The factor the k-space is divided by: ``auto()`` for ``scale=True``, 1 for ``False``/``None``,
    else ``scale`` itself (a positive finite number, :func:`check_scale`)."""
    scale = check_scale(scale)
    if scale is True:
        return float(auto())
    return 1.0 if scale is False else scale


def _warn_empty_samples(k, m) -> None:
    """Warn when a given mask marks sampled points whose k-space is exactly zero in every coil (more than a fifth
    of them): they enter the data term as measured zeros, which a mask shifted against the data (or a file's
    ``mask`` that does not belong to its k-space) gives without an error. Below a fifth: zero-padded columns
    (fastMRI knees) and the like, which are zero in the reference too."""
    xp = get_xp(k)
    sampled = m != 0
    n = int(sampled.sum())
    empty = int((sampled & ~xp.any(k != 0, axis=0)).sum())
    if n and empty > 0.2 * n:
        log.warning("mask: %d of the %d points it marks sampled (%.0f%%) hold exactly zero k-space in every coil; "
                    "they are fitted as measured zeros: check that the mask belongs to this k-space (same "
                    "orientation and shift), or pass mask=None to take the sampled points from the data",
                    empty, n, 100 * empty / n)


def make_problem(kspace, coil_maps, mask=None, device: "str | Device" = "cpu", scale: bool | float = True, *,
                 check_maps: bool = True) -> ReconProblem:
    """Validate inputs, infer the mask, scale and move everything to ``device``.

    Parameters
    ----------
    kspace : array, ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, complex
    coil_maps : array, same shape as ``kspace``, complex
    mask : array or None
        Broadcastable to ``kspace.shape`` (typically the image shape). ``None``
        infers it from the non-zero k-space samples.
    device : str or Device
    scale : bool or float
        ``True`` scales as :func:`data_scale`; a float divides by that value;
        ``False`` (or ``None``) does not scale (:func:`check_scale`).
    check_maps : bool
        Warn when the maps do not explain the k-space's calibration coil images
        (:func:`~mri_csc.validate.check_maps_match_kspace`).

    Raises
    ------
    TypeError, ValueError
        Naming the argument, what was received and what was expected; k-space
        that is all zeros, or zero wherever the mask samples, has no image and is refused.
    """
    dev = resolve_device(device)
    coil_maps = check_recon_inputs(kspace, coil_maps, mask, normalise=False)  # mri_csc.validate: the input layer
    gain = unit_power_gain(coil_maps)  # solved at unit power, the image returned in the maps' units
    get_xp(kspace, coil_maps, mask)  # raises when NumPy and CuPy are mixed
    xp = get_xp(coil_maps)
    if not bool(xp.any(coil_maps != 0)):
        raise ValueError("coil_maps are all zero; expected sensitivities that are non-zero on the object")

    cdtype = np.complex128 if np.dtype(kspace.dtype) == np.complex128 else np.complex64
    k = to_device(kspace, dev).astype(cdtype, copy=False)
    s = to_device(coil_maps, dev).astype(cdtype, copy=False)
    if gain != 1.0:
        s = s / s.real.dtype.type(gain)
    if mask is None:
        m = infer_mask(k)
    else:
        m = to_device(mask, dev).astype(k.real.dtype, copy=False)
        m = dev.xp.broadcast_to(m, k.shape)
        if m.shape[0] > 1 and not bool((m == m[:1]).all()):
            raise ValueError("mask differs between coils; expected one sampling pattern shared by all coils")
        m = dev.xp.ascontiguousarray(m[0])
        _warn_empty_samples(k, m)
    if not bool(m.any()):
        raise ValueError("mask samples no k-space point (all zero); expected at least the calibration region")
    if check_maps:
        check_maps_match_kspace(k * (m != 0), s)  # on the samples, not on data weights (which blur the coil images)
    k = k * m
    if not bool(k.any()):
        raise ValueError(f"kspace is zero at every point the mask samples ({int((m != 0).sum())} points): there is "
                         "no image to reconstruct; check that the mask belongs to this k-space (same orientation "
                         "and shift), or pass mask=None to take the sampled points from the data")
    op = Sense(s, m)

    factor = scale_factor(scale, lambda: data_scale(k, op=op))
    if factor != 1.0:
        k = k / k.real.dtype.type(factor)
    return ReconProblem(kspace=k, maps=s, mask=m, scale=factor, device=dev, operator=op, maps_gain=gain)
