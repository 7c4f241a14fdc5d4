"""Read and write k-space, coil maps, masks and images in the common MRI file formats.

Formats, chosen by file extension:

``.npy``
    One array: k-space ``(coils, ny, nx)``. Maps and mask, when present, sit
    next to it as ``<stem>_maps.npy`` and ``<stem>_mask.npy``.
``.npz``
    Keys ``kspace`` and optionally ``maps`` and ``mask``.
``.cfl`` / ``.hdr`` (BART)
    BART's dimension order ``(x, y, z, coils, ...)``. Our ``(coils, ny, nx)`` is
    stored as BART ``(ny, nx, 1, coils)`` (``(coils, nz, ny, nx)`` as
    ``(nz, ny, nx, coils)``): spatial axes keep their order, coils go to dim 3.
    Maps are ``<base>_maps.cfl`` (first ESPIRiT set when dim 4 > 1), the mask
    ``<base>_mask.cfl`` (BART pattern ``(ny, nx, 1, 1)``).
``.h5`` / ``.hdf5``
    fastMRI-style: ``kspace`` ``(slices, coils, ky, kx)``; optional ``maps``
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
    ``(ny, nx)`` are written as NIfTI ``(i, j) = (x, y)``, i.e. transposed, with
    an identity affine.

Every writer is atomic and refuses to overwrite an existing file unless
``overwrite=True``. Every reader names the file in its errors: missing,
truncated or corrupt files raise :class:`FileFormatError` (a ``ValueError``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import ismrmrd as _mrd
from .atomic import atomic_path, atomic_paths, check_writable, commit_files, sweep_stale, temp_prefix
from .limits import BudgetError, check_nbytes, check_shape

__all__ = ["FileFormatError", "detect_format", "read_kspace", "write_kspace", "write_image",
           "read_array", "load_nifti", "describe", "image_outputs", "KSPACE_FORMATS", "IMAGE_FORMATS"]

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


def _cfl_base(path) -> str:
    s = str(path)
    return s[:-4] if s.lower().endswith((".cfl", ".hdr")) else s


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

def to_bart(a: np.ndarray, coils: bool = True) -> np.ndarray:
    """Our ``(coils, *spatial)`` (or ``(*spatial)`` when ``coils=False``) → BART ``(x, y, z, coils)``."""
    a = np.asarray(a)
    if not coils:
        a = a[None]
    spatial = a.shape[1:]
    if len(spatial) not in (2, 3):
        raise ValueError(f"expected 2 or 3 spatial dims; got shape {a.shape}")
    sp = np.moveaxis(a, 0, -1)  # (*spatial, coils)
    if len(spatial) == 2:
        sp = sp[:, :, None, :]
    return sp


def from_bart(a: np.ndarray, coils: bool = True) -> np.ndarray:
    """BART ``(x, y, z, coils, maps, ...)`` → our ``(coils, *spatial)`` (first set of any extra dims)."""
    a = np.asarray(a)
    while a.ndim < 4:
        a = a[..., None]
    a = a[(slice(None),) * 4 + (0,) * (a.ndim - 4)]
    out = np.moveaxis(a, 3, 0)
    if out.shape[3] == 1:
        out = out[:, :, :, 0]
    return out if coils else out[0]


def _read_cfl(path):
    base = _cfl_base(path)
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


def _write_cfl_atomic(base, array, overwrite: bool) -> None:
    from .cfl import write_cfl  # noqa: PLC0415

    base = _cfl_base(base)
    dests = [Path(base + ".cfl"), Path(base + ".hdr")]
    for d in dests:
        check_writable(d, overwrite)
    sweep_stale(Path(base).parent)
    tmpdir = tempfile.mkdtemp(prefix=temp_prefix(Path(base).name), suffix=".partial", dir=Path(base).parent)
    try:
        tbase = os.path.join(tmpdir, "a")
        write_cfl(tbase, np.asarray(array, np.complex64))
        # both or neither; data first, header last: the header marks completion
        commit_files([(tbase + ".cfl", dests[0]), (tbase + ".hdr", dests[1])], overwrite)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# ----------------------------------------------------------------------------- readers

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
        return from_bart(_read_cfl(path))
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
        with self._member(name) as (f, shape, _, _):
            return shape

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


class _h5_guard:
    """Turn an error raised *inside h5py* (a corrupt B-tree, a bad address) into a FileFormatError.

    Errors raised by our own code, or by anything but h5py, pass through unchanged.
    """

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or isinstance(exc, (FileFormatError, BudgetError)) or not isinstance(exc, Exception):
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


def read_kspace(path: "str | os.PathLike", *, slice: int | None = None, fmt: str | None = None) -> dict:
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

    Returns
    -------
    dict
        ``kspace`` (complex64, ``(coils, ny, nx)``, or ``(slices, coils, ny, nx)``
        when several slices were read, with ``stacked=True``), ``maps`` (same
        shape, or None), ``mask`` (or None), ``n_slices``, ``stacked``, ``format``.

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
    if fmt == "npy":
        stem = _stem(path)
        mp, mk = Path(f"{stem}_maps.npy"), Path(f"{stem}_mask.npy")
        kmap = _npy_open(path)
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
            kshape = z.shape("kspace")
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
        base = _cfl_base(path)
        k = from_bart(_read_cfl(base))
        if Path(base + "_maps.cfl").exists():
            maps = from_bart(_read_cfl(base + "_maps"))
        if Path(base + "_mask.cfl").exists():
            mask = from_bart(_read_cfl(base + "_mask"), coils=False).real.astype(np.float32)
    elif fmt in ("fastmri", "ismrmrd"):
        with _open_h5(path) as f, _h5_guard(path):
            if _mrd.is_ismrmrd(f):
                try:
                    k, n_slices = _mrd.read_ismrmrd(path, f, slice=slice)
                except (OSError, KeyError) as e:
                    raise FileFormatError(f"{path}: corrupt ISMRMRD data ({e})") from None
                stacked = slice is None and n_slices > 1
                slice = None  # already selected
            elif (ds := _h5_dataset(f, "kspace", path)) is not None:
                if ds.ndim != 4:
                    raise FileFormatError(f"{path}: fastMRI 'kspace' must be (slices, coils, ky, kx); "
                                          f"got shape {ds.shape}")
                n_slices = ds.shape[0]
                _select_slice(path, None, slice, n_slices)  # range check before reading
                k = _h5_read(ds, path, slice)
                mds, kds = _h5_dataset(f, "maps", path), _h5_dataset(f, "mask", path)
                if mds is not None:
                    if tuple(mds.shape) != tuple(ds.shape):
                        raise FileFormatError(f"{path}: 'maps' of shape {mds.shape} disagree with 'kspace' "
                                              f"of shape {ds.shape}")
                    maps = _h5_read(mds, path, slice)
                if kds is not None:
                    if kds.ndim == 3 and kds.shape[0] == n_slices:
                        mask = _h5_read(kds, path, slice)
                    elif kds.ndim in (1, 2):
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
        elif k.dtype.kind not in "fiu":
            raise FileFormatError(f"{path}: k-space has dtype {k.dtype}; expected complex")
    k = k.astype(np.complex64, copy=False)
    if not stacked and fmt in ("npy", "npz", "cfl") and slice is not None:
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
        if stacked:  # one pattern for all slices or one per slice, never fewer
            per_slice(f"{path}: mask", mask, k.shape[0], len(img_shape))
        m0 = mask[0] if stacked and mask.ndim == len(img_shape) + 1 else mask
        try:
            if m0.ndim > len(img_shape) or np.broadcast_shapes(m0.shape, img_shape) != img_shape:
                raise ValueError
        except ValueError:
            raise FileFormatError(f"{path}: mask of shape {mask.shape} disagrees with k-space of shape "
                                  f"{k.shape}") from None
    return {"kspace": k, "maps": maps, "mask": mask, "n_slices": n_slices, "stacked": stacked, "format": fmt}


# ----------------------------------------------------------------------------- writers

def _sibling(path, suffix):
    return Path(f"{_stem(path)}{suffix}")


def write_kspace(path, kspace, maps=None, mask=None, *, overwrite: bool = False, fmt: str | None = None) -> list[Path]:
    """Write k-space (and maps and mask) in the format of ``path``'s extension.

    All outputs are checked for existence before any is written; each is written
    atomically. Returns the paths written.
    """
    fmt = detect_format(path, fmt)
    k = np.asarray(kspace, np.complex64)
    if k.ndim not in (3, 4):
        raise ValueError(f"kspace must be (coils, ny, nx) or (coils, nz, ny, nx); got shape {k.shape}")
    if maps is not None and np.shape(maps) != k.shape:
        raise ValueError(f"maps of shape {np.shape(maps)} disagree with kspace of shape {k.shape}")
    mask = None if mask is None else np.asarray(mask, np.float32)
    written = []
    if fmt == "npy":
        outs = [Path(path)] + ([_sibling(path, "_maps.npy")] if maps is not None else []) \
            + ([_sibling(path, "_mask.npy")] if mask is not None else [])
        arrays = [k] + ([np.asarray(maps, np.complex64)] if maps is not None else []) \
            + ([mask] if mask is not None else [])
        with atomic_paths(outs, overwrite) as tmps:
            for t, a in zip(tmps, arrays):
                np.save(t, a)
        written = outs
    elif fmt == "npz":
        arrays = {"kspace": k}
        if maps is not None:
            arrays["maps"] = np.asarray(maps, np.complex64)
        if mask is not None:
            arrays["mask"] = mask
        with atomic_path(path, overwrite) as t:
            np.savez_compressed(t, **arrays)
        written = [Path(path)]
    elif fmt == "cfl":
        base = _cfl_base(path)
        items = [(base, to_bart(k))]
        if maps is not None:
            items.append((base + "_maps", to_bart(np.asarray(maps))))
        if mask is not None:
            m = np.broadcast_to(mask, k.shape[1:]) if mask.ndim < k.ndim - 1 else mask
            items.append((base + "_mask", to_bart(m, coils=False)))
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
            _mrd.write_ismrmrd(t, k, mask)
        written = [Path(path)]
    else:
        raise ValueError(f"{path}: cannot write k-space as {fmt}; use .npy, .npz, .cfl, .h5 or .mrd")
    return written


def image_outputs(path, fmt: str | None = None) -> list[Path]:
    """The files :func:`write_image` would create for ``path``."""
    fmt = detect_format(path, fmt)
    if fmt == "nifti":
        return [_sibling(path, "_mag.nii.gz"), _sibling(path, "_phase.nii.gz")]
    if fmt == "cfl":
        b = _cfl_base(path)
        return [Path(b + ".cfl"), Path(b + ".hdr")]
    return [Path(path)]


def write_image(path, image, *, overwrite: bool = False, fmt: str | None = None) -> list[Path]:
    """Write a complex image ``(ny, nx)``, ``(nz, ny, nx)`` or a stack of slices.

    ``.npy``/``.npz`` (key ``image``) keep the complex array; ``.cfl`` stores
    BART ``(ny, nx, 1)``; ``.h5`` writes fastMRI ``reconstruction`` (magnitude,
    ``(slices, ny, nx)``) and ``reconstruction_complex``; ``.nii``/``.nii.gz``
    writes ``<stem>_mag.nii.gz`` and ``<stem>_phase.nii.gz``.
    """
    fmt = detect_format(path, fmt)
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (ny, nx) or (nz|slices, ny, nx); got shape {img.shape}")
    img = img.astype(np.complex64) if img.dtype.kind == "c" else img.astype(np.float32)
    outs = image_outputs(path, fmt)
    if fmt == "npy":
        with atomic_path(path, overwrite) as t:
            np.save(t, img)
    elif fmt == "npz":
        with atomic_path(path, overwrite) as t:
            np.savez_compressed(t, image=img)
    elif fmt == "cfl":
        _write_cfl_atomic(path, to_bart(img, coils=False)[..., 0] if img.ndim == 2 else np.moveaxis(img, 0, -1),
                          overwrite)
    elif fmt == "fastmri":
        import h5py  # noqa: PLC0415

        stack = img[None] if img.ndim == 2 else img
        with atomic_path(path, overwrite) as t, h5py.File(t, "w") as f:
            f.create_dataset("reconstruction", data=np.abs(stack).astype(np.float32))
            f.create_dataset("reconstruction_complex", data=stack.astype(np.complex64))
            f.attrs["written_by"] = "mri_csc"
    elif fmt == "nifti":
        import nibabel as nib  # noqa: PLC0415

        vol = img.T  # (ny, nx) -> (x, y); (n, ny, nx) -> (x, y, n)
        with atomic_paths(outs, overwrite) as (tm, tp):
            nib.save(nib.Nifti1Image(np.abs(vol).astype(np.float32), np.eye(4)), tm)
            nib.save(nib.Nifti1Image(np.angle(vol).astype(np.float32), np.eye(4)), tp)
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

def describe(path: "str | os.PathLike") -> str:
    """A few human-readable lines about a file: format, shapes, dtypes, slices."""
    fmt = detect_format(path)
    if fmt != "cfl":
        _require(path)
    lines = [f"file: {path}"]
    if fmt == "nifti":
        import nibabel as nib  # noqa: PLC0415

        im = load_nifti(path)
        lines += [f"format: NIfTI-{1 if isinstance(im, nib.Nifti1Image) else 2}", f"shape: {im.shape}",
                  f"dtype: {im.get_data_dtype()}", f"voxel size: {tuple(float(z) for z in im.header.get_zooms())}"]
        return "\n".join(lines)
    if fmt in ("fastmri", "ismrmrd"):
        with _open_h5(path) as f, _h5_guard(path):
            if _mrd.is_ismrmrd(f):
                lines += _mrd.describe_ismrmrd(f)
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
    lines.append(f"k-space: shape {k.shape} ({'slices, ' if d['stacked'] else ''}coils, "
                 f"{'nz, ' if k.ndim - d['stacked'] == 4 else ''}ny, nx), dtype {k.dtype}")
    lines.append(f"slices: {d['n_slices']}")
    lines.append(f"coil maps: {'shape ' + str(d['maps'].shape) if d['maps'] is not None else 'none'}")
    if d["mask"] is not None:
        m = d["mask"]
        frac = float(np.mean(m != 0))
        lines.append(f"mask: shape {m.shape}, sampled {frac:.1%} (R = {1 / frac:.2f})" if frac
                     else f"mask: shape {m.shape}, empty")
    else:
        sampled = np.any(k != 0, axis=-3 if k.ndim >= 3 else 0)
        frac = float(np.mean(sampled))
        lines.append(f"mask: none (non-zero samples: {frac:.1%}{f', R = {1 / frac:.2f}' if frac else ''})")
    if k.size:
        lines.append(f"|k| max {float(np.abs(k).max()):.4g}, finite: {bool(np.isfinite(k).all())}")
    return "\n".join(lines)
