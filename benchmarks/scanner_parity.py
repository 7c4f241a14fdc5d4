"""Scanner files made by the real tools, reconstructed by ``mri-csc recon`` and by ``bart pics``: PSNR.

The "new user" check of issue 13, as the README's "Reconstructing scanner data" walks it:

- **BART 2-D**: ``bart phantom -k -s 8 -x 128``, ``bart poisson -Y 128 -Z 128 -y 2 -z 2 -C 24``
  (R = 6.8), ``bart fmac``; maps ``bart ecalib -m 1`` (and ``-m 2`` for BART's soft-SENSE);
  reference: the fully sampled k-space, coil-combined with the maps (``bart fmac -C -s 8``).
- **ISMRMRD**: ``ismrmrd_generate_cartesian_shepp_logan -m 128 -c 8 -O 2 -r 2 -a 2 -w 24 -C``
  (readout oversampling 2, 4 frames at R = 2 with 24 calibration lines, a noise scan);
  ``mri-csc recon FILE --espirit bart`` against ``bart pics`` on the same k-space (read by
  mri_csc: oversampling removed, prewhitened; written as ``.cfl``, maps by ``bart ecalib -m 1``);
  reference: the generator's ``phantom``.

PSNR is against the reference's peak after the least-squares scale of the magnitude (the
files differ in units), over the whole image. ``bart pics`` runs ``-R W:7:0:0.005 -i 100``
(BART's own scaling, the README's peer). Needs ``bart`` and ``ismrmrd-tools`` on PATH.

    python benchmarks/scanner_parity.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from mri_csc.cli import main as cli
from mri_csc.io import read_kspace, write_kspace
from mri_csc.io.cfl import read_cfl

PICS = ["-R", "W:7:0:0.005", "-i", "100"]


def psnr(x, ref):
    """PSNR (dB) of ``|x|`` against ``|ref|`` after the least-squares scale of ``|x|``."""
    x, ref = np.abs(np.squeeze(x)), np.abs(np.squeeze(ref))
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {x.shape} and {ref.shape}")
    s = (x * ref).sum() / (x * x).sum()
    return float(20 * np.log10(ref.max() / np.sqrt(np.mean((s * x - ref) ** 2))))


def run(*cmd, cwd):
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, cwd=cwd)


def timed_cli(args):
    t0 = time.perf_counter()
    rc = cli([str(a) for a in args] + ["--no-pbar", "--force"])
    if rc:
        raise RuntimeError(f"mri-csc {' '.join(map(str, args))} exited {rc}")
    return time.perf_counter() - t0


def bart_2d(d: Path) -> list[tuple]:
    b = lambda *a: run("bart", *a, cwd=d)  # noqa: E731
    b("phantom", "-k", "-s", 8, "-x", 128, "full")
    b("poisson", "-Y", 128, "-Z", 128, "-y", 2, "-z", 2, "-C", 24, "-s", 1, "-v", "-e", "p3d")
    b("transpose", 0, 2, "p3d", "pattern")
    b("fmac", "full", "pattern", "ksp")
    b("ecalib", "-m", 1, "ksp", "maps1")
    b("ecalib", "-m", 2, "ksp", "maps2")
    b("fft", "-i", 3, "full", "ci")
    b("fmac", "-C", "-s", 8, "ci", "maps1", "ref")
    ref = read_cfl(d / "ref")
    rows = []
    for name, maps in (("bart pics, ecalib -m 1", "maps1"), ("bart pics, ecalib -m 2 (soft-SENSE), rss", "maps2")):
        t0 = time.perf_counter()
        b("pics", "-S", *PICS, "ksp", maps, "pics_" + maps)
        t = time.perf_counter() - t0
        img = read_cfl(d / f"pics_{maps}")
        img = np.sqrt((np.abs(img) ** 2).sum(-1)) if img.ndim == 5 else img
        rows.append(("BART 2-D", name, psnr(img, ref), t))
    m1 = str(d / "maps1.cfl")
    for name, extra in (("mri-csc recon --maps maps1.cfl (csc)", ["--maps", m1]),
                        ("mri-csc recon --espirit bart (csc)", ["--espirit", "bart"]),
                        ("mri-csc recon --maps maps1.cfl --method bart-l1wavelet",
                         ["--maps", m1, "--method", "bart-l1wavelet"]),
                        ("mri-csc recon --maps maps1.cfl --method sense", ["--maps", m1, "--method", "sense"])):
        out = d / f"o{len(rows)}.cfl"
        t = timed_cli(["recon", d / "ksp.cfl", "--out", out, *extra])
        rows.append(("BART 2-D", name, psnr(read_cfl(out), ref), t))
    return rows


def ismrmrd_2d(d: Path) -> list[tuple]:
    import h5py

    run("ismrmrd_generate_cartesian_shepp_logan", "-m", 128, "-c", 8, "-O", 2, "-r", 2, "-a", 2, "-w", 24, "-C",
        "-o", "shepp.h5", cwd=d)
    with h5py.File(d / "shepp.h5", "r") as f:
        p = f["dataset/phantom"][()]
    ref = (p["real"] + 1j * p["imag"])[0]
    t = timed_cli(["recon", d / "shepp.h5", "--espirit", "bart", "--out", d / "shepp.npy"])
    ours = np.load(d / "shepp.npy")
    rows = [("ISMRMRD 2-D, 4 frames", "mri-csc recon --espirit bart (csc), mean of frames",
             float(np.mean([psnr(im, ref) for im in ours])), t)]
    k = read_kspace(d / "shepp.h5")["kspace"]  # oversampling removed, prewhitened: what mri_csc reconstructs
    vals, t = [], 0.0
    for i, kf in enumerate(k):
        write_kspace(d / f"f{i}.cfl", kf, overwrite=True)
        run("bart", "ecalib", "-m", 1, f"f{i}", f"f{i}_maps", cwd=d)
        t0 = time.perf_counter()
        run("bart", "pics", "-S", *PICS, f"f{i}", f"f{i}_maps", f"f{i}_pics", cwd=d)
        t += time.perf_counter() - t0
        vals.append(psnr(read_cfl(d / f"f{i}_pics").T, ref))
    rows.append(("ISMRMRD 2-D, 4 frames", "bart pics (ecalib -m 1) on the same k-space, mean of frames",
                 float(np.mean(vals)), t))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scanner_parity_") as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        rows = bart_2d(d) + ismrmrd_2d(d)
    print(f"{'data':24s} {'reconstruction':62s} {'PSNR dB':>8s}")
    for data, name, p, _t in rows:  # times left out: a shared machine
        print(f"{data:24s} {name:62s} {p:8.2f}")


if __name__ == "__main__":
    main()
