r"""The ``"csc"`` method: convolutional sparse coding prior with phase smoothness.

See :mod:`mri_csc.solvers.csc_recon` for the model and the iteration. This
module turns a :class:`~mri_csc.recon.problem.ReconProblem` and user
parameters into a solver, with defaults chosen to work untuned on data scaled
as :func:`~mri_csc.recon.problem.data_scale` does.

Default rule
------------
``lam="auto"`` and ``mu="auto"`` are picked from the sampling pattern: masks
that sample whole lines (1D undersampling, coherent aliasing) get
``LAM_LINES``/``MU_LINES`` (a sparser code, a looser coupling); 2D patterns
(Poisson-disc, random) get ``LAM_2D``/``MU_2D``. ``gamma="auto"`` sets the
phase-smoothness weight equal to μ. ``phase="auto"`` demodulates by the smooth
phase of the calibration region. The values were chosen on ch2 slices 70 and
100 (simulated 8 coils, ±π random phase, 30 dB) at Poisson R=4, R=8 and 1D
R=4; ``benchmarks/quality.py`` evaluates them on other slices.

``imag_codes="auto"`` sparse-codes only the real part of the demodulated image
when the phase is demodulated (the imaginary part keeps its low-pass part and
the γ penalty), and both parts when ``phase=False``. Coding both costs 1.5x the
time for +0.07 dB mean PSNR on the tuning slices (35.15 against 35.08 dB; 8.0 s
against 5.2 s for the six of them).

Iterations stop when the image changes by less than ``tol`` (1e-3, relative)
between outer iterations, at most ``max_iter`` (100), with one sparse-coding
ADMM step per outer iteration (``csc_iter=1``; the coder's state carries over)
and the coder's ρ rebalanced every ``rho_period`` (2) of its steps: rebalancing
every step instead changed PSNR by under 0.01 dB on the tuning slices while taking
10 % longer on the array path, where the residual norms cost 7 passes over the
codes (the fused CPU kernels now give them for free; a host transfer per step,
one GPU sync on CuPy, remains).
Measured on those slices (192², 8 coils): Poisson R=4 stopped after 19
iterations, R=8 after 30-32, 1D R=4 after 34-41, 0.6-1.3 s per slice; mean PSNR
35.08 dB against 35.36 with ``tol=5e-4`` (1.6x the time). Pass a smaller ``tol``
to trade time for the last few tenths of a dB (1D masks gain most).
"""

from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

from ..backend import get_xp, to_device
from ..prior.conv import check_filters
from ..prior.dictionary import load_default_dictionary
from ..prior.phase import phase_from_image
from ..prior.sparse_coding import ConvSparseCoder
from ..solvers.csc_recon import CSCReconSolver
from .problem import ReconProblem
from .registry import register_method

__all__ = ["csc", "is_line_mask", "resolve_params", "LAM_2D", "LAM_LINES", "MU_2D", "MU_LINES", "DEFAULTS"]

LAM_2D = 0.008
LAM_LINES = 0.025
MU_2D = 0.3
MU_LINES = 0.1

DEFAULTS = {
    "lam": "auto",
    "mu": "auto",
    "gamma": "auto",
    "lam_lp": 5.0,
    "phase": "auto",
    "imag_codes": "auto",
    "max_iter": 100,
    "csc_iter": 1,
    "cg_iter": 3,
    "rho": None,
    "rho_period": 2,
    "relax": 1.8,
    "dictionary": None,
    "tol": 1e-3,
    "x0": None,
    "callback": None,
}


def is_line_mask(mask) -> bool:
    """True when the mask samples whole lines along some image axis (1D undersampling)."""
    xp = get_xp(mask)
    m = mask != 0
    for ax in range(m.ndim):
        first = m[(slice(None),) * ax + (slice(0, 1),)]
        if m.shape[ax] > 1 and bool(xp.all(m == first)):
            # constant along this axis: lines; but a mask that is constant along every axis is full sampling
            return not bool(m.all())
    return False


def _positive(name, value, allow_zero=True):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0; got {value!r}")
    return v


def _count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def resolve_params(problem: ReconProblem, params: dict) -> dict:
    """Validate the CSC parameters and fill in the data-dependent defaults (idempotent)."""
    out = dict(params)
    # the mask is inspected only when a default depends on it (a second, idempotent call skips it)
    lines = ((out["lam"] == "auto" or out["mu"] == "auto") and problem.mask is not None  # None: non-Cartesian
             and is_line_mask(problem.mask))
    if out["lam"] == "auto":
        out["lam"] = LAM_LINES if lines else LAM_2D
    out["lam"] = _positive("lam", out["lam"])
    if out["mu"] == "auto":
        out["mu"] = MU_LINES if lines else MU_2D
    out["mu"] = _positive("mu", out["mu"], allow_zero=False)
    if out["gamma"] == "auto":
        out["gamma"] = out["mu"]
    for name in ("gamma", "lam_lp"):
        out[name] = _positive(name, out[name])
    for name in ("max_iter", "csc_iter", "cg_iter"):
        out[name] = _count(name, out[name])
    out["rho_period"] = _count("rho_period", out["rho_period"], minimum=1)
    if out["rho"] is not None:
        out["rho"] = _positive("rho", out["rho"], allow_zero=False)
    if out["phase"] not in ("auto", True, False):
        raise ValueError(f"phase must be 'auto', True or False; got {out['phase']!r}")
    if out["imag_codes"] not in ("auto", True, False):
        raise ValueError(f"imag_codes must be 'auto', True or False; got {out['imag_codes']!r}")
    if out["imag_codes"] == "auto":
        out["imag_codes"] = out["phase"] is False  # demodulated images keep their detail in Re u
    out["tol"] = _positive("tol", out["tol"])
    if out["callback"] is not None and not callable(out["callback"]):
        raise TypeError(f"callback must be callable; got {type(out['callback']).__name__}")
    return out


def _dictionary(problem: ReconProblem, dictionary):
    filters = load_default_dictionary() if dictionary is None else dictionary
    if isinstance(filters, (str, bytes)) or hasattr(filters, "__fspath__"):
        with np.load(filters) as f:
            filters = f["filters"]
    filters = check_filters(filters, "dictionary")
    if filters.ndim - 1 != problem.ndim:
        raise ValueError(
            f"dictionary filters are {filters.ndim - 1}-D (shape {tuple(filters.shape)}) but the image is "
            f"{problem.ndim}-D {problem.image_shape}; expected (K, {', '.join(['f'] * problem.ndim)})"
        )
    return to_device(filters, problem.device).astype(np.float32, copy=False)


def csc(problem: ReconProblem, *, show_pbar: bool = False, **params):
    """Reconstruct with the CSC prior (see module docstring); returns ``(image, history)``."""
    p = resolve_params(problem, params)
    filters = _dictionary(problem, p["dictionary"])
    coder = ConvSparseCoder(filters, problem.image_shape, p["lam"], rho=p["rho"], relax=p["relax"],
                            rho_period=p["rho_period"], dtype=problem.kspace.real.dtype)
    phasor = None
    gamma = 0.0
    if p["phase"] in ("auto", True):
        phasor = phase_from_image(problem.lowres_image())  # = estimate_phase(kspace, maps, mask) on a grid
        gamma = p["gamma"]
    x0 = p["x0"]
    if x0 is not None:
        if tuple(x0.shape) != problem.image_shape:
            raise ValueError(f"x0 must have the image shape {problem.image_shape}; got {tuple(x0.shape)}")
        x0 = to_device(x0, problem.device) / problem.scale
    solver = CSCReconSolver(problem.sense(), problem.kspace, coder, phasor=phasor, mu=p["mu"],
                            gamma=gamma, lam_lp=p["lam_lp"], cg_iter=p["cg_iter"], csc_iter=p["csc_iter"],
                            max_iter=p["max_iter"], tol=p["tol"], x0=x0, imag_codes=p["imag_codes"],
                            callback=p["callback"])
    with tqdm(total=p["max_iter"], desc="csc", disable=not show_pbar, leave=False) as pbar:
        image = solver.run(pbar)
    return image, solver.history


register_method("csc", csc, DEFAULTS,
                "convolutional sparse coding prior with phase smoothness, solved by ADMM-based alternation",
                resolve=resolve_params)
