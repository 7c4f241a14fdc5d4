"""Simulation: k-space against the SENSE operator, SNR, oversampling, phantoms, phase, datasets."""

import json
import os
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
    nifti_volume,
    sample_mask,
    shepp_logan,
    simulate_kspace,
    smooth_phase,
)
from mri_csc.sim.phantoms import SHEPP_LOGAN_ELLIPSES, default_slab, load_ellipses
from mri_csc.sim.simulate import phantom_affine

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


def _ramp_nifti(path, nib):
    """A (20, 30, 16) RAS volume, 2 x 2 x 3 mm, whose value is 10 + its axial slice index inside a box."""
    vol = np.zeros((20, 30, 16), np.float32)
    vol[2:18, 2:28] = 10 + np.arange(16, dtype=np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return vol


def test_nifti_volume_is_an_isotropic_slab_inside_the_z_field_of_view(tmp_path, caplog):
    """Slice nz // 2 is the centre slice (as nifti_slice shows it), slices are one in-plane pixel apart
    (linear in the file's slices), and about 10 % of the field of view at each end is empty."""
    nib = pytest.importorskip("nibabel")
    f = tmp_path / "ramp.nii.gz"
    _ramp_nifti(f, nib)
    v = nifti_volume(f, (10, 15, 10), index=7)  # 30 x 20 display at 2 mm into 15 x 10: 4 mm pixels
    assert v.shape == (10, 15, 10) and v.dtype == np.float32 and v.max() == pytest.approx(1.0)
    assert default_slab(10) == 8 and default_slab(40) == 32 and default_slab(1) == 1
    filled = [q for q in range(10) if v[q].any()]
    assert filled == list(range(1, 9))  # slab of 8 about slice 5 = nz // 2
    np.testing.assert_allclose(v[5] / v[5].max(), nifti_slice(f, 7, shape=(15, 10)), atol=1e-6)
    # slice q sits at file slice 7 + (q - 5) * 4 mm / 3 mm: the ramp 10 + t, linear in t
    t = 7 + (np.arange(1, 9) - 5) * 4 / 3
    np.testing.assert_allclose(v[1:9, 7, 5] / v[5, 7, 5], (10 + t) / 17, rtol=1e-5)
    assert not v[0].any() and not v[9].any()
    assert nifti_volume(f, (10, 15, 10), index=7, slab=10)[0].any()
    with caplog.at_level("WARNING"):  # near the file's end: said, not silently zero (a review)
        nifti_volume(f, (10, 15, 10), index=1)
    assert any("reaches past the volume's ends" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="slab must be an integer from 1 to nz = 10; got 11"):
        nifti_volume(f, (10, 15, 10), slab=11)
    with pytest.raises(ValueError, match="index 16 is out of range"):
        nifti_volume(f, (10, 15, 10), index=16)
    with pytest.raises(ValueError, match="shape must have 3"):
        nifti_volume(f, (15, 10))


def test_make_dataset_3d_nifti_phantom_and_its_affine(tmp_path):
    """A 3-D NIfTI phantom: a volume with a Poisson mask over (kz, ky), the readout fully sampled, and an
    affine that puts a bright block of an oblique, permuted file where the file has it (2-D unchanged)."""
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((60, 80, 20), np.float32)
    vol[5:55, 5:75] = 0.1
    vol[10:14, 50:54, 9:12] = 1.0
    th = 0.2
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.array([[0, 0, -2.5], [-1.2, 0, 0], [0, 1.5, 0]])  # axes permuted and flipped
    aff[:3, 3] = (40, 30, -20)
    f = tmp_path / "ph.nii.gz"
    nib.save(nib.Nifti1Image(vol, aff), f)
    true = aff @ np.r_[np.argwhere(vol > 0.5).mean(0), 1]
    k = int(round((np.linalg.inv(nib.as_closest_canonical(nib.load(f)).affine) @ true)[2]))
    shape = (16, 48, 40)
    k += 4  # the slab's centre 6 mm off the block: the block's slice q tests the affine's slice axis
    ds = make_dataset(str(f), shape, n_coils=3, accel=3, seed=0, snr_db=None, slice_index=k)
    assert ds.kspace.shape == (3, *shape) and ds.image.shape == shape
    assert (ds.mask == ds.mask[..., :1]).all() and 2.5 < ds.acceleration < 3.5  # (kz, ky) pattern, kx full
    assert len({tuple(ds.mask[:, :, 0][z]) for z in range(shape[0])}) > 2  # varies along kz too
    a = phantom_affine(str(f), shape, k)
    vox = np.linalg.norm(a[:3, :3], axis=0)
    np.testing.assert_allclose(vox, vox[1], rtol=0.02)  # cubic to within zoom's rounding (review2)
    qyx = np.argwhere(ds.magnitude_ref > 0.6).mean(0)
    where = a @ np.r_[qyx[::-1], 1]  # NIfTI (i, j, k) = the array's (x, y, z)
    assert abs(qyx[0] - (shape[0] // 2 - 4)) < 0.6  # 4 slices of 1.5 mm below the centre
    assert np.linalg.norm(where[:3] - true[:3]) < 0.5 * vox[0], (where[:3], true[:3])
    a2 = phantom_affine(str(f), shape[1:], k)  # the 2-D rule: the file's slice thickness, slice k
    np.testing.assert_allclose(a[:3, :2], a2[:3, :2])
    np.testing.assert_allclose(a @ [0, 0, shape[0] // 2, 1], a2 @ [0, 0, 0, 1], atol=1e-9)


@pytest.mark.skipif(not Path(DEFAULT_BRAIN).is_file(), reason="mricron-data not installed")
def test_make_dataset_3d_brain():
    ds = make_dataset("brain", (12, 40, 40), n_coils=2, accel=2, seed=0, snr_db=None)
    assert ds.image.shape == (12, 40, 40) and ds.magnitude_ref[6].max() > 0.5
    assert not ds.magnitude_ref[0].any() and not ds.magnitude_ref[-1].any()


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


def test_phantom_affine_matches_source_at_world_coordinates_review2():
    """The reference's affine puts each voxel where nibabel finds the same intensity in the source
    (ch2 into 64 x 64: zoom's columns are 181/53 mm, not the nominal 3.391 mm; that had given 10 % error)."""
    import nibabel as nib
    from scipy import ndimage

    from mri_csc.sim.phantoms import DEFAULT_BRAIN, nifti_slice, nifti_volume
    from mri_csc.sim.simulate import phantom_affine

    if not os.path.isfile(DEFAULT_BRAIN):
        pytest.skip("ch2 template not installed")
    src = nib.load(DEFAULT_BRAIN)
    data = np.asarray(src.dataobj, np.float64)
    for shape in ((64, 64), (12, 64, 64)):
        img = (nifti_slice(DEFAULT_BRAIN, shape=shape) if len(shape) == 2 else
               nifti_volume(DEFAULT_BRAIN, shape, slab=shape[0])).T  # NIfTI order (x, y[, z])
        aff = phantom_affine(DEFAULT_BRAIN, shape)
        g = np.indices(img.shape).reshape(img.ndim, -1).astype(float)
        if img.ndim == 2:
            g = np.vstack([g, np.zeros((1, g.shape[1]))])
        m = np.linalg.inv(src.affine) @ aff
        ref = ndimage.map_coordinates(data, m[:3, :3] @ g + m[:3, 3:], order=1).reshape(img.shape)
        ref = np.clip(ref, 0, None)
        ref /= ref.max()
        assert np.linalg.norm(img - ref) / np.linalg.norm(img) < 0.01, shape
