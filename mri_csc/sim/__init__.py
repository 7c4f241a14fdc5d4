"""Simulation: sampling masks, coil maps, phantoms, smooth phase and k-space.

Everything random here draws from a NumPy ``Generator`` on the CPU (``seed`` or
``rng`` arguments), so a seed fixes the data whatever device reconstructs it.
"""

from .coils import ESPIRIT_METHODS, birdcage_maps, estimate_maps, map_agreement
from .masks import MASK_KINDS, calibration_region, realized_acceleration, sample_mask
from .phantoms import DEFAULT_BRAIN, brain_slice, ellipse_phantom, load_ellipses, nifti_slice, shepp_logan
from .phase import PHASE_KINDS, smooth_phase
from .simulate import PHANTOMS, Dataset, make_dataset, simulate_kspace, support_mask

__all__ = [
    "MASK_KINDS", "sample_mask", "realized_acceleration", "calibration_region",
    "ESPIRIT_METHODS", "birdcage_maps", "estimate_maps", "map_agreement",
    "DEFAULT_BRAIN", "shepp_logan", "ellipse_phantom", "load_ellipses", "nifti_slice", "brain_slice",
    "PHASE_KINDS", "smooth_phase",
    "PHANTOMS", "Dataset", "make_dataset", "simulate_kspace", "support_mask",
]
