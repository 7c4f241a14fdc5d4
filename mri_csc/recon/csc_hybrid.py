r"""The hybrid method ``"csc-tv"``: the CSC prior plus isotropic total variation.

Model
-----
The ``csc`` model of :mod:`mri_csc.solvers.csc_recon` (with :math:`u = e^{-i\varphi}x`) plus
isotropic TV of the complex image,

.. math::
    \min_{x,z}\ \tfrac12\|Ax-y\|^2
    + \mu\Big(\tfrac12\big\|H u - Dz\big\|^2 + \lambda\|z\|_1\Big)
    + \tfrac{\gamma}{2}\|\operatorname{Im} u\|^2
    + \lambda_2 \sum_i \big\|(\nabla x)_i\big\|_2 ,

(:class:`~mri_csc.prior.functionals.TVPrior`: forward differences, Neumann boundary, its prox by
``tv_iter`` fast-gradient-projection steps on the dual, warm-started; 3 gave the same PSNR as 10
and 30 within 0.02 dB on Shepp–Logan P8 35 dB and lines R3 45 dB, in 0.5–0.7× the time). The TV term is split off as
:math:`x = v` with ADMM penalty :math:`\rho_2` and scaled dual :math:`w` inside the CSC
block-coordinate descent (``priors`` of :class:`~mri_csc.solvers.CSCReconSolver`): each outer
iteration runs the CSC code step, ``cg_iter`` CG steps on
:math:`(A^HA + \text{the csc x-step weight} + \rho_2 I)x = A^Hy + \mu e^{i\varphi}t + \rho_2(v - w)`,
then :math:`v \leftarrow \operatorname{prox}_{\lambda_2\mathrm{TV}/\rho_2}(x + w)`,
:math:`w \leftarrow w + x - v`. With ``solver="admm"`` TV is one more split of
:class:`~mri_csc.solvers.ReconSolver`. ``csc`` alone stays the headline method; this one exists
because the shipped dictionary has no step-edge atoms, and ``benchmarks/quality.py`` shows it in its
own column so that the share of the gain that is CSC's stays visible.

Defaults
--------
Every ``csc`` parameter keeps its meaning and default (:mod:`mri_csc.recon.csc_defaults`), except
the CSC weights: they are the weights of the rule the hybrid was fitted against,
:data:`~mri_csc.recon.csc_defaults.RULE_V4` (μ = 37.5 λ; ``csc`` itself has since moved to a softer
coupling, not measured with TV), multiplied by :data:`CSC_FACTOR` (per mask kind; the CSC term shares
the work with :math:`R_2`); 3-D line masks take ``RULE_V4["lines"]`` too, while 3-D 2-D patterns and
non-Cartesian problems take ``csc``'s rules for them (``RULE_3D``, ``RULE_NONCARTESIAN``). The new
weight follows the noise too:
``lam2="auto"`` is :math:`\lambda_2 = \max(a_2\hat\sigma, \lambda_{2,\min})` and
``rho2="auto"`` is :math:`\rho_2 = r_2\,\mu` (:data:`RULE`), with σ̂ the estimate the CSC rule
uses (in the units of the scaled data). A non-Cartesian problem without ``noise_std`` has no σ̂
(``csc`` then uses its fixed weights): :math:`\lambda_2 = (a_2/a)\,\lambda_{csc}` there, the
ratio the rule gives, with :math:`a` the csc rule's slope and :math:`\lambda_{csc}` its fixed λ.
The constants were fitted on the tuning split of ``benchmarks/quality.py`` only
(``--fit-hybrid tv``); see :data:`RULE`.
"""

from __future__ import annotations

import math

from ..prior.functionals import TVPrior
from .csc import SCHEMA as CSC_SCHEMA
from .csc import check_image_params, gamma_in_use, is_line_mask, resolve_params, run_csc
from .csc_defaults import RULE_V4
from .problem import ReconProblem
from .registry import Param, register_method

__all__ = ["RULE", "CSC_FACTOR", "SCHEMA", "resolve_hybrid", "tv_weights", "csc_tv"]

#: mask kind -> the factor f on the CSC weights λ, μ (and γ) resolved by the csc rule (non-Cartesian
#: problems, which have no mask, take the "2d" entries: not fitted on non-Cartesian data)
CSC_FACTOR = {"2d": 0.7, "lines": 0.35}
#: mask kind -> (slope a₂ = λ₂/σ̂, floor λ₂,min, r₂ = ρ₂/μ), with μ the hybrid's (scaled) μ.
#: Fitted, with the shipped v4 dictionary and the csc rule fitted for it, on the tuning split of
#: ``benchmarks/quality.py`` only (``--fit-hybrid tv``: Colin 27 axial and BART's Shepp–Logan,
#: 25/35/45 dB, Poisson R=4, 8 and lines R=4, 3; ESPIRiT maps) over f ∈ {0.35, 0.5, 0.7} ×
#: a₂ ∈ {0.04, 0.08, 0.16} × ρ₂ ∈ {0.05, 0.15, 0.5} × the csc rule's μ, choosing per mask kind on the
#: mean shortfall plus half the worst from each case's best: Poisson (f, a₂, ρ₂/μ_rule) = (0.7, 0.04,
#: 0.5) — shortfall mean 0.02 dB, worst 0.08, +0.77 dB mean over each case's best tuned peer (worst
#: −0.70, Shepp–Logan P8 45 dB); lines (0.35, 0.08, 0.05) — mean 0.25, worst 0.99, +1.65 dB over the
#: best peer (worst +1.17). The line floor λ₂,min = 4e-4 is from the first (v3) fit: on line masks
#: aliasing and not noise sets the weight at low noise, as for the csc rule. A large ρ₂ on line
#: masks cost up to 1.4 dB in the v3 fit (the split's damping ends the iteration early).
RULE = {"2d": (0.04, 0.0, 0.5 / CSC_FACTOR["2d"]), "lines": (0.08, 4e-4, 0.05 / CSC_FACTOR["lines"])}

_AUTO = dict(kind="float", also=("auto",))
#: the csc-tv parameters: every csc parameter plus TV's (the one source of their defaults)
SCHEMA = {
    **CSC_SCHEMA,
    "lam2": Param("auto", lo=0, **_AUTO),
    "rho2": Param("auto", lo=0, lo_open=True, **_AUTO),
    "tv_iter": Param(3, "int", lo=1),
    # csc-tv solves a volume as one 3-D problem (RULE_3D times its factors; per readout was measured for csc
    # only, and csc-tv's rule was fitted on 2-D slices); "per-readout" is csc's alone
    "volume": Param("auto", "choice", choices=("3d",), also=("auto",)),
}


def tv_weights(sigma: float, lines: bool, mu: float) -> dict:
    r"""``{"lam2", "rho2"}``: :math:`\lambda_2 = \max(a_2\sigma, \lambda_{2,\min})`, :math:`\rho_2 = r_2\mu`.

    Parameters
    ----------
    sigma : float
        k-space noise standard deviation in the scaled data's units (> 0).
    lines : bool
        Whole-line (1-D) undersampling (:func:`~mri_csc.recon.csc.is_line_mask`).
    mu : float
        The hybrid's resolved CSC coupling weight μ (> 0).
    """
    s = float(sigma)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    slope, floor, rho_per_mu = RULE["lines" if lines else "2d"]
    return {"lam2": max(slope * s, floor), "rho2": rho_per_mu * float(mu)}


def resolve_hybrid(problem: ReconProblem, params: dict) -> dict:
    """The csc parameters resolved by :func:`~mri_csc.recon.csc.resolve_params` (times
    :data:`CSC_FACTOR` where they were ``"auto"``), then ``lam2`` and ``rho2`` (idempotent)."""
    auto = {k for k in ("lam", "mu", "gamma") if params.get(k) == "auto"}
    out = resolve_params(problem, _one_volume(params, problem.ndim, getattr(problem, "trajectory", None) is not None),
                         rules=RULE_V4)
    lam_rule = out["lam"]
    lines = problem.mask is not None and is_line_mask(problem.mask)
    for k in auto:
        out[k] = CSC_FACTOR["lines" if lines else "2d"] * out[k]
    if "gamma" in auto and "mu" not in auto:  # γ follows the user's μ, as in csc
        out["gamma"] = gamma_in_use(out["mu"], out["phase"], given=False)  # 0.0 with phase=False, as in csc
    if out["lam2"] == "auto" or out["rho2"] == "auto":
        if out["noise_std"] == "auto":  # non-Cartesian without a noise figure: the rule's ratio to λ
            sigma = lam_rule / RULE_V4["lines" if lines else "2d"][0]
        else:
            sigma = out["noise_std"] / float(problem.scale)
        w = tv_weights(sigma, lines, out["mu"])
        out["lam2"] = w["lam2"] if out["lam2"] == "auto" else out["lam2"]
        out["rho2"] = w["rho2"] if out["rho2"] == "auto" else out["rho2"]
    return out


def _one_volume(params: dict, ndim: int, noncartesian: bool) -> dict:
    """``params`` with ``volume="3d"`` on a 3-D Cartesian image: csc-tv never splits a volume into readout
    planes (csc's ``volume="auto"`` would, and leave every weight to the planes)."""
    if ndim == 3 and not noncartesian and params.get("volume", "auto") == "auto":
        return {**params, "volume": "3d"}
    return dict(params)


def check_image_hybrid(params: dict, image_shape, noncartesian: bool = False) -> None:
    """:func:`~mri_csc.recon.csc.check_image_params` for a volume solved as one 3-D problem."""
    check_image_params(_one_volume(params, len(tuple(image_shape)), noncartesian), image_shape, noncartesian)


def csc_tv(problem: ReconProblem, *, show_pbar: bool = False, **params):
    """``"csc-tv"``: the CSC prior plus isotropic TV (module docstring); returns ``(image, history, extras)``."""
    p = resolve_hybrid(problem, params)
    tv = TVPrior(p["lam2"], n_inner=p["tv_iter"])
    return run_csc(problem, p, extra=[tv], rho=[p["rho2"]], show_pbar=show_pbar, desc="csc-tv")


register_method("csc-tv", csc_tv, SCHEMA, "CSC prior plus isotropic total variation (hybrid)",
                resolve=resolve_hybrid, check_image=check_image_hybrid)
