"""Non-Cartesian reconstruction: NUFFT/Toeplitz speed, CSC vs SigPy speed, and image quality.

Parts (``--part``, default all):

``toeplitz``
    The Toeplitz-embedded normal operator against a NUFFT forward+adjoint pair
    (``A.normal`` vs ``A.H(A(x))``) at 256², 8 coils, radial at Nyquist (402 spokes x 512
    samples), FINUFFT at eps 1e-5, interleaved, fastest of 5. Target ≥ 3x.
``speed``
    ``mri_csc.reconstruct(method="csc")`` with its defaults against SigPy's
    ``L1WaveletRecon(coord=)`` at 100 iterations on the same 256², 8-coil golden-angle radial
    R=4 data (101 spokes), in one run (whole calls: our time includes the DCF, plans and
    Toeplitz kernel). Target: ratio CSC/SigPy ≤ 1.
``quality``
    A real T1 brain slice (Colin 27, slice 90: not a dictionary-training slice, not a
    CSC-tuning slice), smooth random phase up to ±π, 8 birdcage coils, k-space by a NUFFT
    of a 2x finer image (no inverse crime), 30 dB noise; golden-angle radial R = 2, 4, 8
    (by spoke count, πN/(2R) spokes, 2x readout oversampling) and a variable-density
    spiral (8 interleaves, outer turns 2 cells apart, so that the 24² calibration region is
    sampled at Nyquist: with 3 cells its turns are 1.9 cells apart at |k| = 16, the regridded
    centre aliases and every iterative method on the ESPIRiT maps fell below gridding). Coil maps by ESPIRiT on the
    calibration region (24²) regridded by least squares (``calibration_kspace``). CSC with its
    defaults; SigPy ℓ1-wavelet and TV, BART ``pics -t -e`` ℓ1-wavelet and TV with λ tuned per case (hill-climb on a
    log grid from 5e-3, extended by factors of 2 until the best is interior; best PSNR; ℓ1 100 iterations,
    TV 300). PSNR/SSIM on magnitude inside the brain.

``fit``
    The ``csc`` rule's fit: CSC's λ scan (μ = γ = 37.5 λ) on a *tuning* slice (110, not the
    scored 90) for the same trajectories at 25/35/45 dB, then (a, λ_min) of
    λ = max(a σ̂, λ_min) on a grid (σ̂ from the readouts, in the scaled, density-normalised
    units): ``mri_csc.recon.csc_defaults.RULE_NONCARTESIAN``.

Run::

    python benchmarks/noncartesian.py --part toeplitz speed          # ~2 min on 2 shared cores
    python benchmarks/noncartesian.py --part quality --cases radial-2 radial-4
    python benchmarks/noncartesian.py --part quality --cases radial-8 spiral
    python benchmarks/noncartesian.py --part fit                     # ~10 min: 108 CSC runs at 128²

(each quality case is ~3-4 min at 128² on 2 shared cores: the peers dominate; their scores are
cached in ``benchmarks/results/noncartesian_peers.json``, so a second run recomputes only CSC).
Writes ``benchmarks/results/noncartesian_<parts>.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_table, interleaved, machine_info, write_json

import mri_csc
from mri_csc.metrics import psnr, ssim
from mri_csc.operators.nufft import NUFFTSense
from mri_csc.sim import birdcage_maps, brain_slice, smooth_phase, support_mask
from mri_csc.sim.trajectories import estimate_maps_noncartesian, make_trajectory, radial, simulate_noncartesian

GRID = [5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2]
#: peer iterations: ℓ1 100 (as the speed comparison), TV 300 (run to convergence, as benchmarks/quality.py)
PEER_ITERS = {"l1wavelet": 100, "tv": 300, "bart-l1wavelet": 100, "bart-tv": 300}
CASES = {"radial-2": ("golden-radial", 2), "radial-4": ("golden-radial", 4), "radial-8": ("golden-radial", 8),
         "spiral": ("spiral", 2)}
PEERS = ["l1wavelet", "tv", "bart-l1wavelet", "bart-tv"]
#: the slice the quality table reports on, and the slice (with its noise levels) the CSC rule is fitted on
SCORE_SLICE, TUNE_SLICE, TUNE_SNR = 90, 110, (25, 35, 45)
#: the CSC λ scan of the fit (μ = γ = 37.5 λ) and the rule's grids
FIT_LAMS = [2.5e-4 * 2 ** k for k in range(9)]
FIT_SLOPES = [0.05 * 1.25 ** k for k in range(16)]
FIT_FLOORS = [0.0, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3]


def part_toeplitz(n=256, coils=8, repeat=5):
    rng = np.random.default_rng(0)
    coord = radial(int(math.ceil(math.pi * n / 2)), 2 * n, n)
    maps = birdcage_maps((n, n), coils)
    x = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))).astype(np.complex64)
    op = NUFFTSense(maps, coord)
    t = interleaved({"pair": lambda: op.H(op(x)), "toeplitz": lambda: op.normal(x)}, repeat=repeat)
    err = float(np.linalg.norm(t["toeplitz"]["result"] - t["pair"]["result"]) / np.linalg.norm(t["pair"]["result"]))
    ratio = t["pair"]["min"] / t["toeplitz"]["min"]
    print(f"\n## Toeplitz normal vs NUFFT forward+adjoint, {n}x{n}, {coils} coils, radial {coord.shape[0]} x "
          f"{coord.shape[1]} ({op.backend}, fastest of {repeat}, interleaved)")
    print(fmt_table([["NUFFT forward + adjoint [ms]", t["pair"]["min"] * 1e3],
                     ["Toeplitz normal [ms]", t["toeplitz"]["min"] * 1e3],
                     ["speed-up", ratio], ["relative difference", err]], ["", "value"]))
    print(f"target >= 3x: {'met' if ratio >= 3 else 'NOT met'}")
    return {"pair_s": t["pair"]["min"], "toeplitz_s": t["toeplitz"]["min"], "speedup": ratio, "rel_diff": err,
            "samples": list(coord.shape[:-1])}


#: --source of the quality part -> (NIfTI path or None for ch2, axial slice): ch2 (the dictionaries'
#: subject) or the MNI152 template, a subject no dictionary or rule was learned or fitted on
SOURCES = {"ch2": (None, SCORE_SLICE), "mni": ("mni152", 80)}


def _brain_case(n, kind, accel, seed=0, snr_db=30, estimate=True, index=SCORE_SLICE, path=None):
    if path == "mni152":
        from quality import _mni_path  # noqa: PLC0415

        path = _mni_path()
    mag = brain_slice(index=index, shape=(n, n), path=path)
    phase = smooth_phase((n, n), "random", amplitude=np.pi, rng=np.random.default_rng(seed))
    img = (mag * np.exp(1j * phase)).astype(np.complex64)
    true_maps = birdcage_maps((n, n), 8)
    coord = make_trajectory(kind, (n, n), accel)
    y = simulate_noncartesian(img, true_maps, coord, snr_db=snr_db, oversample=2, seed=seed + 1)
    maps = estimate_maps_noncartesian(y, coord, (n, n), calib_width=24) if estimate else true_maps
    return mag, support_mask(mag), coord, y, maps


def part_speed(n=256):
    import sigpy.mri as mr

    _, _, coord, y, maps = _brain_case(n, "golden-radial", 4, estimate=False)
    t0 = time.perf_counter()
    res = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc")
    t_csc = time.perf_counter() - t0
    prob_scale = res.scale
    t0 = time.perf_counter()
    mr.app.L1WaveletRecon(y / prob_scale, maps, 0.005, coord=coord, max_iter=100, show_pbar=False).run()
    t_sp = time.perf_counter() - t0
    ratio = t_csc / t_sp
    print(f"\n## Default CSC vs SigPy L1WaveletRecon(coord=), 100 iterations, {n}x{n}, 8 coils, golden radial "
          f"R=4 ({coord.shape[0]} spokes), one run")
    print(fmt_table([["CSC (defaults)", t_csc, len(res.history)], ["SigPy L1WaveletRecon", t_sp, 100],
                     ["CSC / SigPy", ratio, None]], ["", "time [s]", "iterations"]))
    print(f"target CSC/SigPy <= 1: {'met' if ratio <= 1 else 'NOT met'}")
    return {"csc_s": t_csc, "sigpy_s": t_sp, "ratio": ratio, "csc_iters": len(res.history)}


def _tuned(run, grid=GRID, start=3, max_extend=6):
    """Hill-climb on the log grid from ``grid[start]``, extended by factors of 2 past either end
    (at most ``max_extend`` times) until the best is interior: returns (psnr, ssim, lam, evaluations)."""
    lams = list(grid)
    cache = {}

    def f(i):
        if lams[i] not in cache:
            cache[lams[i]] = run(lams[i])
        return cache[lams[i]][0]

    i, extended = start, 0
    while True:
        if i == 0 and extended < max_extend:
            lams.insert(0, lams[0] / 2)
            i, extended = 1, extended + 1
        if i == len(lams) - 1 and extended < max_extend:
            lams.append(lams[-1] * 2)
            extended += 1
        here = f(i)
        left = f(i - 1) if i > 0 else -np.inf
        right = f(i + 1) if i < len(lams) - 1 else -np.inf
        if left > here and left >= right:
            i -= 1
        elif right > here:
            i += 1
        else:
            break
    if i in (0, len(lams) - 1):
        print(f"warning: best λ {lams[i]:.3g} on the extended grid's edge", file=sys.stderr)
    p, s = cache[lams[i]]
    return p, s, lams[i], len(cache)


def _sigma_scaled(y, maps, coord):
    """σ̂ of the CSC rule: the readout estimate in the problem's scaled, density-normalised units."""
    from mri_csc.recon.noise import readout_noise_std
    from mri_csc.recon.noncartesian import make_noncartesian_problem

    prob = make_noncartesian_problem(y, maps, coord)
    return readout_noise_std(prob.kspace, prob.trajectory)


def part_fit(n, cases):
    """CSC's λ scan on the tuning slice, then the rule λ = max(a σ̂, λ_min) on the grids."""
    from mri_csc.recon.csc_defaults import RULE_NONCARTESIAN

    rows = []
    for name in cases:
        kind, accel = CASES[name]
        for snr in TUNE_SNR:
            mag, support, coord, y, maps = _brain_case(n, kind, accel, snr_db=snr, index=TUNE_SLICE)
            sig = _sigma_scaled(y, maps, coord)
            scan = {}
            for lam in FIT_LAMS:
                r = mri_csc.reconstruct(y, maps, trajectory=coord, method="csc", lam=lam,
                                       mu=RULE_NONCARTESIAN[2] * lam)
                scan[lam] = _score(mag, support, r.image)[0]
            best = max(scan, key=scan.get)
            rows.append({"case": name, "snr_db": snr, "sigma": sig, "scan": scan, "best_lam": best})
            print(f"  fit {name} {snr} dB: σ̂={sig:.4g} best λ={best:.3g} (λ/σ̂={best / sig:.3f}) {scan[best]:.2f} dB | "
                  + " ".join(f"{k:.3g}:{v:.2f}" for k, v in scan.items()), file=sys.stderr, flush=True)

    def at(row, lam):  # PSNR at lam, linear in log λ between the scanned values (clamped at the ends)
        ls = np.log(sorted(row["scan"]))
        return float(np.interp(np.log(lam), ls, [row["scan"][k] for k in sorted(row["scan"])]))

    best_rule, best_obj = None, -np.inf
    for a in FIT_SLOPES:
        for floor in FIT_FLOORS:
            short = [max(r["scan"].values()) - at(r, max(a * r["sigma"], floor)) for r in rows]
            obj = -np.mean(short) - 0.5 * max(short)
            if obj > best_obj:
                best_rule, best_obj, best_short = (a, floor), obj, short
    print(f"\n## CSC rule fit on slice {TUNE_SLICE} ({', '.join(cases)} at {TUNE_SNR} dB): λ = max(a σ̂, λ_min)")
    print(fmt_table([[f"{r['case']} {r['snr_db']} dB", r["sigma"], r["best_lam"], r["best_lam"] / r["sigma"], s]
                     for r, s in zip(rows, best_short)],
                    ["case", "σ̂ (scaled)", "best λ", "λ/σ̂", "shortfall of the rule [dB]"]))
    print(f"fitted a = {best_rule[0]:.4g}, λ_min = {best_rule[1]:.3g}: shortfall mean {np.mean(best_short):.2f} dB, "
          f"worst {max(best_short):.2f} dB")
    return {"rows": rows, "rule": best_rule, "shortfall": best_short}


#: bump when the case construction changes, so that cached peer scores are not reused
CASE_VERSION = 1
PEER_CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "noncartesian_peers.json")


def _peer_cache() -> dict:
    """Peer scores already computed, keyed by case version, size, case, method, iterations and λ
    (``benchmarks/results/noncartesian_peers.json``): a second quality run recomputes only CSC."""
    import json

    if os.path.isfile(PEER_CACHE):
        with open(PEER_CACHE) as f:
            return json.load(f)
    return {}


def _peer_cache_write(cache: dict) -> None:
    import json

    os.makedirs(os.path.dirname(PEER_CACHE), exist_ok=True)
    tmp = PEER_CACHE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cache, f)
    os.replace(tmp, PEER_CACHE)


def _score(mag, support, img):
    a = np.abs(img)
    return psnr(mag, a, mask=support), ssim(mag, a, mask=support)


def _run_case(n, name, peers, source="ch2"):
    kind, accel = CASES[name]
    path, index = SOURCES[source]
    mag, support, coord, y, maps = _brain_case(n, kind, accel, index=index, path=path)
    case = {"samples": list(coord.shape[:-1])}

    def recon(method, **kw):
        return mri_csc.reconstruct(y, maps, trajectory=coord, method=method, **kw)

    t0 = time.perf_counter()
    r = recon("csc")
    case["csc"] = dict(zip(("psnr", "ssim"), _score(mag, support, r.image)), time=time.perf_counter() - t0,
                       lam=r.params["lam"])
    for m in ["zero-filled", "sense"]:
        case[m] = dict(zip(("psnr", "ssim"), _score(mag, support, recon(m).image)))
    cache = _peer_cache()
    for m in peers:
        key_of = f"v{CASE_VERSION}:n{n}:{'' if source == 'ch2' else source + ':'}{name}:{m}:{PEER_ITERS[m]}it:".__add__
        t0, ran = time.perf_counter(), 0

        def score(lam, m=m, key_of=key_of):
            nonlocal ran
            key = key_of(f"{lam:.6g}")
            if key not in cache:
                cache[key] = _score(mag, support, recon(m, lam=lam, max_iter=PEER_ITERS[m]).image)
                ran += 1
            return tuple(cache[key])

        p, s, lam, evals = _tuned(score)
        case[m] = dict(psnr=p, ssim=s, lam=lam, evals=evals, time=(time.perf_counter() - t0) / max(ran, 1))
        _peer_cache_write(cache)
    case["csc_minus_best_peer"] = case["csc"]["psnr"] - max((case[m]["psnr"] for m in peers), default=np.nan)
    print(f"  {name}: " + ", ".join(f"{m} {case[m]['psnr']:.2f}" + (f" (lam {case[m]['lam']})" if m in peers else "")
                                    for m in ["sense", *peers, "csc"]), file=sys.stderr, flush=True)
    return case


def part_quality(n, cases, peers, source="ch2"):
    out = {name: _run_case(n, name, peers, source) for name in cases}
    methods = ["zero-filled", "sense", *peers, "csc"]
    rows = [[f"{name} ({' x '.join(map(str, c['samples']))})"]
            + [f"{c[m]['psnr']:.2f} / {c[m]['ssim']:.3f}" for m in methods] + [c["csc_minus_best_peer"]]
            for name, c in out.items()]
    print(f"\n## Quality, {n}x{n} {source} axial slice {SOURCES[source][1]}, 8 coils, 30 dB, "
          "ESPIRiT maps from the regridded centre: PSNR [dB] / SSIM; peers λ-tuned per case, CSC defaults")
    print(fmt_table(rows, ["case (samples)", *methods, "csc - best peer"]))
    means = {m: float(np.mean([out[c][m]["psnr"] for c in cases])) for m in ["csc", *peers]}
    print("mean PSNR: " + ", ".join(f"{m} {v:.2f}" for m, v in means.items()))
    out["mean"] = means
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", choices=["toeplitz", "speed", "quality", "fit"],
                    default=["toeplitz", "speed", "quality"])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--n", type=int, default=128, help="image size of the quality part (default 128)")
    ap.add_argument("--no-bart", action="store_true")
    ap.add_argument("--source", choices=list(SOURCES), default="ch2",
                    help="quality part: ch2 slice 90 (the dictionaries' subject) or MNI152 axial 80 (held out)")
    args = ap.parse_args(argv)
    peers = [p for p in PEERS if not (p.startswith("bart") and (args.no_bart or shutil.which("bart") is None))]
    res = {"machine": machine_info()}
    t0 = time.perf_counter()
    if "toeplitz" in args.part:
        res["toeplitz"] = part_toeplitz()
    if "speed" in args.part:
        res["speed"] = part_speed()
    if "fit" in args.part:
        res["fit"] = part_fit(args.n, args.cases)
    if "quality" in args.part:
        res["quality"] = part_quality(args.n, args.cases, peers, args.source)
    res["wall_s"] = time.perf_counter() - t0
    print(f"\nwall time {res['wall_s']:.0f} s")
    tag = "_".join(args.part) + ("_" + "_".join(args.cases) if {"quality", "fit"} & set(args.part) else "")
    write_json(f"noncartesian_{tag}.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
