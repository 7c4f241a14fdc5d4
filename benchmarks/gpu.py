"""GPU check in one short script: the GPU parity tests, then CSC on CuPy against NumPy.

    python benchmarks/gpu.py               # on a machine with a CUDA GPU (~3-5 min on an H200)
    python benchmarks/gpu.py --dry-run     # tiny problems on the CPU only: checks the script itself
    python benchmarks/gpu.py --require-gpu # exit status 1 (not 0) when no GPU is usable

(a) runs ``python -m pytest -m gpu -q`` (the NumPy/CuPy parity tests);
(b) times ``mri_csc.reconstruct(method="csc")`` with its defaults on a 320×320,
    16-coil brain slice, on a small 3D volume (32×64×64 Shepp–Logan, 8 coils,
    16 filters of 5×5×5: one 3-D problem) and on a 32×64×64 brain volume with the shipped
    dictionary (one 2-D problem per readout position, one after another on the GPU, as threads
    on the CPU), on the same data with ``device="cpu"`` (NumPy) and
    ``device="gpu"`` (CuPy). Each case gets a short warm-up run first (imports, FFT
    plans, memory pool); GPU clocks stop only after
    ``cupy.cuda.Device().synchronize()``. Prints a table with the speed-up,
    the per-iteration times, the FFT floor on the GPU and the CPU/GPU image
    difference; targets: GPU ≥ 20× NumPy and < 1 s per 320² slice.

(c) non-Cartesian: a golden-angle radial CSC reconstruction (256², 8 coils, R=4; dry run
    32², 4 coils) on NumPy (FINUFFT) and on CuPy (cuFINUFFT when ``cufinufft`` imports,
    else SigPy's NUFFT on CuPy), the NUFFT backend each used, the speed-up, the NUFFT
    pair and Toeplitz normal times on the device, and the CPU/GPU image difference.

Without a usable GPU (``mri_csc.backend.gpu_available()`` false) it prints why and
exits with status 0 (1 with ``--require-gpu``), before any heavy work.
Writes ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fft_floor, fmt_table, machine_info, sync, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_SPEEDUP = 20.0
TARGET_SLICE_S = 1.0


def cases(dry_run: bool):
    """(name, data-set kwargs, dictionary spec) for each timed case."""
    if dry_run:
        return [("2D 48x48, 4 coils", dict(phantom="brain", shape=(48, 48), n_coils=4), None),
                ("3D 8x16x16, 4 coils", dict(phantom="shepp-logan", shape=(8, 16, 16), n_coils=4), (4, 3)),
                ("3D 16x24x16 per readout, 4 coils", dict(phantom="brain", shape=(16, 24, 16), n_coils=4), None)]
    return [("2D 320x320, 16 coils", dict(phantom="brain", shape=(320, 320), n_coils=16), None),
            ("3D 32x64x64, 8 coils", dict(phantom="shepp-logan", shape=(32, 64, 64), n_coils=8), (16, 5)),
            ("3D 32x64x64 per readout, 8 coils", dict(phantom="brain", shape=(32, 64, 64), n_coils=8), None)]


def make_case(spec):
    from mri_csc.sim import make_dataset

    _, kw, dspec = spec
    ds = make_dataset(mask="poisson", accel=4, seed=0, **kw)
    if dspec is None:
        d = None  # the shipped dictionaries (48 x 11x11; 16 x 7x7x7)
    else:
        K, f = dspec
        rng = np.random.default_rng(0)
        nd = len(kw["shape"])
        d = rng.standard_normal((K,) + (f,) * nd).astype(np.float32)
        d /= np.linalg.norm(d.reshape(K, -1), axis=1).reshape((K,) + (1,) * nd)
    return ds, d


def run_tests(dry_run: bool) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    if dry_run:
        cmd += ["--collect-only"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    tail = (p.stdout.strip().splitlines() or [""])[-1]
    print(f"## (a) {' '.join(cmd[1:])}: exit {p.returncode} in {time.perf_counter() - t:.0f} s: {tail}")
    if p.returncode not in (0, 5) and not dry_run:
        print("\n".join(p.stdout.strip().splitlines()[-30:]))
    return {"command": " ".join(cmd[1:]), "returncode": p.returncode, "summary": tail}


def time_recon(ds, d, device: str, repeat: int, max_iter=None) -> dict:
    import mri_csc
    from mri_csc.backend import get_xp, to_device, to_numpy

    extra = {} if max_iter is None else {"max_iter": max_iter}
    k, maps, mask = ds.kspace, ds.maps, ds.mask
    dd = d
    if device != "cpu":
        k, maps, mask = (to_device(a, device) for a in (k, maps, mask))
        dd = None if d is None else to_device(d, device)
    xp = get_xp(k)
    # warm-up: FFT plans, kernels compiled by CuPy, the memory pool
    mri_csc.reconstruct(k, maps, mask=mask, method="csc", dictionary=dd, device=device, max_iter=2)
    sync(xp)
    times, res = [], None
    for _ in range(repeat):
        sync(xp)
        t = time.perf_counter()
        res = mri_csc.reconstruct(k, maps, mask=mask, method="csc", dictionary=dd, device=device, **extra)
        sync(xp)
        times.append(time.perf_counter() - t)
    steps = []  # per-iteration times, within each readout position's solve when the volume ran per readout
    for plane in sorted({r.get("plane") for r in res.history}, key=str):
        steps += list(np.diff([r["time"] for r in res.history if r.get("plane") == plane]))
    return {"times_s": times, "median_s": statistics.median(times), "volume": res.params.get("volume"),
            "per_iter_s": statistics.median(steps) if steps else float("nan"),
            "iterations": len(res.history), "image": to_numpy(res.image)}


def noncartesian_case(dry_run: bool, device: str, repeat: int) -> dict:
    """(c): radial CSC on the CPU and on ``device``, and the device's NUFFT/Toeplitz timings."""
    import mri_csc
    from mri_csc.backend import get_xp, to_device, to_numpy
    from mri_csc.operators.nufft import NUFFTSense
    from mri_csc.sim import birdcage_maps, shepp_logan
    from mri_csc.sim.trajectories import make_trajectory, simulate_noncartesian

    n, coils = (32, 4) if dry_run else (256, 8)
    img = shepp_logan((n, n)).astype(np.complex64)
    maps = birdcage_maps((n, n), coils)
    coord = make_trajectory("golden-radial", (n, n), 4)
    y = simulate_noncartesian(img, maps, coord, snr_db=30, seed=0)
    extra = {"max_iter": 3} if dry_run else {}
    out = {"shape": [n, n], "coils": coils, "samples": list(coord.shape[:-1])}
    images = {}
    for label, dev in (("cpu", "cpu"), ("gpu", device)):
        args = [y, maps, coord] if dev == "cpu" else [to_device(a, dev) for a in (y, maps, coord)]
        xp = get_xp(args[0])
        mri_csc.reconstruct(args[0], args[1], trajectory=args[2], method="csc", device=dev, max_iter=2)  # warm-up
        times = []
        for _ in range(1 if label == "cpu" else repeat):
            sync(xp)
            t = time.perf_counter()
            res = mri_csc.reconstruct(args[0], args[1], trajectory=args[2], method="csc", device=dev, **extra)
            sync(xp)
            times.append(time.perf_counter() - t)
        op = NUFFTSense(args[1], args[2])
        x = xp.asarray(img)
        op.H(op(x))  # warm-up (plans, cuFFT)
        op.normal(x)
        sync(xp)
        t = time.perf_counter()
        op.H(op(x))
        sync(xp)
        t_pair = time.perf_counter() - t
        t = time.perf_counter()
        op.normal(x)
        sync(xp)
        t_toep = time.perf_counter() - t
        images[label] = to_numpy(res.image)
        out[label] = {"median_s": statistics.median(times), "backend": op.backend,
                                               "pair_ms": t_pair * 1e3, "toeplitz_ms": t_toep * 1e3,
                                               "iterations": len(res.history)}
    ref = images["cpu"]
    out["rel_diff_cpu_gpu"] = float(np.linalg.norm(images["gpu"] - ref) / max(np.linalg.norm(ref), 1e-30))
    out["speedup"] = out["cpu"]["median_s"] / out["gpu"]["median_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny problems, CPU only (checks the script)")
    p.add_argument("--require-gpu", action="store_true", help="exit 1 when no GPU is usable")
    p.add_argument("--repeat", type=int, default=3, help="timed GPU runs per case (median)")
    p.add_argument("--cpu-repeat", type=int, default=1, help="timed CPU runs per case")
    p.add_argument("--skip-tests", action="store_true")
    args = p.parse_args(argv)

    from mri_csc.backend import gpu_available

    if not args.dry_run and not gpu_available():
        try:
            import cupy  # noqa: F401

            why = "CuPy imports but finds no usable CUDA device"
        except Exception as e:  # ImportError, or a CUDA library failing to load
            why = f"CuPy is not importable ({type(e).__name__}: {e})"
        print(f"benchmarks/gpu.py: no usable GPU here ({why}); nothing to do. "
              "Run it on a machine with an NVIDIA GPU and `pip install mri_csc[gpu]`, or use --dry-run.")
        return 1 if args.require_gpu else 0

    t0 = time.perf_counter()
    gpu = "cpu" if args.dry_run else "gpu"
    info = machine_info()
    if not args.dry_run:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["gpu_memory_gib"] = props["totalGlobalMem"] / 2**30
    print(f"machine: {info['nproc']} cpus ({info['cpu']}), gpu {info.get('gpu', '(dry run: none)')}, "
          f"numpy {info['numpy']}, cupy {info['cupy']}")
    out = {"machine": info, "dry_run": args.dry_run,
           "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if not args.skip_tests:
        out["tests"] = run_tests(args.dry_run)

    rows, res_cases = [], {}
    for spec in cases(args.dry_run):
        name = spec[0]
        ds, d = make_case(spec)
        iters = 3 if args.dry_run else None
        cpu = time_recon(ds, d, "cpu", args.cpu_repeat, iters)
        dev = time_recon(ds, d, gpu, 1 if args.dry_run else args.repeat, iters)
        diff = float(np.linalg.norm(dev["image"] - cpu["image"]) / max(np.linalg.norm(cpu["image"]), 1e-30))
        xp = np
        if not args.dry_run:
            import cupy as xp
        K, f = (48, 11) if d is None else (d.shape[0], d.shape[-1])
        shape = ds.kspace.shape[1:]
        if cpu["volume"] == "per-readout":  # the iterations are one (nz, ny) plane's
            shape = shape[:2]
        fl = fft_floor(shape, ds.kspace.shape[0], K, f, xp=xp, repeat=5)
        speedup = cpu["median_s"] / dev["median_s"]
        rows.append((name, cpu["median_s"], dev["median_s"], speedup, dev["per_iter_s"] * 1e3,
                     fl["floor_fft_s"] * 1e3, dev["per_iter_s"] / fl["floor_fft_s"], diff))
        res_cases[name] = {"cpu": {k: v for k, v in cpu.items() if k != "image"},
                           "gpu": {k: v for k, v in dev.items() if k != "image"},
                           "speedup": speedup, "rel_diff_cpu_gpu": diff, "floor": fl}
        print(f"{name}: numpy {cpu['median_s']:.2f} s, {gpu} {dev['median_s']:.3f} s, x{speedup:.1f}", flush=True)
    out["cases"] = res_cases
    print(f"\n## (b) CSC defaults, NumPy vs CuPy (median of {args.repeat} GPU runs after a warm-up)")
    print(fmt_table(rows, ["case", "numpy s", f"{gpu} s", "speed-up", f"{gpu} ms/iter", f"{gpu} FFT floor ms",
                           "iter / floor", "rel. diff cpu/gpu"]))
    if not args.dry_run:
        slice_row = rows[0]
        met_speed = slice_row[3] >= TARGET_SPEEDUP
        met_time = slice_row[2] < TARGET_SLICE_S
        print(f"targets (320² slice): speed-up >= {TARGET_SPEEDUP:.0f}x: {'met' if met_speed else 'NOT met'} "
              f"({slice_row[3]:.1f}x); < {TARGET_SLICE_S:.0f} s per slice: {'met' if met_time else 'NOT met'} "
              f"({slice_row[2]:.2f} s)")
        out["targets"] = {"speedup": slice_row[3], "speedup_met": met_speed, "slice_s": slice_row[2],
                          "slice_met": met_time}
    nc = noncartesian_case(args.dry_run, gpu, 1 if args.dry_run else args.repeat)
    out["noncartesian"] = nc
    print(f"\n## (c) non-Cartesian CSC, golden radial R=4, {nc['shape'][0]}², {nc['coils']} coils")
    print(fmt_table([[d, nc[d]["backend"], nc[d]["median_s"], nc[d]["pair_ms"], nc[d]["toeplitz_ms"]]
                     for d in ("cpu", "gpu")],
                    ["device", "NUFFT backend", "csc s", "NUFFT pair ms", "Toeplitz ms"]))
    print(f"speed-up x{nc['speedup']:.1f}, rel. diff cpu/{gpu} {nc['rel_diff_cpu_gpu']:.2e}")
    out["total_s"] = time.perf_counter() - t0
    path = write_json("gpu_dry_run.json" if args.dry_run else "gpu.json", out)
    print(f"wrote {path} ({out['total_s']:.0f} s)")
    tests_ok = args.skip_tests or out["tests"]["returncode"] in (0, 5)
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
