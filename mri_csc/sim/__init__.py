"""Simulation: sampling masks, coil maps, phantoms, smooth phase and k-space.

Everything random here draws from a NumPy ``Generator`` on the CPU (``seed`` or
``rng`` arguments), so a seed fixes the data whatever device reconstructs it.
"""

from .coils import ESPIRIT_METHODS, birdcage_maps, estimate_maps, map_agreement
from .masks import MASK_KINDS, calibration_region, realized_acceleration, sample_mask
from .phantoms import (
    DEFAULT_BRAIN,
    brain_slice,
    brain_volume,
    ellipse_phantom,
    load_ellipses,
    nifti_slice,
    nifti_volume,
    shepp_logan,
)
from .phase import PHASE_KINDS, smooth_phase
from .simulate import PHANTOMS, Dataset, make_dataset, simulate_kspace, support_mask
from .trajectories import (
    TRAJECTORIES,
    estimate_maps_noncartesian,
    make_trajectory,
    radial,
    simulate_noncartesian,
    spiral,
    split_stack_of_stars,
    stack_of_stars,
)

__all__ = [
    "DEFAULT_BRAIN",
    "ESPIRIT_METHODS",
    "MASK_KINDS",
    "PHANTOMS",
    "PHASE_KINDS",
    "Dataset",
    "birdcage_maps",
    "brain_slice",
    "brain_volume",
    "calibration_region",
    "ellipse_phantom",
    "estimate_maps",
    "load_ellipses",
    "make_dataset",
    "map_agreement",
    "nifti_slice",
    "nifti_volume",
    "realized_acceleration",
    "sample_mask",
    "shepp_logan",
    "simulate_kspace",
    "smooth_phase",
    "support_mask",
    "TRAJECTORIES",
    "estimate_maps_noncartesian",
    "make_trajectory",
    "radial",
    "simulate_noncartesian",
    "spiral",
    "split_stack_of_stars",
    "stack_of_stars",
]
