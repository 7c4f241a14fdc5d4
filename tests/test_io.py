"""File formats: round trips, BART interop, bad files, atomic no-clobber writes."""

import os
import shutil
import subprocess

import numpy as np
import pytest

from mri_csc.io import FileFormatError, OutputExistsError, describe, read_array, read_kspace, write_image, write_kspace

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="the 'bart' binary is not on PATH")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    shape = (4, 16, 20)
    k = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    maps = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    mask = (rng.random(shape[1:]) > 0.5).astype(np.float32)
    mask[:, 8:12] = 1
    return k * mask, maps, mask


@pytest.mark.parametrize("name", ["a.npy", "a.npz", "a.cfl", "a.h5"])
def test_kspace_round_trip(tmp_path, data, name):
    k, maps, mask = data
    written = write_kspace(tmp_path / name, k, maps, mask)
    assert all(p.exists() for p in written)
    d = read_kspace(tmp_path / name)
    np.testing.assert_array_equal(d["kspace"], k)
    np.testing.assert_array_equal(d["maps"], maps)
    np.testing.assert_array_equal(d["mask"], mask)
    assert not d["stacked"]
    assert "k-space: shape (4, 16, 20)" in describe(tmp_path / name)
    assert not [p for p in os.listdir(tmp_path) if ".part" in p]  # no temporary files left


def test_ismrmrd_round_trip(tmp_path, data):
    k, _, scattered = data
    # a pattern that leaves samples out of a readout cannot be an ISMRMRD file: its zeros would read as measured
    with pytest.raises(ValueError, match="leaves samples out of .* readouts .* whole readout"):
        write_kspace(tmp_path / "a.mrd", k, mask=scattered)
    assert not (tmp_path / "a.mrd").exists()
    mask = np.zeros_like(scattered)
    mask[::2] = 1  # whole readouts (the last axis)
    k = k * mask
    write_kspace(tmp_path / "a.mrd", k, mask=mask)
    d = read_kspace(tmp_path / "a.mrd")
    np.testing.assert_array_equal(d["kspace"], k)
    assert d["maps"] is None
    assert "ISMRMRD" in describe(tmp_path / "a.mrd")
    # the same file named .h5 is recognised as ISMRMRD, not fastMRI
    shutil.copy(tmp_path / "a.mrd", tmp_path / "b.h5")
    np.testing.assert_array_equal(read_kspace(tmp_path / "b.h5")["kspace"], k)


def test_fastmri_multislice_and_slice_range(tmp_path, data):
    import h5py

    k, _, _ = data
    stack = np.stack([k, 2 * k, 3 * k])
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("kspace", data=stack)
        f.create_dataset("mask", data=np.ones(20, np.float32))  # fastMRI 1D column mask
        f.create_dataset("ismrmrd_header", data=b"<ismrmrdHeader/>")
    d = read_kspace(tmp_path / "f.h5")
    assert d["stacked"] and d["kspace"].shape == (3, 4, 16, 20) and d["n_slices"] == 3
    d1 = read_kspace(tmp_path / "f.h5", slice=1)
    np.testing.assert_array_equal(d1["kspace"], 2 * k)
    assert d1["mask"].shape == (16, 20)
    with pytest.raises(ValueError, match=r"f\.h5: slice 3 out of range; the file has 3 slice"):
        read_kspace(tmp_path / "f.h5", slice=3)


def test_fastmri_single_coil_reads_as_one_coil_and_reconstructs_as_its_fft(tmp_path, data):
    """fastMRI single-coil files hold (slices, ky, kx): one coil, whose map is ones (its sensitivity is not
    identifiable), so SENSE on full data is the inverse FFT."""
    import h5py

    import mri_csc
    from mri_csc.backend import ifftc
    from mri_csc.sim import estimate_maps

    k1 = np.stack([data[0][0], 2 * data[0][0]])  # (slices, ky, kx)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("kspace", data=k1)
    with pytest.raises(ValueError, match=r"\(slices, ky, kx\) in a fastMRI single-coil file"):
        read_kspace(tmp_path / "s.h5")  # (coils, ky, kx) of one slice, or single-coil? without fastMRI's marks: refused
    with h5py.File(tmp_path / "s.h5", "a") as f:
        f.create_dataset("reconstruction_esc", data=np.abs(k1).astype(np.float32))  # fastMRI single-coil's mark
    d = read_kspace(tmp_path / "s.h5", slice=1)
    assert d["kspace"].shape == (1, 16, 20)
    np.testing.assert_array_equal(d["kspace"][0], k1[1])
    assert read_kspace(tmp_path / "s.h5")["kspace"].shape == (2, 1, 16, 20)
    maps = estimate_maps(d["kspace"])
    np.testing.assert_array_equal(maps, np.ones((1, 16, 20), np.complex64))
    img = mri_csc.reconstruct(d["kspace"], maps, method="sense", mask=np.ones((16, 20), np.float32)).image
    np.testing.assert_allclose(img, ifftc(k1[1], (-2, -1)), rtol=1e-3, atol=1e-3 * np.abs(img).max())
    from mri_csc.batch import serial_reconstruct

    both = serial_reconstruct(tmp_path / "s.h5", method="sense")[str(tmp_path / "s.h5")]  # one task per slice
    assert both.shape == (2, 16, 20)
    np.testing.assert_allclose(np.abs(both[1]), 2 * np.abs(both[0]), rtol=1e-3, atol=1e-3 * np.abs(both).max())


@pytest.mark.parametrize("sign", [1, -1])
def test_nifti_affine_places_slices_stored_in_either_order(sign, caplog):
    """ISMRMRD slices stored in descending position keep their places (the step between centres is signed); the
    voxel size is the recon FOV over the recon matrix, whatever the crop; uneven spacing is said."""
    from mri_csc.io.formats import nifti_affine

    dirs = {"read_dir": (1, 0, 0), "phase_dir": (0, 1, 0), "slice_dir": (0, 0, 1)}
    geo = {"fov_mm": (200.0, 180.0, 5.0), "matrix": (100, 90, 1),
           "slices": [{"position": (0.0, 0.0, sign * (10.0 * k - 10.0)), **dirs} for k in range(3)]}
    for shape in ((100, 90, 3), (50, 45, 3)):  # the recon matrix, and a centre crop of it
        aff = nifti_affine(geo, shape)
        z = [float((aff @ [shape[0] // 2, shape[1] // 2, k, 1])[2]) for k in range(3)]
        np.testing.assert_allclose(z, [sign * -10.0, 0.0, sign * 10.0])
        np.testing.assert_allclose(np.linalg.norm(aff[:3, :2], axis=0), (2.0, 2.0))
    geo["slices"][2]["position"] = (0.0, 0.0, sign * 25.0)
    with caplog.at_level("WARNING", logger="mri_csc.io.formats"):
        nifti_affine(geo, (100, 90, 3))
    assert any("not evenly spaced" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["i.npy", "i.npz", "i.cfl", "i.h5", "i.nii.gz"])
def test_image_writers(tmp_path, name):
    import h5py
    import nibabel as nib

    rng = np.random.default_rng(1)
    img = (rng.standard_normal((16, 20)) + 1j * rng.standard_normal((16, 20))).astype(np.complex64)
    outs = write_image(tmp_path / name, img)
    if name.endswith(".nii.gz"):
        assert [p.name for p in outs] == ["i_mag.nii.gz", "i_phase.nii.gz"]
        mag = nib.load(outs[0]).get_fdata().T
        ph = nib.load(outs[1]).get_fdata().T
        np.testing.assert_allclose(mag * np.exp(1j * ph), img, atol=1e-5)
    elif name.endswith(".h5"):
        with h5py.File(outs[0]) as f:
            np.testing.assert_allclose(f["reconstruction"][0], np.abs(img), rtol=1e-6)
            np.testing.assert_array_equal(f["reconstruction_complex"][0], img)
    elif name.endswith(".npz"):
        np.testing.assert_array_equal(np.load(outs[0])["image"], img)
    elif name.endswith(".cfl"):
        from mri_csc.io.cfl import read_cfl

        # BART x is the readout, our last axis: BART (nx, ny) is our image transposed
        np.testing.assert_array_equal(np.asarray(read_cfl(tmp_path / "i")), img.T)
    else:
        np.testing.assert_array_equal(read_array(outs[0]), img)
    with pytest.raises(OutputExistsError, match="exists"):
        write_image(tmp_path / name, img)
    write_image(tmp_path / name, 2 * img, overwrite=True)


def test_no_overwrite_leaves_file_untouched(tmp_path, data):
    k, maps, mask = data
    p = tmp_path / "a.npz"
    p.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"a\.npz: output exists"):
        write_kspace(p, k, maps, mask)
    assert p.read_bytes() == b"precious"


def test_interrupted_write_leaves_nothing(tmp_path, data, monkeypatch):
    k, maps, mask = data

    def boom(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        write_kspace(tmp_path / "a.npz", k, maps, mask)
    assert os.listdir(tmp_path) == []


def test_bad_files(tmp_path, data):
    k, maps, mask = data
    with pytest.raises(FileNotFoundError, match=r"nope\.npy: no such file"):
        read_kspace(tmp_path / "nope.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(FileFormatError, match=r"junk\.npy: not a valid \.npy"):
        read_kspace(tmp_path / "junk.npy")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n" + b"x" * 100)
    with pytest.raises(FileFormatError, match=r"junk\.h5: not a valid HDF5"):
        read_kspace(tmp_path / "junk.h5")
    # truncated .npy
    np.save(tmp_path / "t.npy", k)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match=r"t\.npy"):
        read_kspace(tmp_path / "t.npy")
    # truncated .cfl
    write_kspace(tmp_path / "c.cfl", k)
    raw = (tmp_path / "c.cfl").read_bytes()
    (tmp_path / "c.cfl").write_bytes(raw[:100])
    with pytest.raises(FileFormatError, match=r"c\.cfl"):
        read_kspace(tmp_path / "c.cfl")
    # shapes that disagree
    np.savez(tmp_path / "bad.npz", kspace=k, maps=maps[:2])
    with pytest.raises(ValueError, match=r"bad\.npz: coil maps of shape \(2, 16, 20\) disagree"):
        read_kspace(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="unknown file extension"):
        read_kspace(tmp_path / "x.txt")


@needs_bart
def test_cfl_read_by_bart(tmp_path, data):
    k, maps, mask = data
    write_kspace(tmp_path / "k.cfl", k, maps, mask)
    dims = subprocess.run([BART, "show", "-m", str(tmp_path / "k")], capture_output=True, text=True,
                          check=True).stdout
    assert "20\t16\t1\t4\t1" in dims  # BART (x = readout = our last axis, y, z, coils)
    # BART computes on our file; we read its result back
    subprocess.run([BART, "scale", "2", str(tmp_path / "k"), str(tmp_path / "k2")], check=True)
    np.testing.assert_allclose(read_kspace(tmp_path / "k2.cfl")["kspace"], 2 * k, rtol=1e-6)
    # BART's RSS over coils equals ours
    subprocess.run([BART, "rss", "8", str(tmp_path / "k"), str(tmp_path / "rss")], check=True)
    from mri_csc.io.cfl import read_cfl

    np.testing.assert_allclose(np.asarray(read_cfl(tmp_path / "rss")).reshape(20, 16).T,
                               np.sqrt((np.abs(k) ** 2).sum(0)), rtol=1e-5)


@needs_bart
def test_bart_phantom_read_by_us(tmp_path):
    subprocess.run([BART, "phantom", "-k", "-s", "4", "-x", "32", str(tmp_path / "ph")], check=True,
                   capture_output=True)
    d = read_kspace(tmp_path / "ph")
    assert d["kspace"].shape == (4, 32, 32)
    assert np.abs(d["kspace"]).max() > 0


def test_a_format_given_by_name_finds_the_maps_and_mask_beside_the_file(tmp_path):
    """fmt= for a name without the format's extension (BART's own naming: 'ks' for ks.cfl/ks.hdr): the maps
    and mask siblings are named and found by the same rule (it had ignored fmt= and refused the name)."""
    k = np.ones((2, 8, 8), np.complex64)
    maps, mask = np.ones_like(k) / np.sqrt(2), np.ones((8, 8), np.float32)
    for name, fmt in (("ks", "cfl"), ("ks.dat", "npy")):
        written = write_kspace(tmp_path / name, k, maps, mask, fmt=fmt)
        assert len(written) == (6 if fmt == "cfl" else 3)
        d = read_kspace(tmp_path / name, fmt=fmt)
        assert np.allclose(d["maps"], maps) and np.allclose(d["mask"], mask)


def test_a_cfl_name_with_a_dot_is_read_from_its_own_files(tmp_path):
    """'ksp_r0.5.cfl' is ksp_r0.5.cfl/.hdr, not ksp_r0.cfl/.hdr (Path.with_suffix took '.5' for the suffix
    and read the fully sampled file beside it without a word: a user trial)."""
    from mri_csc.io.cfl import read_cfl, write_cfl

    full, under = np.ones((4, 4), np.complex64), np.zeros((4, 4), np.complex64)
    under[0, 0] = 1
    write_cfl(tmp_path / "ksp_r0", full)
    write_cfl(tmp_path / "ksp_r0.5", under)
    assert {p.name for p in tmp_path.iterdir()} == {"ksp_r0.cfl", "ksp_r0.hdr", "ksp_r0.5.cfl", "ksp_r0.5.hdr"}
    for name in ("ksp_r0.5", "ksp_r0.5.cfl", "ksp_r0.5.hdr"):
        assert np.array_equal(read_cfl(tmp_path / name), under)


def test_an_output_in_a_folder_that_cannot_be_written_is_refused_before_work():
    """A read-only folder failed only after the reconstruction, naming a hidden temporary file (a user
    trial); check_writable now creates and removes a probe file first (permission bits alone do not tell
    for root). /sys is read-only in containers and for root alike."""
    import tempfile

    from mri_csc.io.atomic import check_writable

    try:
        with tempfile.NamedTemporaryFile(dir="/sys"):
            pytest.skip("/sys is writable here")
    except OSError:
        pass
    with pytest.raises(PermissionError, match=r"/sys/x.npy: cannot write to folder /sys"):
        check_writable("/sys/x.npy")


@needs_bart
def test_bart_written_files_with_a_dot_in_their_name_are_read_by_name(tmp_path):
    """The same against the tool that defines the format: 'bart ones' and 'bart zeros' write k_r0 and k_r0.5;
    read_kspace and info take k_r0.5 (all zeros, refused as such), never the ones beside it."""
    import subprocess

    subprocess.run([BART, "ones", "3", "2", "4", "4", str(tmp_path / "k_r0")], check=True, capture_output=True)
    subprocess.run([BART, "zeros", "3", "2", "4", "4", str(tmp_path / "k_r0.5")], check=True, capture_output=True)
    assert not read_kspace(tmp_path / "k_r0.5.cfl")["kspace"].any()
    assert read_kspace(tmp_path / "k_r0.cfl")["kspace"].all()
