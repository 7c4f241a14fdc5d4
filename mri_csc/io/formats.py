"""Read and write k-space, coil maps, masks and images in the common MRI file formats.

Formats, chosen by file extension:

``.npy``
    One array: k-space ``(coils, ny, nx)``. Maps and mask, when present, sit
    next to it as ``<stem>_maps.npy`` and ``<stem>_mask.npy``.
``.npz``
    Keys ``kspace`` and optionally ``maps`` and ``mask``.
``.cfl`` / ``.hdr`` (BART)
    BART's dimension order ``(x, y, z, coils, maps, TE, ...)`` with ``x`` the
    readout. Ours is the reverse: ``(coils, ny, nx)`` is BART ``(nx, ny, 1, coils)``
    and ``(coils, nz, ny, nx)`` is ``(nx, ny, nz, coils)``, in 2-D and 3-D alike
    (:func:`to_bart`). BART dimensions from 5 on (echoes, time, …) are frames
    (:func:`bart_frames`); several ESPIRiT map sets (dim 4) are refused. Maps are
    ``<base>_maps.cfl``, the mask ``<base>_mask.cfl`` (a BART pattern ``(nx, ny, nz)``
    or ``(1, ny, nz)``).
``.h5`` / ``.hdf5``
    fastMRI-style: ``kspace`` ``(slices, coils, ky, kx)`` (or single-coil ``(slices, ky, kx)``, read as
    one coil); optional ``maps``
    (same shape), ``mask`` (``(slices, ny, nx)``, ``(ny, nx)`` or fastMRI's 1D
    column mask ``(nx,)``) and ``ismrmrd_header``. Reconstructions are written
    to ``reconstruction`` (magnitude, float32, ``(slices, ny, nx)`` as fastMRI
    does) plus ``reconstruction_complex`` (complex64).
    A ``.h5`` holding an ISMRMRD ``dataset/data`` group is read as ISMRMRD.
``.mrd`` (or ``fmt="ismrmrd"``)
    ISMRMRD/MRD Cartesian HDF5, see :mod:`mri_csc.io.ismrmrd`.
``.nii`` / ``.nii.gz`` (images only)
    A complex image becomes two volumes: ``<stem>_mag.nii.gz`` (magnitude)
    and ``<stem>_phase.nii.gz`` (phase in radians, ``[-π, π]``). Array axes
    ``([frames,] [nz,] ny, nx)`` are written reversed, as NIfTI ``(x, y, z, t)``
    (x the readout, as BART's), units mm and s; the affine comes from the
    ISMRMRD geometry (:func:`nifti_affine`) or a given affine, else identity.

Every writer is atomic and refuses to overwrite an existing file unless
``overwrite=True``. Every reader names the file in its errors: missing,
truncated or corrupt files raise :class:`FileFormatError` (a ``ValueError``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from . import ismrmrd as _mrd
from .atomic import atomic_path, atomic_paths, check_writable, commit_files, sweep_stale, temp_dir
from .cfl import cfl_base
from .limits import BudgetError, check_nbytes, check_shape

__all__ = ["FileFormatError", "detect_format", "read_kspace", "read_metadata", "center_crop", "write_kspace",
           "slice_position_order", "check_centred_kspace", "looks_like_partitions",
           "write_image", "read_array", "load_nifti", "describe", "image_outputs", "KSPACE_FORMATS", "IMAGE_FORMATS"]

log = logging.getLogger(__name__)

KSPACE_FORMATS = ("npy", "npz", "cfl", "fastmri", "ismrmrd")
IMAGE_FORMATS = ("npy", "npz", "cfl", "fastmri", "nifti")


class FileFormatError(ValueError):
    """A file is missing, truncated, corrupt or not what was expected."""


def detect_format(path: "str | os.PathLike", fmt: str | None = None) -> str:
    """The format name for ``path`` from its extension (or ``fmt`` when given)."""
    if fmt is not None:
        if fmt not in set(KSPACE_FORMATS) | set(IMAGE_FORMATS):
            raise ValueError(f"format must be one of {sorted(set(KSPACE_FORMATS) | set(IMAGE_FORMATS))}; got {fmt!r}")
        return fmt
    name = str(path).lower()
    for ext, f in ((".nii.gz", "nifti"), (".nii", "nifti"), (".npy", "npy"), (".npz", "npz"),
                   (".cfl", "cfl"), (".hdr", "cfl"), (".h5", "fastmri"), (".hdf5", "fastmri"),
                   (".mrd", "ismrmrd")):
        if name.endswith(ext):
            return f
    if Path(str(path) + ".cfl").exists():
        return "cfl"
    raise ValueError(f"{path}: unknown file extension; expected one of .npy .npz .cfl/.hdr .h5 .mrd .nii .nii.gz")


def _stem(path) -> Path:
    p = Path(path)
    name = p.name
    for ext in (".nii.gz", ".nii", ".npy", ".npz", ".cfl", ".hdr", ".h5", ".hdf5", ".mrd"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)])
    return p


def _require(path) -> None:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise FileFormatError(f"{p}: is a folder, expected a file")


# ----------------------------------------------------------------------------- BART layout
#
# BART's dimensions are (x, y, z, coils, maps, TE, coeff, coeff2, iter, cshift, time, time2, level, slice, ...)
# with x the readout. mri_csc's arrays are (coils, [nz,] ny, nx) with the readout last, so the mapping is
# a reversal of the first four axes: BART (x, y, z, coils) <-> ours (coils, z, y, x), in 2-D and 3-D alike.

BART_MAPS_DIM = 4
BART_TIME_DIM = 10


def to_bart(a: np.ndarray, coils: bool = True) -> np.ndarray:
    """Our ``(coils, [nz,] ny, nx)`` (or ``([nz,] ny, nx)`` when ``coils=False``) → BART ``(nx, ny, nz, coils)``."""
    a = np.asarray(a)
    if not coils:
        a = a[None]
    if a.ndim - 1 not in (2, 3):
        raise ValueError(f"expected 2 or 3 spatial dims; got shape {a.shape}")
    if a.ndim == 3:
        a = a[:, None]
    return a.T


def bart_frames(a: np.ndarray, what: str = "array") -> tuple[np.ndarray, tuple[int, ...]]:
    """BART ``(x, y, z, coils, maps, extra...)`` → ours ``(frames, coils, nz, ny, nx)`` and the extra dims.

    Every BART dimension from 5 on (TE, coefficients, time, slice, …) is a frame;
    frames are numbered in BART's (Fortran) order. A ``maps`` dimension (4) larger
    than 1 is refused: k-space has no map sets, and soft-SENSE with several
    ESPIRiT sets is not supported.
    """
    a = np.asarray(a)
    while a.ndim < 5:
        a = a[..., None]
    if a.shape[BART_MAPS_DIM] > 1:
        raise ValueError(f"{what}: BART dimension 4 (ESPIRiT map sets) has {a.shape[BART_MAPS_DIM]} sets; mri_csc "
                         "reconstructs with one set of maps (soft-SENSE, all sets in one forward model, is not "
                         "supported; each set on its own is not equivalent) - compute them with 'bart ecalib -m 1' "
                         "(or take the first set with 'bart slice 4 0 IN OUT'), or for soft-SENSE run 'bart pics' "
                         "on both sets and combine them with 'bart rss 16'")
    extra = tuple(a.shape[5:])
    n = int(np.prod(extra)) if extra else 1
    frames = a.reshape(a.shape[:4] + (n,), order="F")  # (x, y, z, coils, frames)
    return np.ascontiguousarray(frames.T), extra    # (frames, coils, z, y, x)


def from_bart(a: np.ndarray, coils: bool = True, what: str = "array") -> np.ndarray:
    """BART ``(x, y, z, coils)`` → ours ``(coils, [nz,] ny, nx)`` (``nz`` dropped when 1).

    Raises ``ValueError`` when the array has map sets or extra (time, echo, …)
    dimensions: use :func:`bart_frames` for those.
    """
    f, extra = bart_frames(a, what)
    if f.shape[0] > 1:
        raise ValueError(f"{what}: BART array has extra dimensions {extra} (time, echo, ...); expected one "
                         "frame here")
    out = f[0]
    if out.shape[1] == 1:
        out = out[:, 0]
    return out if coils else out[0]


def _read_cfl(path):
    base = cfl_base(path)
    for ext in (".cfl", ".hdr"):
        if not Path(base + ext).exists():
            raise FileNotFoundError(f"{base}{ext}: no such file (a BART array needs both .cfl and .hdr)")
    from .cfl import read_cfl  # noqa: PLC0415

    size, hsize = Path(base + ".cfl").stat().st_size, Path(base + ".hdr").stat().st_size
    if size % 8:
        raise FileFormatError(f"{base}.cfl: size {size} bytes is not a multiple of 8 (complex64 samples); "
                              "the file is truncated or not a BART array")
    if hsize > 65536:
        raise FileFormatError(f"{base}.hdr: {hsize} bytes is far too large for a BART header")
    check_nbytes(size, f"{base}.cfl: BART array")
    try:
        return read_cfl(base)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{base}.cfl: cannot read BART array ({e})") from None


def _cfl_header_dims(path) -> tuple[int, ...]:
    """A BART array's dimensions from its ``.hdr`` alone (trailing ones kept as written)."""
    hdr = Path(cfl_base(path) + ".hdr")
    try:
        lines = [ln.strip() for ln in hdr.read_text().splitlines()]
        return tuple(int(d) for d in lines[lines.index("# Dimensions") + 1].split())
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{hdr}: not a BART header ({type(e).__name__}: {e})") from None


def _write_cfl_atomic(base, array, overwrite: bool) -> None:
    from .cfl import write_cfl  # noqa: PLC0415

    base = cfl_base(base)
    dests = [Path(base + ".cfl"), Path(base + ".hdr")]
    for d in dests:
        check_writable(d, overwrite)
    sweep_stale(Path(base).parent)
    with temp_dir(base) as tmpdir:
        tbase = os.path.join(tmpdir, "a")
        write_cfl(tbase, np.asarray(array, np.complex64))
        # both or neither; data first, header last: the header marks completion
        commit_files([(tbase + ".cfl", dests[0]), (tbase + ".hdr", dests[1])], overwrite)


# ----------------------------------------------------------------------------- readers

def fastmri_single_coil(path, f, ds) -> bool:
    """Whether a fastMRI-style file's ``kspace`` dataset ``ds`` is single-coil ``(slices, ky, kx)`` (else
    multi-coil ``(slices, coils, ky, kx)``). A 3-D ``kspace`` counts as single-coil only with fastMRI's marks of
    it (a ``reconstruction_esc`` dataset, or an ``ismrmrd_header`` and an ``acquisition`` attribute): a file of
    one slice's coils, ``(coils, ky, kx)``, must not be read as slices."""
    if ds.ndim == 4:
        return False
    if ds.ndim == 3 and ("reconstruction_esc" in f or ("ismrmrd_header" in f and "acquisition" in f.attrs)):
        return True
    raise FileFormatError(f"{path}: fastMRI 'kspace' must be (slices, coils, ky, kx), or (slices, ky, kx) in a "
                          f"fastMRI single-coil file (with 'reconstruction_esc', or an 'ismrmrd_header' and an "
                          f"'acquisition' attribute); got shape {ds.shape}")


def _fastmri_meta(path, f) -> dict:
    """A fastMRI file's attributes, ``ismrmrd_header`` and the image crop fastMRI's ``center_crop`` uses.

    fastMRI crops the image ``(..., H, W)`` to ``(reconSpace.x, reconSpace.y)`` of the header
    (e.g. 640 x 368 to 320 x 320 for knees).
    """
    meta = {"h5_attrs": {k: v for k, v in f.attrs.items()}, "ismrmrd_header": None, "crop": None, "geometry": None}
    if "ismrmrd_header" in f:
        raw = f["ismrmrd_header"][()]
        raw = raw[0] if getattr(raw, "shape", ()) else raw
        meta["ismrmrd_header"] = raw
        try:
            import ismrmrd  # noqa: PLC0415

            hdr = ismrmrd.xsd.CreateFromDocument(raw.decode() if isinstance(raw, bytes) else str(raw))
            rs = hdr.encoding[0].reconSpace.matrixSize
            meta["crop"] = (int(rs.x), int(rs.y))
            fov = hdr.encoding[0].reconSpace.fieldOfView_mm
            # the NIfTI's voxel sizes (nifti_affine): its axes are (columns, rows, slices) of the (rows = readout x,
            # columns = phase y) image; fastMRI keeps no directions or positions, so the orientation is unknown
            unknown = dict.fromkeys(("position", "read_dir", "phase_dir", "slice_dir"), (0.0, 0.0, 0.0))
            meta["geometry"] = {"fov_mm": (float(fov.y), float(fov.x), float(fov.z)),
                                "matrix": (int(rs.y), int(rs.x), 1), "slices": [unknown]}
        except Exception as e:  # a header we cannot parse: no crop, said once
            log.warning("%s: ismrmrd_header does not parse (%s); no crop to the recon size (use --crop)",
                        path, type(e).__name__)
    return meta


def read_array(path, key: str | None = None) -> np.ndarray:
    """Read one array (e.g. coil maps for ``--maps``) from .npy, .npz (``key`` or ``maps``), .cfl or .h5."""
    fmt = detect_format(path)
    if fmt != "cfl":
        _require(path)
    if fmt == "npy":
        return _load_npy(path)
    if fmt == "npz":
        with _open_npz(path) as z:
            keys = [key] if key else ["maps", *z.files]
            for k in keys:
                if k in z.files:
                    return z[k]
            raise FileFormatError(f"{path}: no array {key!r} in the .npz; it holds {z.files}")
    if fmt == "cfl":
        return from_bart(_read_cfl(path), what=f"{cfl_base(path)}.cfl")
    if fmt == "fastmri":
        with _open_h5(path) as f, _h5_guard(path):
            k = key or "maps"
            ds = _h5_dataset(f, k, path)
            if ds is None:
                raise FileFormatError(f"{path}: no dataset {k!r}; it holds {list(f.keys())}")
            a = _h5_read(ds, path)
            return a[0] if a.ndim == 4 and a.shape[0] == 1 else a
    raise FileFormatError(f"{path}: cannot read an array from a {fmt} file")


def _npy_header(fobj, what: str):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream at ``fobj``, checked against the budget.

    Any malformed header (bad magic, a header that does not parse, an object
    dtype) is a :class:`FileFormatError`.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fobj)
        shape, fortran, dtype = (fmt.read_array_header_1_0(fobj) if version == (1, 0)
                                 else fmt.read_array_header_2_0(fobj) if version == (2, 0)
                                 else fmt._read_array_header(fobj, version))  # 3.0: utf-8 header
    except Exception as e:  # noqa: BLE001  (the header is untrusted text: ValueError, SyntaxError, TokenError...)
        raise FileFormatError(f"{what}: not a valid .npy header ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise FileFormatError(f"{what}: holds Python objects (dtype {dtype}); only numeric arrays are read")
    check_shape(shape, dtype, what)
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _npy_open(path):
    """A read-only memory map of an ``.npy`` file, after checking its header against the file size and budget."""
    with open(path, "rb") as f:
        shape, fortran, dtype = _npy_header(f, f"{path}")
        offset = f.tell()
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    have = os.path.getsize(path) - offset
    if need > have:
        raise FileFormatError(f"{path}: header declares {shape} {dtype} ({need} bytes) but the file holds "
                              f"{have} data bytes; it is truncated")
    if need == 0:
        return np.zeros(shape, dtype)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FileFormatError(f"{path}: not a valid .npy file ({e})") from None


def _load_npy(path, index: int | None = None):
    """Read an ``.npy`` (or only ``a[index]`` of it, through a memory map)."""
    a = _npy_open(path)
    if index is not None:
        if a.ndim < 1 or not 0 <= index < a.shape[0]:
            raise FileFormatError(f"{path}: slice {index} out of range for an array of shape {a.shape}")
        a = a[index]
    try:
        return np.array(a)
    except OSError as e:
        raise FileFormatError(f"{path}: cannot read the data ({e})") from None


_ZIP_ERRORS = None


def _zip_errors():
    global _ZIP_ERRORS
    if _ZIP_ERRORS is None:
        import zipfile  # noqa: PLC0415
        import zlib  # noqa: PLC0415

        _ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                       RuntimeError, KeyError, IndexError, OverflowError)
    return _ZIP_ERRORS


class _open_npz:
    """An ``.npz`` read member by member, each checked against its declared size and the budget.

    ``z.files`` lists the arrays; ``z[name]`` reads one (streaming: never more than
    its declared size), ``z.read(name, index)`` only ``a[index]`` of a C-ordered member.
    """

    def __init__(self, path):
        import zipfile  # noqa: PLC0415

        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
            names = self.zf.namelist()
        except _zip_errors() as e:
            if _is_npy(path):
                raise FileFormatError(f"{path}: is a .npy array, not a .npz archive") from None
            raise FileFormatError(f"{path}: not a valid .npz file ({type(e).__name__}: {e})") from None
        self.files = [n[:-4] for n in names if n.endswith(".npy")]

    def __contains__(self, name):
        return name in self.files

    def __getitem__(self, name):
        return self.read(name)

    def shape(self, name):
        """The declared shape of member ``name`` (header only)."""
        return self.header(name)[0]

    def header(self, name):
        """The declared ``(shape, dtype)`` of member ``name`` (header only)."""
        with self._member(name) as (f, shape, _, dtype):
            return shape, dtype

    def _member(self, name):
        import contextlib  # noqa: PLC0415

        @contextlib.contextmanager
        def cm():
            what = f"{self.path}: member {name!r}"
            try:
                info = self.zf.getinfo(name + ".npy")
                check_nbytes(info.file_size, what)
                f = self.zf.open(info)
            except BudgetError:
                raise
            except _zip_errors() as e:
                raise FileFormatError(f"{what}: cannot open ({type(e).__name__}: {e})") from None
            try:
                shape, fortran, dtype = _npy_header(f, what)
                need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if need > info.file_size:
                    raise FileFormatError(f"{what}: header declares {shape} {dtype} ({need} bytes), more than "
                                          f"the member's {info.file_size} bytes; the archive is corrupt")
                yield f, shape, fortran, dtype
            finally:
                f.close()
        return cm()

    def read(self, name, index: int | None = None):
        what = f"{self.path}: member {name!r}"
        try:
            with self._member(name) as (f, shape, fortran, dtype):
                if index is None:
                    out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype)
                    view, pos = memoryview(out).cast("B"), 0
                    while pos < len(view):
                        got = f.readinto(view[pos:pos + (1 << 24)])
                        if not got:
                            raise EOFError("member ends early")
                        pos += got
                    return out.reshape(shape, order="F" if fortran else "C")
                if not shape or not 0 <= index < shape[0]:
                    raise FileFormatError(f"{what}: slice {index} out of range for shape {shape}")
                if fortran and len(shape) > 1:
                    raise FileFormatError(f"{what}: a Fortran-ordered stack cannot be read one slice at a time")
                per = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
                skip = index * per
                while skip:
                    got = len(f.read(min(skip, 1 << 24)))
                    if not got:
                        raise EOFError("member ends early")
                    skip -= got
                buf = f.read(per)
                if len(buf) != per:
                    raise EOFError("member ends early")
                return np.frombuffer(buf, dtype).reshape(shape[1:]).copy()
        except (FileFormatError, BudgetError):
            raise
        except _zip_errors() as e:
            raise FileFormatError(f"{what}: truncated or corrupt ({type(e).__name__}: {e})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zf.close()


def _is_npy(path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _open_h5(path):
    import h5py  # noqa: PLC0415

    try:
        return h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError) as e:
        raise FileFormatError(f"{path}: not a valid HDF5 file ({str(e).splitlines()[0] if str(e) else e})") from None


_H5_LIB_ERRORS = (OSError, KeyError, RuntimeError, ValueError)


class _h5_guard:
    """Turn an HDF5 library error raised *inside h5py* (corrupt B-tree, bad address) into a FileFormatError.

    h5py translates the HDF5 error stack into ``OSError``, ``KeyError``,
    ``RuntimeError`` ("Unable to get group info") or ``ValueError``; only
    these are converted. Errors while reading a dataset's data are converted
    by :func:`_h5_read`. Anything else (a ``TypeError`` from a wrong argument
    such as ``key=5``, errors raised by our own code or by anything but h5py)
    is a bug or a usage error and passes through unchanged.
    """

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or isinstance(exc, (FileFormatError, BudgetError)) or not isinstance(exc, _H5_LIB_ERRORS):
            return False
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = tb.tb_frame.f_code.co_filename if tb is not None else ""
        if "h5py" in where:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FileFormatError(f"{self.path}: corrupt HDF5 file ({type(exc).__name__}: {first})") from None
        return False


def _h5_dataset(f, name: str, path):
    """``f[name]`` when it is a dataset; a group, a dangling or external link is a FileFormatError."""
    import h5py  # noqa: PLC0415

    try:
        link = f.get(name, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise FileFormatError(f"{path}: {name!r} is an external link to {link.filename}; not followed")
        obj = f.get(name)
    except FileFormatError:
        raise
    except (KeyError, OSError, ValueError, RuntimeError) as e:
        raise FileFormatError(f"{path}: {name!r} cannot be opened ({str(e).splitlines()[0] if str(e) else e})") \
            from None
    if obj is None:
        raise FileFormatError(f"{path}: {name!r} is a dangling link")
    if not isinstance(obj, h5py.Dataset):
        raise FileFormatError(f"{path}: {name!r} is a {type(obj).__name__}, expected a dataset")
    dt = obj.dtype
    ok = dt.kind in "cfiub" or (dt.names is not None and {"r", "i"} <= set(dt.names))
    if not ok:
        raise FileFormatError(f"{path}: dataset {name!r} has dtype {dt}; expected numbers")
    return obj


def _h5_read(ds, path, index: int | None = None):
    """Read dataset ``ds`` (or ``ds[index]``), checked against the budget first, slice by slice."""
    name = ds.name.lstrip("/")
    shape = tuple(ds.shape) if index is None else tuple(ds.shape[1:])
    check_shape(shape, np.complex64 if ds.dtype.itemsize < 8 else ds.dtype, f"{path}: {name}")  # as complex64
    try:
        if index is not None:
            return ds[index]
        if ds.ndim >= 3 and ds.shape[0] > 1:  # one slice at a time: a compressed bomb stays bounded
            out = np.empty(ds.shape, ds.dtype)
            for i in range(ds.shape[0]):
                out[i] = ds[i]
            return out
        return ds[()]
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as e:
        raise FileFormatError(f"{path}: cannot read {name!r} (truncated or corrupt file: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _select_slice(path, arr, slice, n_slices):
    if slice is None:
        return arr
    if not isinstance(slice, (int, np.integer)) or not 0 <= slice < n_slices:
        raise ValueError(f"{path}: slice {slice} out of range; the file has {n_slices} slice(s) (0..{n_slices - 1})")
    return None if arr is None else arr[slice]


def _check_total(path, kspace, maps=None, mask=None, slice: int | None = None) -> None:
    """Budget the k-space, coil maps and mask of one file together, from their declared ``(shape, dtype)``.

    Each array was checked on its own; this checks their sum, before any is
    read: a file whose arrays each fit but together do not is refused. With
    ``slice``, a 4-D k-space or map stack (and a mask with one pattern per
    slice) counts one slice. K-space and maps count as at least complex64 (how
    they are held), the mask as float32 plus its stored form.
    """
    kshape = tuple(kspace[0])
    total = 0.0
    for name, part, least in (("kspace", kspace, 8), ("maps", maps, 8), ("mask", mask, 4)):
        if part is None:
            continue
        shape, dtype = tuple(part[0]), np.dtype(part[1])
        per_slice = len(kshape) == 4 and shape[:1] == kshape[:1] and (len(shape) == 4 if name != "mask"
                                                                      else len(shape) == 3)
        if slice is not None and per_slice:
            shape = shape[1:]
        held = dtype if dtype.itemsize >= least else np.dtype(np.complex64 if least == 8 else np.float32)
        check_shape(shape, held, f"{path}: {name}")  # each on its own first, for the clearer message
        total += math.prod(float(d) for d in shape) * (held.itemsize + (dtype.itemsize if name == "mask" else 0))
    check_nbytes(total, f"{path}: k-space, coil maps and mask together")


def read_kspace(path: "str | os.PathLike", *, slice: int | None = None, fmt: str | None = None,
                prewhiten: "bool | None" = None, noise=None, frame: int | None = None) -> dict:
    """Read k-space (and coil maps and mask when the file holds them).

    Parameters
    ----------
    path : str or path
        A ``.npy``, ``.npz``, ``.cfl``/``.hdr`` (or BART base name), fastMRI
        ``.h5`` or ISMRMRD ``.h5``/``.mrd`` file.
    slice : int, optional
        For multi-slice files (fastMRI, ISMRMRD, or a 4D ``(slices, coils, ny, nx)``
        array with ``fmt``'s ``stacked``), the slice to read; ``None`` reads all.
    fmt : str, optional
        Force a format instead of guessing from the extension.
    prewhiten : bool, optional
        ISMRMRD: whiten the coils with the noise scans' covariance (default:
        when the file has noise scans), see :mod:`mri_csc.io.ismrmrd`.
    noise : array, optional
        ISMRMRD: ``(coils, samples)`` noise to whiten with instead.
    frame : int, optional
        ISMRMRD: read this frame only (BART frames are chosen with ``slice``).

    Returns
    -------
    dict
        ``kspace`` (complex64, ``(coils, ny, nx)``, or ``(slices, coils, ny, nx)``
        when several slices were read, with ``stacked=True``), ``maps`` (same
        shape, or None), ``mask`` (or None), ``n_slices``, ``stacked``, ``format``,
        ``lead_shape``/``lead_axes`` (the shape and names of the stacked leading
        axes, e.g. ``(4,)``/``("frame",)`` for an ISMRMRD file with 4 repetitions:
        the stack is their flattening), ``crop`` (image size to crop the
        reconstruction to, or None), ``geometry`` (ISMRMRD, for NIfTI, or None),
        ``calibration`` (ISMRMRD: the separate reference scan's lines on the k-space's grid, one array per
        slice (a list of them when stacked), for coil maps only, or None; absent for other formats; see
        :func:`calibration_data`).

    Raises
    ------
    FileNotFoundError, FileFormatError, ValueError
        One line, naming the file.
    """
    fmt = detect_format(path, fmt)
    if fmt != "cfl":
        _require(path)
    maps = mask = None
    n_slices, stacked = 1, False
    extra = {}
    if frame is not None and fmt not in ("fastmri", "ismrmrd"):
        raise ValueError(f"{path}: frame= applies to ISMRMRD files; a BART file's frames are chosen with slice=")
    if (prewhiten or noise is not None) and fmt not in ("fastmri", "ismrmrd"):
        raise ValueError(f"{path}: prewhiten/noise apply to ISMRMRD files; prewhiten other k-space with "
                         "mri_csc.io.ismrmrd.noise_whitener")
    if fmt == "npy":
        mp, mk = sibling_path(path, "maps", fmt), sibling_path(path, "mask", fmt)
        kmap = _npy_open(path)
        hdrs = []
        for q in (mp, mk):
            a = _npy_open(q) if q.exists() else None
            hdrs.append(None if a is None else (a.shape, a.dtype))
        del a
        _check_total(path, (kmap.shape, kmap.dtype), *hdrs, slice=slice)
        if slice is not None and kmap.ndim == 4:  # one slice of a stack, through the memory map
            _select_slice(path, None, slice, kmap.shape[0])
            k = _load_npy(path, slice)
            mshape = _npy_open(mp).shape if mp.exists() else None
            maps = _load_npy(mp, slice) if mshape is not None and len(mshape) == 4 else \
                (_load_npy(mp) if mp.exists() else None)
            kshape = _npy_open(mk).shape if mk.exists() else None
            mask = _load_npy(mk, slice) if kshape is not None and len(kshape) == 3 and kshape[0] == kmap.shape[0] \
                else (_load_npy(mk) if mk.exists() else None)
            n_slices, slice = kmap.shape[0], None
        else:
            k = _load_npy(path)
            maps = _load_npy(mp) if mp.exists() else None
            mask = _load_npy(mk) if mk.exists() else None
        del kmap
    elif fmt == "npz":
        with _open_npz(path) as z:
            if "kspace" not in z.files:
                raise FileFormatError(f"{path}: no 'kspace' array in the .npz; it holds {z.files}")
            from .trajectory import TRAJECTORY_KEYS  # noqa: PLC0415

            if any(key in z.files for key in TRAJECTORY_KEYS):
                raise FileFormatError(f"{path}: holds a trajectory ({[key for key in TRAJECTORY_KEYS if key in z]}): "
                                      f"non-Cartesian k-space; give it: mri-csc recon {path} --traj {path}")
            kshape = z.shape("kspace")
            if "affine" in z:
                extra["affine"] = _npz_affine(path, z)
            _check_total(path, z.header("kspace"), *(z.header(n) if n in z else None for n in ("maps", "mask")),
                         slice=slice)
            if slice is not None and len(kshape) == 4:  # one slice of a stack, member by member
                _select_slice(path, None, slice, kshape[0])
                k = z.read("kspace", slice)
                maps = (z.read("maps", slice) if len(z.shape("maps")) == 4 else z["maps"]) if "maps" in z else None
                if "mask" in z:
                    mshape = z.shape("mask")
                    mask = z.read("mask", slice) if len(mshape) == 3 and mshape[0] == kshape[0] else z["mask"]
                n_slices, slice = kshape[0], None
            else:
                k = z["kspace"]
                maps = z["maps"] if "maps" in z.files else None
                mask = z["mask"] if "mask" in z.files else None
    elif fmt == "cfl":
        base = cfl_base(path)
        raw = _read_cfl(base)
        if raw.ndim >= 2 and raw.shape[0] == 1 and raw.shape[1] > 1:  # BART x (the readout) of one sample
            raise FileFormatError(f"{base}.cfl: BART dimensions {raw.shape} are non-Cartesian k-space (1, readout, "
                                  "spokes, coils), as 'bart phantom -k -t' writes; give its trajectory: "
                                  f"mri-csc recon {base}.cfl --traj TRAJ.cfl (see mri-csc info {base}.cfl)")
        k, extra_dims = bart_frames(raw, f"{base}.cfl")
        if k.shape[2] == 1:
            k = k[:, :, 0]
        mp, mk = sibling_path(path, "maps", fmt), sibling_path(path, "mask", fmt)
        if mp.exists():
            maps = from_bart(_read_cfl(cfl_base(mp)), what=str(mp))
        if mk.exists():
            mask = from_bart(_read_cfl(cfl_base(mk)), coils=False, what=str(mk)).real.astype(np.float32)
        if k.shape[0] > 1:
            stacked = True
            extra = {"lead_shape": (k.shape[0],), "lead_axes": ("frame",), "bart_frame_dims": extra_dims}
            if maps is not None:
                maps = np.broadcast_to(maps, k.shape)
        else:
            k = k[0]
    elif fmt in ("fastmri", "ismrmrd"):
        with _open_h5(path) as f, _h5_guard(path):
            if _mrd.is_ismrmrd(f):
                try:
                    r = _mrd.read_ismrmrd(path, f, slice=slice, prewhiten=prewhiten, noise=noise, frame=frame)
                except (OSError, KeyError) as e:
                    raise FileFormatError(f"{path}: corrupt ISMRMRD data ({e})") from None
                n_slices = r["n_slices"]
                k, mask = r["kspace"], r["mask"]
                lead = (k.shape[0] if slice is None else 1, k.shape[1])
                lead_axes = tuple(a for a, n in zip(("slice", "frame"), lead) if n > 1)
                lead_shape = tuple(n for n in lead if n > 1)
                k = k.reshape((-1,) + k.shape[2:])
                mask = mask.reshape((-1,) + mask.shape[2:])
                stacked = bool(lead_shape)
                if not stacked:
                    k, mask = k[0], mask[0]
                cal = r["calibration"]  # one per slice, for each of its frames (see calibration_data)
                cal = None if cal is None else list(cal) if stacked else cal[0]
                extra = {"lead_shape": lead_shape, "lead_axes": lead_axes, "frames": r["frames"],
                         "crop": r["crop"], "geometry": r["geometry"], "whitened": r["whitened"],
                         "whitener": r["whitener"], "noise_scans": r["noise_scans"], "calibration": cal}
                slice = None  # already selected
            elif (ds := _h5_dataset(f, "kspace", path)) is not None:
                if frame is not None:
                    raise ValueError(f"{path}: frame= applies to ISMRMRD files, not fastMRI ones")
                if prewhiten or noise is not None:
                    raise ValueError(f"{path}: prewhiten/noise apply to ISMRMRD files (fastMRI files hold no "
                                     "noise scans)")
                single_coil = fastmri_single_coil(path, f, ds)  # fastMRI's single-coil files: one (virtual) coil
                n_slices = ds.shape[0]
                _select_slice(path, None, slice, n_slices)  # range check before reading
                extra = _fastmri_meta(path, f)
                mds, kds = _h5_dataset(f, "maps", path), _h5_dataset(f, "mask", path)
                _check_total(path, (ds.shape, ds.dtype), *((d.shape, d.dtype) if d is not None else None
                                                           for d in (mds, kds)), slice=slice)
                k = _h5_read(ds, path, slice)
                if single_coil:
                    k = np.expand_dims(k, -3)
                    log.info("%s: single-coil fastMRI k-space %s: read as one coil", path, tuple(ds.shape))
                if mds is not None:
                    if tuple(mds.shape) != tuple(ds.shape):
                        raise FileFormatError(f"{path}: 'maps' of shape {mds.shape} disagree with 'kspace' "
                                              f"of shape {ds.shape}")
                    maps = _h5_read(mds, path, slice)
                    maps = np.expand_dims(maps, -3) if single_coil else maps
                if kds is not None:
                    if kds.ndim == 3 and kds.shape[0] == n_slices:
                        mask = _h5_read(kds, path, slice)
                    elif kds.ndim in (1, 2) or kds.ndim == 3 and kds.shape[0] == 1:  # shared: per_slice's rule
                        mask = _h5_read(kds, path)
                    else:
                        raise FileFormatError(f"{path}: 'mask' of shape {kds.shape} does not fit 'kspace' of "
                                              f"shape {ds.shape}")
                    if mask.ndim == 1:  # fastMRI column mask
                        if mask.shape[0] != k.shape[-1]:
                            raise FileFormatError(f"{path}: column mask of length {mask.shape[0]} for k-space "
                                                  f"of width {k.shape[-1]}")
                        mask = np.broadcast_to(mask.astype(np.float32), k.shape[-2:]).copy()
                if slice is None and n_slices == 1:
                    k = k[0]
                    maps = maps[0] if maps is not None and maps.ndim == 4 else maps
                    mask = mask[0] if mask is not None and mask.ndim == 3 else mask
                else:
                    stacked = slice is None
            else:
                raise FileFormatError(f"{path}: HDF5 file has neither a fastMRI 'kspace' dataset nor an "
                                      f"ISMRMRD 'dataset/data' group; it holds {list(f.keys())}")
    else:
        raise FileFormatError(f"{path}: NIfTI files hold images, not k-space; use them as a phantom "
                              "(mri-csc simulate --phantom FILE)")
    k = np.asarray(k)
    if k.dtype.kind != "c":
        if k.dtype.names and set(k.dtype.names) >= {"r", "i"}:  # some HDF5 writers store complex this way
            k = k["r"] + 1j * k["i"]
        elif k.dtype.kind in "fiub":
            raise FileFormatError(f"{path}: k-space is real-valued (dtype {k.dtype}); measured k-space is complex "
                                  "- store it as complex64 (an image belongs in mri-csc simulate --phantom)")
        else:
            raise FileFormatError(f"{path}: k-space has dtype {k.dtype}; expected complex")
    if k.dtype == np.complex128:
        log.warning("%s: complex128 k-space is computed in complex64 (float32 precision is ample for "
                    "measured data and 4-6x faster)", path)
    k = k.astype(np.complex64, copy=False)
    if stacked and fmt == "cfl" and slice is not None:  # BART frames (time, echo, ...): one of them
        n = k.shape[0]
        k = _select_slice(path, k, slice, n)
        maps = maps[slice] if maps is not None else None
        stacked, extra = False, {}
    elif not stacked and fmt in ("npy", "npz", "cfl") and slice is not None:
        if k.ndim != 4:
            raise ValueError(f"{path}: slice={slice} given but the file holds a single slice of shape {k.shape}")
        n_slices = k.shape[0]
        k = _select_slice(path, k, slice, n_slices)
        maps = _select_slice(path, maps, slice, n_slices) if maps is not None and maps.ndim == 4 else maps
        if mask is not None and mask.ndim == 3 and mask.shape[0] == n_slices:
            mask = _select_slice(path, mask, slice, n_slices)
    if k.ndim - stacked not in (3, 4):
        raise FileFormatError(f"{path}: k-space must be (coils, ny, nx) or (coils, nz, ny, nx); got shape {k.shape}")
    if maps is not None:
        maps = np.asarray(maps).astype(np.complex64, copy=False)
        if maps.shape != k.shape:
            raise ValueError(f"{path}: coil maps of shape {maps.shape} disagree with k-space of shape {k.shape}")
    if mask is not None:
        from ..validate import per_slice  # noqa: PLC0415

        mask = np.asarray(mask).real.astype(np.float32)
        img_shape = tuple(k.shape[1 + stacked:])
        if mask.ndim == len(img_shape) + 1 and mask.shape[0] == 1:  # one pattern for all slices (per_slice's rule)
            mask = mask[0]
        if stacked:  # one pattern for all slices or one per slice, never fewer
            per_slice(f"{path}: mask", mask, k.shape[0], len(img_shape))
        m0 = mask[0] if stacked and mask.ndim == len(img_shape) + 1 else mask
        try:
            if m0.ndim > len(img_shape) or np.broadcast_shapes(m0.shape, img_shape) != img_shape:
                raise ValueError
        except ValueError:
            hint = ""
            if not stacked and k.ndim == 4 and mask.ndim == 3 and mask.shape[0] == k.shape[0] != k.shape[1]:
                hint = ("; one mask per slice of a stack (slices, coils, ny, nx)? A 4-D array without slice= is "
                        "one volume (coils, nz, ny, nx) here: read slice by slice (mri-csc recon --slice N, "
                        "or mri-csc batch, which reads such stacks)")
            raise FileFormatError(f"{path}: mask of shape {mask.shape} disagrees with k-space of shape "
                                  f"{k.shape}{hint}") from None
    out = {"kspace": k, "maps": maps, "mask": mask, "n_slices": n_slices, "stacked": stacked, "format": fmt,
           "lead_shape": (k.shape[0],) if stacked else (), "lead_axes": ("slice",) if stacked else (),
           "crop": None, "geometry": None, "affine": None}
    out.update(extra)
    return out


def _npz_affine(path, z) -> np.ndarray:
    """An ``.npz``'s ``affine`` (the image's NIfTI affine, as ``write_kspace(affine=)`` stores it), checked."""
    if tuple(z.shape("affine")) != (4, 4):
        raise FileFormatError(f"{path}: 'affine' has shape {z.shape('affine')}; expected a 4x4 NIfTI affine")
    a = np.asarray(z["affine"], np.float64)
    if not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise FileFormatError(f"{path}: 'affine' is not finite or not invertible: {a[:3].tolist()}")
    return a


def center_crop(img, shape):
    """fastMRI's ``center_crop``: the centre ``shape = (h, w)`` of the last two axes (never grows)."""
    ny, nx = img.shape[-2:]
    cy, cx = int(shape[0]), int(shape[1])
    if cy < 1 or cx < 1:
        raise ValueError(f"crop must be positive; got {tuple(shape)}")
    if cy > ny or cx > nx:
        raise ValueError(f"crop {tuple(shape)} is larger than the image {(ny, nx)}")
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return img[..., y0:y0 + cy, x0:x0 + cx]


def check_voxel_size(voxel_size, name: str = "voxel_size") -> "tuple[float, float, float] | None":
    """A NIfTI voxel size given by the user (``voxel_size=``, ``--voxel-size``) as three finite sizes > 0 in mm
    (x, y, z; a missing z is 1), or None; 1 to 3 values, else ``ValueError`` naming ``name``."""
    if voxel_size is None:
        return None
    vs = [float(v) for v in np.ravel(voxel_size)]
    if not 1 <= len(vs) <= 3 or not all(np.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"{name} takes 1 to 3 finite positive sizes in mm (x y [z]); got {vs}")
    return tuple(vs + [1.0] * (3 - len(vs)))


def calibration_data(d: dict, index: int, kspace):
    """What ESPIRiT calibrates on for entry ``index`` of :func:`read_kspace`'s result ``d`` (whose k-space, as the
    caller holds it, is ``kspace``): its slice's separate reference lines when the file has any for it, else
    ``kspace`` itself. The same array object for every frame of a slice, so callers can estimate once per slice."""
    cal = d.get("calibration")
    if cal is None:
        return kspace
    if isinstance(cal, list):  # one per slice; the stack is (slice, frame) flattened
        n_frames = len(d.get("frames") or [None]) if "frame" in d.get("lead_axes", ()) else 1
        cal = cal[index // n_frames]
    return cal if cal.any() else kspace


def sibling_path(path, what: str, fmt: "str | None" = None) -> Path:
    """The file beside a ``.npy`` or ``.cfl`` k-space file that holds its ``what`` (``"maps"``, ``"mask"``):
    ``<stem>_<what>.npy`` or ``<base>_<what>.cfl`` (the ``.cfl`` sibling's ``.hdr`` lies beside it); ``fmt``
    as for :func:`detect_format`, for a name without the format's extension."""
    if detect_format(path, fmt) == "cfl":
        return Path(f"{cfl_base(path)}_{what}.cfl")
    return Path(f"{_stem(path)}_{what}.npy")


def holds_maps(path) -> bool:
    """Whether a k-space file brings its own coil maps (headers and names only): an ``.npz``'s ``maps``, a
    ``<stem>_maps.npy`` or ``<base>_maps.cfl`` beside it, a fastMRI ``.h5``'s ``maps``; an ISMRMRD file never."""
    fmt = detect_format(path)
    if fmt in ("npy", "cfl"):
        return sibling_path(path, "maps", fmt).exists()
    if fmt == "npz":
        with _open_npz(path) as z:
            return "maps" in z.files
    if fmt in ("fastmri", "ismrmrd"):
        with _open_h5(path) as f:
            return not _mrd.is_ismrmrd(f) and "maps" in f
    return False


def read_metadata(path) -> dict:
    """What an image output needs from its k-space file, from headers only.

    ``crop`` (image size to centre-crop to, or None), ``geometry`` (ISMRMRD, for
    NIfTI), ``h5_attrs`` and ``ismrmrd_header`` (fastMRI, for ``.h5`` outputs),
    ``n_frames`` (ISMRMRD), ``affine`` (an ``.npz``'s NIfTI affine), ``bart_frame_dims``
    (a ``.cfl``'s dimensions 5 on, when it has frames). Empty values
    for formats without them.
    """
    meta = {"crop": None, "geometry": None, "h5_attrs": None, "ismrmrd_header": None, "n_frames": 1, "affine": None,
            "bart_frame_dims": None}
    if detect_format(path) == "cfl":  # BART's frame dimensions (5 on), from the header, for a .cfl output
        dims = _cfl_header_dims(path)
        meta["bart_frame_dims"] = tuple(dims[5:]) if int(np.prod(dims[5:])) > 1 else None
    if detect_format(path) == "npz":
        _require(path)
        with _open_npz(path) as z:
            if "affine" in z:
                meta["affine"] = _npz_affine(path, z)
    if detect_format(path) in ("fastmri", "ismrmrd"):
        _require(path)
        with _open_h5(path) as f:
            if _mrd.is_ismrmrd(f):
                m = _mrd.ismrmrd_metadata(path, f)
                meta.update(crop=m["crop"], geometry=m["geometry"], n_frames=m["n_frames"])
            elif "kspace" in f:
                meta.update(_fastmri_meta(path, f))
    return meta


# ----------------------------------------------------------------------------- writers



def write_kspace(path, kspace, maps=None, mask=None, *, overwrite: bool = False, fmt: str | None = None,
                 voxel_mm=None, affine=None) -> list[Path]:
    """Write k-space (and maps and mask) in the format of ``path``'s extension.

    All outputs are checked for existence before any is written; each is written
    atomically. Returns the paths written. ``voxel_mm`` (x, y, z) sets an ISMRMRD
    file's field of view (default 1 mm voxels). ``affine``, the image's NIfTI
    affine, goes into an ISMRMRD file's geometry (directions, position, voxel
    size) and an ``.npz``'s ``affine`` array, which :func:`read_kspace` returns;
    the other formats hold no geometry (said in the log).
    """
    fmt = detect_format(path, fmt)
    k = np.asarray(kspace, np.complex64)
    if k.ndim not in (3, 4):
        raise ValueError(f"kspace must be (coils, ny, nx) or (coils, nz, ny, nx); got shape {k.shape}")
    if maps is not None and np.shape(maps) != k.shape:
        raise ValueError(f"maps of shape {np.shape(maps)} disagree with kspace of shape {k.shape}")
    mask = None if mask is None else np.asarray(mask, np.float32)
    if affine is not None and fmt not in ("npz", "ismrmrd"):
        log.warning("%s: a %s file holds no image geometry; the affine is not stored (write .mrd or .npz to keep "
                    "it)", path, fmt)
    written = []
    if fmt == "npy":
        outs = [Path(path)] + ([sibling_path(path, "maps", fmt)] if maps is not None else []) \
            + ([sibling_path(path, "mask", fmt)] if mask is not None else [])
        arrays = [k] + ([np.asarray(maps, np.complex64)] if maps is not None else []) \
            + ([mask] if mask is not None else [])
        with atomic_paths(outs, overwrite) as tmps:
            for t, a in zip(tmps, arrays):
                with open(t, "wb") as f:  # a file object: np.save appends '.npy' to a name without it
                    np.save(f, a)
        written = outs
    elif fmt == "npz":
        arrays = {"kspace": k}
        if maps is not None:
            arrays["maps"] = np.asarray(maps, np.complex64)
        if mask is not None:
            arrays["mask"] = mask
        if affine is not None:
            arrays["affine"] = np.asarray(affine, np.float64)
        with atomic_path(path, overwrite) as t:
            np.savez_compressed(t, **arrays)
        written = [Path(path)]
    elif fmt == "cfl":
        base = cfl_base(path)
        items = [(base, to_bart(k))]
        if maps is not None:
            items.append((cfl_base(sibling_path(path, "maps", fmt)), to_bart(np.asarray(maps))))
        if mask is not None:
            m = np.broadcast_to(mask, k.shape[1:]) if mask.ndim < k.ndim - 1 else mask
            items.append((cfl_base(sibling_path(path, "mask", fmt)), to_bart(m, coils=False)))
        for b, _ in items:
            check_writable(b + ".cfl", overwrite), check_writable(b + ".hdr", overwrite)
        for b, a in items:
            _write_cfl_atomic(b, a, overwrite)
            written += [Path(b + ".cfl"), Path(b + ".hdr")]
    elif fmt == "fastmri":
        import h5py  # noqa: PLC0415

        with atomic_path(path, overwrite) as t, h5py.File(t, "w") as f:
            f.create_dataset("kspace", data=k[None])
            if maps is not None:
                f.create_dataset("maps", data=np.asarray(maps, np.complex64)[None])
            if mask is not None:
                f.create_dataset("mask", data=mask)
            f.attrs["acquisition"] = "mri_csc"
            f.attrs["written_by"] = "mri_csc"
        written = [Path(path)]
    elif fmt == "ismrmrd":
        if maps is not None:
            log.info("ISMRMRD holds no coil maps; %s gets k-space only (estimate maps with --espirit)", path)
        with atomic_path(path, overwrite) as t:
            _mrd.write_ismrmrd(t, k, mask, voxel_mm=voxel_mm or (1.0, 1.0, 1.0), affine=affine)
        written = [Path(path)]
    else:
        raise ValueError(f"{path}: cannot write k-space as {fmt}; use .npy, .npz, .cfl, .h5 or .mrd")
    return written


def image_outputs(path, fmt: str | None = None) -> list[Path]:
    """The files :func:`write_image` would create for ``path``."""
    fmt = detect_format(path, fmt)
    if fmt == "nifti":
        return [Path(f"{_stem(path)}_mag.nii.gz"), Path(f"{_stem(path)}_phase.nii.gz")]
    if fmt == "cfl":
        b = cfl_base(path)
        return [Path(b + ".cfl"), Path(b + ".hdr")]
    return [Path(path)]


def nifti_affine(geometry, shape) -> np.ndarray:
    """The NIfTI (RAS, mm) affine of an image from an ISMRMRD ``geometry`` (:func:`mri_csc.io.ismrmrd.read_ismrmrd`).

    ``shape`` is the NIfTI array's spatial shape ``(nx, ny[, nz])`` (readout,
    phase, slice/partition). Voxel sizes are the geometry's ``voxel_mm`` (the
    encoded field of view over the encoded matrix: mri_csc crops but never
    interpolates, see :func:`mri_csc.io.ismrmrd.read_ismrmrd`), else the recon
    field of view over the recon matrix (``x``, ``y``; ``z``: the partition size of a 3-D encoding, else
    the distance between slice centres, else the slice thickness). The columns
    are ISMRMRD's ``read_dir``, ``phase_dir``, ``slice_dir`` (patient LPS) turned
    to RAS, the third replaced, for a stack of 2-D slices, by the signed step from the first slice's centre to
    the last's over ``n - 1`` (slices stored in descending position keep their places); the centre voxel
    ``n // 2`` sits at the first slice's ``position`` (ISMRMRD positions are slice centres). Slices whose
    positions are not evenly spaced along that step (a gap, or slices out of position order:
    :func:`slice_position_order` sorts them first) are misplaced in the NIfTI: said in a warning naming them.
    """
    fov = np.asarray(geometry["fov_mm"], float)
    matrix = np.asarray(geometry["matrix"], float)
    nx, ny = shape[0], shape[1]
    nz = shape[2] if len(shape) > 2 else 1
    # a crop other than the recon matrix keeps the voxel size: field of view over the recon matrix
    vox = geometry.get("voxel_mm") or [fov[0] / matrix[0], fov[1] / matrix[1],
                                       fov[2] / matrix[2] if matrix[2] > 1 else fov[2]]
    sl = geometry["slices"]
    g = sl[0]
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    cols = [lps_to_ras @ np.asarray(g[d], float) for d in ("read_dir", "phase_dir", "slice_dir")]
    if any(np.linalg.norm(c) < 1e-6 for c in cols):  # directions not set: the scanner axes
        cols = [np.eye(3)[i] for i in range(3)]
    cols = [c / np.linalg.norm(c) for c in cols]
    aff = np.eye(4)
    for i in range(3):
        aff[:3, i] = cols[i] * vox[i]
    if matrix[2] == 1 and len(sl) > 1:  # 2-D slices: the third column is the step between slice centres, signed
        pos = np.array([lps_to_ras @ np.asarray(x["position"], float) for x in sl])
        step = (pos[-1] - pos[0]) / (len(sl) - 1)
        if np.linalg.norm(step) > 1e-6:
            aff[:3, 2] = step
            off = np.linalg.norm(pos - (pos[0] + np.arange(len(sl))[:, None] * step), axis=1)
            bad = np.flatnonzero(off > 0.01 * np.linalg.norm(step))
            if bad.size:
                names = [sl[i].get("counter", int(i)) for i in bad]
                log.warning("the slices' positions are not evenly spaced (steps %s mm), and a NIfTI holds one slice "
                            "step (%.4g mm): slice counter(s) %s are misplaced in the NIfTI by up to %.3g mm; the "
                            ".npy/.h5 outputs hold the slices without positions",
                            np.round(np.linalg.norm(np.diff(pos, axis=0), axis=1), 3).tolist(),
                            float(np.linalg.norm(step)), names, float(off.max()))
    centre = lps_to_ras @ np.asarray(g["position"], float)
    index = np.array([nx // 2, ny // 2, nz // 2 if matrix[2] > 1 else 0], float)
    aff[:3, 3] = centre - aff[:3, :3] @ index
    return aff


def slice_position_order(geometry) -> "np.ndarray | None":
    """The order of a stack of 2-D ISMRMRD slices by position along the slice normal, or None when it is the
    stored one (or there is nothing to order: one slice, a 3-D encoding, no directions).

    Slice counters need not follow the slices' positions (interleaved or descending acquisition orders); a NIfTI
    holds one slice step, so :func:`write_image` stacks its slices in this order (ascending along the first
    slice's ``slice_dir``, ties kept in counter order), as scanners' and other converters' NIfTIs do. Other
    outputs keep the counter order.
    """
    sl = (geometry or {}).get("slices") or []
    if len(sl) < 2 or np.asarray(geometry["matrix"])[2] > 1:
        return None
    normal = np.asarray(sl[0]["slice_dir"], float)
    if np.linalg.norm(normal) < 1e-6:
        return None
    along = np.array([np.dot(np.asarray(g["position"], float), normal) for g in sl])
    order = np.argsort(along, kind="stable")
    return None if np.array_equal(order, np.arange(len(sl))) else order


def _directions_set(geometry) -> bool:
    """Whether an ISMRMRD ``geometry``'s first slice has non-zero read, phase and slice directions."""
    g = geometry["slices"][0] if geometry.get("slices") else {}
    return all(np.linalg.norm(np.asarray(g.get(d, (0, 0, 0)), float)) >= 1e-6
               for d in ("read_dir", "phase_dir", "slice_dir"))


def write_image(path, image, *, overwrite: bool = False, fmt: str | None = None, frames: bool = False,
                geometry=None, affine=None, bart_frame_dims=None, h5_attrs=None,
                ismrmrd_header=None) -> list[Path]:
    """Write a complex image ``(ny, nx)``, ``(nz|slices, ny, nx)``, or frames of them.

    ``.npy``/``.npz`` (key ``image``) keep the complex array; ``.cfl`` stores BART
    ``(nx, ny, nz|slices)`` (readout first, see :func:`to_bart`), frames on BART's
    time dimension 10 (or on ``bart_frame_dims``, dims 5 on, when the k-space
    came from BART with those); ``.h5`` writes fastMRI ``reconstruction``
    (magnitude, ``(slices, ny, nx)``) and ``reconstruction_complex``;
    ``.nii``/``.nii.gz`` writes ``<stem>_mag.nii.gz`` and ``<stem>_phase.nii.gz``
    with NIfTI axes ``(x, y, z|slice[, frame])`` = the array's reversed.

    Parameters
    ----------
    frames : bool
        Axis 0 of ``image`` is a frame axis (repetitions, echoes, …):
        ``image`` is ``(frames, ny, nx)`` or ``(frames, nz|slices, ny, nx)``.
    geometry : dict, optional
        ISMRMRD geometry (NIfTI affine by :func:`nifti_affine`, units mm, s). A NIfTI stacks 2-D slices by
        position along the slice normal (:func:`slice_position_order`); the other formats keep the order given
        (ISMRMRD: the slice counter's).
    affine : array, optional
        A 4x4 NIfTI affine to use instead (e.g. an input NIfTI's).
    h5_attrs, ismrmrd_header : optional
        fastMRI output: attributes and the ``ismrmrd_header`` to carry over from the input.
    """
    fmt = detect_format(path, fmt)
    img = np.asarray(image)
    nsp = img.ndim - bool(frames)
    if nsp not in (2, 3):
        raise ValueError(f"image must be {'(frames, ' if frames else '('}ny, nx) or "
                         f"{'(frames, ' if frames else '('}nz|slices, ny, nx); got shape {img.shape}")
    img = img.astype(np.complex64) if img.dtype.kind == "c" else img.astype(np.float32)
    outs = image_outputs(path, fmt)
    if fmt == "npy":
        with atomic_path(path, overwrite) as t, open(t, "wb") as f:  # np.save appends '.npy' to a name without
            np.save(f, img)
    elif fmt == "npz":
        with atomic_path(path, overwrite) as t:
            np.savez_compressed(t, image=img)
    elif fmt == "cfl":
        stack = img if frames else img[None]
        if nsp == 2:
            stack = stack[:, None]
        b = stack.T  # (nx, ny, nz, frames)
        nf = b.shape[3]
        if frames and bart_frame_dims and int(np.prod(bart_frame_dims)) == nf:
            b = b.reshape(b.shape[:3] + (1, 1) + tuple(bart_frame_dims), order="F")
        elif frames:
            b = b.reshape(b.shape[:3] + (1,) * (BART_TIME_DIM - 3) + (nf,), order="F")
        else:
            b = b[..., 0]
        _write_cfl_atomic(path, b, overwrite)
    elif fmt == "fastmri":
        import h5py  # noqa: PLC0415

        stack = img[None] if nsp == 2 and not frames else img
        with atomic_path(path, overwrite) as t, h5py.File(t, "w") as f:
            f.create_dataset("reconstruction", data=np.abs(stack).astype(np.float32))
            f.create_dataset("reconstruction_complex", data=stack.astype(np.complex64))
            for key, val in (h5_attrs or {}).items():
                f.attrs[key] = val
            if ismrmrd_header is not None:
                f.create_dataset("ismrmrd_header", data=ismrmrd_header)
            f.attrs["written_by"] = "mri_csc"
    elif fmt == "nifti":
        import nibabel as nib  # noqa: PLC0415

        vol = img
        if frames and nsp == 2:
            vol = vol[:, None]
        vol = vol.T  # (ny, nx) -> (x, y); (n, ny, nx) -> (x, y, n); (f, n, ny, nx) -> (x, y, n, f)
        oriented = affine is not None or (geometry is not None and _directions_set(geometry))
        order = slice_position_order(geometry) if affine is None and vol.ndim > 2 else None
        if order is not None and len(order) == vol.shape[2]:  # the NIfTI's slices ascend along the normal
            vol = vol[:, :, order]
            geometry = {**geometry, "slices": [geometry["slices"][i] for i in order]}
            log.info("%s: the NIfTI stacks the slices by position along the slice normal (counters %s)", path,
                     [geometry["slices"][i].get("counter", int(order[i])) for i in range(len(order))])
        if affine is None and geometry is not None:
            affine = nifti_affine(geometry, vol.shape[:3])
            if not oriented:
                log.warning("%s: the input carries no read/phase/slice directions (fastMRI files; ISMRMRD ones whose "
                            "directions are all zero): the NIfTI has the voxel sizes of the header's field of view, "
                            "orientation unknown (qform/sform code 0)", path)
        aff = np.eye(4) if affine is None else np.asarray(affine, float)
        if affine is None:
            log.warning("%s: no image geometry came with the input (.npy and .cfl hold none): the "
                        "NIfTI has 1 mm voxels at the origin, orientation unknown (qform/sform code 0); give the "
                        "voxel size where the command takes it (mri-csc recon --voxel-size X Y [Z])", path)
        with atomic_paths(outs, overwrite) as (tm, tp):
            for t, data in ((tm, np.abs(vol)), (tp, np.angle(vol))):
                im = nib.Nifti1Image(data.astype(np.float32), aff)
                im.header.set_xyzt_units("mm", "sec")
                code = 1 if oriented else 0  # 1: scanner coordinates; 0: unknown (the zooms are kept)
                im.set_qform(aff, code=code)
                im.set_sform(aff, code=code)
                nib.save(im, t)
    else:
        raise ValueError(f"{path}: cannot write an image as {fmt}")
    return outs


# ----------------------------------------------------------------------------- NIfTI

def load_nifti(path):
    """Open a NIfTI image (data not read), refusing corrupt headers and over-budget shapes.

    The declared shape times the data type (twice: a reorientation may copy it)
    is checked against the memory budget; an uncompressed file must hold the
    bytes its header declares; the affine must be finite and invertible.

    Raises
    ------
    FileNotFoundError, FileFormatError, mri_csc.io.limits.BudgetError
    """
    import nibabel as nib  # noqa: PLC0415

    p = Path(path)
    _require(p)
    try:
        im = nib.load(str(p))
        shape, dtype = tuple(int(n) for n in im.shape), np.dtype(im.get_data_dtype())
        affine = np.asarray(im.affine, np.float64)
        offset = int(im.header.get("vox_offset", 0)) if hasattr(im.header, "get") else 0
    except Exception as e:  # noqa: BLE001  (nibabel raises many kinds on a corrupt header)
        raise FileFormatError(f"{p}: not a valid NIfTI file ({type(e).__name__}: {e})") from None
    if not shape or min(shape) < 1:
        raise FileFormatError(f"{p}: NIfTI header declares shape {shape}; expected positive dimensions")
    check_shape((2, *shape), dtype, f"{p}: NIfTI volume (with a reoriented copy)")
    if not p.name.lower().endswith(".gz"):
        need = offset + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if need > p.stat().st_size:
            raise FileFormatError(f"{p}: header declares {shape} {dtype} ({need} bytes with the header) but the "
                                  f"file has {p.stat().st_size} bytes; it is truncated")
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise FileFormatError(f"{p}: NIfTI affine (sform/qform) is not finite or not invertible: "
                              f"{affine[:3].tolist()}")
    return im


# ----------------------------------------------------------------------------- describe

def _centre_energy(a, axes=(-2, -1)) -> float:
    """The fraction of ``|a|²`` in the central half of ``axes`` (k-space: most; an image: less)."""
    e = np.abs(np.asarray(a, np.complex64)) ** 2
    window = [slice(None)] * e.ndim
    for ax in axes:
        n = e.shape[ax]
        window[ax] = slice(n // 4, n - n // 4)
    total = e.sum()
    return float(e[tuple(window)].sum() / total) if total > 0 else 0.0


def _centre_fractions(a, axes=(-2, -1)) -> "tuple[float, float]":
    """:func:`_centre_energy` over ``axes`` of ``a`` and of its centred Fourier transform along them."""
    from ..backend import fftc  # noqa: PLC0415

    a = np.asarray(a, np.complex64)
    return _centre_energy(a, axes), _centre_energy(fftc(a, axes=axes), axes)


#: how much less of its energy than its Fourier transform's an image holds in its central half (k-space: more)
_IMAGE_MARGIN = 0.8


def _looks_like_image(a) -> bool:
    """Whether an array ``(..., ny, nx)`` is an image rather than k-space.

    k-space concentrates its energy at the centre more than its Fourier transform
    (the image) does; an image, clearly less (by a factor ``_IMAGE_MARGIN``) than its Fourier
    transform. Noise-like arrays, with no centre either way, count as k-space.
    """
    own, ft = _centre_fractions(a)
    return own < _IMAGE_MARGIN * ft


#: the Fourier test's margin along nz: 5-partition Shepp-Logan volumes keep 0.75 x their transform's central
#: fraction, stacks of simulated coils of one phase 0.52-0.69 x
_NZ_MARGIN = 0.7


def _partition_peak_offset(k) -> int:
    """Where along axis 1 of ``(coils, nz, ny, nx)`` the in-plane k-space centre (its central block of about
    ``ny/16 x nx/16``, at least one sample) holds most energy, every coil summed, relative to ``nz // 2``.

    A volume's is within one partition of its kz = 0 (each coil sees the sum of the object along z there; a
    smooth image phase along z moves it by one at most in the volumes measured: simulated and BART ones of 3-32
    partitions, slabs of 2 partitions on, partial Fourier, 0 dB noise, coil phase rolls up to pi across z). A
    stack of slices read as a volume has coils there: the strongest coil is anywhere, whatever the coils'
    phases (which the Fourier test along nz depends on)."""
    n, ny, nx = k.shape[1:]
    hy, hx = max(1, ny // 32), max(1, nx // 32)
    c = k[:, :, ny // 2 - hy + 1: ny // 2 + hy, nx // 2 - hx + 1: nx // 2 + hx]
    e = (np.abs(np.asarray(c, np.complex64)) ** 2).sum(axis=(0, 2, 3))
    return int(np.argmax(e)) - n // 2


def looks_like_partitions(kspace, axis: int) -> "tuple[bool, float, float]":
    """Whether ``axis`` of k-space ``(..., ny, nx)`` holds k_z partitions rather than coils: ``(verdict, own, ft)``.

    A k-space axis has its in-plane centre's energy peak within one entry of its middle (``n // 2``,
    :func:`_partition_peak_offset`), falling off from there on both sides (over three entries each way, energies
    summed over the rest), most of its energy in its central half (``own`` ≥ 0.7) and clearly more than its
    Fourier transform along that axis has there (``own`` ≥ 1.15 ``ft``, :func:`_centre_fractions`). Coils need
    not: their energies follow the array's geometry and gains. Measured on the central 16 x 16 block (simulated
    Shepp–Logan volumes with 8 coils of random phases, against single brain slices with 4–16 coils of random
    phases and gains 0.1–1, 12 draws each): volumes of 6–32 partitions all called partitions, stacks of 6–16
    coils never (without the fall-off test 1–2 of 12 were); with 4 entries 3 of 12 stacks were, so fewer than 6
    entries are never called partitions. On other draws: stacks of 6–32 coils 0 of 50, volumes of 6–24
    partitions 18 of 20 (8 partitions: 3 of 5) — a heuristic that misses some volumes.
    """
    k = np.asarray(kspace)
    n = k.shape[axis]
    if n < 6 or not k.size:
        return False, 0.0, 0.0
    own, ft = _centre_fractions(k, (axis,))
    by_entry = np.moveaxis(k, axis, 0).reshape(n, -1, *k.shape[-2:]).swapaxes(0, 1)  # (rest, n, ny, nx)
    offset = _partition_peak_offset(by_entry)
    e = (np.abs(np.asarray(by_entry, np.complex64)) ** 2).sum(axis=(0, 2, 3))
    p = n // 2 + offset
    falls = all(e[p - j] >= e[p - j - 1] for j in range(min(3, p))) and \
        all(e[p + j] >= e[p + j + 1] for j in range(min(3, n - 1 - p)))
    return bool(abs(offset) <= 1 and falls and own >= 0.7 and own >= 1.15 * ft), own, ft


def check_centred_kspace(kspace, what: str) -> None:
    """Refuse an array that is not centred k-space: a 0/1 sampling pattern, an image, coil images, k-space
    with DC in the corner, or a stack of 2-D slices taken for a volume.

    Every coil's energy summed, the centre half of the last two axes must hold more
    of it than the same window of the array's Fourier transform, by the margin of
    :func:`_looks_like_image` (measured k-space: 0.88-0.998 against 0.14-0.54 for its
    transform; images and uncentred k-space the other way round). A volume ``(coils, nz, ny, nx)`` (more than 2
    partitions) must have its in-plane k-space centre strongest within one partition of kz = 0
    (:func:`_partition_peak_offset`; a stack of 2-D slices ``(slices, coils, ny, nx)`` read as a volume has its
    coils there, the strongest anywhere), and pass the Fourier test along ``nz`` with the margin ``_NZ_MARGIN``
    (a stack of coils of one phase has no k-space centre there, nor has k-space already transformed along z).
    The Fourier test alone, at 0.8, refused 5-partition Shepp-Logan volumes (67-71 % central against 89 %)
    and let most stacks of coils with their own phases by (their sum along nz has no centre to find).

    Raises
    ------
    FileFormatError
        Naming ``what`` and both fractions.
    """
    k = np.asarray(kspace)
    if not k.size or not np.abs(k).any():
        return
    head = k.reshape(-1)[:4096]  # a pattern is 0/1 throughout: most k-space is told apart by its first values
    if np.all((head == 0) | (head == 1)) and np.all((k == 0) | (k == 1)):
        raise FileFormatError(f"{what}: holds only the values 0 and 1: a sampling pattern (e.g. bart poisson's), not "
                              "k-space; pass it as the mask (mri-csc recon DATA --mask FILE)")
    own, ft = _centre_fractions(k)
    if own < _IMAGE_MARGIN * ft:  # as _looks_like_image, with the fractions kept for the message
        raise FileFormatError(f"{what}: does not look like centred k-space ({own:.0%} of its energy in the centre "
                              f"half, {ft:.0%} for its Fourier transform): it is an image or coil images, or k-space "
                              "with DC in the corner (apply fftshift); mri_csc expects centred k-space, readout last")
    if k.ndim != 4 or k.shape[1] <= 2:
        return
    off = _partition_peak_offset(k)
    own, ft = _centre_fractions(k, (1,))
    if abs(off) > 1:
        why = (f"its k-space centre (ky, kx = 0) is strongest at partition {k.shape[1] // 2 + off} of {k.shape[1]}, "
               f"not at kz = 0 (partition {k.shape[1] // 2})")
    elif own < _NZ_MARGIN * ft:
        why = (f"it has no k-space centre along nz ({own:.0%} of its energy in the central half of the "
               f"{k.shape[1]} partitions, {ft:.0%} for its Fourier transform)")
    else:
        return
    raise FileFormatError(
        f"{what}: read as a volume (coils, nz, ny, nx) = {tuple(k.shape)}, {why}: it looks like a stack of 2-D "
        "slices (slices, coils, ny, nx) — reconstruct one with --slice N, or all with 'mri-csc batch' — or k-space "
        "already transformed along z (apply fftc along that axis)")


def _image_lines(shape, dtype, why: str) -> list[str]:
    lead = {2: "", 3: "nz|slices, ", 4: "frames, nz|slices, "}.get(len(shape), "..., ")
    return [f"image: shape {tuple(shape)} ({lead}ny, nx), dtype {dtype} - {why}",
            "an image, not k-space: 'mri-csc recon' takes k-space (its output is such an image); "
            "'mri-csc simulate --phantom' takes a NIfTI image"]


def _noncartesian_lines(k, coord, how: str) -> list[str]:
    """``info`` lines for non-Cartesian k-space ``(coils, *samples)`` and its trajectory (or None)."""
    from .trajectory import describe_trajectory  # noqa: PLC0415

    lines = [f"non-Cartesian k-space ({how}): shape {tuple(k.shape)} (coils, *samples), {k.shape[0]} coil(s) x "
             f"{int(np.prod(k.shape[1:]))} samples, dtype {k.dtype}"]
    if coord is None:
        lines.append("trajectory: not in this file; 'mri-csc info FILE --traj TRAJ' describes both, "
                     "'mri-csc recon FILE --traj TRAJ' reconstructs")
    else:
        if int(np.prod(coord.shape[:-1])) != int(np.prod(k.shape[1:])):
            raise FileFormatError(f"the trajectory's {coord.shape[:-1]} samples do not match the k-space's "
                                  f"{tuple(k.shape[1:])}")
        lines += describe_trajectory(coord)
    if k.size:
        lines.append(f"|k| max {float(np.abs(k).max()):.4g}, finite: {bool(np.isfinite(k).all())}")
    return lines


def _describe_arrays(path, fmt: str, traj=None) -> "list[str] | None":
    """``info`` lines for a ``.npy``/``.npz``/``.cfl`` that is not Cartesian k-space (else None).

    Non-Cartesian k-space (an ``.npz`` with a trajectory, BART ``(1, readout, spokes, coils)``
    or any file with ``traj``), trajectories (BART ``(3, readout, spokes)``, real ``(*samples, 2|3)``),
    images (a 2-D complex array, an ``.npz`` ``image``, a one-channel array whose energy is not
    at the k-space centre), masks, and BART arrays with ESPIRiT map sets.
    """
    from .trajectory import TRAJECTORY_KEYS, bart_noncartesian_kspace, describe_trajectory, read_trajectory  # noqa: PLC0415

    coord = None if traj is None else read_trajectory(traj)
    if fmt == "cfl":
        base = cfl_base(path)
        a = _read_cfl(base)
        dims = tuple(a.shape) + (1,) * max(0, 5 - a.ndim)
        head = [f"format: BART .cfl/.hdr, dimensions {tuple(a.shape)} (x, y, z, coils, maps, ...)"]
        if coord is None and dims[3] == 1 and a.size and not np.abs(a.imag).any() and np.isin(a.real, (0, 1)).all():
            return head + [f"real 0/1 values: a sampling pattern ({float(np.mean(a.real != 0)):.1%} sampled, "
                           "as from 'bart poisson'), not k-space"]
        if coord is not None or (dims[0] == 1 and dims[1] > 1):
            return head + _noncartesian_lines(bart_noncartesian_kspace(a), coord, "BART (1, readout, spokes, coils)")
        if dims[0] == 3 and a.ndim >= 2 and not np.abs(a.imag).any():
            return head + ["a trajectory (bart traj): real (3, readout, spokes, ...) coordinates"] \
                + describe_trajectory(read_trajectory(base + ".cfl"))
        if dims[4] > 1:
            what = (f"one image per map set ('bart pics' with {dims[4]} sets; combine them with 'bart rss 16')"
                    if dims[3] == 1 else f"coil maps of {dims[3]} coils in {dims[4]} sets ('bart ecalib -m {dims[4]}')")
            return head + [f"BART dimension 4 (ESPIRiT map sets) = {dims[4]}: {what}, not k-space; mri_csc "
                           "reconstructs with one set ('bart ecalib -m 1', or 'bart slice 4 0 IN OUT')"]
        if dims[3] == 1 and max(dims[5:], default=1) == 1 and a.size and _looks_like_image(a.T):
            return head + _image_lines(a.T.shape if a.ndim > 1 else a.shape, a.dtype,
                                       "one channel whose energy is not at the k-space centre")
        if dims[3] > 1 and max(dims[5:], default=1) == 1 and a.size and _looks_like_image(a.T[:4]):  # 4 coils tell
            # the test 'mri-csc recon' refuses them by (check_centred_kspace), so info says the same
            return head + [f"{dims[3]} coils whose energy is not at the k-space centre: coil images or coil maps "
                           "(e.g. 'bart fft -i' or 'bart ecalib -m 1' output), not k-space; 'mri-csc recon' takes "
                           "centred k-space, and coil maps with --maps"]
        return None
    if fmt == "npz":
        with _open_npz(path) as z:
            files = z.files
            tkey = next((key for key in TRAJECTORY_KEYS if key in files), None)
            if "kspace" in files and (tkey or coord is not None):
                k = z["kspace"]
                lines = ["format: NumPy .npz archive, arrays " + ", ".join(files)]
                lines += _noncartesian_lines(k, coord if coord is not None else read_trajectory(path),
                                             f"{tkey or 'kspace'} from {'--traj' if coord is not None else 'the file'}")
                if "maps" in files:
                    lines.append(f"coil maps: shape {z.shape('maps')} (coils, image shape)")
                return lines
            if "kspace" not in files and tkey:
                return ["format: NumPy .npz archive", f"a trajectory ({tkey!r})"] \
                    + describe_trajectory(read_trajectory(path))
            if "kspace" not in files and "image" in files:
                shape, dtype = z.header("image")
                return ["format: NumPy .npz archive"] + _image_lines(shape, dtype, "the 'image' array")
        return None
    if fmt == "npy":
        a = _npy_open(path)
        if coord is not None:
            return ["format: NumPy .npy"] + _noncartesian_lines(np.asarray(a).reshape(a.shape[0], -1), coord, "--traj")
        head = ["format: NumPy .npy"]
        if a.dtype.kind in "fiub":
            if a.ndim >= 2 and a.shape[-1] in (2, 3) and a.dtype.kind == "f":
                return head + [f"real-valued {a.shape} {a.dtype}: a trajectory (*samples, {a.shape[-1]}), not "
                               "k-space"] + describe_trajectory(np.asarray(a))
            vals = np.unique(np.asarray(a)[..., :64]) if a.size else np.array([])
            if a.size and np.isin(vals, (0, 1)).all():
                return head + [f"real-valued {a.shape} {a.dtype} of 0 and 1: a sampling mask "
                               f"({float(np.mean(np.asarray(a) != 0)):.1%} sampled), not k-space"]
            return head + _image_lines(a.shape, a.dtype, "real-valued (a magnitude image)")
        if a.dtype.kind == "c" and a.ndim == 2:
            return head + _image_lines(a.shape, a.dtype, "complex 2-D: no coil axis")
        if a.dtype.kind == "c" and a.ndim == 3 and a.size and _looks_like_image(np.asarray(a)):
            return head + _image_lines(a.shape, a.dtype, "its energy is not at the k-space centre")
    return None


def describe(path: "str | os.PathLike", traj: "str | os.PathLike | None" = None) -> str:
    """A few human-readable lines about a file: format, shapes, dtypes, slices.

    Non-Cartesian k-space (with ``traj``, or a trajectory in the file), trajectories,
    images and masks are named as such (:func:`_describe_arrays`), not read as
    Cartesian k-space.
    """
    fmt = detect_format(path)
    if fmt != "cfl":
        _require(path)
    lines = [f"file: {path}"]
    if traj is not None and fmt not in ("npy", "npz", "cfl"):
        raise ValueError(f"{path}: --traj applies to .npy/.npz/.cfl k-space; got a {fmt} file")
    if fmt in ("npy", "npz", "cfl"):
        try:
            special = _describe_arrays(path, fmt, traj)
        except ValueError as e:  # name the file in every message
            if str(path) in str(e) or str(cfl_base(path)) in str(e):
                raise
            raise FileFormatError(f"{path}: {e}") from None
        if special is not None:
            return "\n".join(lines + special)
    if fmt == "nifti":
        import nibabel as nib  # noqa: PLC0415

        im = load_nifti(path)
        lines += [f"format: NIfTI-{1 if isinstance(im, nib.Nifti1Image) else 2}", f"shape: {im.shape}",
                  f"dtype: {im.get_data_dtype()}", f"voxel size: {tuple(float(z) for z in im.header.get_zooms())}"]
        return "\n".join(lines)
    if fmt in ("fastmri", "ismrmrd"):
        with _open_h5(path) as f, _h5_guard(path):
            if _mrd.is_ismrmrd(f):
                lines += _mrd.describe_ismrmrd(path, f)
                if _mrd.has_trajectories(path, f):  # non-Cartesian: its lines say it all (read_kspace is Cartesian)
                    return "\n".join(lines)
                if any(x.startswith("missing frames:") for x in lines):  # read_kspace refuses it: said above
                    return "\n".join(lines)
            else:
                lines.append("format: HDF5 (fastMRI-style)")
                for name, ds in f.items():
                    if hasattr(ds, "shape"):
                        lines.append(f"  {name}: shape {ds.shape}, dtype {ds.dtype}")
                    else:
                        lines.append(f"  {name}/: group")
                for k, v in f.attrs.items():
                    lines.append(f"  attr {k} = {v}")
    d = read_kspace(path, fmt=fmt)
    k = d["kspace"]
    if fmt not in ("fastmri", "ismrmrd"):
        lines.append({"npy": "format: NumPy .npy", "npz": "format: NumPy .npz archive",
                      "cfl": "format: BART .cfl/.hdr"}[fmt])
    lead = (" x ".join(f"{a}s" for a in d["lead_axes"]) + ", ") if d["stacked"] else ""  # the leading axes, flattened
    lines.append(f"k-space: shape {k.shape} ({lead}coils, "
                 f"{'nz, ' if k.ndim - d['stacked'] == 4 else ''}ny, nx), dtype {k.dtype}")
    lines.append(f"slices: {d['n_slices']}")
    lines.append(f"coil maps: {'shape ' + str(d['maps'].shape) if d['maps'] is not None else 'none'}")
    if d["mask"] is not None:
        m = d["mask"]
        frac = float(np.mean(m != 0))
        lines.append(f"mask: shape {m.shape}, sampled {frac:.1%} (R = {1 / frac:.2f})" if frac
                     else f"mask: shape {m.shape}, empty")
    else:
        sampled = np.any(k != 0, axis=int(d["stacked"]))  # over the coil axis, after any slice/frame axis
        frac = float(np.mean(sampled))
        lines.append(f"mask: none (non-zero samples: {frac:.1%}{f', R = {1 / frac:.2f}' if frac else ''})")
    if k.size:
        lines.append(f"|k| max {float(np.abs(k).max()):.4g}, finite: {bool(np.isfinite(k).all())}")
    return "\n".join(lines)
