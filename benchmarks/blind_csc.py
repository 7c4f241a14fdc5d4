"""Blind CSC (``adapt_dictionary=N``) against the fixed shipped dictionary, CSC only, on benchmarks/quality.py's cases.

    python benchmarks/blind_csc.py                      # all 30 cases (tuning and held-out), N = 1
    python benchmarks/blind_csc.py --every 1,3 --split heldout

Each case (``quality.all_cases``: ESPIRiT maps, no inverse crime, 25/35/45 dB, Poisson and line
masks) is reconstructed by CSC with its defaults, once with the fixed dictionary and once per
``--every`` value with the dictionary adapted to the scan. Prints per case PSNR / SSIM / time and
per split the mean PSNR and SSIM difference (blind minus fixed), the worst case and the time ratio.
Writes ``benchmarks/results/blind_csc.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_table, machine_info, write_json  # noqa: E402
from quality import _score, all_cases, build_case  # noqa: E402


def main(argv=None):
    import mri_csc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", default="1", help="comma-separated adapt_dictionary values (default 1)")
    ap.add_argument("--split", default="tuning,heldout")
    args = ap.parse_args(argv)
    every = [int(v) for v in args.every.split(",")]
    cases = all_cases(tuple(args.split.split(",")))
    rows, res = [], {}
    for case in cases:
        try:
            data = build_case(case)
        except (RuntimeError, OSError, ValueError) as exc:  # e.g. nilearn or a template missing
            print(f"skipped {case.label}: {exc}")
            continue
        out = {}
        for n in [0] + every:
            t0 = time.perf_counter()
            r = mri_csc.reconstruct(data["kspace"], data["maps"], mask=data["mask"], method="csc",
                                    adapt_dictionary=n)
            p, s = _score(data, r.image)
            out[n] = dict(psnr=p, ssim=s, time=time.perf_counter() - t0, iters=len(r.history),
                          updates=r.history[-1]["dictionary_updates"])
        res[case.label] = {"split": case.split, **{str(n): v for n, v in out.items()}}
        rows.append((case.label, case.split, f"{out[0]['psnr']:.2f}",
                     *(f"{out[n]['psnr']:.2f} ({out[n]['psnr'] - out[0]['psnr']:+.2f}, {out[n]['updates']:.0f} kept)"
                       for n in every),
                     f"{out[0]['time']:.2f}", *(f"{out[n]['time']:.2f}" for n in every)))
        print(rows[-1], flush=True)
    print(fmt_table(rows, ["case", "split", "fixed PSNR", *(f"blind/{n} PSNR (diff, kept)" for n in every),
                           "fixed s", *(f"blind/{n} s" for n in every)]))
    for split in args.split.split(","):
        labels = [k for k, v in res.items() if v["split"] == split]
        if not labels:
            continue
        for n in every:
            dp = [res[k][str(n)]["psnr"] - res[k]["0"]["psnr"] for k in labels]
            ds = [res[k][str(n)]["ssim"] - res[k]["0"]["ssim"] for k in labels]
            tr = np.median([res[k][str(n)]["time"] / res[k]["0"]["time"] for k in labels])
            print(f"{split} ({len(labels)} cases), adapt_dictionary={n}: PSNR {np.mean(dp):+.3f} dB mean, "
                  f"worst {min(dp):+.2f}, better on {sum(d > 0 for d in dp)}; SSIM {np.mean(ds):+.4f}; "
                  f"time ratio (median) {tr:.2f}")
    write_json("blind_csc.json", {"machine": machine_info(), "cases": res})


if __name__ == "__main__":
    main()
