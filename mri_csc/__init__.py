"""mri_csc: compressed-sensing MRI reconstruction with a convolutional sparse coding prior."""

__version__ = "0.1.0"
