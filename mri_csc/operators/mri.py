r"""MRI operators: centred FFT, coil sensitivities, sampling mask and SENSE.

The multi-coil Cartesian forward model is

.. math::  y_c = M F (S_c x) + n_c, \qquad A = M F S,

for images ``x`` of shape ``(ny, nx)`` or ``(nz, ny, nx)`` and k-space
``y`` of shape ``(coils, *image_shape)``. ``F`` is the centred orthonormal
FFT over the image axes, ``S`` multiplies by each coil map and ``M`` by a
sampling mask that broadcasts against k-space. Every operator keeps its
input's dtype (complex64 in, complex64 out).
"""

from __future__ import annotations

from ..backend import fftc, get_xp, ifftc
from .base import LinearOperator

__all__ = ["FFT", "CoilSensitivity", "Mask", "Sense"]


class FFT(LinearOperator):
    """Centred orthonormal FFT over the last ``ndim`` axes of arrays of ``shape``."""

    def __init__(self, shape, ndim: int = 2):
        super().__init__(shape, shape)
        self.axes = tuple(range(-ndim, 0))

    def _apply(self, x):
        return fftc(x, self.axes)

    def _adjoint(self, y):
        return ifftc(y, self.axes)

    def _normal(self, x):
        return x


class CoilSensitivity(LinearOperator):
    r"""Multiply an image by each coil map: :math:`x \mapsto (S_c x)_c`.

    Parameters
    ----------
    maps : array, shape ``(coils, *image_shape)``
        Coil sensitivities, on the device the operator will run on.
    """

    def __init__(self, maps):
        super().__init__(maps.shape[1:], maps.shape)
        self.maps = maps
        self._maps_conj = maps.conj()

    def _apply(self, x):
        return self.maps * x

    def _adjoint(self, y):
        return (self._maps_conj * y).sum(axis=0)

    def sum_of_squares(self):
        r""":math:`\sum_c |S_c|^2`, the diagonal of :math:`S^H S`."""
        xp = get_xp(self.maps)
        return xp.sum(xp.abs(self.maps) ** 2, axis=0)


class Mask(LinearOperator):
    """Multiply by a (0/1 or weighting) sampling mask broadcast against ``shape``."""

    def __init__(self, mask, shape):
        super().__init__(shape, shape)
        self.mask = mask

    def _apply(self, x):
        return x * self.mask

    _adjoint = _apply


class Sense(LinearOperator):
    r"""Multi-coil Cartesian SENSE operator :math:`A = M F S`.

    Parameters
    ----------
    maps : array, shape ``(coils, *image_shape)``
        Coil sensitivity maps (2D or 3D image shape).
    mask : array or None
        Sampling mask broadcasting against ``maps.shape``; ``None`` is full sampling.

    Notes
    -----
    ``normal`` fuses the passes, :math:`A^H A x = \sum_c \bar S_c F^H M F S_c x`,
    applying the mask once (it is idempotent for 0/1 masks: ``M^H M`` is
    computed as ``|M|^2`` so weighted masks stay correct).
    """

    def __init__(self, maps, mask=None):
        super().__init__(maps.shape[1:], maps.shape)
        xp = get_xp(maps, mask)
        self.ndim = maps.ndim - 1
        self.axes = tuple(range(-self.ndim, 0))
        self.coils = CoilSensitivity(maps)
        self.mask = mask
        self._mask_sq = None if mask is None else (xp.abs(mask) ** 2).astype(maps.real.dtype)

    @property
    def maps(self):
        return self.coils.maps

    def _apply(self, x):
        k = fftc(self.coils._apply(x), self.axes)
        return k if self.mask is None else k * self.mask

    def _adjoint(self, y):
        if self.mask is not None:
            y = y * self.mask.conj()
        return self.coils._adjoint(ifftc(y, self.axes))

    def _normal(self, x):
        k = fftc(self.coils._apply(x), self.axes)
        if self._mask_sq is not None:
            k *= self._mask_sq
        return self.coils._adjoint(ifftc(k, self.axes))
