"""Simulation: k-space against the SENSE operator, SNR, oversampling, phantoms, phase, datasets."""

import json
from pathlib import Path

import numpy as np
import pytest

from mri_csc.operators import Sense
from mri_csc.sim import (
    DEFAULT_BRAIN,
    Dataset,
    birdcage_maps,
    brain_slice,
    make_dataset,
    nifti_slice,
    sample_mask,
    shepp_logan,
    simulate_kspace,
    smooth_phase,
)
from mri_csc.sim.phantoms import SHEPP_LOGAN_ELLIPSES, load_ellipses

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup():
    shape = (64, 56)
    img = (shepp_logan(shape) * np.exp(1j * smooth_phase(shape, "random", seed=0))).astype(np.complex64)
    maps = birdcage_maps(shape, 6)
    mask = sample_mask("poisson", shape, 3, seed=0)
    return img, maps, mask


def test_noiseless_kspace_equals_sense(setup):
    img, maps, mask = setup
    k = simulate_kspace(img, maps, mask)
    assert k.shape == maps.shape and k.dtype == np.complex64
    np.testing.assert_allclose(k, Sense(maps, mask)(img), rtol=0, atol=1e-6 * np.abs(k).max())
    assert (k[:, mask == 0] == 0).all()
    np.testing.assert_allclose(simulate_kspace(img, maps), Sense(maps)(img), atol=1e-6 * np.abs(k).max())


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_snr_is_the_stated_one(setup, snr_db):
    img, maps, mask = setup
    clean = simulate_kspace(img, maps, mask)
    noisy = simulate_kspace(img, maps, mask, snr_db=snr_db, seed=1)
    s = np.broadcast_to(mask > 0, clean.shape)
    noise = (noisy - clean)[s]
    measured = 10 * np.log10(np.mean(np.abs(clean[s]) ** 2) / np.mean(np.abs(noise) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.1)
    assert np.var(noise.real) == pytest.approx(np.var(noise.imag), rel=0.05)
    assert (noisy[:, mask == 0] == 0).all()
    np.testing.assert_array_equal(noisy, simulate_kspace(img, maps, mask, snr_db=snr_db, seed=1))


def test_oversampled_simulation_avoids_inverse_crime(setup):
    img, maps, mask = setup
    exact = simulate_kspace(img, maps, mask)
    over = simulate_kspace(img, maps, mask, oversample=2)
    assert over.shape == exact.shape and over.dtype == np.complex64
    rel = np.linalg.norm(over - exact) / np.linalg.norm(exact)
    assert 1e-3 < rel < 0.2  # different data, same object at the same scale and position
    # the low frequencies agree closely (no shift, no rescaling)
    c = (slice(None), slice(28, 36), slice(24, 32))
    assert np.linalg.norm((over - exact)[c]) / np.linalg.norm(exact[c]) < 0.02


def test_simulate_errors(setup):
    img, maps, mask = setup
    with pytest.raises(ValueError, match="maps must have shape"):
        simulate_kspace(img, maps[:, :10])
    with pytest.raises(ValueError, match="does not broadcast"):
        simulate_kspace(img, maps, mask[:10])
    with pytest.raises(ValueError, match="oversample"):
        simulate_kspace(img, maps, oversample=0.5)
    with pytest.raises(ValueError, match="NaN"):
        simulate_kspace(np.full(img.shape, np.nan), maps)


def test_shepp_logan():
    p = shepp_logan((128, 128))
    assert p.shape == (128, 128) and p.dtype == np.float32 and p.max() == 1.0 and p.min() == 0.0
    # modified Shepp-Logan: skull 1, brain 0.2, ventricles 0, small features 0.1-0.4
    levels = set(np.round(np.unique(p).astype(float), 3).tolist())
    assert {0.0, 0.2, 0.3, 1.0} <= levels <= {0.0, 0.1, 0.2, 0.3, 0.4, 1.0}
    assert np.median(p[p > 0]) == pytest.approx(0.2, abs=1e-6)
    assert p[1, 64] == 0 and p[64, 64] > 0  # outside / inside the head
    p3 = shepp_logan((16, 64, 64))
    assert p3.shape == (16, 64, 64) and p3.max() == 1.0
    # the repository's phantom definition is the built-in table
    np.testing.assert_allclose(load_ellipses(REPO / "phantoms" / "shepp_logan.json"), SHEPP_LOGAN_ELLIPSES)
    assert json.loads((REPO / "phantoms" / "shepp_logan.json").read_text())["ellipses"]


def test_smooth_phase():
    for kind in ("polynomial", "random"):
        ph = smooth_phase((64, 48), kind, amplitude=2.0, seed=3)
        assert ph.shape == (64, 48) and ph.dtype == np.float32
        assert np.abs(ph).max() == pytest.approx(2.0, rel=1e-5)
        # smooth: neighbouring differences are small next to the range
        assert np.abs(np.diff(ph, axis=0)).max() < 0.25
        np.testing.assert_array_equal(ph, smooth_phase((64, 48), kind, amplitude=2.0, seed=3))
    assert smooth_phase((8, 8, 8), "random", seed=0).shape == (8, 8, 8)
    with pytest.raises(ValueError, match="kind"):
        smooth_phase((8, 8), "sinusoid")
    with pytest.raises(ValueError, match="amplitude"):
        smooth_phase((8, 8), amplitude=-1)


def test_nifti_slice_from_written_file(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((20, 30, 10), np.float32)  # RAS voxel order, 2 mm in-plane
    vol[15, 25, 5] = 4.0  # right, anterior
    vol[2, 3, 5] = 2.0  # left, posterior
    f = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 3.0, 1.0])), str(f))
    s = nifti_slice(f)  # middle axial slice (index 5)
    assert s.shape == (30, 20) and s.dtype == np.float32 and s.max() == 1.0
    # radiological: anterior at the top, patient's right on the image's left
    iy, ix = np.unravel_index(np.argmax(s), s.shape)
    assert (iy, ix) == (30 - 1 - 25, 20 - 1 - 15)
    assert s[30 - 1 - 3, 20 - 1 - 2] == pytest.approx(0.5)
    # a flipped (LAS) affine describes the same anatomy: same picture
    nib.save(nib.Nifti1Image(vol[::-1].copy(), np.diag([-2.0, 2.0, 3.0, 1.0])), str(tmp_path / "w.nii"))
    np.testing.assert_array_equal(nifti_slice(tmp_path / "w.nii"), s)
    r = nifti_slice(f, index=5, shape=(64, 64))
    assert r.shape == (64, 64) and r.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="out of range"):
        nifti_slice(f, index=10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nifti_slice(tmp_path / "nope.nii")


@pytest.mark.skipif(not Path(DEFAULT_BRAIN).is_file(), reason="mricron-data not installed")
def test_brain_slice_ch2():
    b = brain_slice(shape=(192, 192))
    assert b.shape == (192, 192) and b.dtype == np.float32 and b.max() == 1.0
    assert 0.3 < (b > 0.05).mean() < 0.9  # a head fills much of the field of view


def test_brain_slice_missing_template(tmp_path, monkeypatch):
    import mri_csc.sim.phantoms as ph

    monkeypatch.setattr(ph, "DEFAULT_BRAIN", str(tmp_path / "ch2.nii.gz"))
    with pytest.raises(FileNotFoundError, match="apt-get install mricron-data"):
        ph.brain_slice()


def test_make_dataset():
    d = make_dataset("shepp-logan", (64, 64), n_coils=4, accel=4, snr_db=30, seed=0)
    assert isinstance(d, Dataset)
    assert d.kspace.shape == (4, 64, 64) and d.kspace.dtype == np.complex64
    assert d.maps.shape == (4, 64, 64) and d.image.dtype == np.complex64
    assert d.mask.shape == (64, 64) and d.support.dtype == bool
    assert d.acceleration == pytest.approx(4, rel=0.05)
    np.testing.assert_allclose(np.abs(d.image), d.magnitude_ref, atol=1e-6)
    assert d.support[32, 32] and not d.support[0, 0]
    e = make_dataset("shepp-logan", (64, 64), n_coils=4, accel=4, snr_db=30, seed=0)
    np.testing.assert_array_equal(d.kspace, e.kspace)
    with pytest.raises(ValueError, match="phantom must be"):
        make_dataset("cat", (32, 32))
