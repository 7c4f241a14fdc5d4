"""Reconstruction: the public :func:`reconstruct`, its problem set-up and the method registry."""

from . import (
    bart,  # noqa: F401  (BART pics methods, when the binary is installed)
    baselines,  # noqa: F401  (registers the baseline methods)
    csc,  # noqa: F401  (the CSC method)
    csc_hybrid,  # noqa: F401  (csc-tv, csc-wavelet)
)
from .api import ReconResult, reconstruct
from .problem import ReconProblem, data_scale, make_problem
from .registry import Method, available_methods, get_method, register_method

__all__ = ["reconstruct", "ReconResult", "ReconProblem", "make_problem", "data_scale",
           "Method", "register_method", "get_method", "available_methods"]
