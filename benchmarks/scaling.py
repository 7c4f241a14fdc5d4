"""Time per outer CSC iteration and peak memory against problem size, on one machine in one run.

    python benchmarks/scaling.py               # all sweeps (~5 min on 2 shared cores)
    python benchmarks/scaling.py --iters 4 --only size,coils
    python benchmarks/scaling.py --device gpu  # the same sweeps on CuPy

Sweeps (defaults elsewhere: 256², 8 coils, 36 filters of 11×11, Poisson R=4):

- image size 128², 256², 384², 512² (brain slice);
- coils 4, 8, 16, 32;
- filters 16, 36, 64, 128 (36: the shipped dictionary; others: random unit-norm 11×11);
- 2D vs 3D: the 256² slice against a 32×64×64 Shepp–Logan volume with 16 3D
  filters of 5×5×5, run end to end through ``mri_csc.reconstruct(..., method="csc",
  dictionary=<(K, f, f, f) filters>)``.

Each point runs in a fresh interpreter: the data set is built, the peak RSS noted,
``--iters`` outer iterations run (time per iteration = median of the history's
steps), the peak RSS noted again, a 2-iteration run repeated under ``tracemalloc``
(the peak of the arrays the solve allocates; on a GPU the CuPy pool size), then the
FFT floor of that configuration (``common.fft_floor``) is timed.
Prints a table, writes ``benchmarks/results/scaling.json`` and ``scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, fmt_table, machine_info, write_json

POINT = r"""
import json, resource, statistics, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
import mri_csc
from mri_csc.backend import to_device, get_xp
from mri_csc.prior.dictionary import load_default_dictionary
from mri_csc.sim import make_dataset
from common import csc_floor_counts, fft_floor, self_peak_rss_mib, sync

cfg = json.loads({cfg!r})
shape, coils, K, f = tuple(cfg["shape"]), cfg["coils"], cfg["filters"], cfg["size"]
if len(shape) == 2:
    ds = make_dataset("brain", shape=shape, n_coils=coils, mask="poisson", accel=4, seed=0)
else:
    ds = make_dataset("shepp-logan", shape=shape, n_coils=coils, mask="poisson", accel=4, seed=0)
if len(shape) == 2 and K == 36 and f == 11:
    d = load_default_dictionary()
else:
    rng = np.random.default_rng(0)
    d = rng.standard_normal((K,) + (f,) * len(shape)).astype(np.float32)
    d /= np.linalg.norm(d.reshape(K, -1), axis=1).reshape((K,) + (1,) * len(shape))
dev = cfg["device"]
xp = np
k, maps, mask = ds.kspace, ds.maps, ds.mask
if dev != "cpu":
    import cupy as xp
    k, maps, mask, d = (to_device(a, dev) for a in (k, maps, mask, d))
    mri_csc.reconstruct(k, maps, mask=mask, method="csc", dictionary=d, max_iter=2, device=dev)  # warm-up
    xp.get_default_memory_pool().free_all_blocks()
    xp.cuda.Device().synchronize()
rss0 = self_peak_rss_mib() * 1024
t = time.perf_counter()
r = mri_csc.reconstruct(k, maps, mask=mask, method="csc", dictionary=d, max_iter=cfg["iters"], device=dev)
sync(xp)
total = time.perf_counter() - t
rss1 = self_peak_rss_mib() * 1024
gpu_peak = traced = None
if dev != "cpu":
    gpu_peak = xp.get_default_memory_pool().total_bytes() / 2**20
else:
    # peak of the arrays a (short) reconstruction allocates: ru_maxrss alone cannot see it when
    # building the data set peaked higher than the solve
    import tracemalloc
    tracemalloc.start()
    mri_csc.reconstruct(k, maps, mask=mask, method="csc", dictionary=d, max_iter=2, device=dev)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
times = [h["time"] for h in r.history]
per_iter = statistics.median(np.diff(times)) if len(times) > 1 else times[0]
floor = fft_floor(shape, coils, K, f, **csc_floor_counts(r), xp=xp)
img = np.asarray(r.image.get() if hasattr(r.image, "get") else r.image)
ok = bool(np.all(np.isfinite(img))) and img.shape == shape
print("RESULT " + json.dumps({{"per_iter_s": per_iter, "total_s": total, "rss_before_mib": rss0 / 1024,
      "rss_peak_mib": rss1 / 1024, "recon_rss_mib": (rss1 - rss0) / 1024, "gpu_pool_mib": gpu_peak,
      "traced_peak_mib": traced,
      "floor_fft_s": floor["floor_fft_s"], "floor_s": floor["floor_s"], "code_shape": floor["code_shape"],
      "finite_image": ok, "objective_last": r.history[-1]["objective"]}}))
"""

SWEEPS = {
    "size": [dict(shape=[n, n]) for n in (128, 256, 384, 512)],
    "coils": [dict(coils=c) for c in (4, 8, 16, 32)],
    "filters": [dict(filters=k) for k in (16, 36, 64, 128)],
    "3d": [dict(), dict(shape=[32, 64, 64], filters=16, size=5)],
}
BASE = dict(shape=[256, 256], coils=8, filters=36, size=11)


def run_point(cfg: dict, timeout: float) -> dict:
    code = POINT.format(bench=os.path.dirname(os.path.abspath(__file__)), cfg=json.dumps(cfg))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": err}
    return json.loads(lines[-1][len("RESULT "):])


def label(sweep: str, cfg: dict) -> str:
    if sweep == "size":
        return "x".join(map(str, cfg["shape"]))
    if sweep == "coils":
        return f"{cfg['coils']} coils"
    if sweep == "filters":
        return f"{cfg['filters']} filters"
    return ("3D " if len(cfg["shape"]) == 3 else "2D ") + "x".join(map(str, cfg["shape"])) + \
        f", {cfg['filters']} x {cfg['size']}^{len(cfg['shape'])}"


def plot(results: dict, path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return False
    sweeps = [s for s in ("size", "coils", "filters", "3d") if s in results]
    fig, axes = plt.subplots(2, len(sweeps), figsize=(4 * len(sweeps), 6.5), squeeze=False)
    for j, sw in enumerate(sweeps):
        pts = [p for p in results[sw] if "error" not in p["result"]]
        names = [p["label"] for p in pts]
        x = range(len(pts))
        it = [p["result"]["per_iter_s"] for p in pts]
        fl = [p["result"]["floor_fft_s"] for p in pts]
        fl2 = [p["result"]["floor_s"] for p in pts]
        ax = axes[0][j]
        ax.plot(x, it, "o-", label="per outer iteration")
        ax.plot(x, fl2, "s--", label="FFT floor + passes")
        ax.plot(x, fl, "^:", label="FFT floor")
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, rotation=20, fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title(f"time vs {sw}")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        ax.bar(list(x), [p["result"]["traced_peak_mib"] or p["result"]["gpu_pool_mib"] or 0 for p in pts])
        ax.set_xticks(list(x), names, rotation=20, fontsize=8)
        ax.set_ylabel("peak memory of the solve, MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=4, help="outer iterations per point (>= 2)")
    p.add_argument("--only", default="size,coils,filters,3d")
    p.add_argument("--device", default="cpu")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    info = machine_info()
    print(f"machine: {info['nproc']} cpus ({info['cpu']}), numpy {info['numpy']}, scipy {info['scipy']}; "
          f"load {info['loadavg']}; device {args.device}")
    results, rows = {}, []
    for sweep in args.only.split(","):
        results[sweep] = []
        for over in SWEEPS[sweep]:
            cfg = {**BASE, **over, "iters": max(2, args.iters), "device": args.device}
            res = run_point(cfg, args.timeout)
            lab = label(sweep, cfg)
            results[sweep].append({"label": lab, "config": cfg, "result": res})
            if "error" in res:
                print(f"{sweep:8s} {lab:28s} FAILED: {res['error']}")
                rows.append((sweep, lab, None, None, None, None, None, None, "FAILED: " + res["error"][:60]))
                continue
            r = res
            rows.append((sweep, lab, r["per_iter_s"], r["floor_fft_s"], r["per_iter_s"] / r["floor_fft_s"],
                         r["per_iter_s"] / r["floor_s"], r["traced_peak_mib"] if r["traced_peak_mib"] is not None
                         else r["gpu_pool_mib"], r["rss_peak_mib"], "ok" if r["finite_image"] else "NaN"))
            print(f"{sweep:8s} {lab:28s} {r['per_iter_s']:.3f} s/iter, floor {r['floor_fft_s']:.3f} s, "
                  f"peak arrays {r['traced_peak_mib'] or r['gpu_pool_mib'] or 0:.0f} MiB", flush=True)
    print(f"\n## CSC scaling: time per outer iteration (median of {args.iters - 1}) and peak memory, "
          f"device {args.device}")
    print(fmt_table(rows, ["sweep", "case", "s / iter", "FFT floor s", "iter / floor", "iter / (floor+passes)",
                           "peak MiB (arrays)", "process peak RSS MiB", "image"]))
    out = {"machine": info, "device": args.device, "iters": args.iters, "results": results,
           "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "total_s": time.perf_counter() - t0}
    path = write_json("scaling.json" if args.device == "cpu" else "scaling_gpu.json", out)
    png = RESULTS / ("scaling.png" if args.device == "cpu" else "scaling_gpu.png")
    if plot(results, png):
        print(f"wrote {png}")
    print(f"wrote {path} ({out['total_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
