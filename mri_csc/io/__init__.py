"""File input/output: k-space, coil maps, masks and images in .npy/.npz, BART .cfl,
fastMRI and ISMRMRD HDF5, and NIfTI; every writer atomic and no-clobber.

See :mod:`mri_csc.io.formats` for the layout of each format.
"""

from .atomic import OutputExistsError, atomic_path, atomic_paths, check_writable
from .formats import (
    FileFormatError,
    describe,
    detect_format,
    image_outputs,
    read_array,
    read_kspace,
    write_image,
    write_kspace,
)

__all__ = ["read_kspace", "write_kspace", "write_image", "read_array", "describe", "detect_format",
           "image_outputs", "FileFormatError", "OutputExistsError", "atomic_path", "atomic_paths",
           "check_writable"]
