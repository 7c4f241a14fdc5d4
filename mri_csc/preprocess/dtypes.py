"""The dtype k-space is computed in: complex only; complex128 computed as complex64 unless asked."""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["PRECISIONS", "input_dtype"]

log = logging.getLogger("mri_csc.recon")

PRECISIONS = ("single", "double")


def input_dtype(kspace, coil_maps, precision: str = "single"):
    """Refuse real-valued k-space; cast complex128 inputs to complex64 (``precision="single"``) with a notice.

    Returns ``(kspace, coil_maps)``, possibly cast (on their own device).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if not hasattr(kspace, "dtype"):
        return kspace, coil_maps  # make_problem names the type error
    dt = np.dtype(kspace.dtype)
    if dt.kind == "f":
        raise TypeError(f"kspace must have a complex dtype; got real-valued {dt} (measured k-space is complex: "
                        "pass real + 1j * imag, not a magnitude or an image)")
    if dt == np.complex128 and precision == "single":
        log.warning("complex128 k-space is computed in complex64 (4-6x faster; pass precision='double' to keep it)")
        kspace = kspace.astype(np.complex64)
        if coil_maps is not None and np.dtype(coil_maps.dtype) == np.complex128:
            coil_maps = coil_maps.astype(np.complex64)
    return kspace, coil_maps
