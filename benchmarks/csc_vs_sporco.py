"""mri_csc's CSC sparse coding and dictionary learning against SPORCO, side by side.

    python benchmarks/csc_vs_sporco.py [--quick]

Part 1, sparse coding (ConvBPDN): the same high-passed T1 slice, the same
36 x 11x11 dictionary, the same lambda, the same number of ADMM iterations
(tolerance 0), relaxation 1.8 and SPORCO's default rho/residual balancing.
Equal footing on the boundary: "circular" (ours) vs ``cbpdn.ConvBPDN``
(circular); "pad" (ours, codes on a padded grid, output cropped) vs
``cbpdn.ConvBPDNMaskDcpl`` given the same padded grid with a 0/1 mask on the
image window. Objectives are all re-evaluated by one function (ours, with
SPORCO's uncentred codes rolled by f//2) so they are comparable.

Part 2, dictionary learning: the same images, initial dictionary, lambda and
number of outer iterations for ``learn_dictionary`` and SPORCO's
``ConvBPDNDictLearn`` (ADMM codes; consensus ``cns`` and default ``pgm``
dictionary steps). The dictionaries are compared by the objective a common
sparse coder (ours, 150 iterations) reaches with each on the training images.

Times are the best of ``--repeat`` runs (other jobs share the CPUs). Writes
benchmarks/results/csc_vs_sporco.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import numpy as np
from common import best_of

from mri_csc.prior.dictionary import learn_dictionary, load_default_dictionary, prepare_training_images
from mri_csc.prior.sparse_coding import ConvSparseCoder

SOURCE = "/usr/share/mricron/templates/ch2.nii.gz"


def _slices(zs, pad_to=None):
    import nibabel as nib

    vol = np.asarray(nib.load(SOURCE).dataobj, dtype=np.float32)
    out = []
    for z in zs:
        sl = vol[:, :, z]
        if pad_to:
            py, px = pad_to - sl.shape[0], pad_to - sl.shape[1]
            sl = np.pad(sl, ((py // 2, py - py // 2), (px // 2, px - px // 2)))
        out.append(sl)
    return np.stack(out)


@contextlib.contextmanager
def _sporco_threads(n):
    """SPORCO's pyFFTW thread count (None: its default, all cores)."""
    import sporco.fft as sfft

    old = sfft.pyfftw_threads
    if n is not None:
        sfft.pyfftw_threads = n
    try:
        yield
    finally:
        sfft.pyfftw_threads = old


def _tlabel(threads):
    return "fftw-all" if threads is None else f"fftw-{threads}thr"


def sparse_coding(d, s, lam, n_iter, repeat):
    from sporco.admm import cbpdn

    f = d.shape[-1]
    dsp = np.transpose(d, (1, 2, 0))
    rows = []
    ref = ConvSparseCoder(d, s.shape, lam, boundary="circular", dtype=np.float64)

    def roll(z):  # SPORCO codes (ny, nx, K) -> ours (K, ny, nx), centred filters
        return np.roll(np.moveaxis(np.squeeze(z), -1, 0), (f // 2, f // 2), axis=(1, 2))

    def ours(boundary):
        c = ConvSparseCoder(d, s.shape, lam, boundary=boundary)
        c.solve(s, max_iter=n_iter, tol=0)
        return c

    t, c = best_of(lambda: ours("circular"), repeat)
    rows.append(("ours circular f32", t, ref.objective(s.astype(np.float64), c.codes.astype(np.float64))))
    for dt, threads in ((np.float64, None), (np.float64, 1), (np.float32, 1)):
        opt = cbpdn.ConvBPDN.Options(
            {"Verbose": False, "MaxMainIter": n_iter, "RelStopTol": 0.0, "RelaxParam": 1.8}
        )

        def run_sp(dt=dt, opt=opt):
            b = cbpdn.ConvBPDN(dsp.astype(dt), s.astype(dt), lam, opt)
            b.solve()
            return b

        with _sporco_threads(threads):
            t, b = best_of(run_sp, repeat)
        rows.append(
            (
                f"SPORCO ConvBPDN {np.dtype(dt).name} {_tlabel(threads)}",
                t,
                ref.objective(s.astype(np.float64), roll(b.Y).astype(np.float64)),
            )
        )
    # padded / masked
    t, c = best_of(lambda: ours("pad"), repeat)
    refp = ConvSparseCoder(d, s.shape, lam, dtype=np.float64)
    rows.append(("ours pad f32", t, refp.objective(s.astype(np.float64), c.codes.astype(np.float64))))
    P = c.code_shape
    spad = np.zeros(P)
    w = np.zeros(P)
    win = (slice(f - 1, f - 1 + s.shape[0]), slice(f - 1, f - 1 + s.shape[1]))
    spad[win] = s
    w[win] = 1
    for dt, threads in ((np.float64, None), (np.float64, 1)):
        opt = cbpdn.ConvBPDNMaskDcpl.Options(
            {"Verbose": False, "MaxMainIter": n_iter, "RelStopTol": 0.0, "RelaxParam": 1.8}
        )

        def run_spm(dt=dt, opt=opt):
            b = cbpdn.ConvBPDNMaskDcpl(dsp.astype(dt), spad.astype(dt), lam, w.astype(dt), opt)
            b.solve()
            return b

        with _sporco_threads(threads):
            t, b = best_of(run_spm, repeat)
        # SPORCO's window at f-1 with uncentred filters == ours at (f-1)//2 with centred ones:
        # the same code index means the same atom position, no shift needed
        zc = np.moveaxis(np.squeeze(b.getcoef()), -1, 0).astype(np.float64)
        rows.append(
            (
                f"SPORCO MaskDcpl {np.dtype(dt).name} {_tlabel(threads)}",
                t,
                refp.objective(s.astype(np.float64), zc),
            )
        )
    return rows


def dict_learning(imgs, K, f, lam, n_iter, repeat):
    from sporco.dictlrn import cbpdndl

    s = prepare_training_images(imgs)
    rng = np.random.default_rng(0)
    d0 = rng.standard_normal((K, f, f)).astype(np.float32)
    d0 /= np.linalg.norm(d0.reshape(K, -1), axis=1)[:, None, None]
    rows = []

    def common_obj(d):
        c = ConvSparseCoder(d.astype(np.float32), s.shape[1:], lam, boundary="circular")
        c.solve(s, max_iter=150, tol=0)
        return c.objective(s)

    t, (dl, info) = best_of(
        lambda: learn_dictionary(imgs, K, f, lam=lam, n_iter=n_iter, init=d0, return_info=True), repeat
    )
    rows.append(("ours learn_dictionary (cns)", t, info["objective"][-1], common_obj(dl)))
    S = np.transpose(s, (1, 2, 0)).astype(np.float64)
    for dmethod in ("cns", "pgm"):
        opt = cbpdndl.ConvBPDNDictLearn.Options(
            {"Verbose": False, "MaxMainIter": n_iter}, xmethod="admm", dmethod=dmethod
        )

        def run(dmethod=dmethod, opt=opt):
            b = cbpdndl.ConvBPDNDictLearn(
                np.transpose(d0, (1, 2, 0)).astype(np.float64), S, lam, opt, xmethod="admm", dmethod=dmethod
            )
            b.solve()
            return b

        with _sporco_threads(1):
            t, b = best_of(run, repeat)
        dsp = np.moveaxis(np.squeeze(b.getdict()), -1, 0)
        dsp = dsp / np.maximum(np.linalg.norm(dsp.reshape(K, -1), axis=1), 1e-12)[:, None, None]
        rows.append(
            (
                f"SPORCO ConvBPDNDictLearn ({dmethod}) 1thr",
                t,
                float(b.getitstat().ObjFun[-1]),
                common_obj(dsp),
            )
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller problems")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--lam", type=float, default=0.05)
    args = p.parse_args()
    out = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus (other jobs inflate times)"
    )

    # ---------------- part 1
    n_iter = 50 if args.quick else 100
    try:
        d = load_default_dictionary()
        dname = "default dictionary"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        d = rng.standard_normal((36, 11, 11)).astype(np.float32)
        d /= np.linalg.norm(d.reshape(36, -1), axis=1)[:, None, None]
        dname = "random dictionary"
    s = prepare_training_images(_slices([90], pad_to=None if args.quick else 256))[0]
    rows = sparse_coding(d, s, args.lam, n_iter, args.repeat)
    print(
        f"\nSparse coding: {d.shape[0]} x {d.shape[1]}x{d.shape[2]} ({dname}), image {s.shape}, "
        f"lam {args.lam}, {n_iter} iterations, best of {args.repeat}"
    )
    print(f"{'method':36s} {'time s':>8s} {'objective':>12s} {'obj/ours':>9s} {'speed-up':>9s}")
    base = {"circular": rows[0], "pad": rows[4]}
    for name, t, obj in rows:
        b = base["pad" if (" pad" in name or "Mask" in name) else "circular"]
        print(f"{name:36s} {t:8.2f} {obj:12.5g} {obj / b[2]:9.4f} {t / b[1]:8.2f}x")
    out["sparse_coding"] = {
        "dictionary": dname,
        "image_shape": list(s.shape),
        "lam": args.lam,
        "n_iter": n_iter,
        "rows": [{"method": n, "time_s": t, "objective": o} for n, t, o in rows],
    }

    # ---------------- part 2
    K, f = (16, 8) if args.quick else (36, 11)
    n_img, n_dl = (2, 20) if args.quick else (4, 50)
    zs = [35, 55, 125, 145][:n_img]
    imgs = _slices(zs)[:, ::2, ::2]  # 91 x 109, to keep SPORCO to a couple of minutes
    rows = dict_learning(imgs, K, f, 0.1, n_dl, 1)
    print(
        f"\nDictionary learning: {K} x {f}x{f}, {n_img} slices of {imgs.shape[1:]}, lam 0.1, "
        f"{n_dl} iterations, same random initial dictionary"
    )
    print(f"{'method':40s} {'time s':>8s} {'own obj':>10s} {'common obj':>11s} {'time/ours':>10s}")
    for name, t, obj, cobj in rows:
        print(f"{name:40s} {t:8.2f} {obj:10.5g} {cobj:11.5g} {t / rows[0][1]:9.2f}x")
    out["loadavg_end"] = os.getloadavg()
    out["dict_learning"] = {
        "K": K,
        "size": f,
        "n_images": n_img,
        "image_shape": list(imgs.shape[1:]),
        "n_iter": n_dl,
        "rows": [{"method": n, "time_s": t, "objective": o, "common_objective": c} for n, t, o, c in rows],
    }
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / "csc_vs_sporco.json").write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
