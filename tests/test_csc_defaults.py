"""The noise-adaptive CSC defaults: λ, μ, γ from the estimated (or given) noise level and the mask kind."""

import numpy as np
import pytest

import mri_csc
from mri_csc.recon.csc_defaults import RULE, RULE_3D, RULE_NONCARTESIAN, RULE_V4, auto_weights
from mri_csc.sim import make_dataset


def test_rule_scales_with_sigma_and_floors_lines():
    a = auto_weights(0.01, lines=False)
    b = auto_weights(0.02, lines=False)
    assert b["lam"] == pytest.approx(2 * a["lam"]) and b["mu"] == pytest.approx(2 * a["mu"])
    assert a["mu"] == pytest.approx(RULE["2d"][2] * a["lam"]) and a["gamma"] == a["mu"]
    floor = RULE["lines"][1]
    assert auto_weights(1e-9, lines=True)["lam"] == pytest.approx(floor)
    assert auto_weights(10.0, lines=True)["lam"] == pytest.approx(10.0 * RULE["lines"][0])
    assert auto_weights(10.0, lines=True)["mu"] == pytest.approx(10.0 * RULE["lines"][0] * RULE["lines"][2])


@pytest.mark.parametrize("rule", [RULE_V4["2d"], RULE_3D, RULE_NONCARTESIAN, RULE["lines"], (1.0, 0.0, 3.0)])
def test_a_given_rule_sets_slope_floor_and_ratio(rule):
    slope, floor, ratio = rule
    w = auto_weights(1.0, lines=False, rule=rule)
    assert w["lam"] == pytest.approx(max(slope, floor)) and w["mu"] == pytest.approx(ratio * w["lam"])
    assert auto_weights(1e-12, lines=False, rule=rule)["lam"] == pytest.approx(floor)


def test_line_masks_take_a_softer_coupling_than_2d_patterns():
    assert RULE["lines"][2] < RULE["2d"][2] == RULE_V4["lines"][2]
    w = auto_weights(1.0, lines=True)
    assert w["mu"] / w["lam"] == pytest.approx(RULE["lines"][2])
    with pytest.raises(ValueError, match="rule must be"):
        auto_weights(1.0, lines=False, rule=(0.5, 1e-3))


@pytest.mark.parametrize("bad, exc", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                      ("x", TypeError)])
def test_rule_rejects_bad_sigma(bad, exc):
    with pytest.raises(exc, match="sigma"):
        auto_weights(bad, lines=False)


@pytest.fixture(scope="module")
def case():
    return make_dataset("shepp-logan", (64, 64), 4, mask="poisson", accel=4, snr_db=30, seed=2)


def test_noise_std_is_estimated_recorded_and_in_input_units(case):
    r = mri_csc.reconstruct(case.kspace, case.maps, mask=case.mask, method="csc", max_iter=1)
    sigma = r.params["noise_std"]
    clean = make_dataset("shepp-logan", (64, 64), 4, mask="poisson", accel=4, snr_db=None, seed=2)
    true = np.sqrt(np.mean(np.abs(clean.kspace[:, clean.mask != 0]) ** 2) / 10 ** 3)
    assert 0.9 < sigma / true < 1.4
    # scaling the data scales the estimate (input units) and leaves the resolved weights alone
    r10 = mri_csc.reconstruct(case.kspace * 10, case.maps, mask=case.mask, method="csc", max_iter=1)
    assert r10.params["noise_std"] == pytest.approx(10 * sigma, rel=1e-4)
    assert r10.params["lam"] == pytest.approx(r.params["lam"], rel=1e-4)


def test_noise_std_override_sets_the_weights(case):
    r = mri_csc.reconstruct(case.kspace, case.maps, mask=case.mask, method="csc", max_iter=1)
    half = mri_csc.reconstruct(case.kspace, case.maps, mask=case.mask, method="csc", max_iter=1,
                               noise_std=r.params["noise_std"] / 2)
    assert half.params["lam"] == pytest.approx(r.params["lam"] / 2, rel=1e-5)
    assert half.params["mu"] == pytest.approx(r.params["mu"] / 2, rel=1e-5)
    # explicit weights win over the rule; the noise level is then not needed and stays "auto"
    fixed = mri_csc.reconstruct(case.kspace, case.maps, mask=case.mask, method="csc", max_iter=1, lam=0.01, mu=0.2)
    assert (fixed.params["lam"], fixed.params["mu"], fixed.params["noise_std"]) == (0.01, 0.2, "auto")


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2.0, ValueError), ("loud", ValueError),
                                      (True, ValueError), (float("inf"), ValueError)])
def test_bad_noise_std(case, bad, exc):
    with pytest.raises(exc, match="noise_std"):
        mri_csc.reconstruct(case.kspace, case.maps, mask=case.mask, method="csc", max_iter=1, noise_std=bad)
