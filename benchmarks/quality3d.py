"""3-D CSC (the shipped 3-D dictionary) against per-case λ-tuned SigPy and BART peers on a held-out volume.

The volume is the MNI152 T1 template (nilearn; a held-out source of ``benchmarks/quality.py``, and
not the Colin 27 blocks the 3-D dictionary was learned from), at 2 mm, an axial slab of
``SHAPE`` = (nz, ny, nx) voxels (a ``SLAB``-slice slab inside the z field of view), smooth random
phase up to ±π, 8 birdcage coils, k-space
simulated from a 2× finer spline resampling and cropped (no inverse crime), noise at 30 and
40 dB; 3-D Cartesian sampling: a variable-density Poisson pattern over the phase-encoding plane
(kz, ky), readout kx fully sampled, R = 4 and 6; coil maps by ESPIRiT (SigPy, 3-D) from the
undersampled data. The reference is the fully sampled noiseless k-space combined with the same
maps; PSNR and SSIM (slices pooled) on magnitude inside its support.

Peers as in ``benchmarks/quality.py``: SigPy ``L1WaveletRecon`` and BART ``pics`` ℓ1-wavelet (100
iterations each), λ tuned per case on a factor-2 grid extended until the best is interior (the TV
peers at 300 iterations are left out in 3-D for their time: one BART TV run took over a minute on
2 shared cores). CSC and SENSE with their defaults; CSC also at half and twice its default λ
(μ = γ = 37.5 λ), to show how far the default — fitted for the 2-D dictionary — is from the 3-D
dictionary's best (not used to choose anything).

    python benchmarks/quality3d.py                 # 2 cases, ~15 min on 2 cores

Writes ``benchmarks/results/quality3d.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info  # noqa: E402
from quality import _add_noise, _calib_side, _mni_path, _run, tune_peer  # noqa: E402

SHAPE = (40, 96, 96)
#: slices of brain in the slab; the rest of the z field of view is empty (the slab lies inside it, as an
#: excited slab does: a slab cut through the brain at the FOV's edges wraps round in kz)
SLAB = 32
N_COILS = 8
CASES = [(4, 30.0), (6, 40.0)]  # (R, SNR dB)
PEERS = ("l1wavelet", "bart-l1wavelet")


def mni_slab(shape=SHAPE):
    """``shape`` (z, y, x) of the MNI152 T1 template at 2 mm, centred in-plane: an axial slab of ``SLAB``
    slices mid-brain, centred in z with empty slices around it."""
    import nibabel as nib

    vol = np.asarray(nib.load(_mni_path()).dataobj, dtype=np.float32)[::2, ::2, ::2]  # RAS, 2 mm
    img = np.transpose(vol, (2, 1, 0))[:, ::-1]  # (z, y, x), anterior up
    nz, ny, nx = shape
    z0 = img.shape[0] // 2 - SLAB // 2 + 4
    out = np.zeros(shape, np.float32)
    sub = img[z0:z0 + SLAB, :ny, :nx]
    oz, oy, ox = (nz - SLAB) // 2, (ny - sub.shape[1]) // 2, (nx - sub.shape[2]) // 2
    out[oz:oz + SLAB, oy:oy + sub.shape[1], ox:ox + sub.shape[2]] = sub
    return out / out.max()


def build_case(accel, snr_db, seed):
    from mri_csc.backend import ifftc
    from mri_csc.sim import estimate_maps, sample_mask, simulate_kspace, support_mask
    from mri_csc.sim.coils import birdcage_maps
    from mri_csc.sim.phase import smooth_phase

    rng = np.random.default_rng(seed)
    mag = mni_slab()
    phi = smooth_phase(SHAPE, "random", amplitude=np.pi, rng=rng)
    img = (mag * np.exp(1j * phi)).astype(np.complex64)
    k_full = simulate_kspace(img, birdcage_maps(SHAPE, N_COILS), None, oversample=2)
    mask = sample_mask("poisson", SHAPE, accel, calib=(16, 16), rng=rng)
    kspace, sigma = _add_noise(k_full, mask, snr_db, rng)
    maps = estimate_maps(kspace, calib_width=min(16, _calib_side(mask)), method="sigpy")
    ref = np.abs((maps.conj() * ifftc(k_full, (-3, -2, -1))).sum(axis=0)).astype(np.float32)
    return dict(kspace=kspace, maps=maps, mask=mask, ref=ref, support=support_mask(ref), sigma=sigma)


def main(argv=None):
    import json

    from mri_csc.recon.noise import estimate_noise_std
    from mri_csc.recon.problem import make_problem

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(RESULTS / "quality3d.json"))
    args = ap.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    for i, (accel, snr) in enumerate(CASES):
        data = build_case(accel, snr, seed=300 + i)
        problem = make_problem(data["kspace"], data["maps"], data["mask"])
        lam0 = max(0.5 * estimate_noise_std(problem.kspace, problem.mask), 1e-6)
        row = {"case": f"MNI152 {SHAPE} P{accel} {snr:g}dB", "methods": {}}
        for peer in PEERS:
            if peer.startswith("bart") and not shutil.which("bart"):
                continue
            row["methods"][peer], _ = tune_peer(data, peer, {}, lam0)
        row["methods"]["sense"], _ = _run(data, "sense")
        res, r = _run(data, "csc")
        res.update(iterations=len(r.history), lam=r.params["lam"])
        row["methods"]["csc"] = res
        row["csc_lam_scan"] = {}
        for f in (0.5, 2.0):
            lam = f * r.params["lam"]
            row["csc_lam_scan"][f"{f:g}x"], _ = _run(data, "csc", lam=lam, mu=37.5 * lam, gamma=37.5 * lam)
        best = max((m for m in row["methods"] if m in PEERS), key=lambda m: row["methods"][m]["psnr"])
        row["best_peer"], row["csc_minus_best"] = best, res["psnr"] - row["methods"][best]["psnr"]
        rows.append(row)
        print(f"[{time.perf_counter() - t0:5.0f} s] {row['case']}: "
              + ", ".join(f"{m} {v['psnr']:.2f}" for m, v in row["methods"].items())
              + "; csc at " + ", ".join(f"{k} λ {v['psnr']:.2f}" for k, v in row["csc_lam_scan"].items()),
              file=sys.stderr, flush=True)
    methods = [m for m in ("sense", *PEERS, "csc") if m in rows[0]["methods"]]
    print("\n== 3-D: PSNR dB / SSIM (peers λ-tuned per case; CSC with its defaults and the shipped 3-D dictionary)")
    print(f"{'case':34s}" + "".join(f"{m:>18s}" for m in methods) + f"{'csc-best':>10s}")
    for row in rows:
        print(f"{row['case']:34s}" + "".join(f"{row['methods'][m]['psnr']:>11.2f}/{row['methods'][m]['ssim']:.3f}"
                                             for m in methods) + f"{row['csc_minus_best']:>+10.2f}")
    d = [r["csc_minus_best"] for r in rows]
    print(f"mean csc − best peer {np.mean(d):+.2f} dB, worst {min(d):+.2f} dB")
    times = {m: np.median([r["methods"][m]["time"] for r in rows]) for m in methods}
    print("median time per run (s): " + ", ".join(f"{m} {t:.1f}" for m, t in times.items())
          + f"; csc / l1wavelet = {times['csc'] / times['l1wavelet']:.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine_info(), "shape": SHAPE, "rows": rows}, indent=1,
                                          default=float))
    print(f"wrote {args.json} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
