"""Non-Cartesian ISMRMRD: radial acquisitions with ``traj``, written by the PyPI ``ismrmrd`` package."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

import mri_csc
from mri_csc.io.formats import FileFormatError
from mri_csc.io.ismrmrd import has_trajectories, read_ismrmrd, read_ismrmrd_noncartesian
from mri_csc.metrics import psnr
from mri_csc.sim import birdcage_maps, shepp_logan
from mri_csc.sim.trajectories import radial, simulate_noncartesian

ismrmrd = pytest.importorskip("ismrmrd")
N, SPOKES, COILS = 48, 60, 4


def write_radial(path, kspace, coord, *, units="normalized", noise=None, kind="RADIAL"):
    """One acquisition per spoke through ``ismrmrd.Dataset``: data (coils, readout), traj (readout, 2) as (kx, ky)."""
    import ismrmrd.xsd as x

    def space(m):
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=m[0], y=m[1], z=1),
                                   fieldOfView_mm=x.fieldOfViewMm(x=240, y=240, z=5))

    enc = x.encodingType(encodedSpace=space((2 * N, N)), reconSpace=space((N, N)),
                         encodingLimits=x.encodingLimitsType(), trajectory=getattr(x.trajectoryType, kind))
    hdr = x.ismrmrdHeader(acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=COILS),
                          experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
                          encoding=[enc])
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(x.ToXML(hdr))
    if noise is not None:
        acq = ismrmrd.Acquisition.from_array(noise.astype(np.complex64))
        acq.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        ds.append_acquisition(acq)
    scale = 1 / N if units == "normalized" else 1.0
    for s in range(kspace.shape[1]):
        traj = (coord[s, :, ::-1] * scale).astype(np.float32)  # ours (ky, kx) -> ISMRMRD (kx, ky)
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[:, s]), traj)
        acq.idx.kspace_encode_step_1 = s
        acq.center_sample = kspace.shape[2] // 2
        ds.append_acquisition(acq)
    ds.close()


@pytest.fixture(scope="module")
def radial_case():
    img = shepp_logan((N, N)).astype(np.complex64)
    maps = birdcage_maps((N, N), COILS)
    coord = radial(SPOKES, 2 * N, N, golden=True)
    y = simulate_noncartesian(img, maps, coord, snr_db=35, seed=0)
    return img, maps, coord, y


@pytest.mark.parametrize("units", ["normalized", "cycles"])
def test_radial_file_reads_back_in_our_convention(tmp_path, radial_case, units):
    img, maps, coord, y = radial_case
    write_radial(tmp_path / "r.h5", y, coord, units=units)
    assert has_trajectories(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        d = read_ismrmrd_noncartesian(tmp_path / "r.h5", f)
    assert d["units"] == units and d["image_shape"] == (N, N) and d["trajectory_type"] == "radial"
    assert d["kspace"].shape == (1, 1, COILS, SPOKES, 2 * N) and d["trajectory"].shape == (1, 1, SPOKES, 2 * N, 2)
    np.testing.assert_allclose(d["trajectory"][0, 0], coord, atol=1e-4)
    np.testing.assert_array_equal(d["kspace"][0, 0], y)


def test_batch_names_a_noncartesian_ismrmrd_file_it_does_not_take(tmp_path, radial_case):
    from mri_csc.batch import discover

    img, maps, coord, y = radial_case
    write_radial(tmp_path / "r.h5", y, coord)
    volumes, errors = discover([tmp_path / "r.h5"])
    assert not volumes and "a non-Cartesian ISMRMRD file ('radial')" in errors[0].error
    assert "mri-csc recon FILE" in errors[0].error


def test_reconstruct_from_the_file_matches_the_arrays(tmp_path, radial_case):
    img, maps, coord, y = radial_case
    write_radial(tmp_path / "r.h5", y, coord)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        d = read_ismrmrd_noncartesian(tmp_path / "r.h5", f)
    a = mri_csc.reconstruct(d["kspace"][0, 0], maps, trajectory=d["trajectory"][0, 0], method="zero-filled")
    b = mri_csc.reconstruct(y, maps, trajectory=coord, method="zero-filled")
    assert np.linalg.norm(a.image - b.image) <= 1e-3 * np.linalg.norm(b.image)  # float32 rounding of k / N * N
    s = mri_csc.reconstruct(d["kspace"][0, 0], maps, trajectory=d["trajectory"][0, 0], method="sense", max_iter=10)
    assert psnr(np.abs(img), np.abs(s.image)) > 22  # 23.6 dB measured


def test_noise_scans_prewhiten_the_readouts(tmp_path, radial_case, rng):
    img, maps, coord, y = radial_case
    mix = np.eye(COILS) + 0.3 * rng.standard_normal((COILS, COILS))
    noise = mix @ (rng.standard_normal((COILS, 4096)) + 1j * rng.standard_normal((COILS, 4096)))
    write_radial(tmp_path / "r.h5", y, coord, noise=noise)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        d = read_ismrmrd_noncartesian(tmp_path / "r.h5", f)
        raw = read_ismrmrd_noncartesian(tmp_path / "r.h5", f, prewhiten=False)
    assert d["whitened"] and d["noise_scans"] == 1 and not raw["whitened"]
    np.testing.assert_array_equal(raw["kspace"][0, 0], y)
    assert not np.allclose(d["kspace"], raw["kspace"])


def test_bad_trajectories_are_refused(tmp_path, radial_case):
    img, maps, coord, y = radial_case
    write_radial(tmp_path / "big.h5", y, coord * 1.5, units="cycles")  # beyond the 48-matrix's +-24
    with h5py.File(tmp_path / "big.h5", "r") as f, pytest.raises(FileFormatError, match="beyond"):
        read_ismrmrd_noncartesian(tmp_path / "big.h5", f)
    with h5py.File(tmp_path / "big.h5", "r") as f, pytest.raises(FileFormatError, match="read_ismrmrd_noncartesian"):
        read_ismrmrd(tmp_path / "big.h5", f)  # the Cartesian reader points at the right one
    with h5py.File(tmp_path / "big.h5", "r") as f, pytest.raises(ValueError, match="units must be"):
        read_ismrmrd_noncartesian(tmp_path / "big.h5", f, units="metres")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mri_csc.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_cli_recon_and_info_of_a_radial_file(tmp_path, radial_case):
    img, maps, coord, y = radial_case
    write_radial(tmp_path / "r.h5", y, coord)
    np.save(tmp_path / "maps.npy", maps)
    p = _cli("recon", tmp_path / "r.h5", "--maps", tmp_path / "maps.npy", "--method", "sense", "--out",
             tmp_path / "x.npy", "--no-pbar")
    assert p.returncode == 0, p.stderr
    out = np.load(tmp_path / "x.npy")
    assert out.shape == (N, N) and psnr(np.abs(img), np.abs(out)) > 22
    p = _cli("recon", tmp_path / "r.h5", "--espirit", "sigpy", "--method", "zero-filled", "--out",
             tmp_path / "z.npy", "--no-pbar")  # the image shape comes from the recon matrix
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "z.npy").shape == (N, N)
    p = _cli("info", tmp_path / "r.h5")
    assert p.returncode == 0, p.stderr
    assert "non-Cartesian: trajectory 'radial'" in p.stdout and f"{SPOKES} readouts" in p.stdout
    assert "read as normalized" in p.stdout


def test_cli_whitens_given_maps_with_the_readouts(tmp_path, radial_case, rng):
    """--maps with prewhitened non-Cartesian ISMRMRD data: the maps get the same whitener (W y has
    sensitivities W S), so the image matches the unwhitened reconstruction."""
    img, maps, coord, y = radial_case
    mix = (np.eye(COILS) + 0.5 * rng.standard_normal((COILS, COILS))).astype(np.complex64)  # coupled coils
    noise = mix @ (rng.standard_normal((COILS, 4096)) + 1j * rng.standard_normal((COILS, 4096)))
    write_radial(tmp_path / "r.h5", np.tensordot(mix, y, axes=(1, 0)), coord, noise=noise)
    np.save(tmp_path / "maps.npy", np.tensordot(mix, maps, axes=(1, 0)))  # the raw coils' sensitivities
    out = {}
    for name, extra in (("white", []), ("raw", ["--no-prewhiten"])):
        p = _cli("recon", tmp_path / "r.h5", "--maps", tmp_path / "maps.npy", "--method", "sense", "--out",
                 tmp_path / f"{name}.npy", "--no-pbar", *extra)
        assert p.returncode == 0, p.stderr
        out[name] = np.abs(np.load(tmp_path / f"{name}.npy"))
    assert np.corrcoef(out["white"].ravel(), out["raw"].ravel())[0, 1] > 0.99
    assert "whitened with the k-space's noise whitener" in _cli(
        "recon", tmp_path / "r.h5", "--maps", tmp_path / "maps.npy", "--method", "zero-filled", "--out",
        tmp_path / "z.npy", "--no-pbar").stderr


def test_cli_default_maps_are_espirit_as_the_help_says(tmp_path, radial_case):
    """No --maps/--espirit: a radial ISMRMRD file gets ESPIRiT (SigPy) maps with a notice, as Cartesian input and
    `recon --help` have it; --no-espirit without maps is refused naming the option."""
    img, maps, coord, y = radial_case
    write_radial(tmp_path / "r.h5", y, coord)
    p = _cli("recon", tmp_path / "r.h5", "--method", "sense", "--out", tmp_path / "x.npy", "--no-pbar")
    assert p.returncode == 0, p.stderr
    assert "estimating them with ESPIRiT (sigpy)" in p.stderr
    assert psnr(np.abs(img), np.abs(np.load(tmp_path / "x.npy"))) > 20
    p = _cli("recon", tmp_path / "r.h5", "--no-espirit", "--method", "sense", "--out", tmp_path / "n.npy",
             "--no-pbar")
    assert p.returncode != 0 and "--no-espirit was given" in p.stderr
    assert "ESPIRiT with SigPy" in _cli("recon", "--help").stdout
