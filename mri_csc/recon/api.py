"""The public entry point: :func:`reconstruct`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..backend import Device, resolve_device
from .problem import check_scale, make_problem
from .registry import get_method

__all__ = ["ReconResult", "reconstruct"]

log = logging.getLogger(__name__)


@dataclass
class ReconResult:
    """What :func:`reconstruct` returns.

    Attributes
    ----------
    image : array
        Complex image ``(ny, nx)`` or ``(nz, ny, nx)`` on the device asked for, in
        the units of the input k-space and coil maps (the internal data scaling, and the maps' scaling to
        unit power within :data:`~mri_csc.validate.MAPS_TOLERANCE`, are undone).
    history : list of dict
        Per-iteration records (``iter``, ``time`` in seconds, and the method's
        own keys: for ``csc`` the objective and its terms, ``coupling_misfit``, ``image_change``,
        ``code_l1``, ``coder_rho``; see :mod:`mri_csc.solvers.csc_recon`).
    method : str
    params : dict
        The parameters the method ran with: defaults filled in and data-dependent
        ``"auto"`` values resolved (e.g. CSC's ``lam``, ``mu``, ``gamma``,
        ``imag_codes``), and :func:`reconstruct`'s own ``scale`` (the factor used,
        a float), ``compress_coils`` and ``precision``, so that
        ``reconstruct(kspace, coil_maps, mask=mask, method=method, **params)`` repeats the run. ``csc`` on a
        volume solved per readout position (``params["volume"] == "per-readout"``) keeps the data-dependent
        values ``"auto"`` here: each plane resolves its own, recorded in ``extras["planes"]``.
    scale : float
        The data scale the k-space was divided by before solving.
    time : float
        Wall time of the solve in seconds (validation and scaling included).
    device : str
    extras : dict
        What a method returns besides the image (``csc`` and ``csc-tv``: the dictionary in use after
        blind CSC, ``"dictionary"``, absent when ``adapt_dictionary`` resolves to 0; ``csc`` per readout
        position: ``"planes"``, one record per readout position, see
        :func:`mri_csc.recon.csc.csc_per_readout`); empty for methods with nothing else.
    """

    image: object
    history: list
    method: str
    params: dict = field(default_factory=dict)
    scale: float = 1.0
    time: float = 0.0
    device: str = "cpu"
    extras: dict = field(default_factory=dict)


def reconstruct(kspace, coil_maps, *, mask=None, method: str = "csc", device: "str | Device" = "cpu",
                show_pbar: bool = False, scale: "bool | float" = True, compress_coils: "int | None" = None,
                precision: str = "single", trajectory=None, image_shape=None, dcf=None, check_maps: bool = True,
                **params) -> ReconResult:
    """Reconstruct an image from undersampled multi-coil Cartesian or non-Cartesian k-space.

    Parameters
    ----------
    kspace : array, ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, complex
        Measured k-space, zero where not sampled.
    coil_maps : array, same shape as ``kspace``
        Coil sensitivities (e.g. from :func:`mri_csc.sim.estimate_maps`).
        Where every map is zero the image is taken to be zero.
    mask : array, optional
        Sampling mask broadcasting against ``kspace``; inferred from the
        non-zero k-space samples when ``None``.
    method : str
        A registered method: ``"csc"``, ``"zero-filled"``, ``"sense"``,
        ``"l1wavelet"``, ``"tv"`` (SigPy), ``"bart-l1wavelet"``, ``"bart-tv"``
        (when the ``bart`` binary is installed); see
        :func:`mri_csc.recon.available_methods`.
    device : str
        ``"cpu"``, ``"gpu"`` or ``"gpu:N"``. Inputs are moved there once.
    show_pbar : bool
        Show a tqdm progress bar over iterations.
    scale : bool or float
        ``True``: scale the data first (BART-style, see :func:`mri_csc.recon.problem.data_scale`)
        so that default regularisation weights carry across data sets; ``False`` (or ``None``): do
        not; a finite number > 0: divide the k-space by it. Anything else is refused before any work.
    compress_coils : int, optional
        SVD-compress to this many virtual coils first (as ``bart cc -S -p N``;
        the maps are compressed the same way), see :mod:`mri_csc.preprocess.coil_compression`.
    precision : {"single", "double"}
        complex128 input is computed in complex64 (with a notice) unless ``"double"``;
        real-valued k-space is refused.
    trajectory : array ``(*samples, ndim)``, optional
        Non-Cartesian k-space locations in SigPy's ``coord`` convention (cycles per FOV,
        ``trajectory[..., i]`` along image axis ``i``); ``kspace`` is then ``(coils, *samples)``,
        ``mask`` must be ``None`` and the forward model is the NUFFT SENSE operator
        (:mod:`mri_csc.recon.noncartesian`).
    image_shape : tuple of int, optional
        With ``trajectory``: the image shape (checked against ``coil_maps.shape[1:]``).
    dcf : None, ``"pipe-menon"`` or array ``samples``
        With ``trajectory``: density compensation weights for calibration (Pipe–Menon when
        ``None``); given explicitly, they also precondition ``sense``'s CG. Never in the objective.
    check_maps : bool
        Warn when the coil maps do not explain the data's own calibration coil images (maps of another
        scan, transposed or flipped; :func:`mri_csc.validate.maps_explained_fraction`). Off for maps just
        estimated from these very data (the CLI and batch turn it off for their ESPIRiT maps).
    **params
        The method's parameters (e.g. ``lam``, ``max_iter``); unknown names raise.

    Returns
    -------
    ReconResult
    """
    t0 = time.perf_counter()
    device = resolve_device(device)
    spec = get_method(method)
    spec.check(params)
    spec.check_device(device)
    scale = check_scale(scale)
    if len(getattr(coil_maps, "shape", ())) >= 3:  # the image-dependent checks (a dictionary larger than the image)
        spec.check_for_image(params, coil_maps.shape[1:], trajectory is not None)
    from ..preprocess import compress_coils as _compress  # noqa: PLC0415  (issue 13: raw-data steps)
    from ..preprocess import input_dtype

    kspace, coil_maps = input_dtype(kspace, coil_maps, precision)
    if compress_coils is not None:
        kspace, coil_maps = _compress(kspace, compress_coils, coil_maps)
    if trajectory is not None:
        from .noncartesian import make_noncartesian_problem  # noqa: PLC0415

        if mask is not None:
            raise ValueError("mask must be None with a trajectory: non-Cartesian k-space holds only measured samples")
        problem = make_noncartesian_problem(kspace, coil_maps, trajectory, image_shape, dcf=dcf, device=device,
                                            scale=scale, check_maps=check_maps)
    elif image_shape is not None or dcf is not None:
        raise ValueError("image_shape and dcf are for non-Cartesian data; pass trajectory= as well")
    else:
        problem = make_problem(kspace, coil_maps, mask, device=device, scale=scale, check_maps=check_maps)
    full = {**spec.params, **params}
    with problem.device.use():
        if spec.resolve is not None:
            full = spec.resolve(problem, full)
            spec.check(full)  # the resolved values too
        out = spec.func(problem, show_pbar=show_pbar, **full)
        image, history = out[0], out[1]
        extras = dict(out[2]) if len(out) > 2 else {}
        image = image * image.real.dtype.type(problem.scale / problem.maps_gain)  # the units of the data and maps
    elapsed = time.perf_counter() - t0
    log.info("%s: %d iterations in %.2f s on %s", method, len(history), elapsed, problem.device)
    # reconstruct's own options too, resolved (scale as the factor used), so that **params repeats the run
    ran = {**full, "scale": float(problem.scale), "compress_coils": compress_coils, "precision": precision}
    return ReconResult(image=image, history=list(history), method=method, params=ran,
                       scale=problem.scale, time=elapsed, device=str(problem.device), extras=extras)
