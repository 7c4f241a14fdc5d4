r"""Discovering inputs and turning them into per-slice tasks.

A batch is a list of *volumes* (one per input file), each cut into 2D
*slices*; one slice is one task. The client only ever ships a
:class:`SliceTask` (a path and an index) to the workers, never k-space: each
worker reads its own slice from the file.

Inputs
------
- fastMRI ``.h5`` (``kspace`` of shape ``(slices, coils, kx, ky)``) and
  ISMRMRD ``.h5`` files: one task per slice (ISMRMRD: per slice and frame,
  see :attr:`VolumeSpec.n_frames`).
- ``.npy`` / ``.npz`` stacks of shape ``(slices, coils, ny, nx)`` (``.npz``
  with a ``kspace`` array, optionally ``maps`` and ``mask``); a 3-D array
  ``(coils, ny, nx)`` is one slice.
- BART ``.cfl``/``.hdr`` pairs, read through :func:`mri_csc.io.read_kspace`.
- Non-Cartesian ``.npz`` (``kspace`` with a ``trajectory``): stacks of 2-D radial or spiral
  slices and stacks of stars, one task per slice (layout ``"noncartesian"``,
  :mod:`mri_csc.batch.noncartesian`).
- 3-D Cartesian volumes (``layout="volume"``, and 3-D ISMRMRD encodings, with
  their frames: repetitions, BART time/echo dimensions, one volume each):
  k-space in the project's 3-D order ``(coils, nz, ny, nx)`` whose **last
  axis ``kx`` is the fully sampled readout** (as ISMRMRD stores its samples).
  A preparation task takes the inverse FFT along ``kx`` once per volume
  (hybrid space ``(x, coils, kz, ky)``, written under the output folder's
  ``.partial/``); each readout position ``x`` is then an independent 2-D
  problem ``(coils, nz, ny)`` with the ``(kz, ky)`` sampling pattern, and the
  output volume is ``(nz, ny, nx)``. Coil maps in the file are image-domain
  ``(coils, nz, ny, nx)`` and are cut the same way.

Files of different shapes may be mixed in one batch: every file is its own
volume with its own output, so shapes need only agree *within* a file (which
its array layout guarantees).

Random streams
--------------
Every slice gets its own :class:`numpy.random.SeedSequence`,
``SeedSequence(seed, spawn_key=(file_key, slice))``: exactly the child that
``SeedSequence(seed).spawn(...)[file_key].spawn(...)[slice]`` would produce,
with ``file_key`` a CRC-32 of the volume's output name. It depends only on
the seed, the file's name and the slice index, so results do not depend on
scheduling order, the number of workers, or which other files are in the
batch.
"""

from __future__ import annotations

import glob
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VolumeSpec", "SliceTask", "FileError", "expand_inputs", "slice_count", "discover",
           "slice_seed_sequence", "LAYOUTS"]

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "slices", "volume")
_SUFFIXES = (".h5", ".hdf5", ".mrd", ".npy", ".npz", ".cfl")


@dataclass(frozen=True)
class VolumeSpec:
    """One input file, reconstructed into one output volume.

    Attributes
    ----------
    path : str
        Absolute path of the input file.
    name : str
        Output stem (the file name without its suffix), unique within the batch.
    kind : str
        ``"fastmri"``, ``"ismrmrd"``, ``"npy"``, ``"npz"`` or ``"cfl"``.
    layout : str
        ``"slices"`` (a stack of 2-D slices), ``"volume"`` (3-D k-space,
        sliced along the readout after an inverse FFT) or ``"noncartesian"``
        (2-D non-Cartesian slices, :mod:`mri_csc.batch.noncartesian`).
    n_slices : int
    file_key : int
        Stable key of the file for its random streams (CRC-32 of ``name``).
    stacked : bool
        Whether the file holds a stack of slices (read with ``slice=i``) rather
        than a single ``(coils, ny, nx)`` slice.
    n_frames : int
        Frames (ISMRMRD repetitions, contrasts, phases, sets; BART time, echo, … of a
        3-D volume). Layout ``"slices"`` (ISMRMRD): task ``i`` is slice ``i // n_frames``,
        frame ``i % n_frames``. Layout ``"volume"``: task ``i`` is frame ``i // nx``,
        readout position ``i % nx`` (``n_slices = n_frames * nx``).
    """

    path: str
    name: str
    kind: str
    layout: str
    n_slices: int
    file_key: int
    stacked: bool = True
    n_frames: int = 1


@dataclass(frozen=True)
class SliceTask:
    """One 2-D problem: slice ``index`` of ``volume``."""

    volume: VolumeSpec
    index: int

    @property
    def key(self) -> str:
        """A stable, unique task key such as ``"brain_001/0003"``."""
        return f"{self.volume.name}/{self.index:05d}"


@dataclass(frozen=True)
class FileError:
    """An input file that could not be used, and why."""

    path: str
    error: str


def slice_seed_sequence(seed: int, file_key: int, index: int) -> np.random.SeedSequence:
    """The random stream of slice ``index`` of the file keyed ``file_key``.

    Equal to ``SeedSequence(seed).spawn(file_key + 1)[file_key].spawn(index + 1)[index]``
    (without materialising the spawned siblings).
    """
    return np.random.SeedSequence(int(seed), spawn_key=(int(file_key), int(index)))


def _file_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _is_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_inputs(inputs) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of input files.

    Folders contribute their ``.h5``, ``.hdf5``, ``.npy``, ``.npz`` and
    ``.cfl`` files (not recursively); globs are expanded with ``**``
    recursion. Duplicates are removed.

    Raises
    ------
    ValueError
        When no input is given, or a glob or folder matches no input file.
    FileNotFoundError
        When a path that is not a glob does not exist.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("inputs is empty; expected files, folders or glob patterns of k-space data")
    found: list[Path] = []
    for item in inputs:
        s = os.fspath(item)
        if _is_glob(s):
            matches = sorted(glob.glob(s, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise ValueError(f"input pattern {s!r} matches no file")
            found.extend(files)
        else:
            p = Path(s)
            if p.is_dir():
                files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in _SUFFIXES)
                if not files:
                    raise ValueError(f"input folder {s!r} holds no {'/'.join(_SUFFIXES)} file")
                found.extend(files)
            elif p.exists():
                found.append(p)
            else:
                raise FileNotFoundError(f"input {s!r} does not exist")
    # io keeps an .npy's maps and mask beside it as <stem>_maps.npy / <stem>_mask.npy: not inputs
    names = {q.resolve() for q in found}
    found = [q for q in found if not (q.name.endswith(("_maps.npy", "_mask.npy"))
                                      and (q.parent / (q.name[:-9] + ".npy")).resolve() in names)]
    out, seen = [], set()
    for p in found:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def _h5_kind(f) -> str:
    if "kspace" in f:
        return "fastmri"
    if "dataset" in f and "data" in f["dataset"]:
        return "ismrmrd"
    raise ValueError(f"HDF5 file has neither a fastMRI 'kspace' dataset nor an ISMRMRD 'dataset/data'; "
                     f"found keys {sorted(f.keys())}")


def _ismrmrd_geometry(p, f) -> tuple[int, int, int, int]:
    """``(n_slices, nz, nx, n_frames)`` of an ISMRMRD file from its XML and acquisition headers only
    (:func:`mri_csc.io.ismrmrd.ismrmrd_metadata`, which refuses a slice missing a frame before any task runs).

    ``nx`` is the image width (readout oversampling is removed on reading).
    """
    from mri_csc.io.ismrmrd import _heads, _trajectory_type, ismrmrd_metadata, read_header  # noqa: PLC0415

    group = f["dataset"]
    hdr = read_header(p, group)
    if hdr.encoding and _trajectory_type(hdr.encoding[0]) != "cartesian":
        raise ValueError(f"{p}: a non-Cartesian ISMRMRD file ({_trajectory_type(hdr.encoding[0])!r}); batch takes "
                         "non-Cartesian data as .npz stacks: reconstruct it with 'mri-csc recon FILE'")
    if not len(_heads(p, group)):
        return 0, 1, 0, 0
    m = ismrmrd_metadata(p, f)
    return m["n_slices"], m["encoded"][2], m["width"], m["n_frames"]


def _refuse_volume_as_stack(p, kind: str, shape) -> None:
    """Refuse an ``.npy``/``.npz`` array ``(a, b, ny, nx)`` that ``layout="auto"`` would read as a stack of
    slices ``(slices, coils, ny, nx)`` when its second axis holds k_z partitions
    (:func:`mri_csc.io.formats.looks_like_partitions` on the central 16 x 16 k-space block of the first
    slice): a volume ``(coils, nz, ny, nx)`` read so becomes ``coils`` wrong images of ``nz`` "coils"."""
    import numpy as np  # noqa: PLC0415

    from mri_csc.io.formats import _npy_open, _open_npz, looks_like_partitions  # noqa: PLC0415

    ny, nx = shape[-2:]
    block = (0, slice(None), slice(max(ny // 2 - 8, 0), ny // 2 + 8), slice(max(nx // 2 - 8, 0), nx // 2 + 8))
    if kind == "npy":
        first = np.asarray(_npy_open(p)[block])
    else:
        with _open_npz(p) as z:
            first = np.asarray(z["kspace"][block])
    if first.dtype.kind != "c":
        return
    verdict, own, ft = looks_like_partitions(first, 0)
    if verdict:
        raise ValueError(f"{p}: k-space {tuple(shape)} read as a stack (slices, coils, ny, nx) has a k-space centre "
                         f"along its coil axis ({own:.0%} of its energy in the central half of the {shape[1]} "
                         f"entries, peaking at the middle; {ft:.0%} for its Fourier transform): it looks like one "
                         "3-D volume (coils, nz, ny, nx); use layout 'volume' (--layout volume), or 'slices' if it "
                         "is a stack of slices after all")


def slice_count(path, layout: str = "auto") -> tuple[int, str, str, tuple[int, ...]]:
    """Count the 2-D slices of an input file from its header only (no k-space is read, except, for a 4-D
    ``.npy``/``.npz`` under ``layout="auto"``, the central block of its first slice: :func:`_refuse_volume_as_stack`).

    Parameters
    ----------
    path : path-like
    layout : {"auto", "slices", "volume"}
        ``"auto"`` treats every input as a stack of 2-D slices, except 3-D
        ISMRMRD encodings and BART ``(x, y, z, coils)`` arrays, which are volumes; a 4-D
        ``.npy``/``.npz`` whose coil axis looks like k_z partitions is refused (give the layout).
        A BART array with extra dimensions (time, echo, …) is a stack of frames.

    Returns
    -------
    n_slices : int
    kind : str
        ``"fastmri"``, ``"ismrmrd"``, ``"npy"``, ``"npz"`` or ``"cfl"``.
    layout : str
        ``"slices"`` or ``"volume"``.
    shape : tuple
        The k-space array's shape (``()`` for ISMRMRD).

    Raises
    ------
    ValueError, OSError
        When the file is unreadable, truncated or not a k-space file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    requested = layout
    layout = "slices" if layout == "auto" else layout
    if suffix in (".h5", ".hdf5", ".mrd"):
        import h5py  # noqa: PLC0415

        with h5py.File(p, "r") as f:
            kind = _h5_kind(f)
            if kind == "ismrmrd":
                n, nz, nx, n_frames = _ismrmrd_geometry(p, f)
                if nz > 1 or layout == "volume":  # a 3-D encoding: slices along the readout, per frame
                    if n > 1:
                        raise ValueError(f"{p}: ISMRMRD file with {n} slices of 3-D encodings; "
                                         "expected one 3-D volume")
                    return nx * max(n_frames, 1), kind, "volume", ()
                if n_frames > 1:  # one task per (slice, frame)
                    return n * n_frames, kind, layout, ()
                return n, kind, layout, ()
            from mri_csc.io.formats import _h5_dataset, fastmri_single_coil  # noqa: PLC0415

            ds = _h5_dataset(f, "kspace", p)
            shape = tuple(ds.shape)
            if fastmri_single_coil(p, f, ds):  # (slices, ky, kx): as read, one coil per slice
                shape = (shape[0], 1, *shape[1:])
    elif suffix == ".npy":
        from mri_csc.io.formats import _npy_open  # noqa: PLC0415  (header, file size and budget checked)

        kind = "npy"
        shape = tuple(_npy_open(p).shape)
    elif suffix == ".npz":
        from mri_csc.io.formats import _open_npz  # noqa: PLC0415

        from .noncartesian import noncartesian_count  # noqa: PLC0415

        kind = "npz"
        with _open_npz(p) as z:
            n_nc = noncartesian_count(p, z)
            if n_nc is not None:  # k-space with a trajectory: one 2-D non-Cartesian problem per slice
                if requested == "volume":
                    raise ValueError(f"{p}: non-Cartesian k-space is cut into 2-D slices (a stack of stars by "
                                     "an FFT along k_z); layout 'volume' is for Cartesian 3-D k-space")
                return n_nc, kind, "noncartesian", tuple(z.shape("kspace"))
            if "kspace" not in z:
                raise ValueError(f"{p}: .npz holds no 'kspace' array; found {sorted(z.files)}")
            shape = z.shape("kspace")
    elif suffix == ".cfl":
        from mri_csc.io import read_kspace  # noqa: PLC0415  (small files: BART's header order is io's business)

        kind = "cfl"
        d = read_kspace(p)
        shape = tuple(d["kspace"].shape)
        if len(shape) == 5 or (not d["stacked"] and len(shape) == 4):  # BART (x, y, z, coils[, frames]): 3-D
            if layout == "slices" and requested == "slices":
                raise ValueError(f"{p}: BART k-space (x, y, z, coils) = {shape[::-1]} is one 3-D volume; "
                                 "use layout 'volume' (or 'auto')")
            layout = "volume"
    else:
        raise ValueError(f"{p}: unknown input type {suffix!r}; expected one of {_SUFFIXES}")

    if requested == "auto" and kind in ("npy", "npz") and len(shape) == 4:
        _refuse_volume_as_stack(p, kind, shape)
    if layout == "volume":
        if len(shape) == 5 and kind == "cfl":  # BART frames (time, echo, ...) of a 3-D volume
            return int(shape[0] * shape[-1]), kind, layout, shape
        if len(shape) != 4:
            raise ValueError(f"{p}: layout='volume' expects k-space (coils, nz, ny, nx); got shape {shape}")
        return int(shape[-1]), kind, layout, shape
    if len(shape) == 3:
        return 1, kind, layout, shape
    if len(shape) == 4:
        return int(shape[0]), kind, layout, shape
    raise ValueError(f"{p}: k-space of shape {shape}; expected (slices, coils, ny, nx) or (coils, ny, nx)")


def discover(inputs, layout: str = "auto") -> tuple[list[VolumeSpec], list[FileError]]:
    """Expand ``inputs`` and inspect every file's header.

    Files that cannot be read (missing datasets, truncated, not HDF5...) are
    returned as :class:`FileError` records; the others become volumes.

    Raises
    ------
    ValueError
        On a bad ``layout``, a glob matching nothing, or two inputs sharing an
        output name (e.g. ``a/x.h5`` and ``b/x.h5``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    paths = expand_inputs(inputs)
    volumes, errors = [], []
    names: dict[str, Path] = {}
    for p in paths:
        name = p.name[: -len(p.suffix)] if p.suffix else p.name
        if name in names:
            raise ValueError(f"inputs {names[name]} and {p} would both write output {name!r}; "
                             "rename one or run them in separate batches")
        names[name] = p
        try:
            n, kind, lay, shape = slice_count(p, layout)
            stacked = kind in ("fastmri", "ismrmrd") or len(shape) == 4
        except Exception as exc:  # reported, the other files proceed
            log.warning("skipping %s: %s", p, exc)
            errors.append(FileError(str(p), f"{type(exc).__name__}: {exc}"))
            continue
        if n < 1:
            errors.append(FileError(str(p), "file holds no slice"))
            continue
        frames = 1
        if kind == "ismrmrd":
            import h5py  # noqa: PLC0415

            with h5py.File(p, "r") as f:
                frames = max(_ismrmrd_geometry(p, f)[3], 1)
        elif lay == "volume" and len(shape) == 5:
            frames = int(shape[0])
        elif kind == "cfl" and lay == "slices" and len(shape) == 4:  # BART frames (echo, time, ...), never slices
            frames = int(shape[0])
        volumes.append(VolumeSpec(str(p), name, kind, lay, int(n), _file_key(name), stacked, int(frames)))
    return volumes, errors
