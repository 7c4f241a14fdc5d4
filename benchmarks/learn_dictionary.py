"""Learn the shipped default CSC dictionary from real T1 slices (reproducible with a seed).

Source: ``/usr/share/mricron/templates/ch2.nii.gz`` (Colin27 "ch2" T1 template
shipped with MRIcron / mricron-data, BSD-3 licence). Axial slices (third axis,
RAS orientation) are taken from the TRAINING range below; the middle range
TEST_RANGE is reserved for evaluation and never used here. Each slice is
zero-padded to 256 x 256, scaled to max 1 and high-passed (Tikhonov, lam_lp=5).

    python benchmarks/learn_dictionary.py --n-iter 200 --out mri_csc/data/default_dictionary.npz

Prints the time taken and the objective, writes the npz atomically (never
overwrites without ``--force``) and a JSON summary under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mri_csc.io.atomic import atomic_path, check_writable

SOURCE = "/usr/share/mricron/templates/ch2.nii.gz"
TRAIN_SLICES = (35, 45, 55, 65, 115, 125, 135, 145)
TEST_RANGE = (70, 110)  # inclusive; reserved for evaluation, disjoint from TRAIN_SLICES
PAD_TO = 256


def load_training_slices(path=SOURCE, slices=TRAIN_SLICES, pad_to=PAD_TO, extra=()):
    """Training slices (asserted outside TEST_RANGE), then any ``extra`` ones (for evaluation only)."""
    import nibabel as nib

    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    assert not any(TEST_RANGE[0] <= z <= TEST_RANGE[1] for z in slices), "training slice in test range"
    out = []
    for z in tuple(slices) + tuple(extra):
        sl = vol[:, :, z]
        py, px = pad_to - sl.shape[0], pad_to - sl.shape[1]
        out.append(np.pad(sl, ((py // 2, py - py // 2), (px // 2, px - px // 2))))
    return np.stack(out)


def evaluate(filters, lam, slices=(75, 90, 105), n_iter=150):
    """Sparse-code held-out test slices: objective, relative residual, code density."""
    from mri_csc.prior.dictionary import prepare_training_images
    from mri_csc.prior.sparse_coding import ConvSparseCoder

    s = prepare_training_images(load_training_slices(slices=(), pad_to=PAD_TO, extra=slices))
    c = ConvSparseCoder(filters, s.shape[1:], lam)
    z = c.solve(s, max_iter=n_iter, tol=0)
    res = c.synthesize() - s
    out = {
        "test_slices": list(slices),
        "lam": lam,
        "n_iter": n_iter,
        "objective": c.objective(s),
        "rel_residual": float(np.linalg.norm(res) / np.linalg.norm(s)),
        "density": float(np.count_nonzero(z) / z.size),
    }
    print(
        f"test slices {slices}: objective {out['objective']:.4g}, ||Dz-s||/||s|| {out['rel_residual']:.4f}, "
        f"non-zero codes {100 * out['density']:.3f}%"
    )
    return out


def _save_atomic(path: Path, force: bool, **arrays):
    with atomic_path(path, overwrite=force) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def main(argv=None):
    from mri_csc.prior.dictionary import learn_dictionary

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-filters", type=int, default=36)
    p.add_argument("--size", type=int, default=11)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--lam-lp", type=float, default=5.0)
    p.add_argument("--n-iter", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="npz to write (default: print only)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--pbar", action="store_true")
    p.add_argument(
        "--multiscale", default=None, help="e.g. 24x8,12x16 (count x size); overrides --n-filters/--size"
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="also sparse-code test slices (75, 90, 105) with the result and print the fit",
    )
    args = p.parse_args(argv)
    if args.out is not None:
        try:
            check_writable(args.out, overwrite=args.force)  # refuse before minutes of learning
        except OSError as exc:
            sys.exit(str(exc))
    multiscale = None
    if args.multiscale:
        multiscale = [tuple(int(v) for v in item.split("x")) for item in args.multiscale.split(",")]
        args.n_filters = sum(n for n, _ in multiscale)
        args.size = max(sz for _, sz in multiscale)

    imgs = load_training_slices()
    t0 = time.perf_counter()
    filters, info = learn_dictionary(
        imgs,
        args.n_filters,
        args.size,
        lam=args.lam,
        n_iter=args.n_iter,
        seed=args.seed,
        device=args.device,
        show_pbar=args.pbar,
        lam_lp=args.lam_lp,
        return_info=True,
        multiscale=multiscale,
    )
    elapsed = time.perf_counter() - t0
    obj = info["objective"]
    print(
        f"learned {filters.shape} from {imgs.shape[0]} slices of {imgs.shape[1:]} "
        f"in {elapsed:.1f} s ({args.n_iter} iterations, {os.cpu_count()} cpus, device {args.device})"
    )
    print(f"objective: first {obj[0]:.4g}  last {obj[-1]:.4g}")
    if args.evaluate:
        summary_eval = evaluate(filters, args.lam)
    command = "python benchmarks/learn_dictionary.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {
        "source": SOURCE,
        "licence": "BSD-3-Clause (mricron-data)",
        "train_slices": list(TRAIN_SLICES),
        "test_range": list(TEST_RANGE),
        "n_filters": args.n_filters,
        "size": args.size,
        "lam": args.lam,
        "lam_lp": args.lam_lp,
        "n_iter": args.n_iter,
        "seed": args.seed,
        "time_s": elapsed,
        "objective_first": obj[0],
        "objective_last": obj[-1],
        "command": command,
        "multiscale": args.multiscale,
        "evaluation": summary_eval if args.evaluate else None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
    }
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / "learn_dictionary.json").write_text(json.dumps(summary, indent=2))
    if args.out is not None:
        _save_atomic(
            args.out,
            args.force,
            filters=filters.astype(np.float32),
            source=np.array(Path(SOURCE).name),
            train_slices=np.array(TRAIN_SLICES, dtype=np.int16),
            test_range=np.array(TEST_RANGE, dtype=np.int16),
            lam=np.float32(args.lam),
            lam_lp=np.float32(args.lam_lp),
            n_iter=np.int32(args.n_iter),
            seed=np.int32(args.seed),
            time_s=np.float32(elapsed),
            objective=np.float32(obj[-1]),
        )
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return filters, info


if __name__ == "__main__":
    main()
