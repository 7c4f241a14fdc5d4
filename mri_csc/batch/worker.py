"""What runs on a Dask worker: read one slice, reconstruct it, write its result atomically.

Everything here takes paths and indices, never k-space arrays, so that the
client ships only small task descriptions. Every result goes to a file of its
own under the output folder's ``.partial/`` (written to a temporary name, then
moved into place), so a task that runs twice (its worker was killed after the
write but before it reported) writes the same file twice and nothing is lost
or duplicated.
"""

from __future__ import annotations

import errno
import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tasks import SliceTask, VolumeSpec, slice_seed_sequence

__all__ = ["SliceConfig", "slice_result_path", "prepare_volume", "load_slice", "run_slice"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceConfig:
    """Settings shared by every slice of a batch (small; shipped with each task)."""

    partial_dir: str
    method: str
    params: dict = field(default_factory=dict)
    maps: str | None = None
    device: str = "cpu"
    seed: int = 0
    calib_width: int | None = None
    espirit: dict = field(default_factory=dict)  # estimate_maps keywords: method, thresh, crop, kernel_width, maps
    compress_coils: int | None = None
    maps_file: str | None = None  # coil maps for every input (--maps FILE), read by each task
    prewhiten: bool | None = None  # ISMRMRD noise prewhitening (None: when the file has noise scans)
    noise_file: str | None = None  # --noise FILE: whiten with its noise instead
    voxel_size: tuple | None = None  # (x, y, z) mm of NIfTI outputs, replacing the input's geometry


def _read(vol: VolumeSpec, cfg: SliceConfig, **kw) -> dict:
    """:func:`mri_csc.io.read_kspace` of ``vol`` with the batch's prewhitening (ISMRMRD inputs only)."""
    from mri_csc.io import read_kspace  # noqa: PLC0415

    if vol.kind == "ismrmrd":
        if cfg.noise_file:
            from mri_csc.cli import read_noise_file  # noqa: PLC0415

            kw["noise"] = read_noise_file(cfg.noise_file)
        kw["prewhiten"] = cfg.prewhiten
    return read_kspace(vol.path, **kw)


def volume_dir(cfg: SliceConfig, vol: VolumeSpec) -> Path:
    return Path(cfg.partial_dir) / vol.name


def slice_result_path(cfg: SliceConfig, task: SliceTask) -> Path:
    """Where slice ``task`` stores its image: ``.partial/<name>/slice_00003.npy``."""
    return volume_dir(cfg, task.volume) / f"slice_{task.index:05d}.npy"


def _save_atomic(path: Path, array) -> None:
    from mri_csc.io import atomic_path  # noqa: PLC0415

    with atomic_path(path, overwrite=True) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def _hybrid_paths(cfg: SliceConfig, vol: VolumeSpec) -> dict[str, Path]:
    d = volume_dir(cfg, vol)
    return {"kspace": d / "hybrid_kspace.npy", "maps": d / "hybrid_maps.npy", "mask": d / "hybrid_mask.npy"}


def prepare_volume(vol: VolumeSpec, cfg: SliceConfig) -> str:
    """For a 3-D volume: inverse FFT along the readout, stored as per-slice-contiguous arrays.

    k-space ``(coils, nz, ny, nx)`` (readout ``kx`` on the last axis) becomes
    hybrid space ``(nx, coils, nz, ny)``; file maps ``(coils, nz, ny, nx)``
    become ``(nx, coils, nz, ny)``; the mask becomes the ``(nz, ny)`` pattern
    (sampled where any readout sample is). With frames, k-space ``(frames, coils,
    nz, ny, nx)`` becomes ``(frames * nx, ...)`` frame-major (task ``f * nx + x``),
    maps likewise, the mask ``(frames, nz, ny)``. Idempotent: an existing result is kept.
    """
    from mri_csc.backend import ifftc  # noqa: PLC0415

    paths = _hybrid_paths(cfg, vol)
    if paths["kspace"].exists():
        return str(paths["kspace"])
    paths["kspace"].parent.mkdir(parents=True, exist_ok=True)
    data = _read(vol, cfg)
    k = np.asarray(data["kspace"])
    k = k[None] if k.ndim == 4 else k  # (frames, coils, nz, ny, nx)
    if k.ndim != 5 or k.shape[0] != vol.n_frames:
        raise ValueError(f"{vol.path}: layout 'volume' expects k-space (coils, nz, ny, nx) or {vol.n_frames} frames "
                         f"of it; got shape {np.shape(data['kspace'])}")

    def per_x(a):  # (frames, c, nz, ny, nx) -> (frames * nx, c, nz, ny), frame-major
        a = np.moveaxis(np.asarray(a), -1, 1)
        return np.ascontiguousarray(a.reshape((-1,) + a.shape[2:]))

    maps = _file_maps(cfg, vol, k.shape[1:], 0, 1, data.get("whitener")) if cfg.maps_file else data.get("maps")
    if maps is not None:
        _save_atomic(paths["maps"], per_x(np.broadcast_to(maps, k.shape)))
    if data.get("mask") is not None:
        m = np.broadcast_to(np.asarray(data["mask"], np.float32), k.shape[:1] + k.shape[2:])
        _save_atomic(paths["mask"], (m != 0).any(axis=-1).astype(np.float32))  # (frames, nz, ny)
    # k-space last so that its presence means "all prepared"
    _save_atomic(paths["kspace"], per_x(ifftc(k, axes=(-1,))).astype(np.complex64))
    return str(paths["kspace"])


def _file_maps(cfg: SliceConfig, vol: VolumeSpec, kshape, index: int, n: int, whitener=None) -> np.ndarray:
    """Slice ``index`` (of ``n``) of the ``--maps FILE`` maps: shared by all, or one set per slice;
    whitened with ``whitener`` when the k-space was prewhitened (:func:`mri_csc.io.ismrmrd.whiten_maps`).

    Raises a ``ValueError`` naming both files when the maps do not fit the k-space ``kshape``.
    """
    from mri_csc.io import read_array  # noqa: PLC0415
    from mri_csc.validate import per_slice  # noqa: PLC0415

    maps = np.asarray(read_array(cfg.maps_file)).astype(np.complex64, copy=False)
    m = per_slice(f"--maps {cfg.maps_file}", maps, n, len(kshape))[index]
    if tuple(m.shape) != tuple(kshape):
        raise ValueError(f"--maps {cfg.maps_file}: coil maps of shape {tuple(maps.shape)} do not fit the k-space of "
                         f"{vol.path}, {tuple(kshape)} per slice")
    from mri_csc.io.ismrmrd import whiten_maps  # noqa: PLC0415

    return whiten_maps(m, whitener)


def load_slice(task: SliceTask, cfg: SliceConfig) -> tuple:
    """Read slice ``task.index`` of its file: ``(kspace (coils, ny, nx), maps or None, mask or None, calibration)``;
    ``calibration`` is what ESPIRiT calibrates on (:func:`mri_csc.io.formats.calibration_data`: an ISMRMRD file's
    separate reference lines, else the k-space)."""
    vol = task.volume
    if vol.layout == "volume":
        paths = _hybrid_paths(cfg, vol)
        k = np.array(np.load(paths["kspace"], mmap_mode="r")[task.index])
        maps = np.array(np.load(paths["maps"], mmap_mode="r")[task.index]) if paths["maps"].exists() else None
        mask = np.load(paths["mask"]) if paths["mask"].exists() else None
        if mask is not None and mask.ndim == 3:  # one (nz, ny) pattern per frame
            mask = mask[task.index // (vol.n_slices // vol.n_frames)]
        return k, maps, mask, k

    if vol.n_frames > 1 and vol.kind == "ismrmrd":  # task i is (slice, frame) = divmod(i, n_frames)
        s, fr = divmod(task.index, vol.n_frames)
        data = _read(vol, cfg, slice=s, frame=fr)
    else:
        s = task.index if vol.stacked else 0
        data = _read(vol, cfg, slice=task.index if vol.stacked else None)
    k = np.asarray(data["kspace"])
    if k.ndim == 4 and k.shape[0] == 1:  # a 1-slice stack
        k = k[0]
    maps = data.get("maps")
    if maps is not None and np.ndim(maps) == 4 and np.shape(maps)[0] == 1:
        maps = maps[0]
    if cfg.maps_file:
        maps = _file_maps(cfg, vol, k.shape, s, max(1, vol.n_slices // vol.n_frames), data.get("whitener"))
    from mri_csc.io.formats import calibration_data  # noqa: PLC0415

    return k, maps, data.get("mask"), calibration_data(data, 0, k)


def _accepts(func, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def compute_slice(task: SliceTask, cfg: SliceConfig) -> np.ndarray:
    """Reconstruct one slice (no file output): used by the workers and by the serial reference loop."""
    import mri_csc  # noqa: PLC0415
    from mri_csc.recon import get_method  # noqa: PLC0415

    coord = image_shape = calibration = None
    if task.volume.layout == "noncartesian":
        from .noncartesian import load_noncartesian_slice  # noqa: PLC0415

        kspace, coord, maps, image_shape = load_noncartesian_slice(task.volume.path, task.index)
        mask = None
    else:
        kspace, maps, mask, calibration = load_slice(task, cfg)
        from mri_csc.io.formats import check_centred_kspace  # noqa: PLC0415

        check_centred_kspace(kspace, f"{task.volume.path} slice {task.index}")
    shape = kspace.shape[1:] if coord is None else image_shape  # the maps' shape when the file holds maps
    if shape is not None:  # the parameters against the image, before ESPIRiT
        get_method(cfg.method).check_for_image(cfg.params, shape, coord is not None)
    ss = slice_seed_sequence(cfg.seed, task.volume.file_key, task.index)
    maps_seed, method_seed = ss.spawn(2)
    if cfg.maps == "file" and maps is None:
        raise ValueError(f"{task.volume.path}: holds no coil maps and maps='file' (--no-espirit) was given; pass "
                         "--maps FILE, or drop --no-espirit to estimate them with ESPIRiT")
    estimated = maps is None or cfg.maps == "espirit"  # ESPIRiT maps of these data: no maps check
    if coord is not None and estimated:
        from mri_csc.sim.trajectories import estimate_maps_noncartesian  # noqa: PLC0415

        if image_shape is None:
            raise ValueError(f"{task.volume.path}: non-Cartesian k-space without coil maps needs an 'image_shape' "
                             "array in the .npz for ESPIRiT")
        kw = {k: v for k, v in cfg.espirit.items() if v is not None}
        maps = estimate_maps_noncartesian(kspace, coord, image_shape, calib_width=cfg.calib_width or 24, **kw)
    elif maps is None or cfg.maps == "espirit":
        from mri_csc.sim import estimate_maps  # noqa: PLC0415

        kw = {"calib_width": cfg.calib_width, **cfg.espirit}
        if _accepts(estimate_maps, "rng"):
            kw["rng"] = np.random.default_rng(maps_seed)
        elif _accepts(estimate_maps, "seed"):
            kw["seed"] = int(maps_seed.generate_state(1)[0])
        maps = estimate_maps(calibration, **kw)  # a separate reference scan's lines, else the slice's k-space
    params = dict(cfg.params)
    spec = get_method(cfg.method)
    if "rng" in spec.params and "rng" not in params:
        params["rng"] = np.random.default_rng(method_seed)
    elif "seed" in spec.params and "seed" not in params:
        params["seed"] = int(method_seed.generate_state(1)[0])
    device = cfg.device
    if coord is not None:
        if cfg.compress_coils:
            raise ValueError(f"{task.volume.path}: coil compression is not available for non-Cartesian k-space")
        result = mri_csc.reconstruct(kspace, maps, trajectory=coord, method=cfg.method, device=device,
                                     check_maps=not estimated, **params)
    else:
        result = mri_csc.reconstruct(kspace, maps, mask=mask, method=cfg.method, device=device,
                                     compress_coils=cfg.compress_coils, check_maps=not estimated, **params)
    from mri_csc.backend import to_numpy  # noqa: PLC0415

    return to_numpy(result.image).astype(np.complex64, copy=False)


#: OS errors that fail the same way on a retry (a missing, unreadable or misplaced file); others
#: (``ENOSPC``, ``EIO``, ``ESTALE``, ``EMFILE``, ...) may be transient and are retried.
_PERMANENT_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR})


def deterministic(exc: BaseException) -> bool:
    """Whether a slice that raised ``exc`` would fail the same way again (a user error: not retried).

    mri_csc's input-error classes and deliberate ``ValueError`` exceptions
    (:func:`mri_csc.validate.is_user_error`), and among operating-system errors
    only ``ENOENT``, ``EACCES``, ``EISDIR`` and ``ENOTDIR``.
    """
    from mri_csc.io.atomic import OutputExistsError  # noqa: PLC0415
    from mri_csc.validate import is_user_error  # noqa: PLC0415

    if isinstance(exc, OSError):
        return isinstance(exc, OutputExistsError) or exc.errno in _PERMANENT_ERRNOS
    return is_user_error(exc)


def run_slice(task: SliceTask, cfg: SliceConfig, _prepared: str | None = None) -> dict:
    """Worker entry point: reconstruct slice ``task`` unless its result file exists; write it atomically.

    Returns a small record (``key``, ``time`` in seconds, ``skipped``, and ``error`` for a
    user error -- bad input or a NaN image -- which would fail the same way again and is
    not retried); raises on any other failure so that Dask retries the task.
    """
    out = slice_result_path(cfg, task)
    if out.exists():
        return {"key": task.key, "time": 0.0, "skipped": True}
    from mri_csc.validate import check_output  # noqa: PLC0415

    t0 = time.perf_counter()
    try:
        image = compute_slice(task, cfg)
        check_output(image, f"{task.volume.path} slice {task.index}", cfg.method)
    except Exception as exc:
        if deterministic(exc):  # the same input fails again, so no retry
            return {"key": task.key, "time": time.perf_counter() - t0, "skipped": False,
                    "error": f"{type(exc).__name__}: {exc}"}
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(out, image)
    return {"key": task.key, "time": time.perf_counter() - t0, "skipped": False}
