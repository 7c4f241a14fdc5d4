"""Runs own their outputs: locks, unique file names, commit-together, no symlink clobbering, litter swept."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mri_csc.config import load_config
from mri_csc.evaluate import _file_names, run_eval
from mri_csc.io import OutputExistsError, write_image
from mri_csc.io.atomic import atomic_paths, commit_files, run_lock, sweep_stale

ROOT = Path(__file__).parents[1]


def _cfg(tmp_path, name="t", methods='[[methods]]\nname = "zero-filled"\n'):
    p = tmp_path / "c.toml"
    p.write_text(f'name = "{name}"\n[data]\nshape = [32, 32]\n[coils]\ncount = 2\n{methods}')
    return load_config(p)


def test_labels_get_unique_names_that_never_shadow_the_reference():
    names = _file_names(["reference", "mask", "A B", "A_B", "a_b", "zero-filled"])
    assert names[:2] == ["reference_2", "mask_2"]
    assert len({n.lower() for n in names}) == len(names)
    assert "reference" not in names and "mask" not in names


def test_eval_label_reference_keeps_the_ground_truth(tmp_path):
    cfg = _cfg(tmp_path, methods='[[methods]]\nname = "zero-filled"\nlabel = "reference"\n'
                                 '[[methods]]\nname = "sense"\nlabel = "A B"\nparams = {max_iter = 2}\n'
                                 '[[methods]]\nname = "sense"\nlabel = "A_B"\nparams = {max_iter = 2}\n')
    res = run_eval(cfg, tmp_path / "run")
    files = sorted(p.name for p in (res.out_dir / "recon").iterdir())
    assert files == ["A_B.npy", "A_B_2.npy", "mask.npy", "reference.npy", "reference_2.npy"]
    ref = np.load(res.out_dir / "recon" / "reference.npy")
    zf = np.load(res.out_dir / "recon" / "reference_2.npy")
    assert not np.allclose(ref, zf)  # the ground truth was not overwritten by the zero-filled image


def test_force_replaces_only_an_earlier_run_folder(tmp_path, monkeypatch):
    """--force replaces a previous eval run's folder, never a folder of the user's (no metrics.json) nor the
    current folder; the user's files stay."""
    cfg = _cfg(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="is not an earlier eval run's folder"):
        run_eval(cfg, mine, force=True)
    assert (mine / "notes.txt").read_text() == "x"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputExistsError, match="not the current folder"):
        run_eval(cfg, Path("."), force=True)
    first = run_eval(cfg, tmp_path / "run")
    again = run_eval(cfg, tmp_path / "run", force=True)  # an earlier run's folder: replaced
    assert again.out_dir == first.out_dir and (again.out_dir / "metrics.json").is_file()


@pytest.mark.parametrize("litter", ["metrics.json", "notes.txt", "recon/mine.txt", "recon/mine.npy"])
def test_force_keeps_a_folder_with_anything_a_run_did_not_write(tmp_path, litter):
    """A metrics.json is no proof of a run (another tool's, e.g. a training run's, made --force delete the whole
    folder with the user's files), nor is a run's folder with a file of the user's added: both are refused."""
    cfg = _cfg(tmp_path)
    out = run_eval(cfg, tmp_path / "run").out_dir if litter != "metrics.json" else tmp_path / "mine"
    out.mkdir(exist_ok=True)
    (out / litter).write_text('{"loss": 0.1}')
    with pytest.raises(OutputExistsError, match=f"is not an earlier eval run's folder \\(it holds {litter}"):
        run_eval(cfg, out, force=True)
    assert (out / litter).read_text() == '{"loss": 0.1}'


def test_config_name_cannot_leave_runs(tmp_path):
    cfg = _cfg(tmp_path, name="../../x")
    assert Path(cfg["output"]["dir"]) == Path("runs") / "x"


def test_second_run_on_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    code = f"from pathlib import Path\nfrom mri_csc.io.atomic import run_lock\nwith run_lock(Path({str(out)!r})): pass"
    with run_lock(out):
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode != 0 and "another run (pid" in child.stderr
    assert not (tmp_path / ".run.lock").exists()
    (tmp_path / ".run.lock").write_text("999999999\n")  # a killed run's lock is taken over
    with run_lock(out):
        assert (tmp_path / ".run.lock").read_text().split()[0] == str(os.getpid())


def test_lock_is_held_by_the_kernel_not_by_the_pid_in_the_file(tmp_path):
    """Two processes: while one holds the lock, the other is refused even when the file holds no pid
    yet (the window between creating it and writing it); a SIGKILLed holder's lock is taken over."""
    out, lock = tmp_path / "run", tmp_path / ".run.lock"
    code = f"from pathlib import Path\nfrom mri_csc.io.atomic import run_lock\nwith run_lock(Path({str(out)!r})): pass"
    with run_lock(out):
        lock.write_text("")  # as seen by a second run before the holder wrote its pid
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert child.returncode != 0 and "another run" in child.stderr
        assert lock.exists()  # the refused run did not remove it
    holder = subprocess.Popen([sys.executable, "-c", code.replace("pass", "print('ready', flush=True); "
                                                                  "__import__('time').sleep(60)")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    assert lock.read_text().split()[0] == str(holder.pid)
    with pytest.raises(OutputExistsError, match=f"pid {holder.pid} on "):
        with run_lock(out):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    with run_lock(out):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_lock_fallback_without_fcntl(tmp_path, monkeypatch):
    """Without fcntl: an O_EXCL file; an empty recent one (pid not yet written) is busy, not stale."""
    import socket

    from mri_csc.io import atomic

    monkeypatch.setattr(atomic, "fcntl", None)
    out, lock = tmp_path / "run", tmp_path / ".run.lock"
    lock.write_text("")
    with pytest.raises(OutputExistsError, match="a process that is starting"):
        with run_lock(out):
            pass
    lock.write_text(f"999999999 {socket.gethostname()}\n")  # a dead process on this host: taken over
    with run_lock(out):
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname()]
    assert not lock.exists()


def test_force_write_killed_between_the_renames_keeps_the_old_file(tmp_path):
    """SIGKILL after the old result was moved to its backup, before the new one was renamed in:
    the next write into the folder puts the old result back; the backup is never just deleted."""
    dest = tmp_path / "result.npy"
    write_image(dest, np.ones((4, 4), np.complex64))
    code = ("import os, signal, numpy as np\n"
            "from mri_csc.io import atomic, write_image\n"
            "real, n = os.replace, [0]\n"
            "def rep(a, b):\n"
            "    n[0] += 1\n"
            "    if n[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return real(a, b)\n"
            "atomic.os.replace = rep\n"
            f"write_image({str(dest)!r}, np.full((4, 4), 2, np.complex64), overwrite=True)\n")
    r = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert not dest.exists() and len(list(tmp_path.glob(".result.npy.*.bak"))) == 1
    write_image(tmp_path / "other.npy", np.zeros((2, 2), np.complex64))  # any later write sweeps
    assert np.array_equal(np.load(dest), np.ones((4, 4), np.complex64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npy", "result.npy"]
    # a backup whose destination exists (the new file was committed) is litter
    bak = tmp_path / f".result.npy.{sweep_stale.__globals__['_HOST']}-999999999.x.bak"
    bak.write_bytes(b"old")
    assert sweep_stale(tmp_path) == [bak] and not bak.exists()
    assert np.array_equal(np.load(dest), np.ones((4, 4), np.complex64))


def test_concurrent_evals_do_not_delete_each_other(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "t"\n[data]\nshape = [48, 48]\n[coils]\ncount = 2\n'
                   '[[methods]]\nname = "sense"\nparams = {max_iter = 30}\n')
    cmd = [sys.executable, "-m", "mri_csc.cli", "eval", str(cfg), "--out", str(tmp_path / "run"), "--no-pbar"]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ra, rb = a.wait(120), b.wait(120)
    errs = a.stderr.read() + b.stderr.read()
    assert sorted([ra, rb]) == [0, 2], errs
    assert "Traceback" not in errs
    assert (tmp_path / "run" / "metrics.json").exists()
    assert not list(tmp_path.glob(".run.*"))  # no lock, no temporary folder left


def test_dangling_symlink_is_not_replaced_without_force(tmp_path):
    link = tmp_path / "out.npy"
    link.symlink_to(tmp_path / "nowhere.npy")
    with pytest.raises(OutputExistsError, match="dangling symbolic link"):
        write_image(link, np.ones((4, 4), np.complex64))
    assert link.is_symlink()
    write_image(link, np.ones((4, 4), np.complex64), overwrite=True)
    assert not link.is_symlink() and np.load(link).shape == (4, 4)


def test_multi_file_outputs_are_committed_together(tmp_path, monkeypatch):
    old = write_image(tmp_path / "x.cfl", np.ones((4, 4), np.complex64))
    before = {p.name: p.read_bytes() for p in old}
    real = os.replace
    calls = []

    def flaky(src, dst):  # the second rename of the new pair fails
        calls.append(dst)
        if str(src).endswith("a.hdr"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space left"):
        write_image(tmp_path / "x.cfl", 2 * np.ones((4, 4), np.complex64), overwrite=True)
    monkeypatch.setattr(os, "replace", real)
    assert {p.name: p.read_bytes() for p in old} == before  # the old pair, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cfl", "x.hdr"]  # no temporaries or backups


def test_commit_refuses_an_output_that_appeared(tmp_path):
    with pytest.raises(OutputExistsError):
        with atomic_paths([tmp_path / "a.npy", tmp_path / "b.npy"]) as (ta, tb):
            np.save(ta, 1)
            np.save(tb, 2)
            (tmp_path / "b.npy").write_text("someone else's")
    assert not (tmp_path / "a.npy").exists()
    assert (tmp_path / "b.npy").read_text() == "someone else's"
    commit_files([], False)


def test_sigkill_litter_is_swept_and_sigterm_leaves_none(tmp_path):
    code = ("import os, time, numpy as np\n"
            "from mri_csc.io.atomic import atomic_path\n"
            f"with atomic_path({str(tmp_path / 'o.npy')!r}) as t:\n"
            "    np.save(t, np.ones(3)); print('ready', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    litter = [q for q in tmp_path.iterdir() if q.name.startswith(".o.npy.")]
    assert len(litter) == 1
    assert sweep_stale(tmp_path) == litter and not litter[0].exists()

    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "t"\n[data]\nshape = [64, 64]\n[[methods]]\nname = "sense"\nparams = {max_iter = 200}\n')
    e = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", "eval", str(cfg), "--out", str(tmp_path / "run"),
                          "--no-pbar"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".run.*.partial")):
        time.sleep(0.05)
    e.send_signal(signal.SIGTERM)
    assert e.wait(60) == 143, e.stderr.read()
    assert not list(tmp_path.glob(".run*")) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_interrupt_just_after_a_temporary_is_created_leaves_no_litter(tmp_path, monkeypatch, kind):
    """The CI failure of the fourth session: SIGTERM landed between ``mkdtemp`` creating
    ``.run.*.partial`` and the clean-up knowing its name. The signal is simulated by a creator
    that makes the entry and then raises, the worst moment for it to land."""
    import mri_csc.io.atomic as atomic

    real = atomic._make_file if kind == "file" else atomic._make_dir

    def make_then_interrupt(path):
        real(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_make_file" if kind == "file" else "_make_dir", make_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        if kind == "file":
            with atomic_paths([tmp_path / "a.npy", tmp_path / "b.npy"]):
                pass
        else:
            with atomic.temp_dir(tmp_path / "run"):
                pass
    assert list(tmp_path.iterdir()) == []


def test_temp_dir_is_removed_on_error_and_named_for_the_sweep(tmp_path):
    from mri_csc.io.atomic import temp_dir

    with pytest.raises(RuntimeError), temp_dir(tmp_path / "run") as t:
        (t / "x.npy").write_bytes(b"1")
        assert t.parent == tmp_path and t.name.startswith(".run.") and t.name.endswith(".partial")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_batch_refuses_a_locked_output_folder(tmp_path):
    np.save(tmp_path / "k.npy", np.ones((2, 8, 8), np.complex64))
    with run_lock(tmp_path / "out"):
        code = ("from mri_csc.batch import reconstruct_batch\n"
                f"reconstruct_batch({str(tmp_path / 'k.npy')!r}, {str(tmp_path / 'out')!r}, method='zero-filled')")
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode != 0 and "another run (pid" in child.stderr
    assert not (tmp_path / "out").exists()
