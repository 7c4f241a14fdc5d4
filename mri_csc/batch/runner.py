r"""Batch reconstruction: submit per-slice tasks, retry, resume, assemble per-volume outputs.

Output folder layout::

    OUT/
      <name>.h5 | <name>_mag.nii.gz + <name>_phase.nii.gz | <name>.npy   # one per input file
      .partial/
        manifest.json                # the settings of the run and each input's size, mtime and
                                     # head/tail hash (checked on --resume)
        <name>/slice_00000.npy ...   # per-slice results, each written atomically
        <name>/hybrid_kspace.npy     # 3-D volumes only: k-space after the readout iFFT

A volume's output is assembled (atomically) once all its slices exist; its
``.partial/<name>/`` folder is then removed. Failed slices leave their
volume's finished slices in ``.partial/`` for ``resume=True``.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine import open_client
from .noncartesian import clear_volume_cache
from .tasks import FileError, SliceTask, VolumeSpec, discover
from .worker import SliceConfig, compute_slice, prepare_volume, run_slice, slice_result_path, volume_dir

__all__ = ["reconstruct_batch", "BatchReport", "SliceFailure", "serial_reconstruct", "input_fingerprint",
           "OUTPUT_FORMATS", "MAPS_MODES"]

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {"h5": ".h5", "nii": ".nii.gz", "npy": ".npy", "cfl": ".cfl"}
MAPS_MODES = (None, "espirit", "file")
PARTIAL = ".partial"
#: in ``out_dir``: what each finished volume was made with (its settings, its input, its output files' sizes and
#: times), so that ``resume=True`` skips only outputs a batch with the same settings wrote from the same input
FINISHED = ".mri_csc_batch.json"


@dataclass
class SliceFailure:
    """A slice that failed after all its retries."""

    path: str
    slice: int
    error: str


@dataclass
class BatchReport:
    """What :func:`reconstruct_batch` did.

    Attributes
    ----------
    outputs : dict
        Input path → list of output files written (or found, on resume).
    n_slices : int
        Slices in all readable inputs.
    n_computed : int
        Slices reconstructed in this run.
    n_skipped : int
        Slices already finished by an earlier run (``resume=True``).
    failures : list of SliceFailure
        Slices that failed after ``retries`` retries (their volumes are not assembled).
    file_errors : list of FileError
        Inputs that could not be read at all.
    elapsed : float
        Wall time in seconds, cluster start-up included.
    slice_times : list of float
        Compute time of each slice reconstructed in this run, in seconds.
    dashboard : str or None
    n_workers : int
    """

    outputs: dict = field(default_factory=dict)
    n_slices: int = 0
    n_computed: int = 0
    n_skipped: int = 0
    failures: list = field(default_factory=list)
    file_errors: list = field(default_factory=list)
    elapsed: float = 0.0
    slice_times: list = field(default_factory=list)
    dashboard: str | None = None
    n_workers: int = 0

    @property
    def ok(self) -> bool:
        """True when every input was read and every slice reconstructed."""
        return not self.failures and not self.file_errors

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{len(self.outputs)} volume(s) written, {self.n_computed} slice(s) reconstructed, "
                 f"{self.n_skipped} resumed, {len(self.failures)} failed, {len(self.file_errors)} unreadable "
                 f"input(s) in {self.elapsed:.1f} s on {self.n_workers} worker(s)"]
        lines += [f"  failed: {f.path} slice {f.slice}: {f.error}" for f in self.failures]
        lines += [f"  unreadable: {e.path}: {e.error}" for e in self.file_errors]
        return "\n".join(lines)


def _check_args(method, params, maps, output_format, retries, seed, device, maps_file=None):
    from mri_csc.recon import get_method  # noqa: PLC0415

    spec = get_method(method)  # clear ValueError listing the methods
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of method parameters; got {type(params).__name__}")
    spec.check(params)
    if maps not in MAPS_MODES:
        raise ValueError(f"maps must be None (from the file, else ESPIRiT), 'espirit' or 'file'; got {maps!r}"
                         + ("; a coil-maps file goes to maps_file=" if isinstance(maps, (str, Path)) else ""))
    if maps_file is not None:
        if maps == "espirit":
            raise ValueError(f"maps_file={str(maps_file)!r} and maps='espirit' both give the coil maps; use one")
        from mri_csc.io import read_array  # noqa: PLC0415

        read_array(maps_file)  # readable, one map set, within the budget: before any cluster starts
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {sorted(OUTPUT_FORMATS)}; got {output_format!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0; got {retries!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    kind = str(device).split(":")[0].lower()
    if kind not in ("cpu", "gpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'gpu'; got {device!r}")
    spec.check_device(device)
    return params


def _output_path(out_dir: Path, vol: VolumeSpec, output_format: str) -> Path:
    return out_dir / f"{vol.name}{OUTPUT_FORMATS[output_format]}"


def _output_files(out_dir: Path, vol: VolumeSpec, output_format: str) -> list[Path]:
    from mri_csc.io import image_outputs  # noqa: PLC0415

    return image_outputs(_output_path(out_dir, vol, output_format))


def _manifest(method, params, maps, seed, output_format, layout, calib_width, espirit=None,
              compress_coils=None, maps_file=None, prewhiten=None, noise_file=None) -> dict:
    # a per-axis value given as a tuple (Python) or a list (--param, JSON) is one setting: one repr for both
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return {"method": method, "params": {k: repr(v) for k, v in sorted(params.items())}, "code": code_fingerprint(),
            "maps": maps,
            "maps_file": None if maps_file is None else str(Path(maps_file).resolve()),
            "prewhiten": prewhiten, "noise_file": None if noise_file is None else str(Path(noise_file).resolve()),
            "seed": int(seed), "output_format": output_format, "layout": layout, "calib_width": calib_width,
            "espirit": {k: repr(v) for k, v in sorted((espirit or {}).items())}, "compress_coils": compress_coils}


@functools.cache
def code_fingerprint() -> str:
    """``mri_csc`` version and a SHA-256 of its Python sources and data files (the default dictionaries).

    Recorded in the manifest of an unfinished run: a method's defaults resolve from the data by rules in the
    code (the ``csc`` weights from σ̂, its phase window from the mask), so the parameters as given do not pin
    the images down. ``resume=True`` refuses to add slices made by other code to the finished ones. Taken in
    the process that starts the batch: workers of an external scheduler are assumed to run the same install.
    An install without source files gives ``"<version>+unhashed"`` (then only a version change is seen).
    """
    import hashlib  # noqa: PLC0415

    import mri_csc  # noqa: PLC0415

    root = Path(mri_csc.__file__).parent
    h = hashlib.sha256()
    n = 0
    for f in sorted([*root.rglob("*.py"), *(root / "data").glob("*.npz")]):
        if f.name.startswith(".") or not f.is_file():  # editor lock files and backups
            continue
        try:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
        except OSError:
            continue  # vanished while being read (an editor's save): the next run hashes what is there
        n += 1
    # an install without sources (zipped, .pyc only) is told apart by its version alone, and says so
    return f"{mri_csc.__version__}+{h.hexdigest()[:16]}" if n else f"{mri_csc.__version__}+unhashed"


def _file_stamp(path) -> dict:
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _read_finished(out_dir) -> dict:
    """``out_dir``'s :data:`FINISHED` record (output name -> entry), empty when there is none or it is unreadable."""
    try:
        rec = json.loads((Path(out_dir) / FINISHED).read_text())
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _record_finished(out_dir, vol, manifest: dict, files) -> None:
    """Add volume ``vol``'s outputs to the :data:`FINISHED` record (written atomically); ``files=None`` records
    it as being assembled (its files' stamps not known yet)."""
    from mri_csc.io import atomic_path  # noqa: PLC0415

    rec = _read_finished(out_dir)
    rec[vol.name] = {"settings": manifest, "input": {"path": vol.path, **input_fingerprint(vol.path)},
                     "files": None if files is None else {Path(f).name: _file_stamp(f) for f in files}}
    with atomic_path(Path(out_dir) / FINISHED, overwrite=True) as tmp:
        tmp.write_text(json.dumps(rec, indent=2))


def _check_finished(entry, manifest: dict, vol, outs, existing, out_dir) -> None:
    """Refuse, on ``resume=True``, outputs of ``vol`` that a finished batch with these settings did not write.

    Counted as finished only when the :data:`FINISHED` record names them with the same settings (method,
    parameters, code, ...), the same input (path and fingerprint) and the files' sizes and times as written.
    """
    why = None
    if entry is None or not isinstance(entry, dict):
        why = f"no finished batch run in {out_dir} wrote it (a file of yours, or a run of an older mri_csc)"
    elif entry.get("settings") != manifest:
        diff = sorted(k for k in manifest if (entry.get("settings") or {}).get(k) != manifest[k])
        why = "it was made with other settings (" + ", ".join(diff) + ")"
    elif entry.get("input") != {"path": vol.path, **input_fingerprint(vol.path)}:
        why = f"it was made from another input, or {vol.path} changed since"
    elif entry.get("files") is not None and any(entry["files"].get(p.name) != _file_stamp(p) for p in existing):
        why = "it changed after the batch wrote it"  # (None: killed while assembling; the files are its own)
    elif len(existing) != len(outs):
        return  # some of a finished volume's files are missing: it is made again
    if why:
        raise ValueError(f"resume=True but output {existing[0]} exists and {why}; refusing to count it as "
                         "finished: remove it, or choose another out_dir")


_HASH_BYTES = 1 << 20


def input_fingerprint(path) -> dict:
    """Size, modification time and a SHA-256 of the first and last MiB of an input file.

    Recorded in the manifest of an unfinished run; ``resume=True`` refuses an
    input whose fingerprint changed (its finished slices would be stale).
    """
    import hashlib  # noqa: PLC0415

    p = Path(path)
    st = p.stat()
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(_HASH_BYTES))
        if st.st_size > 2 * _HASH_BYTES:
            f.seek(-_HASH_BYTES, 2)
            h.update(f.read(_HASH_BYTES))
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256_head_tail": h.hexdigest()}


def _check_inputs_unchanged(old: dict, volumes, out_dir) -> None:
    """Refuse to resume a volume whose finished slices came from another input than the one given now.

    The manifest's ``inputs`` map each input path to its fingerprint and the
    output volume ``name`` it writes; they are matched here by that name (what
    the slices in ``.partial/<name>/`` belong to). Refused: a record whose path
    or fingerprint differs (the input changed, or another file now writes to
    the same output), and a volume without a record whose ``.partial/<name>/``
    already holds slices.
    """
    recorded = {r.get("name"): {**r, "path": p} for p, r in (old.get("inputs") or {}).items() if isinstance(r, dict)}
    for vol in volumes:
        then = recorded.get(vol.name)
        vdir = Path(out_dir) / PARTIAL / vol.name
        if not isinstance(then, dict):
            if vdir.is_dir() and any(vdir.glob("*.npy")):
                raise ValueError(f"resume=True but {vdir} holds finished slices of an input the unfinished run "
                                 f"did not record; they may not come from {vol.path}: remove {vdir} to recompute "
                                 "it")
            continue
        if then.get("path") != vol.path:
            raise ValueError(f"resume=True but output {vol.name!r} was being computed from {then.get('path')} in "
                             f"the unfinished run in {out_dir}, and {vol.path} now writes to it; remove {vdir} to "
                             "recompute it from the new input, or give the original input")
        now = input_fingerprint(vol.path)
        changed = [k for k in ("size", "mtime_ns", "sha256_head_tail") if then.get(k) != now[k]]
        if changed:
            raise ValueError(f"resume=True but input {vol.path} changed since the unfinished run in {out_dir} "
                             f"({', '.join(changed)} differ); its finished slices would be stale: remove "
                             f"{vdir} to recompute it, or restore the input")


def _volume_image(vol: VolumeSpec, stack: np.ndarray) -> np.ndarray:
    """The task results ``(n_slices, ...)`` of a ``"volume"`` layout as ``([frames,] nz, ny, nx)``.

    Task ``f * nx + x`` is frame ``f``, readout position ``x`` (its image ``(nz, ny)``).
    """
    stack = stack.reshape((vol.n_frames, vol.n_slices // vol.n_frames) + stack.shape[1:])
    image = np.moveaxis(stack, 1, -1)  # (frames, nz, ny, nx)
    return image if vol.n_frames > 1 else image[0]


def _assemble(vol: VolumeSpec, cfg: SliceConfig, out_dir: Path, output_format: str) -> list[Path]:
    """Stack a volume's slice results and write its output atomically, then drop its partial files."""
    from mri_csc.io import write_image  # noqa: PLC0415

    first = np.load(slice_result_path(cfg, SliceTask(vol, 0)))
    stack = np.empty((vol.n_slices, *first.shape), np.complex64)
    for i in range(vol.n_slices):
        stack[i] = np.load(slice_result_path(cfg, SliceTask(vol, i)))
    if vol.layout == "volume":  # slices along the readout x: ([frames x] nx, nz, ny) -> ([frames,] nz, ny, nx)
        stack = _volume_image(vol, stack)
    image = stack[0] if vol.n_slices == 1 and vol.layout != "volume" and not vol.stacked else stack
    from mri_csc.io.formats import read_metadata  # noqa: PLC0415  (issue 13: crop, geometry, fastMRI attributes)

    meta = read_metadata(vol.path)
    frames = vol.n_frames > 1
    if frames and vol.layout != "volume":  # (slices * frames, ny, nx) -> (frames, slices, ny, nx); 1 slice: dropped
        image = np.moveaxis(image.reshape((-1, vol.n_frames) + image.shape[1:]), 1, 0)
        image = image[:, 0] if image.shape[1] == 1 else image
    if meta["crop"] is not None and vol.layout != "volume":
        from mri_csc.io.formats import center_crop  # noqa: PLC0415

        image = center_crop(image, meta["crop"])
    geometry, affine = meta["geometry"], meta["affine"]
    if cfg.voxel_size is not None:  # as recon --voxel-size: replaces the input's geometry
        geometry, affine = None, np.diag([*map(float, cfg.voxel_size), 1.0])
    written = write_image(_output_path(out_dir, vol, output_format), image, overwrite=False, frames=frames,
                          geometry=geometry, affine=affine, h5_attrs=meta["h5_attrs"],
                          bart_frame_dims=meta["bart_frame_dims"],
                          ismrmrd_header=meta["ismrmrd_header"])
    shutil.rmtree(volume_dir(cfg, vol), ignore_errors=True)
    return [Path(p) for p in written]


def serial_reconstruct(inputs, *, method: str = "csc", params: dict | None = None, maps=None,
                       seed: int = 0, layout: str = "auto", calib_width: int = 24, device: str = "cpu",
                       scratch=None, maps_file=None) -> dict[str, np.ndarray]:
    """The serial reference loop: ``{input path: image stack}``, slice by slice in this process.

    Uses the same per-slice reading, map estimation and random streams as
    :func:`reconstruct_batch`, without Dask or any output file (3-D volumes need
    a ``scratch`` folder for their hybrid-space copy).
    """
    params = _check_args(method, params, maps, "npy", 0, seed, device, maps_file)
    volumes, errors = discover(inputs, layout)
    if errors:
        raise ValueError("unreadable input(s): " + "; ".join(f"{e.path}: {e.error}" for e in errors))
    scratch = Path(scratch) if scratch is not None else None
    cfg = SliceConfig(str(scratch) if scratch else "", method, dict(params), maps, device, int(seed), calib_width,
                      maps_file=None if maps_file is None else str(maps_file))
    out = {}
    try:
        for vol in volumes:
            if vol.layout == "volume":
                if scratch is None:
                    raise ValueError(f"{vol.path}: a 3-D volume needs scratch= for its hybrid-space copy")
                prepare_volume(vol, cfg)
            imgs = np.stack([compute_slice(SliceTask(vol, i), cfg) for i in range(vol.n_slices)])
            out[vol.path] = _volume_image(vol, imgs) if vol.layout == "volume" else imgs
    finally:
        clear_volume_cache()  # the last non-Cartesian volume read: not kept in the caller's process
    return out


def reconstruct_batch(inputs, out_dir, *, method: str = "csc", params: dict | None = None,
                      maps: str | None = None, device: str = "cpu", scheduler: str | None = None,
                      n_workers: int | None = None, retries: int = 2, resume: bool = False, seed: int = 0,
                      output_format: str = "h5", show_pbar: bool = False, layout: str = "auto",
                      calib_width: int | None = None, timeout: float = 10.0, on_start=None,
                      espirit: dict | None = None, compress_coils: int | None = None,
                      maps_file=None, prewhiten: bool | None = None, noise_file=None,
                      voxel_size=None) -> BatchReport:
    r"""Reconstruct many files slice by slice on a Dask cluster.

    Each input file becomes one output volume. Every 2-D slice is one Dask task
    that reads its own slice from the file (only ``(path, index)`` travels),
    reconstructs it with :func:`mri_csc.reconstruct` and writes its image
    atomically under ``out_dir/.partial/``; a volume is assembled once all its
    slices exist.

    Parameters
    ----------
    inputs : str, path or list of them
        Files (fastMRI/ISMRMRD ``.h5``, ``.mrd``, ``.npy``/``.npz`` stacks
        ``(slices, coils, ny, nx)``, ``.cfl``), folders or glob patterns.
    out_dir : str or path
        Output folder (created if missing). With a remote ``scheduler`` it must be
        on a file system the workers share.
    method : str
        A registered method (see :func:`mri_csc.recon.available_methods`).
    params : dict, optional
        The method's parameters.
    maps : {None, "espirit", "file"}
        ``None``: the file's coil maps when it has them, else ESPIRiT per slice;
        ``"espirit"``: always estimate per slice; ``"file"``: the file's maps (or
        ``maps_file``'s), and a slice of a file without maps fails. The CLI's
        ``--espirit`` and ``--no-espirit``.
    maps_file : path, optional
        Coil maps for every input (the CLI's ``--maps FILE``), ``(coils, [nz,] ny, nx)``
        for every slice or ``(slices, coils, ny, nx)`` one set per slice; used
        instead of the file's own. Read once before any task runs.
    prewhiten : bool, optional
        ISMRMRD inputs: whiten the coils with the noise scans (None: when the file
        has them; False: never), as ``mri-csc recon``'s ``--no-prewhiten``.
    noise_file : path, optional
        ISMRMRD inputs: whiten with this file's noise (an ISMRMRD file's noise scans
        or a complex ``(coils, samples)`` ``.npy``), as ``--noise``.
    voxel_size : sequence of 1 to 3 floats, optional
        NIfTI outputs' voxel size in mm (x, y[, z]; readout first), replacing the inputs' geometry, as
        ``recon --voxel-size``.
    device : {"cpu", "gpu"}
        ``"gpu"`` starts one worker per GPU (dask-cuda) unless ``scheduler`` is given.
    scheduler : str, optional
        Address of a running Dask scheduler; ``None`` starts a local cluster.
    n_workers : int, optional
        Local workers (default: one per core); one thread each.
    retries : int
        Retries of a failing slice before it is reported (a worker that dies is
        handled by Dask separately: its tasks move to other workers).
    resume : bool
        Keep the finished slices of an earlier run in ``out_dir`` and compute the
        rest. The run's settings must match the earlier ones, and every input
        must be unchanged (size, modification time, hash of its first and last MiB).
        A second batch on the same ``out_dir`` is refused while one runs (a lock
        file ``.<out_dir name>.lock`` beside it).
    seed : int
        Root of the per-slice random streams (see :func:`mri_csc.batch.tasks.slice_seed_sequence`).
    output_format : {"h5", "nii", "npy", "cfl"}
        fastMRI-style ``<name>.h5`` (``reconstruction`` magnitude and
        ``reconstruction_complex``), NIfTI ``<name>_mag.nii.gz``/``<name>_phase.nii.gz``,
        a complex ``<name>.npy`` or BART ``<name>.cfl``/``.hdr``.
    show_pbar : bool
        A progress bar over slices.
    layout : {"auto", "slices", "volume"}
        ``"volume"``: inputs are 3-D k-space ``(coils, nz, ny, nx)`` with the fully
        sampled readout on the last axis, sliced along x after an inverse FFT;
        outputs are ``(nz, ny, nx)``. ``"auto"``: stacks of 2-D slices (3-D
        ISMRMRD encodings are detected).
    calib_width : int, optional
        ESPIRiT calibration width when maps are estimated (None: the implementation's default, 24).
    espirit : dict, optional
        Further :func:`mri_csc.sim.estimate_maps` keywords (``method``, ``thresh``,
        ``crop``, ``kernel_width``, ``maps``) for estimated maps.
    compress_coils : int, optional
        SVD coil compression of every slice to this many virtual coils.
    timeout : float
        Seconds to wait for ``scheduler``.
    on_start : callable, optional
        Called with the :class:`~mri_csc.batch.engine.ClusterInfo` (dashboard
        address, worker count) once the cluster is up, before any task runs.

    Returns
    -------
    BatchReport

    Raises
    ------
    ValueError, TypeError
        On bad arguments, a glob that matches nothing, or outputs that already
        exist (without ``resume``), before any cluster starts.
    ConnectionError
        When ``scheduler`` cannot be reached.
    """
    t0 = time.perf_counter()
    params = _check_args(method, params, maps, output_format, retries, seed, device, maps_file)
    from mri_csc.io.formats import check_voxel_size  # noqa: PLC0415

    voxel_size = check_voxel_size(voxel_size)
    if noise_file is not None:
        if prewhiten is False:
            raise ValueError("noise_file given with prewhiten=False (--noise with --no-prewhiten); drop one")
        from mri_csc.cli import read_noise_file  # noqa: PLC0415

        read_noise_file(noise_file)  # readable, before any cluster starts
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a folder")
    from mri_csc.io.atomic import run_lock  # noqa: PLC0415

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):  # one batch per output folder at a time
        return _batch_locked(inputs, out_dir, method, params, maps, device, scheduler, n_workers, retries, resume,
                             seed, output_format, show_pbar, layout, calib_width, timeout, on_start, t0,
                             espirit, compress_coils, maps_file, prewhiten, noise_file, voxel_size)


def _batch_locked(inputs, out_dir, method, params, maps, device, scheduler, n_workers, retries, resume, seed,
                  output_format, show_pbar, layout, calib_width, timeout, on_start, t0, espirit,
                  compress_coils, maps_file=None, prewhiten=None, noise_file=None, voxel_size=None) -> BatchReport:
    volumes, file_errors = discover(inputs, layout)
    partial = out_dir / PARTIAL
    espirit = {k: v for k, v in (espirit or {}).items() if v is not None}
    manifest = {**_manifest(method, params, maps, seed, output_format, layout, calib_width, espirit, compress_coils,
                            maps_file, prewhiten, noise_file),
                "voxel_size": None if voxel_size is None else list(voxel_size)}
    mpath = partial / "manifest.json"
    if mpath.exists():
        if not resume:
            raise ValueError(f"{out_dir} holds an unfinished batch run ({mpath}); pass resume=True (--resume) "
                             f"to complete it, or remove {partial}")
        try:
            old = json.loads(mpath.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise ValueError(f"{mpath}: unreadable manifest of the unfinished run ({e}); remove {partial} "
                             "to start again") from None
        diff = sorted(k for k in manifest if old.get(k) != manifest[k])
        if diff:
            why = (" (mri_csc itself changed: its finished slices were made by other code, whose resolved defaults "
                   f"may differ; remove {partial} or write to a new out_dir)") if "code" in diff else ""
            raise ValueError(f"resume=True but the settings differ from the unfinished run in {out_dir}: "
                             + ", ".join(f"{k}: {old.get(k)!r} then, {manifest[k]!r} now" for k in diff) + why)
        _check_inputs_unchanged(old, volumes, out_dir)
    else:
        old = {}
    report = BatchReport(file_errors=list(file_errors))
    todo: list[VolumeSpec] = []
    finished = _read_finished(out_dir)
    for vol in volumes:
        outs = _output_files(out_dir, vol, output_format)
        existing = [p for p in outs if p.exists()]
        if existing and not resume:
            raise ValueError(f"output {existing[0]} exists; refusing to overwrite it (remove it, choose another "
                             "out_dir, or pass resume=True to skip finished volumes)")
        if existing:
            _check_finished(finished.get(vol.name), manifest, vol, outs, existing, out_dir)
        if existing and len(existing) == len(outs):
            report.outputs[vol.path] = [str(p) for p in outs]
            report.n_skipped += vol.n_slices
            report.n_slices += vol.n_slices
            continue
        todo.append(vol)
        report.n_slices += vol.n_slices
    cfg = SliceConfig(str(partial), method, dict(params), maps, str(device), int(seed),
                      None if calib_width is None else int(calib_width), espirit, compress_coils,
                      None if maps_file is None else str(Path(maps_file).resolve()), prewhiten,
                      None if noise_file is None else str(Path(noise_file).resolve()), voxel_size)
    if not todo:
        log.info("nothing to do: every volume is finished")
        report.elapsed = time.perf_counter() - t0
        if mpath.exists():
            shutil.rmtree(partial, ignore_errors=True)
        return report

    tasks: list[SliceTask] = []
    done_before: dict[str, int] = {}
    for vol in todo:
        for i in range(vol.n_slices):
            t = SliceTask(vol, i)
            if slice_result_path(cfg, t).exists():
                done_before[vol.path] = done_before.get(vol.path, 0) + 1
            else:
                tasks.append(t)
    report.n_skipped += sum(done_before.values())

    remaining = {vol.path: vol.n_slices - done_before.get(vol.path, 0) for vol in todo}
    failed_vols: set[str] = set()

    def finish(vol: VolumeSpec):
        try:
            _record_finished(out_dir, vol, manifest, None)  # pending: a kill before the stamps leaves a known entry
            report.outputs[vol.path] = [str(p) for p in _assemble(vol, cfg, out_dir, output_format)]
            _record_finished(out_dir, vol, manifest, report.outputs[vol.path])
        except Exception as exc:  # e.g. an output that appeared meanwhile
            report.file_errors.append(FileError(vol.path, f"assembling the output failed: "
                                                          f"{type(exc).__name__}: {exc}"))

    for vol in todo:  # finished by an earlier run but not assembled
        if remaining[vol.path] == 0:
            finish(vol)

    if tasks:
        from distributed import as_completed  # noqa: PLC0415
        from tqdm.auto import tqdm  # noqa: PLC0415

        with open_client(scheduler, n_workers, device, timeout=timeout) as (client, info):
            report.dashboard, report.n_workers = info.dashboard, info.n_workers
            if info.dashboard:
                log.info("Dask dashboard: %s", info.dashboard)
            if on_start is not None:
                on_start(info)
            # the cluster is up: from here on an interrupted run leaves a resumable .partial/
            partial.mkdir(parents=True, exist_ok=True)
            from mri_csc.io import atomic_path  # noqa: PLC0415

            inputs = dict(old.get("inputs") or {})
            named = {r.get("name") for r in inputs.values() if isinstance(r, dict)}
            inputs.update({vol.path: {"name": vol.name, **input_fingerprint(vol.path)} for vol in todo
                           if vol.name not in named})
            with atomic_path(mpath, overwrite=True) as tmp:  # the settings and what each input was
                tmp.write_text(json.dumps({**manifest, "inputs": inputs}, indent=2))
            for vol in todo:
                volume_dir(cfg, vol).mkdir(parents=True, exist_ok=True)
            by_key: dict[str, SliceTask] = {}
            prep: dict[str, object] = {}
            futures = []
            for vol in todo:
                if vol.layout == "volume" and remaining[vol.path]:
                    prep[vol.path] = client.submit(prepare_volume, vol, cfg, key=f"prepare-{vol.name}",
                                                   retries=retries, pure=False)
            for t in tasks:
                key = f"slice-{t.key}"
                by_key[key] = t
                futures.append(client.submit(run_slice, t, cfg, prep.get(t.volume.path), key=key,
                                             retries=retries, pure=False))
            pbar = tqdm(total=report.n_slices, initial=report.n_skipped, desc="slices", unit="slice",
                        disable=not show_pbar)
            try:
                for fut in as_completed(futures, loop=client.loop):
                    t = by_key[fut.key]
                    vol = t.volume
                    if fut.status == "error" and vol.path in prep and prep[vol.path].status == "error":
                        if vol.path not in failed_vols:  # the readout iFFT failed: one report per file
                            exc = prep[vol.path].exception()
                            report.file_errors.append(FileError(vol.path, f"{type(exc).__name__}: {exc}"))
                        failed_vols.add(vol.path)
                    elif fut.status == "error":
                        exc = fut.exception()
                        msg = f"{type(exc).__name__}: {exc}"
                        log.warning("slice %d of %s failed: %s", t.index, vol.path, msg)
                        report.failures.append(SliceFailure(vol.path, t.index, msg))
                        failed_vols.add(vol.path)
                    elif (rec := fut.result()).get("error"):  # a user error: reported, not retried
                        log.warning("slice %d of %s failed: %s", t.index, vol.path, rec["error"])
                        report.failures.append(SliceFailure(vol.path, t.index, rec["error"]))
                        failed_vols.add(vol.path)
                    else:
                        report.n_computed += not rec["skipped"]
                        if not rec["skipped"]:
                            report.slice_times.append(rec["time"])
                    remaining[vol.path] -= 1
                    pbar.update()
                    fut.release()
                    if remaining[vol.path] == 0 and vol.path not in failed_vols:
                        finish(vol)
            finally:
                pbar.close()
                for p in prep.values():
                    p.release()

    if not report.failures and all(v.path in report.outputs for v in todo):
        shutil.rmtree(partial, ignore_errors=True)
    report.failures.sort(key=lambda f: (f.path, f.slice))
    report.elapsed = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report
