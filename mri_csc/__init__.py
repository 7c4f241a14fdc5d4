"""mri_csc: compressed-sensing MRI reconstruction with a convolutional sparse coding prior.

The public entry point is :func:`reconstruct`; see :mod:`mri_csc.recon`.
"""

from .recon import ReconResult, available_methods, reconstruct

__version__ = "0.1.0"

__all__ = ["reconstruct", "ReconResult", "available_methods", "__version__"]
