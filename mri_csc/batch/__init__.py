"""Batch reconstruction at scale on Dask: many files, one task per 2-D slice.

- :func:`reconstruct_batch` — the library entry point (returns a :class:`BatchReport`);
- ``mri-csc batch`` — the command line (:mod:`mri_csc.batch.cli`);
- :mod:`~mri_csc.batch.tasks` (inputs → per-slice tasks, random streams),
  :mod:`~mri_csc.batch.engine` (the Dask cluster), :mod:`~mri_csc.batch.worker`
  (what runs on a worker), :mod:`~mri_csc.batch.runner` (submission, retries,
  resume, assembly).
"""

from .runner import BatchReport, SliceFailure, reconstruct_batch, serial_reconstruct
from .tasks import FileError, SliceTask, VolumeSpec, discover, slice_count, slice_seed_sequence

__all__ = ["reconstruct_batch", "serial_reconstruct", "BatchReport", "SliceFailure", "FileError",
           "SliceTask", "VolumeSpec", "discover", "slice_count", "slice_seed_sequence"]
