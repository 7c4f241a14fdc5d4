"""CSC on volumes (its default: one 2-D problem per readout position; and ``volume="3d"``, the shipped 3-D
dictionary) against per-case λ-tuned SigPy and BART peers, tuning and held-out volumes.

Two sources, as ``benchmarks/quality.py``'s split:

- ``--source mni`` (default, **held-out**): the MNI152 T1 template (nilearn; a held-out source of
  ``benchmarks/quality.py``, never read by any dictionary or rule), at 2 mm, an axial slab of
  ``SLAB`` = 32 slices inside a (40, 96, 96) field of view; cases P4 30 dB and P6 40 dB;
- ``--source ch2`` (**tuning**): Colin 27 (``ch2``, the dictionaries' subject) at 2 mm, the 20 axial
  slices of the range the 3-D dictionary's training blocks never entered (1 mm axial 70–110),
  inside a (28, 96, 96) field of view; cases P4 25 dB, P6 35 dB, P4 45 dB. ``--fit`` scans 3-D CSC's λ
  there (λ ∈ 2.5e-4·2^k, μ = γ = 37.5 λ) and prints the rule ``quality.fit_rule`` fits to it — how
  :data:`mri_csc.recon.csc_defaults.RULE_3D` was chosen.

Smooth random phase up to ±π, 8 birdcage coils, k-space
simulated from a 2× finer spline resampling and cropped (no inverse crime), noise at 30 and
40 dB; 3-D Cartesian sampling: a variable-density Poisson pattern over the phase-encoding plane
(kz, ky), readout kx fully sampled, R = 4 and 6; coil maps by ESPIRiT (SigPy, 3-D) from the
undersampled data. The reference is the fully sampled noiseless k-space combined with the same
maps; PSNR and SSIM (slices pooled) on magnitude inside its support.

Peers as in ``benchmarks/quality.py``: SigPy ``L1WaveletRecon`` and BART ``pics`` ℓ1-wavelet (100
iterations each), λ tuned per case on a factor-2 grid extended until the best is interior (the TV
peers at 300 iterations are left out in 3-D for their time: one BART TV run took over a minute on
2 shared cores). CSC (``volume="auto"``: per readout position here, where the readout is fully sampled),
``csc-3d`` (``volume="3d"``) and SENSE with their defaults; 3-D CSC also at half and twice its default λ
(μ = γ = 37.5 λ), to show how far ``RULE_3D`` (fitted with ``--source ch2 --fit``) is from the best λ of
each case (not used to choose anything).

    python benchmarks/quality3d.py                      # held-out, 2 cases, ~20 min on 2 cores
    python benchmarks/quality3d.py --source ch2 --fit   # tuning, 3 cases and the 3-D λ scan, ~35 min

Peer evaluations are cached in ``benchmarks/results/quality3d_peers.json`` (keyed by source, case and
``CASE_VERSION``). Writes ``benchmarks/results/quality3d[_ch2].json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, write_json  # noqa: E402
from learn_dictionary import SOURCE as CH2_PATH  # noqa: E402
from learn_dictionary import TEST_RANGE  # noqa: E402
from quality import _add_noise, _calib_side, _lam_key, _mni_path, _run, fit_rule, tune_peer  # noqa: E402

N_COILS = 8
PEERS = ("l1wavelet", "bart-l1wavelet")
#: source -> field of view (nz, ny, nx), slices of brain in the slab (the rest of the z field of view is
#: empty: the slab lies inside it, as an excited slab does; a slab cut through the brain at the FOV's edges
#: wraps round in kz), the cases (R, SNR dB) and the split
SOURCES = {
    "mni": {"shape": (40, 96, 96), "slab": 32, "cases": [(4, 30.0), (6, 40.0)], "split": "held-out"},
    "ch2": {"shape": (28, 96, 96), "slab": 20, "cases": [(4, 25.0), (6, 35.0), (4, 45.0)], "split": "tuning"},
}
SHAPE = SOURCES["mni"]["shape"]
#: bump when a case's data change, so that cached peer evaluations are not reused
CASE_VERSION = 1
#: --fit: CSC λ values scanned (μ = γ = 37.5 λ), as quality.py's --fit
FIT_GRID = tuple(2.5e-4 * 2 ** k for k in range(8))


def _slab(img, shape, slab, z0):
    """``img`` (z, y, x) slices ``z0 .. z0 + slab``, cropped in-plane to its first ``ny`` rows and ``nx``
    columns, placed centred in a zero ``shape`` field of view, scaled to max 1 (the placement is the
    library's, as :func:`mri_csc.sim.nifti_volume` places its slabs)."""
    from mri_csc.sim.phantoms import _centre_fit

    nz, ny, nx = shape
    out = _centre_fit(img[z0:z0 + slab, :ny, :nx].astype(np.float32, copy=False), shape)
    return out / out.max()


def _load_2mm(path):
    """A 1 mm RAS volume at 2 mm as (z, y, x), anterior up."""
    import nibabel as nib

    vol = np.asarray(nib.load(path).dataobj, dtype=np.float32)[::2, ::2, ::2]
    return np.transpose(vol, (2, 1, 0))[:, ::-1]


def mni_slab(shape=SHAPE, slab=SOURCES["mni"]["slab"]):
    """``shape`` (z, y, x) of the MNI152 T1 template at 2 mm, centred in-plane: an axial slab of ``slab``
    slices mid-brain, centred in z with empty slices around it."""
    img = _load_2mm(_mni_path())
    return _slab(img, shape, slab, img.shape[0] // 2 - slab // 2 + 4)


def ch2_slab(shape=SOURCES["ch2"]["shape"], slab=SOURCES["ch2"]["slab"]):
    """Colin 27 at 2 mm: the ``slab`` axial slices inside the 1 mm range ``TEST_RANGE`` that no dictionary
    training block entered, centred in a ``shape`` field of view."""
    z0 = (TEST_RANGE[0] + 1) // 2
    assert 2 * z0 >= TEST_RANGE[0] and 2 * (z0 + slab - 1) <= TEST_RANGE[1]
    return _slab(_load_2mm(CH2_PATH), shape, slab, z0)


def build_case(accel, snr_db, seed, source="mni"):
    from mri_csc.backend import ifftc
    from mri_csc.sim import estimate_maps, sample_mask, simulate_kspace, support_mask
    from mri_csc.sim.coils import birdcage_maps
    from mri_csc.sim.phase import smooth_phase

    rng = np.random.default_rng(seed)
    shape = SOURCES[source]["shape"]
    mag = mni_slab() if source == "mni" else ch2_slab()
    phi = smooth_phase(shape, "random", amplitude=np.pi, rng=rng)
    img = (mag * np.exp(1j * phi)).astype(np.complex64)
    k_full = simulate_kspace(img, birdcage_maps(shape, N_COILS), None, oversample=2)
    mask = sample_mask("poisson", shape, accel, calib=(16, 16), rng=rng)
    kspace, sigma = _add_noise(k_full, mask, snr_db, rng)
    maps = estimate_maps(kspace, calib_width=min(16, _calib_side(mask)), method="sigpy")
    ref = np.abs((maps.conj() * ifftc(k_full, (-3, -2, -1))).sum(axis=0)).astype(np.float32)
    return dict(kspace=kspace, maps=maps, mask=mask, ref=ref, support=support_mask(ref), sigma=sigma)


def _peer_cache():
    path = RESULTS / "quality3d_peers.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv=None):
    from mri_csc.recon.noise import estimate_noise_std
    from mri_csc.recon.problem import make_problem

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=tuple(SOURCES), default="mni",
                    help="mni: the held-out MNI152 slab (default); ch2: the tuning slab of Colin 27")
    ap.add_argument("--fit", action="store_true", help="scan CSC's λ and fit the 3-D rule (tuning source only)")
    ap.add_argument("--json", default=None, help="default: benchmarks/results/quality3d[_ch2].json")
    args = ap.parse_args(argv)
    src = SOURCES[args.source]
    if args.fit and src["split"] != "tuning":
        ap.error("--fit scans the tuning source only (--source ch2): a rule is never fitted on held-out data")
    default_name = "quality3d.json" if args.source == "mni" else f"quality3d_{args.source}.json"
    json_path = Path(args.json or RESULTS / default_name)
    cache = _peer_cache()
    rows = []
    t0 = time.perf_counter()
    for i, (accel, snr) in enumerate(src["cases"]):
        data = build_case(accel, snr, seed=300 + i, source=args.source)
        problem = make_problem(data["kspace"], data["maps"], data["mask"])
        sigma_hat = estimate_noise_std(problem.kspace, problem.mask)
        lam0 = max(0.5 * sigma_hat, 1e-6)
        key = f"{args.source}:P{accel}:{snr:g}:v{CASE_VERSION}"
        row = {"case": {"mask": "poisson", "accel": accel, "snr_db": snr, "source": args.source},
               "label": f"{args.source} {src['shape']} P{accel} {snr:g}dB", "split": src["split"],
               "sigma_hat_scaled": sigma_hat, "methods": {}}
        for peer in PEERS:
            if peer.startswith("bart") and not shutil.which("bart"):
                continue
            row["methods"][peer], evals = tune_peer(data, peer, cache.get(key, {}).get(peer, {}), lam0)
            cache.setdefault(key, {})[peer] = evals
            write_json("quality3d_peers.json", cache)
        row["methods"]["sense"], _ = _run(data, "sense")
        res, r = _run(data, "csc")  # the default: one 2-D problem per readout position
        res.update(volume=r.params["volume"], planes=len(r.extras.get("planes", ())),
                   iterations=[p["iterations"] for p in r.extras.get("planes", ()) if p["skipped"] is None])
        row["methods"]["csc"] = res
        res3, r3 = _run(data, "csc", volume="3d")  # one 3-D problem, the 3-D dictionary and RULE_3D
        res3.update(iterations=len(r3.history), lam=r3.params["lam"])
        row["methods"]["csc-3d"] = res3
        row["csc_lam_scan"] = {}  # how far RULE_3D is from each case's best λ (3-D CSC)
        for f in (0.5, 2.0):
            lam = f * r3.params["lam"]
            row["csc_lam_scan"][f"{f:g}x"], _ = _run(data, "csc", volume="3d", lam=lam, mu=37.5 * lam,
                                                     gamma=37.5 * lam)
        if args.fit:
            row["csc_scan"] = {}
            for lam in FIT_GRID:
                row["csc_scan"][_lam_key(lam)], _ = _run(data, "csc", volume="3d", lam=lam, mu=37.5 * lam,
                                                         gamma=37.5 * lam)
        best = max((m for m in row["methods"] if m in PEERS), key=lambda m: row["methods"][m]["psnr"])
        row["best_peer"], row["csc_minus_best"] = best, res["psnr"] - row["methods"][best]["psnr"]
        rows.append(row)
        scan = ("; λ scan " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in row["csc_scan"].items())
                if args.fit else "")
        print(f"[{time.perf_counter() - t0:5.0f} s] {row['label']}: "
              + ", ".join(f"{m} {v['psnr']:.2f}" for m, v in row["methods"].items())
              + "; csc-3d at " + ", ".join(f"{k} λ {v['psnr']:.2f}" for k, v in row["csc_lam_scan"].items()) + scan,
              file=sys.stderr, flush=True)
    methods = [m for m in ("sense", *PEERS, "csc", "csc-3d") if m in rows[0]["methods"]]
    print("\n== 3-D: PSNR dB / SSIM (peers λ-tuned per case; CSC with its defaults: one 2-D problem per readout "
          "position; csc-3d: volume='3d', the shipped 3-D dictionary)")
    print(f"{'case':34s}" + "".join(f"{m:>18s}" for m in methods) + f"{'csc-best':>10s}")
    for row in rows:
        print(f"{row['label']:34s}" + "".join(f"{row['methods'][m]['psnr']:>11.2f}/{row['methods'][m]['ssim']:.3f}"
                                             for m in methods) + f"{row['csc_minus_best']:>+10.2f}")
    d = [r["csc_minus_best"] for r in rows]
    print(f"mean csc − best peer {np.mean(d):+.2f} dB, worst {min(d):+.2f} dB")
    times = {m: np.median([r["methods"][m]["time"] for r in rows]) for m in methods}
    print("median time per run (s): " + ", ".join(f"{m} {t:.1f}" for m, t in times.items())
          + f"; csc / l1wavelet = {times['csc'] / times['l1wavelet']:.2f}, "
          f"csc-3d / l1wavelet = {times['csc-3d'] / times['l1wavelet']:.2f}")
    if args.fit:
        for kind, f in fit_rule(rows).items():
            print(f"fitted 3-D rule ({kind}, {f['n']} cases): λ = max({f['slope']:.4g} σ̂, {f['floor']:g}); "
                  f"shortfall from each case's best λ: mean {f['mean_shortfall']:.2f} dB, "
                  f"worst {f['worst_shortfall']:.2f} dB")
        for row in rows:
            k, v = max(row["csc_scan"].items(), key=lambda kv: kv[1]["psnr"])
            print(f"  {row['label']}: best λ {k} ({float(k) / row['sigma_hat_scaled']:.2f} σ̂) {v['psnr']:.2f} dB; "
                  f"default λ {row['methods']['csc-3d']['lam']:.3g} {row['methods']['csc-3d']['psnr']:.2f} dB")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"machine": machine_info(), "source": args.source, "shape": src["shape"],
                                     "rows": rows}, indent=1, default=float))
    print(f"wrote {json_path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
