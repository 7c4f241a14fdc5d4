r"""Convolutional synthesis :math:`D z = \sum_k d_k * z_k` computed with FFTs.

Boundary handling
-----------------
Two boundaries are offered; ``"pad"`` is the default.

``"pad"`` (no wrap-around)
    Each code map lives on a grid larger than the image by at least
    ``filter size - 1`` along every axis (rounded up to an FFT-friendly length).
    The convolution is computed circularly on that padded grid
    and the image is the window of it that no filter tap ever wraps into:
    ``x = C (d * z)`` with ``C`` a crop. Every image pixel is then an exact
    *linear* ("valid") convolution, so an atom placed near one edge never leaks
    energy to the opposite edge, and structures that straddle the image border
    can still be represented (their codes sit in the margin). The adjoint
    zero-pads the image into the grid and correlates. This is the
    "boundary handling" formulation of Wohlberg (2016); the sparse coder solves
    it with a mask-decoupled ADMM (see :mod:`mri_csc.prior.sparse_coding`).
    We chose it over a mask on a same-sized grid because it needs no guess
    about the signal beyond the border and costs only a slightly larger FFT.

``"circular"``
    Codes have the image's shape and the convolution wraps around (SPORCO's
    default); useful for comparisons and periodic data.

Filters are centred: the tap ``d[f // 2]`` sits on the code sample, so in
``"pad"`` mode code index ``i`` of the padded grid corresponds to image pixel
``i - (f - 1) // 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft

from ..backend import fft_workers, get_xp
from ..operators.base import LinearOperator

__all__ = ["BOUNDARIES", "ConvSynthesis", "check_filters"]

BOUNDARIES = ("pad", "circular")


# --------------------------------------------------------------------------- FFT helpers
def _fft_mod(xp):
    if xp is np:
        return scipy.fft, {"workers": fft_workers()}
    return xp.fft, {}


def _rfftn(x, axes, s=None):
    mod, kw = _fft_mod(get_xp(x))
    return mod.rfftn(x, s=s, axes=axes, **kw)


def _irfftn(x, s, axes):
    mod, kw = _fft_mod(get_xp(x))
    return mod.irfftn(x, s=s, axes=axes, **kw)


def _fftn(x, axes, s=None):
    mod, kw = _fft_mod(get_xp(x))
    return mod.fftn(x, s=s, axes=axes, **kw)


def _ifftn(x, axes):
    mod, kw = _fft_mod(get_xp(x))
    return mod.ifftn(x, axes=axes, **kw)


# --------------------------------------------------------------------------- validation
def check_filters(filters, name: str = "filters"):
    """Validate a filter bank ``(K, fy, fx)`` or ``(K, fz, fy, fx)``; return it unchanged.

    Raises
    ------
    ValueError
        Wrong number of dimensions, an empty axis, complex or non-finite values.
    """
    if not hasattr(filters, "shape"):
        raise TypeError(
            f"{name} must be a NumPy or CuPy array of shape (K, fy, fx); got {type(filters).__name__}"
        )
    shape = tuple(filters.shape)
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{name} must have shape (K, fy, fx) or (K, fz, fy, fx) (3 or 4 dims); got shape {shape}"
        )
    if min(shape) < 1:
        raise ValueError(f"{name} must have no empty axis; got shape {shape}")
    xp = get_xp(filters)
    if xp.iscomplexobj(filters):
        raise ValueError(f"{name} must be real (the CSC prior uses real filters); got dtype {filters.dtype}")
    if not bool(xp.all(xp.isfinite(filters))):
        n_bad = int(xp.count_nonzero(~xp.isfinite(filters)))
        raise ValueError(f"{name} must be finite; got {n_bad} NaN/Inf value(s) in an array of shape {shape}")
    return filters


def _check_image_shape(image_shape, filter_shape, name="image_shape") -> tuple[int, ...]:
    try:
        ishape = tuple(int(n) for n in image_shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints; got {image_shape!r}") from None
    if len(ishape) != len(filter_shape):
        raise ValueError(
            f"{name} must have {len(filter_shape)} dims to match filters of spatial shape {filter_shape}; "
            f"got {ishape}"
        )
    if any(n < 1 for n in ishape):
        raise ValueError(f"{name} must be positive; got {ishape}")
    if any(f > n for f, n in zip(filter_shape, ishape)):
        raise ValueError(
            f"filters of spatial shape {filter_shape} are larger than {name} {ishape}; "
            "every filter axis must be <= the image axis"
        )
    return ishape


# --------------------------------------------------------------------------- geometry
class _ConvGeometry:
    """Shapes, pad/crop and cached filter spectra shared by the operator and the solver."""

    def __init__(self, filters, image_shape: Sequence[int], boundary: str = "pad"):
        check_filters(filters)
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}; got {boundary!r}")
        self.filters = filters
        self.xp = get_xp(filters)
        self.n_filters = int(filters.shape[0])
        self.filter_shape = tuple(int(n) for n in filters.shape[1:])
        self.ndim = len(self.filter_shape)
        self.image_shape = _check_image_shape(image_shape, self.filter_shape)
        self.boundary = boundary
        if boundary == "pad":
            # at least image + filter - 1 (no wrap-around), rounded up to an FFT-friendly length;
            # codes in the extra margin touch no image pixel and the l1 term keeps them at zero
            self.code_shape = tuple(
                scipy.fft.next_fast_len(n + f - 1, real=True)
                for n, f in zip(self.image_shape, self.filter_shape)
            )
            self.offset = tuple((f - 1) // 2 for f in self.filter_shape)
        else:
            self.code_shape = self.image_shape
            self.offset = (0,) * self.ndim
        self.axes = tuple(range(-self.ndim, 0))
        self.crop = tuple(slice(o, o + n) for o, n in zip(self.offset, self.image_shape))
        self._spectra: dict = {}

    @property
    def n_code(self) -> int:
        return math.prod(self.code_shape)

    def spectrum(self, real_dtype, half: bool):
        """Filter DFTs on the code grid, ``(K, *freq_shape)``, cached per dtype and half/full."""
        key = (np.dtype(real_dtype).str, bool(half))
        if key not in self._spectra:
            self._spectra[key] = self.filter_spectrum(self.filters.astype(real_dtype), half=half)
        return self._spectra[key]

    def _window(self, axis: int):
        """Indices on the code grid of a centred filter's taps along spatial ``axis``."""
        f, n = self.filter_shape[axis], self.code_shape[axis]
        return (np.arange(f) - f // 2) % n

    def filter_spectrum(self, d, half: bool = True):
        r"""The DFT on the code grid of filters ``d`` ``(K, *filter_shape)`` placed by
        :meth:`filters_to_grid`: ``rfftn`` (``half``) or ``fftn`` of that grid, computed as a pruned
        transform. Axis by axis from the last, only the lines that cross the filter window in the
        axes not yet transformed are transformed (zero lines transform to zero), so 11×11 filters
        on the 270² grid of a 256² image cost about half the full transform. C-contiguous (CuPy's
        transforms along a leading axis return swapped-axes views; the coder reads this array in
        every iteration)."""
        xp = get_xp(d)
        mod, kw = _fft_mod(xp)
        a = d
        for j in reversed(range(self.ndim)):
            ax = 1 + j
            grid = list(a.shape)
            grid[ax] = self.code_shape[j]
            g = xp.zeros(grid, dtype=a.dtype)
            idx = [slice(None)] * a.ndim
            idx[ax] = xp.asarray(self._window(j))
            g[tuple(idx)] = a
            if j == self.ndim - 1:
                a = mod.rfft(g, axis=ax, **kw) if half else mod.fft(g, axis=ax, **kw)
            else:
                a = mod.fft(g, axis=ax, **kw)
        return xp.ascontiguousarray(a)

    def filters_from_spectrum(self, spec):
        r"""The adjoint-side inverse: the ``filter_shape`` window (:meth:`grid_to_filters`) of
        ``irfftn(spec)`` on the code grid, for half spectra ``spec`` ``(K, *freq_shape)``; pruned
        like :meth:`filter_spectrum` (after each axis's inverse, only the window's lines are kept)."""
        xp = get_xp(spec)
        mod, kw = _fft_mod(xp)
        a = spec
        for j in range(self.ndim):
            ax = 1 + j
            win = xp.asarray(self._window(j))
            if j == self.ndim - 1:
                a = mod.irfft(a, n=self.code_shape[j], axis=ax, **kw)
            else:
                a = mod.ifft(a, axis=ax, **kw)
            a = xp.take(a, win, axis=ax)
        return xp.ascontiguousarray(a)

    def seed_spectrum(self, spec, real_dtype, half: bool = True):
        """Give :meth:`spectrum` an already computed spectrum of these filters (the dictionary
        update's, on the same grid), so that it is not transformed again: the shape, complex dtype
        of ``real_dtype``, device and C-contiguity :meth:`filter_spectrum` would give are required."""
        last = self.code_shape[-1] // 2 + 1 if half else self.code_shape[-1]
        want = (self.n_filters, *self.code_shape[:-1], last)
        if tuple(spec.shape) != want:
            raise ValueError(f"spectrum must have shape {want}; got {tuple(spec.shape)}")
        cdt = np.result_type(np.dtype(real_dtype), np.complex64)
        if spec.dtype != cdt:
            raise ValueError(f"spectrum must be {cdt} for {np.dtype(real_dtype)} filters; got {spec.dtype}")
        if get_xp(spec) is not self.xp:
            raise TypeError("spectrum must be on the filters' device (NumPy and CuPy mixed)")
        if not spec.flags.c_contiguous:
            raise ValueError("spectrum must be C-contiguous")
        self._spectra[(np.dtype(real_dtype).str, bool(half))] = spec

    def _taps(self, xp):
        """The open-mesh index of the filter taps on the code grid (:meth:`_window` per axis)."""
        return (slice(None),) + xp.ix_(*(xp.asarray(self._window(j)) for j in range(self.ndim)))

    def filters_to_grid(self, d):
        """Filters ``(K, *filter_shape)`` placed centred on the code grid (tap ``f // 2`` at index 0):
        the whole grid that :meth:`filter_spectrum` transforms without forming it."""
        xp = get_xp(d)
        pad = xp.zeros((d.shape[0], *self.code_shape), dtype=d.dtype)
        pad[self._taps(xp)] = d
        return pad

    def grid_to_filters(self, g):
        """The adjoint of :meth:`filters_to_grid`: the ``filter_shape`` window of grid maps ``(K, *code_shape)``."""
        return g[self._taps(get_xp(g))]

    def pad_image(self, x, out=None):
        """Zero-pad image(s) ``(..., *image_shape)`` into the code grid (the adjoint of the crop)."""
        if self.boundary == "circular":
            return x
        xp = get_xp(x)
        if out is None:
            out = xp.zeros(x.shape[: x.ndim - self.ndim] + self.code_shape, dtype=x.dtype)
        out[(Ellipsis,) + self.crop] = x
        return out

    def crop_image(self, y):
        return y if self.boundary == "circular" else y[(Ellipsis,) + self.crop]

    # -- frequency-domain synthesis on the code grid, batched over leading axes
    def synth(self, z):
        """``D z`` for codes ``(..., K, *code_shape)`` -> images ``(..., *image_shape)``."""
        xp = get_xp(z)
        real = not xp.iscomplexobj(z)
        rdt = z.real.dtype if not real else z.dtype
        df = self.spectrum(rdt, half=real)
        zf = _rfftn(z, self.axes) if real else _fftn(z, self.axes)
        zf *= df
        yf = zf.sum(axis=-self.ndim - 1)
        y = _irfftn(yf, self.code_shape, self.axes) if real else _ifftn(yf, self.axes)
        return self.crop_image(y)

    def synth_adjoint(self, x):
        """``D^H x`` for images ``(..., *image_shape)`` -> codes ``(..., K, *code_shape)``."""
        xp = get_xp(x)
        real = not xp.iscomplexobj(x)
        rdt = x.real.dtype if not real else x.dtype
        df = self.spectrum(rdt, half=real)
        xpad = self.pad_image(x)
        xf = _rfftn(xpad, self.axes) if real else _fftn(xpad, self.axes)
        zf = df.conj() * xf[(Ellipsis, None) + (slice(None),) * self.ndim]
        return _irfftn(zf, self.code_shape, self.axes) if real else _ifftn(zf, self.axes)


class ConvSynthesis(LinearOperator):
    r"""Convolutional synthesis :math:`D: z \mapsto C\,\sum_k d_k * z_k`.

    Parameters
    ----------
    filters : array, shape ``(K, fy, fx)`` or ``(K, fz, fy, fx)``
        Real filters (NumPy or CuPy; the operator works on that device).
    image_shape : sequence of int
        Shape of the synthesised image, ``(ny, nx)`` or ``(nz, ny, nx)``.
    boundary : {"pad", "circular"}
        ``"pad"`` (default): codes on a grid padded by ``filter size - 1`` and
        the output cropped, so nothing wraps around. ``"circular"``: codes of
        the image's shape, circular convolution. See the module docstring.

    Notes
    -----
    Input codes have shape ``(K, *code_shape)`` (``op.code_shape``); real
    codes use real FFTs, complex codes complex FFTs. Filter spectra are cached
    per dtype on the filters' device. Output keeps the input's precision.
    """

    def __init__(self, filters, image_shape: Sequence[int], *, boundary: str = "pad"):
        self.geom = _ConvGeometry(filters, image_shape, boundary)
        super().__init__((self.geom.n_filters, *self.geom.code_shape), self.geom.image_shape)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self.geom.code_shape

    @property
    def boundary(self) -> str:
        return self.geom.boundary

    def _apply(self, x):
        return self.geom.synth(x)

    def _adjoint(self, y):
        return self.geom.synth_adjoint(y)
