"""ISMRMRD / MRD HDF5 (Cartesian) read and minimal write, with h5py only.

An ISMRMRD file holds a group (``dataset`` by default) with an ``xml`` header
and a ``data`` compound array of acquisitions. Each acquisition is one readout
line: a ``head`` (the ISMRMRD ``AcquisitionHeader``), a ``traj`` and ``data``
(float32, real/imaginary interleaved, ``(channels, samples)``). k-space is
assembled by the encoding counters: ``idx.kspace_encode_step_1`` → ``ny``,
``idx.kspace_encode_step_2`` → ``nz`` (3D), samples → ``nx``. Noise and
navigator acquisitions are skipped. The ``ismrmrd`` package is not needed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

__all__ = ["ACQ_DTYPE", "is_ismrmrd", "read_ismrmrd", "write_ismrmrd", "describe_ismrmrd"]

_ENC_COUNTERS = np.dtype([
    ("kspace_encode_step_1", "<u2"), ("kspace_encode_step_2", "<u2"), ("average", "<u2"),
    ("slice", "<u2"), ("contrast", "<u2"), ("phase", "<u2"), ("repetition", "<u2"),
    ("set", "<u2"), ("segment", "<u2"), ("user", "<u2", (8,)),
])
_ACQ_HEADER = np.dtype([
    ("version", "<u2"), ("flags", "<u8"), ("measurement_uid", "<u4"), ("scan_counter", "<u4"),
    ("acquisition_time_stamp", "<u4"), ("physiology_time_stamp", "<u4", (3,)),
    ("number_of_samples", "<u2"), ("available_channels", "<u2"), ("active_channels", "<u2"),
    ("channel_mask", "<u8", (16,)), ("discard_pre", "<u2"), ("discard_post", "<u2"),
    ("center_sample", "<u2"), ("encoding_space_ref", "<u2"), ("trajectory_dimensions", "<u2"),
    ("sample_time_us", "<f4"), ("position", "<f4", (3,)), ("read_dir", "<f4", (3,)),
    ("phase_dir", "<f4", (3,)), ("slice_dir", "<f4", (3,)), ("patient_table_position", "<f4", (3,)),
    ("idx", _ENC_COUNTERS), ("user_int", "<i4", (8,)), ("user_float", "<f4", (8,)),
])


def _acq_dtype():
    import h5py  # noqa: PLC0415

    vlen = h5py.vlen_dtype(np.dtype("<f4"))
    return np.dtype([("head", _ACQ_HEADER), ("traj", vlen), ("data", vlen)])


ACQ_DTYPE = None  # built lazily (needs h5py)

# ISMRMRD flag bits are 1-based: flag n is bit (n - 1)
_SKIP_FLAGS = {19: "noise measurement", 23: "navigation", 24: "phase correction", 25: "hp feedback",
               26: "dummy scan", 31: "phase stabilisation reference", 32: "phase stabilisation"}
_SKIP_MASK = sum(1 << (n - 1) for n in _SKIP_FLAGS)


def is_ismrmrd(h5file) -> bool:
    """Whether an open h5py File looks like ISMRMRD (a group with a ``data`` compound dataset)."""
    return _find_group(h5file) is not None


def _find_group(h5file):
    for name in ("dataset", *h5file.keys()):
        g = h5file.get(name)
        if g is not None and hasattr(g, "keys") and "data" in g and g["data"].dtype.names \
                and "head" in g["data"].dtype.names:
            return name
    return None


def _matrix_from_xml(xml_text):
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.split("}")[-1] == "encodedSpace":
            for ms in el:
                if ms.tag.split("}")[-1] == "matrixSize":
                    vals = {c.tag.split("}")[-1]: int(float(c.text)) for c in ms}
                    return vals.get("x"), vals.get("y"), vals.get("z", 1)
    return None


def read_ismrmrd(path, h5file, *, slice=None):
    """Assemble Cartesian k-space from an open ISMRMRD file.

    Returns ``(kspace, n_slices)``; ``kspace`` is ``(coils, ny, nx)`` (or
    ``(coils, nz, ny, nx)`` for 3D encodings) for the slice asked for (``idx.slice``),
    or ``(slices, coils, ny, nx)`` when ``slice`` is None and there are several.
    """
    gname = _find_group(h5file)
    group = h5file[gname]
    acqs = group["data"][()]
    if acqs.size == 0:
        raise ValueError(f"{path}: ISMRMRD group {gname!r} has no acquisitions")
    head = acqs["head"]
    keep = (head["flags"].astype(np.uint64) & np.uint64(_SKIP_MASK)) == 0
    if not keep.any():
        raise ValueError(f"{path}: ISMRMRD file has only noise/navigator acquisitions, no k-space lines")
    acqs, head = acqs[keep], head[keep]
    if np.any(head["trajectory_dimensions"] > 0):
        raise ValueError(f"{path}: non-Cartesian ISMRMRD data (trajectory present); only Cartesian is supported")
    ncoil = int(head["active_channels"].max())
    nx = int(head["number_of_samples"].max())
    e1, e2 = head["idx"]["kspace_encode_step_1"], head["idx"]["kspace_encode_step_2"]
    ny, nz = int(e1.max()) + 1, int(e2.max()) + 1
    if "xml" in group:
        xml = group["xml"][()]
        xml = xml[0] if getattr(xml, "shape", ()) else xml
        mat = _matrix_from_xml(xml.decode() if isinstance(xml, bytes) else str(xml))
        if mat and mat[1] and mat[1] > ny:
            ny = mat[1]
        if mat and mat[2] and mat[2] > nz:
            nz = mat[2]
    slices = head["idx"]["slice"]
    n_slices = int(slices.max()) + 1
    wanted = range(n_slices) if slice is None else [slice]
    if slice is not None and not 0 <= slice < n_slices:
        raise ValueError(f"{path}: slice {slice} out of range; the file has {n_slices} slice(s) (0..{n_slices - 1})")
    out = np.zeros((len(wanted), ncoil, nz, ny, nx), np.complex64)
    for j, s in enumerate(wanted):
        for a, h in zip(acqs[slices == s], head[slices == s]):
            c, n = int(h["active_channels"]), int(h["number_of_samples"])
            d = np.asarray(a["data"], np.float32)
            if d.size != 2 * c * n:
                raise ValueError(f"{path}: acquisition {int(h['scan_counter'])} holds {d.size} floats; "
                                 f"expected 2*channels*samples = {2 * c * n} (truncated file?)")
            line = d.view(np.complex64).reshape(c, n)
            out[j, :c, int(h["idx"]["kspace_encode_step_2"]), int(h["idx"]["kspace_encode_step_1"]), :n] += line
    if nz == 1:
        out = out[:, :, 0]
    return (out[0] if len(wanted) == 1 else out), n_slices


_XML = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{nc}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>{nz}</z></matrixSize>
      <fieldOfView_mm><x>{nx}</x><y>{ny}</y><z>{nz}</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>{nz}</z></matrixSize>
      <fieldOfView_mm><x>{nx}</x><y>{ny}</y><z>{nz}</z></fieldOfView_mm></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{ny1}</maximum><center>{cy}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>{nz1}</maximum><center>{cz}</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>0</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
"""


def write_ismrmrd(tmp_path, kspace, mask=None) -> None:
    """Write a minimal valid ISMRMRD file holding the sampled lines of ``kspace``.

    ``kspace`` is ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``; one acquisition
    is written per sampled (``kz``, ``ky``) line (a line is sampled when the mask,
    or the k-space, is non-zero anywhere along it).
    """
    import h5py  # noqa: PLC0415

    k = np.asarray(kspace, np.complex64)
    if k.ndim == 3:
        k = k[:, None]
    nc, nz, ny, nx = k.shape
    if mask is None:
        sampled = np.any(k != 0, axis=(0, 3))
    else:
        m = np.broadcast_to(np.asarray(mask), k.shape[1:] if np.ndim(mask) == 3 else k.shape[2:])
        m = m if m.ndim == 3 else m[None]
        sampled = np.any(m != 0, axis=-1)
    lines = np.argwhere(sampled)
    dt = _acq_dtype()
    acqs = np.zeros(len(lines), dtype=dt)
    head = acqs["head"]
    head["version"] = 1
    head["scan_counter"] = np.arange(len(lines))
    head["number_of_samples"] = nx
    head["available_channels"] = nc
    head["active_channels"] = nc
    head["center_sample"] = nx // 2
    head["read_dir"] = (1, 0, 0)
    head["phase_dir"] = (0, 1, 0)
    head["slice_dir"] = (0, 0, 1)
    head["idx"]["kspace_encode_step_1"] = lines[:, 1]
    head["idx"]["kspace_encode_step_2"] = lines[:, 0]
    acqs["head"] = head
    for i, (z, y) in enumerate(lines):
        acqs["traj"][i] = np.zeros(0, np.float32)
        acqs["data"][i] = np.ascontiguousarray(k[:, z, y, :]).view(np.float32).ravel()
    xml = _XML.format(nc=nc, nx=nx, ny=ny, nz=nz, ny1=ny - 1, nz1=nz - 1, cy=ny // 2, cz=nz // 2)
    with h5py.File(tmp_path, "w") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", shape=(1,), dtype=h5py.string_dtype(), data=[xml])
        g.create_dataset("data", data=acqs, maxshape=(None,), chunks=True)


def describe_ismrmrd(h5file) -> list[str]:
    gname = _find_group(h5file)
    acqs = h5file[gname]["data"]
    head = acqs["head"] if acqs.shape[0] else None
    lines = [f"format: ISMRMRD/MRD HDF5 (group {gname!r}), {acqs.shape[0]} acquisitions"]
    if head is not None:
        lines.append(f"channels: {int(head['active_channels'].max())}, samples per readout: "
                     f"{int(head['number_of_samples'].max())}, "
                     f"encode step 1: 0..{int(head['idx']['kspace_encode_step_1'].max())}, "
                     f"encode step 2: 0..{int(head['idx']['kspace_encode_step_2'].max())}, "
                     f"slices: {int(head['idx']['slice'].max()) + 1}")
    return lines
