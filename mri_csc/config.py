"""TOML experiment configs: load, override, validate, resolve, write back.

A config describes one evaluation: the data (a phantom, simulated coils, a
phase model, a sampling mask, noise), the methods to compare and how to score
them. Every key is checked; unknown keys are errors. Errors are
:class:`ConfigError` (a ``ValueError``) and read
``<file>: <key>: expected <what>; got <value>``.

Example (all sections; omitted keys take the defaults shown)::

    name = "quick_shepp_logan"          # used for the default output folder
    description = "..."

    [data]
    phantom = "shepp-logan"             # "shepp-logan", "brain" or a NIfTI file (relative to this file)
    slice = 90                          # slice of a 3D volume (optional; default: the middle one); the slab's centre
    shape = [128, 128]                  # [ny, nx], or [nz, ny, nx]: a brain/NIfTI phantom's axial slab
    oversample = 2.0                    # simulate on a finer grid, keep the k-space centre (no inverse crime)

    [phase]
    model = "random"                    # "random", "polynomial" or "none"
    amplitude = 3.141592653589793       # peak phase in radians

    [coils]
    count = 8                           # simulated coils
    maps = "true"                       # "true": the simulated maps; "espirit": estimate from the data
    espirit = "sigpy"                   # "sigpy" or "bart" (for maps = "espirit")
    calib_width = 24                    # ESPIRiT calibration width
    espirit_thresh = "auto"             # ESPIRiT threshold; "auto": the implementation's (SigPy 0.02, BART 0.001)
    espirit_crop = "auto"               # ESPIRiT eigenvalue crop; "auto": SigPy 0.95, BART 0.8
    espirit_kernel = 6                  # ESPIRiT kernel width

    [mask]
    kind = "poisson"                    # "poisson", "random-lines", "equispaced-lines", "uniform-random"
    accel = 4.0
    calib = 24                          # fully sampled centre (optional; the simulator's default)
    seed = 0                            # seeds the mask, the phase and the noise

    [noise]
    snr_db = 30.0

    [[methods]]                         # one table per method, run in this order
    name = "tv"                         # a registered method (mri-csc methods)
    label = "SigPy TV"                  # display name (default: the name); must be unique
    params = { lam = 0.005, max_iter = 100 }   # a csc dictionary file: relative to this file, as the phantom

    [metrics]
    crop = [112, 112]                   # score the centred h x w block (fastMRI center_crop); optional
    foreground = "support"              # "support" (inside the object) or "none" (whole image)

    [output]
    dir = "runs/quick_shepp_logan"      # relative to the working directory

    [run]
    device = "cpu"

Overrides (``mri-csc eval --set``) use dotted keys with TOML values:
``mask.accel=8``, ``data.shape=[64,64]``, ``methods.tv.params.max_iter=5``
(a method table is addressed by its index, name or label), and
``methods=[{name="zero-filled"},{name="tv"}]``. A value that is not valid TOML
is taken as a string (``mask.kind=random-lines``).
"""

from __future__ import annotations

import ast
import copy
import math
import os
import re
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

__all__ = ["ConfigError", "load_config", "validate_config", "apply_overrides", "parse_override",
           "parse_value", "to_toml", "check_methods", "DEFAULTS"]

PHANTOMS = ("shepp-logan", "brain")
PHASE_MODELS = ("random", "polynomial", "none")
MASK_KINDS = ("poisson", "random-lines", "equispaced-lines", "uniform-random")

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "description": "",
    "data": {"phantom": "shepp-logan", "slice": None, "shape": [128, 128], "oversample": 2.0},
    "phase": {"model": "random", "amplitude": math.pi},
    "coils": {"count": 8, "maps": "true", "espirit": "sigpy", "calib_width": 24, "espirit_thresh": "auto",
              "espirit_crop": "auto", "espirit_kernel": 6},
    "mask": {"kind": "poisson", "accel": 4.0, "calib": None, "seed": 0},
    "noise": {"snr_db": 30.0},
    "methods": [],
    "metrics": {"crop": None, "foreground": "support"},
    "output": {"dir": None},
    "run": {"device": "cpu"},
}


class ConfigError(ValueError):
    """An invalid config: names the file, the key, what was expected and what was found."""


def _err(src, key, expected, got) -> ConfigError:
    return ConfigError(f"{src}: {key}: expected {expected}; got {got!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    """A finite number (TOML's nan and inf are not: ``nan < 1`` is False, so range checks alone let them by)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_MAX_CONFIG_BYTES = 1 << 20


def load_config(path: "str | os.PathLike", overrides: list[str] | None = None, *,
                methods: bool = True) -> dict:
    """Read, override, validate and resolve a TOML config.

    Parameters
    ----------
    path : str or path
    overrides : list of str
        ``"dotted.key=value"`` strings (see module docstring), applied in order.
    methods : bool
        Also check method names and parameters against the registry.

    Returns
    -------
    dict
        The resolved config: every key present, defaults filled in, the
        phantom's and the methods' dictionary paths made absolute, plus ``"source"`` (the file).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such config file")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, expected a TOML config file")
    if p.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {p.stat().st_size} bytes is far too large for a config (at most "
                          f"{_MAX_CONFIG_BYTES})")
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text (UTF-8) TOML file") from None
    except RecursionError:
        raise ConfigError(f"{p}: TOML nested too deeply to be a config") from None
    raw = apply_overrides(raw, overrides or [], src=p)
    cfg = validate_config(raw, src=p)
    if methods:
        check_methods(cfg, src=p)
    return cfg


def parse_value(text: str):
    """A command-line value: TOML (``0.01``, ``true``, ``[96, 96]``, ``{name="tv"}``), else a
    Python literal (``True``, ``None``, ``(96, 96)``), else the stripped text as a string.

    Shared by ``--set`` (configs) and ``--param`` (``mri-csc recon`` and ``mri-csc batch``),
    so a value means the same in all three.
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text.strip()


def parse_override(text: str):
    """``"a.b=value"`` → (["a", "b"], parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value (e.g. mask.accel=8)")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected a dotted key before '=' (e.g. mask.accel=8)")
    return key.split("."), parse_value(value)


def apply_overrides(raw: dict, overrides: list[str], src="--set") -> dict:
    """Apply ``--set`` overrides to a raw (unvalidated) config dict; returns a new dict."""
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                idx = _list_index(node, part, text)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(parts[:i])} is not a table")
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if part == "methods" else {})
    return out


def _list_index(node: list, part: str, text: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if not -len(node) <= idx < len(node):
            raise ConfigError(f"--set {text!r}: index {idx} out of range (there are {len(node)} entries)")
        return idx
    hits = [i for i, t in enumerate(node) if isinstance(t, dict) and part in (t.get("label"), t.get("name"))]
    if len(hits) != 1:
        names = [t.get("label", t.get("name")) for t in node if isinstance(t, dict)]
        raise ConfigError(f"--set {text!r}: {'no' if not hits else 'more than one'} entry named {part!r}; "
                          f"entries: {names} (or use an index)")
    return hits[0]


def _section(raw, name, src) -> dict:
    v = raw.get(name, {})
    if not isinstance(v, dict):
        raise _err(src, name, "a table", v)
    unknown = sorted(set(v) - set(DEFAULTS[name]))
    if unknown:
        raise ConfigError(f"{src}: unknown key {name}.{unknown[0]}; expected one of {sorted(DEFAULTS[name])}")
    return {**DEFAULTS[name], **v}


def _choice(src, key, v, choices):
    if v not in choices:
        raise _err(src, key, f"one of {list(choices)}", v)
    return v


def _safe_name(name: str) -> str:
    """``name`` as one folder name: no path separators, no leading dots (``../../x`` → ``x``)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "run"
    return safe


def _resolve_file(src, key: str, value: str, base: Path, expected: str) -> str:
    """The absolute path of a file a config names: relative to the config's folder (``base``), else to the working
    directory where only that exists (so a resolved config written into a run folder names the same file)."""
    cand = Path(value) if Path(value).is_absolute() else base / value
    if not cand.exists() and Path(value).exists():
        cand = Path(value)
    if not cand.is_file():
        raise _err(src, key, expected, str(cand))
    return str(cand.resolve())


def validate_config(raw: dict, src="config") -> dict:
    """Check every key and fill in defaults; raise :class:`ConfigError` on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: expected a TOML table at the top level")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{src}: unknown key {unknown[0]!r}; expected one of {sorted(DEFAULTS)}")
    cfg: dict[str, Any] = {}
    base = Path(src).parent if isinstance(src, Path) else Path.cwd()
    for key in ("name", "description"):
        v = raw.get(key, DEFAULTS[key] if key == "description" else Path(str(src)).stem)
        if not isinstance(v, str):
            raise _err(src, key, "a string", v)
        cfg[key] = v

    d = _section(raw, "data", src)
    ph = d["phantom"]
    if not isinstance(ph, str) or not ph:
        raise _err(src, "data.phantom", f"one of {list(PHANTOMS)} or a NIfTI file path", ph)
    if ph not in PHANTOMS:
        if not ph.lower().endswith((".nii", ".nii.gz")):
            raise _err(src, "data.phantom", f"one of {list(PHANTOMS)} or a .nii/.nii.gz file", ph)
        d["phantom"] = _resolve_file(src, "data.phantom", ph, base, "an existing NIfTI file")
    if d["slice"] is not None and (not _is_int(d["slice"]) or d["slice"] < 0):
        raise _err(src, "data.slice", "a non-negative integer", d["slice"])
    sh = d["shape"]
    if not (isinstance(sh, list) and len(sh) in (2, 3) and all(_is_int(n) and n >= 8 for n in sh)):
        raise _err(src, "data.shape", "a list of 2 (or 3) integers >= 8, e.g. [128, 128]", sh)
    if not _is_num(d["oversample"]) or not 1 <= d["oversample"] <= 4:
        raise _err(src, "data.oversample", "a number from 1 (the reconstruction's own grid: an inverse crime) "
                   "to 4", d["oversample"])
    d["oversample"] = float(d["oversample"])
    cfg["data"] = d

    p = _section(raw, "phase", src)
    _choice(src, "phase.model", p["model"], PHASE_MODELS)
    if not _is_num(p["amplitude"]) or p["amplitude"] < 0:
        raise _err(src, "phase.amplitude", "a non-negative number (radians)", p["amplitude"])
    p["amplitude"] = float(p["amplitude"])
    cfg["phase"] = p

    c = _section(raw, "coils", src)
    if not _is_int(c["count"]) or not 1 <= c["count"] <= 64:
        raise _err(src, "coils.count", "an integer from 1 to 64", c["count"])
    _choice(src, "coils.maps", c["maps"], ("true", "espirit"))
    _choice(src, "coils.espirit", c["espirit"], ("sigpy", "bart"))
    if not _is_int(c["calib_width"]) or c["calib_width"] < 4:
        raise _err(src, "coils.calib_width", "an integer >= 4", c["calib_width"])
    for key, lo, hi in (("espirit_thresh", 0, 1), ("espirit_crop", 0, 1)):
        if c[key] != "auto" and not (_is_num(c[key]) and lo <= c[key] < hi):
            raise _err(src, f"coils.{key}", f'"auto" or a number in [{lo}, {hi})', c[key])
    if not _is_int(c["espirit_kernel"]) or not 2 <= c["espirit_kernel"] <= c["calib_width"]:
        raise _err(src, "coils.espirit_kernel", "an integer from 2 to coils.calib_width", c["espirit_kernel"])
    cfg["coils"] = c
    from .io.limits import BudgetError, check_shape  # noqa: PLC0415

    try:  # the data set: image, coil maps and k-space (and their copies in the solvers)
        check_shape((4 * c["count"] + 4, *sh), "complex64", f"{src}: data.shape with coils.count={c['count']}")
        fine = [round(n * d["oversample"]) for n in sh]  # the simulation grid: image, maps and their k-space
        check_shape((2 * c["count"] + 1, *fine), "complex64",
                    f"{src}: data.shape x data.oversample={d['oversample']:g} with coils.count={c['count']}")
    except BudgetError as e:
        raise ConfigError(str(e)) from None

    m = _section(raw, "mask", src)
    _choice(src, "mask.kind", m["kind"], MASK_KINDS)
    if not _is_num(m["accel"]) or m["accel"] < 1:
        raise _err(src, "mask.accel", "a number >= 1", m["accel"])
    m["accel"] = float(m["accel"])
    if m["calib"] is not None and (not _is_int(m["calib"]) or m["calib"] < 0):
        raise _err(src, "mask.calib", "a non-negative integer", m["calib"])
    if not _is_int(m["seed"]) or m["seed"] < 0:
        raise _err(src, "mask.seed", "a non-negative integer", m["seed"])
    cfg["mask"] = m

    n = _section(raw, "noise", src)
    if n["snr_db"] is not None and (not _is_num(n["snr_db"]) or not -20 <= n["snr_db"] <= 200):
        raise _err(src, "noise.snr_db", "a number of dB from -20 to 200 (or omitted: no noise)", n["snr_db"])
    n["snr_db"] = None if n["snr_db"] is None else float(n["snr_db"])
    cfg["noise"] = n

    meths = raw.get("methods", [])
    if not isinstance(meths, list) or not meths:
        raise _err(src, "methods", "a non-empty list of [[methods]] tables", meths)
    out_methods, labels = [], set()
    for i, t in enumerate(meths):
        key = f"methods[{i}]"
        if not isinstance(t, dict):
            raise _err(src, key, "a table with name, label, params", t)
        unknown = sorted(set(t) - {"name", "label", "params"})
        if unknown:
            raise ConfigError(f"{src}: unknown key {key}.{unknown[0]}; expected one of ['label', 'name', 'params']")
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise _err(src, f"{key}.name", "a method name (string; see mri-csc methods)", t.get("name"))
        label = t.get("label", t["name"])
        if not isinstance(label, str) or not label:
            raise _err(src, f"{key}.label", "a non-empty string", label)
        if label in labels:
            raise _err(src, f"{key}.label", "a label not used by another method", label)
        labels.add(label)
        params = t.get("params", {})
        if not isinstance(params, dict):
            raise _err(src, f"{key}.params", "a table of parameters", params)
        params = dict(params)
        if isinstance(params.get("dictionary"), str):  # a file, found as data.phantom is
            params["dictionary"] = _resolve_file(src, f"{key}.params.dictionary", params["dictionary"], base,
                                                 "an existing dictionary file (.npz, .npy)")
        out_methods.append({"name": t["name"], "label": label, "params": params})
    cfg["methods"] = out_methods

    mt = _section(raw, "metrics", src)
    crop = mt["crop"]
    if crop is not None:
        shp = cfg["data"]["shape"][-2:]
        fits = isinstance(crop, list) and len(crop) == 2 and all(_is_int(x) and 0 < x <= n for x, n in zip(crop, shp))
        if not fits:
            raise _err(src, "metrics.crop", f"[h, w]: a centred block no larger than the image {shp}", crop)
    _choice(src, "metrics.foreground", mt["foreground"], ("support", "none"))
    cfg["metrics"] = mt

    o = _section(raw, "output", src)
    if o["dir"] is not None and (not isinstance(o["dir"], str) or not o["dir"]):
        raise _err(src, "output.dir", "a folder path (string)", o["dir"])
    if o["dir"] is None:
        o["dir"] = str(Path("runs") / _safe_name(cfg["name"]))
    cfg["output"] = o

    r = _section(raw, "run", src)
    if not isinstance(r["device"], str) or not (r["device"] in ("cpu", "gpu") or r["device"].startswith("gpu:")):
        raise _err(src, "run.device", "'cpu', 'gpu' or 'gpu:N'", r["device"])
    cfg["run"] = r
    cfg["source"] = str(src)
    return cfg


def check_methods(cfg: dict, src="config") -> None:
    """Check every method name and parameter against the registry and the image's shape (before any work)."""
    from .recon import available_methods, get_method  # noqa: PLC0415

    for i, m in enumerate(cfg["methods"]):
        try:
            spec = get_method(m["name"])
        except ValueError:
            raise ConfigError(f"{src}: methods[{i}].name: unknown method {m['name']!r}; "
                              f"registered methods: {available_methods()}") from None
        try:
            spec.check(m["params"])  # names, values and availability: the registry's one check
            if "data" in cfg:  # and against the simulated image's shape (e.g. a per-axis phase_width)
                spec.check_for_image(m["params"], cfg["data"]["shape"])
        except ValueError as e:
            raise ConfigError(f"{src}: methods[{i}].params: {e}") from None

# ----------------------------------------------------------------------------- TOML writer

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def to_toml(cfg: dict) -> str:
    """Write a (resolved) config as TOML; ``None`` values are left out; ``source`` becomes a comment."""
    lines = []
    if "source" in cfg:
        lines.append(f"# resolved from {cfg['source']}")
    tables = []
    for k, v in cfg.items():
        if k == "source" or v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_toml_value(b)}" for a, b in v.items() if b is not None]
        else:
            for t in v:
                lines += ["", f"[[{_key(k)}]]"] + [f"{_key(a)} = {_toml_value(b)}" for a, b in t.items()
                                                  if b is not None]
    return "\n".join(lines) + "\n"
