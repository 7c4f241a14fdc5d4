"""Learn the shipped 3-D CSC dictionary (``mri_csc/data/default_dictionary_3d.npz``) from T1 blocks.

Source: the Colin 27 ``ch2`` T1 template of mricron-data (BSD-3), the subject the 2-D dictionary
was learned on (``benchmarks/learn_dictionary.py``). Training blocks are ``--block`` voxels on a
side, taken from axial (third axis, RAS) ranges below and above the reserved test range
``TEST_RANGE`` (70–110, never read here, as for the 2-D dictionary), on a grid across the
brain; none of ``benchmarks/quality.py``'s held-out sources (MNI152, INIA19, BART's phantoms)
is read. Each block is scaled to max 1 and high-passed in 3-D (Tikhonov, ``lam_lp`` = 5) by
:func:`mri_csc.prior.dictionary.learn_dictionary` (``ndim=3``).

    python benchmarks/learn_dictionary_3d.py --out mri_csc/data/default_dictionary_3d.npz --force

Prints the time and objective; writes the npz atomically (never overwrites without ``--force``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_dictionary import SOURCE, TEST_RANGE, _save_atomic  # noqa: E402

from mri_csc.io.atomic import check_writable  # noqa: E402
from mri_csc.prior.dictionary import learn_dictionary  # noqa: E402

#: axial ranges the blocks start in (inclusive starts; blocks end before TEST_RANGE or start after it)
Z_STARTS = (30, 112)


def training_blocks(block: int, path: str = SOURCE):
    """``(n, block, block, block)`` float32 blocks of ch2 with enough brain in them (> 30 % above 10 % of
    the volume's maximum), outside the reserved axial test range."""
    import nibabel as nib

    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    out = []
    for z0 in Z_STARTS:
        z1 = z0 + block
        assert z1 - 1 < TEST_RANGE[0] or z0 > TEST_RANGE[1], "training block in the reserved test range"
        for x0 in range(20, vol.shape[0] - block - 19, block):
            for y0 in range(20, vol.shape[1] - block - 19, block):
                b = vol[x0:x0 + block, y0:y0 + block, z0:z1]
                if (b > 0.1 * vol.max()).mean() > 0.3:
                    out.append(np.transpose(b, (2, 1, 0)))  # (z, y, x): the image axes of a volume
    return np.stack(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-filters", type=int, default=16)
    p.add_argument("--size", type=int, default=7)
    p.add_argument("--block", type=int, default=36)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--n-iter", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    check_writable(args.out, args.force)
    blocks = training_blocks(args.block)
    t0 = time.perf_counter()
    filters, info = learn_dictionary(blocks, args.n_filters, args.size, lam=args.lam, n_iter=args.n_iter,
                                     seed=args.seed, ndim=3, return_info=True)
    meta = {"source": SOURCE, "n_blocks": int(blocks.shape[0]), "block": args.block, "z_starts": list(Z_STARTS),
            "test_range": list(TEST_RANGE), "lam": args.lam, "n_iter": args.n_iter, "seed": args.seed,
            "objective": float(info["objective"][-1]), "time_s": time.perf_counter() - t0,
            "command": "python benchmarks/learn_dictionary_3d.py "
                       + " ".join(argv if argv is not None else sys.argv[1:])}
    print(json.dumps(meta))
    _save_atomic(args.out, args.force, filters=filters.astype(np.float32), meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
