"""Trajectories against ``bart traj``, analytic phantom k-space, simulation without the inverse crime, maps."""

import shutil
import subprocess

import numpy as np
import pytest

from mri_csc.io.cfl import read_cfl
from mri_csc.operators.nufft import NUFFTSense
from mri_csc.sim import birdcage_maps, shepp_logan
from mri_csc.sim.coils import map_agreement
from mri_csc.sim.trajectories import (
    bart_phantom_kspace,
    estimate_maps_noncartesian,
    make_trajectory,
    radial,
    simulate_noncartesian,
    spiral,
    stack_of_stars,
)

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="the 'bart' binary is not on PATH")


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@needs_bart
@pytest.mark.parametrize("flags, kw", [([], {}), (["-G"], {"golden": True}), (["-G", "-s", "5"],
                                                                             {"golden": True, "tiny": 5})])
def test_radial_matches_bart_traj(tmp_path, flags, kw):
    """``coord = traj[1::-1].transpose(2, 1, 0) * N / X`` (the documented mapping) is our radial()."""
    out = tmp_path / "t"
    subprocess.run(["bart", "traj", "-x", "64", "-y", "13", "-r", *flags, str(out)], check=True)
    t = read_cfl(out)
    assert t.shape == (3, 64, 13) and not np.abs(t[2]).any()
    np.testing.assert_allclose(radial(13, 64, 32, **kw), t[1::-1].real.transpose(2, 1, 0) * 0.5, atol=1e-4)


def test_radial_geometry():
    c = radial(8, 64, 32)
    assert c.shape == (8, 64, 2) and c.dtype == np.float32
    assert np.abs(c).max() < 16  # inside [-N/2, N/2)
    np.testing.assert_allclose(np.linalg.norm(c[:, 31:33], axis=-1), 0.25, atol=1e-5)  # half-sample offsets
    g = radial(3, 4, 8, golden=True)
    ang = np.arctan2(g[:, -1, 0], g[:, -1, 1])  # components (y, x)
    assert np.degrees((ang[0] - ang[1]) % np.pi) == pytest.approx(180 / 1.6180339887, abs=1e-3)
    with pytest.raises(ValueError, match="n_spokes"):
        radial(0, 64, 32)


def test_spiral_and_stack_of_stars():
    s = spiral(8, 64, accel=2)
    assert s.ndim == 3 and s.shape[0] == 8 and s.shape[2] == 2
    r = np.linalg.norm(s, axis=-1)
    assert r.max() < 32 and r[:, 0].max() == 0
    assert np.abs(np.diff(s, axis=1)).max() <= 0.5 + 1e-4  # samples at most half a cell apart
    # variable density: the first half of the samples covers less than half the radius
    assert r[0, s.shape[1] // 2] < 0.4 * 32
    np.testing.assert_allclose(stack_of_stars(4, 32, (2, 16, 16))[1, ..., 1:], radial(8, 32, 16, golden=True)[4:],
                               atol=1e-4)  # golden partitions continue the golden sequence
    sos = stack_of_stars(10, 32, (6, 16, 16), golden=False)
    assert sos.shape == (6, 10, 32, 3)
    np.testing.assert_array_equal(sos[:, 0, 0, 0], np.arange(6) - 3)
    assert not np.allclose(sos[0, ..., 1:], sos[1, ..., 1:])  # partitions rotated
    with pytest.raises(ValueError, match="trajectory must be one of"):
        make_trajectory("rosette", (32, 32))


def test_simulation_without_inverse_crime(rng):
    n = 48
    img = shepp_logan((n, n)).astype(np.complex64)
    maps = birdcage_maps((n, n), 4)
    coord = radial(60, 2 * n, n)
    crime = NUFFTSense(maps, coord)(img)
    np.testing.assert_allclose(simulate_noncartesian(img, maps, coord, oversample=1), crime, atol=1e-4)
    fine = simulate_noncartesian(img, maps, coord, oversample=2)
    assert 1e-3 < rel(fine, crime) < 0.2  # the same object, not the same model
    noisy = simulate_noncartesian(img, maps, coord, oversample=1, snr_db=20, seed=1)
    snr = 10 * np.log10(np.mean(np.abs(crime) ** 2) / np.mean(np.abs(noisy - crime) ** 2))
    assert snr == pytest.approx(20, abs=0.5)


@needs_bart
def test_bart_phantom_kspace_is_explained_by_the_image():
    n = 64
    coord = radial(101, 2 * n, n)
    k, maps, img = bart_phantom_kspace(coord, (n, n), n_coils=4)
    assert k.shape == (4, 101, 2 * n) and maps.shape == (4, n, n) and img.shape == (n, n)
    ours = NUFFTSense(maps, coord)(img)
    a = np.vdot(ours, k) / np.vdot(ours, ours)
    assert abs(a - 1) < 0.05  # units: ours = BART's * sqrt(N^2)
    assert rel(ours, k) < 0.15  # analytic vs pixelated phantom


def test_estimate_maps_from_regridded_calibration():
    n = 64
    img = shepp_logan((n, n)).astype(np.complex64)
    maps = birdcage_maps((n, n), 4)
    coord = radial(100, 2 * n, n)
    y = simulate_noncartesian(img, maps, coord, snr_db=30, seed=0)
    est = estimate_maps_noncartesian(y, coord, (n, n), calib_width=20)
    support = np.abs(img) > 0.1
    assert est.shape == maps.shape
    assert map_agreement(est, maps, support) > 0.95


def test_split_stack_of_stars_gives_the_2d_radial_problems(rng):
    """An inverse FFT along k_z turns the 3-D stack-of-stars NUFFT into one 2-D radial NUFFT per slice."""
    from mri_csc.operators.nufft import NUFFTSense
    from mri_csc.sim import split_stack_of_stars

    shape = (6, 24, 24)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    maps = birdcage_maps(shape, 3)
    coord = stack_of_stars(20, 48, shape, rotate=False)
    y = NUFFTSense(maps, coord, toeplitz=False)(x)
    slices, c2 = split_stack_of_stars(y, coord)
    assert slices.shape == (6, 3, 20, 48) and c2.shape == (20, 48, 2)
    for z in range(shape[0]):
        ref = NUFFTSense(maps[:, z], c2, toeplitz=False)(x[z])
        assert np.linalg.norm(slices[z] - ref) <= 1e-4 * np.linalg.norm(ref)


def test_split_stack_of_stars_refuses_coupled_partitions():
    from mri_csc.sim import split_stack_of_stars

    shape = (4, 16, 16)
    rotated = stack_of_stars(10, 32, shape)  # golden-angle partitions continue the sequence
    with pytest.raises(ValueError, match="in-plane coordinates differ"):
        split_stack_of_stars(np.zeros((2, 4, 10, 32), np.complex64), rotated)
    shifted = stack_of_stars(10, 32, shape, rotate=False)
    shifted[..., 0] += 0.5
    with pytest.raises(ValueError, match="integer grid"):
        split_stack_of_stars(np.zeros((2, 4, 10, 32), np.complex64), shifted)
    with pytest.raises(ValueError, match="kspace must have shape"):
        split_stack_of_stars(np.zeros((2, 3, 10, 32), np.complex64), shifted)
