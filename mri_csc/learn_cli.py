"""``mri-csc learn-dict``: learn a CSC dictionary from NIfTI volumes or ``.npy`` images.

::

    mri-csc learn-dict /usr/share/mricron/templates/ch2.nii.gz --slices 35:66:10 115:146:10 \\
        --n-filters 36 --size 11 --n-iter 100 --out my_dict.npz

The output ``.npz`` holds ``filters`` (float32 ``(K, size, size)``, unit norm) and
the learning parameters; pass it to ``reconstruct(..., method="csc", dictionary=PATH)``
or ``--param dictionary=PATH``. Written atomically; an existing file is kept
unless ``--force``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "read_training_images", "parse_slices"]


def parse_slices(specs) -> list[int] | None:
    """``["35:66:10", "80", "100:103"]`` → sorted unique indices (``None`` when no spec)."""
    if not specs:
        return None
    out: set[int] = set()
    for spec in specs:
        try:
            parts = [int(p) if p else None for p in spec.split(":")]
        except ValueError:
            raise ValueError(f"--slices: expected INDEX or START:STOP[:STEP]; got {spec!r}") from None
        if len(parts) == 1 and parts[0] is not None:
            out.add(parts[0])
        elif len(parts) in (2, 3) and parts[0] is not None and parts[1] is not None:
            if len(parts) == 3 and parts[2] == 0:
                raise ValueError(f"--slices: the step of {spec!r} must not be 0")
            picked = range(*[p if p is not None else 1 for p in parts])
            if not picked:
                raise ValueError(f"--slices: {spec!r} selects no slice (START:STOP[:STEP] counts from START up to, "
                                 "not including, STOP)")
            out.update(picked)
        else:
            raise ValueError(f"--slices: expected INDEX or START:STOP[:STEP]; got {spec!r}")
    return sorted(out)


def read_training_images(paths, *, slices=None, axis: int = 2, shape=None) -> np.ndarray:
    """Stack training images ``(n, ny, nx)`` from NIfTI volumes and ``.npy`` arrays.

    NIfTI slices are read with :func:`mri_csc.sim.nifti_slice` (display
    orientation, max 1); ``.npy`` files hold one image ``(ny, nx)`` or a stack
    ``(n, ny, nx)``. All images must share one shape (give ``shape`` to resample
    NIfTI slices to it).
    """
    from .io.formats import _load_npy, load_nifti  # noqa: PLC0415
    from .sim import nifti_slice  # noqa: PLC0415

    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            n = load_nifti(path).shape[axis]
            idx = slices if slices is not None else range(n // 4, 3 * n // 4, max(1, n // 16))
            _check_indices(path, idx, n, f"slices along axis {axis}")
            images += [nifti_slice(path, index=i, axis=axis, shape=shape) for i in idx]
        elif name.endswith(".npy"):
            arr = _load_npy(path)
            if arr.ndim not in (2, 3):
                raise ValueError(f"{path}: expected an image (ny, nx) or a stack (n, ny, nx); got shape {arr.shape}")
            stack = arr[None] if arr.ndim == 2 else arr
            if slices is not None:
                _check_indices(path, slices, len(stack), "images in the stack")
            images += [np.abs(a).astype(np.float32) for a in (stack if slices is None else stack[slices])]
        else:
            raise ValueError(f"{path}: expected a NIfTI (.nii, .nii.gz) or .npy file")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"training images have different shapes {sorted(shapes)}; pass --shape NY NX (it resamples "
                         "NIfTI slices; .npy images are used as they are)")
    return np.stack(images)


def _check_indices(path, idx, n: int, what: str) -> None:
    """Refuse slice indices outside ``-n ... n-1`` by name (before any slice is read)."""
    bad = [i for i in idx if not -n <= i < n]
    if bad:
        raise ValueError(f"{path}: slice index(es) {bad} out of range for {n} {what}")


def add_parser(sub) -> None:
    p = sub.add_parser("learn-dict", help="learn a CSC dictionary from NIfTI volumes or .npy images")
    p.add_argument("images", nargs="+", help="NIfTI volumes (.nii/.nii.gz) or .npy images/stacks")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--slices", nargs="*", help="slice indices: INDEX or START:STOP[:STEP] (default: central half)")
    p.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="NIfTI slicing axis (RAS; 2 = axial)")
    p.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), help="resample NIfTI slices to this shape")
    p.add_argument("--n-filters", type=int, default=36)
    p.add_argument("--size", type=int, default=11)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--n-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args) -> int:
    from .io.atomic import atomic_path, check_writable  # noqa: PLC0415
    from .prior.dictionary import learn_dictionary  # noqa: PLC0415

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out: expected a .npz path; got {args.out!r}")
    if args.n_iter < 1:  # 0 would write the random starting filters as if they were learned
        raise ValueError(f"--n-iter must be >= 1; got {args.n_iter}")
    check_writable(out, args.force)  # before the long work
    images = read_training_images(args.images, slices=parse_slices(args.slices), axis=args.axis,
                                  shape=tuple(args.shape) if args.shape else None)
    print(f"learning {args.n_filters} filters of {args.size}x{args.size} from {len(images)} images "
          f"of {images.shape[1]}x{images.shape[2]} ({args.n_iter} iterations)")
    t0 = time.perf_counter()
    filters = learn_dictionary(images, args.n_filters, args.size, lam=args.lam, n_iter=args.n_iter,
                               seed=args.seed, device=args.device, show_pbar=True)
    elapsed = time.perf_counter() - t0
    from .backend import to_numpy  # noqa: PLC0415

    with atomic_path(out, args.force) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, filters=to_numpy(filters).astype(np.float32), lam=args.lam,
                                n_iter=args.n_iter, seed=args.seed, time_s=elapsed,
                                sources=np.array([str(p) for p in args.images]))
    print(f"wrote {out} in {elapsed:.1f} s")
    return 0
