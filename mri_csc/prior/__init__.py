"""Image priors: the Prior interface; CSC, phase, wavelet and TV priors; sparse coding, low-pass filters, proxes."""

from .base import Prior, PriorSum
from .conv import ConvSynthesis
from .csc_prior import CSCPrior
from .dictionary import learn_dictionary, load_default_dictionary
from .functionals import PhasePrior, TVPrior, WaveletPrior
from .lowpass import NeumannTikhonov, highpass, lowpass_split
from .prox import soft_threshold
from .sparse_coding import ConvSparseCoder

__all__ = [
    "CSCPrior",
    "ConvSparseCoder",
    "ConvSynthesis",
    "NeumannTikhonov",
    "PhasePrior",
    "Prior",
    "PriorSum",
    "TVPrior",
    "WaveletPrior",
    "highpass",
    "learn_dictionary",
    "load_default_dictionary",
    "lowpass_split",
    "soft_threshold",
]
