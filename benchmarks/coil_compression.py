"""SVD coil compression (``reconstruct(..., compress_coils=N)``, as ``bart cc -S``): time and PSNR.

One simulated brain slice with many coils, reconstructed by CSC with all coils
and compressed to fewer virtual coils; the maps are the true ones, compressed
with the same matrix. Prints PSNR and SSIM against the truth and the time of
each run as a ratio to the uncompressed one (best of ``--repeat``, same process).

    python benchmarks/coil_compression.py [--coils 16] [--to 8 4 2] [--shape 256 256] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mri_csc
from mri_csc.metrics import psnr, ssim
from mri_csc.sim import make_dataset


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coils", type=int, default=16)
    ap.add_argument("--to", type=int, nargs="+", default=[8, 4, 2])
    ap.add_argument("--shape", type=int, nargs=2, default=[256, 256])
    ap.add_argument("--accel", type=float, default=4.0)
    ap.add_argument("--method", default="csc")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    ds = make_dataset("brain", shape=tuple(args.shape), n_coils=args.coils, mask="poisson", accel=args.accel, seed=0)
    rows = []
    for n in [None, *args.to]:
        best, res = np.inf, None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=args.method, compress_coils=n)
            best = min(best, time.perf_counter() - t0)
        mag = np.abs(np.asarray(res.image))
        rows.append((n or args.coils, best, psnr(ds.magnitude_ref, mag, mask=ds.support),
                     ssim(ds.magnitude_ref, mag)))
    t_full = rows[0][1]
    print(f"{args.method}, brain {tuple(args.shape)}, {args.coils} coils, Poisson R={args.accel:g}")
    print("virtual coils  time ratio  PSNR [dB]    SSIM")
    for n, t, p, s in rows:
        print(f"{n:13d}  {t / t_full:10.2f}  {p:9.2f}  {s:.4f}")


if __name__ == "__main__":
    main()
