"""Learn a CSC dictionary from several subjects, orientations and piecewise-smooth content (issue 12).

The shipped dictionary (``benchmarks/learn_dictionary.py``) is learned on eight axial slices of one
subject (Colin 27); its atoms are smooth, elongated and cortex-scale. This script builds a broader
training set, using only sources that ``benchmarks/quality.py`` does **not** hold out (its held-out
split uses MNI152, INIA19 and BART's geometric phantom; none of them is read here):

- Colin 27 (``ch2``, the tuning subject) axial slices (the shipped training slices) and coronal and
  sagittal slices;
  (mricron-data's other volumes are label atlases, not T1 images; ch2bet/ch2better are the same
  subject);
- synthetic piecewise-smooth images (``synthetic_images``): random ellipses, rotated rectangles and
  triangles, small disks, with random intensities over a smooth linear shading, so the set has step
  edges, corners and compact structures;

and a generic DCT set (``dct_dictionary``) as the floor to beat. Each image is zero-padded (or
resampled, see :func:`mri_csc.sim.phantoms.nifti_slice`) to 256², scaled to max 1 and high-passed
as the shipped dictionary's were. Run::

    python benchmarks/learn_mr_dictionary.py --n-iter 200 --out /tmp/dict_mr.npz
    python benchmarks/learn_mr_dictionary.py --dct 8 --out /tmp/dict_dct8.npz

then compare with ``python benchmarks/quality.py --split tuning --dictionary /tmp/dict_mr.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn_dictionary import _save_atomic, load_training_slices  # noqa: E402

from mri_csc.io.atomic import check_writable  # noqa: E402

TEMPLATES = "/usr/share/mricron/templates"
SIDE = 256
#: (file, RAS axis, slice indices): the brain slices besides the shipped axial ch2 ones
BRAIN_SLICES = (
    ("ch2.nii.gz", 1, (80, 120)),  # coronal
    ("ch2.nii.gz", 0, (60, 110)),  # sagittal
)
#: never read here: the held-out sources of benchmarks/quality.py
HELD_OUT = ("mni152", "inia19")


def brain_images(side=SIDE):
    """The shipped ch2 axial training slices plus :data:`BRAIN_SLICES`, each ``(side, side)``, max 1."""
    from mri_csc.sim.phantoms import nifti_slice

    out = [s / max(float(s.max()), 1e-12) for s in load_training_slices(pad_to=side)]
    for name, axis, indices in BRAIN_SLICES:
        assert not any(h in name.lower() for h in HELD_OUT), name
        for i in indices:
            out.append(nifti_slice(f"{TEMPLATES}/{name}", index=i, axis=axis, shape=(side, side)))
    return np.stack(out).astype(np.float32)


def synthetic_images(n, side=SIDE, seed=0):
    """``n`` random piecewise-smooth images ``(n, side, side)`` in [0, 1]: a smooth shaded base with
    ellipses, rotated rectangles, triangles and small disks painted over it (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:side * 1j, -1:1:side * 1j].astype(np.float32)
    out = np.zeros((n, side, side), np.float32)
    for i in range(n):
        img = np.zeros((side, side), np.float32)
        support = (xx / rng.uniform(0.7, 0.95)) ** 2 + (yy / rng.uniform(0.7, 0.95)) ** 2 <= 1
        img[support] = rng.uniform(0.1, 0.4)
        for _ in range(rng.integers(8, 16)):
            kind = rng.integers(0, 4)
            cx, cy = rng.uniform(-0.6, 0.6, 2)
            th = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
            v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
            if kind == 0:  # ellipse
                a, b = rng.uniform(0.03, 0.35, 2)
                m = (u / a) ** 2 + (v / b) ** 2 <= 1
            elif kind == 1:  # rotated rectangle
                a, b = rng.uniform(0.02, 0.3, 2)
                m = (np.abs(u) <= a) & (np.abs(v) <= b)
            elif kind == 2:  # triangle: three half-planes
                r = rng.uniform(0.05, 0.3)
                m = np.ones_like(support)
                for k in range(3):
                    ang = th + 2 * np.pi * k / 3
                    m &= (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang) <= r / 2
            else:  # small compact disk
                r = rng.uniform(0.01, 0.04)
                m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            shade = rng.uniform(0.2, 1.0) + rng.uniform(-0.15, 0.15) * u
            img = np.where(m & support, shade, img)
        out[i] = np.clip(img, 0, None) / max(float(img.max()), 1e-12)
    return out


def dct_dictionary(size=8):
    """The separable 2-D DCT-II basis of ``size × size`` (``size²`` unit-norm real filters, DC first)."""
    from scipy.fft import idctn

    basis = []
    for k in range(size):
        for m in range(size):
            e = np.zeros((size, size))
            e[k, m] = 1
            f = idctn(e, norm="ortho")
            basis.append(f / np.linalg.norm(f))
    return np.stack(basis).astype(np.float32)


def provenance(args) -> dict:
    """The shipped dictionary file's metadata keys (``mri_csc/data/DICTIONARY.md``)."""
    from learn_dictionary import TEST_RANGE, TRAIN_SLICES

    sources = [] if args.no_brains else ["ch2.nii.gz"]
    if args.n_synthetic:
        sources.append(f"synthetic piecewise-smooth x{args.n_synthetic} (seed {args.seed})")
    return {"source": np.array("; ".join(sources)), "train_slices": np.array(TRAIN_SLICES),
            "train_coronal": np.array(BRAIN_SLICES[0][2]), "train_sagittal": np.array(BRAIN_SLICES[1][2]),
            "test_range": np.array(TEST_RANGE), "held_out_never_read": np.array(", ".join(HELD_OUT)),
            "lam": np.array(args.lam), "n_iter": np.array(args.n_iter), "seed": np.array(args.seed)}


def main(argv=None):
    from mri_csc.prior.dictionary import learn_dictionary

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-filters", type=int, default=36)
    p.add_argument("--size", type=int, default=11)
    p.add_argument("--multiscale", default=None, help="e.g. 24x8,24x12 (count x size)")
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--n-iter", type=int, default=200)
    p.add_argument("--n-synthetic", type=int, default=8)
    p.add_argument("--no-brains", action="store_true", help="synthetic images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extend-shipped", action="store_true",
                   help="start from the shipped dictionary plus (n-filters - 36) random filters (size 11)")
    p.add_argument("--dct", type=int, default=0, help="write the DCT set of this size instead of learning")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    check_writable(args.out, overwrite=args.force)
    t0 = time.perf_counter()
    if args.dct:
        filters, meta = dct_dictionary(args.dct), {"kind": f"dct {args.dct}x{args.dct}"}
    else:
        parts = [] if args.no_brains else [brain_images()]
        if args.n_synthetic:
            parts.append(synthetic_images(args.n_synthetic, seed=args.seed))
        imgs = np.concatenate(parts)
        multiscale = None
        if args.multiscale:
            multiscale = [tuple(int(v) for v in item.split("x")) for item in args.multiscale.split(",")]
            args.n_filters, args.size = sum(n for n, _ in multiscale), max(s for _, s in multiscale)
        init = None
        if args.extend_shipped:
            from mri_csc.prior.dictionary import load_default_dictionary

            shipped = load_default_dictionary()
            n_new = args.n_filters - len(shipped)
            extra = np.random.default_rng(args.seed).standard_normal((n_new, *shipped.shape[1:]))
            extra /= np.linalg.norm(extra, axis=(1, 2), keepdims=True)
            init = np.concatenate([shipped, extra.astype(np.float32)])
            args.size = shipped.shape[1]
        filters, info = learn_dictionary(imgs, args.n_filters, args.size, lam=args.lam, n_iter=args.n_iter,
                                         seed=args.seed, multiscale=multiscale, init=init, return_info=True)
        meta = {"kind": "learned" + (" from the shipped one" if args.extend_shipped else ""),
                "n_images": int(imgs.shape[0]), "brain_slices": not args.no_brains,
                "n_synthetic": args.n_synthetic, "objective": float(info["objective"][-1])}
    elapsed = time.perf_counter() - t0
    command = "python benchmarks/learn_mr_dictionary.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta.update(command=command, time_s=elapsed, shape=list(filters.shape))
    print(json.dumps(meta))
    _save_atomic(args.out, args.force, filters=filters.astype(np.float32), meta=np.array(json.dumps(meta)),
                 **provenance(args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
