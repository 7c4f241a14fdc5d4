"""reconstruct() on non-Cartesian k-space: every method through the NUFFT SENSE operator."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import mri_csc
from mri_csc.metrics import psnr
from mri_csc.recon.noncartesian import make_noncartesian_problem
from mri_csc.recon.problem import data_scale, make_problem
from mri_csc.sim import DEFAULT_BRAIN, birdcage_maps, brain_slice, shepp_logan, smooth_phase
from mri_csc.sim.trajectories import radial, simulate_noncartesian

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="the 'bart' binary is not on PATH")
N = 64


@pytest.fixture(scope="module")
def case():
    img = (shepp_logan((N, N)) * np.exp(1j * smooth_phase((N, N), "random", rng=np.random.default_rng(0))))
    img = img.astype(np.complex64)
    maps = birdcage_maps((N, N), 4)
    coord = radial(40, 2 * N, N, golden=True)  # R ~ 2.5 by spoke count
    y = simulate_noncartesian(img, maps, coord, snr_db=35, seed=0)
    return img, maps, coord, y


def _grid(shape):
    return np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1).astype(np.float32)


def test_cartesian_grid_trajectory_equals_the_cartesian_problem(rng):
    """On the full integer grid the non-Cartesian path is the Cartesian one: same scale, same SENSE."""
    img = shepp_logan((32, 32)).astype(np.complex64)
    maps = birdcage_maps((32, 32), 3)
    k = mri_csc.operators.Sense(maps)(img)
    grid = _grid((32, 32))
    nc = make_noncartesian_problem(k, maps, grid)
    assert nc.scale == pytest.approx(data_scale(k, maps, np.ones((32, 32), np.float32)), rel=1e-2)
    a = mri_csc.reconstruct(k, maps, method="sense", max_iter=10)
    b = mri_csc.reconstruct(k, maps, trajectory=grid, method="sense", max_iter=10)
    assert np.linalg.norm(a.image - b.image) <= 1e-3 * np.linalg.norm(a.image)


@pytest.mark.parametrize("method", ["zero-filled", "sense", "l1wavelet", "tv", "csc"])
def test_methods_run_on_radial_data(case, method):
    img, maps, coord, y = case
    res = mri_csc.reconstruct(y, maps, trajectory=coord, image_shape=(N, N), method=method,
                              **({"max_iter": 30} if method in ("l1wavelet", "tv") else {}))
    assert res.image.shape == (N, N) and res.image.dtype == np.complex64
    # measured 24.2 (gridding), 25.6, 23.9, 19.8 (30 iterations), 25.8 dB
    floor = {"zero-filled": 22, "sense": 24, "l1wavelet": 22, "tv": 18, "csc": 24}[method]
    assert psnr(np.abs(img), np.abs(res.image)) > floor


@pytest.mark.skipif(not Path(DEFAULT_BRAIN).is_file(), reason="mricron-data not installed")
def test_csc_beats_sense_on_radial_brain():
    n = 96
    img = (brain_slice(shape=(n, n)) * np.exp(1j * smooth_phase((n, n), "random", rng=np.random.default_rng(1))))
    maps = birdcage_maps((n, n), 8)
    coord = radial(38, 2 * n, n, golden=True)  # R = 4 by spoke count
    y = simulate_noncartesian(img.astype(np.complex64), maps, coord, snr_db=30, seed=0)
    csc = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc")
    sense = mri_csc.reconstruct(y, maps, trajectory=coord, method="sense")
    assert psnr(np.abs(img), np.abs(csc.image)) > psnr(np.abs(img), np.abs(sense.image)) + 1.5
    assert csc.params["lam"] > 0 and len(csc.history) > 1


def test_l1wavelet_is_sigpys_with_coord(case):
    import sigpy.mri as mr

    img, maps, coord, y = case
    res = mri_csc.reconstruct(y, maps, trajectory=coord, method="l1wavelet", lam=0.01, max_iter=20)
    g = make_noncartesian_problem(y, maps, coord).density_gain ** 0.5  # k-space and maps both divided by it
    ref = mr.app.L1WaveletRecon(y / (res.scale * g), maps / g, 0.01, coord=coord, max_iter=20, show_pbar=False).run()
    assert np.linalg.norm(res.image - ref * res.scale) <= 1e-3 * np.linalg.norm(res.image)


def test_density_preconditioner_keeps_the_solution(case):
    """Preconditioned CG (dcf given) converges to the solution of the plain system, sooner."""
    img, maps, coord, y = case
    plain = mri_csc.reconstruct(y, maps, trajectory=coord, method="sense", lam=0.05, max_iter=200, tol=1e-7)
    pre = mri_csc.reconstruct(y, maps, trajectory=coord, method="sense", lam=0.05, max_iter=200, tol=1e-7,
                              dcf="pipe-menon")
    assert np.linalg.norm(pre.image - plain.image) <= 1e-2 * np.linalg.norm(plain.image)
    few_plain = mri_csc.reconstruct(y, maps, trajectory=coord, method="sense", lam=0.05, max_iter=5)
    few_pre = mri_csc.reconstruct(y, maps, trajectory=coord, method="sense", lam=0.05, max_iter=5, dcf="pipe-menon")
    assert np.linalg.norm(few_pre.image - plain.image) < 0.5 * np.linalg.norm(few_plain.image - plain.image)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"mask": np.ones((N, N), np.float32)}, ValueError, "mask must be None with a trajectory"),
    ({"image_shape": (N, N + 1)}, ValueError, "image_shape"),
    ({"dcf": np.ones((3, 4), np.float32)}, ValueError, "dcf must have the trajectory's sample shape"),
    ({"dcf": "voronoi"}, ValueError, "dcf must be None, 'pipe-menon'"),
])
def test_bad_arguments_name_what_is_wrong(case, kwargs, exc, match):
    img, maps, coord, y = case
    with pytest.raises(exc, match=match):
        mri_csc.reconstruct(y, maps, trajectory=coord, method="sense", **kwargs)


def test_per_axis_phase_width_is_refused_on_non_cartesian_data(case):
    img, maps, coord, y = case
    with pytest.raises(ValueError, match="phase_width must be one width on non-Cartesian data"):
        mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=1, phase_width=(20, 28))
    r = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=1)
    assert r.params["phase_width"] == 24


def test_bad_shapes_name_what_is_expected(case):
    img, maps, coord, y = case
    with pytest.raises(ValueError, match=r"kspace must have shape \(coils, \*samples\)"):
        mri_csc.reconstruct(y[:, :10], maps, trajectory=coord)
    with pytest.raises(ValueError, match=r"trajectory must have shape \(\*samples, 2\)"):
        mri_csc.reconstruct(y, maps, trajectory=coord[..., :1])
    with pytest.raises(ValueError, match="pass trajectory="):
        make_problem  # noqa: B018 (the Cartesian path stays as it was)
        mri_csc.reconstruct(np.zeros_like(maps), maps, dcf=np.ones(3))


def test_trajectory_beyond_the_band_is_said(case, caplog):
    img, maps, coord, y = case
    with caplog.at_level("WARNING", logger="mri_csc.recon.noncartesian"):
        make_noncartesian_problem(y, maps, coord)
    assert not caplog.records  # a trajectory within ±N/2: nothing to say
    with caplog.at_level("WARNING", logger="mri_csc.recon.noncartesian"):
        make_noncartesian_problem(y, maps, 3 * coord)  # wrong units: the samples would wrap without a word
    assert any("beyond the band" in r.getMessage() and "wrapped" in r.getMessage() for r in caplog.records)
    n = maps.shape[-1]
    for scale, implied in ((2 * np.pi / n, 8), (1 / n, 2)):  # radians (±π) and normalised (±0.5): refused, not blurred
        with pytest.raises(ValueError, match=rf"reaches only \|k\| = .*implies an image matrix of about {implied} "
                                             rf"along axis 0, not {n}.*From radians"):
            mri_csc.reconstruct(y, maps, trajectory=coord * scale, method="sense")
    caplog.clear()
    with caplog.at_level("WARNING", logger="mri_csc.recon.noncartesian"):  # a deliberate 3x interpolation: said
        make_noncartesian_problem(y, maps, coord / 3)
    assert any("interpolated (zero-filled) 3" in r.getMessage() for r in caplog.records)


@needs_bart
@pytest.mark.parametrize("method", ["bart-l1wavelet", "bart-tv"])
def test_bart_pics_t_runs(case, method):
    img, maps, coord, y = case
    res = mri_csc.reconstruct(y, maps, trajectory=coord, method=method, max_iter=30)
    assert psnr(np.abs(img), np.abs(res.image)) > 22


@needs_bart
def test_radial_bart_phantom_matches_bart_pics_t():
    """BART's analytic phantom k-space on 24 golden-angle spokes: our reconstruction is BART's.

    ℓ2 (``sense`` with λ against ``pics -t -R Q:λ``): the same objective, so the same image (0.2 %
    here), while 4x the weight moves BART's result by 35 %: operator, trajectory axes, data
    scaling and λ all agree. TV: SigPy's (anisotropic) and BART's (isotropic) TV stay within
    0.2 of each other, against 0.5 for the gridded image.
    """
    from mri_csc.recon.bart import bart_pics
    from mri_csc.sim.trajectories import bart_phantom_kspace

    n = 64
    coord = radial(24, 2 * n, n, golden=True)
    k, maps, _ = bart_phantom_kspace(coord, (n, n), n_coils=4)
    problem = make_noncartesian_problem(k, maps, coord)
    ours = mri_csc.reconstruct(k, maps, trajectory=coord, method="sense", lam=1.0, max_iter=200, tol=1e-7)

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    units = problem.scale / problem.maps_gain  # the image of the data and maps as given (BART's maps: power 0.43)
    same = bart_pics(problem, "Q:1.0", max_iter=200)[0] * units
    other = bart_pics(problem, "Q:4.0", max_iter=200)[0] * units
    assert rel(ours.image, same) < 0.01
    assert rel(other, same) > 0.1
    tv = mri_csc.reconstruct(k, maps, trajectory=coord, method="tv", lam=0.01, max_iter=100)
    bart_tv = mri_csc.reconstruct(k, maps, trajectory=coord, method="bart-tv", lam=0.01, max_iter=100)
    gridded = mri_csc.reconstruct(k, maps, trajectory=coord, method="zero-filled")
    assert rel(tv.image, bart_tv.image) < 0.2 < rel(gridded.image, bart_tv.image)


def _noisy(img, maps, coord, snr_db, seed=3):
    """Radial k-space at ``snr_db`` and the complex noise σ it was drawn with (input units)."""
    clean = simulate_noncartesian(img, maps, coord, seed=seed)
    sigma = float(np.sqrt(np.mean(np.abs(clean) ** 2) / 10 ** (snr_db / 10)))
    g = np.random.default_rng(seed)
    noise = (g.standard_normal(clean.shape) + 1j * g.standard_normal(clean.shape)) * sigma / np.sqrt(2)
    return (clean + noise).astype(np.complex64), sigma


def test_csc_weights_follow_the_readout_noise_estimate(case):
    """σ̂ from the readouts is the true σ (input units), and λ = max(a σ̂', λ_min) on the normalised units."""
    from mri_csc.recon.csc_defaults import RULE_NONCARTESIAN, auto_weights

    img, maps, coord, _ = case
    lams = []
    for snr in (20, 40):
        y, sigma = _noisy(img, maps, coord, snr)
        res = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=2)
        assert res.params["noise_std"] == pytest.approx(sigma, rel=0.05)
        g = make_noncartesian_problem(y, maps, coord).density_gain
        want = auto_weights(res.params["noise_std"] / res.scale / g ** 0.5, False, rule=RULE_NONCARTESIAN)
        assert res.params["lam"] == pytest.approx(want["lam"]) and res.params["mu"] == pytest.approx(want["mu"])
        assert res.params["adapt_dictionary"] == 0  # blind CSC lost 0.31 dB on the non-Cartesian tuning slice
        lams.append(res.params["lam"])
    assert lams[0] > 3 * lams[1]  # 10x the noise: the weight follows it (above the floor)
    given = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=2, noise_std=10 * sigma)
    assert given.params["noise_std"] == 10 * sigma and given.params["lam"] > res.params["lam"]


def test_csc_without_readout_oversampling_keeps_the_fixed_weights(caplog):
    """Spokes of N samples (1 cell apart) leave no noise-only band: fixed weights, and a warning that says so."""
    from mri_csc.recon.csc import LAM_2D, MU_2D

    img = shepp_logan((N, N)).astype(np.complex64)
    maps = birdcage_maps((N, N), 4)
    coord = radial(60, N, N, golden=True)
    y = simulate_noncartesian(img, maps, coord, snr_db=30, seed=0)
    with caplog.at_level("WARNING", logger="mri_csc.recon.csc"):
        res = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=2)
    assert res.params["lam"] == LAM_2D and res.params["mu"] == MU_2D
    assert "no noise-only band is left" in caplog.text
    with pytest.raises(ValueError, match="noise_std"):
        mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", max_iter=2, noise_std=-1.0)


def test_maps_that_do_not_match_the_trajectory_are_warned_about(caplog):
    """The maps check of Cartesian data, on the gridded calibration coil images: a trajectory with its axes
    swapped (BART's (x, y) taken for ours) gave NRMSE 0.996 without a word; correct maps pass silently."""
    import logging

    from mri_csc.sim import make_dataset
    from mri_csc.sim.trajectories import make_trajectory

    d = make_dataset("brain", shape=(64, 64), n_coils=8, mask="poisson", accel=2, seed=0, snr_db=None)
    coord = make_trajectory("golden-radial", (64, 64), 4)
    k = simulate_noncartesian(d.image, d.maps, coord, snr_db=30, seed=1).astype(np.complex64)
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        mri_csc.reconstruct(k, d.maps, trajectory=coord, method="zero-filled")
        assert "explain only" not in caplog.text
        mri_csc.reconstruct(k, d.maps, trajectory=coord[..., ::-1].copy(), method="zero-filled")
    assert "explain only" in caplog.text and "against the trajectory" in caplog.text
