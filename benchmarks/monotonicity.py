"""Is the recorded objective of the default CSC run non-increasing? With and without ``monotone``.

    python benchmarks/monotonicity.py            # 8 cases of benchmarks/quality.py, 128², ESPIRiT maps
    python benchmarks/monotonicity.py --quick    # 4 of them

For each case (built by ``quality.build_case``: BART's analytic k-space phantoms and Colin 27,
Poisson and line masks, 25 and 45 dB) CSC runs with its defaults twice, ``monotone=True`` (the
default: the code step keeps the coder's new codes only when they lower the objective) and
``monotone=False`` (every coder step taken), interleaved. Printed per case and run: the largest
relative increase of the recorded objective after the first 3 iterations,
``max_k (F_{k+1} - F_k) / |F_k|``, both for the default stopping rule and for 100 iterations
without it (``tol=0``), the iterations run, PSNR on magnitude inside the support, and the time.
Writes ``benchmarks/results/monotonicity.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_table, machine_info, write_json  # noqa: E402
from quality import Case, _score, build_case  # noqa: E402

CASES = [
    Case("bart-shepp", "poisson", 8, 25.0, seed=1),
    Case("bart-shepp", "random-lines", 3, 45.0, seed=2),
    Case("bart-geometric", "poisson", 5, 45.0, seed=3),
    Case("bart-geometric", "random-lines", 3, 25.0, seed=4),
    Case("ch2-axial", "poisson", 4, 35.0, seed=5),
    Case("ch2-axial", "random-lines", 4, 25.0, seed=6),
    Case("bart-shepp", "poisson", 8, 45.0, seed=7),
    Case("bart-geometric", "poisson", 5, 25.0, seed=8),
]


def max_rise(history, skip=3):
    obj = np.array([h["objective"] for h in history])
    if len(obj) <= skip + 1:
        return float("nan")
    rel = np.diff(obj) / np.abs(obj[:-1])
    return float(rel[skip:].max())


def run_case(case: Case) -> dict:
    import mri_csc

    data = build_case(case)
    out = {}
    for tol_label, extra in (("default", {}), ("tol=0", {"tol": 0.0, "max_iter": 100})):
        for mono in (True, False):
            t0 = time.perf_counter()
            r = mri_csc.reconstruct(data["kspace"], data["maps"], mask=data["mask"], method="csc",
                                    monotone=mono, **extra)
            t = time.perf_counter() - t0
            p, s = _score(data, r.image)
            out[(tol_label, mono)] = dict(rise=max_rise(r.history), iters=len(r.history), psnr=p, ssim=s,
                                          time=t, objective=r.history[-1]["objective"],
                                          rejected=r.history[-1]["codes_rejected"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    cases = CASES[:4] if args.quick else CASES
    rows, res = [], {}
    for case in cases:
        out = run_case(case)
        for (tol_label, mono), v in out.items():
            rows.append((case.label, tol_label, "on" if mono else "off", f"{v['rise']:.2e}", v["iters"],
                         v["rejected"], f"{v['psnr']:.2f}", f"{v['time']:.2f}"))
        res[case.label] = {f"{t}/monotone={m}": v for (t, m), v in out.items()}
    print(fmt_table(rows, ["case", "stopping", "monotone", "max rise after it 3", "iters", "rejected", "PSNR",
                           "s"]))
    for tol_label in ("default", "tol=0"):
        for mono in (True, False):
            vals = [res[c.label][f"{tol_label}/monotone={mono}"] for c in cases]
            print(f"{tol_label:8s} monotone={mono!s:5s}: worst rise {max(v['rise'] for v in vals):.2e}, "
                  f"mean PSNR {np.mean([v['psnr'] for v in vals]):.3f} dB, "
                  f"total time {sum(v['time'] for v in vals):.1f} s, "
                  f"mean iterations {np.mean([v['iters'] for v in vals]):.1f}")
    write_json("monotonicity.json", {"machine": machine_info(), "cases": res})


if __name__ == "__main__":
    main()
