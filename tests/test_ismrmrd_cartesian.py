"""Cartesian ISMRMRD files with unusual but legal headers, written by the PyPI ``ismrmrd`` package: slices stored
out of position order, a readout centred off its middle, a recon matrix larger than the encoded one, a slice
missing a frame."""

import numpy as np
import pytest

from mri_csc.cli import main
from mri_csc.io import FileFormatError, describe, read_kspace
from mri_csc.metrics import psnr
from mri_csc.sim import make_dataset

ismrmrd = pytest.importorskip("ismrmrd")
nib = pytest.importorskip("nibabel")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def write_cartesian(path, lines, *, enc, rec=None, fov=(240.0, 240.0, 5.0), rec_fov=None, centre_e1=None):
    """One acquisition per line through ``ismrmrd.Dataset``.

    ``lines``: dicts with ``data`` ``(coils, samples)`` and any of the acquisition header's counters
    (``kspace_encode_step_1``, ``slice``, ``contrast``, ``repetition``) or fields (``center_sample``,
    ``position``, ``read_dir``, ``phase_dir``, ``slice_dir``; ``center_sample`` defaults to the middle sample).
    ``enc``/``rec``: ``(x, y)`` matrices (``rec`` defaults to ``enc``) over ``fov``/``rec_fov`` mm;
    ``centre_e1``: the encoding limits' ``kspace_encoding_step_1`` centre (default ``enc[1] // 2``).
    """
    import ismrmrd.xsd as x

    def space(m, f):
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=m[0], y=m[1], z=1),
                                   fieldOfView_mm=x.fieldOfViewMm(x=f[0], y=f[1], z=f[2]))

    rec = enc if rec is None else rec
    c1 = enc[1] // 2 if centre_e1 is None else centre_e1
    e = x.encodingType(encodedSpace=space(enc, fov), reconSpace=space(rec, rec_fov or fov),
                       trajectory=x.trajectoryType.CARTESIAN,
                       encodingLimits=x.encodingLimitsType(
                           kspace_encoding_step_1=x.limitType(minimum=0, maximum=enc[1] - 1, center=c1)))
    hdr = x.ismrmrdHeader(experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
                          encoding=[e])
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(x.ToXML(hdr))
    for line in lines:
        data = np.ascontiguousarray(line["data"], np.complex64)
        a = ismrmrd.Acquisition.from_array(data)
        a.center_sample = line.get("center_sample", data.shape[1] // 2)
        for name in ("kspace_encode_step_1", "slice", "contrast", "repetition"):
            setattr(a.idx, name, line.get(name, 0))
        for name in ("position", "read_dir", "phase_dir", "slice_dir"):
            if name in line:
                setattr(a, name, tuple(map(float, line[name])))
        ds.append_acquisition(a)
    ds.close()
    return path


def _case(n=64, coils=4):
    """A fully sampled noiseless Shepp-Logan: ``(image, maps, k-space (coils, n, n))``."""
    d = make_dataset("shepp-logan", shape=(n, n), n_coils=coils, mask="poisson", accel=1, snr_db=None, seed=0)
    return d.image, d.maps, d.kspace


def _oblique(theta=0.3):
    c, s = np.cos(theta), np.sin(theta)
    return (c, s, 0.0), (-s, c, 0.0), (0.0, 0.0, 1.0)


def _slices_file(path, k, offsets, centre=(10.0, -20.0, 30.0)):
    """Slice counter ``i`` holds ``(i + 1) * k`` centred at ``centre + offsets[i] * slice_dir`` (oblique), two
    repetitions (the second scaled by 1.5)."""
    rd, pd, sd = _oblique()
    lines = []
    for sl, off in enumerate(offsets):
        pos = np.asarray(centre) + off * np.asarray(sd)
        for rep in range(2):
            lines += [dict(data=k[:, y] * (sl + 1) * (1 + 0.5 * rep), kspace_encode_step_1=y, slice=sl,
                           repetition=rep, position=pos, read_dir=rd, phase_dir=pd, slice_dir=sd)
                      for y in range(k.shape[1])]
    return write_cartesian(path, lines, enc=(k.shape[2], k.shape[1]))


def _check_slices_by_position(nii, offsets, n, centre=(10.0, -20.0, 30.0)):
    """Each NIfTI slice's centre voxel lands on its counter's header position; the slices ascend along the
    normal. The counter of a NIfTI slice is read off its intensity (counter i is (i + 1) x the first's)."""
    im = nib.load(nii)
    d = np.asarray(im.dataobj)  # (x, y, slices, repetitions)
    ref = np.abs(d[:, :, :, 0]).sum((0, 1))
    counters = np.rint(ref / ref.min()).astype(int) - 1
    assert sorted(counters.tolist()) == list(range(len(offsets)))
    sd = np.array(_oblique()[2])
    for k, c in enumerate(counters):
        want = LPS_TO_RAS @ (np.asarray(centre) + offsets[c] * sd)
        np.testing.assert_allclose((im.affine @ [n // 2, n // 2, k, 1])[:3], want, atol=1e-3)
    assert np.all(np.diff([offsets[c] for c in counters]) > 0)
    np.testing.assert_allclose(d[:, :, :, 1], 1.5 * d[:, :, :, 0], rtol=1e-3, atol=1e-3 * np.abs(d).max())
    return counters


def test_nifti_stacks_slices_by_position_not_counter(tmp_path, caplog):
    """Slice counters 0/1/2 at 0/+10/-10 mm (oblique): recon and batch NIfTIs put every slice where its header
    says (ordered by position along the slice normal); the .npy keeps the counter order, as info says."""
    n = 32
    img, maps, k = _case(n)
    offsets = (0.0, 10.0, -10.0)
    f = _slices_file(tmp_path / "g.h5", k, offsets)
    np.save(tmp_path / "maps.npy", maps)
    common = ["--method", "zero-filled", "--maps", str(tmp_path / "maps.npy"), "--no-pbar"]
    with caplog.at_level("WARNING"):
        assert main(["recon", str(f), "--out", str(tmp_path / "r.nii.gz"), *common]) == 0
    assert not any("not evenly spaced" in r.getMessage() for r in caplog.records)
    assert _check_slices_by_position(tmp_path / "r_mag.nii.gz", offsets, n).tolist() == [2, 0, 1]
    assert main(["batch", str(f), "--out", str(tmp_path / "b"), "--format", "nii", "--workers", "1",
                 *common]) == 0
    _check_slices_by_position(tmp_path / "b" / "g_mag.nii.gz", offsets, n)
    assert main(["recon", str(f), "--out", str(tmp_path / "n.npy"), *common]) == 0
    out = np.abs(np.load(tmp_path / "n.npy"))  # (repetitions, slices, ny, nx) in counter order
    np.testing.assert_allclose(out[0].sum((1, 2)) / out[0, 0].sum(), [1, 2, 3], rtol=1e-3)
    assert psnr(np.abs(img), out[0, 0] / np.abs(out[0, 0]).max() * np.abs(img).max()) > 40
    assert "NIfTI outputs stack the slices by position: counters [2, 0, 1]" in describe(f)


def test_uneven_slices_say_which_are_misplaced(tmp_path, caplog):
    """Positions 0/10/30 mm cannot be one NIfTI slice step: the warning names the misplaced slices and by how much."""
    n = 16
    _, maps, k = _case(n, coils=2)
    f = _slices_file(tmp_path / "u.h5", k, (0.0, 10.0, 30.0))
    np.save(tmp_path / "maps.npy", maps)
    with caplog.at_level("WARNING", logger="mri_csc.io.formats"):
        assert main(["recon", str(f), "--out", str(tmp_path / "u.nii.gz"), "--method", "zero-filled",
                     "--maps", str(tmp_path / "maps.npy"), "--no-pbar"]) == 0
    msg = " ".join(r.getMessage() for r in caplog.records if "not evenly spaced" in r.getMessage())
    assert "misplaced" in msg and "slice counter(s) [1]" in msg and "5 mm" in msg, msg


def test_readout_placed_by_its_centre_sample(tmp_path):
    """A full-width readout whose echo centre is sample 24 of 64 (the k-space centre stored off the middle): placed
    so that sample 24 lands on nx/2; the 8 samples past the matrix are dropped, the first 8 columns unsampled in
    the mask; ESPIRiT then calibrates on the true centre."""
    n, c = 64, 24
    img, maps, k = _case(n)
    shift = n // 2 - c
    stored = np.roll(k, -shift, axis=2)  # the k-space centre at sample c; the last `shift` samples wrapped
    f = write_cartesian(tmp_path / "k.h5", [dict(data=stored[:, y], kspace_encode_step_1=y, center_sample=c)
                                            for y in range(n)], enc=(n, n))
    r = read_kspace(f)
    np.testing.assert_allclose(r["kspace"][:, :, shift:], k[:, :, shift:], rtol=1e-5, atol=1e-6)
    assert not r["kspace"][:, :, :shift].any()
    assert r["mask"][:, :shift].sum() == 0 and r["mask"][:, shift:].all()
    assert main(["recon", str(f), "--out", str(tmp_path / "k.npy"), "--method", "sense", "--no-pbar"]) == 0
    assert psnr(np.abs(img), np.abs(np.load(tmp_path / "k.npy"))) > 30


def test_pypi_default_centre_sample_zero_on_full_readouts_is_the_middle(tmp_path):
    """``ismrmrd.Acquisition`` leaves center_sample 0: on a full-width readout that means "not set", the middle."""
    n = 16
    _, _, k = _case(n, coils=2)
    f = write_cartesian(tmp_path / "z.h5", [dict(data=k[:, y], kspace_encode_step_1=y, center_sample=0)
                                            for y in range(n)], enc=(n, n))
    np.testing.assert_allclose(read_kspace(f)["kspace"], k, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("enc, rec", [((64, 48), (64, 64)), ((48, 48), (64, 64)), ((64, 64), (32, 32))])
def test_recon_matrix_of_other_voxels_keeps_the_encoded_voxels_and_the_recon_fov(tmp_path, caplog, enc, rec):
    """Encoded 48 lines (and/or 48 samples) over 240 mm, recon 64 x 64 over 240 mm: no interpolation along x or
    y, so the image is the encoded matrix and the NIfTI voxels are 240/48 = 5 mm where the encoded matrix is 48
    (the FOV is kept), said once. Encoded 64 x 64, recon 32 x 32 over the same 240 mm (7.5 mm voxels): the image
    covers the whole 240 mm at the encoded 3.75 mm voxels, said too; cropping to the recon *matrix* had kept the
    central 120 mm without a word (a user trial)."""
    n = 64
    img, maps, k = _case(n)
    ex, ey = enc
    kc = k[:, (n - ey) // 2:(n + ey) // 2, (n - ex) // 2:(n + ex) // 2]  # the central encoded lines/samples
    f = write_cartesian(tmp_path / "l.h5", [dict(data=kc[:, y], kspace_encode_step_1=y) for y in range(ey)],
                        enc=enc, rec=rec)
    with caplog.at_level("WARNING"):
        assert main(["recon", str(f), "--out", str(tmp_path / "l.nii.gz"), "--method", "sense", "--no-pbar"]) == 0
    assert any("does not interpolate" in r.getMessage() for r in caplog.records)
    im = nib.load(tmp_path / "l_mag.nii.gz")
    assert im.shape == (ex, ey)
    np.testing.assert_allclose(im.header.get_zooms(), (240 / ex, 240 / ey), rtol=1e-6)
    from mri_csc.backend import ifftc

    low = np.sqrt((np.abs(ifftc(kc, axes=(-2, -1))) ** 2).sum(0))  # the encoded k-space's coil-combined image
    assert psnr(low, np.asarray(im.dataobj).T) > 30


def test_slice_missing_a_frame_is_named_before_reading(tmp_path, monkeypatch, capsys):
    """2 slices x 2 contrasts, slice 1 without contrast 1: refused before any line is read, naming the slice and
    the contrast; info says it; the complete slice is reconstructed alone."""
    import mri_csc.io.ismrmrd as mrd

    n = 16
    _, maps, k = _case(n, coils=2)
    lines = [dict(data=k[:, y] * (1 + c), kspace_encode_step_1=y, slice=s, contrast=c, position=(0, 0, 6.0 * s))
             for s in range(2) for c in range(2) if (s, c) != (1, 1) for y in range(n)]
    f = write_cartesian(tmp_path / "m.h5", lines, enc=(n, n))
    info = describe(f)
    assert "slice 1 has no k-space lines for contrast=1" in info and "sampled 75.0%" not in info
    np.save(tmp_path / "maps.npy", maps)
    assert main(["recon", str(f), "--out", str(tmp_path / "s0.npy"), "--slice", "0", "--method", "zero-filled",
                 "--maps", str(tmp_path / "maps.npy"), "--no-pbar"]) == 0
    assert np.load(tmp_path / "s0.npy").shape == (2, n, n)

    def no_reading(*a, **kw):
        raise AssertionError("k-space lines read before the check")

    monkeypatch.setattr(mrd, "_read_lines", no_reading)
    with pytest.raises(FileFormatError, match=r"slice 1 has no k-space lines for contrast=1 .*--slice 0"):
        read_kspace(f)
    assert main(["recon", str(f), "--out", str(tmp_path / "m.npy"), "--method", "sense", "--no-pbar"]) != 0
    assert "slice 1 has no k-space lines for contrast=1" in capsys.readouterr().err


def test_partial_echo_with_readout_oversampling_marks_the_missing_samples(tmp_path):
    """A 2x oversampled readout whose first quarter is not acquired (partial echo): after the oversampling
    is removed the first quarter of the columns (and one more) are unsampled in the mask, not measured zeros;
    CSC then fills them in (a user trial's file: 28.5 dB before, 36.9 dB after, as without oversampling)."""
    from mri_csc.backend import fftc

    n = 64
    img, maps, _ = _case(n)
    coil_images = np.pad(maps * img, ((0, 0), (0, 0), (n // 2, n // 2)))  # the object in the middle half of x
    k2 = fftc(coil_images).astype(np.complex64)  # (coils, n, 2n): readout 2x oversampled
    first = n // 2  # the first quarter of the 2n samples is not acquired
    f = write_cartesian(tmp_path / "k.h5", [dict(data=k2[:, y, first:], kspace_encode_step_1=y, center_sample=n - first)
                                            for y in range(n)], enc=(2 * n, n), rec=(n, n),
                        fov=(480.0, 240.0, 5.0), rec_fov=(240.0, 240.0, 5.0))
    r = read_kspace(f)
    assert r["kspace"].shape == (4, n, n)
    assert r["mask"][:, : n // 4].sum() == 0 and r["mask"][:, n // 4 + 2:].all()
    assert main(["recon", str(f), "--out", str(tmp_path / "k.npy"), "--no-pbar"]) == 0
    assert psnr(np.abs(img), np.abs(np.load(tmp_path / "k.npy"))) > 30


def test_recon_matrix_within_a_voxel_of_the_recon_fov_is_kept(caplog):
    """fastMRI's knee header: encoded 640 x 368 over 280 x 161.42 mm, recon 320 x 320 over 140 x 140 mm. The
    encoded (0.4386 mm) and recon (0.4375 mm) voxels along y agree up to the rounding of the stated FOVs: the
    image is the recon matrix, 320 x 320, without a warning (round(140 / 0.4386) = 319 rows had been kept, a
    review). Encoded 64 over 240 mm, recon 32 over 240 mm still covers the recon FOV: 64 x 64."""
    from types import SimpleNamespace as NS

    from mri_csc.io.ismrmrd import _image_size

    def enc(efov, rfov):
        return NS(encodedSpace=NS(fieldOfView_mm=NS(x=efov[0], y=efov[1], z=efov[2])),
                  reconSpace=NS(fieldOfView_mm=NS(x=rfov[0], y=rfov[1], z=rfov[2])))

    with caplog.at_level("WARNING"):
        knee = _image_size("knee.h5", enc((280.0, 161.42, 4.5), (140.0, 140.0, 3.0)), (640, 368, 1), (320, 320, 1),
                           warn=True)
    assert knee == (320, (320, 320)) and not caplog.records
    assert _image_size("c.h5", enc((240.0,) * 3, (240.0,) * 3), (64, 64, 1), (32, 32, 1)) == (64, None)
