"""Linear operators: the abstraction and the MRI forward-model pieces."""

from .base import Compose, FunctionOperator, Identity, LinearOperator, Scaled, dot_test
from .mri import FFT, CoilSensitivity, Mask, Sense
from .nufft import NUFFT, NUFFTSense

__all__ = [
    "LinearOperator", "FunctionOperator", "Compose", "Scaled", "Identity", "dot_test",
    "FFT", "CoilSensitivity", "Mask", "Sense", "NUFFT", "NUFFTSense",
]
