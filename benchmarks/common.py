"""Timing helpers shared by the benchmark scripts (never collected by pytest).

The benchmark machine is shared with other jobs, so a lone wall time means
little: every script times the contenders *side by side in one run*,
interleaving the repeats (A, B, C, A, B, C, ...) so that a burst of load
hits all of them alike, and reports medians and ratios.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def sync(xp=None) -> None:
    """Wait for queued GPU work (no-op on the CPU), so a clock never stops early."""
    if xp is not None and xp.__name__ == "cupy":
        xp.cuda.Device().synchronize()


def time_once(fn: Callable, xp=None):
    """``(seconds, result)`` of one call, synchronising the GPU before both clock reads."""
    sync(xp)
    t = time.perf_counter()
    out = fn()
    sync(xp)
    return time.perf_counter() - t, out


def best_of(fn: Callable, repeat: int):
    """Run ``fn`` ``repeat`` times; return ``(fastest wall time in s, last result)``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def interleaved(fns: dict, repeat: int = 3, warmup: bool = True, xp=None) -> dict:
    """Time each of ``fns`` (name -> callable) ``repeat`` times, interleaved.

    Returns ``{name: {"times": [...], "median": s, "min": s, "result": last}}``.
    ``warmup`` runs every callable once first (FFT plans, imports, caches).
    """
    out = {k: {"times": [], "result": None} for k in fns}
    if warmup:
        for k, f in fns.items():
            out[k]["result"] = f()
            sync(xp)
    for _ in range(max(1, repeat)):
        for k, f in fns.items():
            t, res = time_once(f, xp)
            out[k]["times"].append(t)
            out[k]["result"] = res
    for v in out.values():
        v["median"] = statistics.median(v["times"])
        v["min"] = min(v["times"])
    return out


def machine_info() -> dict:
    """nproc, CPU model, library versions and the load average at the time of the run."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy as np
    import scipy

    info = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "note": "shared machine: other jobs ran on the same cores; compare ratios, not lone times",
    }
    for mod in ("sigpy", "sporco", "pyfftw", "cupy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed, or a broken CUDA install
            info[mod] = None
    # SPORCO falls back to numpy.fft (and warns) without pyFFTW: say which one it timed with
    info["sporco_fft"] = "pyFFTW" if info["pyfftw"] else "numpy.fft (pyfftw missing: pip install -e .[bench])"
    try:
        info["bart"] = subprocess.run(["bart", "version"], capture_output=True, text=True,
                                      timeout=10).stdout.strip() or None
    except Exception:
        info["bart"] = None
    return info


def peak_rss_subprocess(code: str, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh interpreter; return its peak RSS (``ru_maxrss``) and the baseline.

    The baseline is the peak RSS of the same interpreter after ``import mri_csc``
    and the data set construction have run (everything before the line
    ``# --- measured ---`` in ``code``), so the difference is the reconstruction's own.
    A line ``TRACED <bytes>`` printed by ``code`` (a tracemalloc peak) is returned as ``traced_peak_mib``.
    """
    pre = code.split("# --- measured ---")[0]
    probe = (
        "import sys, json\n{body}\n"
        "sys.path.insert(0, {bench!r})\nfrom common import self_peak_rss_mib\n"
        "print(json.dumps({{'maxrss_kib': self_peak_rss_mib() * 1024}}))\n"
    )
    res = {}
    for key, body in (("baseline", pre), ("total", code)):
        p = subprocess.run([sys.executable, "-c", probe.format(body=body, bench=str(Path(__file__).resolve().parent))],
                           capture_output=True, text=True,
                           timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
        if p.returncode != 0:
            raise RuntimeError(f"memory probe failed: {p.stderr.strip().splitlines()[-1:]}")
        res[key] = json.loads(p.stdout.strip().splitlines()[-1])["maxrss_kib"] / 1024.0
        traced = [ln.split()[1] for ln in p.stdout.splitlines() if ln.startswith("TRACED ")]
        if traced:
            res["traced"] = int(traced[-1]) / 2**20
    return {"peak_rss_mib": res["total"], "baseline_rss_mib": res["baseline"],
            "recon_rss_mib": res["total"] - res["baseline"], "traced_peak_mib": res.get("traced")}


def self_peak_rss_mib() -> float:
    """This process's peak RSS in MiB: ``VmHWM`` from ``/proc/self/status``.

    ``ru_maxrss`` is not used where ``VmHWM`` exists: Linux carries it across ``execve``, so a
    child started by a big parent reports the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fmt_table(rows: list, headers: list) -> str:
    """A plain-text (Markdown-compatible) table."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else _fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.3g}"
        return f"{v:.3g}"
    return str(v)


def write_json(name: str, data: dict) -> Path:
    """Write ``benchmarks/results/<name>`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    os.replace(tmp, path)
    return path


def _jsonable(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


# --------------------------------------------------------------------------- FFT floor
def csc_floor_counts(result) -> dict:
    """``cg_normals``, ``csc_iter`` and ``channels`` of :func:`fft_floor` for a CSC ``ReconResult``
    (its ``params`` are the resolved ones: ``imag_codes`` says whether one or two channels were coded)."""
    p = result.params
    return {"cg_normals": p["cg_iter"], "csc_iter": p["csc_iter"], "channels": 2 if p["imag_codes"] else 1}


def fft_floor(image_shape, n_coils: int, n_filters: int, filter_size: int, *, cg_normals: int = 3,
              csc_iter: int = 1, channels: int = 1, repeat: int = 9, xp=None) -> dict:
    """Time of the transforms (and minimal element-wise passes) one outer CSC iteration cannot avoid.

    Per outer iteration of :class:`mri_csc.solvers.CSCReconSolver` with defaults:

    - ``cg_normals`` SENSE normal operators (one per CG step: the warm start's residual is
      carried over), each a forward and an inverse complex FFT of the ``(coils, *shape)``
      array, plus three element-wise passes over it (coil maps, mask, conj-multiply-sum);
    - ``csc_iter`` sparse-coding ADMM steps, each a real forward FFT of the codes and a
      real inverse FFT of the solution, ``(channels, K, *code_shape)``, plus three
      element-wise passes over the half spectrum (``d̂·v̂``, sum over K, ``conj(d̂)·t̂``)
      and two over the real codes (relaxation + soft threshold).

    Everything is measured with the library's own FFT back end (``scipy.fft`` with
    :func:`mri_csc.backend.fft_workers` threads, or ``cupy.fft``). Each part is the
    *fastest* of ``repeat`` interleaved timings: a floor is what the machine can do, and the
    same batched FFT pair varies by up to 2x between repeats here (cache state, page faults
    on its fresh output arrays). Iteration times are medians, so ratios to this floor are
    conservative. Returns seconds.
    """
    import numpy as np
    import scipy.fft

    from mri_csc.backend import fft_workers
    from mri_csc.prior.conv import _ConvGeometry

    xp = np if xp is None else xp
    ndim = len(image_shape)
    axes = tuple(range(-ndim, 0))
    geom = _ConvGeometry(np.zeros((n_filters,) + (filter_size,) * ndim, np.float32), image_shape)
    code_shape = geom.code_shape
    rng = np.random.default_rng(0)
    k = xp.asarray((rng.standard_normal((n_coils, *image_shape))
                    + 1j * rng.standard_normal((n_coils, *image_shape))).astype(np.complex64))
    maps = k.copy()
    mask = xp.asarray((rng.random(image_shape) < 0.25).astype(np.float32))
    z = xp.asarray(rng.standard_normal((channels, n_filters, *code_shape)).astype(np.float32))
    if xp is np:
        mod, kw = scipy.fft, {"workers": fft_workers()}
    else:
        mod, kw = xp.fft, {}
    zf = mod.rfftn(z, axes=axes, **kw)
    df = zf[0].copy()
    tf = zf[:, 0].copy()
    img = k[0].copy()

    def coil_ffts():
        mod.ifftn(mod.fftn(k, axes=axes, **kw), axes=axes, **kw)

    def coil_passes():
        a = maps * img
        a *= mask
        (maps.conj() * a).sum(axis=0)

    def code_ffts():
        mod.irfftn(mod.rfftn(z, axes=axes, **kw), s=code_shape, axes=axes, **kw)

    def code_passes():
        b = df * zf
        b.sum(axis=1)
        b = df.conj() * tf[:, None]
        y = 1.8 * z + z
        xp.clip(y, -0.1, 0.1)

    t = interleaved({"coil_ffts": coil_ffts, "coil_passes": coil_passes, "code_ffts": code_ffts,
                     "code_passes": code_passes}, repeat=repeat, xp=xp)
    best = {key: v["min"] for key, v in t.items()}
    fft_only = cg_normals * best["coil_ffts"] + csc_iter * best["code_ffts"]
    with_passes = fft_only + cg_normals * best["coil_passes"] + csc_iter * best["code_passes"]
    return {
        "image_shape": list(image_shape), "code_shape": list(code_shape), "n_coils": n_coils,
        "n_filters": n_filters, "filter_size": filter_size, "cg_normals": cg_normals, "csc_iter": csc_iter,
        "channels": channels,
        "coil_fft_pair_s": best["coil_ffts"], "coil_passes_s": best["coil_passes"],
        "code_fft_pair_s": best["code_ffts"], "code_passes_s": best["code_passes"],
        "floor_fft_s": fft_only, "floor_s": with_passes,
    }
