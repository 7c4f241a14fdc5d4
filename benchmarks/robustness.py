"""Robustness campaign: fuzzed and hostile files, bad arrays, bad CLI inputs, killed and concurrent runs.

Prints one table: per class, cases tried / valid result / clear error / traceback / hang /
over budget / NaN written / data lost. What must hold: 0 in the last five columns.

- readers: ``--per-reader`` (default 300) mutated files per reader (npy, npz, cfl, fastMRI h5,
  NIfTI, TOML config, ISMRMRD) plus hand-made hostile headers (zip and gzip bombs, huge declared
  shapes, groups and dangling links, flipped sforms...), each read in a child capped by
  ``RLIMIT_AS`` with ``MRI_CSC_MAX_BYTES=256M`` (:mod:`tests.fuzzlib`);
- ``reconstruct()``: out-of-range masks, unnormalised coil maps, NaN, empty, wrong dtypes,
  broadcast views over the budget, NaN-producing parameters: a clear error, or a finite image
  as good as with clean inputs;
- ``mri-csc recon``: the same through files, plus a mask with fewer slices than the k-space;
  no output may hold NaN, no slice may be missing;
- ``mri-csc eval``: SIGKILL / SIGTERM at random times during a ``--force`` rerun (the finished
  run must survive, the next run must sweep all litter), and two concurrent runs on one ``--out``;
- ``mri-csc batch``: SIGKILL then ``--resume`` (every slice equal to the serial loop's), and an
  input changed between the runs (``--resume`` must refuse).

Usage::

    PYTHONPATH=. python benchmarks/robustness.py [--per-reader 300] [--kills 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzlib import fuzz_cases, hostile_cases, make_seeds, run_cases  # noqa: E402

COLS = ("tried", "valid", "clear", "traceback", "hang", "over_budget", "nan_written", "data_lost")
NOTES: list[str] = []
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def row() -> dict:
    return dict.fromkeys(COLS, 0)


def cli(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "mri_csc.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, **kw)


def classify_cli(p) -> str:
    if p.returncode == 0:
        return "valid"
    if "Traceback" in p.stderr or p.returncode not in (2,):
        return "traceback"
    lines = p.stderr.strip().splitlines()
    return "clear" if lines and lines[-1].startswith("mri-csc: error: ") else "traceback"


# ----------------------------------------------------------------------------- readers

def readers(work: Path, per_reader: int, seed: int, notes: list) -> dict:
    seeds = make_seeds(work / "seeds")
    cases = fuzz_cases(seeds, per_reader, work / "fuzz", seed=seed)
    hostile = hostile_cases(work / "hostile")
    cases += [(r, p) for r, _, p in hostile]
    labels = {str(p): label for _, label, p in hostile}
    res = run_cases(cases, workdir=work)
    table = {}
    for r in res:
        t = table.setdefault(f"read {r['reader']}", row())
        t["tried"] += 1
        t["valid" if r["outcome"] == "ok" else r["outcome"]] += 1
        if r["outcome"] not in ("ok", "clear"):
            notes.append(f"{r['reader']}: {r['outcome']}: {labels.get(r['path'], Path(r['path']).name)}: "
                         f"{r.get('error', '')[:160]}")
    return table


# ----------------------------------------------------------------------------- reconstruct()

def api_cases(t: dict) -> None:
    import mri_csc
    from mri_csc.sim import make_dataset

    ds = make_dataset(phantom="shepp-logan", shape=(48, 48), n_coils=4, accel=3, seed=3)
    k, s, m = ds.kspace, ds.maps, ds.mask

    def err(img):
        return float(np.linalg.norm(np.abs(img) - np.abs(ds.image)) / np.linalg.norm(ds.image))

    def kw(meth):
        return {} if meth == "zero-filled" else {"max_iter": 20}

    clean = {meth: err(mri_csc.reconstruct(k, s, mask=m, method=meth, **kw(meth)).image)
             for meth in ("zero-filled", "sense", "tv", "l1wavelet")}
    bad_inputs = {
        "mask 0/255 uint8": (k, s, (m * 255).astype(np.uint8), {}),
        "mask with one 1e30": (k, s, np.where(np.arange(m.size).reshape(m.shape) == 5, 1e30, m), {}),
        "negative mask": (k, s, -m, {}),
        "NaN mask": (k, s, np.where(m > 0, np.nan, 0), {}),
        "complex mask": (k, s, m.astype(np.complex64), {}),
        "maps x1e-10": (k, s * 1e-10, m, {"ok": True}),
        "maps x1e20": (k, s * 1e20, m, {"ok": True}),
        "maps x1e-3": (k, s * 1e-3, m, {"ok": True}),
        "NaN k-space": (np.where(np.arange(k.size).reshape(k.shape) == 7, np.nan, k).astype(np.complex64), s, m, {}),
        "Inf maps": (k, np.where(np.arange(s.size).reshape(s.shape) == 7, np.inf, s).astype(np.complex64), m, {}),
        "empty k-space": (k[:, :0], s[:, :0], None, {}),
        "all-zero maps": (k, np.zeros_like(s), m, {}),
        "int k-space": (k.real.astype(np.int32), s, m, {}),
        "list k-space": (k.tolist(), s, m, {}),
        "wrong maps shape": (k, s[:2], m, {}),
        "mask shape (50, 48)": (k, s, np.ones((50, 48), np.float32), {}),
        "broadcast view 25 GiB": (np.broadcast_to(np.complex64(1), (8, 20000, 20000)),
                                  np.broadcast_to(np.complex64(1), (8, 20000, 20000)), None, {}),
    }
    from mri_csc.validate import is_user_error

    os.environ["MRI_CSC_MAX_BYTES"] = "1G"
    for meth in ("zero-filled", "sense", "tv", "l1wavelet"):
        for _name, (kk, ss, mm, opt) in bad_inputs.items():
            t["tried"] += 1
            try:
                img = np.asarray(mri_csc.reconstruct(kk, ss, mask=mm, method=meth, **kw(meth)).image)
            except MemoryError:
                t["over_budget"] += 1
                continue
            except Exception as e:  # noqa: BLE001
                t["clear" if is_user_error(e) else "traceback"] += 1
                continue
            if not np.isfinite(img).all():
                t["nan_written"] += 1
            elif not opt.get("ok") or err(img) > 1.05 * clean[meth] + 1e-3:
                t["data_lost"] += 1  # a silently wrong result
            else:
                t["valid"] += 1
    del os.environ["MRI_CSC_MAX_BYTES"]


# ----------------------------------------------------------------------------- recon CLI

def recon_cli_cases(work: Path, t: dict) -> None:
    import h5py

    from mri_csc.sim import make_dataset

    d = make_dataset(phantom="shepp-logan", shape=(32, 32), n_coils=4, accel=2, seed=0)
    cases = {}

    def h5(name, kspace, maps, mask):
        p = work / f"{name}.h5"
        with h5py.File(p, "w") as f:
            f["kspace"] = kspace
            f["maps"] = maps
            if mask is not None:
                f["mask"] = mask
        return p

    k8, s8 = np.stack([d.kspace] * 8), np.stack([d.maps] * 8)
    cases["mask with 4 of 8 slices"] = (h5("fewer", k8, s8, np.stack([d.mask] * 4).astype(np.float32)), [])
    cases["mask with 1 of 8 slices"] = (h5("one", k8, s8, np.stack([d.mask] * 1).astype(np.float32)), ["ok"])
    cases["mask 0/255"] = (h5("m255", k8[:2], s8[:2], (d.mask * 255).astype(np.float32)), [])
    m30 = np.where(np.arange(32 * 32).reshape(32, 32) == 3, 1e30, d.mask).astype(np.float32)
    cases["mask 1e30 entry"] = (h5("m1e30", k8[:2], s8[:2], m30), [])
    cases["negative mask"] = (h5("mneg", k8[:2], s8[:2], -d.mask.astype(np.float32)), [])
    cases["maps x1e20"] = (h5("s1e20", k8[:2], s8[:2] * 1e20, d.mask.astype(np.float32)), ["ok"])
    cases["maps x1e-10"] = (h5("s1e-10", k8[:2], s8[:2] * 1e-10, d.mask.astype(np.float32)), ["ok"])
    cases["NaN k-space"] = (h5("knan", np.where(k8[:2] != 0, np.nan, 0).astype(np.complex64), s8[:2], None), [])
    params = {"tv lam=nan": ["--param", "lam=nan"], "tv lam=inf": ["--param", "lam=inf"],
              "tv lam=abc": ["--param", "lam=abc"], "tv max_iter=0": ["--param", "max_iter=0"]}
    ok_file = h5("good", k8[:2], s8[:2], d.mask.astype(np.float32))
    for name, (path, expect) in cases.items():
        for meth in ("zero-filled", "sense"):
            _recon_case(work, t, f"{name}-{meth}", path, meth, [], "ok" in expect, n_slices=None)
    for name, extra in params.items():
        _recon_case(work, t, name, ok_file, "tv", extra, None, n_slices=2)


def _recon_case(work, t, name, path, method, extra, may_succeed, n_slices):
    out = work / f"out_{name.replace(' ', '_').replace('/', '_')}.npy"
    p = cli("recon", path, "--out", out, "--method", method, "--no-pbar", *extra)
    t["tried"] += 1
    c = classify_cli(p)
    before = dict(t)
    if c == "valid":
        img = np.load(out)
        with __import__("h5py").File(path, "r") as f:
            want = f["kspace"].shape[0]
        if not np.isfinite(img).all():
            t["nan_written"] += 1
        elif img.shape[0] != want or may_succeed is False:
            t["data_lost"] += 1  # slices dropped, or garbage accepted silently
        else:
            t["valid"] += 1
    else:
        t[c] += 1
        if out.exists() and not np.isfinite(np.load(out)).all():
            t["nan_written"] += 1
    if any(t[k] != before[k] for k in ("traceback", "nan_written", "data_lost")):
        NOTES.append(f"recon {name} ({method}): rc {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")


# ----------------------------------------------------------------------------- eval

def _eval_cfg(work: Path, iters=400) -> Path:
    cfg = work / "eval.toml"
    cfg.write_text('name = "rob"\n[data]\nshape = [64, 64]\n[coils]\ncount = 4\n'
                   f'[[methods]]\nname = "sense"\nparams = {{max_iter = {iters}}}\n'
                   '[[methods]]\nname = "sense"\nlabel = "reference"\nparams = {max_iter = 5}\n')
    return cfg


def _litter(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def eval_kills(work: Path, t: dict, n: int, rng) -> None:
    cfg = _eval_cfg(work)
    out = work / "run"
    first = cli("eval", cfg, "--out", out, "--no-pbar")
    assert first.returncode == 0, first.stderr
    truth = np.load(out / "recon" / "reference.npy")
    for i in range(n):
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        stale = set(_litter(work))  # what an earlier SIGKILL left: the next run sweeps it once it has started
        proc = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", "eval", str(cfg), "--out", str(out),
                                 "--force", "--no-pbar"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENV, text=True)
        time.sleep(float(rng.uniform(0.8, 3.5)))
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)  # also closes the pipes
        t["tried"] += 1
        if "Traceback" in stderr:
            t["traceback"] += 1
            NOTES.append(f"eval killed by {sig.name}: " + stderr.strip().splitlines()[-1])
        ok = (out / "metrics.json").exists() and np.array_equal(np.load(out / "recon" / "reference.npy"), truth)
        if not ok:
            t["data_lost"] += 1
        elif sig == signal.SIGTERM and proc.returncode == 143 and set(_litter(work)) - stale:
            t["data_lost"] += 1  # SIGTERM must clean up after itself (a killed run's litter is not its own)
        else:
            t["clear" if proc.returncode != 0 else "valid"] += 1
    again = cli("eval", cfg, "--out", out, "--force", "--no-pbar")  # sweeps what SIGKILL left
    t["tried"] += 1
    left = [p.name for p in _litter(work)]
    t["valid" if again.returncode == 0 and not left else "data_lost"] += 1
    # two concurrent runs on one folder: one wins, the other is refused; nothing is deleted
    shutil.rmtree(out)
    cfg2 = _eval_cfg(work, iters=150)
    procs = [subprocess.Popen([sys.executable, "-m", "mri_csc.cli", "eval", str(cfg2), "--out", str(out),
                               "--no-pbar"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
             for _ in range(2)]
    errs = "".join(p.communicate(timeout=300)[1] for p in procs)
    rcs = [p.returncode for p in procs]
    t["tried"] += 2
    t["traceback"] += errs.count("Traceback")
    if "Traceback" in errs:
        NOTES.append("concurrent eval: " + errs.strip().splitlines()[-1])
    if sorted(rcs) == [0, 2] and (out / "metrics.json").exists():
        t["valid"] += 1
        t["clear"] += 1
    else:
        t["data_lost"] += 1  # both ran (one replaced the other) or the survivor is missing


# ----------------------------------------------------------------------------- batch

def batch_trials(work: Path, t: dict, n: int, rng) -> None:
    import h5py

    from mri_csc.batch import serial_reconstruct
    from mri_csc.sim import make_dataset

    inp = work / "bin"
    inp.mkdir()
    for j in range(2):
        ds = [make_dataset(phantom="shepp-logan", shape=(48, 48), n_coils=4, accel=3, seed=10 * j + s)
              for s in range(4)]
        with h5py.File(inp / f"v{j}.h5", "w") as f:
            f["kspace"] = np.stack([d.kspace for d in ds])
            f["maps"] = np.stack([d.maps for d in ds])
            f["mask"] = np.stack([d.mask for d in ds]).astype(np.float32)
    ref = serial_reconstruct(str(inp / "*.h5"), method="sense", params={"max_iter": 30})
    args = ["batch", str(inp), "--method", "sense", "--param", "max_iter=30", "--workers", "2",
            "--no-progress", "--format", "npy"]
    for i in range(n):
        out = work / f"bout{i}"
        proc = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", *args, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
        time.sleep(float(rng.uniform(3.0, 9.0)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        resumed = cli(*args, "--out", out, "--resume", timeout=600)
        t["tried"] += 1
        if "Traceback" in resumed.stderr:
            t["traceback"] += 1
            continue
        lost = 0
        for path, img in ref.items():
            o = out / (Path(path).stem + ".npy")
            if not o.exists() or np.load(o).shape != img.shape or not np.allclose(np.load(o), img, atol=1e-5):
                lost += 1
        t["data_lost" if lost or resumed.returncode else "valid"] += 1
    # an input that changes between an interrupted run and --resume must be refused
    out = work / "bchanged"
    proc = subprocess.Popen([sys.executable, "-m", "mri_csc.cli", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
    deadline = time.time() + 120  # kill at the first finished slice: the run must be unfinished (8 slices of
    while time.time() < deadline and not list(out.glob(".partial/*/slice_*.npy")):  # 48x48 take ~1 s)
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    if not (out / ".partial" / "manifest.json").exists():
        print(f"batch changed-input trial: the run finished before the kill ({sorted(os.listdir(out))})")
    with h5py.File(inp / "v1.h5", "a") as f:
        f["kspace"][...] = f["kspace"][...][::-1]  # same size, other content
    os.utime(inp / "v1.h5", ns=(time.time_ns(), time.time_ns()))
    resumed = cli(*args, "--out", out, "--resume", timeout=600)
    t["tried"] += 1
    c = classify_cli(resumed)
    if c == "clear" and "changed since the unfinished run" in resumed.stderr:
        t["clear"] += 1
    elif c == "valid" and not (out / ".partial").exists() and "v1.h5" in resumed.stdout:
        t["data_lost"] += 1  # finished with stale slices
    else:
        t[c if c != "valid" else "data_lost"] += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-reader", type=int, default=300)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--batch-kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    notes: list[str] = []
    table: dict[str, dict] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mri_csc_robust_") as tmp:
        work = Path(tmp)
        table.update(readers(work / "readers", args.per_reader, args.seed, notes))
        (work / "api").mkdir()
        table["reconstruct() bad arrays"] = row()
        api_cases(table["reconstruct() bad arrays"])
        (work / "cli").mkdir()
        table["recon CLI bad inputs"] = row()
        recon_cli_cases(work / "cli", table["recon CLI bad inputs"])
        (work / "eval").mkdir()
        table["eval kill/concurrent"] = row()
        eval_kills(work / "eval", table["eval kill/concurrent"], args.kills, rng)
        (work / "batch").mkdir()
        table["batch kill/resume/changed"] = row()
        batch_trials(work / "batch", table["batch kill/resume/changed"], args.batch_kills, rng)
    width = max(map(len, table)) + 2
    print(f"{'class':{width}s}" + "".join(f"{c:>12s}" for c in COLS))
    total = row()
    for name, r in table.items():
        print(f"{name:{width}s}" + "".join(f"{r[c]:12d}" for c in COLS))
        for c in COLS:
            total[c] += r[c]
    print(f"{'total':{width}s}" + "".join(f"{total[c]:12d}" for c in COLS))
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    notes += NOTES
    if notes:
        print("\nnot clear:")
        for n in notes[:40]:
            print("  " + n)
    print(json.dumps({"total": total}))
    bad = sum(total[c] for c in ("traceback", "hang", "over_budget", "nan_written", "data_lost"))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
