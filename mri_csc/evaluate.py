"""The evaluation runner behind ``mri-csc eval``.

:func:`run_eval` takes a resolved config (:func:`mri_csc.config.load_config`),
simulates the data once, runs every method on it, scores each against the
reference and writes a run folder:

==================  ==========================================================
``config.toml``     the resolved config (re-runnable with ``mri-csc eval``)
``metrics.json``    per method: label, method, params, psnr, ssim, nmse, time,
                    iterations, scale; plus the data description
``metrics.csv``     the same table, one row per method
``recon/*.npy``     each reconstruction (complex64), plus ``reference.npy``
                    (complex ground truth) and ``mask.npy``
``grid.png``        reference | zero-filled | each method, error maps beneath
``convergence.png`` each method's history
``versions.json``   python, numpy, scipy, sigpy, mri_csc, cupy (if any), bart
                    (if any), platform and the device
``report.html``     self-contained report (images embedded as base64)
==================  ==========================================================

The folder is built under a hidden temporary name next to the destination and
renamed into place when complete, so an interrupted run leaves no half-written
results. An existing destination is refused unless ``force=True`` (it is then
replaced only once the new run is complete). A run owns its folder: a lock file
``.<name>.lock`` beside it, created exclusively, refuses a second concurrent run
on the same folder, and a folder that appears while a run computes is never
replaced without ``force``. The temporary folders of killed runs are swept by
the next run. Reconstruction file names are unique per label and never
``reference``/``mask``; a NaN/Inf image stops the run before anything is written.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .config import ConfigError, check_methods, to_toml
from .io.atomic import OutputExistsError, run_lock

__all__ = ["run_eval", "EvalResult", "versions", "RUN_FILES"]

log = logging.getLogger(__name__)

#: the files every eval run writes into its folder (besides one ``recon/<label>.npy`` per method, named in
#: ``metrics.json``)
RUN_FILES = ("config.toml", "metrics.json", "metrics.csv", "grid.png", "convergence.png", "versions.json",
             "report.html", "recon/reference.npy", "recon/mask.npy")


@dataclass
class EvalResult:
    """What :func:`run_eval` returns: the run folder and the metrics rows."""

    out_dir: Path
    rows: list
    table: str


def _pkg_version(*names) -> str | None:
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(n)
    return None


def versions(device: str = "cpu") -> dict:
    """Software versions and the device, for reproducibility."""
    import scipy  # noqa: PLC0415
    import sigpy  # noqa: PLC0415

    from . import __version__  # noqa: PLC0415
    from .recon.bart import bart_binary  # noqa: PLC0415

    out = {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
           "sigpy": getattr(sigpy, "__version__", _pkg_version("sigpy")), "mri_csc": __version__,
           "cupy": _pkg_version("cupy", "cupy-cuda12x", "cupy-cuda11x"), "bart": None,
           "platform": platform.platform(), "cpu_count": os.cpu_count(), "device": device,
           "date": _dt.datetime.now().isoformat(timespec="seconds")}
    exe = bart_binary()
    if exe:
        import subprocess  # noqa: PLC0415

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out["bart"] = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=10).stdout.strip()
    if device.startswith("gpu"):
        with contextlib.suppress(Exception):
            import cupy  # noqa: PLC0415

            out["gpu_name"] = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    return out


def _slug(label: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
    return s or "method"


_RESERVED = {"reference", "mask"}


def _file_names(labels) -> list[str]:
    """One ``recon/<name>.npy`` per label: unique (case-insensitively) and never ``reference``/``mask``."""
    used, out = set(_RESERVED), []
    for label in labels:
        base = _slug(label)
        name, i = base, 2
        while name.lower() in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name.lower())
        out.append(name)
    return out


def _foreign_entries(out_dir: Path) -> list[str]:
    """What in ``out_dir`` an eval run did not write: anything but :data:`RUN_FILES` and the method images its
    ``metrics.json`` names, and a ``metrics.json`` that is not a run's (another tool's file of that common name,
    whose folder is then the user's as a whole)."""
    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
        is_run = isinstance(metrics, dict) and {"name", "methods", "histories"} <= set(metrics)
    except (OSError, ValueError):
        is_run = False
    ours = set(RUN_FILES)
    if is_run and isinstance(metrics["methods"], list):
        ours |= {str(m["file"]) for m in metrics["methods"] if isinstance(m, dict) and "file" in m}
    top = {f.split("/")[0] for f in ours}
    foreign = [p.name for p in out_dir.iterdir() if p.name not in top]
    recon = out_dir / "recon"
    if recon.is_dir():
        foreign += [f"recon/{p.name}" for p in recon.iterdir() if f"recon/{p.name}" not in ours or not p.is_file()]
    if not is_run:
        foreign.append("metrics.json (missing, or not an eval run's)")
    return sorted(foreign)


def _prepare_out(out_dir: Path, force: bool) -> None:
    """Refuse an output folder that holds anything, unless ``force`` and it is an earlier run's (its
    ``metrics.json`` is a run's and it holds nothing a run does not write, :func:`_foreign_entries`): the
    folder is replaced as a whole, so a folder of the user's, or a file the user put into a run's, never is."""
    if not out_dir.resolve().name or out_dir.resolve() == Path.cwd().resolve():
        raise OutputExistsError(f"{out_dir}: the output folder must be a folder of its own (it is replaced as a "
                                "whole), not the current folder or /; use --out runs/NAME")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()):
            if not force:
                raise OutputExistsError(f"{out_dir}: output folder exists and is not empty; use --force to replace "
                                        "it or --out to choose another")
            foreign = _foreign_entries(out_dir)
            if foreign:
                raise OutputExistsError(f"{out_dir}: is not an earlier eval run's folder (it holds "
                                        f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}), and "
                                        "--force replaces only those as a whole: choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _finite(v):
    return float(v) if v is not None and np.isfinite(v) else None


def run_eval(cfg: dict, out_dir: "str | os.PathLike | None" = None, *, device: str | None = None,
             force: bool = False, show_pbar: bool = False, echo=None) -> EvalResult:
    """Run an evaluation config; see the module docstring for what is written.

    Parameters
    ----------
    cfg : dict
        A resolved config from :func:`mri_csc.config.load_config`.
    out_dir : path, optional
        Run folder; default ``cfg["output"]["dir"]``.
    device : str, optional
        Overrides ``cfg["run"]["device"]``.
    force : bool
        Replace an existing, non-empty run folder.
    show_pbar : bool
        tqdm progress over methods (and each method's iterations).
    echo : callable, optional
        Called with progress lines (the CLI passes a stderr printer); default: logging.

    Raises
    ------
    ConfigError, OutputExistsError, ValueError
        Before any heavy work, for bad configs, existing outputs or a device
        that is not usable.
    """
    from .backend import resolve_device  # noqa: PLC0415
    from .recon import get_method  # noqa: PLC0415

    say = echo or log.info
    src = cfg.get("source", "config")
    out = Path(out_dir if out_dir is not None else cfg["output"]["dir"])
    dev_name = device or cfg["run"]["device"]
    try:
        dev = resolve_device(dev_name)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"device {dev_name!r} is not usable here: {e}") from None
    check_methods(cfg, src=src)
    methods = [dict(m) for m in cfg["methods"]]
    for m in methods:
        try:
            get_method(m["name"]).check_device(dev)
        except ValueError as e:
            raise ConfigError(f"{src}: {e}") from None
    if not any(m["name"] == "zero-filled" for m in methods):
        label = "zero-filled" if all(m["label"] != "zero-filled" for m in methods) else "zero-filled (ref)"
        methods.insert(0, {"name": "zero-filled", "label": label, "params": {}})
    else:  # zero-filled first, as in the grid
        methods.sort(key=lambda m: m["name"] != "zero-filled")
    out.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        _prepare_out(out, force)
        return _run_locked(cfg, out, dev, methods, force, show_pbar, say, src)


def _run_locked(cfg, out, dev, methods, force, show_pbar, say, src) -> EvalResult:
    from . import metrics as _metrics  # noqa: PLC0415
    from .io.atomic import sweep_stale, temp_dir  # noqa: PLC0415
    from .recon import reconstruct  # noqa: PLC0415
    from .report import format_table, html_report, save_convergence, save_grid  # noqa: PLC0415
    from .sim import estimate_maps, make_dataset  # noqa: PLC0415
    from .validate import check_output  # noqa: PLC0415

    d, ph, co, mk = cfg["data"], cfg["phase"], cfg["coils"], cfg["mask"]
    say(f"simulating {d['phantom']} {tuple(d['shape'])} (on a {d['oversample']:g}x finer grid), {co['count']} coils, "
        f"{mk['kind']} R={mk['accel']:g}")
    ds = make_dataset(phantom=d["phantom"], shape=tuple(d["shape"]), n_coils=co["count"], mask=mk["kind"],
                      accel=mk["accel"], calib=mk["calib"], phase=None if ph["model"] == "none" else ph["model"],
                      phase_amplitude=ph["amplitude"], snr_db=cfg["noise"]["snr_db"], seed=mk["seed"],
                      slice_index=d["slice"], oversample=d["oversample"])
    maps = ds.maps
    if co["maps"] == "espirit":
        say(f"estimating coil maps with ESPIRiT ({co['espirit']})")
        maps = estimate_maps(ds.kspace, calib_width=co["calib_width"], method=co["espirit"],
                             kernel_width=co["espirit_kernel"], **{k: None if co[f"espirit_{k}"] == "auto" else
                                                                   co[f"espirit_{k}"] for k in ("thresh", "crop")})
    fg = ds.support if cfg["metrics"]["foreground"] == "support" else None
    crop = tuple(cfg["metrics"]["crop"]) if cfg["metrics"]["crop"] else None

    parent = out.parent
    sweep_stale(parent)  # the folders of runs that were killed
    files = dict(zip((m["label"] for m in methods), _file_names(m["label"] for m in methods)))
    with temp_dir(out) as tmp:  # removed on any exit; renamed to ``out`` once complete
        (tmp / "recon").mkdir()
        np.save(tmp / "recon" / "reference.npy", ds.image.astype(np.complex64))
        np.save(tmp / "recon" / "mask.npy", ds.mask.astype(np.float32))
        rows, images, histories = [], {}, {}
        bar = tqdm(methods, desc="methods", disable=not show_pbar, unit="method")
        for m in bar:
            bar.set_postfix_str(m["label"])
            say(f"running {m['label']} ({m['name']})")
            res = reconstruct(ds.kspace, maps, mask=ds.mask, method=m["name"], device=dev, show_pbar=show_pbar,
                              **m["params"])
            from .backend import to_numpy  # noqa: PLC0415

            img = to_numpy(res.image).astype(np.complex64)
            check_output(img, f"{src}: method {m['label']!r}", m["name"])
            score = _metrics.evaluate(ds.magnitude_ref, np.abs(img), mask=fg, crop=crop)
            row = {"label": m["label"], "method": m["name"], "params": {k: v for k, v in res.params.items()},
                   "psnr": _finite(score.get("psnr")), "ssim": _finite(score.get("ssim")),
                   "nmse": _finite(score.get("nmse")), "time": float(res.time),
                   "iterations": len(res.history), "scale": float(res.scale), "device": res.device,
                   "file": f"recon/{files[m['label']]}.npy"}
            rows.append(row)
            images[m["label"]] = img
            histories[m["label"]] = list(res.history)
            np.save(tmp / row["file"], img)
        bar.close()
        table = format_table(rows)

        say("writing figures and report")
        cfg_text = to_toml(cfg)
        (tmp / "config.toml").write_text(cfg_text, encoding="utf-8")
        info = {"phantom": d["phantom"], "shape": list(d["shape"]), "oversample": d["oversample"], "coils": co["count"],
                "maps": co["maps"] if co["maps"] == "true" else f"ESPIRiT ({co['espirit']})",
                "mask": mk["kind"], "requested acceleration": mk["accel"],
                "realised acceleration": round(float(ds.acceleration), 3),
                "phase": f"{ph['model']} (±{ph['amplitude']:.3g} rad)", "snr_db": cfg["noise"]["snr_db"],
                "seed": mk["seed"], "foreground": cfg["metrics"]["foreground"], "crop": cfg["metrics"]["crop"]}
        ver = versions(str(dev))
        (tmp / "versions.json").write_text(json.dumps(ver, indent=2), encoding="utf-8")
        with open(tmp / "metrics.json", "w", encoding="utf-8") as f:
            json.dump({"name": cfg["name"], "config": str(src), "data": info, "device": str(dev),
                       "methods": rows, "histories": histories}, f, indent=2, default=_json_default)
        with open(tmp / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["label", "method", "psnr", "ssim", "nmse", "time", "iterations", "params"])
            for r in rows:
                w.writerow([r["label"], r["method"], r["psnr"], r["ssim"], r["nmse"], f"{r['time']:.4f}",
                            r["iterations"], json.dumps(r["params"], default=_json_default)])
        save_grid(tmp / "grid.png", ds.magnitude_ref, images, {r["label"]: r for r in rows}, support=fg)
        save_convergence(tmp / "convergence.png", histories)
        html_report(tmp / "report.html", title=f"mri_csc evaluation: {cfg['name']}",
                    description=cfg.get("description", ""), rows=rows, grid_png=tmp / "grid.png",
                    convergence_png=tmp / "convergence.png", config_text=cfg_text, versions=ver,
                    dataset_info=info)
        _swap_into_place(tmp, out, force)
    return EvalResult(out_dir=out, rows=rows, table=table)


def _swap_into_place(tmp: Path, out: Path, force: bool = True) -> None:
    """Rename the finished temporary folder to ``out``, replacing an old one only now (and only with ``force``)."""
    from .io.atomic import temp_prefix  # noqa: PLC0415

    old = None
    if out.exists() or out.is_symlink():
        if not force and not (out.is_dir() and not any(out.iterdir())):
            raise OutputExistsError(f"{out}: appeared while this run was computing; not replaced (use --force)")
        old = out.with_name(f"{temp_prefix(out.name)}{int(time.time())}.bak")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)
