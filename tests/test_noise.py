"""The k-space noise estimate (calibration-matrix singular values against the Marchenko–Pastur median)."""

import numpy as np
import pytest

import mri_csc
from mri_csc.recon.noise import calibration_box, estimate_noise_std, mp_median, noise_estimable, noise_std_from_samples
from mri_csc.sim import make_dataset, sample_mask


def _true_sigma(ds_clean, snr_db):
    p = np.mean(np.abs(ds_clean.kspace[:, ds_clean.mask != 0]) ** 2)
    return np.sqrt(p / 10 ** (snr_db / 10))


def test_mp_median_known_values():
    # beta = 1: Gavish & Donoho's omega(1) = 2.858 = (4/sqrt(3)) / sqrt(mu_1); beta -> 0 concentrates at 1
    assert mp_median(1.0) == pytest.approx((4 / np.sqrt(3) / 2.858) ** 2, rel=1e-3)
    assert mp_median(1e-4) == pytest.approx(1.0, abs=0.02)
    # monotone in beta
    assert mp_median(0.2) > mp_median(0.5) > mp_median(1.0)
    with pytest.raises(ValueError, match="beta"):
        mp_median(0.0)


@pytest.mark.parametrize("shape", [(8, 24, 24), (8, 96, 5), (4, 12, 12, 12)])
def test_pure_noise_is_recovered(rng, shape):
    sigma = 0.37
    n = sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    est = estimate_noise_std(n.astype(np.complex64), np.ones(shape[1:], np.float32))
    assert est == pytest.approx(sigma, rel=0.05)


@pytest.mark.parametrize("phantom", ["shepp-logan", "brain"])
@pytest.mark.parametrize("mask,accel", [("poisson", 6), ("random-lines", 4)])
def test_within_1_35x_of_true_sigma_from_low_to_high_snr(phantom, mask, accel):
    if phantom == "brain":
        pytest.importorskip("nibabel")
        import os

        from mri_csc.sim.phantoms import DEFAULT_BRAIN

        if not os.path.isfile(DEFAULT_BRAIN):
            pytest.skip("mricron-data not installed")
    kw = dict(shape=(96, 96), n_coils=8, mask=mask, accel=accel, seed=3, oversample=2)
    clean = make_dataset(phantom, snr_db=None, **kw)
    for snr in (20, 30, 40, 50):
        ds = make_dataset(phantom, snr_db=snr, **kw)
        ratio = estimate_noise_std(ds.kspace, ds.mask) / _true_sigma(clean, snr)
        assert 0.95 < ratio < 1.35, (snr, ratio)


def test_mask_inferred_and_scale_equivariant():
    ds = make_dataset("shepp-logan", (64, 64), 4, mask="poisson", accel=4, snr_db=30, seed=0)
    a = estimate_noise_std(ds.kspace, ds.mask)
    assert estimate_noise_std(ds.kspace) == pytest.approx(a, rel=1e-6)
    assert estimate_noise_std(ds.kspace * 10) == pytest.approx(10 * a, rel=1e-5)


def test_calibration_box():
    m = sample_mask("poisson", (64, 64), 4, calib=16, seed=0)
    box = calibration_box(m)
    assert m[box].all() and all(s.stop - s.start >= 16 for s in box)
    lines = sample_mask("random-lines", (64, 64), 4, seed=0)
    box = calibration_box(lines)
    assert box[0] == slice(0, 64) and lines[box].all()
    m = np.zeros((8, 8))
    assert calibration_box(m) == (slice(4, 4), slice(4, 4))


def test_no_calibration_region_is_a_clear_error(rng):
    k = np.zeros((2, 16, 16), np.complex64)
    k[:, ::2, ::2] = 1
    with pytest.raises(ValueError, match="noise_std"):
        estimate_noise_std(k)
    with pytest.raises(ValueError, match="kernel"):
        estimate_noise_std(k, kernel=0)


@pytest.mark.parametrize("side, coils", [(2, 4), (4, 4), (5, 8), (6, 2), (8, 4), (16, 8)])
def test_noise_estimable_says_when_the_estimate_runs(rng, side, coils):
    """noise_estimable answers, without an SVD, whether estimate_noise_std refuses the calibration region."""
    mask = np.zeros((32, 32), np.float32)
    mask[::3, ::3] = 1
    mask[16 - side // 2:16 - side // 2 + side, 16 - side // 2:16 - side // 2 + side] = 1
    k = (rng.standard_normal((coils, 32, 32)) + 1j * rng.standard_normal((coils, 32, 32))).astype(np.complex64)
    try:
        estimate_noise_std(k * mask, mask, warn=False)
        runs = True
    except ValueError as e:
        assert "too small" in str(e) or "no fully sampled" in str(e)
        runs = False
    assert noise_estimable(mask, coils) == runs
    assert runs == (side >= 8) or side == 6  # a 4 x 4 block leaves too few window positions, 8 x 8 enough


def test_noise_scan_samples(rng):
    n = 2.0 * (rng.standard_normal((8, 5000)) + 1j * rng.standard_normal((8, 5000))) / np.sqrt(2) + 3.0
    assert noise_std_from_samples(n) == pytest.approx(2.0, rel=0.03)
    with pytest.raises(ValueError, match="NaN"):
        noise_std_from_samples(np.array([1.0, np.nan]))


@pytest.mark.parametrize("kind, accel", [("golden-radial", 4), ("spiral", 2)])
@pytest.mark.parametrize("snr_db", [20, 45])
def test_readout_noise_std_recovers_sigma_on_noncartesian_brains(kind, accel, snr_db):
    from mri_csc.recon.noise import readout_noise_std
    from mri_csc.sim import birdcage_maps, shepp_logan
    from mri_csc.sim.trajectories import make_trajectory, simulate_noncartesian

    n = 64
    img = shepp_logan((n, n)).astype(np.complex64)
    coord = make_trajectory(kind, (n, n), accel)
    clean = simulate_noncartesian(img, birdcage_maps((n, n), 4), coord)
    sigma = float(np.sqrt(np.mean(np.abs(clean) ** 2) / 10 ** (snr_db / 10)))
    g = np.random.default_rng(snr_db)
    y = clean + (g.standard_normal(clean.shape) + 1j * g.standard_normal(clean.shape)) * sigma / np.sqrt(2)
    assert readout_noise_std(y, coord) == pytest.approx(sigma, rel=0.05)


def test_readout_noise_std_refuses_coarse_readouts():
    from mri_csc.recon.noise import readout_noise_std
    from mri_csc.sim.trajectories import radial

    coord = radial(10, 32, 32)  # one cell between samples: the signal may fill the whole spectrum
    with pytest.raises(ValueError, match="no noise-only band"):
        readout_noise_std(np.ones((2, 10, 32), np.complex64), coord)
    with pytest.raises(ValueError, match="kspace must have shape"):
        readout_noise_std(np.ones((2, 10, 31), np.complex64), coord)


@pytest.mark.parametrize("coils", [2, 4])
def test_few_coils_at_high_snr(coils):
    # the signal fills over half of the calibration matrix's columns: the plain Marchenko-Pastur median
    # was 3.6x (4 coils) and 9-90x (2 coils) too high here; the bulk's median is not
    kw = dict(shape=(64, 64), n_coils=coils, mask="poisson", accel=4, seed=0)
    clean = make_dataset("shepp-logan", snr_db=None, **kw)
    ds = make_dataset("shepp-logan", snr_db=45, **kw)
    ratio = estimate_noise_std(ds.kspace, ds.mask) / _true_sigma(clean, 45)
    assert 0.95 < ratio < 1.9, ratio


def test_single_coil_is_estimated_and_warned(caplog):
    kw = dict(shape=(64, 64), n_coils=1, mask="poisson", accel=4, seed=0)
    clean = make_dataset("shepp-logan", snr_db=None, **kw)
    ds = make_dataset("shepp-logan", snr_db=35, **kw)
    with caplog.at_level("WARNING", logger="mri_csc.recon.noise"):
        ratio = estimate_noise_std(ds.kspace, ds.mask) / _true_sigma(clean, 35)
    assert 0.95 < ratio < 5, ratio  # the calibration matrix alone: 29-90x
    assert "single-coil" in caplog.text and "compare a few lam values" in caplog.text


def test_small_calibration_region_takes_a_smaller_kernel():
    # a 33 x 17 image leaves an 8 x 8 centre: 16 window positions for 100 columns with the 5 x 5 kernel
    kw = dict(shape=(33, 17), n_coils=4, mask="poisson", accel=4, seed=0)
    clean = make_dataset("shepp-logan", snr_db=None, **kw)
    ds = make_dataset("shepp-logan", snr_db=30, **kw)
    ratio = estimate_noise_std(ds.kspace, ds.mask) / _true_sigma(clean, 30)
    assert 0.95 < ratio < 1.9, ratio  # 12.5x before


def test_calibration_box_keeps_a_fully_sampled_readout(rng):
    # 3-D: 2 x 2 undersampling over (kz, ky) with a 7 x 15 centre, readout (kx) full. The runs through the
    # centre reach one sample past the centre block on ky and kz; the box must give those up, not the readout
    m = np.zeros((16, 64, 64), bool)
    m[::2, ::2, :] = True
    m[5:12, 25:40, :] = True
    box = calibration_box(m)
    assert box == (slice(5, 12), slice(25, 40), slice(0, 64))
    sigma = 0.01
    k = np.zeros((8, 16, 64, 64), np.complex64)
    k[:, m] = (sigma * (rng.standard_normal((8, m.sum())) + 1j * rng.standard_normal((8, m.sum()))) / np.sqrt(2))
    assert estimate_noise_std(k, m) == pytest.approx(sigma, rel=0.1)


def test_a_small_calibration_region_says_what_to_do():
    """A 16x16 image's 5x5 centre leaves 9 positions of the smallest (3x3) calibration window: the message
    names the region, what the estimate needs, and the ways round it (noise_std=, or lam= and mu= given)."""
    d = make_dataset("shepp-logan", shape=(16, 16), n_coils=4, mask="poisson", accel=4, seed=0, snr_db=30)
    with pytest.raises(ValueError, match=r"the fully sampled calibration region \(5, 5\) is too small for a noise "
                                         r"estimate.*pass noise_std=.*or give lam= and mu="):
        mri_csc.reconstruct(d.kspace, d.maps, mask=d.mask, method="csc")
    r = mri_csc.reconstruct(d.kspace, d.maps, mask=d.mask, method="csc", noise_std=0.01, max_iter=2)
    assert np.isfinite(r.image).all()


def test_many_coils_use_a_subset_of_them(monkeypatch):
    """16 coils at 5 x 5 would give 400 columns: the estimate takes an evenly spread subset of the coils
    (at most MAX_COLUMNS columns, the SVD under a second) and stays within 1.35x of the true sigma."""
    import mri_csc.recon.noise as noise

    seen = []
    real = noise.hankel_matrix
    monkeypatch.setattr(noise, "hankel_matrix", lambda block, k: seen.append(block.shape[0]) or real(block, k))
    kw = dict(shape=(64, 64), n_coils=16, mask="poisson", accel=4, seed=0)
    clean = make_dataset("shepp-logan", snr_db=None, **kw)
    ds = make_dataset("shepp-logan", snr_db=35, **kw)
    ratio = estimate_noise_std(ds.kspace, ds.mask) / _true_sigma(clean, 35)
    assert seen == [noise.MAX_COLUMNS // 25] and 0.95 < ratio < 1.35, (seen, ratio)
