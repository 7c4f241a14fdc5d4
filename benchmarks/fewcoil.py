r"""Few-coil check of ``csc``'s default weights (:mod:`mri_csc.recon.csc_defaults`), fitted on 8-coil data only.

The cases are ``benchmarks/quality.py``'s (same sources, masks, noise levels and seeds; ESPIRiT maps estimated
from the undersampled data, never the true ones), simulated with 1, 2 and 4 coils instead of 8
(``quality.build_case(case, n_coils)``: birdcage coils evenly spaced round the image; BART's ``phantom -s n``).

``--part fit`` (tuning split only: Colin 27 axial, BART Shepp–Logan): CSC's PSNR over
λ = m · λ₈ for m ∈ 2^k (k = −1..3, extended by factors of 2 until the best is interior, at most 2^−3..2^6), μ = γ at the
rule's μ/λ, where λ₈ is the 8-coil rule's λ (``csc_defaults.RULE``) at this case's σ̂. Then few-coil factors of the
rule's slope and floor,

    λ = max(f_a(n) · a · σ̂, f_min(n) · λ_min),   f_a(n) = min(1, n/K)^s,   f_min(n) = max(1, 8/n)^q

(both 1 from 8 coils up, so 8-coil data keep the shipped rule), are fitted per mask kind like ``quality.fit_rule``:
(s, q) on a grid maximising minus the mean shortfall minus half the worst from each case's best scanned λ (PSNR
linear in log λ between scanned points), for knots K = 2, 4, 8; and q alone (s = 0, "floor only"). Printed too:
each coil count's own best (slope, floor) factors (the most any such rule could get) and the 8-coil rule fed the
*true* σ (is it only σ̂ that goes wrong with few coils?).

``--part validate`` (held-out split: MNI152 coronal, INIA19 sagittal, BART geometric, never used by the fit):
CSC at the 8-coil rule against CSC at each of :data:`CANDIDATES` (the fits above, frozen here), PSNR and SSIM per
case, and per coil count and mask kind the mean / worst / best difference. ``--scan-heldout`` also scans λ on the
held-out cases and prints the fit table for them (what they would have wanted; not used by the candidates).

Finding (2026-12, recorded so that the figures can be checked against a re-run): the fitted few-coil rule
("slope+floor") cut the tuning shortfall a lot (2-D mean / worst 0.96 / 4.48 -> 0.30 / 0.76 dB; lines 0.63 / 2.10 ->
0.37 / 0.82) but not the held-out one: per case it lost up to 2.43 dB (2 coils, 2-D) and 1.63 dB (1 coil, lines)
against the 8-coil rule, mean −0.21 dB at 2 coils. With 1–2 coils the best λ is set mostly by how far σ̂ overshoots
the true σ (σ̂/σ 1.1–9 with one coil, rising with the SNR), which the coil count does not predict; the held-out refit
wants a slope factor twice the tuning one. So ``csc_defaults.RULE`` stays as it is for every coil count.

Run::

    python benchmarks/fewcoil.py --part fit         # 36 cases, 193 recons (~6–13 min at one thread)
    python benchmarks/fewcoil.py --part validate    # 54 cases, ~150 recons (~2–5 min)
    python benchmarks/fewcoil.py --part validate --scan-heldout   # + ~150 recons
    python benchmarks/fewcoil.py --part both --coils 1 2 --only bart-shepp  # a subset

Every reconstruction is cached in ``benchmarks/results/fewcoil.json`` (keyed by case, coil count and λ), so a
second run prints the tables at once; delete the file to re-measure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as Q  # noqa: E402
from common import RESULTS, write_json  # noqa: E402

COILS = (1, 2, 4)
#: the scan's λ multipliers of the 8-coil rule's λ (extended by factors of 2 while the best is on an edge)
MULTS = (0.5, 1.0, 2.0, 4.0, 8.0)
MULT_RANGE = (2.0 ** -3, 2.0 ** 6)
CACHE = RESULTS / "fewcoil.json"
#: the few-coil rules validated on the held-out split: name -> (knot K, {mask kind: (s, q)}), as printed by
#: ``--part fit``. "slope+floor" is the fit (K = 4 had the best objective of K = 2, 4, 8 on the 2-D cases);
#: "floor only" (s = 0) was added after "slope+floor" had been seen to fail on the held-out split, so its
#: held-out figures are a second look at the same cases, not a clean test.
CANDIDATES = {
    "slope+floor": (4, {"2d": (1.0, 0.85), "lines": (0.3, 0.55)}),
    "floor only": (4, {"2d": (0.0, 0.6), "lines": (0.0, 0.5)}),
}


def _key(case, n):
    return f"{case.key}:c{n}"


def _load():
    return json.loads(CACHE.read_text()) if CACHE.is_file() else {}


def _save(cache):
    write_json(CACHE.name, cache)


class _Case:
    """One case at ``n`` coils: data built lazily, its σ̂ and the 8-coil rule's weights, evaluations cached."""

    def __init__(self, case, n, cache):
        self.case, self.n, self.cache, self.key = case, n, cache, _key(case, n)
        self.entry = cache.setdefault(self.key, {"evals": {}})
        self._data = None

    @property
    def data(self):
        if self._data is None:
            from mri_csc.recon.csc import is_line_mask
            from mri_csc.recon.csc_defaults import RULE
            from mri_csc.recon.noise import estimate_noise_std
            from mri_csc.recon.problem import make_problem

            self._data = Q.build_case(self.case, n_coils=self.n)
            problem = make_problem(self._data["kspace"], self._data["maps"], self._data["mask"])
            sigma_hat = estimate_noise_std(problem.kspace, problem.mask, warn=False)
            lines = bool(is_line_mask(self._data["mask"]))
            slope, floor, ratio = RULE["lines" if lines else "2d"]
            self.entry.update(sigma_hat=float(sigma_hat), sigma_true=float(self._data["sigma"] / problem.scale),
                              lines=lines, ratio=ratio,
                              lam8=float(max(slope * sigma_hat, floor)))
            _save(self.cache)
        return self._data

    def info(self):
        if "sigma_true" not in self.entry:
            _ = self.data
        return self.entry

    def at(self, lam):
        """PSNR/SSIM of CSC at ``lam`` (μ = γ = the rule's μ/λ × λ)."""
        k = Q._lam_key(lam)
        if k not in self.entry["evals"]:
            e = self.info()
            res, _ = Q._run(self.data, "csc", lam=float(k), mu=e["ratio"] * float(k), gamma=e["ratio"] * float(k))
            self.entry["evals"][k] = res
            _save(self.cache)
        return self.entry["evals"][k]


def scan(c: _Case):
    """Evaluate the multiplier grid, extended until the best is interior (within :data:`MULT_RANGE`)."""
    lam8 = c.info()["lam8"]
    mults = list(MULTS)
    for _ in range(8):
        ps = [c.at(m * lam8)["psnr"] for m in mults]
        b = int(np.argmax(ps))
        if b == 0 and mults[0] / 2 >= MULT_RANGE[0]:
            mults.insert(0, mults[0] / 2)
        elif b == len(mults) - 1 and mults[-1] * 2 <= MULT_RANGE[1]:
            mults.append(mults[-1] * 2)
        else:
            break
    return mults


def _curve(c):
    return c.entry["evals"]


def _rule_lam(c, slope_factor, floor_factor):
    """λ of the 8-coil rule for this case with its slope and floor multiplied by the given factors."""
    from mri_csc.recon.csc_defaults import RULE

    slope, floor, _ = RULE["lines" if c.info()["lines"] else "2d"]
    return max(slope_factor * slope * c.info()["sigma_hat"], floor_factor * floor)


def shortfall(cases, lam_of):
    """Shortfall (per case, dB) of λ = lam_of(case) from each case's best scanned λ."""
    out = []
    for c in cases:
        ev = _curve(c)
        best = max(v["psnr"] for v in ev.values())
        out.append(best - Q._psnr_at(ev, lam_of(c)))
    return np.array(out)


def power(n, p):
    """max(1, 8/n)^p: 1 from 8 coils up."""
    return max(1.0, 8.0 / n) ** p


def knot(n, k, s):
    """min(1, n/k)^s: 1 from k coils up."""
    return min(1.0, n / k) ** s


def candidate_lam(c, name):
    """λ of candidate rule ``name`` (:data:`CANDIDATES`) for this case."""
    k, exps = CANDIDATES[name]
    s, q = exps["lines" if c.info()["lines"] else "2d"]
    return _rule_lam(c, knot(c.n, k, s), power(c.n, q))


def _objective(s):
    return -np.mean(s) - 0.5 * np.max(s)


S_GRID = tuple(np.round(np.arange(0.0, 2.001, 0.05), 2))
Q_GRID = tuple(np.round(np.arange(-1.5, 1.501, 0.05), 2))


def part_fit(cases8, split="tuning"):
    from mri_csc.recon.csc_defaults import RULE

    print(f"\n== {split} split: CSC PSNR over λ = m · λ₈ (λ₈ the 8-coil rule's λ at σ̂), μ = γ at the rule's μ/λ"
          + ("" if split == "tuning" else "\n   (a look at what the held-out cases would have wanted: not used for "
                                           "CANDIDATES; the fits below are refits on the held-out split)"))
    print(f"{'case':22s} {'coils':>5s} {'σ̂':>7s} {'σ̂/σ':>5s} {'λ₈':>7s} {'best m':>6s} {'PSNR@1':>7s} {'best':>6s} "
          f"{'loss':>5s} | m:PSNR")
    for c in cases8:
        e = c.info()
        ev = _curve(c)
        ks = sorted(ev, key=float)
        ps = [ev[k]["psnr"] for k in ks]
        b = int(np.argmax(ps))
        at1 = Q._psnr_at(ev, e["lam8"])
        curve = " ".join(f"{float(k) / e['lam8']:.3g}:{p:.2f}" for k, p in zip(ks, ps))
        print(f"{c.case.label:22s} {c.n:5d} {e['sigma_hat']:7.4f} {e['sigma_hat'] / e['sigma_true']:5.2f} "
              f"{e['lam8']:7.4f} {float(ks[b]) / e['lam8']:6.3g} {at1:7.2f} {ps[b]:6.2f} {ps[b] - at1:5.2f} | {curve}")
    for kind in ("2d", "lines"):
        sel = [c for c in cases8 if c.info()["lines"] == (kind == "lines")]
        if not sel:
            continue
        print(f"\n-- {kind}: shortfall from each case's best scanned λ (dB), mean/worst, per coil count and all")
        ns = sorted({c.n for c in sel})

        def row(name, lam_of, sub=sel, ns=ns):
            s = shortfall(sub, lam_of)
            per = " ".join(f"{n}c {np.mean(s[[c.n == n for c in sub]]):.2f}/{np.max(s[[c.n == n for c in sub]]):.2f}"
                           for n in ns)
            print(f"   {name:46s} {per}  all {np.mean(s):.2f}/{np.max(s):.2f}")

        row("8-coil rule at σ̂ (shipped)", lambda c: c.info()["lam8"])
        slope, floor, _ = RULE[kind]
        for f in (1.0, 1.3):
            row(f"8-coil rule at {f:g} × true σ (diagnostic)",
                lambda c, f=f, a=slope, fl=floor: max(a * f * c.info()["sigma_true"], fl))
        for k in (2, 4, 8):
            objs = {(s_, q): _objective(shortfall(sel, lambda c, s_=s_, q=q, k=k: _rule_lam(c, knot(c.n, k, s_),
                                                                                             power(c.n, q))))
                    for s_ in S_GRID for q in Q_GRID}
            s_, q = max(objs, key=objs.get)
            row(f"K={k}: slope × min(1,n/{k})^{s_:g}, floor × (8/n)^{q:g}",
                lambda c, s_=s_, q=q, k=k: _rule_lam(c, knot(c.n, k, s_), power(c.n, q)))
        objs = {q: _objective(shortfall(sel, lambda c, q=q: _rule_lam(c, 1.0, power(c.n, q)))) for q in Q_GRID}
        q = max(objs, key=objs.get)
        row(f"floor only: floor × (8/n)^{q:g}", lambda c, q=q: _rule_lam(c, 1.0, power(c.n, q)))
        for name in CANDIDATES:
            row(f"candidate {name!r} (as in CANDIDATES)", lambda c, name=name: candidate_lam(c, name))
        free = {}
        fgrid = 2.0 ** np.arange(-3, 6.01, 0.25)
        for n in ns:
            sub = [c for c in sel if c.n == n]
            ob = {(sf, ff): _objective(shortfall(sub, lambda c, sf=sf, ff=ff: _rule_lam(c, sf, ff)))
                  for sf in fgrid for ff in fgrid}
            free[n] = max(ob, key=ob.get)
        row("free (slope, floor) factors per coil count", lambda c, free=free: _rule_lam(c, *free[c.n]))
        print("      " + "; ".join(f"{n} coils: slope ×{free[n][0]:.3g}, floor ×{free[n][1]:.3g}" for n in ns))


def part_validate(cases):
    names = list(CANDIDATES)
    print("\n== held-out split: CSC at the 8-coil rule against the candidate few-coil rules, PSNR dB / SSIM "
          "(× = candidate λ / 8-coil λ)")
    print(f"{'case':22s} {'coils':>5s} {'8-coil rule':>13s} "
          + " ".join(f"{n + ' ×':>16s} {'PSNR/SSIM':>13s} {'ΔPSNR':>6s} {'ΔSSIM':>7s}" for n in names))
    rows = []
    for c in cases:
        e = c.info()
        old = c.at(e["lam8"])
        cells, diffs = [], []
        for name in names:
            lam = candidate_lam(c, name)
            new = c.at(lam)
            diffs.append((new["psnr"] - old["psnr"], new["ssim"] - old["ssim"]))
            cells.append(f"{lam / e['lam8']:16.2f} {new['psnr']:6.2f}/{new['ssim']:.3f} {diffs[-1][0]:+6.2f} "
                         f"{diffs[-1][1]:+7.3f}")
        rows.append((c, diffs))
        print(f"{c.case.label:22s} {c.n:5d} {old['psnr']:6.2f}/{old['ssim']:.3f} " + " ".join(cells))
    for i, name in enumerate(names):
        print(f"\n-- held-out summary, {name!r} − 8-coil rule: PSNR mean / worst / best dB; SSIM mean / worst")
        for n in sorted({c.n for c, _ in rows}):
            for kind in ("2d", "lines", "all"):
                sel = [d[i] for c, d in rows if c.n == n and (kind == "all" or c.info()["lines"] == (kind == "lines"))]
                if not sel:
                    continue
                d, s = np.array(sel).T
                print(f"   {n} coil(s) {kind:5s} n={len(d):2d}  PSNR {np.mean(d):+.2f} / {np.min(d):+.2f} / "
                      f"{np.max(d):+.2f}   SSIM {np.mean(s):+.4f} / {np.min(s):+.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("fit", "validate", "both"), default="both")
    ap.add_argument("--coils", nargs="+", type=int, default=list(COILS))
    ap.add_argument("--only", nargs="+", help="source names (default: all of the split)")
    ap.add_argument("--scan-heldout", action="store_true",
                    help="with validate: scan λ on the held-out cases too and print the fit table for them "
                         "(the best λ those cases wanted; ~150 more recons)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("mri_csc").setLevel(logging.ERROR)  # the one-coil noise warning, once per case
    cache = _load()
    t0 = time.perf_counter()

    def cases_of(split):
        cs = [c for c in Q.all_cases((split,)) if not args.only or c.source in args.only]
        return [_Case(c, n, cache) for c in cs for n in args.coils]

    if args.part in ("fit", "both"):
        cases = cases_of("tuning")
        for c in cases:
            scan(c)
            print(f"[{time.perf_counter() - t0:5.0f} s] {c.case.label} {c.n} coils scanned", file=sys.stderr,
                  flush=True)
        part_fit(cases)
    if args.part in ("validate", "both"):
        cases = cases_of("heldout")
        for c in cases:
            for lam in (c.info()["lam8"], *(candidate_lam(c, name) for name in CANDIDATES)):
                c.at(lam)
            if args.scan_heldout:
                scan(c)
            print(f"[{time.perf_counter() - t0:5.0f} s] {c.case.label} {c.n} coils run", file=sys.stderr, flush=True)
        part_validate(cases)
        if args.scan_heldout:
            part_fit(cases, "held-out")
    print(f"\n({time.perf_counter() - t0:.0f} s; cache {CACHE})")


if __name__ == "__main__":
    main()
