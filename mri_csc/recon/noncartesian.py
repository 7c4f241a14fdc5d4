r"""Non-Cartesian reconstruction problems: k-space on a trajectory, the NUFFT SENSE operator.

:func:`make_noncartesian_problem` is :func:`~mri_csc.recon.problem.make_problem` for
k-space ``(coils, *samples)`` measured at ``trajectory`` ``(*samples, ndim)`` (SigPy's
``coord`` convention, cycles per FOV; see :mod:`mri_csc.operators.nufft`). The
forward model is :math:`A = \mathcal{N} S` and every method minimises its usual
objective with :math:`\tfrac12\|Ax - y\|^2` as the data term: the density
compensation weights ``dcf`` (:func:`~mri_csc.operators.nufft.pipe_menon_dcf`
when none are given) never enter the objective. They are used where an
estimate from the raw samples is needed before any solve: the data scale, the
smooth phase (gridded low-resolution image :math:`S^H\mathcal{N}^H(h\,w\,y)`), the
zero-filled (gridded) image, and the ``sense`` method's preconditioner (a
change of variables, so the solution is that of the unpreconditioned system).

Density normalisation: a Cartesian mask samples each grid cell once or not at all, so
:math:`A^HA` has gain 1 where it samples, and the default weights (λ, μ, γ) were set for
that. A non-Cartesian trajectory samples the centre densely (radial: density
:math:`\propto 1/|k|`) and readout oversampling doubles the density everywhere. The
problem therefore divides the k-space *and the coil maps* by :math:`\sqrt g`, with
:math:`g` the median sampling density (:func:`~mri_csc.operators.nufft.grid_density`,
samples per cell) over the cells the trajectory reaches (density above 0.1): the image
that explains the data is unchanged (:math:`y/\sqrt g = \mathcal{N}(S/\sqrt g)x`), and the
data term becomes :math:`\tfrac1{2g}\|Ax-y\|^2`, i.e. every method's weights act as
:math:`g` times theirs on the raw data term. On the Cartesian grid :math:`g = 1`. Every
method (SigPy, BART included) sees the same normalised k-space and maps.

Scaling is BART's rule on the gridded image: the 99th percentile of
:math:`|S^H \mathcal{N}^H (b\,w\,y)|` with ``b`` the centred 24-wide box, which is the
Cartesian :func:`~mri_csc.recon.problem.data_scale` when the trajectory is the
Cartesian grid (``w`` = 1 there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..backend import get_xp, to_device
from ..operators.nufft import NUFFTSense, check_trajectory, gridded_lowres, pipe_menon_dcf
from ..validate import (
    MAPS_EXPLAINED_MIN_NONCARTESIAN,
    check_array,
    check_finite,
    check_not_all_zero,
    explained_share,
    unit_power_gain,
    warn_maps_mismatch,
)
from .problem import ReconProblem, scale_factor

__all__ = ["NonCartesianProblem", "make_noncartesian_problem", "noncartesian_data_scale", "density_gain"]

log = logging.getLogger(__name__)


@dataclass
class NonCartesianProblem(ReconProblem):
    """A validated, scaled non-Cartesian problem on one device.

    Attributes (beyond :class:`~mri_csc.recon.problem.ReconProblem`'s; ``mask`` is ``None``)
    ----------
    trajectory : array ``(*samples, ndim)``, float32
    dcf : array ``samples``, float32
        Density compensation weights (calibration and preconditioning only).
    image_shape_ : tuple of int
    nufft_backend : str
    density_gain : float
        :math:`g` of the density normalisation (module docstring).
    """

    trajectory: object = None
    dcf: object = None
    image_shape_: tuple = ()
    nufft_backend: str = "auto"
    precondition: bool = False
    density_gain: float = 1.0

    def __post_init__(self):
        if self.operator is None:  # the NUFFT SENSE operator, built once: plans and Toeplitz kernel reused
            self.operator = NUFFTSense(self.maps, self.trajectory, backend=self.nufft_backend)
        super().__post_init__()

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.image_shape_)

    def adjoint_image(self):
        r"""Gridded image :math:`A^H W y` (density-compensated: the zero-filled estimate)."""
        return self.operator.adjoint(self.kspace * self.dcf)

    def preconditioner(self, lam: float = 0.0):
        r"""None, or the Hermitian root :math:`P = F^H D^{1/2} F` of a circulant :math:`\approx(A^HA+\lambda)^{-1}`.

        ``None`` unless the problem was made with an explicit ``dcf`` (``"pipe-menon"`` or weights):
        the preconditioned CG reaches in 5-10 iterations what plain CG reaches in 20, but it
        also reaches the noisy unregularised least-squares solution sooner, so it is opt-in.

        :math:`A^HA \approx \bar s\, F^H \mathrm{diag}(\rho) F` with :math:`\rho` the sampling density on
        the grid (:func:`~mri_csc.operators.nufft.grid_density`, the inverse of the density
        compensation) and :math:`\bar s` the mean of :math:`\sum_c|S_c|^2` on the coil support;
        :math:`D = 1/\max(\bar s\rho + \lambda, \epsilon)`, :math:`\epsilon` a tenth of the mean
        :math:`\bar s\rho` (so unsampled corners are not amplified). CG on
        :math:`P(A^HA+\lambda)Pz = Pb`, :math:`x = Pz`, has the solution of the original system.
        """
        from ..backend import fftc, ifftc  # noqa: PLC0415
        from ..operators.nufft import grid_density  # noqa: PLC0415

        if not self.precondition:
            return None
        xp = self.xp
        sos = xp.sum(xp.abs(self.maps) ** 2, axis=0)
        sbar = float(sos[sos > 0].mean())
        rho = sbar * grid_density(self.trajectory, self.image_shape, backend=self.nufft_backend)
        d = 1 / xp.maximum(rho + lam, 0.1 * float(rho.mean()))
        root = xp.sqrt(d).astype(np.float32)
        axes = tuple(range(-len(self.image_shape), 0))
        return lambda x: ifftc(fftc(x, axes) * root, axes)

    def lowres_image(self, width: int = 24):
        r"""Coil-combined low-resolution image :math:`\sum_c \bar S_c \mathcal{N}^H(h\,w\,y_c)` (Hann ``h``)."""
        low = gridded_lowres(self.kspace, self.trajectory, self.image_shape, self.dcf, width=width,
                             window="hann", backend=self.nufft_backend)
        return (self.maps.conj() * low).sum(axis=0)


def noncartesian_data_scale(kspace, maps, trajectory, dcf, *, percentile: float = 99.0, calib: int = 24,
                            backend: str = "auto") -> float:
    """BART-style data scale from the gridded calibration region (see module docstring)."""
    xp = get_xp(kspace)
    low = gridded_lowres(kspace, trajectory, maps.shape[1:], dcf, width=calib, window="box", backend=backend)
    combined = xp.abs((maps.conj() * low).sum(axis=0))
    s = float(xp.percentile(combined.ravel(), percentile))
    if not np.isfinite(s) or s <= 0:
        s = float(combined.max())
    return s if s > 0 else 1.0


def _check_band(trajectory, shape) -> None:
    """Refuse a trajectory in other units; warn when it reaches far inside or beyond the image grid's band.

    Cycles per field of view reach about ``±N_i/2`` along image axis ``i``. Reaching less than a quarter of
    ``N_i`` (a matrix under half the image's) *at* ±0.5 (normalised) or ±π (radians) is the mark of other units:
    the image would come out blurred or the solver diverge, so it is refused with the conversion; elsewhere
    under a quarter (a deliberate zero-filled interpolation) it is a warning. Beyond the
    band: the operator is the DFT of an ``N``-pixel grid, ``N``-periodic in ``k``, so such samples are
    wrapped onto ``k ∓ N`` (exact for that model), which for measured data usually means wrong units or
    readout oversampling left in the trajectory: a warning.
    """
    xp = get_xp(trajectory)
    for i, n in enumerate(shape):
        k = float(xp.abs(trajectory[..., i]).max())
        if n >= 8 and k < n / 4 and (k <= 0.5 * 1.001 or abs(k - np.pi) <= 0.02 * np.pi):
            raise ValueError(f"trajectory[..., {i}] reaches only |k| = {k:.4g}, which implies an image matrix of "
                             f"about {2 * int(np.ceil(k))} along axis {i}, not {n} (image_shape {shape}): "
                             "coordinates must be cycles per field of view, -N/2 ... N/2 (SigPy's coord). From "
                             "radians (±π) multiply by N/(2π); from normalised ±0.5 multiply by N; or give the "
                             "image_shape the trajectory was made for")
        if n >= 8 and k < n / 4 and not (k <= 0.5 * 1.001 or abs(k - np.pi) <= 0.02 * np.pi):
            log.warning("trajectory[..., %d] reaches only |k| = %.4g, a matrix of about %d along axis %d of "
                        "image_shape %s: the image is interpolated (zero-filled) %.3gx; if the coordinates are in "
                        "other units, convert them to cycles per field of view", i, k, 2 * int(np.ceil(k)), i, shape,
                        n / (2 * k))
        if k > n / 2 + 0.5:
            log.warning("trajectory[..., %d] reaches |k| = %.4g, beyond the band ±%g cycles per field of view of "
                        "image_shape %s: those samples are wrapped onto k -/+ %d (the grid's DFT is periodic); "
                        "check the units (cycles/FOV, -N/2 ... N/2) or readout oversampling, or give a larger "
                        "image_shape", i, k, n / 2, shape, n)

def make_noncartesian_problem(kspace, coil_maps, trajectory, image_shape=None, *, dcf=None, device="cpu",
                              scale: "bool | float" = True, nufft_backend: str = "auto",
                              check_maps: bool = True) -> NonCartesianProblem:
    """Validate non-Cartesian inputs, compute the DCF when none is given, scale, move to ``device``.

    Parameters
    ----------
    kspace : array ``(coils, *samples)``, complex
    coil_maps : array ``(coils, *image_shape)``, complex
    trajectory : array ``(*samples, ndim)``, real, cycles per FOV
    image_shape : tuple of int, optional
        Defaults to ``coil_maps.shape[1:]``; must equal it when given.
    dcf : None, ``"pipe-menon"`` or array ``samples``
        Density compensation weights (non-negative) for calibration; ``None`` computes them by
        Pipe–Menon iterations. An explicit ``"pipe-menon"`` or array also switches on the
        ``sense`` method's density preconditioner (:meth:`NonCartesianProblem.preconditioner`).
    device, scale, check_maps :
        As :func:`~mri_csc.recon.problem.make_problem` (the maps check on the gridded calibration coil images).
    nufft_backend : str
        ``"auto"``, ``"finufft"``, ``"cufinufft"`` or ``"sigpy"``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, what was received and what was expected.
    """
    from ..backend import resolve_device  # noqa: PLC0415

    dev = resolve_device(device)
    check_array("kspace", kspace)
    check_array("coil_maps", coil_maps)
    if coil_maps.ndim not in (3, 4):
        raise ValueError(f"coil_maps must have shape (coils, ny, nx) or (coils, nz, ny, nx); got "
                         f"{tuple(coil_maps.shape)}")
    shape = tuple(coil_maps.shape[1:])
    if image_shape is not None and tuple(int(n) for n in image_shape) != shape:
        raise ValueError(f"image_shape {tuple(image_shape)} differs from the coil maps' image shape {shape}")
    check_trajectory(trajectory, shape, "trajectory")
    _check_band(trajectory, shape)
    samples = tuple(trajectory.shape[:-1])
    if tuple(kspace.shape) != (coil_maps.shape[0], *samples):
        raise ValueError(f"kspace must have shape (coils, *samples) = {(coil_maps.shape[0], *samples)} for "
                         f"{coil_maps.shape[0]} coil maps and a trajectory of shape {tuple(trajectory.shape)}; "
                         f"got {tuple(kspace.shape)}")
    precondition = dcf is not None
    if isinstance(dcf, str):
        if dcf != "pipe-menon":
            raise ValueError(f"dcf must be None, 'pipe-menon' or an array of weights; got {dcf!r}")
        dcf = None
    if dcf is not None:
        check_array("dcf", dcf, kinds="f")
        if tuple(dcf.shape) != samples:
            raise ValueError(f"dcf must have the trajectory's sample shape {samples}; got {tuple(dcf.shape)}")
    get_xp(kspace, coil_maps, trajectory, dcf)  # raises when NumPy and CuPy are mixed
    check_finite("kspace", kspace)
    check_not_all_zero("kspace", kspace)
    check_finite("coil_maps", coil_maps)
    gain = unit_power_gain(coil_maps)  # as for Cartesian data: solved at unit power, the image in the maps' units
    if dcf is not None:
        check_finite("dcf", dcf)
        if bool((get_xp(dcf).asarray(dcf) < 0).any()):
            raise ValueError("dcf has negative weights; expected density compensation weights >= 0")
    xp = get_xp(coil_maps)
    if not bool(xp.any(coil_maps != 0)):
        raise ValueError("coil_maps are all zero; expected sensitivities that are non-zero on the object")

    cdtype = np.complex128 if np.dtype(kspace.dtype) == np.complex128 else np.complex64
    k = to_device(kspace, dev).astype(cdtype, copy=False)
    s = to_device(coil_maps, dev).astype(cdtype, copy=False)
    if gain != 1.0:
        s = s / s.real.dtype.type(gain)
    t = to_device(trajectory, dev).astype(np.float32, copy=False)
    w = pipe_menon_dcf(t, shape) if dcf is None else to_device(dcf, dev).astype(np.float32, copy=False)
    factor = scale_factor(scale, lambda: noncartesian_data_scale(k, s, t, w, backend=nufft_backend))
    if factor != 1.0:
        k = k / k.real.dtype.type(factor)
    # the maps against the data's own calibration coil images (gridded, Hann window): a trajectory with its
    # axes swapped, or maps transposed, gave wrong images without a word (Cartesian data had this check)
    if check_maps:
        low = gridded_lowres(k, t, shape, w, width=24, window="hann", backend=nufft_backend)
        warn_maps_mismatch(explained_share(low, s), MAPS_EXPLAINED_MIN_NONCARTESIAN,
                           what="axes transposed or flipped against the trajectory (its components ordered as the "
                                "image axes, readout last)", noise="noise included")
    g = density_gain(t, shape, backend=nufft_backend)
    if g != 1.0:
        root = k.real.dtype.type(g ** 0.5)
        k, s = k / root, s / root
    return NonCartesianProblem(kspace=k, maps=s, mask=None, scale=factor, device=dev, trajectory=t, dcf=w,
                               image_shape_=shape, nufft_backend=nufft_backend, precondition=precondition,
                               density_gain=g, maps_gain=gain)


def density_gain(trajectory, image_shape, *, backend: str = "auto", floor: float = 0.1) -> float:
    """Median sampling density (samples per grid cell) over the cells with density above ``floor``."""
    from ..operators.nufft import grid_density  # noqa: PLC0415

    rho = grid_density(trajectory, image_shape, backend=backend)
    xp = get_xp(rho)
    reached = rho[rho > floor]
    return float(xp.median(reached)) if reached.size else 1.0
