"""Batch throughput: serial loop vs 1 and 2 Dask workers, and scheduling overhead.

Writes one fastMRI-style file of ``--slices`` 256² slices with 8 coils (coil
maps in the file, so no ESPIRiT), then reconstructs it

- serially in this process (one FFT thread, i.e. one core),
- with ``reconstruct_batch`` on a LocalCluster of 1 worker and of 2 workers.

Overhead is the 1-worker run's wall time after the cluster is up (reading
slices, scheduling, writing per-slice files, assembling the volume) minus the
summed per-slice compute time, as a % of the summed compute time.

Usage::

    python benchmarks/batch.py [--slices 8] [--method csc] [--json benchmarks/batch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from mri_csc.backend import fftc, set_fft_workers
from mri_csc.batch import reconstruct_batch
from mri_csc.batch.tasks import SliceTask, discover
from mri_csc.batch.worker import SliceConfig, compute_slice
from mri_csc.recon import available_methods


def _maps(nc, n):
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    s = np.array([np.exp(-((x - 1.3 * np.cos(a)) ** 2 + (y - 1.3 * np.sin(a)) ** 2) / 1.2) * np.exp(1j * a)
                  for a in 2 * np.pi * np.arange(nc) / nc])
    return (s / np.sqrt((abs(s) ** 2).sum(0))).astype(np.complex64)


def make_data(path: Path, n_slices: int, n: int = 256, nc: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    maps = _maps(nc, n)
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    mask = np.zeros((n, n), np.float32)
    mask[rng.random((n, n)) < 0.25] = 1
    mask[n // 2 - 12:n // 2 + 12, n // 2 - 12:n // 2 + 12] = 1
    ks = []
    for _slice in range(n_slices):
        img = sum(((x - rng.uniform(-.4, .4)) / rng.uniform(.1, .4)) ** 2
                  + ((y - rng.uniform(-.4, .4)) / rng.uniform(.1, .4)) ** 2 < 1 for _ in range(6))
        img = (img + ((x / .8) ** 2 + (y / .9) ** 2 < 1)) * np.exp(1j * np.pi * x * y)
        ks.append(fftc((maps * img).astype(np.complex64)) * mask)
    with h5py.File(path, "w") as f:
        f["kspace"] = np.array(ks, np.complex64)
        f["maps"] = np.broadcast_to(maps, (n_slices, *maps.shape))
        f["mask"] = mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--method", default="csc")
    ap.add_argument("--json", default="benchmarks/batch.json")
    args = ap.parse_args()
    method = args.method
    if method not in available_methods():
        print(f"*** method {method!r} is not registered yet: falling back to 'l1wavelet' ***")
        method = "l1wavelet"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "bench.h5"
        make_data(data, args.slices)
        rows = []

        set_fft_workers(1)
        vols, _ = discover(data)
        cfg = SliceConfig("", method)
        compute_slice(SliceTask(vols[0], 0), cfg)  # warm-up (imports, plans)
        t0 = time.perf_counter()
        times = []
        for i in range(vols[0].n_slices):
            t1 = time.perf_counter()
            compute_slice(SliceTask(vols[0], i), cfg)
            times.append(time.perf_counter() - t1)
        serial = time.perf_counter() - t0
        set_fft_workers(None)
        rows.append({"run": "serial loop", "workers": 1, "wall_s": serial, "slices_per_s": args.slices / serial,
                     "mean_slice_s": float(np.mean(times)), "startup_s": 0.0, "overhead_pct": None})

        for nw in (1, 2):
            started = {}
            t0 = time.perf_counter()
            rep = reconstruct_batch(data, tmp / f"out{nw}", method=method, n_workers=nw,
                                    on_start=lambda info, started=started: started.setdefault("t", time.perf_counter()))
            t_end = time.perf_counter()
            assert rep.ok, rep.summary()
            work = t_end - started["t"]
            busy = float(np.sum(rep.slice_times))
            overhead = 100 * (work * nw - busy) / busy
            rows.append({"run": f"dask {nw} worker(s)", "workers": nw, "wall_s": work,
                         "slices_per_s": args.slices / work, "mean_slice_s": float(np.mean(rep.slice_times)),
                         "startup_s": started["t"] - t0, "overhead_pct": overhead})

    base = rows[0]["slices_per_s"]
    print(f"\nbatch throughput: {args.slices} slices 256x256, 8 coils, method {method!r}, "
          f"{os.cpu_count()} cores\n")
    print(f"{'run':<18} {'slices/s':>9} {'speed-up':>9} {'mean slice s':>13} {'start-up s':>11} {'overhead %':>11}")
    for r in rows:
        oh = "-" if r["overhead_pct"] is None else f"{r['overhead_pct']:.1f}"
        print(f"{r['run']:<18} {r['slices_per_s']:>9.3f} {r['slices_per_s'] / base:>9.2f} "
              f"{r['mean_slice_s']:>13.3f} {r['startup_s']:>11.2f} {oh:>11}")
    print("\nwall time excludes cluster start-up (shown separately); overhead = (wall x workers - "
          "summed slice compute) / summed slice compute")
    out = {"method": method, "slices": args.slices, "shape": [256, 256], "coils": 8, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
