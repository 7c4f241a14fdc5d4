"""Raw-data steps before reconstruction: readout-oversampling removal, noise prewhitening (both applied by
the ISMRMRD reader, :mod:`mri_csc.io.ismrmrd`), SVD coil compression and fastMRI-style retrospective masks."""

from ..io.ismrmrd import noise_whitener, remove_readout_oversampling
from .coil_compression import coil_compression_matrix, compress_coils
from .dtypes import PRECISIONS, input_dtype
from .fastmri_masks import FASTMRI_MASK_KINDS, fastmri_mask

__all__ = ["noise_whitener", "remove_readout_oversampling", "coil_compression_matrix", "compress_coils",
           "fastmri_mask", "FASTMRI_MASK_KINDS", "input_dtype", "PRECISIONS"]
