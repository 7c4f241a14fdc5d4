"""The mri-csc command line, through real subprocesses on real files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
QUICK = ROOT / "recon_configs" / "quick_shepp_logan.toml"


def cli(*args, cwd=None, check_rc=None):
    p = subprocess.run([sys.executable, "-m", "mri_csc.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=120)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout, p.stderr)
    return p


def assert_user_error(p, *fragments):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("mri-csc: error: ")
    for f in fragments:
        assert f in lines[-1], (f, lines[-1])


def fast_methods():
    from mri_csc.recon import available_methods, get_method

    methods = ['{name="zero-filled"}', '{name="sense",params={max_iter=5}}',
               '{name="l1wavelet",params={max_iter=5}}', '{name="tv",label="SigPy TV",params={max_iter=5}}']
    if "csc" in available_methods():
        p = "{max_iter=3}" if "max_iter" in get_method("csc").params else "{}"
        methods.append(f'{{name="csc",params={p}}}')
    return "methods=[" + ",".join(methods) + "]"


def test_methods_and_help():
    p = cli("methods", check_rc=0)
    for name in ("zero-filled", "sense", "l1wavelet", "tv", "bart-l1wavelet", "bart-tv"):
        assert name in p.stdout
    assert "eval" in cli("--help", check_rc=0).stdout


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    cli("simulate", "--phantom", "shepp-logan", "--shape", 64, 64, "--coils", 4, "--out", d / "k.npz",
        "--reference", d / "ref.npy", check_rc=0)
    return d


@pytest.mark.parametrize("ext", [".npy", ".cfl", ".h5", ".mrd"])
def test_simulate_info_formats(tmp_path, ext):
    out = tmp_path / f"k{ext}"
    whole = ["--accel", 1] if ext == ".mrd" else []  # an ISMRMRD acquisition is a whole readout
    cli("simulate", "--shape", 32, 32, "--coils", 2, *whole, "--out", out, check_rc=0)
    p = cli("info", out, check_rc=0)
    assert "k-space: shape (2, 32, 32)" in p.stdout
    assert_user_error(cli("simulate", "--shape", 32, 32, "--coils", 2, "--out", out), "exists", "--force")


@pytest.mark.parametrize("out", ["x.npy", "x.cfl", "x.h5", "x.nii.gz"])
def test_recon_outputs(sim, tmp_path, out):
    p = cli("recon", sim / "k.npz", "--out", tmp_path / out, "--method", "sense", "--param", "max_iter=10",
            check_rc=0)
    if out.endswith(".nii.gz"):
        assert (tmp_path / "x_mag.nii.gz").exists() and (tmp_path / "x_phase.nii.gz").exists()
        # a built-in phantom has no geometry: the identity affine is said, not written silently
        assert "no image geometry came with the input" in p.stderr and "--voxel-size" in p.stderr
        p = cli("recon", sim / "k.npz", "--out", tmp_path / "v.nii.gz", "--method", "zero-filled",
                "--voxel-size", 2, 2, check_rc=0)
        assert "no image geometry" not in p.stderr
    else:
        assert "x" in os.listdir(tmp_path)[0]
    if out == "x.npy":
        img = np.load(tmp_path / out)
        ref = np.load(sim / "ref.npy")
        assert img.shape == (64, 64)
        assert np.corrcoef(np.abs(img).ravel(), np.abs(ref).ravel())[0, 1] > 0.9
    # refuses to overwrite without --force
    assert_user_error(cli("recon", sim / "k.npz", "--out", tmp_path / out, "--method", "zero-filled"), "exists")


def test_recon_params_file_repeats_the_run(sim, tmp_path):
    """The params file records resolved values as JSON (a per-axis phase_width as a list) and feeding them
    back through --param gives the same image."""
    cli("recon", sim / "k.npz", "--out", tmp_path / "a.npy", "--method", "csc", "--param", "max_iter=3", check_rc=0)
    params = json.loads((tmp_path / "a_params.json").read_text())["params"]
    assert isinstance(params["phase_width"], list) and len(params["phase_width"]) == 2
    args = []
    for k in ("lam", "mu", "gamma", "phase_width", "noise_std", "adapt_dictionary", "max_iter"):
        args += ["--param", f"{k}={json.dumps(params[k])}"]
    cli("recon", sim / "k.npz", "--out", tmp_path / "b.npy", "--method", "csc", *args, check_rc=0)
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_recon_refuses_a_per_axis_value_that_does_not_fit_the_image_before_espirit(sim, tmp_path):
    """A phase_width with the wrong number of axes is refused once the k-space is read: before ESPIRiT
    (whose note is printed as it starts) and with nothing written."""
    with np.load(sim / "k.npz") as f:
        np.save(tmp_path / "k.npy", f["kspace"])  # no maps: ESPIRiT would run
    p = cli("recon", tmp_path / "k.npy", "--out", tmp_path / "x.npy", "--param", "phase_width=[16,16,16]")
    assert_user_error(p, "method 'csc'", "phase_width must be one width or one per image axis (2)", "(64, 64)")
    assert "ESPIRiT" not in p.stderr and not (tmp_path / "x.npy").exists()
    p = cli("recon", tmp_path / "k.npy", "--out", tmp_path / "x.npy", "--method", "csc-tv", "--param", "phase_width=65")
    assert_user_error(p, "method 'csc-tv'", "phase_width must be at most the image's side on each axis (64, 64)")
    assert "ESPIRiT" not in p.stderr


def test_recon_refuses_bad_retrospective_masks_and_options_before_solving(sim, tmp_path):
    """--mask must be a 0/1 pattern (a density, a 0/255 image, a -1/1 array or an empty mask is named), --accel
    at least 1, --voxel-size finite, --out a named file; and an output never replaces an input, even with
    --force. All before any reconstruction, leaving the input as it was."""
    with np.load(sim / "k.npz") as f:
        k = f["kspace"]
        np.save(tmp_path / "maps.npy", f["maps"])
    np.save(tmp_path / "k.npy", k)
    ok = np.zeros((64, 64), np.float32)
    ok[:, ::2] = 1
    for name, mask, message in (("half", np.full((64, 64), 0.5, np.float32), "values strictly between 0 and 1"),
                                ("u8", (ok * 255).astype(np.uint8), "values up to 255 (a 0/255 image"),
                                ("sign", 2 * ok - 1, "negative values"),
                                ("empty", 0 * ok, "samples nothing")):
        np.save(tmp_path / f"{name}.npy", mask)
        p = cli("recon", tmp_path / "k.npy", "--mask", tmp_path / f"{name}.npy", "--out", tmp_path / "x.npy")
        assert_user_error(p, f"--mask {tmp_path / name}.npy", message)
    assert_user_error(cli("recon", tmp_path / "k.npy", "--accel", 0, "--out", tmp_path / "x.npy"),
                      "--accel must be a number >= 1; got 0")
    assert_user_error(cli("recon", tmp_path / "k.npy", "--voxel-size", "nan", 1, "--out", tmp_path / "x.nii.gz"),
                      "--voxel-size takes 1 to 3 finite positive sizes")
    assert_user_error(cli("recon", tmp_path / "k.npy", "--out", tmp_path / ".npy"), "give the file a name")
    p = cli("recon", tmp_path / "k.npy", "--out", tmp_path / "k.npy", "--force", "--method", "zero-filled")
    assert_user_error(p, "is the input file", "refused even with --force")
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "x_mag.nii.gz").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), k)
    cli("recon", tmp_path / "k.npy", "--mask", tmp_path / "u8.npy", "--out", tmp_path / "x.npy")  # still refused
    np.save(tmp_path / "ok.npy", ok)
    cli("recon", tmp_path / "k.npy", "--mask", tmp_path / "ok.npy", "--maps", tmp_path / "maps.npy", "--out",
        tmp_path / "x.npy", "--method", "zero-filled", check_rc=0)


def test_a_sampling_pattern_is_a_mask_not_kspace(sim, tmp_path):
    """A BART-style pattern (complex 0/1 floats in a .cfl) given as k-space is refused by name; as --mask it is
    read (its real part) and used."""
    from mri_csc.io import write_kspace

    with np.load(sim / "k.npz") as f:
        k, maps = f["kspace"], f["maps"]
    np.save(tmp_path / "maps.npy", maps)
    pattern = np.zeros((64, 64), np.complex64)
    pattern[:, ::2] = pattern[:, 24:40] = 1
    write_kspace(tmp_path / "p.cfl", np.broadcast_to(pattern, (1, 64, 64)))
    p = cli("recon", tmp_path / "p.cfl", "--out", tmp_path / "x.npy")
    assert_user_error(p, "holds only the values 0 and 1: a sampling pattern", "--mask FILE")
    np.save(tmp_path / "pat.npy", pattern)  # complex with zero imaginary part, as BART writes it
    np.save(tmp_path / "k.npy", k)
    cli("recon", tmp_path / "k.npy", "--mask", tmp_path / "pat.npy", "--maps", tmp_path / "maps.npy", "--out",
        tmp_path / "x.npy", "--method", "zero-filled", check_rc=0)
    params = json.loads((tmp_path / "x_params.json").read_text())
    assert params["retrospective_mask"]["sampled"] == pytest.approx(float(np.mean(pattern.real)))


def test_info_into_a_closed_pipe_is_quiet(sim):
    """``mri-csc info f | head -1``: the reader leaves before the output is written; no message, exit 141 (as a
    shell reports SIGPIPE)."""
    p = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", "info", str(sim / "k.npz")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # closed before the command writes: its first write meets a broken pipe
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(120) == 141 and "error" not in err.lower() and "Traceback" not in err, err


def test_recon_says_when_the_iteration_limit_stopped_it(sim, tmp_path):
    p = cli("recon", sim / "k.npz", "--out", tmp_path / "x.npy", "--param", "max_iter=3", check_rc=0)
    assert "csc: 1 slice(s) in" in p.stderr and ", 3 iterations" in p.stderr
    assert "1 of 1 slice(s) ran to max_iter=3 without meeting tol" in p.stderr
    p = cli("recon", sim / "k.npz", "--out", tmp_path / "y.npy", "--param", "max_iter=3", "--param", "tol=0",
            check_rc=0)
    assert ", 3 iterations" in p.stderr and "ran to max_iter" not in p.stderr  # no test asked for


def test_recon_espirit_from_ismrmrd(tmp_path):
    cli("simulate", "--shape", 48, 48, "--coils", 4, "--accel", 1, "--out", tmp_path / "k.mrd", check_rc=0)
    assert_user_error(cli("recon", tmp_path / "k.mrd", "--out", tmp_path / "x.npy", "--method", "zero-filled",
                          "--no-espirit"), "holds no coil maps", "--no-espirit")
    # without a maps option: ESPIRiT (SigPy), said in one line
    p = cli("recon", tmp_path / "k.mrd", "--out", tmp_path / "x.npy", "--method", "zero-filled", check_rc=0)
    assert "estimating them with ESPIRiT (sigpy)" in p.stderr
    assert np.load(tmp_path / "x.npy").shape == (48, 48)
    assert json.loads((tmp_path / "x_params.json").read_text())["maps"] == "espirit-sigpy"


def test_recon_user_errors(sim, tmp_path):
    out = tmp_path / "x.npy"
    assert_user_error(cli("recon", tmp_path / "missing.npz", "--out", out, "--method", "sense"),
                      "missing.npz", "no such file")
    (tmp_path / "junk.h5").write_bytes(b"garbage" * 10)
    assert_user_error(cli("recon", tmp_path / "junk.h5", "--out", out, "--method", "sense"), "junk.h5")
    assert_user_error(cli("recon", sim / "k.npz", "--out", out, "--method", "magic"), "method", "'magic'")
    assert_user_error(cli("recon", sim / "k.npz", "--out", out, "--method", "sense", "--param", "lamda=1"),
                      "unknown parameter 'lamda'")
    assert_user_error(cli("recon", sim / "k.npz", "--out", out, "--method", "sense", "--slice", "3"), "slice")
    np.save(tmp_path / "maps.npy", np.ones((3, 64, 64), np.complex64))
    assert_user_error(cli("recon", sim / "k.npz", "--out", out, "--method", "sense", "--maps", tmp_path / "maps.npy"),
                      "disagree")
    with np.load(sim / "k.npz") as z:
        bad = {k: z[k] for k in z.files}
    bad["kspace"][0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **bad)
    assert_user_error(cli("recon", tmp_path / "nan.npz", "--out", out, "--method", "sense"),
                      "nan.npz: kspace contains 1 NaN or Inf")  # the file is named
    nan_maps = np.load(sim / "k.npz")["maps"].copy()
    nan_maps[0, 0, 0] = np.nan
    np.save(tmp_path / "nanmaps.npy", nan_maps)
    assert_user_error(cli("recon", sim / "k.npz", "--out", out, "--method", "sense",
                          "--maps", tmp_path / "nanmaps.npy"), "nanmaps.npy: coil_maps contains 1 NaN")  # the maps file
    assert not out.exists()


def test_eval_quick_demo_writes_every_file(tmp_path):
    out = tmp_path / "run"
    p = cli("eval", QUICK, "--out", out, "--set", "data.shape=[64,64]", "--set", fast_methods(), check_rc=0)
    for f in ("config.toml", "metrics.json", "metrics.csv", "grid.png", "convergence.png", "versions.json",
              "report.html", "recon/reference.npy", "recon/zero-filled.npy", "recon/SigPy_TV.npy"):
        assert (out / f).is_file(), f
    assert "PSNR" in p.stdout and "SigPy TV" in p.stdout
    m = json.loads((out / "metrics.json").read_text())
    rows = {r["label"]: r for r in m["methods"]}
    assert rows["sense"]["psnr"] > rows["zero-filled"]["psnr"]
    v = json.loads((out / "versions.json").read_text())
    assert {"python", "numpy", "scipy", "sigpy", "mri_csc", "cupy", "device"} <= set(v)
    assert (out / "metrics.csv").read_text().count("\n") == len(rows) + 1
    assert not [x for x in os.listdir(tmp_path) if x.startswith(".")]  # no temporary folder left
    # the resolved config re-runs
    assert_user_error(cli("eval", out / "config.toml", "--out", out), "exists", "--force")
    cli("eval", out / "config.toml", "--out", out, "--force", "--no-pbar", check_rc=0)


def test_eval_broken_configs(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[methods]]\nname = "tv"\n[mask]\naccel = 4\nshape = 3\n')
    assert_user_error(cli("eval", bad), "bad.toml", "unknown key mask.shape")
    bad.write_text('[[methods]]\nname = "tv"\n[noise]\nsnr_db = "loud"\n')
    assert_user_error(cli("eval", bad), "bad.toml", "noise.snr_db", "expected a number")
    bad.write_text('[[methods]]\nname = "cscx"\n')
    assert_user_error(cli("eval", bad), "unknown method 'cscx'")
    assert_user_error(cli("eval", QUICK, "--set", "mask.accel"), "expected key=value")
    assert_user_error(cli("eval", tmp_path / "none.toml"), "none.toml")


def test_eval_interrupt_leaves_no_results(tmp_path):
    # a long CSC run, not SigPy: SigPy's first call JIT-compiles with numba, which prints and
    # swallows a KeyboardInterrupt that lands inside its compiler callbacks (seen under load)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", "eval", str(QUICK), "--out", str(out),
                             "--no-pbar", "--set", "data.shape=[96,96]", "--set",
                             'methods=[{name="csc",params={max_iter=100000,tol=0}}]'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until the runner has started its temporary folder
        if any(x.endswith(".partial") for x in os.listdir(tmp_path)):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a 100000-iteration run behind when the test fails
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_only_deliberate_runtime_errors_are_one_line(monkeypatch, capsys):
    """RecursionError, NotImplementedError and a RuntimeError raised inside a library are bugs
    (traceback, exit 1); a RuntimeError mri_csc raises on purpose (bart missing) is one line, exit 1."""
    import mri_csc.recon.bart as bart
    from mri_csc.cli import report_error

    def lib_error():
        import numpy as np

        np.frompyfunc(lambda x: (_ for _ in ()).throw(RuntimeError("inside a ufunc")), 1, 1)(np.ones(1))

    for make in (lambda: (_ for _ in ()).throw(RecursionError("maximum recursion depth exceeded")),
                 lambda: (_ for _ in ()).throw(NotImplementedError("todo")), lib_error):
        try:
            make()
        except BaseException as e:  # noqa: BLE001
            assert report_error(e) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "bug" in err, err
    monkeypatch.setattr(bart, "bart_binary", lambda: None)
    try:
        bart.bart_pics(None, "W", max_iter=1)
    except RuntimeError as e:
        assert report_error(e) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("mri-csc: error: ") and len(err.splitlines()) == 1


def test_the_maps_check_is_for_a_users_maps_not_for_espirit_maps_of_the_same_data(monkeypatch, tmp_path):
    """The CLI's own ESPIRiT maps are not judged against the data they came from (false alarms on narrow
    centres and 3-D planes); maps given with --maps are."""
    import mri_csc.recon.problem as problem_mod
    from mri_csc.cli import main
    from mri_csc.sim import make_dataset

    calls = []
    real = problem_mod.check_maps_match_kspace
    monkeypatch.setattr(problem_mod, "check_maps_match_kspace", lambda k, s: calls.append(1) or real(k, s))
    ds = make_dataset("shepp-logan", (48, 48), 4, mask="poisson", accel=3, seed=0)
    np.save(tmp_path / "k.npy", (ds.kspace * ds.mask).astype(np.complex64))
    np.save(tmp_path / "m.npy", ds.maps.astype(np.complex64))
    assert main(["recon", str(tmp_path / "k.npy"), "--method", "zero-filled", "--out", str(tmp_path / "a.npy"),
                 "--no-pbar"]) == 0
    assert calls == []
    assert main(["recon", str(tmp_path / "k.npy"), "--maps", str(tmp_path / "m.npy"), "--method", "zero-filled",
                 "--out", str(tmp_path / "b.npy"), "--no-pbar"]) == 0
    assert calls == [1]


def test_one_coil_is_named_as_a_map_of_ones_not_espirit(tmp_path):
    """With one coil the CLI said 'estimating them with ESPIRiT (sigpy)' and recorded maps 'espirit-sigpy',
    though the map is ones (a user trial)."""
    from mri_csc.sim import make_dataset

    d = make_dataset("shepp-logan", shape=(32, 32), n_coils=1, mask="poisson", accel=2, seed=0, snr_db=30)
    np.save(tmp_path / "k.npy", (d.kspace * d.mask).astype(np.complex64))
    p = cli("recon", tmp_path / "k.npy", "--method", "sense", "--out", tmp_path / "o.npy", "--no-pbar", check_rc=0)
    assert "has one coil: its coil map is ones" in p.stderr + p.stdout and "ESPIRiT" not in p.stderr + p.stdout
    assert json.loads((tmp_path / "o_params.json").read_text())["maps"] == "ones (one coil)"


def test_a_bart_pattern_on_y_z_is_named_with_its_bart_dimensions(tmp_path):
    """A 'bart poisson -Y -Z' pattern (BART dims 1 x ny x nz) given as --mask: the refusal says BART's
    dimensions and the transpose that fixes it (it showed the numpy shape reversed, a user trial)."""
    from mri_csc.io.cfl import write_cfl
    from mri_csc.sim import make_dataset

    d = make_dataset("shepp-logan", shape=(16, 16), n_coils=2, mask="poisson", accel=1, seed=0)
    np.save(tmp_path / "k.npy", d.kspace.astype(np.complex64))
    pat = np.ones((1, 16, 12), np.complex64)  # BART (x, y, z) = (1, 16, 12)
    write_cfl(tmp_path / "p", pat)
    p = cli("recon", tmp_path / "k.npy", "--mask", tmp_path / "p.cfl", "--out", tmp_path / "o.npy", check_rc=2)
    assert "BART dimensions (1, 16, 12)" in p.stderr and "bart transpose 0 2" in p.stderr


def test_one_coil_non_cartesian_is_a_map_of_ones_too(tmp_path):
    from mri_csc.sim import make_dataset
    from mri_csc.sim.trajectories import make_trajectory, simulate_noncartesian

    d = make_dataset("shepp-logan", shape=(32, 32), n_coils=1, mask="poisson", accel=2, seed=0, snr_db=None)
    c = make_trajectory("golden-radial", (32, 32), 2)
    np.savez(tmp_path / "r.npz", kspace=simulate_noncartesian(d.image, d.maps, c, seed=1).astype(np.complex64),
             trajectory=c)
    p = cli("recon", tmp_path / "r.npz", "--traj", tmp_path / "r.npz", "--image-shape", 32, 32, "--method", "sense",
            "--out", tmp_path / "o.npy", "--no-pbar", check_rc=0)
    assert "has one coil: its coil map is ones" in p.stderr + p.stdout and "ESPIRiT" not in p.stderr + p.stdout
    assert json.loads((tmp_path / "o_params.json").read_text())["maps"] == "ones (one coil)"


def test_non_cartesian_npz_image_shape_is_read_and_checked(tmp_path):
    """An .npz with 'image_shape' (as the batch reads it) needs no --image-shape for ESPIRiT; a malformed one is
    named before any work (the CLI had asked for --image-shape although the file held it, a review)."""
    from mri_csc.sim import make_dataset
    from mri_csc.sim.trajectories import make_trajectory, simulate_noncartesian

    d = make_dataset("shepp-logan", shape=(32, 32), n_coils=4, mask="poisson", accel=2, seed=0, snr_db=None)
    c = make_trajectory("golden-radial", (32, 32), 2)
    k = simulate_noncartesian(d.image, d.maps, c, seed=1).astype(np.complex64)
    np.savez(tmp_path / "r.npz", kspace=k, trajectory=c, image_shape=np.array([32, 32]))
    cli("recon", tmp_path / "r.npz", "--traj", tmp_path / "r.npz", "--method", "zero-filled",
        "--out", tmp_path / "o.npy", "--no-pbar", check_rc=0)
    assert np.load(tmp_path / "o.npy").shape == (32, 32)
    for bad in ([32], [32.5, 32], [0, 32], [32, 32, 32]):
        np.savez(tmp_path / "b.npz", kspace=k, trajectory=c, image_shape=np.array(bad))
        p = cli("recon", tmp_path / "b.npz", "--traj", tmp_path / "b.npz", "--method", "zero-filled",
                "--out", tmp_path / "b.npy", "--no-pbar", check_rc=2)
        assert "'image_shape' must be 2 positive whole numbers" in p.stderr
        assert not (tmp_path / "b.npy").exists()


def test_a_stack_with_one_mask_per_slice_is_named_as_such_by_recon(tmp_path):
    """recon reads a 4-D .npz as one volume (coils, nz, ny, nx), batch as a stack (slices, coils, ny, nx): a stack
    with one mask per slice was refused with a bare shape mismatch; the message now names the ways that read it."""
    from mri_csc.sim import make_dataset

    ds = [make_dataset("shepp-logan", shape=(24, 24), n_coils=2, accel=2, seed=i, snr_db=None) for i in range(3)]
    np.savez(tmp_path / "s.npz", kspace=np.stack([d.kspace for d in ds]).astype(np.complex64),
             maps=np.stack([d.maps for d in ds]).astype(np.complex64), mask=np.stack([d.mask for d in ds]))
    p = cli("recon", tmp_path / "s.npz", "--out", tmp_path / "o.npy", "--no-pbar")
    assert_user_error(p, "one mask per slice of a stack", "--slice N", "mri-csc batch")
    cli("recon", tmp_path / "s.npz", "--slice", 1, "--method", "zero-filled", "--out", tmp_path / "o.npy", "--no-pbar",
        check_rc=0)


def test_a_stack_of_slices_read_as_a_volume_is_refused_by_its_missing_kz_centre(tmp_path):
    """An 8-slice, 4-coil stack (slices, coils, ny, nx) without maps, given to recon, was read as one volume of
    8 coils x 4 partitions and written at 3.7-17 dB without a word (a user trial); its 'nz' axis holds coils,
    with no k-space centre, and is refused naming --slice and batch. A true 8-partition volume passes."""
    from mri_csc.io.formats import check_centred_kspace
    from mri_csc.sim import make_dataset

    ds = [make_dataset("brain", shape=(48, 48), n_coils=4, accel=3, seed=i, snr_db=30, slice_index=80 + 4 * i)
          for i in range(8)]
    np.save(tmp_path / "s.npy", np.stack([d.kspace * d.mask for d in ds]).astype(np.complex64))
    p = cli("recon", tmp_path / "s.npy", "--method", "zero-filled", "--out", tmp_path / "o.npy", "--no-pbar")
    assert_user_error(p, "no k-space centre along nz", "--slice N", "mri-csc batch")
    assert not (tmp_path / "o.npy").exists()
    vol = make_dataset("shepp-logan", shape=(8, 32, 32), n_coils=4, accel=3, seed=0, snr_db=30)
    check_centred_kspace(vol.kspace * vol.mask, "volume")  # no error


def test_stack_of_stars_npz_with_the_batch_image_shape_is_read_by_recon(tmp_path):
    """A stack of stars .npz as batch reads it ('image_shape' = each slice's (ny, nx)) was refused by recon,
    even with --image-shape or the file's own maps ('must be 3 positive whole numbers', a review): the
    2-entry shape is the slices' (ny, nx), and --image-shape comes before the file's member."""
    from mri_csc.sim import make_dataset
    from mri_csc.sim.trajectories import simulate_noncartesian, stack_of_stars

    d = make_dataset("shepp-logan", shape=(4, 16, 16), n_coils=3, accel=1, seed=0, snr_db=None)
    c = stack_of_stars(12, 32, (4, 16, 16))
    k = simulate_noncartesian(d.image, d.maps, c, seed=1).astype(np.complex64)
    np.savez(tmp_path / "s.npz", kspace=k, trajectory=c, maps=d.maps.astype(np.complex64),
             image_shape=np.array([16, 16]))
    cli("recon", tmp_path / "s.npz", "--traj", tmp_path / "s.npz", "--method", "zero-filled",
        "--out", tmp_path / "o.npy", "--no-pbar", check_rc=0)
    assert np.load(tmp_path / "o.npy").shape == (4, 16, 16)
    np.savez(tmp_path / "b.npz", kspace=k, trajectory=c, image_shape=np.array([16, 16, 16, 16]))
    cli("recon", tmp_path / "b.npz", "--traj", tmp_path / "b.npz", "--maps", tmp_path / "s.npz",
        "--image-shape", 4, 16, 16, "--method", "zero-filled", "--out", tmp_path / "p.npy", "--no-pbar", check_rc=0)
    # an nz other than the stack's partitions is named by the one reader recon and batch share
    np.savez(tmp_path / "z.npz", kspace=k, trajectory=c, image_shape=np.array([5, 16, 16]))
    p = cli("recon", tmp_path / "z.npz", "--traj", tmp_path / "z.npz", "--method", "zero-filled",
            "--out", tmp_path / "z.npy", "--no-pbar", check_rc=2)
    assert "does not hold the 4 partitions of the stack of stars" in p.stderr


def test_stack_with_receiver_phases_refused_and_few_partition_volumes_read():
    """The Fourier test along nz alone depended on the coils' phases: an 8-slice stack of 8 coils that each carry
    their own constant phase (as real receivers do) passed as a volume, while 5-partition Shepp-Logan volumes
    were refused (67-71 % central against 89 %; a review). The in-plane k-space centre is strongest at kz = 0
    in a volume, anywhere in a stack's coils."""
    from mri_csc.io import FileFormatError
    from mri_csc.io.formats import check_centred_kspace
    from mri_csc.sim import make_dataset

    ph = np.exp(2j * np.pi * np.random.default_rng(3).random(8))[:, None, None]
    ds = [make_dataset("brain", shape=(48, 48), n_coils=8, accel=3, seed=i, snr_db=30, slice_index=80 + 4 * i)
          for i in range(8)]
    with pytest.raises(FileFormatError, match="strongest at partition"):
        check_centred_kspace(np.stack([d.kspace * d.mask * ph for d in ds]).astype(np.complex64), "stack")
    for seed in range(3):
        vol = make_dataset("shepp-logan", shape=(5, 32, 32), n_coils=4, accel=1, seed=seed, snr_db=None)
        check_centred_kspace(vol.kspace, "volume")  # no error


def test_simulate_recon_and_eval_a_3d_nifti_phantom(tmp_path):
    """A 3-D NIfTI phantom through the CLI: simulate writes a volume whose reference NIfTI has cubic voxels and
    the slab's geometry, recon of it writes the same affine, and an eval config with a 3-D shape runs."""
    nib = pytest.importorskip("nibabel")
    vol = np.zeros((30, 40, 24), np.float32)
    vol[3:27, 3:37, 4:20] = 1.0 + np.arange(16, dtype=np.float32) / 16  # RAS, 2 x 2 x 3 mm
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = (-30, -40, -36)
    nib.save(nib.Nifti1Image(vol, aff), tmp_path / "ph.nii.gz")
    cli("simulate", "--phantom", tmp_path / "ph.nii.gz", "--shape", "10", "20", "16", "--slice", "12", "--coils",
        "3", "--accel", "2", "--out", tmp_path / "d.npz", "--reference", tmp_path / "ref.nii.gz", check_rc=0)
    ref = nib.load(tmp_path / "ref_mag.nii.gz")
    assert ref.shape == (16, 20, 10)  # NIfTI (x, y, z) of the (nz, ny, nx) volume
    np.testing.assert_allclose(ref.header.get_zooms(), (4, 4, 4))  # 80 mm of y in 20 rows: 4 mm, in z too
    # slice nz // 2 = 5 is the file's slice 12 (z = 0 mm); slices 0 and 9 lie outside the slab, empty
    assert (ref.affine @ [0, 0, 5, 1])[2] == pytest.approx(0.0)
    data = ref.get_fdata()
    assert not data[..., 0].any() and not data[..., 9].any() and data[..., 1:9].max(axis=(0, 1)).min() > 0.5
    cli("recon", tmp_path / "d.npz", "--out", tmp_path / "r.nii.gz", "--method", "zero-filled", "--no-pbar",
        check_rc=0)
    np.testing.assert_allclose(nib.load(tmp_path / "r_mag.nii.gz").affine, ref.affine, atol=1e-5)
    p = cli("recon", tmp_path / "d.npz", "--out", tmp_path / "c.npy", "--method", "csc", "--param", "max_iter=2",
            "--no-pbar", check_rc=0)  # 10 slices: the 11x11 filters do not fit the (nz, ny) planes, so one 3-D problem
    assert "as one 3-D problem each (volume=3d" in p.stderr
    assert json.loads((tmp_path / "c_params.json").read_text())["params"]["volume"] == "3d"
    assert "read as one 3-D volume (coils, nz, ny, nx)" in p.stderr  # an .npz says nothing of its axes: said
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "v"\n[data]\nphantom = "ph.nii.gz"\nshape = [10, 20, 16]\n[coils]\ncount = 3\n'
                   '[[methods]]\nname = "zero-filled"\n[[methods]]\nname = "sense"\n')
    cli("eval", cfg, "--out", tmp_path / "run", "--no-pbar", check_rc=0)
    rows = {r["label"]: r for r in json.loads((tmp_path / "run" / "metrics.json").read_text())["methods"]}
    ref = np.load(tmp_path / "run" / "recon" / "reference.npy")
    assert ref.shape == np.load(tmp_path / "run" / "recon" / "sense.npy").shape == (10, 20, 16)
    assert not np.abs(ref[0]).any() and all(np.isfinite(r["psnr"]) for r in rows.values())


def test_recon_per_readout_record_names_the_frame_of_each_readout_position(tmp_path):
    """A BART 3-D volume with two frames (dim 10) solved per readout position: <out>_params.json's
    per_readout holds every frame's planes, each naming its frame (x alone repeats from frame to frame)."""
    from mri_csc.io.cfl import write_cfl
    from mri_csc.sim import make_dataset

    ds = make_dataset("brain", shape=(12, 20, 8), n_coils=3, accel=2, calib=(8, 8), seed=2)
    k = np.stack([ds.kspace, 1.5 * ds.kspace])  # (frames, coils, nz, ny, nx)
    bart = np.moveaxis(k, 0, -1).transpose(3, 2, 1, 0, 4)  # (x, y, z, coils, frames)
    write_cfl(tmp_path / "k", bart.reshape(bart.shape[:4] + (1,) * 6 + bart.shape[4:]))
    np.save(tmp_path / "maps.npy", ds.maps)
    p = cli("recon", tmp_path / "k.cfl", "--maps", tmp_path / "maps.npy", "--out", tmp_path / "x.npy",
            "--param", "max_iter=1", "--no-pbar", check_rc=0)
    assert "2 frame(s) as 16 2-D problems, one per readout position" in p.stderr
    per = json.loads((tmp_path / "x_params.json").read_text())["per_readout"]
    assert [(r["frame"], r["x"]) for r in per] == [(f, x) for f in range(2) for x in range(8)]
    p = cli("recon", tmp_path / "k.cfl", "--maps", tmp_path / "maps.npy", "--out", tmp_path / "t.npy",
            "--method", "csc-tv", "--param", "max_iter=1", "--no-pbar", check_rc=0)  # csc-tv: one 3-D problem
    assert "2 frame(s) as one 3-D problem each, in" in p.stderr and "mask varies" not in p.stderr
