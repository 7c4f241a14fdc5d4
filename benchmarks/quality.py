"""Image quality of mri_csc's CSC (defaults only) against best-tuned SigPy and BART baselines.

Real T1 brain slices (Colin 27 ``ch2.nii.gz`` from Debian's mricron-data; slices
outside the shipped dictionary's training range), smooth random phase up to ±π,
8 simulated birdcage coils, 30 dB noise, simulated at 2x resolution and cropped
in k-space (no inverse crime). Cases: 2D Poisson R=4 and R=8, 1D random lines
R=4 (8 % centre). Baselines get λ tuned over a grid on *each slice* (their best
case); CSC runs with its defaults, once more with the phase term off
(``csc-nophase``) to show what the phase model brings, and once sparse-coding the
imaginary part of the demodulated image too (``csc-imagcodes``). PSNR and SSIM on
magnitude inside the brain.

Run::

    python benchmarks/quality.py                 # 3 slices per case, ~20 min on 2 cores
    python benchmarks/quality.py --slices 75 95 --json benchmarks/results/quality.json

Prints a table per case and the mean over cases, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

import mri_csc
from mri_csc.metrics import psnr, ssim
from mri_csc.sim import make_dataset

CASES = [("poisson", 4), ("poisson", 8), ("random-lines", 4)]
GRID = [2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2]
LAM_GRID = {"l1wavelet": GRID, "tv": GRID, "bart-l1wavelet": GRID, "bart-tv": GRID}


def score(ds, image):
    return (psnr(ds.magnitude_ref, image, mask=ds.support), ssim(ds.magnitude_ref, image, mask=ds.support))


#: labelled variants of a registered method: label -> (method, params)
VARIANTS = {"csc": ("csc", {}), "csc-nophase": ("csc", {"phase": False}),
            "csc-imagcodes": ("csc", {"imag_codes": True})}


def run_case(kind, accel, slices, shape, methods):
    rows = {m: [] for m in methods}
    for i, idx in enumerate(slices):
        ds = make_dataset("brain", shape=shape, n_coils=8, mask=kind, accel=accel, phase="random",
                          phase_amplitude=np.pi, snr_db=30, seed=100 + i, slice_index=idx, oversample=2)
        for m in methods:
            if m in LAM_GRID:
                best = None
                for lam in LAM_GRID[m]:
                    t0 = time.perf_counter()
                    r = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=m, lam=lam)
                    t = time.perf_counter() - t0
                    p, s = score(ds, r.image)
                    if best is None or p > best[0]:
                        best = (p, s, t, lam)
                rows[m].append(dict(slice=idx, psnr=best[0], ssim=best[1], time=best[2], lam=best[3]))
            else:
                name, params = VARIANTS.get(m, (m, {}))
                t0 = time.perf_counter()
                r = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=name, **params)
                t = time.perf_counter() - t0
                p, s = score(ds, r.image)
                rows[m].append(dict(slice=idx, psnr=p, ssim=s, time=t, lam=r.params.get("lam")))
            last = rows[m][-1]
            print(f"  {kind} R={accel} slice {idx} {m:15s} PSNR {last['psnr']:6.2f}  SSIM {last['ssim']:.4f}"
                  f"  {last['time']:6.2f} s  lam={last['lam']}", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[80, 90, 105],
                    help="axial slice indices of ch2 (default 80 90 105: outside the dictionary's training "
                         "range 35-65/115-145, and not the slices 70/100 the CSC defaults were chosen on)")
    ap.add_argument("--shape", type=int, nargs=2, default=[192, 192])
    ap.add_argument("--json", default="benchmarks/results/quality.json")
    ap.add_argument("--no-bart", action="store_true", help="skip BART even when installed")
    args = ap.parse_args(argv)

    methods = ["zero-filled", "sense", "l1wavelet", "tv"]
    if shutil.which("bart") and not args.no_bart:
        methods += ["bart-l1wavelet", "bart-tv"]
    methods += ["csc-nophase", "csc-imagcodes", "csc"]
    results = {}
    for kind, accel in CASES:
        key = f"{kind} R={accel}"
        print(f"case {key}", file=sys.stderr, flush=True)
        results[key] = run_case(kind, accel, args.slices, tuple(args.shape), methods)

    header = f"{'case':18s}" + "".join(f"{m:>16s}" for m in methods)
    print("\nMean PSNR (dB) inside the brain; baselines λ-tuned per slice, CSC defaults")
    print(header)
    means = {m: [] for m in methods}
    for key, rows in results.items():
        vals = [np.mean([r["psnr"] for r in rows[m]]) for m in methods]
        for m, v in zip(methods, vals):
            means[m].append(v)
        print(f"{key:18s}" + "".join(f"{v:16.2f}" for v in vals))
    print(f"{'mean':18s}" + "".join(f"{np.mean(means[m]):16.2f}" for m in methods))
    print("\nMean SSIM inside the brain")
    print(header)
    for key, rows in results.items():
        print(f"{key:18s}" + "".join(f"{np.mean([r['ssim'] for r in rows[m]]):16.4f}" for m in methods))
    print("\nMedian time per slice (s) at the chosen λ")
    print(header)
    for key, rows in results.items():
        print(f"{key:18s}" + "".join(f"{np.median([r['time'] for r in rows[m]]):16.2f}" for m in methods))
    print("\nCSC minus best tuned peer (dB), per case")
    for key, rows in results.items():
        csc_p = np.mean([r["psnr"] for r in rows["csc"]])
        peers = {m: np.mean([r["psnr"] for r in rows[m]]) for m in methods if m in LAM_GRID}
        print(f"{key:18s}" + "  ".join(f"vs {m}: {csc_p - v:+.2f}" for m, v in peers.items()))
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"slices": args.slices, "shape": args.shape, "results": results}, f, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
