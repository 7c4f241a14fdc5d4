"""ESPIRiT coil-map estimation: SigPy's EspiritCalib against BART's ecalib, same data.

For each case the script simulates a brain (or Shepp-Logan) slice with birdcage
coils, estimates maps with both back ends (same calib width, threshold, kernel,
crop), and prints a table of the best-of-N wall time of each, their ratio, and
how well the maps agree with each other and with the true maps *up to phase*:
the normalised correlation of |maps| over the object support (1 = identical).
Writes the rows to JSON with ``--json``.

    python benchmarks/espirit.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
from common import best_of

from mri_csc.sim import estimate_maps, make_dataset, map_agreement

CASES = [
    {"phantom": "brain", "shape": (128, 128), "n_coils": 8},
    {"phantom": "brain", "shape": (192, 192), "n_coils": 8},
    {"phantom": "brain", "shape": (256, 256), "n_coils": 12},
    {"phantom": "shepp-logan", "shape": (192, 192), "n_coils": 8},
]


def fmt(row, key, digits):
    return f"{row[key]:.{digits}f}" if key in row else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calib", type=int, default=24)
    ap.add_argument("--thresh", type=float, default=0.02)
    ap.add_argument("--crop", type=float, default=0.95)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    have_bart = shutil.which("bart") is not None
    kw = {"calib_width": args.calib, "thresh": args.thresh, "crop": args.crop}
    rows = []
    hdr = (
        f"{'phantom':<12} {'shape':>9} {'coils':>5} {'sigpy s':>8} {'bart s':>8} {'sigpy/bart':>10} "
        f"{'sp~true':>8} {'bart~true':>9} {'sp~bart':>8} {'bart kept':>9}"
    )
    print(f"ESPIRiT, calib {args.calib}, thresh {args.thresh}, crop {args.crop}, best of {args.repeat}")
    print(hdr)
    print("-" * len(hdr))
    for case in CASES:
        d = make_dataset(accel=4, calib=args.calib, snr_db=30, seed=0, **case)
        estimate_maps(d.kspace, method="sigpy", **kw)  # warm-up (imports, JIT)
        t_sp, m_sp = best_of(lambda d=d: estimate_maps(d.kspace, method="sigpy", **kw), args.repeat)
        row = dict(
            case,
            shape=list(case["shape"]),
            sigpy_s=t_sp,
            sigpy_vs_true=map_agreement(m_sp, d.maps, d.support),
        )
        if have_bart:
            t_b, m_b = best_of(lambda d=d: estimate_maps(d.kspace, method="bart", **kw), args.repeat)
            row.update(
                bart_s=t_b,
                ratio=t_sp / t_b,
                bart_vs_true=map_agreement(m_b, d.maps, d.support),
                sigpy_vs_bart=map_agreement(m_sp, m_b, d.support),
                bart_support_kept=float((np.abs(m_b).sum(0) > 0)[d.support].mean()),
            )
        rows.append(row)

        def f(k, row=row):
            return fmt(row, k, 4)

        def g(k, row=row):
            return fmt(row, k, 3)

        print(
            f"{case['phantom']:<12} {'x'.join(map(str, case['shape'])):>9} {case['n_coils']:>5} "
            f"{g('sigpy_s'):>8} {g('bart_s'):>8} {f('ratio')[:-2]:>10} {f('sigpy_vs_true'):>8} "
            f"{f('bart_vs_true'):>9} {f('sigpy_vs_bart'):>8} {g('bart_support_kept'):>9}"
        )
    print(
        "~: normalised correlation of |maps| on the object (1 = equal up to phase); "
        "bart kept: fraction of the object where BART's crop left the maps non-zero"
    )
    if not have_bart:
        print("(bart not on PATH: BART columns skipped)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
