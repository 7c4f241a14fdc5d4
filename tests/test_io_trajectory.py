"""Trajectory files: BART's ``traj`` layout (written by the bart binary), .npz and .npy."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from mri_csc.io.cfl import read_cfl
from mri_csc.io.trajectory import bart_noncartesian_kspace, read_trajectory
from mri_csc.operators.nufft import NUFFTSense
from mri_csc.sim.trajectories import radial

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="the 'bart' binary is not on PATH")


@needs_bart
def test_bart_traj_file_reads_as_our_radial(tmp_path):
    subprocess.run(["bart", "traj", "-x", "32", "-y", "9", "-r", "-G", str(tmp_path / "t")], check=True)
    coord = read_trajectory(tmp_path / "t.cfl")
    assert coord.shape == (9, 32, 2)
    np.testing.assert_allclose(coord, radial(9, 32, 32, golden=True), atol=1e-4)
    assert read_trajectory(tmp_path / "t").shape == (9, 32, 2)  # the base name, as BART takes it
    assert read_trajectory(tmp_path / "t.cfl", ndim=3).shape == (9, 32, 3)


@needs_bart
def test_bart_nufft_kspace_layout(tmp_path, rng):
    """``bart nufft`` k-space (1, readout, spokes, coils) maps to ours (coils, spokes, readout)."""
    from mri_csc.io.cfl import write_cfl

    n = 16
    subprocess.run(["bart", "traj", "-x", str(n), "-y", "7", "-r", str(tmp_path / "t")], check=True)
    x = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))).astype(np.complex64)
    write_cfl(tmp_path / "x", x[:, :, None])
    subprocess.run(["bart", "nufft", str(tmp_path / "t"), str(tmp_path / "x"), str(tmp_path / "k")], check=True,
                   capture_output=True)
    k = bart_noncartesian_kspace(read_cfl(tmp_path / "k"))
    coord = read_trajectory(tmp_path / "t.cfl")
    ours = NUFFTSense(np.ones((1, n, n), np.complex64), coord)(x.T)  # BART (x, y) is our (y, x) reversed
    assert k.shape == ours.shape == (1, 7, n)
    assert np.linalg.norm(k - ours) < 0.1 * np.linalg.norm(ours)  # BART's NUFFT is accurate to a few %


def test_npz_and_npy(tmp_path):
    c = radial(5, 16, 16)
    np.savez(tmp_path / "a.npz", traj=c, other=np.zeros(3))
    np.testing.assert_array_equal(read_trajectory(tmp_path / "a.npz"), c)
    np.save(tmp_path / "b.npy", c.astype(np.float64))
    assert read_trajectory(tmp_path / "b.npy").dtype == np.float32
    np.savez(tmp_path / "c.npz", x=c, y=c)
    with pytest.raises(ValueError, match="no trajectory array"):
        read_trajectory(tmp_path / "c.npz")
    np.save(tmp_path / "d.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(\*samples, 2\|3\)"):
        read_trajectory(tmp_path / "d.npy")
    bad = c.copy()
    bad[0, 0, 0] = np.inf
    np.save(tmp_path / "e.npy", bad)
    with pytest.raises(ValueError, match="NaN or Inf"):
        read_trajectory(tmp_path / "e.npy")


@needs_bart
def test_cli_recon_with_a_bart_trajectory(tmp_path, capsys, monkeypatch):
    """``bart traj`` + ``bart phantom -k -s -t`` files → ``mri-csc recon --traj``: a sensible image."""
    from mri_csc.cli import main
    from mri_csc.sim.trajectories import bart_phantom_kspace

    n = 48
    t = tmp_path / "traj"
    subprocess.run(["bart", "traj", "-x", str(2 * n), "-y", "60", "-r", "-G", str(t)], check=True)
    subprocess.run(["bart", "scale", "0.5", str(t), str(t)], check=True)  # cycles per 48-pixel FOV
    subprocess.run(["bart", "phantom", "-k", "-s", "4", "-t", str(t), str(tmp_path / "k")], check=True)
    coord = read_trajectory(t.with_suffix(".cfl"))
    _, maps, image = bart_phantom_kspace(coord, (n, n), n_coils=4)
    np.save(tmp_path / "maps.npy", maps)
    out = tmp_path / "img.npy"
    assert main(["recon", str(tmp_path / "k.cfl"), "--traj", str(t) + ".cfl", "--maps", str(tmp_path / "maps.npy"),
                 "--method", "sense", "--out", str(out), "--no-pbar"]) == 0
    img = np.load(out)
    # BART's k-space in its own units (ours / sqrt(N^2)): the image comes out scaled by 1/N
    a = np.vdot(img, image).real / np.vdot(img, img).real
    assert a == pytest.approx(n, rel=0.1)
    # 0.39 here (unregularised, analytic data against the pixelated phantom); swapped axes give ~1
    assert np.linalg.norm(a * img - image) < 0.5 * np.linalg.norm(image)
    assert main(["recon", str(tmp_path / "k.cfl"), "--traj", str(t) + ".cfl", "--out", str(tmp_path / "x.npy")]) != 0
    assert "holds no coil maps" in capsys.readouterr().err
    # a per-axis phase_width on non-Cartesian data: refused by name before ESPIRiT
    import mri_csc.sim.trajectories

    def espirit(*args, **kwargs):
        raise AssertionError("ESPIRiT ran before the parameters were checked against the image")

    monkeypatch.setattr(mri_csc.sim.trajectories, "estimate_maps_noncartesian", espirit)
    assert main(["recon", str(tmp_path / "k.cfl"), "--traj", str(t) + ".cfl", "--espirit", "sigpy", "--image-shape",
                 str(n), str(n), "--param", "phase_width=[16,16]", "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "phase_width must be one width on non-Cartesian data" in err and "ESPIRiT" not in err
    assert not (tmp_path / "x.npy").exists()


def test_cli_simulate_and_recon_a_radial_case(tmp_path):
    from mri_csc.cli import main
    from mri_csc.metrics import psnr

    case, out, ref = tmp_path / "case.npz", tmp_path / "img.npy", tmp_path / "ref.npy"
    assert main(["simulate", "--trajectory", "golden-radial", "--shape", "48", "48", "--coils", "4", "--accel", "2",
                 "--out", str(case), "--reference", str(ref)]) == 0
    with np.load(case) as f:
        assert f["kspace"].shape == (4, 38, 96) and f["trajectory"].shape == (38, 96, 2)
    assert main(["recon", str(case), "--traj", str(case), "--maps", str(case), "--method", "sense",
                 "--out", str(out), "--no-pbar"]) == 0
    assert psnr(np.abs(np.load(ref)), np.abs(np.load(out))) > 22
    record = json.loads((tmp_path / "img_params.json").read_text())
    assert record["method"] == "sense" and record["output_shape"] == [48, 48] and "max_iter" in record["params"]
    # no maps option: the .npz's own maps, as for Cartesian input
    assert main(["recon", str(case), "--traj", str(case), "--method", "sense", "--out", str(tmp_path / "own.npy"),
                 "--no-pbar"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "own.npy"), np.load(out))
    # ESPIRiT on the regridded centre with the default calibration width (no --calib-width given)
    out2 = tmp_path / "img2.npy"
    assert main(["recon", str(case), "--traj", str(case), "--espirit", "sigpy", "--image-shape", "48", "48",
                 "--method", "sense", "--out", str(out2), "--no-pbar"]) == 0
    assert np.isfinite(np.load(out2)).all() and (tmp_path / "img2_params.json").exists()
