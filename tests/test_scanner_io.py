"""Scanner formats checked against the tools that define them: ISMRMRD's generator and C++ reader, BART."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from mri_csc.cli import main
from mri_csc.io import FileFormatError, describe, read_kspace, write_image, write_kspace
from mri_csc.io.cfl import read_cfl, write_cfl

GEN = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
CPP_RECON = shutil.which("ismrmrd_recon_cartesian_2d")
BART = shutil.which("bart")
needs_gen = pytest.mark.skipif(GEN is None, reason="ismrmrd-tools not installed")
needs_bart = pytest.mark.skipif(BART is None, reason="bart not installed")


def _gen(path, *args):
    subprocess.run([GEN, "-o", str(path), *map(str, args)], check=True, capture_output=True)
    return path


def _phantom(path):
    import h5py

    with h5py.File(path, "r") as f:
        p = f["dataset/phantom"][()]
    return (p["real"] + 1j * p["imag"])[0]


def _psnr(x, ref):
    x, ref = np.abs(x), np.abs(ref)
    s = (x * ref).sum() / (x * x).sum()  # the least-squares scale: files differ in units
    return 20 * np.log10(ref.max() / np.sqrt(np.mean((s * x - ref) ** 2)))


def _rss(k):
    from mri_csc.backend import ifftc

    return np.sqrt((np.abs(ifftc(k, axes=(-2, -1))) ** 2).sum(0))


# ----------------------------------------------------------------------------- ISMRMRD

@needs_gen
def test_oversampled_ismrmrd_gives_recon_size(tmp_path):
    f = _gen(tmp_path / "os.h5", "-m", 64, "-c", 4, "-O", 2, "-n", 0.0)
    d = read_kspace(f)
    assert d["kspace"].shape == (4, 64, 64)  # encoded 128 x 64, recon 64 x 64
    # the readout crop is exact: our coil images are the centre of the generator's oversampled ones
    import h5py

    from mri_csc.backend import ifftc

    with h5py.File(f, "r") as h:
        c = h["dataset/coil_images"][()]
    c = (c["real"] + 1j * c["imag"])[0]  # (coils, 64, 128)
    np.testing.assert_allclose(ifftc(d["kspace"], axes=(-2, -1)), c[..., 32:96], atol=1e-5 * np.abs(c).max())
    assert main(["recon", str(f), "--out", str(tmp_path / "x.npy"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--no-pbar"]) == 0
    assert np.load(tmp_path / "x.npy").shape == (64, 64)
    assert "readout oversampling 2x" in describe(f)


@needs_gen
def test_repetitions_are_frames_not_summed(tmp_path):
    f = _gen(tmp_path / "rep.h5", "-m", 64, "-c", 4, "-r", 3, "-a", 2, "-w", 16, "-n", 0.0)
    d = read_kspace(f)
    # acceleration 2 with 3 repetitions: the generator writes 6 repetitions with shifted patterns
    assert d["lead_axes"] == ("frame",)
    n = d["kspace"].shape[0]
    assert n == 6 and d["kspace"].shape[1:] == (4, 64, 64)
    # each frame is undersampled (R = 64 / 40) and its |k| equals one repetition's, not a sum
    frac = (d["mask"][:, :, 0] != 0).mean(axis=1)
    np.testing.assert_allclose(frac, 40 / 64)
    full = read_kspace(_gen(tmp_path / "one.h5", "-m", 64, "-c", 4, "-n", 0.0))["kspace"]
    np.testing.assert_allclose(np.abs(d["kspace"][0]).max(), np.abs(full).max(), rtol=1e-4)
    out = tmp_path / "x.npy"
    assert main(["recon", str(f), "--out", str(out), "--method", "sense", "--espirit", "sigpy",
                 "--calib-width", "16", "--no-pbar"]) == 0
    img = np.load(out)
    assert img.shape == (6, 64, 64)
    ph = _phantom(f)
    assert min(_psnr(im, ph) for im in img) > 25
    rec = json.loads((tmp_path / "x_params.json").read_text())
    assert rec["frames"] == 6 and rec["method"] == "sense" and rec["params"]["max_iter"] > 0


def _flag_lines(path, flag, which, scale=1.0, mode=None):
    """Set ISMRMRD ``flag`` on the acquisitions ``which(head) -> bool`` and scale their data; optionally rewrite
    the header's ``calibrationMode``."""
    import h5py
    import ismrmrd

    bit = np.uint64(1) << np.uint64(getattr(ismrmrd, flag) - 1)
    with h5py.File(path, "a") as h:
        d = h["dataset/data"][()]
        for a in d:
            if which(a["head"]):
                a["head"]["flags"] = np.uint64(a["head"]["flags"]) | bit
                a["data"][:] = a["data"] * scale
        h["dataset/data"][...] = d
        if mode is not None:
            x = h["dataset/xml"][0]
            x = x.decode() if isinstance(x, bytes) else x
            h["dataset/xml"][0] = x.replace("<calibrationMode>interleaved</calibrationMode>",
                                            f"<calibrationMode>{mode}</calibrationMode>")
    return path


@needs_gen
def test_separate_reference_lines_give_the_maps_not_the_image(tmp_path, capsys):
    """Calibration-only lines of a separate reference scan (calibrationMode 'separate'; here at 10x the image's
    scale) stay out of the image's k-space and give the ESPIRiT maps; 'interleaved' ones (the generator's) are
    lines of the image, as before."""
    import ismrmrd

    f = _gen(tmp_path / "sep.h5", "-m", 64, "-c", 4, "-a", 2, "-w", 24, "-n", 0.0)
    inter = read_kspace(f)  # 2 frames (the generator's shifted R = 2 patterns) of (4, 64, 64)

    def lines(mask):  # the fraction of phase-encode lines sampled in each frame
        return (mask != 0).any(axis=-1).mean(axis=-1)

    assert inter["calibration"] is None and lines(inter["mask"]) == pytest.approx([44 / 64] * 2)
    cal_bit = np.uint64(1) << np.uint64(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION - 1)
    _flag_lines(f, "ACQ_IS_PARALLEL_CALIBRATION", lambda head: np.uint64(head["flags"]) & cal_bit, 10.0, "separate")
    d = read_kspace(f)
    assert lines(d["mask"]) == pytest.approx([32 / 64] * 2)  # the R = 2 lines only
    from mri_csc.io.formats import calibration_data

    assert len(d["calibration"]) == 1 and d["calibration"][0].shape == d["kspace"].shape[1:]  # one per slice
    assert lines(np.abs(d["calibration"][0]).sum(axis=0)) == pytest.approx(24 / 64)  # both frames' extra lines
    first, second = (calibration_data(d, i, d["kspace"][i]) for i in range(2))
    assert first is second and first is not d["kspace"][0]  # each frame of the slice: the same reference lines
    assert "calibration-only lines: 24" in describe(f)
    assert main(["recon", str(f), "--out", str(tmp_path / "x.npy"), "--method", "sense", "--no-pbar"]) == 0
    assert "the coil maps come from the calibration-only lines" in capsys.readouterr().err
    assert min(_psnr(im, _phantom(f)) for im in np.load(tmp_path / "x.npy")) > 30


def test_partial_echo_samples_not_acquired_are_not_in_the_mask(tmp_path, caplog):
    """A partial echo without readout oversampling: the mask holds the samples acquired, so the missing ones are
    not fitted as measured zeros (and no empty-samples warning); a full line keeps its whole readout."""
    import ismrmrd
    import ismrmrd.xsd as x

    from mri_csc.sim import make_dataset

    d = make_dataset("shepp-logan", shape=(32, 32), n_coils=2, mask="poisson", accel=1, seed=0)

    def space(m):
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=m, y=m, z=1),
                                   fieldOfView_mm=x.fieldOfViewMm(x=200.0, y=200.0, z=5.0))

    enc = x.encodingType(encodedSpace=space(32), reconSpace=space(32), trajectory=x.trajectoryType.CARTESIAN,
                         encodingLimits=x.encodingLimitsType(
                             kspace_encoding_step_1=x.limitType(minimum=0, maximum=31, center=16)))
    hdr = x.ismrmrdHeader(experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
                          encoding=[enc])
    f = tmp_path / "pe.h5"
    ds = ismrmrd.Dataset(str(f), "dataset", create_if_needed=True)
    ds.write_xml_header(x.ToXML(hdr))
    for ky in range(32):
        first = 8 if ky % 2 else 0  # odd lines: a partial echo missing their first 8 samples
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(d.kspace[:, ky, first:]).astype(np.complex64))
        a.idx.kspace_encode_step_1 = ky
        a.center_sample = 16 - first
        ds.append_acquisition(a)
    ds.close()
    r = read_kspace(f)
    assert r["mask"][1, :8].sum() == 0 and r["mask"][1, 8:].all() and r["mask"][0].all()
    np.testing.assert_allclose(r["kspace"][:, 1, 8:], d.kspace[:, 1, 8:], rtol=1e-5, atol=1e-6)
    import mri_csc

    with caplog.at_level("WARNING", logger="mri_csc.recon.problem"):
        mri_csc.reconstruct(r["kspace"], d.maps, mask=r["mask"], method="zero-filled")
    assert not any("exactly zero k-space" in rec.getMessage() for rec in caplog.records)


@needs_gen
def test_reversed_lines_are_refused(tmp_path):
    f = _flag_lines(_gen(tmp_path / "rev.h5", "-m", 32, "-c", 2), "ACQ_IS_REVERSE",
                    lambda head: head["idx"]["kspace_encode_step_1"] % 2)
    with pytest.raises(ValueError, match=r"16 of 32 k-space lines are flagged ACQ_IS_REVERSE"):
        read_kspace(f)


@needs_gen
def test_cartesian_file_with_stored_coordinates_reads_as_without(tmp_path):
    import h5py

    a = read_kspace(_gen(tmp_path / "k.h5", "-m", 32, "-c", 2, "-k"))["kspace"]  # -k: (kx, ky) of every sample
    np.testing.assert_array_equal(a, read_kspace(_gen(tmp_path / "n.h5", "-m", 32, "-c", 2))["kspace"])
    from mri_csc.io.ismrmrd import has_trajectories

    assert not has_trajectories(tmp_path / "k.h5")  # so recon takes the Cartesian path, not the NUFFT one
    assert main(["recon", str(tmp_path / "k.h5"), "--method", "zero-filled", "--out", str(tmp_path / "k.npy"),
                 "--no-pbar"]) == 0
    assert np.load(tmp_path / "k.npy").shape == (32, 32)
    with h5py.File(tmp_path / "k.h5", "a") as f:  # coordinates that are no Cartesian line: refused
        d = f["dataset/data"][()]
        for acq in d:
            acq["traj"][1::2] = np.linspace(-0.5, 0.5, acq["traj"][1::2].size)
        f["dataset/data"][...] = d
    with pytest.raises(FileFormatError, match="not a Cartesian line"):
        read_kspace(tmp_path / "k.h5")
    k2 = _gen(tmp_path / "k2.h5", "-m", 32, "-c", 2, "-k")
    with h5py.File(k2, "a") as f:  # fuzzed: a line declaring no coordinates among lines with them (was a
        d = f["dataset/data"][()]  # ValueError from an empty max): read as the others
        d[0]["head"]["trajectory_dimensions"] = 0
        d[0]["traj"] = np.zeros(0, np.float32)
        f["dataset/data"][...] = d
    np.testing.assert_array_equal(read_kspace(k2)["kspace"], a)
    with h5py.File(k2, "a") as f:  # non-finite coordinates: refused by name
        d = f["dataset/data"][()]
        d[1]["traj"][0] = np.nan
        f["dataset/data"][...] = d
    with pytest.raises(FileFormatError, match="non-finite trajectory"):
        read_kspace(k2)


@needs_bart
def test_images_and_uncentred_kspace_are_refused_as_kspace(tmp_path, capsys):
    from mri_csc.io.formats import check_centred_kspace
    from mri_csc.sim import make_dataset

    subprocess.run([BART, "phantom", "-k", "-s", "4", "-x", "48", str(tmp_path / "k")], check=True)
    subprocess.run([BART, "fft", "-i", "3", str(tmp_path / "k"), str(tmp_path / "ci")], check=True)  # coil images
    assert main(["recon", str(tmp_path / "ci.cfl"), "--out", str(tmp_path / "x.npy"), "--no-pbar"]) == 2
    assert "does not look like centred k-space" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()
    ds = make_dataset("brain" if __import__("os").path.isfile("/usr/share/mricron/templates/ch2.nii.gz")
                      else "shepp-logan", shape=(64, 64), n_coils=4, mask="random-lines", accel=4, seed=0)
    check_centred_kspace(ds.kspace, "centred")  # measured (undersampled) k-space passes
    with pytest.raises(FileFormatError, match="fftshift"):
        check_centred_kspace(np.fft.ifftshift(ds.kspace, axes=(-2, -1)), "DC in the corner")


@needs_gen
def test_noise_scans_prewhiten(tmp_path):
    f = _gen(tmp_path / "n.h5", "-m", 64, "-c", 4, "-C", "-n", 0.05)
    from mri_csc.io.ismrmrd import noise_whitener, read_noise

    noise = read_noise(f)
    assert noise.shape[0] == 4
    W = noise_whitener(noise)
    wn = W @ noise
    np.testing.assert_allclose(wn @ wn.conj().T / (wn.shape[1] - 1), np.eye(4), atol=1e-6)
    on, off = read_kspace(f), read_kspace(f, prewhiten=False)
    assert on["whitened"] and not off["whitened"]
    np.testing.assert_allclose(on["kspace"], np.einsum("ij,j...->i...", W, off["kspace"]), rtol=1e-4, atol=1e-4)
    assert "prewhitened" in describe(f)
    # a user-supplied noise array gives the same whitening
    np.testing.assert_allclose(read_kspace(f, noise=noise)["kspace"], on["kspace"], rtol=1e-5, atol=1e-6)
    # no noise scans, prewhiten asked: refused
    g = _gen(tmp_path / "nn.h5", "-m", 32, "-c", 2)
    with pytest.raises(ValueError, match="no noise scans"):
        read_kspace(g, prewhiten=True)


@needs_gen
def test_maps_given_for_prewhitened_data_are_whitened_too(tmp_path, capsys):
    """--maps with a prewhitened ISMRMRD file: the whitened k-space W y has the sensitivities W S, so the
    maps are whitened with it; the image then matches the unwhitened reconstruction with the raw maps."""
    import h5py

    from mri_csc.sim import estimate_maps

    f = _gen(tmp_path / "m.h5", "-m", 48, "-c", 4, "-C", "-n", 0.05)
    mix = np.array([[1, .6, 0, 0], [0, 1, .5, 0], [.3, 0, 1, .2], [0, .4, 0, 2]], np.complex64)  # coupled coils
    with h5py.File(f, "a") as h:
        d = h["dataset/data"][()]
        for a in d:
            nc = int(a["head"]["active_channels"])
            a["data"][:] = (mix[:nc, :nc] @ a["data"].view(np.complex64).reshape(nc, -1)).view(np.float32).ravel()
        h["dataset/data"][...] = d
    raw = read_kspace(f, prewhiten=False)["kspace"]
    np.save(tmp_path / "maps.npy", estimate_maps(raw, method="sigpy"))  # maps of the raw (unwhitened) coils
    common = ["--method", "sense", "--maps", str(tmp_path / "maps.npy"), "--no-pbar"]
    assert main(["recon", str(f), "--out", str(tmp_path / "raw.npy"), "--no-prewhiten", *common]) == 0
    capsys.readouterr()
    assert main(["recon", str(f), "--out", str(tmp_path / "white.npy"), *common]) == 0
    assert "prewhitened with the noise scans (intensities are then relative to the noise std" in capsys.readouterr().err
    a, b = (np.abs(np.load(tmp_path / n)).ravel() for n in ("raw.npy", "white.npy"))
    assert np.corrcoef(a, b)[0, 1] > 0.995
    # maps estimated on the whitened data: intensities relative to the noise std (0.05 here), as the note says
    assert main(["recon", str(f), "--out", str(tmp_path / "est.npy"), "--method", "sense", "--no-pbar"]) == 0
    assert "intensities are then relative to the noise std" in capsys.readouterr().err
    assert main(["recon", str(f), "--out", str(tmp_path / "file.npy"), "--method", "sense", "--no-pbar",
                 "--no-prewhiten"]) == 0
    c, d = (np.abs(np.load(tmp_path / n)).ravel() for n in ("est.npy", "file.npy"))
    assert np.vdot(c, d) / np.vdot(d, d) > 5  # ~1/0.05, less the whitened coils' ESPIRiT normalisation


@needs_gen
def test_batch_prewhitening_options_match_recon(tmp_path):
    noisy = _gen(tmp_path / "nz.h5", "-m", 32, "-c", 3, "-C")
    plain = _gen(tmp_path / "nn.h5", "-m", 32, "-c", 3)
    common = ["--method", "sense", "--espirit", "sigpy", "--calib-width", "16", "--no-pbar"]
    for name, f, extra in (("noise", plain, ["--noise", str(noisy)]), ("none", noisy, ["--no-prewhiten"]),
                           ("own", noisy, [])):
        assert main(["recon", str(f), "--out", str(tmp_path / f"{name}.npy"), *extra, *common]) == 0
        assert main(["batch", str(f), "--out", str(tmp_path / name), "--format", "npy", "--workers", "1",
                     *extra, *common]) == 0
        r = np.load(tmp_path / f"{name}.npy")
        np.testing.assert_allclose(np.load(tmp_path / name / f"{f.stem}.npy")[0], r, atol=1e-4 * np.abs(r).max())
    # whitened data are in other units than unwhitened: the options did change what was reconstructed
    assert np.abs(np.load(tmp_path / "own.npy")).max() > 2 * np.abs(np.load(tmp_path / "none.npy")).max()
    assert main(["batch", str(plain), "--out", str(tmp_path / "x"), "--noise", str(noisy), "--no-prewhiten",
                 *common]) == 2


def test_written_ismrmrd_is_read_by_the_reference_libraries(tmp_path):
    import ismrmrd

    rng = np.random.default_rng(0)
    k = (rng.standard_normal((3, 24, 32)) + 1j * rng.standard_normal((3, 24, 32))).astype(np.complex64)
    mask = np.zeros((24, 32), np.float32)
    mask[::2] = 1
    k *= mask
    write_kspace(tmp_path / "a.mrd", k, mask=mask)
    with ismrmrd.Dataset(str(tmp_path / "a.mrd"), "dataset", create_if_needed=False) as ds:
        hdr = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        assert (hdr.encoding[0].encodedSpace.matrixSize.x, hdr.encoding[0].encodedSpace.matrixSize.y) == (32, 24)
        assert ds.number_of_acquisitions() == 12
        acq = ds.read_acquisition(3)
        np.testing.assert_array_equal(acq.data, k[:, acq.idx.kspace_encode_step_1])
    d = read_kspace(tmp_path / "a.mrd")
    np.testing.assert_allclose(d["kspace"], k)
    if CPP_RECON is None:
        pytest.skip("ismrmrd-tools not installed (C++ reader)")
    shutil.copy(tmp_path / "a.mrd", tmp_path / "c.h5")  # the C++ tool writes its result into the file
    p = subprocess.run([CPP_RECON, str(tmp_path / "c.h5")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-500:]
    assert "Encoding Matrix Size        : [32, 24, 1]" in p.stdout
    assert "Number of acquisitions      : 12" in p.stdout


def test_hostile_ismrmrd_header_refused(tmp_path, monkeypatch):
    import h5py

    k = np.ones((2, 8, 8), np.complex64)
    write_kspace(tmp_path / "a.mrd", k)
    with h5py.File(tmp_path / "a.mrd", "a") as f:
        x = f["dataset/xml"][0].decode().replace("<y>8</y>", "<y>4</y>", 1)
        f["dataset/xml"][0] = x.encode()
    with pytest.raises(FileFormatError, match="outside the encoded matrix"):
        read_kspace(tmp_path / "a.mrd")
    write_kspace(tmp_path / "b.mrd", np.ones((2, 32, 32), np.complex64))  # 16 KiB of k-space
    monkeypatch.setenv("MRI_CSC_MAX_BYTES", "1K")
    with pytest.raises(ValueError, match="memory budget"):
        read_kspace(tmp_path / "b.mrd")


# ----------------------------------------------------------------------------- BART

@needs_bart
def test_bart_2d_axes(tmp_path):
    subprocess.run([BART, "phantom", "-k", "-s", "4", "-x", "32", str(tmp_path / "k")], check=True)
    subprocess.run([BART, "resize", "-c", "1", "24", str(tmp_path / "k"), str(tmp_path / "k2")], check=True)
    d = read_kspace(tmp_path / "k2.cfl")
    assert d["kspace"].shape == (4, 24, 32)  # BART (x=32 readout, y=24, 1, coils)
    subprocess.run([BART, "fft", "-u", "-i", "3", str(tmp_path / "k2"), str(tmp_path / "ci")], check=True)
    subprocess.run([BART, "rss", "8", str(tmp_path / "ci"), str(tmp_path / "rss")], check=True)
    np.testing.assert_allclose(_rss(d["kspace"]), read_cfl(tmp_path / "rss").T, rtol=1e-4, atol=1e-5)


@needs_bart
def test_bart_extra_dims_are_frames_and_map_sets_refused(tmp_path):
    a = (np.random.default_rng(1).standard_normal((16, 12, 1, 2, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "t", a)  # 3 echoes (BART dim 5)
    d = read_kspace(tmp_path / "t.cfl")
    assert d["kspace"].shape == (3, 2, 12, 16) and d["lead_axes"] == ("frame",)
    np.testing.assert_array_equal(d["kspace"][2], a[..., 0, 2].T[:, 0])
    np.testing.assert_array_equal(read_kspace(tmp_path / "t.cfl", slice=1)["kspace"], a[..., 0, 1].T[:, 0])
    img = np.arange(3 * 12 * 16).reshape(3, 12, 16).astype(np.complex64)
    write_image(tmp_path / "o.cfl", img, frames=True, bart_frame_dims=d["bart_frame_dims"])
    p = subprocess.run([BART, "show", "-m", str(tmp_path / "o")], capture_output=True, text=True, check=True)
    assert "16\t12\t1\t1\t1\t3\t" in p.stdout
    # two ESPIRiT sets: refused with the way out
    k = tmp_path / "k"
    subprocess.run([BART, "phantom", "-k", "-s", "4", "-x", "32", str(k)], check=True)
    subprocess.run([BART, "ecalib", "-m", "2", str(k), str(tmp_path / "k_maps")], check=True, capture_output=True)
    with pytest.raises(ValueError, match="ecalib -m 1"):
        read_kspace(tmp_path / "k.cfl")


@needs_bart
def test_batch_keeps_bart_echoes_as_frames(tmp_path):
    """A BART 2-D array with echoes (dim 5) comes out of batch as recon's: echoes on dim 5, never z slices."""
    def b(*a):
        subprocess.run([BART, *map(str, a)], check=True, capture_output=True)

    b("phantom", "-k", "-s", 4, "-x", 32, tmp_path / "e0")
    b("scale", 0.7, tmp_path / "e0", tmp_path / "e1")
    b("join", 5, tmp_path / "e0", tmp_path / "e1", tmp_path / "me")
    b("ecalib", "-m", 1, tmp_path / "e0", tmp_path / "me_maps")
    common = ["--method", "sense", "--no-pbar"]
    assert main(["recon", str(tmp_path / "me.cfl"), "--out", str(tmp_path / "r.cfl"), *common]) == 0
    assert main(["batch", str(tmp_path / "me.cfl"), "--out", str(tmp_path / "o"), "--format", "cfl", "--workers", "1",
                 *common]) == 0
    got = read_cfl(tmp_path / "o" / "me")
    assert got.shape == (32, 32, 1, 1, 1, 2)  # BART (x, y, z, coils, maps, TE)
    np.testing.assert_allclose(got, read_cfl(tmp_path / "r"), atol=1e-5 * np.abs(got).max())
    assert np.abs(got[..., 1]).max() == pytest.approx(0.7 * np.abs(got[..., 0]).max(), rel=1e-3)


def _bart_3d_case(tmp_path):
    def b(*a):
        subprocess.run([BART, *map(str, a)], check=True, capture_output=True)

    t = tmp_path
    b("phantom", "-3", "-k", "-s", 4, "-x", 24, t / "full")
    b("resize", "-c", 1, 20, 2, 16, t / "full", t / "full2")  # x 24, y 20, z 16: every axis distinct
    b("ecalib", "-m", 1, t / "full2", t / "kus_maps")
    b("poisson", "-Y", 20, "-Z", 16, "-y", 1.5, "-z", 1.5, "-C", 4, "-s", 1, t / "mask")
    b("fmac", t / "full2", t / "mask", t / "kus")
    b("fft", "-i", 7, t / "full2", t / "ci")
    b("fmac", "-C", "-s", 8, t / "ci", t / "kus_maps", t / "ref")
    return np.abs(read_cfl(t / "ref"))  # BART (x, y, z)


@needs_bart
def test_bart_3d_volume_batch_matches_pics(tmp_path):
    ref = _bart_3d_case(tmp_path)
    subprocess.run([BART, "pics", "-S", "-R", "W:6:0:0.005", "-i", "60", *(str(tmp_path / n) for n in
                    ("kus", "kus_maps", "pics"))], check=True, capture_output=True)
    p_pics = _psnr(read_cfl(tmp_path / "pics"), ref)
    # the volume layout: iFFT along x (BART dim 0), one 2-D (z, y) problem per x, wavelets along y and z
    assert main(["batch", str(tmp_path / "kus.cfl"), "--out", str(tmp_path / "o"), "--layout", "volume",
                 "--method", "bart-l1wavelet", "--param", "lam=0.005", "--param", "max_iter=60",
                 "--param", "randshift=False", "--workers", "1", "--format", "npy", "--no-progress"]) == 0
    vol = np.load(tmp_path / "o" / "kus.npy")
    assert vol.shape == (16, 20, 24)  # ours (nz, ny, nx) = BART (x, y, z) reversed
    p_ours = _psnr(vol.T, ref)
    assert p_ours > p_pics - 1, (p_ours, p_pics)
    assert _psnr(vol, ref.T) > 35
    # a BART (x, y, z, coils) array is a volume by default too, never a stack of "coil" slices
    from mri_csc.batch.tasks import slice_count

    assert slice_count(tmp_path / "kus.cfl")[:3] == (24, "cfl", "volume")
    with pytest.raises(ValueError, match="one 3-D volume"):
        slice_count(tmp_path / "kus.cfl", "slices")


@needs_bart
def test_batch_3d_volumes_with_frames_bart_and_ismrmrd(tmp_path):
    """3-D k-space with frames (BART time dim 10; ISMRMRD repetitions): batch = recon frame by frame."""
    import h5py

    import mri_csc

    def b(*a):
        subprocess.run([BART, *map(str, a)], check=True, capture_output=True)

    t = tmp_path
    b("phantom", "-3", "-k", "-s", 4, "-x", 24, t / "f")
    b("resize", "-c", 1, 20, 2, 16, t / "f", t / "full")
    b("ecalib", "-m", 1, t / "full", t / "k_maps")
    b("scale", 0.5, t / "full", t / "half")
    for i, src in enumerate(("full", "half")):
        b("poisson", "-Y", 20, "-Z", 16, "-y", 1.5, "-z", 1.5, "-C", 6, "-s", i + 1, t / f"p{i}")
        b("fmac", t / src, t / f"p{i}", t / f"k{i}")
    b("join", 10, t / "k0", t / "k1", t / "k")  # two frames on BART's time dimension
    d = read_kspace(t / "k.cfl")
    assert d["kspace"].shape == (2, 4, 16, 20, 24)
    ref = [np.asarray(mri_csc.reconstruct(d["kspace"][f], d["maps"][f], method="sense").image) for f in range(2)]
    assert main(["batch", str(t / "k.cfl"), "--out", str(t / "o"), "--method", "sense", "--workers", "1",
                 "--format", "npy", "--no-pbar"]) == 0
    vol = np.load(t / "o" / "k.npy")
    assert vol.shape == (2, 16, 20, 24)
    for f in range(2):  # one 2-D problem per readout position = the 3-D problem, to CG accuracy
        assert np.linalg.norm(vol[f] - ref[f]) < 0.02 * np.linalg.norm(ref[f])
    assert np.abs(vol[1]).max() == pytest.approx(0.5 * np.abs(vol[0]).max(), rel=0.05)
    # the same two volumes as ISMRMRD repetitions of a 3-D encoding
    write_kspace(t / "r.mrd", d["kspace"][0], mask=d["kspace"][0, 0] != 0)
    write_kspace(t / "r1.mrd", d["kspace"][1], mask=d["kspace"][1, 0] != 0)
    with h5py.File(t / "r1.mrd", "r") as g:
        more = g["dataset/data"][()]
    more["head"]["idx"]["repetition"] = 1
    with h5py.File(t / "r.mrd", "a") as g:
        ds = g["dataset/data"]
        n = ds.shape[0]
        ds.resize((n + len(more),))
        ds[n:] = more
    assert main(["batch", str(t / "r.mrd"), "--out", str(t / "m"), "--method", "sense", "--maps", str(t / "k_maps.cfl"),
                 "--workers", "1", "--format", "nii", "--no-pbar"]) == 0
    import nibabel as nib

    im = nib.load(t / "m" / "r_mag.nii.gz")
    assert im.shape == (24, 20, 16, 2)  # NIfTI (x, y, z, t)
    np.testing.assert_allclose(np.asarray(im.dataobj).T, np.abs(vol), rtol=1e-3, atol=1e-3 * np.abs(vol).max())


@needs_gen
def test_batch_reconstructs_ismrmrd_frames_and_counts_recon_width(tmp_path):
    from mri_csc.batch.tasks import slice_count

    assert slice_count(_gen(tmp_path / "o.h5", "-m", 32, "-c", 2, "-O", 2))[:3] == (1, "ismrmrd", "slices")
    r = _gen(tmp_path / "r.h5", "-m", 32, "-c", 2, "-r", 3, "-n", 0.0)
    assert main(["batch", str(r), "--out", str(tmp_path / "b"), "--method", "zero-filled", "--calib-width", "16",
                 "--workers", "1", "--format", "npy", "--no-pbar"]) == 0
    img = np.load(tmp_path / "b" / "r.npy")
    assert img.shape == (3, 32, 32)  # one frame per repetition, recon width
    ph = _phantom(r)
    assert min(_psnr(im, ph) for im in img) > 25


def test_batch_fastmri_crop_and_attributes(tmp_path):
    import h5py

    _fastmri_file(tmp_path / "f.h5", None)
    assert main(["batch", str(tmp_path / "f.h5"), "--out", str(tmp_path / "b"), "--method", "zero-filled",
                 "--calib-width", "20", "--workers", "1", "--no-pbar"]) == 0
    with h5py.File(tmp_path / "b" / "f.h5", "r") as f:
        assert f["reconstruction"].shape == (2, 32, 32)
        assert f.attrs["acquisition"] == "CORPD_FBK" and b"reconSpace" in f["ismrmrd_header"][()]


@needs_bart
def test_bart_3d_recon_same_regulariser_as_pics(tmp_path):
    import mri_csc

    ref = _bart_3d_case(tmp_path)
    d = read_kspace(tmp_path / "kus.cfl")
    assert d["kspace"].shape == (4, 16, 20, 24)
    res = mri_csc.reconstruct(d["kspace"], d["maps"], method="bart-l1wavelet", lam=0.005, max_iter=60,
                              randshift=False)
    # the same regulariser: BART pics on BART's own files, scaled as mri_csc scales the data
    subprocess.run([BART, "pics", "-w", repr(res.scale), "-n", "-R", "W:7:0:0.005", "-i", "60",
                    *(str(tmp_path / n) for n in ("kus", "kus_maps", "pics"))], check=True, capture_output=True)
    # mri_csc zeroes the image where every map is zero (outside ESPIRiT's crop); do the same to BART's
    support = (np.abs(read_cfl(tmp_path / "kus_maps")) ** 2).sum(-1) > 0
    pics = read_cfl(tmp_path / "pics") * support
    p_pics, p_ours = _psnr(pics, ref), _psnr(np.asarray(res.image).T, ref)
    assert p_pics > 38 and abs(p_ours - p_pics) < 0.2, (p_ours, p_pics)
    # and through the CLI, to a .cfl BART reads as (x, y, z)
    assert main(["recon", str(tmp_path / "kus.cfl"), "--out", str(tmp_path / "r.cfl"), "--method", "bart-l1wavelet",
                 "--param", "lam=0.005", "--param", "max_iter=60", "--param", "randshift=False", "--no-pbar"]) == 0
    assert read_cfl(tmp_path / "r").shape == (24, 20, 16)
    assert _psnr(read_cfl(tmp_path / "r"), ref) > p_pics - 1


@needs_bart
def test_espirit_bart_uses_bart_defaults(tmp_path):
    from mri_csc.sim import estimate_maps, make_dataset

    ds = make_dataset("shepp-logan", shape=(64, 64), n_coils=4, mask="poisson", accel=3, seed=0)
    maps = estimate_maps(ds.kspace, method="bart")
    # BART's own -c 0.8 keeps the maps over the whole object (SigPy's 0.95 cut holes into it)
    support = ds.support if ds.support is not None else np.abs(ds.image) > 0.05 * np.abs(ds.image).max()
    covered = (np.abs(maps) ** 2).sum(0)[support] > 0.5
    assert covered.mean() > 0.99
    with pytest.raises(ValueError, match="one set"):
        estimate_maps(ds.kspace, method="bart", maps=2)


# ----------------------------------------------------------------------------- dtypes

def test_real_kspace_refused_complex128_notice(tmp_path, caplog):
    np.save(tmp_path / "r.npy", np.ones((2, 8, 8), np.float32))
    with pytest.raises(FileFormatError, match="real-valued"):
        read_kspace(tmp_path / "r.npy")
    np.save(tmp_path / "c.npy", np.ones((2, 8, 8), np.complex128))
    with caplog.at_level("WARNING"):
        d = read_kspace(tmp_path / "c.npy")
    assert d["kspace"].dtype == np.complex64
    assert sum("complex128" in r.message for r in caplog.records) == 1


@needs_bart
def test_coil_compression_matches_bart_cc(tmp_path):
    import mri_csc
    from mri_csc.preprocess import compress_coils
    from mri_csc.sim import make_dataset

    subprocess.run([BART, "phantom", "-k", "-s", "8", "-x", "32", str(tmp_path / "k")], check=True)
    subprocess.run([BART, "cc", "-A", "-S", "-p", "3", str(tmp_path / "k"), str(tmp_path / "c")], check=True,
                   capture_output=True)
    k = read_kspace(tmp_path / "k.cfl")["kspace"]
    ours, _ = compress_coils(k, 3)
    theirs = read_kspace(tmp_path / "c.cfl")["kspace"]
    assert ours.shape == theirs.shape == (3, 32, 32)
    # virtual coils are defined up to a unitary mixing: the subspace (hence the RSS image) is what must agree
    np.testing.assert_allclose(_rss(ours), _rss(theirs), rtol=1e-3, atol=1e-4 * _rss(theirs).max())
    # through reconstruct: fewer coils, the maps compressed alike, nearly the same image
    ds = make_dataset("shepp-logan", shape=(64, 64), n_coils=8, mask="poisson", accel=3, seed=0)
    full = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="sense")
    cc = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="sense", compress_coils=6)
    from mri_csc.metrics import psnr

    p_full = psnr(ds.magnitude_ref, np.abs(full.image), mask=ds.support)
    p_cc = psnr(ds.magnitude_ref, np.abs(cc.image), mask=ds.support)
    assert p_cc > p_full - 1.5, (p_cc, p_full)
    with pytest.raises(ValueError, match="compress_coils"):
        mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="sense", compress_coils=9)


def test_fastmri_masks_follow_fastmri_conventions():
    from mri_csc.preprocess import fastmri_mask

    for kind in ("random", "equispaced"):
        m = fastmri_mask(368, 4, 0.08, kind, seed=3)
        n_low = round(368 * 0.08)
        pad = (368 - n_low + 1) // 2
        assert m[pad:pad + n_low].all() and m.sum() < 368
        frac = np.mean([fastmri_mask(368, 4, 0.08, kind, seed=s).mean() for s in range(20)])
        assert abs(frac - 0.25) < 0.02, (kind, frac)
    eq = np.flatnonzero(fastmri_mask(368, 4, 0.08, "equispaced", seed=3))
    gaps = np.diff(eq)
    # fastMRI's adjusted spacing, 4 * (29 - 368) / (29 * 4 - 368) = 5.38, so that with the centre 1/4 is sampled
    assert set(gaps[gaps > 1].tolist()) <= {5, 6}
    with pytest.raises(ValueError, match="center_fraction"):
        fastmri_mask(64, 8, 0.5, "random")


def _fastmri_file(path, rng):
    import h5py

    from mri_csc.sim import make_dataset

    ds = make_dataset("shepp-logan", shape=(64, 48), n_coils=4, mask="poisson", accel=1, seed=0, snr_db=40)
    hdr = ('<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><experimentalConditions>'
           "<H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions><encoding>"
           "<encodedSpace><matrixSize><x>64</x><y>48</y><z>1</z></matrixSize><fieldOfView_mm><x>200</x><y>150</y>"
           "<z>5</z></fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize>"
           "<fieldOfView_mm><x>100</x><y>100</y><z>5</z></fieldOfView_mm></reconSpace><encodingLimits/><trajectory>cartesian"
           "</trajectory></encoding></ismrmrdHeader>")
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.stack([ds.kspace, ds.kspace]))
        f.create_dataset("ismrmrd_header", data=hdr.encode())
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = "abc"
    return ds


def test_fastmri_crop_attrs_and_retrospective_mask(tmp_path):
    import h5py

    _fastmri_file(tmp_path / "f.h5", np.random.default_rng(0))
    out = tmp_path / "o.h5"
    assert main(["recon", str(tmp_path / "f.h5"), "--out", str(out), "--method", "sense", "--espirit", "sigpy",
                 "--accel", "4", "--mask-kind", "equispaced", "--center-fraction", "0.15", "--no-pbar"]) == 0
    with h5py.File(out, "r") as f:
        assert f["reconstruction"].shape == (2, 32, 32)  # fastMRI center_crop to (reconSpace x, y)
        assert f.attrs["acquisition"] == "CORPD_FBK" and f.attrs["patient_id"] == "abc"
        assert b"<reconSpace>" in f["ismrmrd_header"][()]
    rec = json.loads((tmp_path / "o_params.json").read_text())
    assert rec["crop"] == [32, 32] and abs(rec["retrospective_mask"]["sampled"] - 0.25) < 0.05
    # --crop overrides; an already undersampled file is not undersampled again
    assert main(["recon", str(tmp_path / "f.h5"), "--out", str(tmp_path / "p.npy"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--crop", "40", "20", "--no-pbar"]) == 0
    assert np.load(tmp_path / "p.npy").shape == (2, 40, 20)
    np.save(tmp_path / "m.npy", np.ones(48, np.float32))
    assert main(["recon", str(tmp_path / "f.h5"), "--out", str(tmp_path / "q.npy"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--mask", str(tmp_path / "m.npy"), "--accel", "4", "--no-pbar"]) == 2


def test_nifti_voxel_sizes_from_a_fastmri_header(tmp_path, caplog):
    """fastMRI keeps the recon field of view (here 100 mm along the readout x, the image's rows, and 80 mm along
    y, its columns, over 32 x 32, 5 mm slices) but no directions: the NIfTI, in (x = columns, y = rows, slices)
    order, gets those voxel sizes with orientation unknown (code 0), and says so; batch writes the same."""
    import h5py
    import nibabel as nib

    from mri_csc.batch import reconstruct_batch

    _fastmri_file(tmp_path / "f.h5", np.random.default_rng(0))
    with h5py.File(tmp_path / "f.h5", "a") as f:
        hdr = f["ismrmrd_header"][()].replace(b"<fieldOfView_mm><x>100</x><y>100</y>",
                                              b"<fieldOfView_mm><x>100</x><y>80</y>")
        del f["ismrmrd_header"]
        f.create_dataset("ismrmrd_header", data=hdr)
    with caplog.at_level("WARNING", logger="mri_csc.io.formats"):
        assert main(["recon", str(tmp_path / "f.h5"), "--out", str(tmp_path / "o.nii.gz"), "--method", "zero-filled",
                     "--espirit", "sigpy", "--no-pbar"]) == 0
    assert any("orientation unknown" in r.getMessage() for r in caplog.records)
    im = nib.load(tmp_path / "o_mag.nii.gz")
    assert im.shape == (32, 32, 2) and int(im.header["qform_code"]) == int(im.header["sform_code"]) == 0
    np.testing.assert_allclose(im.header.get_zooms(), (80 / 32, 100 / 32, 5.0), rtol=1e-6)
    report = reconstruct_batch(tmp_path / "f.h5", tmp_path / "b", method="zero-filled", output_format="nii",
                               n_workers=1)
    assert report.ok, report.summary()
    b = nib.load(report.outputs[str(tmp_path / "f.h5")][0])
    np.testing.assert_allclose(b.header.get_zooms()[:3], im.header.get_zooms(), rtol=1e-6)


@needs_gen
def test_nifti_geometry_from_ismrmrd(tmp_path):
    import nibabel as nib

    f = _gen(tmp_path / "g.h5", "-m", 64, "-c", 4, "-n", 0.0)  # recon FOV 300 x 300 mm, 6 mm slice
    assert main(["recon", str(f), "--out", str(tmp_path / "g.nii.gz"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--no-pbar"]) == 0
    im = nib.load(tmp_path / "g_mag.nii.gz")
    assert im.shape == (64, 64)
    np.testing.assert_allclose(im.header.get_zooms()[:2], (300 / 64, 300 / 64), rtol=1e-5)
    assert im.header.get_xyzt_units() == ("mm", "sec")
    # the generator sets no read/phase/slice directions: orientation unknown (code 0), not the scanner's axes
    assert int(im.header["qform_code"]) == int(im.header["sform_code"]) == 0
    # frames go to NIfTI t
    r = _gen(tmp_path / "r.h5", "-m", 32, "-c", 2, "-r", 3, "-n", 0.0)
    assert main(["recon", str(r), "--out", str(tmp_path / "r.nii"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--calib-width", "16", "--no-pbar"]) == 0
    assert nib.load(tmp_path / "r_mag.nii.gz").shape == (32, 32, 1, 3)


def test_reconstruct_dtype_rules(caplog):
    import mri_csc
    from mri_csc.sim import make_dataset

    ds = make_dataset("shepp-logan", shape=(32, 32), n_coils=2, mask="poisson", accel=2, seed=0)
    with pytest.raises(TypeError, match="real-valued"):
        mri_csc.reconstruct(ds.kspace.real.copy(), ds.maps, method="zero-filled")
    with caplog.at_level("WARNING"):
        r = mri_csc.reconstruct(ds.kspace.astype(np.complex128), ds.maps, method="zero-filled")
    assert r.image.dtype == np.complex64 and any("complex128" in x.message for x in caplog.records)
    r = mri_csc.reconstruct(ds.kspace.astype(np.complex128), ds.maps.astype(np.complex128), method="zero-filled",
                            precision="double")
    assert r.image.dtype == np.complex128


def test_recon_help_explains_every_csc_parameter(capsys):
    from mri_csc.recon import get_method

    with pytest.raises(SystemExit):
        main(["recon", "--help"])
    out = capsys.readouterr().out
    for name in get_method("csc").params:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert "see mri-csc methods" not in line, line
    for opt in ("--espirit-thresh", "--espirit-crop", "--espirit-kernel", "--calib-width", "--noise",
                "--compress-coils", "--accel", "--mask-kind", "--center-fraction", "--crop", "--voxel-size"):
        assert opt in out


@needs_bart
def test_batch_speaks_recon_vocabulary(tmp_path):
    from mri_csc.sim import make_dataset

    ds = make_dataset("shepp-logan", shape=(48, 40), n_coils=4, mask="poisson", accel=2, seed=0)
    np.save(tmp_path / "s.npy", np.stack([ds.kspace, ds.kspace]))
    out = tmp_path / "o"
    assert main(["batch", str(tmp_path / "s.npy"), "--out", str(out), "--method", "sense", "--maps", "espirit",
                 "--espirit", "bart", "--espirit-crop", "0.5", "--calib-width", "20", "--compress-coils", "3",
                 "--workers", "1", "--format", "cfl", "--no-pbar"]) == 0
    p = subprocess.run([BART, "show", "-m", str(out / "s")], capture_output=True, text=True, check=True)
    assert "40\t48\t2\t1" in p.stdout  # BART (x = readout, y, slices)
    img = read_cfl(out / "s").T
    assert _psnr(img[0], ds.magnitude_ref) > 20


@needs_bart
def test_maps_options_mean_the_same_in_recon_and_batch(tmp_path, capsys):
    """--maps FILE, --espirit IMPL and --no-espirit in both commands; the old batch spelling still works."""
    def b(*a):
        subprocess.run([BART, *map(str, a)], check=True, capture_output=True)

    b("phantom", "-k", "-s", 4, "-x", 48, tmp_path / "k")
    b("ecalib", "-m", 1, tmp_path / "k", tmp_path / "maps")  # not <base>_maps: only --maps FILE finds it
    k, maps = tmp_path / "k.cfl", str(tmp_path / "maps.cfl")
    common = ["--method", "sense", "--param", "max_iter=5"]
    assert main(["recon", str(k), "--out", str(tmp_path / "r.npy"), "--maps", maps, *common, "--no-pbar"]) == 0
    assert main(["batch", str(k), "--out", str(tmp_path / "b"), "--maps", maps, *common, "--workers", "1",
                 "--format", "npy", "--no-pbar"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "b" / "k.npy"), np.load(tmp_path / "r.npy"), rtol=1e-4,
                               atol=1e-4 * np.abs(np.load(tmp_path / "r.npy")).max())
    assert json.loads((tmp_path / "r_params.json").read_text())["maps"] == maps
    # --no-espirit: no maps in the input and none given is an error in both
    assert main(["recon", str(k), "--out", str(tmp_path / "n.npy"), "--no-espirit", *common]) == 2
    assert "holds no coil maps and --no-espirit" in capsys.readouterr().err
    assert main(["batch", str(k), "--out", str(tmp_path / "n"), "--no-espirit", *common, "--workers", "1",
                 "--no-pbar"]) == 1
    assert "holds no coil maps" in capsys.readouterr().out
    # one source of maps at a time
    assert main(["recon", str(k), "--out", str(tmp_path / "x.npy"), "--maps", maps, "--espirit", "bart"]) == 2
    assert "both give the coil maps" in capsys.readouterr().err
    assert main(["batch", str(k), "--out", str(tmp_path / "x"), "--espirit", "sigpy", "--no-espirit"]) == 2
    # the old batch spelling: --maps espirit is --espirit sigpy, with a notice
    assert main(["batch", str(k), "--out", str(tmp_path / "o"), "--maps", "espirit", *common, "--workers", "1",
                 "--format", "npy", "--no-pbar"]) == 0
    assert "'--maps espirit' is the old spelling" in capsys.readouterr().err
    # a maps file that fits no input is refused with both names
    np.save(tmp_path / "bad.npy", np.ones((4, 8, 8), np.complex64))
    assert main(["batch", str(k), "--out", str(tmp_path / "w"), "--maps", str(tmp_path / "bad.npy"), *common,
                 "--workers", "1", "--no-pbar"]) == 1
    assert "do not fit the k-space of" in capsys.readouterr().out


@needs_bart
def test_info_names_noncartesian_trajectories_images_and_map_sets(tmp_path, capsys):
    def b(*a):
        subprocess.run([BART, *map(str, a)], check=True, capture_output=True)

    def info(*a):
        assert main(["info", *map(str, a)]) == 0
        return capsys.readouterr().out

    t = tmp_path
    b("traj", "-r", "-x", 64, "-y", 32, t / "traj")
    b("phantom", "-k", "-s", 3, "-t", t / "traj", t / "rk")
    assert main(["recon", str(t / "rk.cfl"), "--out", str(t / "x.npy")]) == 2  # never as Cartesian k-space
    assert "non-Cartesian k-space (1, readout, spokes, coils)" in capsys.readouterr().err
    out = info(t / "rk.cfl")
    assert "non-Cartesian k-space (BART (1, readout, spokes, coils)): shape (3, 32, 64)" in out
    assert "3 coil(s) x 2048 samples" in out and "Cartesian k-space: shape" not in out and "--traj" in out
    out = info(t / "rk.cfl", "--traj", t / "traj.cfl")
    assert "samples (32, 64)" in out and "[-31.5, 31.5]" in out and "image matrix of about (64, 64)" in out
    assert "radial: 32 spokes of 64 samples" in out and "R = 3.14" in out
    assert "a trajectory (bart traj)" in info(t / "traj.cfl")
    # an .npz with kspace and a trajectory, as mri-csc simulate --trajectory writes
    assert main(["simulate", "--trajectory", "radial", "--shape", "32", "32", "--coils", "2", "--out",
                 str(t / "rad.npz")]) == 0
    capsys.readouterr()
    assert main(["recon", str(t / "rad.npz"), "--out", str(t / "x.npy")]) == 2
    assert f"--traj {t / 'rad.npz'}" in capsys.readouterr().err
    out = info(t / "rad.npz")
    assert "non-Cartesian k-space (trajectory from the file)" in out and "2 coil(s)" in out
    assert "image matrix of about (32, 32)" in out and "coil maps: shape (2, 32, 32)" in out
    # images: BART's own (a pics result), an .npy, and two map sets; a BART pattern is a mask
    b("phantom", "-k", "-s", 3, "-x", 32, t / "k")
    b("ecalib", "-m", 2, t / "k", t / "m2")
    b("fft", "-i", 3, t / "k", t / "ci")
    b("rss", 8, t / "ci", t / "rss")
    assert "image: shape (32, 32)" in info(t / "rss.cfl")
    assert "k-space: shape (3, 32, 32)" in info(t / "k.cfl")  # multi-coil k-space is still k-space
    np.save(t / "img.npy", read_cfl(t / "rss").T)
    assert "an image, not k-space" in info(t / "img.npy")
    assert "coil maps of 3 coils in 2 sets" in info(t / "m2.cfl")
    # coil images and one-set maps are not k-space either (what 'mri-csc recon' refuses, info says)
    b("ecalib", "-m", 1, t / "k", t / "m1")
    for name in ("ci", "m1"):
        out = info(t / f"{name}.cfl")
        assert "3 coils whose energy is not at the k-space centre" in out and "k-space: shape" not in out, name
    b("poisson", "-Y", 32, "-Z", 32, "-y", 2, "-z", 2, "-C", 8, t / "p")
    assert "a sampling pattern" in info(t / "p.cfl")


def test_espirit_refuses_kspace_without_calibration_region(tmp_path):
    from mri_csc.sim import estimate_maps, make_dataset
    from mri_csc.sim.coils import fully_sampled_centre

    ds = make_dataset("shepp-logan", shape=(64, 64), n_coils=4, mask="poisson", accel=3, seed=0)
    assert fully_sampled_centre(ds.kspace) >= 16
    k = ds.kspace.copy()
    k[:, 1::2] = 0  # every other line, no calibration block (ismrmrd_generate_cartesian_shepp_logan -a 2, no -w)
    assert fully_sampled_centre(k) == 1
    with pytest.raises(ValueError, match="centre is not fully sampled"):
        estimate_maps(k)


def test_config_espirit_options(tmp_path):
    from mri_csc.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[coils]\nmaps = "espirit"\nespirit = "bart"\nespirit_crop = 0.5\n[[methods]]\nname = "sense"\n')
    c = load_config(cfg)["coils"]
    assert c["espirit_crop"] == 0.5 and c["espirit_thresh"] == "auto" and c["espirit_kernel"] == 6
    with pytest.raises(ConfigError, match="espirit_crop"):
        load_config(cfg, ["coils.espirit_crop=1.5"])


@pytest.mark.skipif(not __import__("os").path.isfile("/usr/share/mricron/templates/ch2.nii.gz"),
                    reason="mricron-data not installed")
def test_nifti_phantom_geometry_carried_to_ismrmrd_and_nifti(tmp_path):
    import nibabel as nib

    assert main(["simulate", "--phantom", "brain", "--shape", "64", "64", "--coils", "4", "--accel", "1", "--out",
                 str(tmp_path / "b.mrd"), "--reference", str(tmp_path / "ref.nii.gz")]) == 0
    # ch2: 181 x 217 x 181 at 1 mm, fitted into 64 x 64 pixels of 217/64 mm: zoom makes 181 mm round(53.4) = 53
    # columns, each 181/53 mm wide (the affine says so since the second review), and 64 rows of 217/64 mm
    vox = (181 / 53, 217 / 64)
    assert main(["recon", str(tmp_path / "b.mrd"), "--out", str(tmp_path / "b.nii.gz"), "--method", "zero-filled",
                 "--espirit", "sigpy", "--no-pbar"]) == 0
    for name in ("b_mag.nii.gz", "ref_mag.nii.gz"):
        np.testing.assert_allclose(nib.load(tmp_path / name).header.get_zooms(), vox, rtol=1e-5)


@pytest.mark.parametrize("ext", ["mrd", "npz"])
def test_nifti_phantom_affine_carried_through_recon_and_batch(tmp_path, ext):
    """An oblique, permuted NIfTI phantom: the reconstruction's NIfTI puts the object where the input had it."""
    import nibabel as nib

    vol = np.zeros((60, 80, 20), np.float32)
    vol[5:55, 5:75] = 0.1
    vol[10:14, 50:54, 9:12] = 1.0  # a bright block at a known place
    th = 0.2
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.array([[0, 0, -2.5], [-1.2, 0, 0], [0, 1.5, 0]])  # axes permuted and flipped
    aff[:3, 3] = (40, 30, -20)
    nib.save(nib.Nifti1Image(vol, aff), tmp_path / "ph.nii.gz")
    true = aff @ np.r_[np.argwhere(vol > 0.5).mean(0), 1]
    can = nib.as_closest_canonical(nib.load(tmp_path / "ph.nii.gz"))
    k = int(round((np.linalg.inv(can.affine) @ true)[2]))  # the axial slice through the block
    f = tmp_path / f"d.{ext}"
    accel = "1" if ext == "mrd" else "2"  # an ISMRMRD acquisition is a whole readout
    assert main(["simulate", "--phantom", str(tmp_path / "ph.nii.gz"), "--slice", str(k), "--shape", "64", "48",
                 "--coils", "4", "--accel", accel, "--out", str(f), "--reference", str(tmp_path / "ref.nii.gz")]) == 0
    assert main(["recon", str(f), "--out", str(tmp_path / "r.nii.gz"), "--method", "sense", "--no-pbar"]) == 0
    assert main(["batch", str(f), "--out", str(tmp_path / "b"), "--method", "sense", "--format", "nii",
                 "--workers", "1", "--no-pbar"]) == 0
    ref = nib.load(tmp_path / "ref_mag.nii.gz")
    for name in ("r_mag.nii.gz", "b/d_mag.nii.gz"):
        im = nib.load(tmp_path / name)
        np.testing.assert_allclose(im.affine, ref.affine, atol=1e-4)
        assert im.header.get_sform(coded=True)[1] == 1  # scanner coordinates
        data = np.squeeze(im.get_fdata())
        where = im.affine @ np.r_[np.argwhere(data > 0.6 * data.max()).mean(0), 0, 1]
        assert np.linalg.norm(where[:3] - true[:3]) < 2.0, (name, where[:3], true[:3])  # within a voxel or so


def test_partial_fourier_and_partial_echo_are_placed_by_the_header(tmp_path):
    import h5py

    rng = np.random.default_rng(2)
    k = (rng.standard_normal((2, 48, 64)) + 1j * rng.standard_normal((2, 48, 64))).astype(np.complex64)
    write_kspace(tmp_path / "p.mrd", k)  # 48 lines e1 = 0..47, 64 samples
    with h5py.File(tmp_path / "p.mrd", "a") as f:
        # partial Fourier: a 64-line matrix whose k-space centre is e1 = 16, so lines land on ky = 16..63
        x = f["dataset/xml"][0].decode()
        x = x.replace("<y>48</y>", "<y>64</y>").replace("<center>24</center>", "<center>16</center>", 1)
        f["dataset/xml"][0] = x.encode()
        # partial echo: drop the first 16 readout samples; the echo centre is then sample 16
        acqs = f["dataset/data"][()]
        for a in acqs:
            a["data"] = a["data"].view(np.complex64).reshape(2, 64)[:, 16:].ravel().view(np.float32)
        acqs["head"]["number_of_samples"] = 48
        acqs["head"]["center_sample"] = 16
        del f["dataset/data"]
        f["dataset"].create_dataset("data", data=acqs, maxshape=(None,), chunks=True)
    d = read_kspace(tmp_path / "p.mrd")
    got = d["kspace"]
    assert got.shape == (2, 64, 64)
    np.testing.assert_array_equal(got[:, 16:, 16:], k[:, :, 16:])
    assert not got[:, :16].any() and not got[:, :, :16].any()


def test_hostile_ismrmrd_headers_are_refused_clearly(tmp_path, monkeypatch):
    """matrixSize z=100000 is refused by the budget before allocating; one acquisition with
    idx.slice=65535 does not make 65,536 slices; a non-UTF-8 header is named as such."""
    import shutil

    import h5py

    from mri_csc.io import read_kspace
    from mri_csc.io.ismrmrd import write_ismrmrd
    from mri_csc.io.limits import BudgetError

    rng = np.random.default_rng(0)
    ok = tmp_path / "ok.mrd"
    write_ismrmrd(ok, (rng.standard_normal((2, 16, 16)) + 1j * rng.standard_normal((2, 16, 16))).astype(np.complex64))

    def variant(name, old=None, new=None, slice_idx=None):
        p = tmp_path / name
        shutil.copy(ok, p)
        with h5py.File(p, "r+") as f:
            if old is not None:
                x = f["dataset/xml"][0]
                assert old in x
                del f["dataset/xml"]
                f["dataset"].create_dataset("xml", shape=(1,), dtype=h5py.string_dtype(),
                                            data=[x.replace(old, new, 1)])
            if slice_idx is not None:
                d = f["dataset/data"][()]
                d["head"]["idx"]["slice"][0] = slice_idx
                f["dataset/data"][...] = d
        return p

    monkeypatch.setenv("MRI_CSC_MAX_BYTES", "200M")
    with pytest.raises(BudgetError, match="over the memory budget of 200.0 MiB"):
        read_kspace(variant("z.mrd", b"<z>1</z>\n   </matrixSize>", b"<z>100000</z>\n   </matrixSize>"))
    with pytest.raises(ValueError, match="slice counter goes up to 65535 but slice"):
        read_kspace(variant("s.mrd", slice_idx=65535))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 0xe9 at offset"):
        read_kspace(variant("u.mrd", b"<encoding>", b"<!-- \xe9\xff --><encoding>"))
    assert read_kspace(ok)["kspace"].shape == (2, 16, 16)
