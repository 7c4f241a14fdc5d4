r"""Noise-adaptive default weights of the ``csc`` method.

The weights that work best follow a ridge of constant effective ℓ1 weight
:math:`\kappa = \lambda\mu` with :math:`\kappa \propto \sigma^2` (σ the k-space
noise standard deviation in the units of the scaled data, see
:func:`mri_csc.recon.problem.data_scale`), so both λ and μ scale linearly with σ:

.. math::

    \lambda = \max\big(a\,\hat\sigma,\ \lambda_{\min}\big), \qquad
    \mu = \gamma = r\,\lambda ,

with :math:`\hat\sigma` from :func:`mri_csc.recon.noise.estimate_noise_std`
(or the user's ``noise_std``). Where on the ridge (the ratio :math:`r = \mu/\lambda`) matters
too: a smaller μ at the same κ is a softer coupling. For an orthonormal dictionary the prior
:math:`\mu\min_z\big(\tfrac12\|Hu - Dz\|^2 + \lambda\|z\|_1\big)` is μ times the Huber function of the
coefficients of :math:`Hu` with threshold λ (quadratic, weight μ, below λ; linear, slope κ = λμ, above),
so a smaller μ at the same κ damps small, noise-like detail as a quadratic without coding it. Each rule is the triple
:math:`(a, \lambda_{\min}, r)`. The slope :math:`a` and the floor
:math:`\lambda_{\min}` depend on the mask kind: 1-D (whole-line) sampling
leaves coherent aliasing that does not shrink with the noise, so at low noise
the weight must not follow σ down (issue 12 reports 7–9 dB lost there by pure noise scaling);
the floor stands for that aliasing. See :data:`RULE` for the values and how they
were fitted.
"""

from __future__ import annotations

import math

__all__ = ["RULE", "RULE_V4", "RULE_3D", "RULE_NONCARTESIAN", "MU_PER_LAM", "auto_weights", "resolve_noise_std"]

#: μ/λ of the rules fitted with the ratio fixed (the first fixed defaults' 0.3 / 0.008): :data:`RULE_V4`,
#: :data:`RULE_3D` and :data:`RULE_NONCARTESIAN`
MU_PER_LAM = 37.5

#: mask kind -> (slope a = λ/σ̂, floor λ_min, μ/λ), for the shipped dictionary (v4, 48 × 11×11) with blind CSC
#: (``adapt_dictionary``, every 10 code steps) and the phase window of ``csc.phase_window_width`` on. Fitted on the
#: tuning split of ``benchmarks/quality.py`` only (``--fit --ratios 37.5 9.375 2.34375 1.171875``: Colin 27 axial
#: and BART's Shepp–Logan k-space phantom, 25/35/45 dB, Poisson R=4 and 8, lines R=4 and 3, ESPIRiT maps, 128²,
#: 8 coils): CSC's PSNR over λ ∈ 2.5e-4·2^k (k = 0..9) at μ = γ = r λ for each ratio r, then (r, a, λ_min) on
#: a grid maximising minus the mean shortfall minus half the worst from each case's best scanned point
#: (``quality.fit_rule``, printed by ``--fit``).
#: Line masks: μ/λ = 2.34375, interior (shortfall mean 0.13 dB / worst 0.47 dB; at μ/λ = 1.17, 9.375, 37.5:
#: 0.45 / 0.92, 0.45 / 1.07, 1.34 / 2.54 dB); the best λ/σ̂ per case is 1.3–12.8 (2.7 at the rule), several times
#: the ratio-37.5 rule's (our reading, not tested: the coherent aliasing of whole-line sampling then falls below
#: the threshold and is damped as a quadratic instead of being coded).
#: 2-D patterns keep μ/λ = 37.5, with the slope refitted (0.635 -> 0.6727, shortfall 0.14 / 0.26 dB at that
#: ratio). The fit over ratios preferred μ/λ = 9.375, (a, λ_min) = (1.4254, 4e-3), on its interpolated scans
#: (0.28 / 0.48 dB against 0.36 / 0.76 at 37.5), but run at that rule on the same tuning cases it was 0.14 dB
#: lower on the Poisson cases' mean against the best peer (+0.84 against +0.98 dB; worst −0.45 against
#: −0.57 dB): the factor-2 λ grid is too coarse to rank ratios whose peaks are sharp, so 37.5 stays.
RULE = {
    "2d": (0.6727, 2e-3, MU_PER_LAM),
    "lines": (2.691, 1.6e-2, 2.34375),
}

#: The previous 2-D and lines rule (mask kind -> (a, λ_min, μ/λ)), fitted at μ/λ = 37.5 alone; ``csc-tv``'s
#: CSC weights were fitted against it and still follow it (:mod:`mri_csc.recon.csc_hybrid`). Fitted on the
#: tuning split of ``benchmarks/quality.py`` (``--fit``: Colin 27 axial and BART's Shepp–Logan k-space
#: phantom, 25/35/45 dB, Poisson R=4 and 8, lines R=4 and 3, ESPIRiT maps, 128², 8 coils): CSC's PSNR over
#: λ ∈ 2.5e-4·2^k (k = 0..7) with μ = γ = 37.5 λ, then (a, λ_min) on a grid maximising minus the mean
#: shortfall minus half the worst from each case's best λ (``quality.fit_rule``, printed by ``--fit``).
#: Shortfall on the tuning cases: mean 0.16 dB / worst 0.27 dB (2-D), mean 0.41 / worst 0.87 dB (lines).
#: Best λ/σ̂ per case: 0.35–1.08 (2-D), 0.34–6.4 (lines, the largest at 45 dB on the phantom, where
#: aliasing and not noise sets the weight: hence the floor). The 36-filter v3 dictionary's best λ/σ̂
#: were half these ((a, λ_min) = (0.28, 8e-4) and (0.34, 1.6e-3)). Fitted with the dictionary fixed, before blind
#: CSC (``adapt_dictionary``) became the 2-D default.
RULE_V4 = {
    "2d": (0.635, 2e-3, MU_PER_LAM),
    "lines": (0.635, 4e-3, MU_PER_LAM),
}


#: non-Cartesian data -> (slope a, floor λ_min, μ/λ), with σ̂ in the units of the scaled *and density-normalised*
#: k-space (:mod:`mri_csc.recon.noncartesian`: divided by the data scale and by √g) and σ̂ from
#: :func:`mri_csc.recon.noise.readout_noise_std`. Fitted by ``benchmarks/noncartesian.py --part fit`` on a tuning
#: slice (Colin 27 axial 110, not the scored slice 90): golden-angle radial R = 2, 4, 8 and the variable-density
#: spiral at 25/35/45 dB, 128², 8 coils, ESPIRiT maps; CSC's PSNR over λ ∈ 2.5e-4·2^k (k = 0..8) with
#: μ = γ = 37.5 λ, then (a, λ_min) on a grid maximising minus the mean shortfall minus half the worst from each
#: case's best λ, for the shipped v4 dictionary: mean 0.10 dB / worst 0.25 dB. Best λ/σ̂ per case 0.35–1.25.
#: (The v3 dictionary's fit was (0.37, 4e-3), best λ/σ̂ 0.09–0.88.) v4's coronal and sagittal training
#: slices cross ch2's axial slices 90 and 110, so this slice is a tuning slice and not unseen data.
RULE_NONCARTESIAN = (0.4657, 4e-3, MU_PER_LAM)


#: 3-D Cartesian data with a 2-D (e.g. Poisson over (kz, ky)) pattern -> (slope a, floor λ_min, μ/λ), for the shipped
#: 3-D dictionary (16 × 7×7×7). Fitted by ``benchmarks/quality3d.py --source ch2 --fit`` on a tuning slab (Colin 27 at
#: 2 mm, the 20 axial slices no 3-D training block entered, in a (28, 96, 96) field of view; P4 25 dB, P6 35 dB, P4 45
#: dB; ESPIRiT maps; 8 coils): CSC's PSNR over λ ∈ 2.5e-4·2^k (k = 0..7), μ = γ = 37.5 λ, then ``quality.fit_rule``:
#: shortfall from each case's best λ mean 0.05 dB / worst 0.11 dB (the 2-D rule's: 0.18 / 0.54). Best λ/σ̂ per case
#: 0.34–0.74. 3-D line masks take ``RULE["lines"]`` (unmeasured in 3-D). Fitted with the dictionary fixed; blind CSC
#: was turned on for 3-D afterwards (+0.24 dB on the same slab) and the rule not refitted.
RULE_3D = (0.3564, 4e-3, MU_PER_LAM)


def auto_weights(sigma: float, lines: bool, *, rule: "tuple[float, float, float] | None" = None) -> dict:
    r"""``{"lam", "mu", "gamma"}`` for noise level ``sigma`` (scaled units) and the mask kind.

    Parameters
    ----------
    sigma : float
        Complex k-space noise standard deviation in the units of the scaled data
        (> 0, finite).
    lines : bool
        Whether the mask samples whole lines (1-D undersampling), see
        :func:`mri_csc.recon.csc.is_line_mask`.
    rule : (slope, floor, mu_per_lam), optional
        Instead of :data:`RULE`'s entry for the mask kind (e.g. :data:`RULE_NONCARTESIAN`).
    """
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a number; got {sigma!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    if rule is not None and len(rule) != 3:
        raise ValueError(f"rule must be (slope, floor, mu_per_lam); got {rule!r}")
    slope, floor, ratio = RULE["lines" if lines else "2d"] if rule is None else rule
    lam = max(slope * s, floor)
    mu = ratio * lam
    return {"lam": lam, "mu": mu, "gamma": mu}


def resolve_noise_std(problem, value="auto", *, needed: bool = True):
    r"""The k-space noise standard deviation in the units of the *input* k-space.

    ``value`` is ``"auto"`` (estimated from the calibration region by
    :func:`mri_csc.recon.noise.estimate_noise_std` when ``needed``, else left
    ``"auto"``; for a non-Cartesian problem from its readouts by
    :func:`mri_csc.recon.noise.readout_noise_std`, times the density normalisation
    :math:`\sqrt g` the problem's k-space was divided by) or a positive number given by the user (a noise scan's figure;
    1 for prewhitened data). Divide by ``problem.scale`` for the scaled units the
    solver works in.
    """
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"noise_std must be 'auto' or a positive number; got {value!r}")
        if not needed:
            return value
        from .noise import estimate_noise_std, readout_noise_std  # noqa: PLC0415

        if getattr(problem, "trajectory", None) is not None:  # non-Cartesian
            return readout_noise_std(problem.kspace, problem.trajectory) * float(problem.scale) \
                * math.sqrt(problem.density_gain)
        return estimate_noise_std(problem.kspace, problem.mask) * float(problem.scale)
    if isinstance(value, bool):
        raise TypeError(f"noise_std must be 'auto' or a positive number; got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"noise_std must be 'auto' or a positive number; got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"noise_std must be 'auto' or a finite number > 0; got {value!r}")
    return v
