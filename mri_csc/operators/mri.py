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

from ..backend import fftc, fftn_ortho, get_xp, ifftc, ifftn_ortho
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

    The centring shifts are folded into the parameters: with :math:`P` the
    ``ifftshift`` permutation and :math:`F_u` the uncentred FFT,
    :math:`F = P^{-1} F_u P`, and element-wise products commute with
    permutations, so :math:`A^H A x = P^{-1}\sum_c \overline{P S_c}\,F_u^H (P|M|^2)\,F_u (P S_c)(P x)`:
    the maps and mask are shifted once here, and each call shifts only the
    one image in and out instead of the ``coils``-fold k-space and coil images
    four times. Results equal the centred formula up to round-off (the same
    transforms on permuted data).
    """

    def __init__(self, maps, mask=None):
        super().__init__(maps.shape[1:], maps.shape)
        xp = get_xp(maps, mask)
        self.xp = xp
        self.ndim = maps.ndim - 1
        self.axes = tuple(range(-self.ndim, 0))
        self.coils = CoilSensitivity(maps)
        self.mask = mask
        self._mask_sq = None if mask is None else (xp.abs(mask) ** 2).astype(maps.real.dtype)
        # uncentred (ifftshifted) copies of the parameters, for the shift-free passes
        shift = xp.fft.ifftshift
        self._maps_u = xp.ascontiguousarray(shift(maps, axes=self.axes))
        self._maps_u_conj = self._maps_u.conj()
        self._mask_u = None
        self._mask_sq_u = None
        if mask is not None:
            m = mask.reshape((1,) * (self.ndim - mask.ndim) + tuple(mask.shape)) if mask.ndim < self.ndim else mask
            self._mask_u = xp.ascontiguousarray(shift(m, axes=self.axes))
            self._mask_sq_u = (xp.abs(self._mask_u) ** 2).astype(maps.real.dtype)

    @property
    def maps(self):
        return self.coils.maps

    def _to_u(self, x):
        return self.xp.fft.ifftshift(x, axes=self.axes)

    def _from_u(self, x):
        return self.xp.fft.fftshift(x, axes=self.axes)

    def _apply(self, x):
        k = fftn_ortho(self._maps_u * self._to_u(x), self.axes, overwrite_x=True)
        if self._mask_u is not None:
            k *= self._mask_u
        return self._from_u(k)

    def _adjoint(self, y):
        yu = self._to_u(y)  # a fresh copy: safe to overwrite
        if self._mask_u is not None:
            yu *= self._mask_u.conj()
        img = ifftn_ortho(yu, self.axes, overwrite_x=True)
        img *= self._maps_u_conj
        return self._from_u(img.sum(axis=0))

    def _normal(self, x):
        k = fftn_ortho(self._maps_u * self._to_u(x), self.axes, overwrite_x=True)
        if self._mask_sq_u is not None:
            k *= self._mask_sq_u
        img = ifftn_ortho(k, self.axes, overwrite_x=True)
        img *= self._maps_u_conj
        return self._from_u(img.sum(axis=0))

    def residual_norm2(self, x, y_u):
        r""":math:`\|Ax - y\|^2` for ``y_u = ifftshift(y)`` (see :meth:`uncentred`), without the output shift."""
        xp = self.xp
        k = fftn_ortho(self._maps_u * self._to_u(x), self.axes, overwrite_x=True)
        if self._mask_u is not None:
            k *= self._mask_u
        k -= y_u
        return xp.vdot(k.ravel(), k.ravel()).real

    def uncentred(self, y):
        """``ifftshift`` of k-space ``y`` over the image axes (the layout of :meth:`residual_norm2`)."""
        return self._to_u(y)
