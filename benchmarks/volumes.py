"""CSC on 3-D brain phantoms from ``make_dataset``: per readout position (the default) against one 3-D problem.

The volumes of the README's "3-D brain and NIfTI phantoms" table: (32, 96, 96), 8 birdcage coils, k-space
from a 2× finer grid, Poisson over (kz, ky) with a 16 × 16 calibration block, seed 0. ``brain`` (Colin 27,
the dictionaries' subject) with the true coil maps; MNI152 (nilearn, held out) with ESPIRiT (SigPy) maps
from the undersampled data. PSNR on magnitude inside the support against ``ds.magnitude_ref`` (the true
image, whichever the maps). Zero-filled and SENSE (30 CG iterations) for scale; no tuned peers here (see
``benchmarks/quality3d.py`` for those). Times in one process, side by side.

    python benchmarks/volumes.py          # ~6 min on 2 cores
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _mni_path  # noqa: E402

SHAPE = (32, 96, 96)
CASES = [("brain", "true", 4, 30.0), ("brain", "true", 6, 40.0), ("mni", "ESPIRiT", 4, 30.0),
         ("mni", "ESPIRiT", 6, 40.0)]
METHODS = {"zero-filled": {}, "sense": {}, "csc": {}, "csc-3d": {"volume": "3d"}}


def main():
    import mri_csc
    from mri_csc.metrics import psnr
    from mri_csc.sim import estimate_maps, make_dataset

    print(f"{'phantom ' + str(SHAPE):28s}{'maps':9s}{'case':11s}" + "".join(f"{m:>13s}" for m in METHODS)
          + f"{'csc time':>10s}{'csc-3d':>8s}{'ratio':>7s}")
    for phantom, maps_kind, accel, snr in CASES:
        source = "brain" if phantom == "brain" else _mni_path()
        ds = make_dataset(source, shape=SHAPE, n_coils=8, accel=accel, calib=(16, 16), snr_db=snr, oversample=2,
                          seed=0)
        maps = ds.maps if maps_kind == "true" else estimate_maps(ds.kspace, calib_width=16, method="sigpy")
        row, times = {}, {}
        for label, extra in METHODS.items():
            method = "csc" if label.startswith("csc") else label
            t0 = time.perf_counter()
            r = mri_csc.reconstruct(ds.kspace, maps, mask=ds.mask, method=method, check_maps=False, **extra)
            times[label] = time.perf_counter() - t0
            row[label] = psnr(ds.magnitude_ref, np.abs(np.asarray(r.image)), mask=ds.support)
        name = "brain (Colin 27)" if phantom == "brain" else "MNI152 (held out)"
        print(f"{name:28s}{maps_kind:9s}{f'P{accel} {snr:g} dB':11s}" + "".join(f"{row[m]:>13.2f}" for m in METHODS)
              + f"{times['csc']:>9.0f}s{times['csc-3d']:>7.0f}s{times['csc'] / times['csc-3d']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
