"""Coil maps: birdcage simulation, ESPIRiT with SigPy and BART, BART .cfl I/O."""

import shutil
import subprocess

import numpy as np
import pytest

from mri_csc.io.cfl import read_cfl, write_cfl
from mri_csc.sim import birdcage_maps, estimate_maps, make_dataset, map_agreement

has_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="BART ('bart') not on PATH")


def test_birdcage_shape_dtype_normalisation():
    m = birdcage_maps((64, 48), 8)
    assert m.shape == (8, 64, 48) and m.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(m) ** 2, 0), 1, rtol=1e-5)
    m3 = birdcage_maps((8, 32, 32), 16)
    assert m3.shape == (16, 8, 32, 32) and m3.dtype == np.complex64
    # the coils differ: not all the same magnitude
    assert np.abs(np.abs(m[0]) - np.abs(m[4])).max() > 0.1
    with pytest.raises(ValueError, match="n_coils"):
        birdcage_maps((32, 32), 0)
    with pytest.raises(ValueError, match="shape"):
        birdcage_maps((32,), 4)


@pytest.fixture(scope="module")
def data():
    return make_dataset("shepp-logan", (96, 96), n_coils=8, accel=3, calib=24, snr_db=40, seed=0)


def _agreement(maps, d):
    # ESPIRiT maps equal the true maps up to one phase per voxel on the object
    return map_agreement(maps, d.maps, d.support)


def test_espirit_sigpy_recovers_birdcage(data):
    maps = estimate_maps(data.kspace, calib_width=24, method="sigpy")
    assert maps.shape == data.maps.shape and maps.dtype == np.complex64
    assert _agreement(maps, data) > 0.99
    # the phase relation is common to all coils: S_est = e^{i theta} S_true
    s = data.support
    rel = np.sum(maps * data.maps.conj(), 0)
    assert np.median(np.abs(rel[s])) > 0.97


def test_espirit_on_a_rectangular_block_is_sigpys_algorithm():
    """The rectangular-block ESPIRiT reproduces SigPy's EspiritCalib bit for bit on a square block."""
    import sigpy as sp

    from mri_csc.sim.coils import _espirit_sigpy_rect

    d = make_dataset("brain", (64, 64), n_coils=4, mask="poisson", accel=3, calib=24, seed=1)
    k = d.kspace.astype(np.complex64)
    ref = sp.mri.app.EspiritCalib(k, calib_width=20, thresh=0.02, kernel_width=6, crop=0.95, show_pbar=False).run()
    np.testing.assert_array_equal(_espirit_sigpy_rect(k, (20, 20), 0.02, 6, 0.95, 100, sp.cpu_device), ref)
    # a rectangle, and the same problem with the image axes swapped: the maps swap with them (a block or kernel
    # shape applied to the wrong axes would not)
    rect = _espirit_sigpy_rect(k, (20, 10), 0.02, (6, 4), 0.8, 100, sp.cpu_device)
    swapped = _espirit_sigpy_rect(np.ascontiguousarray(k.swapaxes(1, 2)), (10, 20), 0.02, (4, 6), 0.8, 100,
                                  sp.cpu_device)
    np.testing.assert_allclose(swapped.swapaxes(1, 2), rect, atol=1e-4)
    assert not np.allclose(_espirit_sigpy_rect(k, (10, 20), 0.02, (4, 6), 0.8, 100, sp.cpu_device), rect, atol=1e-4)


@has_bart
def test_espirit_calibrates_on_the_fully_sampled_centre_of_whole_line_sampling(tmp_path):
    """BART's k-space phantom (its own coils), R = 4 whole lines with 10 centre lines: ESPIRiT calibrates on a
    10 x 24 block, not the 24 x 24 square half of whose lines are empty, and SENSE with those maps is far
    better than with the square's (23.4 against 15.1 dB when written)."""
    import mri_csc
    from mri_csc.backend import resolve_device
    from mri_csc.metrics import psnr
    from mri_csc.sim.coils import _espirit_sigpy, calibration_shape

    for args in (["-k", "-s", "8"], []):
        subprocess.run(["bart", "phantom", "-x", "128", *args, str(tmp_path / ("k" if args else "img"))], check=True,
                       capture_output=True)
    k = read_cfl(tmp_path / "k.cfl").reshape(128, 128, 8).T.astype(np.complex64)  # (coils, y, x)
    ref = np.abs(read_cfl(tmp_path / "img.cfl").reshape(128, 128).T)
    lines = np.zeros(128, bool)
    lines[::4] = lines[59:69] = True
    k *= lines[None, :, None]
    assert calibration_shape(k, 24) == (10, 24) and calibration_shape(k, 8) == (8, 8)
    got = {}
    for name, maps in (("rect", estimate_maps(k)),
                       ("square", _espirit_sigpy(k, (24, 24), 0.02, 6, 0.95, 100, resolve_device("cpu")))):
        img = np.abs(mri_csc.reconstruct(k, maps, method="sense", max_iter=30).image)
        got[name] = psnr(ref, img * np.vdot(img, ref).real / np.vdot(img, img).real)
    assert got["rect"] > 22 and got["rect"] > got["square"] + 5, got


@pytest.mark.parametrize("nz", [4, 8])
def test_espirit_on_a_volume_of_few_partitions(nz):
    """3-D k-space of 4 or 8 partitions (calibration block (nz, nz, 24)): the kernel is at most half the block per
    axis, so it fits more than once along z, and the maps cover the object (all zero at nz = 4 before)."""
    d = make_dataset("shepp-logan", (nz, 32, 32), n_coils=8, mask="poisson", accel=2, seed=0)
    maps = estimate_maps(d.kspace)
    assert _agreement(maps, d) > 0.99
    assert np.mean(np.abs(maps).sum(0)[d.support] > 0) > 0.99


def test_espirit_kernel_for_a_narrow_centre():
    """Eight centre lines: the narrow-block kernel (4) and crop give far better maps than SigPy's defaults (6, 0.95)
    on the same rectangular block."""
    import mri_csc
    from mri_csc.backend import resolve_device
    from mri_csc.metrics import psnr
    from mri_csc.sim.coils import _espirit_sigpy, calibration_shape

    d = make_dataset("brain", (100, 72), n_coils=8, mask="random-lines", accel=3, calib=8, snr_db=40, seed=1)
    shape = calibration_shape(d.kspace, 24)
    assert shape == (24, 8)
    got = {}
    for name, maps in (("rule", estimate_maps(d.kspace)),
                       ("sigpy", _espirit_sigpy(d.kspace, shape, 0.02, 6, 0.95, 100, resolve_device("cpu")))):
        img = mri_csc.reconstruct(d.kspace, maps, mask=d.mask, method="sense", max_iter=30).image
        got[name] = psnr(np.abs(d.image), np.abs(img), mask=d.support)
    assert got["rule"] > got["sigpy"] + 3, got


@has_bart
def test_espirit_bart_recovers_birdcage(data):
    maps = estimate_maps(data.kspace, calib_width=24, method="bart", thresh=0.005, crop=0.8)
    assert maps.shape == data.maps.shape and maps.dtype == np.complex64
    assert _agreement(maps, data) > 0.99


def test_estimate_maps_errors(data, monkeypatch):
    with pytest.raises(ValueError, match="method"):
        estimate_maps(data.kspace, method="matlab")
    with pytest.raises(ValueError, match="kspace must be"):
        estimate_maps(data.kspace[0, 0])
    with pytest.raises(TypeError, match="complex"):
        estimate_maps(data.kspace.real)
    with pytest.raises(ValueError, match="calib_width"):
        estimate_maps(data.kspace, calib_width=2)  # under the kernel; over the size is a cap per axis
    bad = data.kspace.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_maps(bad)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="BART"):
        estimate_maps(data.kspace, method="bart")


def test_cfl_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 4, 3)) + 1j * rng.standard_normal((5, 4, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    np.testing.assert_array_equal(read_cfl(tmp_path / "a.cfl"), a)
    with pytest.raises(FileExistsError):
        write_cfl(tmp_path / "a", a, overwrite=False)
    with pytest.raises(FileNotFoundError):
        read_cfl(tmp_path / "missing")


@has_bart
def test_cfl_read_by_bart(tmp_path):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((6, 5, 1, 3)) + 1j * rng.standard_normal((6, 5, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    out = subprocess.run(
        ["bart", "show", "-m", str(tmp_path / "a")], capture_output=True, text=True, check=True
    )
    assert "6\t5\t1\t3" in out.stdout
    subprocess.run(["bart", "scale", "2", str(tmp_path / "a"), str(tmp_path / "b")], check=True)
    np.testing.assert_allclose(read_cfl(tmp_path / "b"), 2 * a.reshape(6, 5, 1, 3), rtol=1e-6)
    # BART dimension 3 (coils) is our last axis; trailing singleton dims are dropped on read
    subprocess.run(["bart", "slice", "3", "2", str(tmp_path / "a"), str(tmp_path / "c")], check=True)
    np.testing.assert_allclose(read_cfl(tmp_path / "c"), a[:, :, 0, 2], rtol=1e-6)


@pytest.mark.parametrize("method", ["sigpy", pytest.param("bart", marks=has_bart)])
def test_calib_width_is_a_limit_per_axis(method):
    """A calib_width longer than an axis takes that axis whole (as BART's ecalib -r): a batch of a 3-D
    scan with 16 partitions calibrates on (kz, ky) planes of 16 x 64 (it failed on every plane)."""
    d = make_dataset("shepp-logan", (16, 64), 8, mask="poisson", accel=1.01, seed=0)
    maps = estimate_maps(d.kspace, method=method, calib_width=24)
    assert maps.shape == d.kspace.shape
    assert map_agreement(maps, d.maps, np.abs(d.image) > 0.1 * np.abs(d.image).max()) > 0.95
    with pytest.raises(ValueError, match="calib_width must be at least kernel_width"):
        estimate_maps(d.kspace, method=method, calib_width=4)


@has_bart
def test_own_maps_of_a_narrow_centre_are_not_called_wrong(tmp_path, caplog):
    """BART's phantom with a 2x oversampled readout and 8 centre lines (fastMRI's layout at R = 4): the
    ESPIRiT maps of that very scan explain 0.967 of its blurred calibration coil images, under the 0.97 a
    wide centre must reach; the narrow centre's own threshold lets them pass, and flipped maps still warn."""
    import logging

    import mri_csc
    from mri_csc.backend import fftc, ifftc
    from mri_csc.io.formats import read_kspace
    from mri_csc.validate import maps_explained_fraction

    subprocess.run(["bart", "phantom", "-k", "-s", "8", "-x", "128", str(tmp_path / "k")], check=True,
                   capture_output=True)
    img = ifftc(read_kspace(str(tmp_path / "k.cfl"))["kspace"])
    k = fftc(np.pad(img, ((0, 0), (64, 64), (0, 0)))).astype(np.complex64)  # readout (axis 1) oversampled 2x
    lines = np.zeros(k.shape[1:], np.float32)
    lines[:, ::4] = 1
    lines[:, 60:68] = 1
    k = k * lines
    maps = estimate_maps(k)
    assert 0.9 < maps_explained_fraction(k, maps) < 0.97
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        mri_csc.reconstruct(k, maps, mask=lines, method="zero-filled")
        assert "explain only" not in caplog.text
        mri_csc.reconstruct(k, maps[:, ::-1], mask=lines, method="zero-filled")
    assert "explain only" in caplog.text


@has_bart
def test_maps_of_another_scan_are_warned_about(tmp_path, caplog):
    """ESPIRiT maps of another object seen by the same coils (bart phantom -G against the Shepp-Logan
    k-space) explain the coil images on their own support (0.999) but leave the object's energy outside
    it unexplained: counted over the whole image they are under the threshold (a user trial got 16 dB
    without a word)."""
    import logging

    import mri_csc
    from mri_csc.io.formats import read_kspace

    for name, extra in (("k", []), ("kg", ["-G"])):
        subprocess.run(["bart", "phantom", *extra, "-k", "-s", "8", "-x", "96", str(tmp_path / name)], check=True,
                       capture_output=True)
    k = read_kspace(str(tmp_path / "k.cfl"))["kspace"]
    other = estimate_maps(read_kspace(str(tmp_path / "kg.cfl"))["kspace"], method="bart")
    own = estimate_maps(k, method="bart")
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        mri_csc.reconstruct(k, own, method="zero-filled")
        assert "explain only" not in caplog.text
        mri_csc.reconstruct(k, other, method="zero-filled")
    assert "explain only" in caplog.text
