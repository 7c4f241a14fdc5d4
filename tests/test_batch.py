"""Batch reconstruction on a real Dask LocalCluster (2 worker processes, 1 thread each).

Small data (3 fastMRI-style files x 3 slices of 64², 4 coils) and fast methods,
so the whole file stays well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import h5py
import numpy as np
import pytest
from distributed import LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

import mri_csc
from mri_csc.backend import fftc
from mri_csc.batch import reconstruct_batch, serial_reconstruct, slice_seed_sequence
from mri_csc.batch.cli import main as batch_main
from mri_csc.batch.cli import parse_params
from mri_csc.recon import available_methods, register_method
from mri_csc.recon.baselines import zero_filled

# Workers cannot necessarily import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ----------------------------------------------------------------------------- data

def _maps(nc, ny, nx):
    y, x = np.mgrid[-1:1:ny * 1j, -1:1:nx * 1j]
    s = []
    for c in range(nc):
        a = 2 * np.pi * c / nc
        s.append(np.exp(-((x - 1.2 * np.cos(a)) ** 2 + (y - 1.2 * np.sin(a)) ** 2) / 1.5) * np.exp(1j * a))
    s = np.array(s)
    return (s / np.sqrt((abs(s) ** 2).sum(0))).astype(np.complex64)


def _stack(rng, ns, n=64, nc=4):
    maps = _maps(nc, n, n)
    cols = rng.random(n) < 0.4
    cols[n // 2 - 6:n // 2 + 6] = True
    mask = np.broadcast_to(cols[None, :], (n, n)).astype(np.float32)
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    ks = []
    for s in range(ns):
        img = ((x / 0.7) ** 2 + (y / (0.9 - 0.05 * s)) ** 2 < 1) * (1 + 0.3 * rng.random((n, n)))
        ks.append(fftc((maps * img * np.exp(0.5j * x)).astype(np.complex64)) * mask)
    return np.array(ks, np.complex64), np.broadcast_to(maps, (ns, *maps.shape)).copy(), cols.astype(np.float32)


def _write_h5(path, rng, ns=3, n=64):
    k, maps, cols = _stack(rng, ns, n)
    with h5py.File(path, "w") as f:
        f["kspace"] = k
        f["maps"] = maps
        f["mask"] = cols  # fastMRI column mask
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    for i in range(3):
        _write_h5(d / f"vol{i}.h5", rng)
    return d


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def reference(data):
    return serial_reconstruct(str(data / "*.h5"), method="sense")


def _read(path):
    with h5py.File(path, "r") as f:
        return f["reconstruction_complex"][()]


# ----------------------------------------------------------------------------- test methods on the workers

def _logged(problem, log_dir, tag):
    img, hist = zero_filled(problem)
    with open(Path(log_dir) / "calls.log", "a") as f:
        f.write(f"{tag} {os.getpid()}\n")
    return img, hist


def kill_once(problem, *, log_dir="", show_pbar=False):
    """Kills its own worker process the first time it runs (marker file), then behaves as zero-filled."""
    try:
        fd = os.open(Path(log_dir) / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    except FileExistsError:
        pass
    return _logged(problem, log_dir, "ok")


def fail_once(problem, *, log_dir="", show_pbar=False):
    """Raises the first time it runs (one slice of the batch fails), then behaves as zero-filled."""
    try:
        fd = os.open(Path(log_dir) / "failed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
        raise RuntimeError("injected failure")
    except FileExistsError:
        pass
    return _logged(problem, log_dir, "ok")


def fail_small(problem, *, log_dir="", show_pbar=False):
    """Always fails on images narrower than 64 (counts its attempts)."""
    if problem.image_shape[-1] < 64:
        with open(Path(log_dir) / "attempts.log", "a") as f:
            f.write("x\n")
        raise ValueError("image too small for this method")
    return zero_filled(problem)


def bad_input(problem, *, log_dir="", show_pbar=False):
    """Always refuses its input with an InputError (a deterministic user error; counts its attempts)."""
    from mri_csc.validate import InputError

    with open(Path(log_dir) / "attempts.log", "a") as f:
        f.write("x\n")
    raise InputError("this input is refused on purpose")


_TEST_METHODS = {"test-kill-once": kill_once, "test-fail-once": fail_once, "test-fail-small": fail_small,
                 "test-bad-input": bad_input}


def _register_test_methods():
    for name, func in _TEST_METHODS.items():
        register_method(name, func, {"log_dir": ""}, "test only", gpu=False)


class RegisterTestMethods(WorkerPlugin):
    name = "mri-csc-test-methods"

    def setup(self, worker):
        _register_test_methods()


@pytest.fixture(scope="module")
def test_client(cluster):
    from distributed import Client

    _register_test_methods()
    with Client(cluster) as client:
        client.register_plugin(RegisterTestMethods())
        yield client


# ----------------------------------------------------------------------------- tests

def test_matches_serial_loop_on_default_local_cluster(data, reference, tmp_path):
    report = reconstruct_batch(str(data / "*.h5"), tmp_path / "out", method="sense", n_workers=2)
    assert report.ok, report.summary()
    assert report.n_slices == 9 and report.n_computed == 9 and report.n_workers == 2
    assert report.dashboard is not None  # a local cluster serves (or at least names) a dashboard
    assert len(report.outputs) == 3
    for path, ref in reference.items():
        out = _read(report.outputs[path][0])
        assert out.shape == (3, 64, 64)
        np.testing.assert_array_equal(out, ref)
    assert not (tmp_path / "out" / ".partial").exists()


def test_scheduler_address_npy_output_and_worker_count_independence(data, reference, cluster, tmp_path):
    report = reconstruct_batch([data], tmp_path / "out", method="sense", scheduler=cluster.scheduler_address,
                               output_format="npy")
    assert report.ok
    for path, ref in reference.items():
        np.testing.assert_array_equal(np.load(report.outputs[path][0]), ref)


def test_killed_worker_loses_and_duplicates_no_slice(data, test_client, cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    report = reconstruct_batch(str(data / "*.h5"), tmp_path / "out", method="test-kill-once",
                               params={"log_dir": str(logs)}, scheduler=cluster.scheduler_address, retries=0)
    assert (logs / "killed").exists()
    assert report.ok, report.summary()
    assert report.n_computed == 9
    assert len((logs / "calls.log").read_text().splitlines()) == 9  # every slice computed exactly once
    ref = serial_reconstruct(str(data / "*.h5"), method="zero-filled")
    for path, img in ref.items():
        np.testing.assert_allclose(_read(report.outputs[path][0]), img, rtol=0, atol=1e-6)


def test_failed_slice_is_reported_and_resume_completes_only_the_rest(data, test_client, cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out"
    kw = dict(method="test-fail-once", params={"log_dir": str(logs)}, scheduler=cluster.scheduler_address)
    report = reconstruct_batch(str(data / "*.h5"), out, retries=0, **kw)
    assert not report.ok and len(report.failures) == 1
    fail = report.failures[0]
    assert fail.path.endswith(".h5") and 0 <= fail.slice < 3 and "injected failure" in fail.error
    assert len(report.outputs) == 2 and fail.path not in report.outputs  # the other volumes are done
    assert (out / ".partial" / "manifest.json").exists()
    assert len((logs / "calls.log").read_text().splitlines()) == 8

    with pytest.raises(ValueError, match="unfinished batch run"):
        reconstruct_batch(str(data / "*.h5"), out, retries=0, **kw)
    with pytest.raises(ValueError, match="settings differ"):
        reconstruct_batch(str(data / "*.h5"), out, retries=0, resume=True, seed=1, **kw)
    # the unfinished run as an older mri_csc wrote it: its slices may come from other resolved defaults
    mpath = out / ".partial" / "manifest.json"
    written = mpath.read_text()
    manifest = json.loads(written)
    assert manifest["code"].startswith(mri_csc.__version__ + "+")
    mpath.write_text(json.dumps({**manifest, "code": "0.0.9+0123456789abcdef"}))
    with pytest.raises(ValueError, match=r"code: '0.0.9\+0123456789abcdef' then, .* \(mri_csc itself changed"):
        reconstruct_batch(str(data / "*.h5"), out, retries=0, resume=True, **kw)
    assert len((logs / "calls.log").read_text().splitlines()) == 8  # nothing ran on the refusal
    mpath.write_text(written)

    again = reconstruct_batch(str(data / "*.h5"), out, retries=0, resume=True, **kw)
    assert again.ok, again.summary()
    assert again.n_computed == 1 and again.n_skipped == 8
    assert len((logs / "calls.log").read_text().splitlines()) == 9  # nothing finished was redone
    assert set(again.outputs) == {str(p) for p in sorted(data.glob("*.h5"))}
    assert not (out / ".partial").exists()


def test_failing_slices_retried_then_reported_others_proceed(data, test_client, cluster, tmp_path):
    """Files of different shapes are handled per file; the 32² file fails in this method after 1 retry."""
    d = tmp_path / "in"
    d.mkdir()
    for p in sorted(data.glob("*.h5"))[:2]:
        (d / p.name).symlink_to(p)
    _write_h5(d / "small.h5", np.random.default_rng(1), ns=2, n=32)
    logs = tmp_path / "logs"
    logs.mkdir()
    report = reconstruct_batch(d, tmp_path / "out", method="test-fail-small", params={"log_dir": str(logs)},
                               scheduler=cluster.scheduler_address, retries=1)
    assert sorted((f.path.endswith("small.h5"), f.slice) for f in report.failures) == [(True, 0), (True, 1)]
    assert all("too small" in f.error for f in report.failures)
    assert len((logs / "attempts.log").read_text().splitlines()) == 4  # 2 slices x (1 + 1 retry)
    assert len(report.outputs) == 2


def test_mixed_shapes_and_unreadable_file(data, cluster, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _write_h5(d / "a.h5", np.random.default_rng(2), ns=2, n=64)
    k, maps, _ = _stack(np.random.default_rng(3), 2, n=32)
    np.save(d / "b.npy", k)  # an .npy stack without maps: ESPIRiT per slice
    good = (d / "a.h5").read_bytes()
    (d / "truncated.h5").write_bytes(good[: len(good) // 3])
    (d / "junk.npy").write_bytes(b"not an array")
    report = reconstruct_batch(d, tmp_path / "out", method="zero-filled", scheduler=cluster.scheduler_address,
                               output_format="npy")
    bad = sorted(Path(e.path).name for e in report.file_errors)
    assert bad == ["junk.npy", "truncated.h5"]
    assert not report.failures
    shapes = {Path(p).name: np.load(o[0]).shape for p, o in report.outputs.items()}
    assert shapes == {"a.h5": (2, 64, 64), "b.npy": (2, 32, 32)}


def test_3d_volume_sliced_along_readout(cluster, tmp_path):
    rng = np.random.default_rng(4)
    nz, ny, nx = 16, 24, 8
    maps = np.stack([_maps(4, nz, ny)] * nx, axis=-1)  # (coils, nz, ny, nx)
    img = rng.standard_normal((nz, ny, nx)) + 1j * rng.standard_normal((nz, ny, nx))
    mask = (rng.random((nz, ny)) < 0.5)[..., None] * np.ones(nx)
    k = (fftc((maps * img).astype(np.complex64), axes=(-3, -2, -1)) * mask).astype(np.complex64)
    np.savez(tmp_path / "vol3d.npz", kspace=k, maps=maps)
    ref = serial_reconstruct(tmp_path / "vol3d.npz", method="zero-filled", layout="volume",
                             scratch=tmp_path / "scratch")
    report = reconstruct_batch(tmp_path / "vol3d.npz", tmp_path / "out", method="zero-filled", layout="volume",
                               scheduler=cluster.scheduler_address, output_format="npy")
    assert report.ok and report.n_slices == nx
    out = np.load(report.outputs[str(tmp_path / "vol3d.npz")][0])
    assert out.shape == (nz, ny, nx)
    np.testing.assert_allclose(out, list(ref.values())[0], atol=1e-6)
    # zero-filled with exact maps on the sampled lines: the adjoint of the hybrid problem
    direct = (maps.conj() * np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=(1, 2, 3)), axes=(1, 2, 3),
                                                         norm="ortho"), axes=(1, 2, 3))).sum(0)
    np.testing.assert_allclose(out, direct, atol=1e-4)


def test_bad_inputs_give_clear_errors(data, tmp_path):
    with pytest.raises(ValueError, match="matches no file"):
        reconstruct_batch(str(tmp_path / "nothing" / "*.h5"), tmp_path / "out", method="sense")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reconstruct_batch(tmp_path / "missing.h5", tmp_path / "out", method="sense")
    with pytest.raises(ValueError, match="method must be one of"):
        reconstruct_batch(data, tmp_path / "out", method="nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        reconstruct_batch(data, tmp_path / "out", method="sense", params={"lamda": 1})
    with pytest.raises(ValueError, match="output_format"):
        reconstruct_batch(data, tmp_path / "out", method="sense", output_format="png")
    with pytest.raises(ValueError, match="retries"):
        reconstruct_batch(data, tmp_path / "out", method="sense", retries=-1)
    with pytest.raises(ValueError, match="n_workers"):
        reconstruct_batch(data, tmp_path / "out", method="sense", n_workers=0)
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="could not connect to the Dask scheduler"):
        reconstruct_batch(data, tmp_path / "out", method="sense", scheduler="tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 20  # the 2 s timeout is honoured, not a default wait
    assert not (tmp_path / "out" / ".partial").exists()  # nothing left to resume after a failed connect
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="dask-cuda"):
            reconstruct_batch(data, tmp_path / "out", method="sense", device="gpu")


def test_existing_outputs_are_not_overwritten(data, cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "vol1.h5").write_bytes(b"user's file")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        reconstruct_batch(data, out, method="sense", scheduler=cluster.scheduler_address)
    assert (out / "vol1.h5").read_bytes() == b"user's file"


def test_seed_streams_are_spawned_and_order_free():
    ss = slice_seed_sequence(5, 3, 2)
    child = np.random.SeedSequence(5).spawn(4)[3].spawn(3)[2]
    np.testing.assert_array_equal(ss.generate_state(4), child.generate_state(4))
    assert not np.array_equal(slice_seed_sequence(5, 3, 1).generate_state(4), ss.generate_state(4))


def test_cli(data, cluster, tmp_path, capsys):
    assert parse_params(["lam=0.01", "max_iter=3", "name=abc"]) == {"lam": 0.01, "max_iter": 3, "name": "abc"}
    rc = batch_main(["batch", str(data / "vol0.h5"), "--out", str(tmp_path / "o"), "--method", "sense",
                     "--param", "max_iter=5", "--scheduler", cluster.scheduler_address, "--format", "nii",
                     "--no-progress"])
    assert rc == 0
    out = capsys.readouterr()
    printed = out.out
    assert "dashboard" in printed and "1 volume(s) written" in printed
    assert "ESPIRiT" not in out.err  # the file holds its maps
    with h5py.File(data / "vol0.h5") as f, h5py.File(tmp_path / "nomaps.h5", "w") as g:
        g["kspace"] = f["kspace"][()]
    assert batch_main(["batch", str(tmp_path / "nomaps.h5"), "--out", str(tmp_path / "o3"), "--method",
                       "zero-filled", "--scheduler", cluster.scheduler_address, "--no-progress"]) == 0
    assert "nomaps.h5 holds no coil maps: estimating them with ESPIRiT (sigpy) per slice" in capsys.readouterr().err
    # --voxel-size, as recon's: the NIfTI's voxel sizes (readout first); refused when not positive
    assert batch_main(["batch", str(data / "vol0.h5"), "--out", str(tmp_path / "o4"), "--method", "zero-filled",
                       "--scheduler", cluster.scheduler_address, "--format", "nii", "--voxel-size", "1.5", "2",
                       "--no-progress"]) == 0
    import nibabel as nib

    assert nib.load(tmp_path / "o4" / "vol0_mag.nii.gz").header.get_zooms()[:3] == (1.5, 2.0, 1.0)
    with pytest.raises(ValueError, match="voxel_size takes 1 to 3 finite positive sizes"):
        reconstruct_batch(data / "vol0.h5", tmp_path / "o5", method="zero-filled", voxel_size=[0, 1])
    assert (tmp_path / "o" / "vol0_mag.nii.gz").exists() and (tmp_path / "o" / "vol0_phase.nii.gz").exists()
    assert batch_main(["batch", str(tmp_path / "none*.h5"), "--out", str(tmp_path / "o2"), "--method", "sense"]) == 2
    assert "matches no file" in capsys.readouterr().err


@pytest.mark.skipif("csc" not in available_methods(), reason="the csc method is not registered yet")
def test_csc_matches_serial(data, cluster, tmp_path):
    from mri_csc.recon import get_method

    iters = {k: 2 for k in get_method("csc").params if k in ("max_iter", "n_iter", "outer_iter")}
    ref = serial_reconstruct(str(data / "vol0.h5"), method="csc", params=iters)
    report = reconstruct_batch(data / "vol0.h5", tmp_path / "out", method="csc", params=iters,
                               scheduler=cluster.scheduler_address)
    assert report.ok, report.summary()
    np.testing.assert_allclose(_read(report.outputs[str(data / "vol0.h5")][0]), ref[str(data / "vol0.h5")],
                               rtol=1e-5, atol=1e-6)


def test_user_error_in_a_slice_is_not_retried(data, test_client, cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    report = reconstruct_batch(str(data / "vol0.h5"), tmp_path / "out", method="test-bad-input",
                               params={"log_dir": str(logs)}, scheduler=cluster.scheduler_address, retries=2)
    assert len(report.failures) == 3 and all("refused on purpose" in f.error for f in report.failures)
    assert len((logs / "attempts.log").read_text().splitlines()) == 3  # once per slice, no retries


def test_a_parameter_that_does_not_fit_the_image_fails_each_slice_by_name(data, cluster, tmp_path, monkeypatch):
    """A per-axis phase_width with the wrong number of axes: each slice fails with the parameter's name (checked
    against the slice before its maps are estimated), and no output volume is written."""
    import mri_csc.sim

    def espirit(*args, **kwargs):
        raise AssertionError("ESPIRiT ran before the parameters were checked against the image")

    monkeypatch.setattr(mri_csc.sim, "estimate_maps", espirit)  # in this process: serial_reconstruct
    with pytest.raises(ValueError, match=r"phase_width must be one width or one per image axis \(2\)"):
        serial_reconstruct(str(data / "vol0.h5"), method="csc", params={"phase_width": [16, 16, 16]}, maps="espirit")
    report = reconstruct_batch(str(data / "vol0.h5"), tmp_path / "out", method="csc",
                               params={"phase_width": [16, 16, 16]}, scheduler=cluster.scheduler_address, retries=2)
    assert len(report.failures) == 3, report.summary()
    assert all("phase_width must be one width or one per image axis (2)" in f.error for f in report.failures)
    assert not report.outputs


def test_resume_skips_only_outputs_a_finished_run_with_these_settings_wrote(data, cluster, tmp_path):
    """resume=True counts an existing output as finished only when a batch with the same settings wrote it from
    the same input: a user's file of that name, another method's output, or an edited output are refused."""
    import shutil

    src = data / "vol0.h5"
    kw = dict(scheduler=cluster.scheduler_address, output_format="npy")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(src, out / "vol0.npy")  # a file of the user's, named as the output would be
    with pytest.raises(ValueError, match="exists and no finished batch run .* wrote it"):
        reconstruct_batch(src, out, method="zero-filled", resume=True, **kw)
    assert (out / "vol0.npy").read_bytes() == src.read_bytes()
    done = reconstruct_batch(src, tmp_path / "done", method="zero-filled", **kw)
    assert done.ok and done.n_computed == 3
    again = reconstruct_batch(src, tmp_path / "done", method="zero-filled", resume=True, **kw)
    assert again.ok and again.n_computed == 0 and again.n_skipped == 3  # the same settings: finished
    with pytest.raises(ValueError, match=r"made with other settings \(method, params\)"):
        reconstruct_batch(src, tmp_path / "done", method="sense", params={"max_iter": 2}, resume=True, **kw)
    np.save(tmp_path / "done" / "vol0.npy", np.zeros((3, 64, 64), np.complex64))  # edited after the run
    with pytest.raises(ValueError, match="changed after the batch wrote it"):
        reconstruct_batch(src, tmp_path / "done", method="zero-filled", resume=True, **kw)


def test_resume_refuses_an_input_that_changed(test_client, cluster, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(5)
    _write_h5(d / "a.h5", rng)
    _write_h5(d / "b.h5", rng)
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out"
    kw = dict(method="test-fail-once", params={"log_dir": str(logs)}, scheduler=cluster.scheduler_address)
    report = reconstruct_batch(d, out, retries=0, **kw)
    assert len(report.failures) == 1
    failed = Path(report.failures[0].path)
    manifest = json.loads((out / ".partial" / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {str(d / "a.h5"), str(d / "b.h5")}
    _write_h5(failed, np.random.default_rng(99))  # the input changes between the runs
    with pytest.raises(ValueError, match=f"input {failed} changed since the unfinished run"):
        reconstruct_batch(d, out, retries=0, resume=True, **kw)
    assert len((logs / "calls.log").read_text().splitlines()) == 5  # nothing recomputed on the refusal


def test_resume_refuses_another_input_writing_the_same_output(tmp_path):
    """Records are matched by output volume name: d2/a.npy cannot resume d1/a.npy's slices, and a
    volume without a record whose .partial/<name>/ holds slices is refused too."""
    from mri_csc.batch.runner import _check_inputs_unchanged, input_fingerprint
    from mri_csc.batch.tasks import VolumeSpec

    for sub, val in (("d1", 1), ("d2", 0)):
        (tmp_path / sub).mkdir()
        np.save(tmp_path / sub / "a.npy", np.full((2, 4, 8, 8), val, np.complex64))
    a1, a2 = str(tmp_path / "d1" / "a.npy"), str(tmp_path / "d2" / "a.npy")
    old = {"inputs": {a1: {"name": "a", **input_fingerprint(a1)}}}
    out = tmp_path / "out"
    _check_inputs_unchanged(old, [VolumeSpec(a1, "a", "npy", "slices", 2, 0, True)], out)  # same input: fine
    with pytest.raises(ValueError, match=f"from {a1} in the unfinished run.*{a2} now writes to it"):
        _check_inputs_unchanged(old, [VolumeSpec(a2, "a", "npy", "slices", 2, 0, True)], out)
    (out / ".partial" / "a").mkdir(parents=True)
    _check_inputs_unchanged({}, [VolumeSpec(a2, "a", "npy", "slices", 2, 0, True)], out)  # nothing to be stale
    np.save(out / ".partial" / "a" / "slice_00000.npy", np.zeros((8, 8), np.complex64))
    with pytest.raises(ValueError, match="holds finished slices of an input the unfinished run did not record"):
        _check_inputs_unchanged({}, [VolumeSpec(a2, "a", "npy", "slices", 2, 0, True)], out)


def test_only_permanent_os_errors_are_not_retried():
    import errno

    from mri_csc.batch.worker import deterministic
    from mri_csc.io import OutputExistsError
    from mri_csc.validate import InputError

    for e in (errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR):
        assert deterministic(OSError(e, os.strerror(e), "x.h5"))
    for e in (errno.ENOSPC, errno.EIO, errno.ESTALE, errno.EMFILE, errno.EAGAIN):
        assert not deterministic(OSError(e, os.strerror(e), "x.h5"))  # transient: retried
    assert not deterministic(OSError("no errno"))
    assert deterministic(InputError("bad")) and deterministic(OutputExistsError("exists"))
    assert not deterministic(TypeError("a bug")) and not deterministic(RuntimeError("worker died"))


def _stars(rng, nz=4, n=24, nc=3, spokes=24):
    from mri_csc.operators.nufft import NUFFTSense
    from mri_csc.sim import stack_of_stars

    maps = np.stack([_maps(nc, n, n)] * nz, axis=1)  # (coils, nz, ny, nx)
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    img = np.stack([((x / 0.7) ** 2 + (y / (0.8 - 0.05 * z)) ** 2 < 1) * (1 + 0.2 * rng.random((n, n)))
                    for z in range(nz)]).astype(np.complex64)
    coord = stack_of_stars(spokes, 2 * n, (nz, n, n), rotate=False)
    return NUFFTSense(maps, coord, toeplitz=False)(img), coord, maps, img


def test_noncartesian_stacks_one_task_per_slice(cluster, tmp_path):
    """A stack of stars (split by an FFT along k_z) and a stack of radial slices with a shared trajectory."""
    import mri_csc
    from mri_csc.sim import split_stack_of_stars

    rng = np.random.default_rng(7)
    k, coord, maps, img = _stars(rng)
    np.savez(tmp_path / "stars.npz", kspace=k, trajectory=coord, maps=maps)
    slices, c2 = split_stack_of_stars(k, coord)
    np.savez(tmp_path / "radial.npz", kspace=np.moveaxis(slices, 0, 1), trajectory=c2, maps=maps)
    report = reconstruct_batch([tmp_path / "stars.npz", tmp_path / "radial.npz"], tmp_path / "out",
                               method="zero-filled", scheduler=cluster.scheduler_address, output_format="npy")
    assert report.ok and report.n_slices == 8
    direct = np.stack([mri_csc.reconstruct(slices[z], maps[:, z], trajectory=c2, method="zero-filled").image
                       for z in range(4)])
    for name in ("stars", "radial"):
        out = np.load(report.outputs[str(tmp_path / f"{name}.npz")][0])
        assert out.shape == img.shape
        np.testing.assert_allclose(out, direct, atol=1e-5)
    # without maps ESPIRiT needs the image shape
    np.savez(tmp_path / "nomaps.npz", kspace=k, trajectory=coord)
    with pytest.raises(ValueError, match="image_shape"):
        serial_reconstruct(tmp_path / "nomaps.npz", method="zero-filled")
    np.savez(tmp_path / "shape.npz", kspace=k, trajectory=coord, image_shape=np.array([24, 24]))
    out = serial_reconstruct(tmp_path / "shape.npz", method="zero-filled")[str(tmp_path / "shape.npz")]
    assert out.shape == img.shape
    np.savez(tmp_path / "badshape.npz", kspace=k, trajectory=coord, image_shape=np.array([24, -24]))
    with pytest.raises(ValueError, match=r"'image_shape' must be 3 positive whole numbers .*\(or 2, its slices"):
        serial_reconstruct(tmp_path / "badshape.npz", method="zero-filled")


def test_noncartesian_file_is_read_once_per_worker_but_again_when_rewritten(tmp_path):
    """A worker reads a stack of stars once for all its slices (the split is cached), hands out copies, and
    reads the file again when it is rewritten in place."""
    from mri_csc.batch import noncartesian
    from mri_csc.batch.noncartesian import load_noncartesian_slice
    from mri_csc.sim import split_stack_of_stars

    k, coord, maps, _ = _stars(np.random.default_rng(9))
    path = tmp_path / "stars.npz"
    np.savez(path, kspace=k, trajectory=coord, maps=maps)
    slices, _ = split_stack_of_stars(k, coord)
    noncartesian.clear_volume_cache()
    got = [load_noncartesian_slice(path, 0)]
    kept = noncartesian._LAST[1]
    got += [load_noncartesian_slice(path, z) for z in range(1, 4)]
    assert noncartesian._LAST[1] is kept  # read once for the four slices
    for z, (kz, _, mz, shape) in enumerate(got):
        np.testing.assert_allclose(kz, slices[z], atol=1e-6)
        np.testing.assert_array_equal(mz, maps[:, z])
        assert shape == (24, 24) and kz.flags.writeable and mz.flags.writeable
    got[0][0][...] = 0  # the caller's copy: the cached volume is untouched
    np.testing.assert_allclose(load_noncartesian_slice(path, 0)[0], slices[0], atol=1e-6)
    np.savez(path, kspace=2 * k, trajectory=coord, maps=maps)  # same size, rewritten
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    np.testing.assert_allclose(load_noncartesian_slice(path, 1)[0], 2 * slices[1], atol=1e-5)
    serial_reconstruct(path, method="zero-filled")
    assert noncartesian._LAST == [None, None]  # a serial batch does not keep the volume afterwards


def test_noncartesian_stack_layouts_are_checked(tmp_path):
    from mri_csc.batch import discover

    rng = np.random.default_rng(8)
    k, coord, maps, _ = _stars(rng)
    np.savez(tmp_path / "bad.npz", kspace=k[:, :3], trajectory=coord)
    from mri_csc.sim import stack_of_stars

    np.savez(tmp_path / "rotated.npz", kspace=k, trajectory=stack_of_stars(24, 48, (4, 24, 24)), maps=maps)
    volumes, errors = discover([tmp_path / "bad.npz"])
    assert not volumes and "do not form (coils, [nz,] *samples)" in errors[0].error
    with pytest.raises(ValueError, match="in-plane coordinates differ"):
        serial_reconstruct(tmp_path / "rotated.npz", method="zero-filled")


def test_manifest_takes_a_per_axis_parameter_as_one_setting():
    """phase_width given as a tuple (Python) or a list (--param, JSON) is the same setting on resume."""
    from mri_csc.batch.runner import _manifest

    a, b = (_manifest("csc", {"phase_width": w, "lam": "auto"}, "espirit", 0, "npy", "auto", 24)
            for w in ((32, 21), [32, 21]))
    assert a == b and a["params"]["phase_width"] == "[32, 21]"
    c = _manifest("csc", {"phase_width": (32, 24), "lam": "auto"}, "espirit", 0, "npy", "auto", 24)
    assert c != a


@pytest.mark.parametrize("suffix", ["npy", "npz"])
def test_a_volume_is_not_read_as_a_stack_of_slices_silently(tmp_path, suffix, capsys):
    """A volume (coils, nz, ny, nx) in an .npy/.npz, which layout 'auto' reads as (slices, coils, ny, nx), had
    given 4 wrong images of 16 "coils" without a word (a review); its coil axis has a k-space centre, so it is
    refused naming --layout volume. The user's own layout is taken; a real stack of slices passes."""
    from mri_csc.batch.tasks import slice_count
    from mri_csc.sim import make_dataset

    vol = make_dataset("shepp-logan", shape=(16, 32, 32), n_coils=4, accel=3, seed=0, snr_db=30)
    rng = np.random.default_rng(3)  # receivers with their own phases and gains, as real ones have
    coil = (np.exp(2j * np.pi * rng.random(8)) * rng.uniform(0.1, 1.0, 8))[:, None, None]
    stack = np.stack([make_dataset("brain", shape=(32, 32), n_coils=8, accel=3, seed=i, snr_db=30,
                                   slice_index=80 + 4 * i).kspace * coil for i in range(3)])
    for name, k in (("vol", vol.kspace * vol.mask), ("stack", stack)):
        path = tmp_path / f"{name}.{suffix}"
        np.save(path, k.astype(np.complex64)) if suffix == "npy" else np.savez(path, kspace=k.astype(np.complex64))
    with pytest.raises(ValueError, match=r"looks like one 3-D volume \(coils, nz, ny, nx\); use layout 'volume'"):
        slice_count(tmp_path / f"vol.{suffix}")
    assert slice_count(tmp_path / f"vol.{suffix}", "volume")[:3] == (32, suffix, "volume")
    assert slice_count(tmp_path / f"vol.{suffix}", "slices")[:3] == (4, suffix, "slices")
    assert slice_count(tmp_path / f"stack.{suffix}")[:3] == (3, suffix, "slices")
    # how the stack is read is said, with the flag for the other reading (not under a layout the user gave)
    from argparse import Namespace

    from mri_csc.batch.cli import _note_layout

    _note_layout(Namespace(layout="auto", inputs=[str(tmp_path / f"stack.{suffix}")]))
    _note_layout(Namespace(layout="slices", inputs=[str(tmp_path / f"stack.{suffix}")]))
    err = capsys.readouterr().err
    assert err.count("read as a stack (slices, coils, ny, nx) of 3 slice(s) of 8 coils") == 1
    assert "needs --layout volume" in err


def test_stack_of_stars_image_shape_as_recon_reads_it(tmp_path):
    """A stack of stars whose 'image_shape' is the volume's (nz, ny, nx) -- the shape recon reads -- was refused
    by batch as 'must be 2 positive whole numbers for a 2-D trajectory' (the trajectory is 3-D; a review): its
    slices are (ny, nx); an nz other than the partitions' is named."""
    from mri_csc.batch.noncartesian import clear_volume_cache, load_noncartesian_slice

    k, coord, _, img = _stars(np.random.default_rng(0))
    for shape in ([24, 24], [4, 24, 24]):
        clear_volume_cache()
        np.savez(tmp_path / "s.npz", kspace=k, trajectory=coord, image_shape=np.array(shape))
        assert load_noncartesian_slice(tmp_path / "s.npz", 1)[3] == (24, 24)
    clear_volume_cache()
    np.savez(tmp_path / "b.npz", kspace=k, trajectory=coord, image_shape=np.array([5, 24, 24]))
    with pytest.raises(ValueError, match=r"does not hold the 4 partitions"):
        load_noncartesian_slice(tmp_path / "b.npz", 0)
