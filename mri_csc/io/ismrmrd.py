r"""ISMRMRD / MRD HDF5 (Cartesian): read and write on the ``ismrmrd`` package.

An ISMRMRD file holds a group (``dataset`` by default) with an ``xml`` header
and a ``data`` array of acquisitions, each one readout line with its
``AcquisitionHeader``. The header layout (:data:`ismrmrd.hdf5.acquisition_dtype`),
the flag bits (``ismrmrd.ACQ_IS_NOISE_MEASUREMENT`` …) and the XML schema
(:mod:`ismrmrd.xsd`) are the reference implementation's; the acquisitions are read
in one block with h5py.

Reading (:func:`read_ismrmrd`), in this order:

1. **Noise scans** (``ACQ_IS_NOISE_MEASUREMENT``) give the noise covariance
   :math:`\Psi = \frac{1}{N-1}\sum_n \eta_n\eta_n^H` over coils; with its Cholesky
   factor :math:`\Psi = LL^H`, every k-space sample's coil vector becomes
   :math:`L^{-1}y` (prewhitening: unit-variance, uncorrelated coil noise). On by
   default when the file has noise scans; a user noise array replaces them.
   Navigator, phase-correction, feedback, dummy and phase-stabilisation scans
   are skipped.
2. Each line is placed by its encoding counters, shifted so that the
   ``encodingLimits`` centre lands on the matrix centre (``ky = e1 + ny/2 - c1``,
   same for ``e2``) and the readout's ``center_sample`` on ``nx/2`` (partial
   echoes), after dropping ``discard_pre``/``discard_post`` samples.
3. **Readout oversampling** is removed when ``reconSpace`` is narrower than
   ``encodedSpace`` in x: inverse FFT along the readout, crop to the recon
   width, forward FFT; a partial echo's missing samples then mark the samples
   they reach unsampled in the mask (:func:`_cover_after_crop`), not measured
   zeros. A recon matrix narrower in y is returned as ``crop``
   (the image is cropped after reconstruction; undersampled phase encodes
   cannot be cropped before). Nothing is interpolated: the image keeps the
   encoded voxel size (encoded field of view over encoded matrix, the NIfTI's
   voxel size too) and covers the recon field of view, at most the encoded
   matrix; where that is not the recon matrix (a larger recon matrix, or
   coarser recon voxels) a warning says so.
4. Lines are kept apart by ``(contrast, phase, repetition, set)`` — one
   **frame** each — and by ``slice``. ``average`` is averaged, after checking
   that every average samples the same lines; a line acquired twice within a
   frame (a calibration line that is also an imaging line) is averaged, never
   summed.

k-space is returned as ``(slices, frames, coils, [nz,] ny, nx)``, the readout on
the last axis.
"""

from __future__ import annotations

import logging

import numpy as np

from .limits import check_nbytes, check_shape

__all__ = ["is_ismrmrd", "read_ismrmrd", "write_ismrmrd", "describe_ismrmrd", "read_header",
           "noise_whitener", "whiten_maps", "remove_readout_oversampling", "read_noise", "ismrmrd_metadata",
           "FRAME_COUNTERS",
           "geometry_from_affine", "read_ismrmrd_noncartesian", "has_trajectories", "TRAJECTORY_UNITS"]

log = logging.getLogger(__name__)

#: Encoding counters that make separate frames (``average`` is averaged, ``slice`` is the slice axis).
FRAME_COUNTERS = ("contrast", "phase", "repetition", "set")

_SKIP = ("ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_DUMMYSCAN_DATA",
         "ACQ_IS_RTFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA", "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
         "ACQ_IS_PHASE_STABILIZATION")


def _err(msg):
    from .formats import FileFormatError  # noqa: PLC0415  (formats imports this module)

    return FileFormatError(msg)


def _bit(name: str) -> np.uint64:
    import ismrmrd  # noqa: PLC0415

    return np.uint64(1) << np.uint64(getattr(ismrmrd, name) - 1)  # ISMRMRD flags are 1-based


def _find_group(h5file):
    import h5py  # noqa: PLC0415

    for name in ("dataset", *h5file.keys()):
        g = h5file.get(name)
        data = g.get("data") if g is not None and hasattr(g, "keys") else None
        if isinstance(data, h5py.Dataset) and data.ndim == 1 and data.dtype.names and "head" in data.dtype.names:
            return name
    return None


def is_ismrmrd(h5file) -> bool:
    """Whether an open h5py File looks like ISMRMRD (a group with a ``data`` array of acquisitions)."""
    return _find_group(h5file) is not None


def read_header(path, group):
    """Parse a group's ``xml`` header with :func:`ismrmrd.xsd.CreateFromDocument`."""
    import ismrmrd  # noqa: PLC0415

    if "xml" not in group:
        raise _err(f"{path}: ISMRMRD group {group.name!r} has no 'xml' header")
    x = group["xml"][()]
    x = x[0] if getattr(x, "shape", ()) else x
    if isinstance(x, bytes):
        try:
            x = x.decode("utf-8")
        except UnicodeDecodeError as e:  # the ISMRMRD header is UTF-8 XML
            raise _err(f"{path}: ISMRMRD XML header is not valid UTF-8 (byte 0x{x[e.start]:02x} at offset "
                       f"{e.start}); re-encode it as UTF-8") from None
    else:
        x = str(x)
    try:
        return ismrmrd.xsd.CreateFromDocument(x)
    except Exception as e:  # xsdata raises parser errors of several kinds
        raise _err(f"{path}: ISMRMRD XML header does not parse ({type(e).__name__}: {str(e)[:200]})") from None


def _missing_fields(want, got, prefix: str = "") -> list:
    """Fields of the structured dtype ``want`` (nested ones too, e.g. ``idx.set``) that ``got`` lacks, or
    holds with another kind (integer/float/struct) or shape (named ``"field (wrong type)"``)."""
    names = got.names or ()
    out = []
    for n in want.names:
        w = want[n]
        if n not in names:
            out.append(prefix + n)
            continue
        g = got[n]
        if w.names is not None:
            out += _missing_fields(w, g, f"{prefix}{n}.") if g.names is not None else [f"{prefix}{n} (wrong type)"]
        elif g.names is not None or g.shape != w.shape or (g.base.kind in "iu") != (w.base.kind in "iu") \
                or (g.base.kind == "f") != (w.base.kind == "f"):
            out.append(f"{prefix}{n} (wrong type)")
    return out


def _heads(path, group):
    import ismrmrd  # noqa: PLC0415

    ds = group["data"]
    want = ismrmrd.hdf5.acquisition_header_dtype
    got = ds.dtype["head"]
    missing = _missing_fields(want, got)
    if missing:
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise _err(f"{path}: ISMRMRD 'data' has an acquisition header whose fields are missing or of the wrong "
                   f"type: {missing[:8]}{more}")
    try:
        return ds.fields("head")[:]
    except OSError as e:
        raise _err(f"{path}: cannot read ISMRMRD acquisition headers ({str(e).splitlines()[0]})") from None


def _trajectory_type(e) -> str:
    return str(getattr(e.trajectory, "value", e.trajectory)).lower()


def _encoding(path, hdr, *, noncartesian: bool = False):
    if not hdr.encoding:
        raise _err(f"{path}: ISMRMRD header has no <encoding>")
    e = hdr.encoding[0]
    traj = _trajectory_type(e)
    if traj != "cartesian" and not noncartesian:
        raise _err(f"{path}: ISMRMRD trajectory {traj!r}: non-Cartesian data are read with their acquisitions' "
                   "trajectories (read_ismrmrd_noncartesian; mri-csc recon does this by itself)")
    try:
        enc = tuple(int(getattr(e.encodedSpace.matrixSize, a)) for a in "xyz")
        rec = tuple(int(getattr(e.reconSpace.matrixSize, a)) for a in "xyz")
    except (AttributeError, TypeError, ValueError):
        raise _err(f"{path}: ISMRMRD header lacks encodedSpace/reconSpace matrixSize") from None
    if min(enc) < 1 or min(rec) < 1:
        raise _err(f"{path}: ISMRMRD matrix sizes must be >= 1; encoded {enc}, recon {rec}")
    return e, enc, rec


def _frames(idx):
    """``(frames, frame_of)``: the distinct :data:`FRAME_COUNTERS` combinations of acquisitions ``idx`` (dicts, in
    sorted order) and each acquisition's index into them."""
    keys = np.stack([idx[c].astype(np.int64) for c in FRAME_COUNTERS], axis=1)
    uniq, frame_of = np.unique(keys, axis=0, return_inverse=True)
    return [dict(zip(FRAME_COUNTERS, map(int, u))) for u in uniq], frame_of.ravel()


def _frame_name(frame: dict, frames: list) -> str:
    """A frame by the counters that tell the file's frames apart (``contrast=1``), or all of them."""
    varying = [c for c in FRAME_COUNTERS if len({f[c] for f in frames}) > 1] or list(FRAME_COUNTERS)
    return ", ".join(f"{c}={frame[c]}" for c in varying)


def _empty_frames(slices_all, frame_of, frames, wanted) -> list[str]:
    """``"slice S has no k-space lines for contrast=C"`` for each (slice of ``wanted``, frame) without lines: the
    k-space is one block ``(slices, frames, ...)``, so every slice needs every frame."""
    have = set(zip(slices_all.tolist(), np.asarray(frame_of).tolist()))
    return [f"slice {int(s)} has no k-space lines for {_frame_name(fr, frames)}"
            for s in wanted for f, fr in enumerate(frames) if (int(s), f) not in have]


def _refuse_empty_frames(path, slices_all, frame_of, frames, wanted) -> None:
    """Refuse (before any line is read) slices that lack a frame (:func:`_empty_frames`), naming them and the
    slices that are complete (``--slice`` reconstructs one alone)."""
    empty = _empty_frames(slices_all, frame_of, frames, wanted)
    if empty:
        incomplete = {int(m.split()[1]) for m in empty}
        whole = [int(s) for s in wanted if int(s) not in incomplete]
        hint = (f"; slice(s) {whole[:8]} hold every frame: reconstruct one alone with mri-csc recon --slice {whole[0]} "
                "(read_kspace(slice=...))" if whole else "")
        raise _err(f"{path}: {'; '.join(empty[:4])}{' ...' if len(empty) > 4 else ''} (of {len(frames)} frames: "
                   f"contrast x phase x repetition x set); every slice needs every frame{hint}")


def _limit_center(lim, n):
    if lim is None or lim.center is None:
        return 0
    return n // 2 - int(lim.center)


def whiten_maps(maps, whitener):
    r"""Coil maps ``(coils, ...)`` for k-space prewhitened with ``whitener`` :math:`W`: the whitened
    data :math:`W y = W S x` have the sensitivities :math:`W S` (``maps`` unchanged when ``whitener`` is None)."""
    if whitener is None:
        return maps
    w = np.asarray(whitener, np.complex64)
    m = np.asarray(maps)
    if m.shape[0] != w.shape[1]:
        raise ValueError(f"coil maps of {m.shape[0]} coils cannot be whitened for {w.shape[1]}-coil k-space")
    return np.tensordot(w, m, axes=(1, 0)).astype(np.complex64)


def noise_whitener(noise) -> np.ndarray:
    r"""The prewhitening matrix :math:`W = L^{-1}` from noise samples, :math:`\Psi = LL^H`.

    Parameters
    ----------
    noise : array, ``(coils, samples)`` (or ``(coils, ...)``, flattened)
        Noise-only samples of every coil.

    Returns
    -------
    numpy.ndarray
        ``(coils, coils)`` complex128 lower-triangular inverse; ``W @ y`` has
        identity noise covariance when ``y``'s noise matches the samples.

    Raises
    ------
    ValueError
        Fewer samples than coils, non-finite samples, or a singular covariance.
    """
    n = np.asarray(noise)
    if n.ndim < 2:
        raise ValueError(f"noise must be (coils, samples); got shape {n.shape}")
    n = n.reshape(n.shape[0], -1).astype(np.complex128)
    nc, ns = n.shape
    if ns <= nc:
        raise ValueError(f"noise has {ns} samples per coil for {nc} coils; need more samples than coils")
    if not np.isfinite(n).all():
        raise ValueError("noise samples hold NaN or Inf")
    cov = n @ n.conj().T / (ns - 1)
    try:
        L = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"noise covariance of {nc} coils is not positive definite (a dead or duplicated "
                         "channel?); cannot prewhiten") from None
    return np.linalg.inv(L)


def remove_readout_oversampling(kspace, nx: int) -> np.ndarray:
    """Inverse FFT along the readout (last axis), crop the centre ``nx`` samples, forward FFT."""
    from ..backend import fftc, ifftc  # noqa: PLC0415

    k = np.asarray(kspace)
    n = k.shape[-1]
    if nx > n:
        raise ValueError(f"recon width {nx} is larger than the {n} readout samples")
    if nx == n:
        return k
    x = ifftc(k, axes=(-1,))
    start = (n - nx) // 2
    return fftc(x[..., start:start + nx], axes=(-1,)).astype(k.dtype, copy=False)


def read_ismrmrd(path, h5file, *, slice=None, prewhiten: "bool | None" = None, noise=None, frame=None) -> dict:
    """Assemble Cartesian k-space from an open ISMRMRD file (see the module docstring).

    Parameters
    ----------
    path : str
        For messages.
    h5file : h5py.File
    slice : int, optional
        Read this slice only (``idx.slice``); all slices when None.
    prewhiten : bool, optional
        Whiten with the noise covariance; default: when noise is available.
        ``True`` without noise scans or ``noise`` is an error.
    noise : array, optional
        ``(coils, samples)`` noise to whiten with instead of the file's noise scans.
    frame : int, optional
        Keep this frame only (index into ``frames``).

    Returns
    -------
    dict
        ``kspace`` complex64 ``(slices, frames, coils, [nz,] ny, nx)``, ``n_slices``
        (in the file), ``frames`` (list of dicts of :data:`FRAME_COUNTERS`),
        ``noise_scans`` (noise acquisitions in the file), ``whitened`` (bool), ``whitener`` (the
        ``(coils, coils)`` matrix applied, or None: coil maps given with the data need it too),
        ``crop`` (``(ny, nx)`` to crop the image to, or None), ``geometry``
        (for NIfTI: ``fov_mm``, ``matrix``, per slice ``position``/``read_dir``/
        ``phase_dir``/``slice_dir``), ``averages``, ``header`` (the parsed XML).
    """
    gname = _find_group(h5file)
    group = h5file[gname]
    hdr = read_header(path, group)
    e, enc, rec = _encoding(path, hdr)
    heads = _heads(path, group)
    if heads.size == 0:
        raise _err(f"{path}: ISMRMRD group {gname!r} has no acquisitions")
    is_noise, img, is_cal = _acquisition_kinds(path, heads, e)
    hi = heads[img]
    reversed_ = _reversed(hi)
    if reversed_.any():  # EPI-style: the lines need reversal *and* phase correction, which mri_csc does not do
        raise _err(f"{path}: {int(reversed_.sum())} of {hi.size} k-space lines are flagged ACQ_IS_REVERSE (readouts "
                   "acquired backwards, as in EPI); mri_csc grids Cartesian lines as stored and would ghost the "
                   "image: correct and flip them first (e.g. Gadgetron's EPI gadgets)")
    if np.any(hi["trajectory_dimensions"] > 0):  # the header says Cartesian (_encoding): coordinates of the grid
        _check_cartesian_traj(path, group, np.flatnonzero(img), hi)
    if np.any(hi["encoding_space_ref"] != 0):
        raise _err(f"{path}: acquisitions refer to encoding spaces {sorted(set(hi['encoding_space_ref'].tolist()))}; "
                   "only the first <encoding> is supported")
    nc = int(hi["active_channels"][0])
    if nc < 1 or np.any(hi["active_channels"] != nc):
        raise _err(f"{path}: acquisitions have {sorted(set(hi['active_channels'].tolist()))} active channels; "
                   "expected one channel count >= 1")
    ex, ey, ez = enc
    idx = hi["idx"]
    place = _placement(path, e, enc, hi)
    kz, ky, ns = place[0], place[1], place[3]
    slices_all = idx["slice"].astype(np.int64)
    n_slices = int(slices_all.max()) + 1
    present = np.unique(slices_all)
    if present.size != n_slices:
        missing = sorted(set(range(n_slices)) - set(present.tolist()))[:5]
        raise _err(f"{path}: slice counter goes up to {n_slices - 1} but slice(s) {missing} have no acquisitions")
    if slice is not None:
        if isinstance(slice, bool) or not isinstance(slice, (int, np.integer)) or not 0 <= slice < n_slices:
            raise ValueError(f"{path}: slice {slice} out of range; the file has {n_slices} slice(s) "
                             f"(0..{n_slices - 1})")
    frames, frame_of = _frames(idx)
    wanted = list(range(n_slices)) if slice is None else [int(slice)]
    if frame is not None:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(frames):
            raise ValueError(f"{path}: frame {frame} out of range; the file has {len(frames)} frame(s)")
        keep = frame_of == int(frame)
        frames = [frames[int(frame)]]
        frame_of = np.where(keep, 0, -1)
    _refuse_empty_frames(path, slices_all, frame_of, frames, wanted)  # before any line is read
    # averages must share a pattern, per (slice, frame)
    avg = idx["average"].astype(np.int64)
    n_avg = int(np.unique(avg).size)
    if n_avg > 1:
        for s in wanted:
            for f in range(len(frames)):
                sel = (slices_all == s) & (frame_of == f)
                pats = {a: set(zip(kz[sel & (avg == a)].tolist(), ky[sel & (avg == a)].tolist()))
                        for a in np.unique(avg[sel])}
                first = next(iter(pats.values()))
                if any(p != first for p in pats.values()):
                    raise _err(f"{path}: the {len(pats)} averages of slice {int(s)}, frame {frames[f]} sample "
                               "different lines; averaging them would weight lines unequally")
    rx, crop = _image_size(path, e, enc, rec, warn=True)
    shape = (len(wanted), len(frames), nc, ez, ey, ex)
    check_shape(shape, np.complex64, f"{path}: ISMRMRD k-space")
    whitener, n_noise = _file_whitener(path, group, heads, is_noise, nc, prewhiten, noise)
    # lines
    rows_all = np.flatnonzero(img)
    take = np.isin(slices_all, wanted) & (frame_of >= 0)
    rows = rows_all[take]
    lines = _read_lines(path, group, rows, hi[take], nc)
    s_index = {s: j for j, s in enumerate(wanted)}
    pos = [(s_index[int(slices_all[i])], int(frame_of[i])) for i in np.flatnonzero(take)]
    k, count, cover = _grid_lines(lines, hi[take], pos, tuple(a[take] for a in place), shape, whitener,
                                  rx)
    if ez == 1:
        k = k[:, :, :, 0]
    # the samples acquired: a partial echo's missing ones are not measured zeros
    mask = (cover if rx == ex else _cover_after_crop(cover, rx)).astype(np.float32)
    if rx < ex and np.any(ns[take] < ex):
        log.info("%s: partial-echo lines with readout oversampling: the samples within %d of a missing part, "
                 "after the oversampling is removed, are marked unsampled", path, CROP_MARGIN)
    if ez == 1:
        mask = mask[:, :, 0]
    geometry = _geometry(hdr, e, enc, rec, heads[img], slices_all, wanted)
    calibration = _calibration_lines(path, group, e, enc, heads[is_cal], np.flatnonzero(is_cal), wanted, nc,
                                     whitener, rx)
    return {"kspace": k, "mask": mask, "n_slices": n_slices, "frames": frames, "noise_scans": n_noise,
            "whitened": whitener is not None, "whitener": whitener, "crop": crop, "geometry": geometry,
            "averages": n_avg, "calibration": calibration,
            "header": hdr, "encoded": enc, "recon": rec}


#: samples (after the readout oversampling is removed) on each side of a missing part also marked unsampled
CROP_MARGIN = 1


def _cover_after_crop(cover, rx: int, margin: int = CROP_MARGIN):
    r"""Which of the ``rx`` readout samples left after :func:`remove_readout_oversampling` hold measured data.

    ``cover`` ``(..., ex)`` marks the samples acquired on the oversampled readout. Sample ``j`` of the cropped
    readout is the oversampled k-space interpolated (a Dirichlet kernel, main lobe ``os = ex / rx`` samples wide)
    at :math:`k_j = e_x/2 + o_s\,(j - r_x/2)`: it counts as measured when every oversampled sample within
    ``margin`` cropped samples of :math:`k_j` was (a partial echo's missing part, which enters as zeros, then
    only reaches it through the kernel's tails). Full lines are measured at every sample."""
    ex = cover.shape[-1]
    os_ = ex / rx
    pos = ex / 2 + os_ * (np.arange(rx) - rx / 2)
    lo = np.clip(np.floor(pos - os_ * margin).astype(int), 0, ex)
    hi = np.clip(np.ceil(pos + os_ * margin).astype(int) + 1, 0, ex)
    missing = np.concatenate([np.zeros(cover.shape[:-1] + (1,), np.int32),
                              np.cumsum(~cover, axis=-1, dtype=np.int32)], axis=-1)
    return (missing[..., hi] - missing[..., lo] == 0) & cover.any(axis=-1, keepdims=True)


def _image_size(path, e, enc, rec, warn: bool = False):
    """``(nx, crop)``: the image width after the readout oversampling is removed and the ``(ny, nx)`` to crop the
    image to (or None), from the encoding ``e`` and its encoded and recon matrices.

    mri_csc crops but never interpolates: the image keeps the encoded voxel size (:func:`_voxel_mm`). Along x
    and y it covers the recon field of view, :math:`n = \\operatorname{round}(\\mathrm{FOV}_{recon} /
    v_{enc})` voxels of the encoded size :math:`v_{enc} = \\mathrm{FOV}_{enc} / N_{enc}`, at most the encoded
    matrix — the recon matrix itself when it spans the recon field of view to within one encoded voxel (the
    two voxel sizes agree, as with readout or phase oversampling, up to the rounding of the stated fields of
    view: fastMRI's knee headers, 368 lines over 161.42 mm and 320 over 140 mm, are 320 rows, not 319), or when a
    field of view is not given (zero). Said with ``warn`` where the image differs from the recon matrix: a
    recon matrix larger than the encoded one (zero-filled interpolation on a scanner), or a recon voxel size
    other than the encoded one (a crop to the recon *matrix* would have cut the field of view).
    """
    vox = _voxel_mm(e, enc, rec)
    rfov = [float(getattr(e.reconSpace.fieldOfView_mm, a) or 0) for a in "xy"]
    size = []
    for i in range(2):
        n = rec[i]
        if vox is not None and rfov[i] > 0 and abs(rfov[i] / vox[i] - rec[i]) >= 1:
            n = max(1, int(round(rfov[i] / vox[i])))  # within a voxel, the recon matrix is that field of view
        size.append(min(n, enc[i]))
    nx, ny = size
    if warn and (nx, ny) != (rec[0], rec[1]):
        (ex, ey, _), (rx, ry, _) = enc, rec
        if vox is not None and min(rfov) > 0:
            log.warning("%s: reconSpace %dx%d (x, y) over %gx%g mm and encodedSpace %dx%d at %.4gx%.4g mm voxels: "
                        "mri_csc does not interpolate, the image is %dx%d voxels of the encoded size covering the "
                        "recon field of view%s", path, rx, ry, rfov[0], rfov[1], ex, ey, vox[0], vox[1], nx, ny,
                        "" if rx <= ex and ry <= ey else " (at most the encoded matrix)")
        else:
            log.warning("%s: reconSpace %dx%d (x, y) is larger than encodedSpace %dx%d and mri_csc does not "
                        "interpolate (zero-fill) to it: the image is %dx%d with the encoded voxel size", path, rx, ry,
                        ex, ey, nx, ny)
    return nx, ((ny, nx) if ny < enc[1] else None)


def _placement(path, e, enc, heads):
    """``(kz, ky, first, samples, x0)`` of each Cartesian line in the encoded matrix ``enc = (ex, ey, ez)``: its
    phase-encode indices (counters plus the encoding limits' centre), and the ``samples`` kept from sample
    ``first`` on (after ``discard_pre``) placed from readout index ``x0`` on.

    A readout is placed so that its ``center_sample`` lands on ``ex // 2`` (partial echoes, and full readouts
    whose echo is off their middle); samples that then fall outside the encoded width are dropped, and the
    matrix's samples no readout reached are unsampled (the mask says so). ``center_sample`` 0 on a readout as
    wide as the matrix is taken as not set (``ismrmrd.Acquisition``'s default): the middle sample. Readouts
    longer than the matrix, or whose centre lies outside them, are refused.
    """
    ex, ey, ez = enc
    idx = heads["idx"]
    lim = e.encodingLimits
    ky = idx["kspace_encode_step_1"].astype(np.int64) + _limit_center(getattr(lim, "kspace_encoding_step_1", None), ey)
    kz = idx["kspace_encode_step_2"].astype(np.int64) + (
        _limit_center(getattr(lim, "kspace_encoding_step_2", None), ez) if ez > 1 else 0)
    for name, k, n in (("kspace_encode_step_1", ky, ey), ("kspace_encode_step_2", kz, ez)):
        if k.min() < 0 or k.max() >= n:
            raise _err(f"{path}: {name} places lines at {int(k.min())}..{int(k.max())}, outside the encoded "
                       f"matrix of {n} (encodedSpace/encodingLimits disagree with the acquisitions)")
    ns = heads["number_of_samples"].astype(np.int64) - heads["discard_pre"] - heads["discard_post"]
    unset = (heads["center_sample"] == 0) & (ns == ex)
    centre = np.where(unset, ns // 2, heads["center_sample"].astype(np.int64) - heads["discard_pre"])
    if np.any(ns < 1) or np.any(ns > ex) or np.any(centre < 0) or np.any(centre >= ns):
        raise _err(f"{path}: readouts of {sorted(set(ns.tolist()))[:5]} samples (after discard_pre/post; centre "
                   f"sample {sorted(set(centre.tolist()))[:5]}) do not fit the encoded width {ex}: a readout must "
                   "be at most that wide and hold its centre sample")
    start = ex // 2 - centre  # where sample 0 lands
    first = np.maximum(0, -start)
    kept = np.minimum(ns, ex - start) - first
    dropped = ns - kept
    if dropped.any():
        log.warning("%s: readouts centred at sample(s) %s of %s: placed with their centre on the matrix centre, "
                    "%d sample(s) of some lines fall outside the encoded width %d and are dropped", path,
                    sorted(set(centre[dropped > 0].tolist()))[:5], sorted(set(ns[dropped > 0].tolist()))[:5],
                    int(dropped.max()), ex)
    return kz, ky, first, kept, np.maximum(start, 0)


def _grid_lines(lines, heads, pos, placement, shape, whitener, rx):
    """Lines (``(channels, samples)`` each) averaged onto the grid ``shape = (slices, frames, coils, nz, ny, nx)``
    at ``pos`` (``(slice, frame)`` per line) and ``placement`` (:func:`_placement`), whitened, with the readout
    oversampling removed to ``rx``; returns ``(k-space, lines per (slice, frame, kz, ky), samples acquired per
    (slice, frame, kz, ky, x) on the encoded readout)``."""
    kz, ky, first, ns, x0 = placement
    acc = np.zeros(shape, np.complex64)
    count = np.zeros(shape[:2] + shape[3:5], np.int32)
    cover = np.zeros(shape[:2] + shape[3:], bool)
    for i, (line, (j, f)) in enumerate(zip(lines, pos)):
        a = int(heads["discard_pre"][i]) + int(first[i])
        d = line[:, a:a + int(ns[i])]
        if whitener is not None:
            d = (whitener @ d).astype(np.complex64)
        acc[j, f, :, int(kz[i]), int(ky[i]), x0[i]:x0[i] + ns[i]] += d
        count[j, f, int(kz[i]), int(ky[i])] += 1
        cover[j, f, int(kz[i]), int(ky[i]), x0[i]:x0[i] + ns[i]] = True
    k = acc / np.maximum(count, 1)[:, :, None, :, :, None].astype(np.float32)
    return remove_readout_oversampling(k, rx).astype(np.complex64, copy=False), count, cover


def _calibration_lines(path, group, e, enc, heads, rows, wanted, nc, whitener, rx):
    """The calibration-only lines (:func:`_line_kinds`) of slices ``wanted`` on the image's grid,
    ``(len(wanted), coils, [nz,] ny, nx)`` (every frame's averaged together: a reference scan serves them all), or
    ``None`` when there are none. For coil maps only: they never enter the image's k-space."""
    take = np.isin(heads["idx"]["slice"].astype(np.int64), wanted)
    if not take.any():
        return None
    h = heads[take]
    if np.any(h["active_channels"] != nc):
        raise _err(f"{path}: calibration lines have {sorted(set(h['active_channels'].tolist()))} channels, the "
                   f"k-space lines {nc}")
    if _reversed(h).any():
        raise _err(f"{path}: calibration lines flagged ACQ_IS_REVERSE (EPI-style); flip and correct them first")
    ex, ey, ez = enc
    s_index = {s: j for j, s in enumerate(wanted)}
    pos = [(s_index[int(s)], 0) for s in h["idx"]["slice"]]
    lines = _read_lines(path, group, rows[take], h, nc)
    shape = (len(wanted), 1, nc, ez, ey, ex)
    check_shape(shape, np.complex64, f"{path}: ISMRMRD calibration k-space")
    k, _, _ = _grid_lines(lines, h, pos, _placement(path, e, enc, h), shape, whitener, rx)
    return k[:, 0, :, 0] if ez == 1 else k[:, 0]


def _check_cartesian_traj(path, group, rows, heads) -> None:
    """Refuse stored trajectories that are not Cartesian lines under a ``cartesian`` header.

    ``ismrmrd_generate_cartesian_shepp_logan -k`` stores each sample's ``(kx, ky)``; such
    lines are placed by their encoding counters as any Cartesian line. A line whose
    coordinates beyond the first vary along the readout, or whose ``kx`` is not evenly
    spaced, is not Cartesian: refused, never gridded by its counters.
    """
    ds = group["data"]
    step = max(1, rows.size // 64)  # a sample of the lines is enough to tell
    for r, h in zip(rows[::step], heads[::step]):
        nd, ns = int(h["trajectory_dimensions"]), int(h["number_of_samples"])
        t = np.asarray(ds[int(r)]["traj"], np.float64)
        if t.size != nd * ns:
            raise _err(f"{path}: acquisition {int(h['scan_counter'])} holds {t.size} trajectory values; expected "
                       f"trajectory_dimensions*samples = {nd * ns}")
        if ns == 0 or nd == 0:  # no coordinates stored for this line: nothing to check
            continue
        t = t.reshape(ns, nd)
        if not np.isfinite(t).all():
            raise _err(f"{path}: acquisition {int(h['scan_counter'])} stores non-finite trajectory coordinates")
        tol = 1e-4 * max(float(np.abs(t).max()), 1e-12)
        dk = np.diff(t[:, 0])
        if (nd > 1 and np.ptp(t[:, 1:], axis=0).max() > tol) or (ns > 2 and np.ptp(dk) > tol):
            raise _err(f"{path}: the header's trajectory is 'cartesian' but acquisition {int(h['scan_counter'])} "
                       "stores coordinates that are not a Cartesian line; the file is non-Cartesian or mislabelled")


#: ``parallelImaging.calibrationMode`` values whose calibration-only lines are part of the image's own scan
_CALIBRATION_IN_SCAN = ("embedded", "interleaved")


def _separate_calibration(e) -> bool:
    """Whether the calibration-only lines of encoding ``e`` are a reference scan of their own: the header's
    ``parallelImaging.calibrationMode`` is ``separate``, ``external`` or ``other``, or not given. ``embedded`` and
    ``interleaved`` (``ismrmrd_generate_cartesian_shepp_logan -w``) reference lines are lines of the scan itself."""
    pi = getattr(e, "parallelImaging", None)
    mode = getattr(pi, "calibrationMode", None)
    mode = getattr(mode, "value", mode)  # an enum of the ismrmrd package, or a plain string
    return mode not in _CALIBRATION_IN_SCAN


def _line_kinds(heads, separate_calibration: bool = True):
    """``(is_noise, is_image, is_calibration)`` boolean masks over the acquisitions, from their flags.

    With ``separate_calibration`` (:func:`_separate_calibration`), calibration-only lines
    (``ACQ_IS_PARALLEL_CALIBRATION`` without ``..._AND_IMAGING``: a reference scan whose contrast and scale may
    differ from the image's) are not image lines but calibration lines (for coil maps only); otherwise they are
    image lines. The scans of :data:`_SKIP` are neither.
    """
    flags = heads["flags"].astype(np.uint64)
    is_noise = (flags & _bit("ACQ_IS_NOISE_MEASUREMENT")) != 0
    skip = np.zeros(heads.size, bool)
    for name in _SKIP:
        skip |= (flags & _bit(name)) != 0
    is_cal = ((flags & _bit("ACQ_IS_PARALLEL_CALIBRATION")) != 0) \
        & ((flags & _bit("ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING")) == 0) & bool(separate_calibration)
    return is_noise, ~is_noise & ~skip & ~is_cal, is_cal & ~is_noise & ~skip


def _reversed(heads) -> np.ndarray:
    """Which acquisitions are flagged ``ACQ_IS_REVERSE`` (readouts acquired backwards, as in EPI)."""
    return (heads["flags"].astype(np.uint64) & _bit("ACQ_IS_REVERSE")) != 0


def _acquisition_kinds(path, heads, e=None):
    """``(is_noise, is_image, is_calibration)`` (:func:`_line_kinds`, the calibration mode from encoding ``e``);
    refuses a file with no image lines."""
    is_noise, img, is_cal = _line_kinds(heads, e is None or _separate_calibration(e))
    if not img.any():
        raise _err(f"{path}: ISMRMRD file has only noise/navigator/calibration-scan acquisitions, no k-space lines")
    return is_noise, img, is_cal


def _file_whitener(path, group, heads, is_noise, nc, prewhiten, noise):
    """``(whitener or None, noise scans in the file)``: from ``noise`` or the file's noise scans (module docstring)."""
    whitener = None
    noise_heads = heads[is_noise]
    n_noise = int(is_noise.sum())
    if noise is not None:
        if prewhiten is False:
            raise ValueError("noise= given with prewhiten=False; drop one of them")
        whitener = noise_whitener(noise)
    elif prewhiten or (prewhiten is None and n_noise):
        if not n_noise:
            raise ValueError(f"{path}: prewhiten=True but the file has no noise scans; pass a noise file/array")
        if np.any(noise_heads["active_channels"] != nc):
            raise _err(f"{path}: noise scans have {sorted(set(noise_heads['active_channels'].tolist()))} channels, "
                       f"the k-space lines {nc}")
        rows = np.flatnonzero(is_noise)
        noise_data = _read_lines(path, group, rows, noise_heads, nc)
        whitener = noise_whitener(np.concatenate(noise_data, axis=1))
    if whitener is not None and whitener.shape != (nc, nc):
        raise ValueError(f"noise has {whitener.shape[0]} coils; the k-space has {nc}")
    return whitener, n_noise


def _read_lines(path, group, rows, heads, nc):
    """The ``(channels, samples)`` complex64 data of acquisitions ``rows`` (sorted)."""
    ds = group["data"]
    lo, hi = (int(rows.min()), int(rows.max()) + 1) if rows.size else (0, 0)
    if rows.size:
        check_nbytes(float(hi - lo) * 8 * nc * float(heads["number_of_samples"].max()),
                     f"{path}: ISMRMRD acquisitions {lo}..{hi - 1}")
    try:
        block = ds.fields("data")[lo:hi] if rows.size else []
    except OSError as e:
        raise _err(f"{path}: cannot read ISMRMRD acquisitions ({str(e).splitlines()[0]})") from None
    out = []
    for r, h in zip(rows, heads):
        d = np.asarray(block[r - lo], np.float32)
        n = int(h["number_of_samples"])
        if d.size != 2 * nc * n:
            raise _err(f"{path}: acquisition {int(h['scan_counter'])} holds {d.size} floats; expected "
                       f"2*channels*samples = {2 * nc * n} (truncated file?)")
        out.append(d.view(np.complex64).reshape(nc, n))
    return out


def _voxel_mm(e, enc, rec) -> "tuple[float, float, float] | None":
    """The image's voxel size in mm: the encoded field of view over the encoded matrix along x and y (and z of a
    3-D encoding), as mri_csc crops (oversampling) but never interpolates to the recon matrix; ``z`` of 2-D
    slices is the recon slice thickness. None when the encoded field of view is not given (zero)."""
    efov = [float(getattr(e.encodedSpace.fieldOfView_mm, a) or 0) for a in "xyz"]
    rfov = float(e.reconSpace.fieldOfView_mm.z or 0)
    if min(efov[:2]) <= 0 or (enc[2] > 1 and efov[2] <= 0):
        return None
    return efov[0] / enc[0], efov[1] / enc[1], efov[2] / enc[2] if enc[2] > 1 else rfov


def _geometry(hdr, e, enc, rec, heads, slices, wanted) -> dict:
    """For NIfTI (:func:`mri_csc.io.formats.nifti_affine`): ``fov_mm`` and ``matrix`` (reconSpace), ``voxel_mm``
    (:func:`_voxel_mm`), and per slice of ``wanted`` its ``counter`` and the first line's ``position``,
    ``read_dir``, ``phase_dir``, ``slice_dir``."""
    fov = e.reconSpace.fieldOfView_mm
    geo = {"fov_mm": tuple(float(getattr(fov, a)) for a in "xyz"), "matrix": rec, "slices": [],
           "voxel_mm": _voxel_mm(e, enc, rec)}
    for s in wanted:
        h = heads[slices == s][0]
        geo["slices"].append({"counter": int(s), **{k: tuple(float(v) for v in h[k])
                                                    for k in ("position", "read_dir", "phase_dir", "slice_dir")}})
    return geo


def _header(nc, nx, ny, nz, fov):
    import ismrmrd.xsd as x  # noqa: PLC0415

    def space(m, f):
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=m[0], y=m[1], z=m[2]),
                                   fieldOfView_mm=x.fieldOfViewMm(x=f[0], y=f[1], z=f[2]))

    limits = x.encodingLimitsType(
        kspace_encoding_step_1=x.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
        kspace_encoding_step_2=x.limitType(minimum=0, maximum=nz - 1, center=nz // 2),
        slice=x.limitType(minimum=0, maximum=0, center=0))
    enc = x.encodingType(encodedSpace=space((nx, ny, nz), fov), reconSpace=space((nx, ny, nz), fov),
                         encodingLimits=limits, trajectory=x.trajectoryType.CARTESIAN)
    hdr = x.ismrmrdHeader(
        acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=nc),
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
        encoding=[enc])
    return x.ToXML(hdr)


def geometry_from_affine(affine, shape):
    """ISMRMRD ``(voxel_mm, read_dir, phase_dir, slice_dir, position)`` of a NIfTI (RAS) ``affine``.

    The inverse of :func:`mri_csc.io.formats.nifti_affine` for an image of NIfTI shape
    ``(nx, ny[, nz])``: the directions are the affine's unit columns turned to LPS, the
    voxel sizes their lengths, the position the world point of voxel ``(nx//2, ny//2,
    nz//2)`` (``0`` along a single slice).
    """
    a = np.asarray(affine, float)
    lps = np.diag([-1.0, -1.0, 1.0])
    vox = np.linalg.norm(a[:3, :3], axis=0)
    dirs = [tuple(lps @ (a[:3, i] / vox[i])) for i in range(3)]
    nz = shape[2] if len(shape) > 2 else 1
    centre = a @ np.array([shape[0] // 2, shape[1] // 2, nz // 2 if nz > 1 else 0, 1.0])
    return tuple(float(v) for v in vox), dirs[0], dirs[1], dirs[2], tuple(lps @ centre[:3])


def write_ismrmrd(tmp_path, kspace, mask=None, *, voxel_mm=(1.0, 1.0, 1.0), affine=None) -> None:
    """Write an ISMRMRD file of the sampled lines of ``kspace`` that the C++ library reads.

    ``kspace`` is ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, readout last;
    one acquisition is written per sampled (``kz``, ``ky``) line (sampled where
    the mask, or the k-space, is non-zero along the readout). A pattern that samples part of a readout is
    refused: the file cannot say which of its samples were not measured. The field
    of view is the matrix times ``voxel_mm`` (x, y, z). A NIfTI ``affine`` of the
    image (e.g. a phantom's) gives the voxel size, the read/phase/slice directions
    and the position instead (:func:`geometry_from_affine`), so that a
    reconstruction's NIfTI gets that affine back.
    """
    import h5py  # noqa: PLC0415
    import ismrmrd  # noqa: PLC0415

    k = np.asarray(kspace, np.complex64)
    if k.ndim == 3:
        k = k[:, None]
    nc, nz, ny, nx = k.shape
    if mask is None:
        m = np.any(k != 0, axis=0)
    else:
        m = np.broadcast_to(np.asarray(mask) != 0, k.shape[1:] if np.ndim(mask) == 3 else k.shape[2:])
        m = m if m.ndim == 3 else m[None]
    sampled = np.any(m, axis=-1)
    partial = sampled & ~np.all(m, axis=-1)
    if partial.any():  # an acquisition is a whole readout: its unsampled samples would read as measured zeros
        raise ValueError(f"the sampling pattern leaves samples out of {int(partial.sum())} of the "
                         f"{int(sampled.sum())} readouts it touches (the last axis, {nx} samples): an ISMRMRD "
                         "acquisition holds a whole readout, so the file would present those samples as measured "
                         "zeros to every reader; write .npz, .h5 or .cfl, which keep the mask, or sample whole "
                         "readouts (e.g. 'mri-csc simulate --accel 1', then 'mri-csc recon --accel/--mask' "
                         "undersamples it retrospectively)")
    lines = np.argwhere(sampled)
    acqs = np.zeros(len(lines), dtype=ismrmrd.hdf5.acquisition_dtype)
    head = np.zeros(len(lines), dtype=ismrmrd.hdf5.acquisition_header_dtype)
    head["version"] = 1
    head["scan_counter"] = np.arange(len(lines))
    head["number_of_samples"] = nx
    head["available_channels"] = nc
    head["active_channels"] = nc
    head["center_sample"] = nx // 2
    head["sample_time_us"] = 5.0
    dirs, position = ((1, 0, 0), (0, 1, 0), (0, 0, 1)), (0.0, 0.0, 0.0)
    if affine is not None:
        voxel_mm, *dirs, position = geometry_from_affine(affine, (nx, ny, nz))
    head["read_dir"], head["phase_dir"], head["slice_dir"] = dirs
    head["position"] = position
    head["idx"]["kspace_encode_step_1"] = lines[:, 1]
    head["idx"]["kspace_encode_step_2"] = lines[:, 0]
    if len(lines):
        head["flags"][0] |= _bit("ACQ_FIRST_IN_SLICE")
        head["flags"][-1] |= _bit("ACQ_LAST_IN_SLICE") | _bit("ACQ_LAST_IN_MEASUREMENT")
    acqs["head"] = head
    for i, (z, y) in enumerate(lines):
        acqs["traj"][i] = np.zeros(0, np.float32)
        acqs["data"][i] = np.ascontiguousarray(k[:, z, y, :]).view(np.float32).ravel()
    fov = tuple(float(n * v) for n, v in zip((nx, ny, nz), voxel_mm))
    xml = _header(nc, nx, ny, nz, fov)
    with h5py.File(tmp_path, "w") as f:
        g = f.create_group("dataset")
        # the C++ library reads the header as a variable-length *byte* string, as ismrmrd.Dataset writes it
        g.create_dataset("xml", shape=(1,), dtype=h5py.special_dtype(vlen=bytes),
                         data=[xml.encode() if isinstance(xml, str) else xml])
        g.create_dataset("data", data=acqs, maxshape=(None,), chunks=True)


def describe_ismrmrd(path, h5file) -> list[str]:
    """Lines for ``mri-csc info``: matrices, channels, slices, frames, averages, noise and prewhitening."""
    gname = _find_group(h5file)
    group = h5file[gname]
    heads = _heads(path, group)
    lines = [f"format: ISMRMRD/MRD HDF5 (group {gname!r}), {heads.size} acquisitions"]
    hdr = read_header(path, group)
    e, enc, rec = _encoding(path, hdr, noncartesian=True)
    dims = sorted(set(heads["trajectory_dimensions"].tolist())) if heads.size else [0]
    if dims == [0]:
        lines.append(f"encoded matrix (x, y, z): {enc}, recon matrix: {rec}"
                     + (f" (readout oversampling {enc[0] / rec[0]:g}x, removed on reading)" if rec[0] < enc[0] else ""))
    else:
        lines += _describe_trajectories(path, group, heads, e, enc, rec, dims)
    if heads.size:
        noise, img, cal = _line_kinds(heads, _separate_calibration(e))
        idx = heads["idx"][img]
        lines.append(f"channels: {int(heads['active_channels'].max())}, slices: "
                     f"{int(idx['slice'].max()) + 1 if idx.size else 0}, "
                     + ", ".join(f"{c}s: {np.unique(idx[c]).size if idx.size else 0}"
                                 for c in ("average", *FRAME_COUNTERS)))
        frames, frame_of = _frames(idx) if idx.size else ([], None)
        lines.append(f"frames (contrast x phase x repetition x set): {len(frames)}, reconstructed one by one")
        if idx.size:
            slices = idx["slice"].astype(np.int64)
            empty = _empty_frames(slices, frame_of, frames, np.unique(slices))
            if empty:
                lines.append(f"missing frames: {'; '.join(empty[:4])}{' ...' if len(empty) > 4 else ''}; "
                             "reconstruction refuses the file (every slice needs every frame); --slice takes a "
                             "complete slice alone")
            if dims == [0]:
                lines += _describe_slice_order(hdr, e, enc, rec, heads[img], slices)
        lines.append(f"noise scans: {int(noise.sum())}"
                     + ("; k-space is prewhitened with their covariance (default)" if noise.any()
                        else "; no prewhitening"))
        if cal.any():
            lines.append(f"calibration-only lines: {int(cal.sum())}, a reference scan of their own (calibrationMode "
                         "not embedded/interleaved): used for the ESPIRiT coil maps, not in the image's k-space")
        n_rev = int(_reversed(heads).sum())
        if n_rev:
            lines.append(f"reversed lines (ACQ_IS_REVERSE): {n_rev}; Cartesian reconstruction refuses them (EPI)")
    return lines


def _describe_slice_order(hdr, e, enc, rec, heads, slices) -> list[str]:
    """``info``'s line on where 2-D slices lie along their normal, and the order the outputs stack them in."""
    from .formats import slice_position_order  # noqa: PLC0415  (formats imports this module)

    n = int(slices.max()) + 1
    if n < 2 or enc[2] > 1 or np.unique(slices).size != n:
        return []
    geo = _geometry(hdr, e, enc, rec, heads, slices, list(range(n)))
    normal = np.asarray(geo["slices"][0]["slice_dir"], float)
    if np.linalg.norm(normal) < 1e-6:
        return []
    along = [float(np.dot(g["position"], normal)) for g in geo["slices"]]
    order = slice_position_order(geo)
    how = ("NIfTI outputs stack the slices by position: counters "
           f"{order.tolist()}; .npy/.npz/.h5/.cfl outputs keep the counter order" if order is not None else
           "counter order is position order")
    return [f"slice positions along the normal (mm, by counter): {np.round(along, 3).tolist()}; {how}"]


def _describe_trajectories(path, group, heads, e, enc, rec, dims) -> list[str]:
    """``info`` lines of a non-Cartesian file: trajectory kind, readouts, coordinate range and units."""
    is_noise, img, _ = _acquisition_kinds(path, heads, e)
    hi = heads[img]
    ns = sorted(set((hi["number_of_samples"] - hi["discard_pre"] - hi["discard_post"]).tolist()))
    rows = np.flatnonzero(img)
    trajs = _read_traj(path, group, rows, hi) if set(dims) <= {2, 3} and len(dims) == 1 else []
    peak = [float(np.abs(np.concatenate([t[:, i] for t in trajs])).max()) for i in range(dims[0])] if trajs else []
    image = (rec[1], rec[0]) if dims == [2] else (rec[2], rec[1], rec[0])
    units = "normalized (x recon matrix)" if peak and max(peak) <= 0.5 * (1 + 1e-4) else "cycles per recon FOV"
    lines = [f"non-Cartesian: trajectory {_trajectory_type(e)!r}, {int(img.sum())} readouts of {ns} samples, "
             f"trajectory_dimensions {dims}; encoded matrix (x, y, z) {enc}, recon matrix {rec}: image "
             f"{image} (readout last)"]
    if peak:
        lines.append("trajectory |k| up to (" + ", ".join(f"{a}={p:.4g}" for a, p in zip("xyz", peak))
                     + f"): read as {units}")
    return lines


def read_noise(path) -> np.ndarray:
    """The noise scans of an ISMRMRD file, ``(coils, samples)`` complex64 (for whitening another file)."""
    import h5py  # noqa: PLC0415

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _err(f"{path}: not a valid HDF5 file ({str(e).splitlines()[0]})") from None
    with f:
        gname = _find_group(f)
        if gname is None:
            raise _err(f"{path}: not an ISMRMRD file (no group with a 'data' array of acquisitions)")
        group = f[gname]
        heads = _heads(path, group)
        noise = (heads["flags"].astype(np.uint64) & _bit("ACQ_IS_NOISE_MEASUREMENT")) != 0
        if not noise.any():
            raise _err(f"{path}: ISMRMRD file has no noise scans (ACQ_IS_NOISE_MEASUREMENT)")
        nh = heads[noise]
        nc = int(nh["active_channels"][0])
        if np.any(nh["active_channels"] != nc):
            raise _err(f"{path}: noise scans have different channel counts")
        return np.concatenate(_read_lines(path, group, np.flatnonzero(noise), nh, nc), axis=1)


def ismrmrd_metadata(path, h5file) -> dict:
    """What an output needs from an ISMRMRD file, from its headers only (no k-space is read).

    ``n_slices``, ``n_frames``, ``crop`` and ``geometry`` as :func:`read_ismrmrd` gives them, and ``width``,
    the image's readout length (after the readout oversampling is removed).
    """
    group = h5file[_find_group(h5file)]
    hdr = read_header(path, group)
    e, enc, rec = _encoding(path, hdr)
    heads = _heads(path, group)
    hi = heads[_line_kinds(heads, _separate_calibration(e))[1]]
    if not hi.size:
        raise _err(f"{path}: ISMRMRD file has no k-space lines")
    idx = hi["idx"]
    slices = idx["slice"].astype(np.int64)
    n_slices = int(slices.max()) + 1
    present = np.unique(slices)
    if present.size != n_slices:
        raise _err(f"{path}: slice counter goes up to {n_slices - 1} but some slices have no acquisitions")
    frames, frame_of = _frames(idx)
    _refuse_empty_frames(path, slices, frame_of, frames, range(n_slices))
    width, crop = _image_size(path, e, enc, rec)
    return {"n_slices": n_slices, "n_frames": len(frames), "crop": crop, "width": width,
            "geometry": _geometry(hdr, e, enc, rec, hi, slices, list(range(n_slices))), "encoded": enc, "recon": rec}


# -- non-Cartesian acquisitions ---------------------------------------------------------------------------

#: how the ``traj`` values of an ISMRMRD file are read (:func:`read_ismrmrd_noncartesian`)
TRAJECTORY_UNITS = ("auto", "normalized", "cycles")


def has_trajectories(path, h5file=None) -> bool:
    """Whether the ISMRMRD file at ``path`` (or the open ``h5file``) holds non-Cartesian acquisitions.

    True when acquisitions carry ``traj`` and the header's trajectory is not ``cartesian``.
    """
    if h5file is None:
        import h5py  # noqa: PLC0415

        try:
            f = h5py.File(path, "r")
        except OSError:
            return False
        with f:
            return has_trajectories(path, f)
    gname = _find_group(h5file)
    if gname is None:
        return False
    heads = _heads(path, h5file[gname])
    if not (heads.size and np.any(heads["trajectory_dimensions"] > 0)):
        return False
    # Cartesian files may store each sample's grid coordinates too (ismrmrd_generate_cartesian_shepp_logan -k):
    # those are read by read_ismrmrd, which checks them against the header's 'cartesian' trajectory
    hdr = read_header(path, h5file[gname])
    return not hdr.encoding or _trajectory_type(hdr.encoding[0]) != "cartesian"


def _read_traj(path, group, rows, heads):
    """The ``(samples, dims)`` float32 trajectories of acquisitions ``rows`` (sorted)."""
    ds = group["data"]
    if "traj" not in ds.dtype.names:
        raise _err(f"{path}: ISMRMRD 'data' has no 'traj' field; the acquisitions claim trajectories")
    lo, hi = int(rows.min()), int(rows.max()) + 1
    try:
        block = ds.fields("traj")[lo:hi]
    except OSError as e:
        raise _err(f"{path}: cannot read ISMRMRD trajectories ({str(e).splitlines()[0]})") from None
    out = []
    for r, h in zip(rows, heads):
        t = np.asarray(block[r - lo], np.float32)
        n, d = int(h["number_of_samples"]), int(h["trajectory_dimensions"])
        if t.size != n * d:
            raise _err(f"{path}: acquisition {int(h['scan_counter'])} holds {t.size} trajectory floats; expected "
                       f"samples*trajectory_dimensions = {n * d}")
        out.append(t.reshape(n, d))  # the dimensions loop fastest (kx, ky[, kz] per sample)
    return out


def read_ismrmrd_noncartesian(path, h5file, *, slice=None, prewhiten: "bool | None" = None, noise=None,
                              frame=None, units: str = "auto") -> dict:
    r"""Non-Cartesian k-space and its trajectory from an open ISMRMRD file.

    Every imaging acquisition is one readout with ``trajectory_dimensions`` = 2 (:math:`k_x, k_y`)
    or 3 (:math:`k_x, k_y, k_z`) coordinates per sample (``traj``, the dimensions looping fastest,
    MRD's layout); ``discard_pre``/``discard_post`` samples are dropped from both. Noise scans
    prewhiten as in :func:`read_ismrmrd`; readouts are grouped by ``slice`` and by frame
    (:data:`FRAME_COUNTERS`), in acquisition order.

    Units: the MRD specification leaves the trajectory's scale open. Two conventions are in use,
    and ``units`` picks one (``"auto"``: ``"normalized"`` when every :math:`|k_i| \le 0.5`, else
    ``"cycles"``):

    - ``"normalized"``: :math:`k_i \in [-\tfrac12, \tfrac12]` over the k-space extent (Gadgetron's
      radial and spiral gadgets); multiplied by the recon matrix size :math:`N_i`;
    - ``"cycles"``: already cycles per recon field of view, :math:`-N_i/2 \dots N_i/2` (SigPy's
      ``coord``, BART's ``traj``).

    The image is the ``reconSpace`` matrix, ``(ny, nx)`` or ``(nz, ny, nx)``, and ISMRMRD's
    :math:`(k_x, k_y, k_z)` become ours reversed (``coord[..., i]`` along image axis ``i``, the
    readout direction x last), as for Cartesian files.

    Returns
    -------
    dict
        ``kspace`` complex64 ``(slices, frames, coils, readouts, samples)``, ``trajectory`` float32
        ``(slices, frames, readouts, samples, ndim)``, ``image_shape``, ``units`` (the convention
        used), ``n_slices``, ``frames``, ``noise_scans``, ``whitened``, ``header``, ``encoded``,
        ``recon``, ``trajectory_type`` (the header's).

    Raises
    ------
    FileFormatError
        Readouts without trajectories, of different lengths or dimensions, a coordinate outside
        the recon matrix's k-space, or slices/frames with different readout counts.
    """
    if units not in TRAJECTORY_UNITS:
        raise ValueError(f"units must be one of {TRAJECTORY_UNITS}; got {units!r}")
    gname = _find_group(h5file)
    group = h5file[gname]
    hdr = read_header(path, group)
    e, enc, rec = _encoding(path, hdr, noncartesian=True)
    heads = _heads(path, group)
    if heads.size == 0:
        raise _err(f"{path}: ISMRMRD group {gname!r} has no acquisitions")
    is_noise, img, _ = _acquisition_kinds(path, heads, e)  # separate calibration lines are not gridded
    hi = heads[img]
    dims = set(hi["trajectory_dimensions"].tolist())
    if dims == {0}:
        raise _err(f"{path}: the acquisitions carry no trajectories (trajectory_dimensions 0): Cartesian data")
    if len(dims) != 1 or not dims <= {2, 3}:
        raise _err(f"{path}: trajectory_dimensions {sorted(dims)}; expected 2 or 3 for every imaging acquisition")
    ndim = dims.pop()
    nc = int(hi["active_channels"][0])
    if nc < 1 or np.any(hi["active_channels"] != nc):
        raise _err(f"{path}: acquisitions have {sorted(set(hi['active_channels'].tolist()))} active channels; "
                   "expected one channel count >= 1")
    ns = (hi["number_of_samples"].astype(np.int64) - hi["discard_pre"] - hi["discard_post"])
    if np.any(ns < 2) or np.unique(ns).size != 1:
        raise _err(f"{path}: readouts of {sorted(set(ns.tolist()))[:5]} samples (after discard_pre/post); expected "
                   "one readout length >= 2")
    n_read = int(ns[0])
    image_shape = (rec[1], rec[0]) if ndim == 2 else (rec[2], rec[1], rec[0])
    idx = hi["idx"]
    slices_all = idx["slice"].astype(np.int64)
    n_slices = int(slices_all.max()) + 1
    wanted = list(range(n_slices)) if slice is None else [slice]
    if slice is not None and (isinstance(slice, bool) or not isinstance(slice, (int, np.integer))
                              or not 0 <= slice < n_slices):
        raise ValueError(f"{path}: slice {slice} out of range; the file has {n_slices} slice(s) (0..{n_slices - 1})")
    frames, frame_of = _frames(idx)
    if frame is not None:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(frames):
            raise ValueError(f"{path}: frame {frame} out of range; the file has {len(frames)} frame(s)")
        frames = [frames[int(frame)]]
        frame_of = np.where(frame_of == int(frame), 0, -1)
    groups = [[np.flatnonzero((slices_all == s) & (frame_of == f)) for f in range(len(frames))] for s in wanted]
    counts = {len(g) for row in groups for g in row}
    if len(counts) != 1 or 0 in counts:
        raise _err(f"{path}: slices/frames hold {sorted(counts)} readouts each; expected the same number "
                   "(pick one with slice=/frame=)")
    n_lines = counts.pop()
    shape = (len(wanted), len(frames), nc, n_lines, n_read)
    check_shape(shape, np.complex64, f"{path}: ISMRMRD non-Cartesian k-space")
    whitener, n_noise = _file_whitener(path, group, heads, is_noise, nc, prewhiten, noise)
    rows_img = np.flatnonzero(img)
    k = np.zeros(shape, np.complex64)
    t = np.zeros((len(wanted), len(frames), n_lines, n_read, ndim), np.float32)
    for j, row in enumerate(groups):
        for f, sel in enumerate(row):
            rows = rows_img[sel]
            data = _read_lines(path, group, rows, hi[sel], nc)
            trajs = _read_traj(path, group, rows, hi[sel])
            for i, (d, tr, h) in enumerate(zip(data, trajs, hi[sel])):
                a = int(h["discard_pre"])
                d = d[:, a:a + n_read]
                k[j, f, :, i] = (whitener @ d).astype(np.complex64) if whitener is not None else d
                t[j, f, i] = tr[a:a + n_read, ::-1]  # (kx, ky[, kz]) -> ours (.., ky, kx)
    if not np.isfinite(t).all():
        raise _err(f"{path}: the trajectories hold NaN or Inf")
    peak = float(np.abs(t).max())
    if units == "auto":
        units = "normalized" if peak <= 0.5 * (1 + 1e-4) else "cycles"
    if units == "normalized":
        t = t * np.asarray(image_shape, np.float32)
    half = np.asarray(image_shape, np.float64) / 2
    over = np.abs(t.reshape(-1, ndim)).max(axis=0) > half * (1 + 1e-3) + 1e-3
    if over.any():
        raise _err(f"{path}: trajectory coordinates reach {np.abs(t.reshape(-1, ndim)).max(axis=0).tolist()} "
                   f"cycles/FOV (read as {units!r}), beyond ±N/2 = {half.tolist()} of the recon matrix "
                   f"{image_shape}; pass units='normalized' or 'cycles' if the guess was wrong")
    return {"kspace": k, "trajectory": np.ascontiguousarray(t), "image_shape": image_shape, "units": units,
            "n_slices": n_slices, "frames": frames, "noise_scans": n_noise, "whitened": whitener is not None,
            "whitener": whitener,
            "header": hdr, "encoded": enc, "recon": rec, "trajectory_type": _trajectory_type(e)}
