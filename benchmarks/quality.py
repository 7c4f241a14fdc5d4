r"""Generalisation benchmark: CSC with its defaults against per-case λ-tuned SigPy and BART peers.

Every case is built as a user would meet it: coil maps **estimated by ESPIRiT**
(SigPy's ``EspiritCalib``, :func:`mri_csc.sim.estimate_maps`) from the
undersampled data, never the true ones; noise at 25, 35 and 45 dB (k-space SNR on the
sampled points, :func:`mri_csc.sim.simulate_kspace`'s definition); 2-D
variable-density Poisson and 1-D random lines at R = 3–5 with 16 centre columns (at R = 8 on a
128-column grid too few lines remain beside an ESPIRiT-worthy centre). Images:

- real T1 brains simulated at 2× resolution and cropped in k-space (no inverse
  crime), smooth random phase up to ±π, 8 birdcage coils: Colin 27 (``ch2``,
  the subject the shipped dictionary was learned on) axial, the MNI152
  template (nilearn) coronal, the INIA19 macaque template (mricron-data)
  sagittal;
- BART's analytic k-space phantoms (``bart phantom -k -s 8``: Shepp–Logan and
  the geometric phantom), with BART's own analytic coil sensitivities.

Cases are split in two. The **tuning** split (Colin 27 axial, the Shepp–Logan
k-space phantom) is the only one the CSC default rule
(:mod:`mri_csc.recon.csc_defaults`) was fitted on (``--fit`` prints the scan
it was fitted from). The **held-out** split (MNI152 coronal, INIA19 sagittal,
BART's geometric phantom) was never looked at while choosing it. Each source
gets 3 noise levels × (one Poisson and one line mask). The reference is the
fully sampled noiseless k-space combined with the same estimated maps
(:math:`|\sum_c \bar S_c F^{-1} y_c|`, what a perfect reconstruction under
that model gives); PSNR and SSIM on magnitude inside its support.

Peers (SigPy ``L1WaveletRecon`` and ``TotalVariationRecon``, BART ``pics``
ℓ1-wavelet and TV) are tuned **per case**: λ on a factor-2 grid, extended until
the best value is interior; ℓ1 runs 100 iterations, TV 300. Their results are
cached in ``benchmarks/results/quality_peers_<split>.json`` (keyed by case and λ), so
a second run only recomputes CSC. The CSC methods run once each, with their defaults: ``csc`` (the
headline) and the hybrid ``csc-tv`` (CSC plus TV) in its own column, so that the share of any gain
that is CSC's stays visible (``--methods`` picks them; ``--dictionary FILE.npz`` runs them with
another dictionary).

Run::

    python benchmarks/quality.py --quick            # 16 cases (25 and 45 dB); minutes once the peers are cached
    python benchmarks/quality.py                    # all 30 cases (tuning 12, held-out 18); ~1 h the first time
    python benchmarks/quality.py --split heldout --jobs 2
    python benchmarks/quality.py --fit              # tuning split: CSC over a λ × μ/λ scan (--ratios)
    python benchmarks/quality.py --fit-hybrid tv    # tuning split: csc-tv over its (f, a₂, r₂) grid

Prints per case PSNR / SSIM of every method side by side, and per split and
noise level: mean of CSC minus the best peer of each case, the worst case,
SSIM difference and median time ratios. Writes ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, write_json  # noqa: E402

SHAPE = (128, 128)
N_COILS = 8
NOISE_DB = (25, 35, 45)
PEERS = ("l1wavelet", "tv", "bart-l1wavelet", "bart-tv")
PEER_ITERS = {"l1wavelet": 100, "tv": 300, "bart-l1wavelet": 100, "bart-tv": 300}
#: version of the case construction: bump it when a change makes cached peer results stale
#: (3: ESPIRiT calibrates on the fully sampled centre, cut per axis; four line cases, whose calibration box is wider
#: than their centred fully sampled square, had calibrated on a square that took in unsampled lines)
CASE_VERSION = 3

# source name -> (split, kind, spec, (poisson R, lines R))
SOURCES = {
    "ch2-axial": ("tuning", "nifti", ("/usr/share/mricron/templates/ch2.nii.gz", 2, 95), (4, 4)),
    "bart-shepp": ("tuning", "bart", (), (8, 3)),
    "mni-coronal": ("heldout", "nifti", ("mni152", 1, 120), (4, 4)),
    "inia-sagittal": ("heldout", "nifti", ("/usr/share/mricron/templates/inia19-t1-brain.nii.gz", 0, 70),
                      (8, 5)),
    "bart-geometric": ("heldout", "bart", ("-G",), (5, 3)),
}
#: the CSC methods run at their defaults: the headline and the hybrid (own column: how much is CSC's)
CSC_METHODS = ("csc", "csc-tv")
#: the --fit-hybrid grid: CSC factor f, λ₂/σ̂ slope a, ρ₂ / (the csc rule's μ) r
HYBRID_FACTORS = (0.35, 0.5, 0.7)
HYBRID_SLOPES = (0.04, 0.08, 0.16)
HYBRID_RHOS = (0.05, 0.15, 0.5)
QUICK = {"tuning": ("ch2-axial", "bart-shepp"), "heldout": ("mni-coronal", "bart-geometric")}


@dataclass(frozen=True)
class Case:
    source: str
    mask: str
    accel: int
    snr_db: float
    seed: int

    @property
    def split(self):
        return SOURCES[self.source][0]

    @property
    def key(self):
        return f"v{CASE_VERSION}:{self.source}:{self.mask}:R{self.accel}:{self.snr_db:g}dB:s{self.seed}"

    @property
    def label(self):
        m = "P" if self.mask == "poisson" else "L"
        return f"{self.source} {m}{self.accel} {self.snr_db:g}dB"


def all_cases(splits=("tuning", "heldout"), quick=False):
    out = []
    for i, (name, (split, _, _, (rp, rl))) in enumerate(SOURCES.items()):
        if split not in splits or (quick and name not in QUICK[split]):
            continue
        for snr in ((25, 45) if quick else NOISE_DB):
            for mask, r in (("poisson", rp), ("random-lines", rl)):
                out.append(Case(name, mask, r, float(snr), seed=1000 + 17 * i + int(snr)))
    return out


# ----------------------------------------------------------------------------- case construction
def _mni_path():
    """The MNI152 T1 template (1 mm) written once to a NIfTI file (nilearn ships it)."""
    path = Path(tempfile.gettempdir()) / "mri_csc_mni152_t1_1mm.nii.gz"
    if not path.is_file():
        try:
            from nilearn import datasets
        except ImportError as exc:
            raise RuntimeError("the MNI152 source needs nilearn: pip install nilearn") from exc
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.nii.gz")  # per process: --jobs workers race here
        datasets.load_mni152_template(resolution=1).to_filename(str(tmp))
        os.replace(tmp, path)
    return str(path)


def _bart(*args):
    subprocess.run(["bart", *args], check=True, capture_output=True)


def _bart_phantom_kspace(opts, shape, n_coils):
    """BART's analytic multi-coil k-space phantom ``(coils, ny, nx)`` (no rasterised image involved)."""
    from mri_csc.io.cfl import read_cfl

    with tempfile.TemporaryDirectory(prefix="quality_") as tmp:
        out = os.path.join(tmp, "k")
        _bart("phantom", "-k", *opts, "-x", str(shape[0]), "-s", str(n_coils), out)
        k = read_cfl(out)  # (x, y, 1, coils)
    k = np.asarray(k).reshape(shape[1], shape[0], n_coils).T  # (coils, y, x)
    return np.ascontiguousarray(k, dtype=np.complex64)


def _add_noise(k_full, mask, snr_db, rng):
    sampled = np.broadcast_to(mask != 0, k_full.shape)
    p_sig = float(np.mean(np.abs(k_full[sampled]) ** 2))
    sigma = np.sqrt(p_sig / 10 ** (snr_db / 10))
    noise = (rng.standard_normal(k_full.shape) + 1j * rng.standard_normal(k_full.shape)) * (sigma / np.sqrt(2))
    return ((k_full + noise) * mask).astype(np.complex64), sigma


#: centre columns of the line masks (fastMRI's 8 % of 128 at R = 4 would leave 10, too few for ESPIRiT)
LINE_CALIB = 16


def _line_calib(accel):
    return LINE_CALIB


def _calib_side(mask):
    from mri_csc.recon.noise import calibration_box

    return int(min(s.stop - s.start for s in calibration_box(mask)))


def build_case(case: Case, n_coils: int = N_COILS):
    """``dict(kspace, maps, mask, ref, support, sigma)`` for one case (deterministic in ``case``), simulated with
    ``n_coils`` coils (birdcage coils evenly spaced round the image, or BART's ``-s n_coils``; the benchmark's 8 by
    default, ``benchmarks/fewcoil.py`` fewer)."""
    from mri_csc.backend import ifftc
    from mri_csc.sim import estimate_maps, sample_mask, simulate_kspace, support_mask
    from mri_csc.sim.coils import birdcage_maps
    from mri_csc.sim.phantoms import nifti_slice
    from mri_csc.sim.phase import smooth_phase

    rng = np.random.default_rng(case.seed)
    _, kind, spec, _ = SOURCES[case.source]
    calib = _line_calib(case.accel) if case.mask == "random-lines" else None
    mask = sample_mask(case.mask, SHAPE, case.accel, calib=calib, rng=rng)
    if kind == "nifti":
        path, axis, index = spec
        path = _mni_path() if path == "mni152" else path
        mag = nifti_slice(path, index=index, axis=axis, shape=SHAPE)
        phi = smooth_phase(SHAPE, "random", amplitude=np.pi, rng=rng)
        img = (mag * np.exp(1j * phi)).astype(np.complex64)
        k_full = simulate_kspace(img, birdcage_maps(SHAPE, n_coils), None, oversample=2)
    else:
        k_full = _bart_phantom_kspace(spec, SHAPE, n_coils)
    kspace, sigma = _add_noise(k_full, mask, case.snr_db, rng)
    maps = estimate_maps(kspace, calib_width=min(24, _calib_side(mask)), method="sigpy")
    ref = np.abs((maps.conj() * ifftc(k_full, (-2, -1))).sum(axis=0)).astype(np.float32)
    return dict(kspace=kspace, maps=maps, mask=mask, ref=ref, support=support_mask(ref), sigma=sigma)


# ----------------------------------------------------------------------------- methods
def _score(data, image):
    from mri_csc.metrics import psnr, ssim

    return (psnr(data["ref"], image, mask=data["support"]), ssim(data["ref"], image, mask=data["support"]))


def _run(data, method, **params):
    import mri_csc

    t0 = time.perf_counter()
    r = mri_csc.reconstruct(data["kspace"], data["maps"], mask=data["mask"], method=method, **params)
    t = time.perf_counter() - t0
    p, s = _score(data, r.image)
    return dict(psnr=p, ssim=s, time=t), r


def _lam_key(lam):
    return f"{lam:.4g}"


def _scan_key(ratio, lam):
    """Key of one point of the CSC fit scan: ``"<μ/λ>:<λ>"``."""
    return f"{ratio:g}:{_lam_key(lam)}"


def _scan_by_ratio(scan):
    """``{μ/λ: {λ key: result}}`` from a fit scan keyed by :func:`_scan_key`."""
    out = {}
    for key, res in scan.items():
        ratio, _, lam = key.partition(":")
        out.setdefault(float(ratio), {})[lam] = res
    return out


def _cache_path(split):
    return RESULTS / f"quality_peers_{split}.json"


def _cache_update(case, evals):
    """Merge one case's peer evaluations into its split's cache (locked: several runs may share it)."""
    import fcntl

    path = _cache_path(case.split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = json.loads(path.read_text()) if path.is_file() else {}
        cache[case.key] = evals
        write_json(path.name, cache)


def tune_peer(data, peer, cached, lam0):
    """Best λ of ``peer`` on a factor-2 grid around ``lam0``, extended until the best is interior."""
    evals = dict(cached)

    def at(lam):
        key = _lam_key(lam)
        if key not in evals:
            evals[key], _ = _run(data, peer, lam=float(key), max_iter=PEER_ITERS[peer])
        return evals[key]["psnr"]

    lams = [lam0 / 2, lam0, lam0 * 2]
    for lam in lams:
        at(lam)
    for _ in range(12):
        vals = [at(lam) for lam in lams]
        best = int(np.argmax(vals))
        if best == 0:
            lams.insert(0, lams[0] / 2)
        elif best == len(lams) - 1:
            lams.append(lams[-1] * 2)
        else:
            break
    # the best over every λ evaluated (cached ones included), and whether it is interior
    keyed = sorted(evals.items(), key=lambda kv: float(kv[0]))
    i = int(np.argmax([v["psnr"] for _, v in keyed]))
    best = dict(keyed[i][1], lam=float(keyed[i][0]), interior=0 < i < len(keyed) - 1)
    return best, evals


def run_case(case: Case, cached: dict, csc_variants: dict, fit_grid=None, hybrid_grid=None, common=None):
    """Peers (tuned, using ``cached`` evaluations), SENSE and the CSC methods on one case.

    ``csc_variants``: label -> (method, params), each run once. ``fit_grid``: CSC ``(μ/λ, λ)`` pairs
    to scan (``--fit``; μ = γ = ratio × λ); ``hybrid_grid``: ``(term, factors, slopes)`` to scan the
    hybrid's CSC factor and λ₂/σ̂ (``--fit-hybrid``); ``common``: parameters both scans pass too (``dictionary``)."""
    common = common or {}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mri_csc.recon.noise import estimate_noise_std
    from mri_csc.recon.problem import make_problem

    data = build_case(case)
    problem = make_problem(data["kspace"], data["maps"], data["mask"])
    sigma_hat = estimate_noise_std(problem.kspace, problem.mask)
    out = {"case": case.__dict__, "label": case.label, "split": case.split,
           "sigma_true_scaled": data["sigma"] / problem.scale, "sigma_hat_scaled": sigma_hat, "methods": {},
           "evals": {}}
    lam0 = max(0.5 * sigma_hat, 1e-6)
    for peer in PEERS:
        if peer.startswith("bart") and not shutil.which("bart"):
            continue
        best, evals = tune_peer(data, peer, cached.get(peer, {}), lam0)
        out["methods"][peer] = best
        out["evals"][peer] = evals
    out["methods"]["sense"], _ = _run(data, "sense")
    for label, (method, params) in csc_variants.items():
        res, r = _run(data, method, **params)
        res.update({k: r.params[k] for k in ("lam", "mu", "gamma", "lam2", "rho2", "noise_std") if k in r.params})
        out["methods"][label] = res
    if fit_grid is not None:
        scan = {}
        for ratio, lam in fit_grid:
            res, _ = _run(data, "csc", lam=lam, mu=ratio * lam, gamma=ratio * lam, **common)
            scan[_scan_key(ratio, lam)] = res
        out["csc_scan"] = scan
    if hybrid_grid is not None:
        out["hybrid_scan"] = hybrid_scan(data, problem, *hybrid_grid, **common)
    return out


def hybrid_scan(data, problem, term, factors, slopes, rhos, **common):
    """PSNR of ``csc-<term>`` over the CSC factor f (× the csc rule's λ, μ, γ), λ₂ = a σ̂ and
    ρ₂ = r × the csc rule's μ: ``{"f:a:r": result}`` (the fit of :mod:`mri_csc.recon.csc_hybrid`)."""
    from mri_csc.recon.csc import SCHEMA, resolve_params

    base = resolve_params(problem, {k: p.default for k, p in SCHEMA.items()})
    sigma = base["noise_std"] / float(problem.scale)
    scan = {}
    for f in factors:
        for a in slopes:
            for r in rhos:
                res, _ = _run(data, f"csc-{term}", lam=f * base["lam"], mu=f * base["mu"], gamma=f * base["gamma"],
                              lam2=a * sigma, rho2=r * base["mu"], **common)
                scan[f"{f:g}:{a:g}:{r:g}"] = res
    return scan


# ----------------------------------------------------------------------------- reporting
def _best_peer(methods):
    peers = {m: v for m, v in methods.items() if m in PEERS}
    name = max(peers, key=lambda m: peers[m]["psnr"])
    return name, peers[name]


def print_tables(results, labels=("csc",)):
    """Per case PSNR / SSIM of every method; per split and noise level each of ``labels`` (the CSC
    methods) minus the best tuned peer of each case."""
    labels = [c for c in labels if all(c in r["methods"] for r in results)]
    cols = ["sense", *[p for p in PEERS if any(p in r["methods"] for r in results)], *labels]
    head = (f"{'case':34s} {'σ̂/σ':>5s} " + " ".join(f"{c:>15s}" for c in cols)
            + "".join(f" {c + '-best':>12s}" for c in labels))
    for split in ("tuning", "heldout"):
        rows = [r for r in results if r["split"] == split]
        if not rows:
            continue
        print(f"\n== {split} split: PSNR dB / SSIM (peers λ-tuned per case; CSC methods at their defaults)")
        print(head)
        for r in rows:
            m = r["methods"]
            _, bp = _best_peer(m)
            ratio = r["sigma_hat_scaled"] / r["sigma_true_scaled"]
            cells = " ".join(f"{m[c]['psnr']:6.2f}/{m[c]['ssim']:.3f}".rjust(15) for c in cols)
            diffs = "".join(f" {m[c]['psnr'] - bp['psnr']:+12.2f}" for c in labels)
            print(f"{r['label']:34s} {ratio:5.2f} {cells}{diffs}")
        for label in labels:
            print(f"\n-- {split} summary ({label} − best peer of each case)")
            print(f"{'noise':>8s} {'n':>3s} {'mean dB':>8s} {'worst dB':>9s} {'worst case':34s} {'ΔSSIM':>7s}"
                  f" {label + ' PSNR':>12s} {'best PSNR':>9s}")
            for snr in sorted({r["case"]["snr_db"] for r in rows}) + ["all"]:
                sel = [r for r in rows if snr == "all" or r["case"]["snr_db"] == snr]
                d = [r["methods"][label]["psnr"] - _best_peer(r["methods"])[1]["psnr"] for r in sel]
                ds = [r["methods"][label]["ssim"] - max(r["methods"][p]["ssim"] for p in PEERS
                                                        if p in r["methods"]) for r in sel]
                w = int(np.argmin(d))
                tag = f"{snr:g} dB" if snr != "all" else "all"
                print(f"{tag:>8s} {len(sel):3d} {np.mean(d):+8.2f} {d[w]:+9.2f} {sel[w]['label']:34s}"
                      f" {np.mean(ds):+7.3f} {np.mean([r['methods'][label]['psnr'] for r in sel]):12.2f}"
                      f" {np.mean([_best_peer(r['methods'])[1]['psnr'] for r in sel]):9.2f}")
            by_src = {}
            for r in rows:
                by_src.setdefault(r["case"]["source"], []).append(
                    r["methods"][label]["psnr"] - _best_peer(r["methods"])[1]["psnr"])
            print("   by source (mean / worst dB): "
                  + "; ".join(f"{src} {np.mean(v):+.2f} / {min(v):+.2f}" for src, v in by_src.items()))
            wins = sum(r["methods"][label]["psnr"] > _best_peer(r["methods"])[1]["psnr"] for r in rows)
            print(f"{label} ahead of the best tuned peer on {wins} of {len(rows)} cases")
        times = {c: np.median([r["methods"][c]["time"] for r in rows if c in r["methods"]]) for c in cols}
        print("median time per case at the chosen λ (s): "
              + ", ".join(f"{c} {t:.2f}" for c, t in times.items())
              + "; " + ", ".join(f"{c} / l1wavelet = {times[c] / times['l1wavelet']:.2f}" for c in labels))
        interior = [(r["label"], p) for r in rows for p in PEERS
                    if p in r["methods"] and not r["methods"][p].get("interior", True)]
        if interior:
            print(f"warning: best λ on the grid's edge for {interior}")


def print_fit(results):
    """The CSC λ scan on the tuning split: best λ/σ̂ per case, for the default rule."""
    print("\n== CSC λ scan at each μ/λ (μ = γ = ratio × λ): best λ per case, and in units of σ̂ (data_scale units)")
    for r in results:
        if not r.get("csc_scan"):
            continue
        for ratio, scan in sorted(_scan_by_ratio(r["csc_scan"]).items()):
            lams = sorted(scan, key=float)
            ps = [scan[k]["psnr"] for k in lams]
            b = int(np.argmax(ps))
            curve = " ".join(f"{float(k):.3g}:{p:.2f}" for k, p in zip(lams, ps))
            print(f"{r['label']:34s} μ/λ={ratio:<5g} σ̂={r['sigma_hat_scaled']:.4f} best λ={float(lams[b]):.4g}"
                  f" (λ/σ̂={float(lams[b]) / r['sigma_hat_scaled']:.3f}) {ps[b]:.2f} dB | {curve}")
    for kind, f in fit_rule(results).items():
        print(f"rule {kind}: λ = max({f['slope']:.4g} σ̂, {f['floor']:.3g}), μ = γ = {f['ratio']:g} λ: shortfall from "
              f"each case's best scanned (λ, μ/λ) mean {f['mean_shortfall']:.2f} dB, "
              f"worst {f['worst_shortfall']:.2f} dB ({f['n']} cases)")
        for ratio, (mean, worst) in sorted(f["by_ratio"].items()):
            print(f"   best rule at μ/λ = {ratio:<5g}: shortfall mean {mean:.2f} dB, worst {worst:.2f} dB")


def _is_lines(r):
    return r["case"]["mask"] == "random-lines"


#: the --fit scan: λ values, and the μ/λ ridge ratios (μ = γ = ratio × λ)
FIT_LAMS = tuple(2.5e-4 * 2.0 ** np.arange(10))
FIT_RATIOS = (37.5, 9.375, 4.6875, 2.34375)
#: the --fit rule grid: slope a = λ/σ̂ and floor λ_min of λ = max(a σ̂, λ_min)
RULE_SLOPES = tuple(sorted({*np.round(np.geomspace(0.1, 3.2, 31), 4), *np.round(np.geomspace(0.1, 12.8, 57), 4)}))
RULE_FLOORS = (0.0, 2.5e-4, 5e-4, 1e-3, 1.6e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)


def _psnr_at(scan, lam):
    """PSNR of a λ scan at ``lam``, linear in log λ between scanned values (clamped at the ends)."""
    lams = np.array(sorted(float(k) for k in scan))
    ps = np.array([scan[k]["psnr"] for k in sorted(scan, key=float)])
    return float(np.interp(np.log(lam), np.log(lams), ps))


def fit_rule(results):
    """Per mask kind, (μ/λ, a, λ_min) maximising −mean − ½·worst shortfall from each case's best scanned
    point (over every λ and μ/λ of its scan). Scans keyed by λ alone (quality3d.py) are one ratio, 37.5.

    Returns per kind ``{"ratio", "slope", "floor", "n", "mean_shortfall", "worst_shortfall", "by_ratio"}``,
    ``by_ratio`` the (mean, worst) shortfall of the best (a, λ_min) at each scanned μ/λ."""
    out = {}
    for kind, pick in (("2d", lambda r: not _is_lines(r)), ("lines", _is_lines)):
        rows = [r for r in results if r.get("csc_scan") and pick(r)]
        if not rows:
            continue
        scans = [_scan_by_ratio(r["csc_scan"]) if ":" in next(iter(r["csc_scan"])) else {37.5: r["csc_scan"]}
                 for r in rows]
        best_psnr = [max(v["psnr"] for s in by.values() for v in s.values()) for by in scans]
        ratios = sorted(set.intersection(*(set(by) for by in scans)))
        best_obj, by_ratio = None, {}
        for ratio in ratios:
            ratio_obj = None
            for a in RULE_SLOPES:
                for floor in RULE_FLOORS:
                    short = [bp - _psnr_at(by[ratio], max(a * r["sigma_hat_scaled"], floor))
                             for r, by, bp in zip(rows, scans, best_psnr)]
                    obj = -np.mean(short) - 0.5 * max(short)
                    if ratio_obj is None or obj > ratio_obj:
                        ratio_obj, by_ratio[ratio] = obj, (float(np.mean(short)), float(max(short)))
                    if best_obj is None or obj > best_obj:
                        best_obj, out[kind] = obj, {"ratio": ratio, "slope": float(a), "floor": floor, "n": len(rows),
                                                    "mean_shortfall": float(np.mean(short)),
                                                    "worst_shortfall": float(max(short))}
        out[kind]["by_ratio"] = by_ratio
    return out


def print_hybrid_fit(results, term):
    """The hybrid scan on the tuning split: per case the best (f, a), and per mask kind the (f, a)
    maximising the mean PSNR minus half the worst shortfall from each case's best (the rule's fit)."""
    rows = [r for r in results if r.get("hybrid_scan")]
    if not rows:
        return
    print(f"\n== csc-{term} scan: f × (csc rule's λ, μ, γ), λ₂ = a σ̂, ρ₂ = r × the rule's μ (keys f:a:r)")
    for r in rows:
        sc = r["hybrid_scan"]
        b = max(sc, key=lambda k: sc[k]["psnr"])
        bp = _best_peer(r["methods"])[1]["psnr"]
        print(f"{r['label']:34s} best f:a:r={b} {sc[b]['psnr']:.2f} dB (best peer {bp:.2f})"
              " | " + " ".join(f"{k}:{v['psnr']:.2f}" for k, v in sc.items()))
    for kind, sel in (("2d", [r for r in rows if not _is_lines(r)]), ("lines", [r for r in rows if _is_lines(r)])):
        if not sel:
            continue
        keys = list(sel[0]["hybrid_scan"])
        short = {k: [max(v["psnr"] for v in r["hybrid_scan"].values()) - r["hybrid_scan"][k]["psnr"] for r in sel]
                 for k in keys}
        gain = {k: [r["hybrid_scan"][k]["psnr"] - _best_peer(r["methods"])[1]["psnr"] for r in sel] for k in keys}
        best = min(keys, key=lambda k: np.mean(short[k]) + 0.5 * max(short[k]))
        print(f"{kind}: f:a:r = {best}: shortfall mean {np.mean(short[best]):.2f} worst {max(short[best]):.2f} dB;"
              f" minus best peer mean {np.mean(gain[best]):+.2f} worst {min(gain[best]):+.2f} dB")


def parse_variant(spec: str, common: dict):
    """``"csc"`` -> ``("csc", common)``; ``"csc:monotone=False,csc_iter=2"`` -> that method with those parameters."""
    import ast

    method, _, rest = spec.partition(":")
    params = dict(common)
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise SystemExit(f"--methods: {item!r} in {spec!r} is not NAME=VALUE")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return method, params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("tuning", "heldout", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="2 sources per split, 25 and 45 dB only")
    ap.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    ap.add_argument("--fit", action="store_true", help="also scan CSC's λ and μ/λ (tuning split only)")
    ap.add_argument("--ratios", nargs="+", type=float, default=list(FIT_RATIOS),
                    help=f"the μ/λ values --fit scans (default {' '.join(f'{r:g}' for r in FIT_RATIOS)})")
    ap.add_argument("--fit-hybrid", choices=("tv",),
                    help="scan the csc-<term> hybrid's CSC factor and λ₂ (tuning split only)")
    ap.add_argument("--methods", nargs="+", default=list(CSC_METHODS),
                    help=f"CSC-family methods to run at their defaults (default {' '.join(CSC_METHODS)}); "
                         "METHOD:NAME=VALUE[,NAME=VALUE] runs a variant with those parameters "
                         "(e.g. csc:monotone=False csc:adapt_dictionary=3)")
    ap.add_argument("--dictionary", help="an .npz dictionary for the CSC methods (default: the shipped one)")
    ap.add_argument("--only", nargs="+", help="source names to run (default all of the split)")
    ap.add_argument("--json", default=str(RESULTS / "quality.json"))
    args = ap.parse_args(argv)

    splits = ("tuning", "heldout") if args.split == "both" else (args.split,)
    if args.fit or args.fit_hybrid:
        splits = ("tuning",)
    cases = all_cases(splits, args.quick)
    if args.only:
        cases = [c for c in cases if c.source in args.only]
    cache = {}
    for split in splits:
        if _cache_path(split).is_file():
            cache.update(json.loads(_cache_path(split).read_text()))
    common = {} if args.dictionary is None else {"dictionary": args.dictionary}
    variants = {m: parse_variant(m, common) for m in args.methods}
    fit_grid = [(ratio, lam) for ratio in args.ratios for lam in FIT_LAMS] if args.fit else None
    hybrid_grid = (args.fit_hybrid, HYBRID_FACTORS, HYBRID_SLOPES, HYBRID_RHOS) if args.fit_hybrid else None
    results = []
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_case, c, cache.get(c.key, {}), variants, fit_grid, hybrid_grid, common): c
                for c in cases}
        for fut in as_completed(futs):
            c = futs[fut]
            r = fut.result()
            _cache_update(c, r.pop("evals"))
            results.append(r)
            with open(args.json + ".partial.jsonl", "a") as f:  # survives an interrupted run
                f.write(json.dumps(r, default=float) + "\n")
            m = r["methods"]
            bn, bp = _best_peer(m)
            own = " ".join(f"{v} {m[v]['psnr']:.2f}" for v in variants)
            print(f"[{time.perf_counter() - t0:6.0f} s] {c.label:34s} {own} "
                  f"best peer {bn} {bp['psnr']:.2f} (λ {bp['lam']:.3g})", file=sys.stderr, flush=True)
    order = {c.key: i for i, c in enumerate(cases)}
    results.sort(key=lambda r: order[Case(**r["case"]).key])
    print_tables(results, tuple(variants))
    if args.fit:
        print_fit(results)
    if args.fit_hybrid:
        print_hybrid_fit(results, args.fit_hybrid)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine_info(), "shape": SHAPE, "n_coils": N_COILS,
                                           "results": results}, indent=1, default=float))
    print(f"\nwrote {args.json} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
