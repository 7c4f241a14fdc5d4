r"""The ``"csc"`` method: convolutional sparse coding prior with phase smoothness.

See :mod:`mri_csc.solvers.csc_recon` for the model and the iteration. This
module turns a :class:`~mri_csc.recon.problem.ReconProblem` and user
parameters into a solver, with defaults chosen to work untuned on data scaled
as :func:`~mri_csc.recon.problem.data_scale` does.

Default rule
------------
``lam="auto"`` and ``mu="auto"`` follow the noise level: σ̂ is estimated from
the calibration region (:mod:`mri_csc.recon.noise`; ``noise_std=`` overrides
it, in the units of the input k-space, and the result records it) and turned
into λ and μ by the rule of :mod:`mri_csc.recon.csc_defaults` (λ ∝ σ̂ with a
floor; μ = 37.5 λ for 2-D patterns, the softer μ = 2.34 λ for whole-line masks), fitted on the tuning split of
``benchmarks/quality.py``; volumes solved as one 3-D problem with a 2-D pattern take
:data:`~mri_csc.recon.csc_defaults.RULE_3D`, fitted for the 3-D dictionary on a tuning slab
(``benchmarks/quality3d.py --source ch2 --fit``). ``gamma="auto"`` sets the phase-smoothness weight
equal to μ; with ``phase=False`` there is no phase term, so γ is recorded as 0.0 (a nonzero γ
given is named in a warning, :func:`gamma_in_use`). ``phase="auto"`` demodulates by the smooth phase of a
Hann-windowed centre of k-space,
``phase_width`` samples wide (``"auto"``: per axis 4/3 of the fully sampled centre's side within
[16, 32] on 2-D Cartesian data, 24 otherwise; :func:`phase_window_width`).
``LAM_2D``/``MU_2D``/``LAM_LINES``/``MU_LINES`` are the earlier fixed defaults (chosen at 30 dB on ch2),
kept for reference.

Volumes (``volume``): a 3-D Cartesian volume whose mask is the same at every readout position (the
readout fully sampled) is solved by default as one 2-D problem per readout position
(``volume="per-readout"``, :mod:`mri_csc.recon.readout_planes`): after an inverse FFT along the readout
the data term separates exactly, and each ``(nz, ny)`` plane gets the 2-D dictionary and its own data
scale, noise estimate and 2-D defaults, as a 2-D slice would; the prior is then a sum of 2-D CSC priors
over the planes. ``volume="3d"`` solves one 3-D problem with the 3-D dictionary (the only choice when the
mask varies along the readout, or the 2-D filters do not fit the planes). :func:`resolve_volume` gives
the rule and the figures it was chosen on (held-out slab: +1.96 / +2.54 dB over 3-D CSC, 1.9-3.3x its
time on 2 cores with the planes as threads). The planes always take their own data scale: ``scale`` (and
``result.scale``) is the volume's, so a ``lam`` given is in each plane's scaled units whatever ``scale``
says.

Non-Cartesian problems (``trajectory=``) estimate σ̂ from their readouts
(:func:`mri_csc.recon.noise.readout_noise_std`) and use
:data:`~mri_csc.recon.csc_defaults.RULE_NONCARTESIAN` on the density-normalised units
(:mod:`mri_csc.recon.noncartesian`); readouts that leave no noise-only band (no readout
oversampling) keep ``LAM_2D``/``MU_2D`` unless ``noise_std`` is given.

``imag_codes="auto"`` sparse-codes only the real part of the demodulated image
when the phase is demodulated (the imaginary part keeps its low-pass part and
the γ penalty), and both parts when ``phase=False``. Coding both costs 1.5x the
time for +0.07 dB mean PSNR on the tuning slices (35.15 against 35.08 dB; 8.0 s
against 5.2 s for the six of them).

Iterations stop when the image's relative change between outer iterations, averaged over
the last ``tol_window`` (10) of them whose codes were kept, falls below ``tol`` (5e-4), at most
``max_iter`` (150) (``solver="bcd"``; ``"admm"`` reads ``tol`` as its relative residual tolerance
and ignores ``tol_window``); chosen on the tuning split of ``benchmarks/quality.py`` (mean PSNR 34.11 dB
with the previous test, one iteration's change below 1e-3, at most 100 iterations; 34.64 dB with
this one, for 1.8x the iterations; 34.70 dB at 150 iterations whatever the change). One sparse-coding
ADMM step per outer iteration (``csc_iter=1``; the coder's state carries over)
and the coder's ρ rebalanced every ``rho_period`` (2) of its steps.

``monotone=True`` (default) makes the code step a descent step (the prior keeps the coder's
new codes only when they lower the objective, after up to two more coder steps on the same
image; :mod:`mri_csc.prior.csc_prior`), so the recorded objective is non-increasing;
``monotone=False`` takes every raw ADMM step of the coder, as before (its objective rose by up
to 5 % on BART phantoms; ``benchmarks/monotonicity.py`` compares the two).

Blind CSC (``adapt_dictionary="auto"``: every 10 code steps on Cartesian problems, 2-D and 3-D,
off on non-Cartesian ones): every N code steps, one masked dictionary-update
step on the kept codes (:meth:`~mri_csc.prior.csc_prior.CSCPrior.adapt`, warm-started across
calls), kept only when it lowers :math:`\|Hu - Dz\|^2` at those codes, so the objective stays
non-increasing and a step that does not help leaves the dictionary as it was; the dictionary in
use comes back as ``result.extras["dictionary"]``. Chosen on the tuning split of
``benchmarks/quality.py`` (CSC against the best tuned peer: +0.35 dB with the shipped dictionary,
+0.69 dB with N = 10; N = 3, 5, 20: +0.51, +0.56, +0.62 dB), then scored on the held-out split:
+0.03 → +0.09 dB, most of it on BART's geometric phantom (+0.14 dB), for about 15 % more time.
``adapt_dictionary=0`` keeps the shipped (or given) dictionary fixed. On the non-Cartesian
benchmark's tuning slice (``benchmarks/noncartesian.py --part quality``, ch2 slice 90) N = 10 lost
0.31 dB mean (radial R = 4: −0.76 dB), so it stays off there. On the 3-D tuning slab
(``benchmarks/quality3d.py``'s Colin 27 source) N = 10 gained +0.35 / +0.08 / +0.29 dB on its three
cases, for about 10 % more time.

Dictionary (``dictionary``): ``None`` takes the shipped one (48 real 11×11 filters; 16 7×7×7 ones for
volumes), else an array ``(K, fy, fx)`` (``(K, fz, fy, fx)``) or an ``.npz`` file with key ``filters``.
Its filters must fit in the image (every axis at most the image's: the shipped 11×11 filters need at least
an 11×11 image) and none may be all zero (refused, naming its index), both checked before any work. The
model assumes unit-norm filters (the shipped and learned ones are; blind CSC keeps them in the unit ball;
the default weights were fitted with them): a filter whose l2 norm is off 1 by more than 1 % is divided
by its norm, with a warning (:func:`~mri_csc.prior.dictionary.check_dictionary`); ×10 filters had given
0.148 NRMSE against 0.118 on a Shepp–Logan case, and blind CSC never kept an update.

Solvers (``solver``): ``"bcd"`` (default) is the block-coordinate descent of
:mod:`mri_csc.solvers.csc_recon`, with the majorize–minimize data step
(``x_step="mm"``) or the exact one (``"exact"``); ``"admm"`` runs
:class:`~mri_csc.solvers.ReconSolver` with :class:`~mri_csc.prior.csc_prior.CSCPrior`
and :class:`~mri_csc.prior.functionals.PhasePrior` as two splits (ρ starting at μ and
γ), the same objective. Measured on the ``benchmarks/quality.py`` slices (ch2 80, 90,
105; Poisson R=4, R=8, 1D R=4; CSC only), mean PSNR: ``bcd``/``mm`` 34.64 dB,
``bcd``/``exact`` 34.93 dB (it stops later: its steps are larger at low frequencies,
2x the time per slice on a loaded machine), the previous solver 34.60 dB. ``admm``
reached 39.06 dB after 16 iterations on ch2 slice 80 (R=4) where ``bcd`` had 39.19 dB
in 0.7x its time, and its residual test did not stop it within 100 iterations at
``tol=1e-3``: the soft coupling makes :math:`R` smooth, and alternating the two
blocks directly needs no extra split.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from tqdm.auto import tqdm

from ..backend import get_xp, to_device, to_numpy
from ..prior.conv import check_filters
from ..prior.csc_prior import CSCPrior
from ..prior.dictionary import check_dictionary, filter_norms, load_default_dictionary
from ..prior.functionals import PhasePrior
from ..prior.phase import phase_from_image
from ..prior.sparse_coding import ConvSparseCoder
from ..solvers.admm import ReconSolver
from ..solvers.csc_recon import CSCReconSolver
from ..validate import check_array, check_finite
from .csc_defaults import RULE, RULE_3D, RULE_NONCARTESIAN, auto_weights, resolve_noise_std
from .noise import calibration_box, noise_estimable
from .problem import ReconProblem
from .readout_planes import readout_separable, solve_per_readout
from .registry import Param, register_method

__all__ = ["csc", "run_csc", "is_line_mask", "phase_window_width", "check_phase_width", "check_image_params",
           "check_x0", "gamma_in_use", "resolve_params", "resolve_volume", "csc_per_readout", "LAM_2D", "LAM_LINES",
           "MU_2D", "MU_LINES", "ADAPT_EVERY", "DEFAULTS", "SCHEMA"]

log = logging.getLogger(__name__)

LAM_2D = 0.008
LAM_LINES = 0.025
MU_2D = 0.3
MU_LINES = 0.1
#: blind CSC's default period (``adapt_dictionary="auto"``) on Cartesian problems (2-D and 3-D); 0 on non-Cartesian
ADAPT_EVERY = 10

_AUTO_NUM = dict(kind="float", also=("auto",))
_FLAG = dict(kind="choice", choices=(True, False), also=("auto",))

#: the csc parameters: the one source of their defaults and accepted values (see Method.check)
SCHEMA = {
    "lam": Param("auto", lo=0, **_AUTO_NUM),
    "mu": Param("auto", lo=0, lo_open=True, **_AUTO_NUM),
    "gamma": Param("auto", lo=0, **_AUTO_NUM),
    "lam_lp": Param(5.0, "float", lo=0),
    "noise_std": Param("auto", lo=0, lo_open=True, **_AUTO_NUM),
    "phase": Param("auto", **_FLAG),
    "phase_width": Param("auto", "int", lo=2, also=("auto",), per_axis=True),
    "imag_codes": Param("auto", **_FLAG),
    "max_iter": Param(150, "int", lo=1),
    "csc_iter": Param(1, "int", lo=1),
    "cg_iter": Param(3, "int", lo=1),
    "rho": Param(None, "float", lo=0, lo_open=True, also=(None,)),
    "rho_period": Param(2, "int", lo=1),
    "relax": Param(1.8, "float", lo=0, hi=2, lo_open=True, hi_open=True),
    "dictionary": Param(None),
    "tol": Param(5e-4, "float", lo=0),
    "tol_window": Param(10, "int", lo=1),
    "solver": Param("bcd", "choice", choices=("bcd", "admm")),
    "x_step": Param("mm", "choice", choices=("mm", "exact")),
    "monotone": Param(True, "choice", choices=(True, False)),
    "adapt_dictionary": Param("auto", "int", lo=0, also=("auto",)),
    "x0": Param(None),
    "callback": Param(None, "callable", also=(None,)),
    "volume": Param("auto", "choice", choices=("3d", "per-readout"), also=("auto",)),
}
DEFAULTS = {k: p.default for k, p in SCHEMA.items()}


def is_line_mask(mask) -> bool:
    """True for 1-D undersampling: the pattern varies along exactly one image axis.

    A 2-D mask of whole lines (constant along the readout) is one; so is a 3-D multi-slice line mask
    (the same columns in every (kz, ky)). A 3-D Poisson mask over (kz, ky) repeated along the readout
    kx varies along two axes: 2-D undersampling, not lines. Full sampling is not lines."""
    xp = get_xp(mask)
    m = mask != 0
    if bool(m.all()):
        return False
    varying = 0
    for ax in range(m.ndim):
        first = m[(slice(None),) * ax + (slice(0, 1),)]
        if m.shape[ax] > 1 and not bool(xp.all(m == first)):
            varying += 1
    return varying == 1


def phase_window_width(problem: ReconProblem, width="auto"):
    """The Hann window width(s) of the phase estimate: ``width`` checked against the image, or the default.

    ``"auto"`` on a 2-D Cartesian problem is, per image axis, 4/3 of the side of the fully sampled centre
    (:func:`~mri_csc.recon.noise.calibration_box`) clipped to [16, 32] samples: (32, 32) for a 24 × 24
    calibration block; for whole lines with 16 centre lines, 32 along the readout (sampled throughout) and
    21 along the phase-encode axis, in the image's axis order. Chosen on the
    tuning split of ``benchmarks/quality.py`` (mean CSC minus the best tuned peer, 12 cases): the fixed 24
    it replaces +1.43 dB; 32 on both axes +1.44 (Poisson cases better, line cases worse: past the centre
    lines the window takes in aliased ones); 48 / 64 +0.90 / +0.30; per axis (32, 21) +1.74, (32, 24)
    +1.48, (32, 16) +1.08, (24, 16) +1.12, (48, 16) +1.02 (each on every case); this rule +1.71 dB, the
    worst case −0.94 → −0.57 dB (csc-tv +1.35 → +1.52 dB). 3-D and non-Cartesian problems keep 24 (not
    measured), and so does a mask without a fully sampled centre (each clipped to the image's side). Returns
    an int or a tuple of one int per image axis; a per-axis value on non-Cartesian data, one with the wrong
    number of axes, or a width larger than the image's side is refused.
    """
    noncartesian = getattr(problem, "trajectory", None) is not None
    shape = problem.image_shape
    if width == "auto":
        if noncartesian:
            return int(min(24, *shape))
        if problem.ndim == 2 and problem.mask is not None:
            sides = [b.stop - b.start for b in calibration_box(problem.mask)]
            if min(sides) > 0:  # else no fully sampled centre: the fixed width the rule replaced
                return tuple(int(min(max(round(4 * s / 3), 16), 32, n)) for s, n in zip(sides, shape))
        widths = tuple(min(24, n) for n in shape)
        return 24 if set(widths) == {24} else widths
    return check_phase_width(width, shape, noncartesian)


def check_phase_width(width, image_shape, noncartesian: bool = False):
    """``phase_width`` (a number or one per image axis, not ``"auto"``) checked against the image's shape.

    Returns it as :func:`phase_window_width` does (an int, or a tuple of one int per axis); raises
    ``ValueError`` for a per-axis value on non-Cartesian data, one with the wrong number of axes, or a
    width larger than the image's side. Needs only the shape, so callers run it before estimating maps.
    """
    shape = tuple(image_shape)
    if isinstance(width, (tuple, list)):
        if noncartesian:
            raise ValueError(f"phase_width must be one width on non-Cartesian data (its window is over the "
                             f"gridded centre, the same on every axis); got {width!r}")
        if len(width) != len(shape):
            raise ValueError(f"phase_width must be one width or one per image axis ({len(shape)}); "
                             f"got {width!r} for the image shape {shape}")
        widths = tuple(int(w) for w in width)
    else:
        widths = (int(width),) * len(shape)
    if any(w > n for w, n in zip(widths, shape)):
        raise ValueError(f"phase_width must be at most the image's side on each axis {shape} "
                         f"(a window wider than k-space is a full-resolution phase); got {width!r}")
    return widths if isinstance(width, (tuple, list)) else int(width)


def check_image_params(params: dict, image_shape, noncartesian: bool = False) -> None:
    """The CSC parameters that depend on the image's shape, checked before any heavy work (``Method.check_image``):
    ``phase_width``, the dictionary (shipped or given: its filters must fit in the image, none all zero) and
    ``x0`` (the image's shape, finite values). A volume solved per readout position (``volume="per-readout"``,
    or ``"auto"`` with a 2-D dictionary) checks the dictionary and ``phase_width`` against its ``(nz, ny)``
    planes (:func:`resolve_volume`); so does ``"auto"`` left to the mask when the shipped 2-D filters fit the
    planes (a mask that varies along the readout then meets the 3-D checks when the solve starts)."""
    shape = tuple(image_shape)
    dictionary = params.get("dictionary")
    want = _wants_planes(params, shape, noncartesian)
    planes = want is True or (want is None and _planes_fit(shape))
    width = params.get("phase_width", "auto")
    if width != "auto":
        check_phase_width(width, shape[:2] if planes else shape, noncartesian)
    _load_dictionary(dictionary, shape[:2] if planes else shape)  # per readout: filters on the (nz, ny) planes
    check_x0(params.get("x0"), shape)


def _filters_ndim(dictionary) -> "int | None":
    """The dimension of a given dictionary's filters (``None`` for the shipped one)."""
    if dictionary is None:
        return None
    if isinstance(dictionary, (str, bytes)) or hasattr(dictionary, "__fspath__"):
        dictionary = _read_dictionary_file(dictionary)
    return int(np.ndim(dictionary)) - 1


def _wants_planes(params: dict, image_shape, noncartesian: bool) -> "bool | None":
    """Whether the parameters alone decide a volume's solve: True per readout position, False as one 3-D
    problem, None when the mask decides (:func:`resolve_volume`)."""
    if len(image_shape) != 3 or noncartesian:
        return False
    volume = params.get("volume", "auto")
    if volume != "auto":
        return volume == "per-readout"
    width = params.get("phase_width", "auto")
    hints = {_filters_ndim(params.get("dictionary")), len(width) if isinstance(width, (tuple, list)) else None}
    if 2 in hints and 3 in hints:
        raise ValueError(f"a 2-D dictionary (one 2-D problem per readout position) and a per-axis phase_width "
                         f"of three axes ({width!r}) contradict each other on a volume; give two widths (nz, ny)")
    return True if 2 in hints else False if 3 in hints else None


def _planes_fit(image_shape) -> bool:
    """Whether the shipped 2-D filters fit a volume's ``(nz, ny)`` planes."""
    return all(f <= n for f, n in zip(load_default_dictionary(ndim=2).shape[1:], tuple(image_shape)[:2]))


def resolve_volume(problem: ReconProblem, params: dict) -> str:
    """How ``csc`` solves the problem: ``"per-readout"`` (one 2-D problem per readout position,
    :mod:`mri_csc.recon.readout_planes`, with the 2-D dictionary and the 2-D default rule) or ``"3d"`` (one
    problem, the 3-D dictionary and :data:`~mri_csc.recon.csc_defaults.RULE_3D`); ``params["volume"]``
    unchanged on 2-D and non-Cartesian problems.

    ``"auto"`` on a 3-D Cartesian volume is ``"per-readout"`` when the mask is the same at every readout
    position (the readout fully sampled) and the 2-D filters fit the ``(nz, ny)`` planes, unless a 3-D
    dictionary or a three-axis ``phase_width`` asks for ``"3d"``; a 2-D dictionary or a two-axis
    ``phase_width`` asks for ``"per-readout"``; ``"auto"`` also keeps ``"3d"`` when the weights need a noise
    estimate (``noise_std``, and ``lam`` or ``mu``, ``"auto"``) that the planes' ``(nz, ny)`` calibration
    region is too small for (:func:`~mri_csc.recon.noise.noise_estimable`). Chosen on
    ``benchmarks/quality3d.py``'s cases: on the tuning slab (Colin 27) per readout position gained +0.26 /
    +0.95 / +1.38 dB over 3-D CSC, on the held-out MNI152 slab +1.96 / +2.54 dB (``benchmarks/RESULTS.md``
    sections 22, 23), for 1.9-3.3x the time on 2 cores (``benchmarks/volumes.py``). A volume whose mask varies
    along the readout cannot be split: ``"per-readout"`` (asked for, or implied by a 2-D dictionary) is then
    refused, naming the mask.
    """
    volume = params.get("volume", "auto")
    noncartesian = getattr(problem, "trajectory", None) is not None
    if problem.ndim != 3 or noncartesian:
        if volume == "per-readout":
            raise ValueError(f"volume='per-readout' splits a 3-D Cartesian volume along its readout; this problem "
                             f"is {'non-Cartesian' if noncartesian else f'{problem.ndim}-D'} {problem.image_shape}")
        return volume
    want = _wants_planes(params, problem.image_shape, noncartesian)
    if want is False:
        return "3d"
    separable = readout_separable(problem)
    if want:
        if not separable:
            raise ValueError("csc per readout position (volume='per-readout', or a 2-D dictionary / two-axis "
                             "phase_width on a volume) needs the same sampling pattern at every readout position "
                             "(the mask constant along the last axis, kx); this mask varies along it: pass "
                             "volume='3d' with a 3-D dictionary")
        return "per-readout"
    if not (separable and _planes_fit(problem.image_shape)):
        return "3d"
    needs_noise = params.get("noise_std", "auto") == "auto" and "auto" in (params.get("lam"), params.get("mu"))
    plane_mask = problem.xp.broadcast_to(problem.mask, problem.image_shape)[..., 0]
    if needs_noise and not noise_estimable(plane_mask, problem.maps.shape[0]):
        log.info("csc: the volume's (nz, ny) calibration region is too small for each plane's noise estimate: "
                 "one 3-D problem (volume='3d')")
        return "3d"
    return "per-readout"


def check_x0(x0, image_shape) -> None:
    """``x0`` (``None``, or an initial image of ``image_shape`` with finite values), refused by name."""
    if x0 is None:
        return
    check_array("x0", x0)
    if tuple(x0.shape) != tuple(image_shape):
        raise ValueError(f"x0 must have the image shape {tuple(image_shape)}; got {tuple(x0.shape)}")
    check_finite("x0", x0)


def resolve_params(problem: ReconProblem, params: dict, rules: "dict | None" = None) -> dict:
    """Fill in the data-dependent defaults (``"auto"``) of checked CSC parameters (idempotent).

    The values are checked by the registry's ``Method.check`` (:data:`SCHEMA`), before and after this.
    ``rules`` (mask kind ``"2d"``/``"lines"`` -> ``(slope, floor, mu_per_lam)``) replaces
    :data:`~mri_csc.recon.csc_defaults.RULE` for 2-D Cartesian problems and line masks (``csc-tv`` passes
    the rule it was fitted against)."""
    out = dict(params)
    out["volume"] = resolve_volume(problem, out)
    if out["volume"] == "per-readout":  # each readout position's 2-D problem resolves its own (csc_per_readout)
        return out
    # noise-adaptive defaults (csc_defaults); the mask and the noise are inspected only when a default
    # depends on them (a second, idempotent call skips it). Non-Cartesian problems estimate the noise
    # from their readouts (noise.readout_noise_std) and use RULE_NONCARTESIAN on the density-normalised
    # units; where their readouts leave no noise band (no readout oversampling) and no noise_std is
    # given, they keep the fixed 2-D weights LAM_2D, MU_2D, with a warning.
    needed = out["lam"] == "auto" or out["mu"] == "auto"
    noncartesian = getattr(problem, "trajectory", None) is not None
    try:
        out["noise_std"] = resolve_noise_std(problem, out.get("noise_std", "auto"), needed=needed)
    except ValueError as e:
        if not noncartesian or out.get("noise_std", "auto") != "auto":
            raise
        log.warning("csc: %s; using the fixed weights lam=%g, mu=%g", e, LAM_2D, MU_2D)
        out["lam"] = LAM_2D if out["lam"] == "auto" else out["lam"]
        out["mu"] = MU_2D if out["mu"] == "auto" else out["mu"]
    if out["lam"] == "auto" or out["mu"] == "auto":
        if noncartesian:
            auto = auto_weights(out["noise_std"] / problem.scale / problem.density_gain ** 0.5, False,
                                rule=RULE_NONCARTESIAN)
        else:
            lines = problem.mask is not None and is_line_mask(problem.mask)
            kind = "lines" if lines else "2d"
            rule = RULE_3D if problem.ndim == 3 and not lines else (rules or RULE)[kind]  # 3-D: its own fit
            auto = auto_weights(out["noise_std"] / problem.scale, lines, rule=rule)
        out["lam"] = auto["lam"] if out["lam"] == "auto" else out["lam"]
        out["mu"] = auto["mu"] if out["mu"] == "auto" else out["mu"]
    if out["gamma"] == "auto":
        out["gamma"] = out["mu"]
    if out["phase"] == "auto":  # demodulate by the calibration region's smooth phase (recorded as True)
        out["phase"] = True
    out["gamma"] = gamma_in_use(out["gamma"], out["phase"], given=params.get("gamma", "auto") != "auto")
    out["phase_width"] = phase_window_width(problem, out.get("phase_width", "auto"))
    if out["imag_codes"] == "auto":
        out["imag_codes"] = out["phase"] is False  # demodulated images keep their detail in Re u
    if out.get("adapt_dictionary", "auto") == "auto":  # blind CSC where it was measured to help
        out["adapt_dictionary"] = 0 if noncartesian else ADAPT_EVERY
    return out


def gamma_in_use(gamma, phase, given: bool = True):
    """The phase-smoothness weight γ that runs: ``gamma``, or 0.0 with ``phase=False`` (no phase is
    demodulated, so there is no γ term); a nonzero ``gamma`` the user ``given`` is then named in a warning."""
    if phase is not False:
        return gamma
    if given and gamma != 0:
        log.warning("csc: gamma = %g has no effect with phase=False (there is no phase term); recorded as 0.0",
                    gamma)
    return 0.0


def _load_dictionary(dictionary, image_shape: tuple):
    """The dictionary's filters as given (``None``: the shipped one for the image's dimension; a path: an
    ``.npz``'s ``filters`` or an ``.npy`` array), checked against the image: dimension, no all-zero filter, every
    filter axis <= the image's."""
    ndim = len(image_shape)
    if dictionary is None and ndim not in (2, 3):
        raise ValueError(f"the shipped dictionaries are 2-D and 3-D; the image is {ndim}-D "
                         f"{image_shape}: pass dictionary= with (K, {', '.join(['f'] * ndim)}) filters")
    filters = load_default_dictionary(ndim=ndim) if dictionary is None else dictionary
    if isinstance(filters, (str, bytes)) or hasattr(filters, "__fspath__"):
        filters = _read_dictionary_file(filters)
    filters = check_filters(filters, "dictionary")
    if filters.ndim - 1 != ndim:
        raise ValueError(
            f"dictionary filters are {filters.ndim - 1}-D (shape {tuple(filters.shape)}) but the image is "
            f"{ndim}-D {image_shape}; expected (K, {', '.join(['f'] * ndim)})"
        )
    filter_norms(filters, "dictionary")
    fshape = tuple(int(n) for n in filters.shape[1:])
    if any(f > n for f, n in zip(fshape, image_shape)):
        which = f"the shipped {ndim}-D dictionary's filters" if dictionary is None else "the dictionary's filters"
        raise ValueError(
            f"{which} ({'x'.join(map(str, fshape))}) are larger than the image {image_shape}: every filter axis "
            f"must be <= the image's; pass dictionary= with filters no larger than the image "
            f"(mri_csc.prior.learn_dictionary(images, size=...) learns one), or use a method without a "
            f"dictionary ('sense', 'l1wavelet', 'tv')"
        )
    return filters


def _read_dictionary_file(path) -> np.ndarray:
    """The filters in a dictionary file: an ``.npz``'s ``filters`` (as ``mri-csc learn-dict`` writes them) or an
    ``.npy`` array; anything else is a ``ValueError`` naming the file and what it holds."""
    name = os.fsdecode(path)
    try:
        data = np.load(name, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"dictionary {name!r}: no such file") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"dictionary {name!r}: not a NumPy .npz or .npy file of filters ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        if "filters" not in data.files:
            raise ValueError(f"dictionary {name!r}: an .npz dictionary holds its filters under 'filters' "
                             f"(as mri-csc learn-dict writes it); this file holds {data.files}")
        return data["filters"]


def _dictionary(problem: ReconProblem, dictionary):
    """The prior's filters on the problem's device, float32, of unit norm
    (:func:`~mri_csc.prior.dictionary.check_dictionary`)."""
    filters = _load_dictionary(dictionary, problem.image_shape)
    filters = check_dictionary(to_numpy(filters).astype(np.float32, copy=False), "dictionary")
    return to_device(filters, problem.device)


def build_prior(problem: ReconProblem, p: dict):
    """The CSC prior (and the phase weight γ, 0 without demodulation) for resolved parameters ``p``."""
    filters = _dictionary(problem, p["dictionary"])
    coder = ConvSparseCoder(filters, problem.image_shape, p["lam"], rho=p["rho"], relax=p["relax"],
                            rho_period=p["rho_period"], dtype=problem.kspace.real.dtype)
    phasor = None
    gamma = 0.0
    if p["phase"] in ("auto", True):
        phasor = phase_from_image(problem.lowres_image(p["phase_width"]))  # Hann-windowed A^H y of the centre
        gamma = p["gamma"]
    prior = CSCPrior(coder, mu=p["mu"], lam_lp=p["lam_lp"], phasor=phasor, imag_codes=p["imag_codes"],
                     coder_iter=p["csc_iter"], monotone=p["monotone"], adapt_every=p["adapt_dictionary"])
    return prior, gamma


def _x0(problem: ReconProblem, x0):
    if x0 is None:
        return None
    check_x0(x0, problem.image_shape)
    return to_device(x0, problem.device) * (problem.maps_gain / problem.scale)  # as the image is returned


_HINT = ("lower lam (the sparse code's weight) or raise mu; a fixed rho for the coder (rho=...) can also "
         "stabilise it")


def run_csc(problem: ReconProblem, p: dict, *, extra=(), rho=(), show_pbar: bool = False, desc: str = "csc",
            warn_zero_codes: bool = True):
    """Run the CSC solver for resolved parameters ``p``, with optional extra priors ``extra`` split off
    with penalties ``rho`` (the hybrids of :mod:`mri_csc.recon.csc_hybrid`); returns ``(image, history,
    extras)`` (``extras["dictionary"]``: the adapted dictionary, NumPy, with ``adapt_dictionary``).
    ``warn_zero_codes=False`` leaves the warning for codes that are all zero to the caller."""
    prior, gamma = build_prior(problem, p)
    hint = f"{desc} with lam={p['lam']}, mu={p['mu']}: {_HINT}"
    common = dict(cg_iter=p["cg_iter"], max_iter=p["max_iter"], tol=p["tol"], x0=_x0(problem, p["x0"]),
                  callback=p["callback"], hint=hint)
    if p["solver"] == "admm":
        priors = [prior] + ([PhasePrior(gamma, prior.phasor)] if gamma > 0 else []) + list(extra)
        rhos = [p["mu"]] + [gamma] * (gamma > 0) + list(rho)
        solver = ReconSolver(problem.operator, problem.kspace, priors, rho=rhos, support=problem.support, **common)
    else:
        solver = CSCReconSolver(problem.operator, problem.kspace, prior, gamma=gamma, support=problem.support,
                                x_step=p["x_step"], priors=extra, rho=rho, tol_window=p["tol_window"], **common)
    with tqdm(total=p["max_iter"], desc=desc, disable=not show_pbar, leave=False) as pbar:
        image = solver.run(pbar)
    if warn_zero_codes and prior.codes is not None and prior.code_l1 == 0.0:
        log.warning("%s: every code is zero at lam=%g: the CSC prior has reduced to the quadratic "
                    "mu/2 ||H u||^2 (no sparse detail); lam is in the units of the scaled data (lam='auto' "
                    "sets it from the noise level)", desc, p["lam"])
    extras = {"dictionary": to_numpy(prior.filters).astype(np.float32)} if p["adapt_dictionary"] else {}
    return image, solver.history, extras


def csc(problem: ReconProblem, *, show_pbar: bool = False, **params):
    """Reconstruct with the CSC prior (see module docstring); returns ``(image, history, extras)``."""
    p = resolve_params(problem, params)
    if p["volume"] == "per-readout":
        return csc_per_readout(problem, p, show_pbar=show_pbar)
    return run_csc(problem, p, show_pbar=show_pbar)


#: what each readout position's record in ``extras["planes"]`` keeps of its resolved parameters
_PLANE_KEYS = ("lam", "mu", "gamma", "noise_std", "phase_width", "imag_codes", "adapt_dictionary")


def csc_per_readout(problem: ReconProblem, p: dict, *, show_pbar: bool = False):
    """CSC on a readout-separable volume as one 2-D problem per readout position
    (:func:`~mri_csc.recon.readout_planes.solve_per_readout`), each with the 2-D dictionary (or the 2-D one
    given) and its own resolved defaults, as a 2-D slice would have them.

    Returns ``(image, history, extras)``: ``history`` every plane's records with its ``"plane"``;
    ``extras["planes"]`` one record per readout position (``x``, ``skipped``, ``iterations`` and the resolved
    ``lam``, ``mu``, ``gamma``, ``noise_std`` (in the units of the input k-space; ``"auto"`` when ``lam`` and
    ``mu`` are both given, as no estimate is then made), ``phase_width``, ``imag_codes``,
    ``adapt_dictionary``). Each plane adapts its own copy of the dictionary (blind CSC), so there is no
    single ``extras["dictionary"]``. Codes that are all zero on every plane are warned about
    once; on some planes (those outside the object, as expected) they are logged. A ``callback`` is called
    in each plane's solve with that plane's iterate, from the worker threads on the CPU (several planes at
    once), so it must be thread-safe.
    """
    # the shipped or given filters read, checked and normalised once (a warning given once), not per plane
    filters = to_numpy(_load_dictionary(p["dictionary"], tuple(problem.image_shape[:2])))
    p = {**p, "dictionary": check_dictionary(filters.astype(np.float32, copy=False), "dictionary")}
    if p["phase"] is False and p["gamma"] != "auto":  # a gamma with no phase term: named once, 0.0 on every plane
        p = {**p, "gamma": gamma_in_use(p["gamma"], False)}

    def solve_plane(plane, x0, noise_std):
        q = resolve_params(plane, {**p, "x0": x0, "noise_std": noise_std, "volume": "auto"})
        image, history, _ = run_csc(plane, q, desc="csc plane", warn_zero_codes=False)
        record = {k: q[k] for k in _PLANE_KEYS}
        if q["noise_std"] != "auto":  # "auto" when lam and mu are given: no estimate was needed
            record["noise_std"] = float(q["noise_std"]) * problem.scale  # the plane's input units are the scaled data's
        return image, history, record

    x0 = None if p["x0"] is None else to_device(p["x0"], problem.device)
    image, history, planes = solve_per_readout(problem, solve_plane, x0=x0, noise_std=p["noise_std"],
                                               show_pbar=show_pbar)
    solved = [r["x"] for r in planes if r["skipped"] is None]
    zero = _last_zero(history)
    if solved and len(zero) == len(solved):
        log.warning("csc per readout: every code is zero on every readout position: the CSC prior has reduced to "
                    "the quadratic mu/2 ||H u||^2 (no sparse detail); lam is in the units of each plane's scaled "
                    "data (lam='auto' sets it from the noise level)")
    elif zero:
        log.info("csc per readout: every code is zero on %d of %d readout positions (expected outside the "
                 "object)", len(zero), len(solved))
    return image, history, {"planes": planes}


def _last_zero(history) -> list:
    """The planes whose last record has no nonzero code."""
    last = {}
    for h in history:
        last[h["plane"]] = h.get("code_l1")
    return [x for x, v in last.items() if v == 0.0]


register_method("csc", csc, SCHEMA,
                "convolutional sparse coding prior with phase smoothness (block-coordinate descent, or ADMM)",
                resolve=resolve_params, check_image=check_image_params)
