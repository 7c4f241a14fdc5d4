"""mri_csc speed, side by side with SigPy, BART and SPORCO, in one run on one machine.

    python benchmarks/speed.py                 # everything (~8 min on 2 shared cores)
    python benchmarks/speed.py --repeat 5
    python benchmarks/speed.py --only recon    # or: coding, dictlearn, memory (comma-separated)

1. Reconstruction of a 256² brain slice, 8 birdcage coils, Poisson R=4
   (``mri_csc.sim.make_dataset("brain", (256, 256), 8, seed=0)``): mri_csc CSC with
   its defaults; SigPy ``L1WaveletRecon`` and ``TotalVariationRecon`` at 100
   iterations through ``mri_csc.reconstruct`` and called directly (on the same
   scaled data, to show the wrapper's overhead); BART ``pics`` ℓ1-wavelet and TV
   (``-i 100``) when ``bart`` is installed. Repeats are interleaved so that load
   from other jobs hits every method alike; the table shows medians and the ratio
   mri_csc CSC / peer. The CSC time per outer iteration is compared with the FFT
   floor (see ``common.fft_floor``) measured in the same run.
2. Sparse coding: ``ConvSparseCoder`` against SPORCO ``cbpdn.ConvBPDN``
   (circular boundary) and ``cbpdn.ConvBPDNMaskDcpl`` (our default padded
   boundary), same slice, dictionary (the shipped default), λ, relaxation and
   ρ rules, float32 for both. "Same objective": SPORCO runs ``--coding-iter``
   iterations; ours runs the fewest iterations whose objective is at most
   SPORCO's; both objectives are evaluated by one function.
3. Dictionary learning: ``learn_dictionary`` against SPORCO ``ConvBPDNDictLearn``
   (ADMM codes, consensus ``cns`` dictionary step, as ours) on the same
   high-passed slices, initial dictionary and λ; SPORCO runs ``--dl-iter``
   iterations, ours the fewest reaching SPORCO's final objective (both evaluated
   as ½‖Σ d_k*z_k − s‖² + λ‖z‖₁ at the final dictionary and codes).
4. Peak memory (``VmHWM``, the peak RSS) of a 256², 8-coil CSC (default dictionary) reconstruction in
   a fresh interpreter, minus the same interpreter's peak before the solve.

Writes ``benchmarks/results/speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    RESULTS,
    csc_floor_counts,
    fft_floor,
    fmt_table,
    interleaved,
    machine_info,
    peak_rss_subprocess,
    write_json,
)

SHAPE = (256, 256)
COILS = 8


def dataset(shape=SHAPE, coils=COILS):
    from mri_csc.sim import make_dataset

    return make_dataset("brain", shape=shape, n_coils=coils, mask="poisson", accel=4, seed=0)


# --------------------------------------------------------------------------- 1. reconstruction
def _with_env(fn, **env):
    def run():
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return fn()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return run


def bench_recon(repeat: int) -> dict:
    import sigpy as sp
    from sigpy.mri.app import L1WaveletRecon, TotalVariationRecon

    import mri_csc
    from mri_csc.recon.bart import bart_available
    from mri_csc.recon.problem import make_problem

    ds = dataset()
    prob = make_problem(ds.kspace, ds.maps, ds.mask)
    k, maps, mask = prob.kspace, prob.maps, prob.mask
    lam = 0.005
    fns = {
        "csc (defaults)": lambda: mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="csc"),
        "sigpy l1wavelet (mri_csc)": lambda: mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask,
                                                                 method="l1wavelet", max_iter=100),
        "sigpy l1wavelet (direct)": lambda: L1WaveletRecon(k, maps, lam, weights=mask, max_iter=100,
                                                           device=sp.cpu_device, show_pbar=False).run(),
        "sigpy tv (mri_csc)": lambda: mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="tv",
                                                          max_iter=100),
        "sigpy tv (direct)": lambda: TotalVariationRecon(k, maps, lam, weights=mask, max_iter=100,
                                                         device=sp.cpu_device, show_pbar=False).run(),
    }
    if bart_available() is None:
        fns["bart pics l1 (-i 100)"] = lambda: mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask,
                                                                   method="bart-l1wavelet", max_iter=100)
        fns["bart pics tv (-i 100)"] = lambda: mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask,
                                                                   method="bart-tv", max_iter=100)
        # the wrapper runs BART with OMP_NUM_THREADS = all cores unless set; on a loaded shared
        # machine OpenMP spin-waits can make that several times slower than one thread: show both
        fns["bart pics l1 (-i 100, 1 thread)"] = _with_env(fns["bart pics l1 (-i 100)"], OMP_NUM_THREADS="1")
        fns["bart pics tv (-i 100, 1 thread)"] = _with_env(fns["bart pics tv (-i 100)"], OMP_NUM_THREADS="1")
    # warm-up: one short run of each path (imports, FFT plans, dictionary load), not timed
    mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="csc", max_iter=2)
    fns_warm = {n: f for n, f in fns.items() if not n.startswith("csc")}
    for f in fns_warm.values():
        f()
    t = interleaved(fns, repeat=repeat, warmup=False)
    # CSC per outer iteration, from the histories of every timed run
    csc_res = t["csc (defaults)"]["result"]
    hist_t = [h["time"] for h in csc_res.history]
    per_iter = statistics.median(np.diff(hist_t)) if len(hist_t) > 1 else float("nan")
    n_filters, filter_size = _default_dictionary_shape()
    floor = fft_floor(SHAPE, COILS, n_filters, filter_size, **csc_floor_counts(csc_res))
    ref = np.abs(ds.image)
    rows, out = [], {}
    csc_med = t["csc (defaults)"]["median"]
    for name, v in t.items():
        res = v["result"]
        img = res.image if hasattr(res, "image") else res
        img = np.asarray(img)
        nrmse = float(np.linalg.norm(np.abs(img) * (ds.support) - ref * ds.support)
                      / np.linalg.norm(ref * ds.support))
        # direct SigPy apps solve the scaled problem: compare after undoing the scale
        if not hasattr(res, "image"):
            nrmse = float(np.linalg.norm(np.abs(img) * prob.scale * ds.support - ref * ds.support)
                          / np.linalg.norm(ref * ds.support))
        ratio = csc_med / v["median"]
        rows.append((name, v["median"], v["min"], len(v["times"]), ratio, nrmse))
        out[name] = {"times_s": v["times"], "median_s": v["median"], "csc_over_this": ratio, "nrmse": nrmse}
    print(f"\n## Reconstruction: brain {SHAPE[0]}x{SHAPE[1]}, {COILS} coils, Poisson R=4 "
          f"(median of {repeat}, interleaved)")
    print(fmt_table(rows, ["method", "median s", "min s", "n", "csc / this", "NRMSE (mag, support)"]))
    # time to quality: one more CSC run records the NRMSE after every outer iteration (callback,
    # untimed work excluded from the history clock is small: one norm on the image)
    sup = ds.support
    refn = float(np.linalg.norm(ref * sup))
    trace = []

    def cb(rec, x):
        err = float(np.linalg.norm(np.abs(np.asarray(x)) * prob.scale * sup - ref * sup)) / refn
        trace.append((rec["iter"] + 1, rec["time"], err))

    mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="csc", callback=cb)
    quality = {}
    for peer in ("sigpy l1wavelet (mri_csc)", "sigpy tv (mri_csc)", "bart pics l1 (-i 100, 1 thread)",
                 "bart pics tv (-i 100, 1 thread)"):
        if peer not in out:
            continue
        hit = next(((it, tt) for it, tt, e in trace if e <= out[peer]["nrmse"]), None)
        quality[peer] = {"peer_nrmse": out[peer]["nrmse"], "peer_s": out[peer]["median_s"],
                         "csc_iters": None if hit is None else hit[0],
                         "csc_s_from_history": None if hit is None else hit[1]}
        if hit is None:
            print(f"CSC never reaches {peer}'s NRMSE {out[peer]['nrmse']:.4f} in {len(trace)} iterations "
                  f"(best {min(e for *_, e in trace):.4f})")
        else:
            print(f"CSC reaches {peer}'s NRMSE {out[peer]['nrmse']:.4f} after {hit[0]} outer iterations, "
                  f"{hit[1]:.2f} s of solver time (+ setup): {hit[1] / out[peer]['median_s']:.2f}x {peer}'s time")
    print(f"\nCSC: {len(csc_res.history)} outer iterations, median {per_iter * 1e3:.0f} ms each; "
          f"FFT floor {floor['floor_fft_s'] * 1e3:.0f} ms (FFTs only), {floor['floor_s'] * 1e3:.0f} ms "
          f"(with minimal element-wise passes): iteration = {per_iter / floor['floor_fft_s']:.2f}x / "
          f"{per_iter / floor['floor_s']:.2f}x the floor")
    print(f"  floor parts: coil FFT pair {floor['coil_fft_pair_s'] * 1e3:.1f} ms x {floor['cg_normals']}, "
          f"filter-bank FFT pair {floor['code_fft_pair_s'] * 1e3:.1f} ms x {floor['csc_iter']} "
          f"(codes {floor['code_shape']}, {floor['channels']} channel(s) x {n_filters} filters)")
    return {"methods": out, "csc_iter_s": per_iter, "floor": floor, "time_to_quality": quality,
            "csc_nrmse_trace": trace,
            "csc_iter_over_floor_fft": per_iter / floor["floor_fft_s"],
            "csc_iter_over_floor": per_iter / floor["floor_s"], "scale": prob.scale}


# --------------------------------------------------------------------------- 2. sparse coding
def _highpassed_slice(shape=SHAPE):
    from mri_csc.prior.dictionary import prepare_training_images
    from mri_csc.sim.phantoms import brain_slice

    return prepare_training_images(brain_slice(shape=shape))[0].astype(np.float32)


def bench_coding(repeat: int, n_sp: int, lam: float) -> dict:
    from sporco.admm import cbpdn

    from mri_csc.prior.dictionary import load_default_dictionary
    from mri_csc.prior.sparse_coding import ConvSparseCoder

    d = load_default_dictionary()
    K, f = d.shape[0], d.shape[-1]
    s = _highpassed_slice()
    dsp = np.ascontiguousarray(np.transpose(d, (1, 2, 0)))
    c = f // 2
    out, rows = {}, []
    for boundary in ("circular", "pad"):
        ref = ConvSparseCoder(d, s.shape, lam, boundary=boundary, dtype=np.float64)

        def objective(z, ref=ref):
            return ref.objective(s.astype(np.float64), z.astype(np.float64))

        if boundary == "circular":
            opt = cbpdn.ConvBPDN.Options({"Verbose": False, "MaxMainIter": n_sp, "RelStopTol": 0.0,
                                          "RelaxParam": 1.8})

            def run_sp(opt=opt):
                b = cbpdn.ConvBPDN(dsp, s, lam, opt)
                b.solve()
                return b

            def sp_codes(b):
                return np.roll(np.moveaxis(np.squeeze(b.getcoef()), -1, 0), (c, c), axis=(1, 2))

            sp_name = "SPORCO cbpdn.ConvBPDN"
        else:
            P = ConvSparseCoder(d, s.shape, lam).code_shape
            spad = np.zeros(P, np.float32)
            w = np.zeros(P, np.float32)
            win = (slice(f - 1, f - 1 + s.shape[0]), slice(f - 1, f - 1 + s.shape[1]))
            spad[win] = s
            w[win] = 1
            opt = cbpdn.ConvBPDNMaskDcpl.Options({"Verbose": False, "MaxMainIter": n_sp, "RelStopTol": 0.0,
                                                  "RelaxParam": 1.8})

            def run_sp(opt=opt, spad=spad, w=w):
                b = cbpdn.ConvBPDNMaskDcpl(dsp, spad, lam, w, opt)
                b.solve()
                return b

            def sp_codes(b):
                # SPORCO's window starts at f-1 with uncentred filters, ours at (f-1)//2 with centred
                # ones: pixel i is sum_m d[m] z[f-1+i-m] in both, so the code grids coincide (no roll)
                return np.moveaxis(np.squeeze(b.getcoef()), -1, 0)

            sp_name = "SPORCO cbpdn.ConvBPDNMaskDcpl"
        b = run_sp()
        target = objective(sp_codes(b))
        # the fewest iterations of ours reaching SPORCO's objective (traced one step at a time)
        tr = ConvSparseCoder(d, s.shape, lam, boundary=boundary)
        n_ours, trace = None, []
        for it in range(1, 3 * n_sp + 1):
            tr.solve(s, max_iter=1, tol=0, warm=True, copy=False)
            trace.append(objective(tr.codes))
            if trace[-1] <= target:
                n_ours = it
                break
        if n_ours is None:
            n_ours = 3 * n_sp

        def run_ours(n=n_ours, boundary=boundary):
            cc = ConvSparseCoder(d, s.shape, lam, boundary=boundary)
            cc.solve(s, max_iter=n, tol=0)
            return cc

        def run_ours_same(boundary=boundary):
            cc = ConvSparseCoder(d, s.shape, lam, boundary=boundary)
            cc.solve(s, max_iter=n_sp, tol=0)
            return cc

        t = interleaved({"ours": run_ours, "ours_same_iter": run_ours_same, "sporco": run_sp}, repeat=repeat)
        obj_ours = objective(t["ours"]["result"].codes)
        obj_same = objective(t["ours_same_iter"]["result"].codes)
        sp_t, o_t, os_t = t["sporco"]["median"], t["ours"]["median"], t["ours_same_iter"]["median"]
        rows.append((f"{boundary}: mri_csc ConvSparseCoder", n_ours, o_t, obj_ours, sp_t / o_t))
        rows.append((f"{boundary}: mri_csc, same iterations", n_sp, os_t, obj_same, sp_t / os_t))
        rows.append((f"{boundary}: {sp_name}", n_sp, sp_t, target, 1.0))
        out[boundary] = {"sporco": sp_name, "sporco_iter": n_sp, "sporco_s": sp_t, "sporco_objective": target,
                         "ours_iter_to_target": n_ours, "ours_s": o_t, "ours_objective": obj_ours,
                         "ours_same_iter_s": os_t, "ours_same_iter_objective": obj_same,
                         "speedup_same_objective": sp_t / o_t, "speedup_same_iter": sp_t / os_t,
                         "sporco_times": t["sporco"]["times"], "ours_times": t["ours"]["times"]}
    print(f"\n## Sparse coding (ConvBPDN): high-passed brain {s.shape[0]}x{s.shape[1]}, default dictionary "
          f"{K} x {f}x{f}, lam {lam}, float32 (median of {repeat}, interleaved)")
    print(fmt_table(rows, ["solver", "iterations", "median s", "objective", "SPORCO / this"]))
    out.update({"lam": lam, "image_shape": list(s.shape), "n_filters": K, "filter_size": f})
    return out


# --------------------------------------------------------------------------- 3. dictionary learning
def bench_dictlearn(repeat: int, n_sp: int, lam: float, K: int, f: int, n_img: int, size: int) -> dict:
    from sporco.dictlrn import cbpdndl

    from mri_csc.prior.conv import ConvSynthesis
    from mri_csc.prior.dictionary import learn_dictionary, prepare_training_images
    from mri_csc.sim.phantoms import brain_slice

    # training-range slices of the ch2 template (disjoint from the evaluation range 70-110)
    zs = (45, 55, 125, 135, 35, 65, 115, 145)[:n_img]
    imgs = np.stack([brain_slice(index=z, shape=(size, size)) for z in zs])
    s = prepare_training_images(imgs)
    rng = np.random.default_rng(0)
    d0 = rng.standard_normal((K, f, f)).astype(np.float32)
    d0 /= np.linalg.norm(d0.reshape(K, -1), axis=1)[:, None, None]
    c = f // 2
    S = np.ascontiguousarray(np.transpose(s, (1, 2, 0)))

    def common_objective(d, z):
        op = ConvSynthesis(d.astype(np.float64), s.shape[1:], boundary="circular")
        res = np.stack([op(zi) for zi in z.astype(np.float64)]) - s
        return float(0.5 * (res**2).sum() + lam * np.abs(z).sum())

    opt = cbpdndl.ConvBPDNDictLearn.Options({"Verbose": False, "MaxMainIter": n_sp}, xmethod="admm",
                                            dmethod="cns")

    def run_sp():
        b = cbpdndl.ConvBPDNDictLearn(np.ascontiguousarray(np.transpose(d0, (1, 2, 0))), S, lam, opt,
                                      xmethod="admm", dmethod="cns")
        b.solve()
        return b

    b = run_sp()
    dsp = np.moveaxis(np.squeeze(b.getdict()), -1, 0)
    zsp = np.moveaxis(np.squeeze(b.getcoef(), axis=2), (-2, -1), (0, 1))  # (ny, nx, 1, C, K) -> (C, K, ny, nx)
    zsp = np.roll(zsp, (c, c), axis=(-2, -1))
    target = common_objective(dsp, zsp)
    n_max = 3 * n_sp
    _, info = learn_dictionary(imgs, K, f, lam=lam, n_iter=n_max, init=d0, return_info=True)
    hist = info["objective"]
    n_ours = next((i + 1 for i, o in enumerate(hist) if o <= target), n_max)

    def run_ours(n=n_ours):
        return learn_dictionary(imgs, K, f, lam=lam, n_iter=n, init=d0, return_info=True)

    def run_ours_same():
        return learn_dictionary(imgs, K, f, lam=lam, n_iter=n_sp, init=d0, return_info=True)

    t = interleaved({"ours": run_ours, "ours_same_iter": run_ours_same, "sporco": run_sp}, repeat=repeat,
                    warmup=False)
    sp_t, o_t, os_t = t["sporco"]["median"], t["ours"]["median"], t["ours_same_iter"]["median"]
    obj_ours = t["ours"]["result"][1]["objective"][-1]
    obj_same = t["ours_same_iter"]["result"][1]["objective"][-1]
    rows = [("mri_csc learn_dictionary (cns)", n_ours, o_t, obj_ours, sp_t / o_t),
            ("mri_csc, same iterations", n_sp, os_t, obj_same, sp_t / os_t),
            ("SPORCO ConvBPDNDictLearn (admm/cns)", n_sp, sp_t, target, 1.0)]
    print(f"\n## Dictionary learning: {n_img} high-passed brain slices {size}x{size}, {K} x {f}x{f}, lam {lam}, "
          f"same random initial dictionary (median of {repeat}, interleaved)")
    print(fmt_table(rows, ["solver", "iterations", "median s", "objective", "SPORCO / this"]))
    if n_ours == n_max and hist[-1] > target:
        print(f"  (ours did not reach SPORCO's objective within {n_max} iterations: {hist[-1]:.5g} > {target:.5g})")
    return {"n_images": n_img, "image_size": size, "n_filters": K, "filter_size": f, "lam": lam,
            "sporco_iter": n_sp, "sporco_s": sp_t, "sporco_objective": target, "ours_iter_to_target": n_ours,
            "ours_s": o_t, "ours_objective": obj_ours, "ours_same_iter_s": os_t,
            "ours_same_iter_objective": obj_same, "speedup_same_objective": sp_t / o_t,
            "speedup_same_iter": sp_t / os_t, "reached": bool(hist[n_ours - 1] <= target)}


def _default_dictionary_shape():
    """(number of filters, filter side) of the shipped 2-D dictionary."""
    from mri_csc.prior.dictionary import load_default_dictionary

    d = load_default_dictionary()
    return int(d.shape[0]), int(d.shape[-1])


# --------------------------------------------------------------------------- 4. memory
MEMORY_CODE = """
import tracemalloc
import numpy as np, mri_csc
with np.load({path!r}) as f:
    k, maps, mask = f["kspace"], f["maps"], f["mask"]
import mri_csc.prior._kernels  # numba and the CPU kernels, loaded by the first solve anyway: not arrays
# --- measured ---
tracemalloc.start()
r = mri_csc.reconstruct(k, maps, mask=mask, method="csc", max_iter=12)  # past the first blind-CSC step (10)
print("TRACED", tracemalloc.get_traced_memory()[1])
"""


def bench_memory() -> dict:
    """Peak memory of a CSC reconstruction in a fresh interpreter that only loads the data from disk.

    (Building the brain data set itself peaks higher than the reconstruction, so the data are
    made here and saved; the child process only imports mri_csc and loads arrays.)
    """
    import tempfile

    ds = dataset()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.npz")
        np.savez(path, kspace=ds.kspace, maps=ds.maps, mask=ds.mask)
        m = peak_rss_subprocess(MEMORY_CODE.format(path=path))
    k, f = _default_dictionary_shape()
    print(f"\n## Peak memory: CSC 256x256, 8 coils, {k} x {f}x{f} filters (the default dictionary), in a fresh "
          f"interpreter that loads the data from disk: peak RSS {m['peak_rss_mib']:.0f} MiB for the whole process "
          f"(interpreter + imports + data: {m['baseline_rss_mib']:.0f} MiB; growth {m['recon_rss_mib']:.0f} MiB); "
          f"peak of the arrays the reconstruction allocates (tracemalloc): {m['traced_peak_mib']:.0f} MiB")
    return m


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default="recon,coding,dictlearn,memory")
    p.add_argument("--coding-iter", type=int, default=100)
    p.add_argument("--coding-lam", type=float, default=0.05)
    p.add_argument("--dl-iter", type=int, default=50)
    p.add_argument("--dl-lam", type=float, default=0.1)
    p.add_argument("--dl-filters", type=int, default=36)
    p.add_argument("--dl-size", type=int, default=11)
    p.add_argument("--dl-images", type=int, default=4)
    p.add_argument("--dl-image-size", type=int, default=128)
    args = p.parse_args(argv)
    parts = set(args.only.split(","))
    t0 = time.perf_counter()
    info = machine_info()
    print(f"machine: {info['nproc']} cpus ({info['cpu']}), numpy {info['numpy']}, scipy {info['scipy']}, "
          f"sigpy {info['sigpy']}, sporco {info['sporco']} with {info['sporco_fft']}, bart {info['bart']}; "
          f"load {info['loadavg']}")
    out = {"machine": info, "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None
                                                                               else argv)}
    if "recon" in parts:
        out["recon"] = bench_recon(args.repeat)
    if "coding" in parts:
        out["sparse_coding"] = bench_coding(args.repeat, args.coding_iter, args.coding_lam)
    if "dictlearn" in parts:
        out["dictionary_learning"] = bench_dictlearn(args.repeat, args.dl_iter, args.dl_lam, args.dl_filters,
                                                     args.dl_size, args.dl_images, args.dl_image_size)
    if "memory" in parts:
        out["memory"] = bench_memory()
    out["machine"]["loadavg_end"] = os.getloadavg()
    out["total_s"] = time.perf_counter() - t0
    # a partial run (--only) updates its own sections of an existing speed.json
    prev = RESULTS / "speed.json"
    if parts != {"recon", "coding", "dictlearn", "memory"} and prev.is_file():
        try:
            merged = json.loads(prev.read_text())
            merged.setdefault("partial_runs", []).append({"command": out["command"], "machine": info})
            merged.update({k: v for k, v in out.items() if k not in ("machine", "command")})
            out = merged
        except (OSError, ValueError):
            pass
    path = write_json("speed.json", out)
    print(f"\nwrote {path} ({out['total_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
