"""The CSC image prior: convolutional synthesis, sparse coding, dictionaries, low-pass split, proxes."""

from .conv import ConvSynthesis
from .dictionary import learn_dictionary, load_default_dictionary
from .lowpass import highpass, lowpass_split
from .prox import soft_threshold
from .sparse_coding import ConvSparseCoder

__all__ = [
    "ConvSparseCoder",
    "ConvSynthesis",
    "highpass",
    "learn_dictionary",
    "load_default_dictionary",
    "lowpass_split",
    "soft_threshold",
]
