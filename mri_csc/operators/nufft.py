r"""Non-uniform FFT (NUFFT) SENSE operator, its Toeplitz normal operator and density compensation.

Convention (SigPy's ``coord``)
------------------------------
A trajectory ``coord`` has shape ``(*samples, ndim)`` in cycles per field of
view, :math:`-N_i/2 \le k_i < N_i/2`, ``coord[..., i]`` along image axis ``i``.
For an image :math:`x` of shape :math:`N = (N_0, \dots, N_{d-1})` with centred
indices :math:`n_i = -\lfloor N_i/2\rfloor, \dots`, the NUFFT is

.. math::  (\mathcal{N}x)_j = \frac{1}{\sqrt{\textstyle\prod_i N_i}}
           \sum_n x_n\, e^{-2\pi i\, \sum_i k_{j,i} n_i / N_i},

SigPy's ``sigpy.nufft`` (and ``sigpy.mri.linop.Sense(coord=...)``) up to its
interpolation error, and the Cartesian centred orthonormal FFT when the
:math:`k_j` are the integer grid. Since the :math:`n_i` are integers the sum is
periodic in :math:`k_i` with period :math:`N_i`, so coordinates are wrapped into
:math:`[-N_i/2, N_i/2)` first (an exact identity, not a clipping).

Backends (``backend="auto"`` picks, like the FFT in :mod:`mri_csc.backend`):
FINUFFT (``finufft``) for NumPy arrays, cuFINUFFT (``cufinufft``, imported
lazily) for CuPy arrays, and SigPy's Kaiser–Bessel NUFFT as the fallback when
those are absent. Plans are made once per operator (per trajectory) and reused.

The SENSE model is :math:`A = \mathcal{N} S`, :math:`y_c = \mathcal{N}(S_c x)`,
k-space of shape ``(coils, *samples)``.

Toeplitz normal operator
------------------------
:math:`\mathcal{N}^H\mathcal{N}` is a Toeplitz matrix (a convolution):

.. math:: (\mathcal{N}^H\mathcal{N}x)_n = \sum_m T_{n-m} x_m ,\qquad
          T_d = \frac{1}{\prod_i N_i}\sum_j e^{2\pi i \sum_i k_{j,i} d_i/N_i},
          \quad |d_i| \le N_i - 1,

so :math:`A^H A x = \sum_c \bar S_c\, \mathcal{C}\big(T * (S_c x)\big)` is one
zero-padded FFT pair per coil on the :math:`2N` grid with the kernel's FFT
:math:`K = F_{2N}\,T` computed once (a type-1 NUFFT of ones onto :math:`2N`
modes). ``T`` is Hermitian, :math:`T_{-d} = \bar T_d`; the unused entry at
:math:`d_i = -N_i` is set to zero, which makes :math:`K` real (stored as
float). Only the ``N`` non-zero rows are transformed along the last axis and
only the kept rows are transformed back (pruned FFTs).
"""

from __future__ import annotations

import functools
import logging
import math
import os

import numpy as np

from ..backend import fft_workers, get_xp, is_cupy_array
from .base import LinearOperator
from .mri import CoilSensitivity

__all__ = ["NUFFT", "NUFFTSense", "nufft_backends", "check_trajectory", "pipe_menon_dcf", "grid_density",
           "grid_calibration", "gridded_lowres", "calibration_block", "calibration_samples"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "finufft", "cufinufft", "sigpy")


@functools.cache
def _finufft():
    try:
        import finufft  # noqa: PLC0415
    except Exception:
        return None
    return finufft


@functools.cache
def _cufinufft():
    try:
        import cufinufft  # noqa: PLC0415
    except Exception:  # ImportError, or a CUDA library missing at import
        return None
    return cufinufft


def nufft_backends() -> dict[str, bool]:
    """Which NUFFT backends import here: ``{"finufft": bool, "cufinufft": bool, "sigpy": True}``."""
    return {"finufft": _finufft() is not None, "cufinufft": _cufinufft() is not None, "sigpy": True}


def _pick_backend(backend: str, gpu: bool) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto":
        if gpu:
            return "cufinufft" if _cufinufft() is not None else "sigpy"
        return "finufft" if _finufft() is not None else "sigpy"
    if backend == "finufft" and (gpu or _finufft() is None):
        raise ValueError("backend 'finufft' needs NumPy arrays and the 'finufft' package (pip install finufft)"
                         if _finufft() is None else "backend 'finufft' runs on the CPU; got CuPy arrays")
    if backend == "cufinufft" and (not gpu or _cufinufft() is None):
        raise ValueError("backend 'cufinufft' needs CuPy arrays and the 'cufinufft' package (pip install cufinufft)"
                         if _cufinufft() is None else "backend 'cufinufft' runs on the GPU; got NumPy arrays")
    return backend


def check_trajectory(coord, image_shape, name: str = "trajectory"):
    """Validate a SigPy-convention trajectory ``(*samples, ndim)`` against ``image_shape``.

    Raises ``TypeError``/``ValueError`` naming ``name``, the shape or values received and what
    was expected. Returns the image shape as a tuple of int.
    """
    if not hasattr(coord, "shape") or not hasattr(coord, "dtype"):
        raise TypeError(f"{name} must be a NumPy or CuPy array of shape (*samples, ndim); got {type(coord).__name__}")
    if np.dtype(coord.dtype).kind not in "fiu":
        raise TypeError(f"{name} must be real (cycles per field of view); got dtype {coord.dtype}")
    try:
        shape = tuple(int(n) for n in image_shape)
    except TypeError:
        raise TypeError(f"image_shape must be a tuple of int such as (256, 256); got {image_shape!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape must be (ny, nx) or (nz, ny, nx) with positive sizes; got {image_shape!r}")
    if coord.ndim < 2 or coord.shape[-1] != len(shape):
        raise ValueError(f"{name} must have shape (*samples, {len(shape)}) for the {len(shape)}-D image shape "
                         f"{shape}; got {tuple(coord.shape)}")
    if coord.size == 0:
        raise ValueError(f"{name} holds no samples; got shape {tuple(coord.shape)}")
    xp = get_xp(coord)
    if not bool(xp.isfinite(coord).all()):
        raise ValueError(f"{name} contains NaN or Inf coordinates")
    return shape


def _points(coord, shape, dtype):
    r"""Radians in :math:`[-\pi, \pi)`, one flat array per image axis: :math:`2\pi k_i/N_i` wrapped."""
    xp = get_xp(coord)
    flat = coord.reshape(-1, len(shape)).astype(np.float64)
    pts = []
    for i, n in enumerate(shape):
        k = (flat[:, i] + n / 2) % n - n / 2  # the DFT is N-periodic in k: an exact wrap
        pts.append(xp.ascontiguousarray((2 * np.pi / n) * k).astype(dtype))
    return pts


def nufft_threads(work: int) -> int:
    """FINUFFT threads: env ``MRI_CSC_NUFFT_THREADS``, else 1 below 2**17 points x transforms, else
    :func:`mri_csc.backend.fft_workers`.

    FINUFFT's OpenMP threads cost more than they save on small problems: on 2 busy cores a
    32², 4-coil radial forward took 0.35 ms on one thread and 180 ms on two.
    """
    env = os.environ.get("MRI_CSC_NUFFT_THREADS")
    if env:
        return max(1, int(env))
    return 1 if work < 2 ** 17 else fft_workers()


def _eps_for(dtype) -> float:
    return 1e-5 if np.dtype(dtype) == np.complex64 else 1e-9


class _FinufftPlans:
    """A type-2 (forward) and a type-1 (adjoint) FINUFFT/cuFINUFFT plan pair for ``n_trans`` transforms."""

    def __init__(self, lib, shape, pts, n_trans, eps, cdtype, **opts):
        self.shape, self.n_trans = shape, n_trans
        self.fwd = lib.Plan(2, shape, n_trans=n_trans, eps=eps, isign=-1, dtype=cdtype, **opts)
        self.adj = lib.Plan(1, shape, n_trans=n_trans, eps=eps, isign=1, dtype=cdtype, **opts)
        self.fwd.setpts(*pts)
        self.adj.setpts(*pts)
        self._pts = pts  # the plans point at these: keep them alive

    def forward(self, x):  # (n_trans, *shape) -> (n_trans, M)
        out = self.fwd.execute(x.reshape((self.n_trans, *self.shape)))
        return out.reshape(self.n_trans, -1)

    def adjoint(self, y):  # (n_trans, M) -> (n_trans, *shape)
        out = self.adj.execute(y.reshape(self.n_trans, -1))
        return out.reshape((self.n_trans, *self.shape))


class _SigpyPlans:
    """SigPy's Kaiser–Bessel NUFFT (oversampling 2, width 8: ~1e-6 relative error), unscaled like FINUFFT's."""

    oversamp, width = 2.0, 8

    def __init__(self, shape, coord, n_trans):
        self.shape, self.n_trans = shape, n_trans
        self.coord = coord.reshape(-1, len(shape))
        self.gain = math.sqrt(math.prod(shape))

    def forward(self, x):
        import sigpy as sp  # noqa: PLC0415

        out = sp.nufft(x.reshape((self.n_trans, *self.shape)), self.coord, self.oversamp, self.width)
        return out * self.gain

    def adjoint(self, y):
        import sigpy as sp  # noqa: PLC0415

        out = sp.nufft_adjoint(y.reshape(self.n_trans, -1), self.coord, (self.n_trans, *self.shape),
                               self.oversamp, self.width)
        return out * self.gain


def _make_plans(backend, shape, coord, n_trans, eps, cdtype):
    rdtype = np.float32 if np.dtype(cdtype) == np.complex64 else np.float64
    if backend == "finufft":
        pts = _points(coord, shape, rdtype)
        return _FinufftPlans(_finufft(), shape, pts, n_trans, eps, cdtype,
                             nthreads=nufft_threads(pts[0].size * n_trans))
    if backend == "cufinufft":
        pts = _points(coord, shape, rdtype)
        return _FinufftPlans(_cufinufft(), shape, pts, n_trans, eps, cdtype)
    # sigpy: its own coordinate convention is ours; wrap into [-N/2, N/2) the same way
    xp = get_xp(coord)
    c = coord.reshape(-1, len(shape)).astype(rdtype)
    n = xp.asarray(np.array(shape, dtype=rdtype))
    return _SigpyPlans(shape, (c + n / 2) % n - n / 2, n_trans)


class NUFFT(LinearOperator):
    r"""Batched NUFFT :math:`\mathcal{N}`: ``(batch, *image_shape)`` → ``(batch, *samples)`` (see module docstring).

    Parameters
    ----------
    image_shape : tuple of int
        ``(ny, nx)`` or ``(nz, ny, nx)``.
    coord : array, ``(*samples, ndim)``
        Trajectory in cycles per FOV (SigPy convention), on the device the operator runs on.
    batch : int
        Number of images transformed together (the coils, for SENSE).
    eps : float, optional
        Requested relative accuracy (FINUFFT's ``eps``); default 1e-5 for complex64, 1e-9 for complex128.
    backend : str
        ``"auto"``, ``"finufft"``, ``"cufinufft"`` or ``"sigpy"``.
    dtype : complex dtype
    """

    def __init__(self, image_shape, coord, batch: int = 1, *, eps: float | None = None, backend: str = "auto",
                 dtype=np.complex64):
        shape = check_trajectory(coord, image_shape, "coord")
        self.image_shape, self.samples = shape, tuple(coord.shape[:-1])
        self.batch = int(batch)
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1; got {batch!r}")
        super().__init__((self.batch, *shape), (self.batch, *self.samples))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.complex64, np.complex128):
            raise TypeError(f"dtype must be complex64 or complex128; got {self.dtype}")
        self.eps = _eps_for(self.dtype) if eps is None else float(eps)
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1); got {eps!r}")
        self.gpu = is_cupy_array(coord)
        self.backend = _pick_backend(backend, self.gpu)
        self.coord = coord
        self.xp = get_xp(coord)
        self._plans = _make_plans(self.backend, shape, coord, self.batch, self.eps, self.dtype)
        self._norm = self.dtype.type(1 / math.sqrt(math.prod(shape))).real

    def _apply(self, x):
        x = self.xp.ascontiguousarray(x, dtype=self.dtype)
        y = self._plans.forward(x)
        y *= self._norm
        return y.reshape(self.oshape)

    def _adjoint(self, y):
        y = self.xp.ascontiguousarray(y, dtype=self.dtype)
        x = self._plans.adjoint(y)
        x *= self._norm
        return x.reshape(self.ishape)


def _toeplitz_kernel(coord, shape, weights, eps, backend, cdtype):
    r"""Real FFT of the Toeplitz kernel :math:`T` on the :math:`2N` grid (``d = -N`` entries zeroed)."""
    xp = get_xp(coord)
    big = tuple(2 * n for n in shape)
    op = NUFFT(big, coord * 2, 1, eps=eps, backend=backend, dtype=cdtype)  # 2N modes at the same k
    # the adjoint on the 2N grid with k scaled by 2 gives sum_j w_j e^{+2 pi i k_j d / N} at d in [-N, N)
    w = xp.ones(op.oshape, dtype=cdtype) if weights is None else xp.asarray(weights, dtype=cdtype).reshape(op.oshape)
    t = op.H(w)[0] * (op._norm ** -1) / math.prod(shape)  # undo the operator's 1/sqrt(prod 2N)
    for ax in range(len(shape)):  # the d_i = -N_i slab (index 0 in centred order) is never used
        idx = [slice(None)] * len(shape)
        idx[ax] = 0
        t[tuple(idx)] = 0
    k = xp.fft.fftn(xp.fft.ifftshift(t))
    return xp.ascontiguousarray(k.real.astype(np.dtype(cdtype).type(0).real.dtype))


class NUFFTSense(LinearOperator):
    r"""Non-Cartesian multi-coil SENSE :math:`A = \mathcal{N} S`: image → k-space ``(coils, *samples)``.

    Parameters
    ----------
    maps : array, ``(coils, *image_shape)``
        Coil sensitivities, on the device the operator runs on.
    coord : array, ``(*samples, ndim)``
        Trajectory (SigPy convention, cycles per FOV), same device.
    toeplitz : bool
        Apply :meth:`normal` as the Toeplitz embedding (one FFT pair per coil on the
        :math:`2N` grid, see the module docstring) instead of ``A.H(A(x))``.
    eps, backend :
        As :class:`NUFFT`.

    Notes
    -----
    It offers the interface the CSC solver and the CG baselines use on Cartesian
    :class:`~mri_csc.operators.Sense`: ``maps``, ``coils``, ``normal``,
    ``residual_norm2(x, y_u)`` and ``uncentred(y)`` (the identity here: there are no
    shifts to fold).
    """

    def __init__(self, maps, coord, *, toeplitz: bool = True, eps: float | None = None, backend: str = "auto"):
        if not hasattr(maps, "ndim") or maps.ndim not in (3, 4):
            raise ValueError(f"maps must have shape (coils, ny, nx) or (coils, nz, ny, nx); got "
                             f"{getattr(maps, 'shape', type(maps).__name__)}")
        shape = tuple(maps.shape[1:])
        check_trajectory(coord, shape, "coord")
        get_xp(maps, coord)  # raises when NumPy and CuPy are mixed
        super().__init__(shape, (maps.shape[0], *coord.shape[:-1]))
        self.xp = get_xp(maps)
        self.ndim = len(shape)
        cdtype = np.complex128 if maps.dtype == np.complex128 else np.complex64
        self.coils = CoilSensitivity(maps.astype(cdtype, copy=False))
        self.coord = coord
        self.nufft = NUFFT(shape, coord, maps.shape[0], eps=eps, backend=backend, dtype=cdtype)
        self.toeplitz = bool(toeplitz)
        self._kernel = None
        self._residual_cache = None
        if self.toeplitz:
            self._kernel = _toeplitz_kernel(coord, shape, None, self.nufft.eps, self.nufft.backend, cdtype)

    @property
    def maps(self):
        return self.coils.maps

    @property
    def backend(self) -> str:
        return self.nufft.backend

    def _apply(self, x):
        return self.nufft._apply(self.coils._apply(x))

    def _adjoint(self, y):
        return self.coils._adjoint(self.nufft._adjoint(y))

    def _normal(self, x):
        if self._kernel is None:
            return self._adjoint(self._apply(x))
        return self.coils._adjoint(self.toeplitz_normal(self.coils._apply(x)))

    def toeplitz_normal(self, v):
        r""":math:`\mathcal{N}^H\mathcal{N} v` for a batch ``v`` of shape ``(batch, *image_shape)`` by the embedding."""
        xp = self.xp
        if self._kernel is None:
            self._kernel = _toeplitz_kernel(self.coord, self.ishape, None, self.nufft.eps, self.nufft.backend,
                                            self.nufft.dtype)
        shape = self.ishape
        nd = len(shape)
        big = tuple(2 * n for n in shape)
        if xp is np:
            import scipy.fft as sfft  # noqa: PLC0415

            kw, ow = {"workers": fft_workers()}, {"overwrite_x": True}
        else:
            sfft, kw, ow = xp.fft, {}, {}  # cupy.fft: no workers, no overwrite_x
        buf = xp.zeros((v.shape[0], *big), dtype=v.dtype)
        buf[(slice(None), *(slice(0, n) for n in shape))] = v
        # forward, pruned: the last axis only on the rows that hold data, then the other axes in full
        rows = (slice(None), *(slice(0, n) for n in shape[:-1]))
        buf[rows] = sfft.fft(buf[rows], axis=-1, **kw)
        if nd > 1:
            buf = sfft.fftn(buf, axes=tuple(range(1, nd)), **ow, **kw)
        buf *= self._kernel
        # inverse, pruned: the leading axes in full, then the last axis only on the kept rows
        if nd > 1:
            buf = sfft.ifftn(buf, axes=tuple(range(1, nd)), **ow, **kw)
            buf = buf[rows]
        out = sfft.ifft(buf, axis=-1, **kw)
        return xp.ascontiguousarray(out[(Ellipsis, slice(0, shape[-1]))])

    def residual_norm2(self, x, y_u):
        r""":math:`\|Ax - y\|^2` (``y_u`` is ``y``: :meth:`uncentred` is the identity).

        With the Toeplitz normal it is evaluated without a NUFFT as
        :math:`\langle x, A^HAx\rangle - 2\operatorname{Re}\langle x, A^Hy\rangle + \|y\|^2`
        (:math:`A^Hy` and :math:`\|y\|^2` computed once per ``y``), clipped at 0.
        """
        xp = self.xp
        if self._kernel is None:
            r = self._apply(x)
            r -= y_u
            return xp.vdot(r.ravel(), r.ravel()).real
        cache = self._residual_cache
        if cache is None or cache[0] is not y_u:
            cache = self._residual_cache = (y_u, self._adjoint(y_u), xp.vdot(y_u.ravel(), y_u.ravel()).real)
        _, aty, yy = cache
        quad = xp.vdot(x.ravel(), self._normal(x).ravel()).real - 2 * xp.vdot(x.ravel(), aty.ravel()).real
        return xp.maximum(quad + yy, 0)

    def uncentred(self, y):
        """The identity (kept for the interface of :class:`~mri_csc.operators.Sense`)."""
        return y


# -- density compensation and calibration ------------------------------------------------------------------

def pipe_menon_dcf(coord, image_shape, *, max_iter: int = 10, backend: str = "auto", sigma: float = 4.0):
    r"""Density compensation weights by Pipe–Menon iterations, :math:`w \leftarrow w / (C w)`.

    ``C`` convolves the samples' weights with a Gaussian kernel :math:`\Psi` of unit
    integral (in cycles-per-FOV units, one Cartesian cell has area 1):
    :math:`(Cw)_j = \sum_i w_i \Psi(k_j - k_i)`, applied as a type-1 NUFFT onto the image
    grid, a multiplication by the kernel's image-domain window
    :math:`\psi(n) = e^{-\frac12\sum_i (\sigma n_i/N_i)^2}/\prod_i N_i` (``sigma`` = 4: a
    kernel of standard deviation :math:`\sigma/2\pi \approx 0.64` cells) and a type-2 NUFFT
    back. At the fixed point :math:`Cw = 1`, so a fully sampled Cartesian grid gets
    :math:`w \approx 1` and :math:`\mathcal{N}^H W \mathcal{N}` has unit gain at low
    spatial frequencies: a gridded image carries the units of a Cartesian one.

    Parameters
    ----------
    coord : array ``(*samples, ndim)``
    image_shape : tuple of int
    max_iter : int
        Iterations (each one NUFFT pair on one channel).

    Returns
    -------
    array ``samples``, float32, on ``coord``'s device.
    """
    shape = check_trajectory(coord, image_shape, "coord")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    xp = get_xp(coord)
    op = NUFFT(shape, coord, 1, backend=backend, eps=1e-4)
    psi = _kernel_window(shape, sigma, xp)
    w = xp.ones(op.oshape, dtype=np.complex64)
    for _ in range(int(max_iter)):
        cw = op(op.H(w) * psi).real
        w = w / xp.maximum(cw, 1e-6)
    return xp.ascontiguousarray(w.real[0].astype(np.float32))


def _kernel_window(shape, sigma, xp):
    r""":math:`P\psi(n)`, so that :math:`C = \mathcal{N}\,\mathrm{diag}(P\psi)\,\mathcal{N}^H` (see above)."""
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / n for n in shape], indexing="ij")
    return xp.asarray(np.exp(-0.5 * sigma ** 2 * sum(g ** 2 for g in grids)).astype(np.float32))


def grid_density(coord, image_shape, *, weights=None, backend: str = "auto", sigma: float = 4.0):
    r"""Sampling density on the Cartesian grid, :math:`\rho(f_m) = \sum_j w_j \Psi(f_m - k_j)` (samples per cell).

    ``Psi`` is :func:`pipe_menon_dcf`'s unit-integral kernel, so a fully sampled Cartesian
    trajectory has :math:`\rho = 1`. Evaluated as :math:`F(P\psi\cdot\mathcal{N}^H w)` (centred
    orthonormal FFT ``F``). :math:`\rho` is the spectrum of the circulant approximation of
    :math:`\mathcal{N}^H\mathcal{N}`. Returns float32 ``image_shape``.
    """
    from ..backend import fftc  # noqa: PLC0415

    shape = check_trajectory(coord, image_shape, "coord")
    xp = get_xp(coord)
    op = NUFFT(shape, coord, 1, backend=backend, eps=1e-4)
    w = xp.ones(op.oshape, dtype=np.complex64) if weights is None else \
        xp.asarray(weights, dtype=np.complex64).reshape(op.oshape)
    rho = fftc(op.H(w)[0] * _kernel_window(shape, sigma, xp), tuple(range(-len(shape), 0))).real
    return xp.ascontiguousarray(rho.astype(np.float32))


def _box(coord, width, axes_shape):
    xp = get_xp(coord)
    inside = xp.ones(coord.shape[:-1], dtype=bool)
    for i in range(coord.shape[-1]):
        inside &= (coord[..., i] >= -(width // 2)) & (coord[..., i] < width - width // 2)  # as the Cartesian block
    return inside


def gridded_lowres(kspace, coord, image_shape, dcf, *, width: int = 24, window: str = "box", backend="auto"):
    r"""Coil images of the centre of k-space by gridding: :math:`\mathcal{N}^H (h\,w\,y_c)`.

    ``h`` keeps the samples with :math:`-\lfloor w/2\rfloor \le k_i < w - \lfloor w/2\rfloor` on every axis
    (``"box"``, ``w`` = ``width``: the Cartesian calibration block) or
    weights them by a separable Hann window of that width (``"hann"``); ``w`` are density
    compensation weights (:func:`pipe_menon_dcf`). Returns ``(coils, *image_shape)``.
    """
    shape = check_trajectory(coord, image_shape, "trajectory")
    xp = get_xp(kspace, coord, dcf)
    if window == "box":
        h = _box(coord, width, shape).astype(np.float32)
    elif window == "hann":
        h = xp.ones(coord.shape[:-1], dtype=np.float32)
        for i in range(coord.shape[-1]):
            k = coord[..., i]
            h = h * xp.where(xp.abs(k) < width / 2, 0.5 + 0.5 * xp.cos(2 * np.pi * k / width), 0).astype(np.float32)
    else:
        raise ValueError(f"window must be 'box' or 'hann'; got {window!r}")
    weights = h * (1 if dcf is None else dcf)
    op = NUFFT(shape, coord, kspace.shape[0], backend=backend,
               dtype=np.complex128 if kspace.dtype == np.complex128 else np.complex64)
    return op.H(kspace * weights.astype(kspace.real.dtype))


def grid_calibration(kspace, coord, image_shape, dcf, *, width: int = 24, backend="auto"):
    r"""The calibration region regridded to a Cartesian grid: ``(coils, *image_shape)`` k-space.

    :math:`F\,\mathcal{N}^H(h\,w\,y_c)` (centred orthonormal FFT ``F``) restricted to the centred
    ``width``-wide block and zero elsewhere: Cartesian k-space that ESPIRiT calibrates on. The
    samples are gridded from a block twice as wide (``h``), so that the truncation's ringing
    stays outside the block that is kept.
    """
    shape = check_trajectory(coord, image_shape, "trajectory")
    low = gridded_lowres(kspace, coord, shape, dcf, width=2 * width, window="box", backend=backend)
    return calibration_block(low, width)


def calibration_block(images, width: int):
    r"""Cartesian k-space ``(coils, *image_shape)`` of coil ``images``, kept on the centred ``width`` block.

    :math:`F x_c` (centred orthonormal FFT) there, zero elsewhere: what ESPIRiT calibrates on.
    """
    from ..backend import fftc  # noqa: PLC0415

    shape = images.shape[1:]
    k = fftc(images, tuple(range(-len(shape), 0)))
    xp = get_xp(k)
    out = xp.zeros_like(k)
    sl = (slice(None), *(slice(max(n // 2 - width // 2, 0), n // 2 + width // 2) for n in shape))
    out[sl] = k[sl]
    return out


def calibration_samples(coord, width: int):
    """Boolean ``samples`` mask of the samples inside the centred ``width``-wide box (every axis)."""
    return _box(coord, width, None)
