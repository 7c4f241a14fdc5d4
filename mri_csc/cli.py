"""The ``mri-csc`` command line.

Subcommands::

    mri-csc eval CONFIG [--out DIR] [--device D] [--set key=value ...] [--force]
    mri-csc recon INPUT --out OUTPUT [--maps FILE | --espirit sigpy|bart | --no-espirit] [--method csc]
                  [--param key=value ...] [--slice N] [--device D] [--force]
    mri-csc batch INPUTS... --out DIR [--maps FILE | --espirit sigpy|bart | --no-espirit] [...]
    mri-csc simulate --phantom shepp-logan|brain|FILE.nii --out FILE [--shape [NZ] NY NX] [--coils N]
                  [--mask KIND] [--accel R] [--snr-db DB] [--seed S] [--force]
    mri-csc info FILE [--traj TRAJ]
    mri-csc methods

Exit codes: 0 success; 2 user error (bad arguments, missing/corrupt file,
invalid config, unknown method or parameter, output exists without
``--force``, input over the memory budget, out of memory); 130 interrupted
(Ctrl-C), 143 terminated (``SIGTERM``): no partial output is left behind; 1 a failed tool or solver (one
line) or a bug (its traceback). User errors print one line,
``mri-csc: error: ...``, on stderr, with no traceback. A ``ValueError`` or
``TypeError`` is a user error only when mri_csc raised it on purpose
(:func:`mri_csc.validate.is_user_error`).

Adding a subcommand
-------------------
Each subcommand is one small ``add_<name>(subparsers)`` function that builds
its parser and sets ``func`` (a ``handler(args) -> int``) with
``set_defaults``. Another module can contribute subcommands the same way:
expose ``add_parser(subparsers)`` and list the module's import path in
:data:`EXTRA_SUBCOMMANDS` below, e.g.::

    # mri_csc/batch/cli.py
    def add_parser(subparsers):
        p = subparsers.add_parser("batch", help="...")
        p.add_argument(...)
        p.set_defaults(func=run)

    def run(args) -> int:
        ...
        return 0

Raise :class:`UserError`, :class:`mri_csc.validate.InputError` (or a
``ValueError`` with a ``raise`` statement), ``FileNotFoundError`` or
``FileExistsError`` for user errors; :func:`main` turns them into the one-line
message and exit code 2.
:func:`build_parser` returns the whole parser (handy for tests and docs).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from .config import parse_value

__all__ = ["main", "build_parser", "report_error", "EXTRA_SUBCOMMANDS", "UserError"]

log = logging.getLogger("mri_csc.cli")

#: Modules exposing ``add_parser(subparsers)``; each adds its own subcommand(s).
EXTRA_SUBCOMMANDS: list[str] = [
    "mri_csc.batch.cli",          # mri-csc batch
    "mri_csc.learn_cli",          # mri-csc learn-dict
]

EXIT_USER = 2
EXIT_INTERRUPT = 130
EXIT_TERMINATED = 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose output reader left


class UserError(Exception):
    """A problem with the user's input: reported in one line, exit code 2."""


def _err(msg: str) -> None:
    print(f"mri-csc: error: {msg}", file=sys.stderr)


def _note(msg: str) -> None:
    from tqdm.auto import tqdm  # noqa: PLC0415

    tqdm.write(msg, file=sys.stderr)  # does not break an active progress bar


def _parse_kv(items, what: str) -> dict:
    out = {}
    for text in items or []:
        if "=" not in text:
            raise UserError(f"{what} {text!r}: expected key=value (e.g. lam=0.01)")
        k, v = text.split("=", 1)
        k = k.strip()
        if not k:
            raise UserError(f"{what} {text!r}: empty key")
        out[k] = parse_value(v)
    return out


# ----------------------------------------------------------------------------- eval

def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="run an evaluation config (simulated data, several methods, report)",
                       description="Run every method of a TOML config on the same simulated data; print a "
                                   "metrics table and write a run folder with metrics, images and an HTML report.")
    p.add_argument("config", help="TOML config (see recon_configs/)")
    p.add_argument("--out", help="run folder (default: the config's output.dir)")
    p.add_argument("--device", help="cpu, gpu or gpu:N (default: the config's run.device)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set mask.accel=8 --set methods.tv.params.max_iter=20")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--no-pbar", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from .config import load_config  # noqa: PLC0415
    from .evaluate import run_eval  # noqa: PLC0415

    cfg = load_config(args.config, args.overrides)
    res = run_eval(cfg, args.out, device=args.device, force=args.force, show_pbar=not args.no_pbar, echo=_note)
    print(res.table)
    print(f"\nresults in {res.out_dir}/ (report: {res.out_dir / 'report.html'})")
    return 0


# ----------------------------------------------------------------------------- recon

def add_espirit_options(p) -> None:
    """ESPIRiT options shared by ``recon`` and ``batch`` (None: the implementation's own default)."""
    g = p.add_argument_group("ESPIRiT coil maps (defaults: the implementation's own; SigPy -t 0.02 -c 0.95, "
                             "BART -t 0.001 -c 0.8; both kernel 6, calibration 24)")
    g.add_argument("--calib-width", type=int, default=None, metavar="N",
                   help="side of the fully sampled calibration block (BART ecalib -r)")
    g.add_argument("--espirit-thresh", type=float, default=None, metavar="T",
                   help="singular-value threshold of the calibration matrix, relative (BART ecalib -t)")
    g.add_argument("--espirit-crop", type=float, default=None, metavar="C",
                   help="eigenvalue below which a map voxel is zeroed, in [0, 1) (BART ecalib -c)")
    g.add_argument("--espirit-kernel", type=int, default=None, metavar="K",
                   help="calibration kernel width (BART ecalib -k)")
    g.add_argument("--espirit-maps", type=int, default=1, metavar="M",
                   help="ESPIRiT map sets; only 1 is supported (BART ecalib -m)")


#: ``--maps`` values that ``mri-csc batch`` once took as a mode; still accepted, with a notice.
LEGACY_MAPS_MODES = {"auto": None, "espirit": "espirit", "file": "file"}


def add_maps_options(p) -> None:
    """The coil-map options of ``recon`` and ``batch``: one vocabulary for both.

    ``--maps FILE`` (maps from a file), ``--espirit sigpy|bart`` (estimate them,
    even when the input holds maps), ``--no-espirit`` (the input's own maps only).
    With none of them: the input's maps, else ESPIRiT (SigPy), said in one line.
    """
    g = p.add_argument_group("coil maps (default: the input's own, else ESPIRiT with SigPy, with a notice)")
    g.add_argument("--maps", metavar="FILE",
                   help="coil maps file (.npy/.npz/.cfl/.h5): (coils, [nz,] ny, nx) for every slice/frame, or one "
                        "set per slice (slices, coils, ...)")
    g.add_argument("--espirit", choices=["sigpy", "bart"],
                   help="estimate the coil maps with ESPIRiT (SigPy, or 'bart ecalib' with BART's defaults), even "
                        "when the input holds maps")
    g.add_argument("--no-espirit", action="store_true",
                   help="never estimate maps: use --maps or the input's own; an input without maps is an error")


def resolve_maps_options(args) -> str | None:
    """Check :func:`add_maps_options`' arguments; return the mode ``None`` (input's, else ESPIRiT), ``"espirit"``
    or ``"file"`` (input's or ``--maps`` only), and leave ``args.maps`` a file or None.

    ``--maps auto|espirit|file`` (the old spelling of ``batch``) is taken as that mode with a notice
    unless a file of that name exists.
    """
    import os  # noqa: PLC0415

    mode = None
    if args.maps in LEGACY_MAPS_MODES and not os.path.exists(args.maps):
        new = {"auto": "no option (the default)", "espirit": "--espirit sigpy|bart",
               "file": "--no-espirit"}[args.maps]
        _note(f"mri-csc: note: '--maps {args.maps}' is the old spelling; it means {new} now "
              "(--maps takes a coil-maps FILE)")
        mode, args.maps = LEGACY_MAPS_MODES[args.maps], None
        if mode == "espirit" and not args.espirit:
            args.espirit = "sigpy"
    if args.maps and args.espirit:
        raise UserError(f"--maps {args.maps} and --espirit {args.espirit} both give the coil maps; use one")
    if args.no_espirit and args.espirit:
        raise UserError(f"--no-espirit and --espirit {args.espirit} contradict each other; drop one")
    if args.espirit:
        return "espirit"
    if args.no_espirit or mode == "file":
        return "file"
    return None


def add_noise_options(p) -> None:
    """ISMRMRD noise prewhitening options shared by ``recon`` and ``batch``."""
    p.add_argument("--noise", metavar="FILE", help="noise for prewhitening: an ISMRMRD file's noise scans or a "
                   ".npy (coils, samples) array (default: the input's own noise scans)")
    p.add_argument("--no-prewhiten", action="store_true", help="do not prewhiten ISMRMRD data with its noise scans")


def read_noise_file(path):
    """The ``(coils, samples)`` noise of ``--noise FILE``: an ISMRMRD file's noise scans or a complex ``.npy``."""
    import numpy as np  # noqa: PLC0415

    if str(path).lower().endswith(".npy"):
        from .io.formats import _load_npy  # noqa: PLC0415

        n = _load_npy(path)
        if n.ndim != 2 or n.dtype.kind != "c":
            raise ValueError(f"--noise {path}: expected a complex (coils, samples) array; got {n.dtype} {n.shape}")
        return np.asarray(n)
    from .io.ismrmrd import read_noise  # noqa: PLC0415

    return read_noise(path)


def add_undersampling_options(p) -> None:
    """Retrospective undersampling of fully sampled data, with fastMRI's mask conventions."""
    g = p.add_argument_group("retrospective undersampling (fully sampled input; fastMRI conventions: whole "
                             "columns of the last axis, a fully sampled centre)")
    g.add_argument("--mask", dest="mask_file", metavar="FILE",
                   help="sampling mask to apply: a column mask (nx,) or (ny, nx), .npy/.npz/.cfl/.h5")
    g.add_argument("--accel", type=float, metavar="R", help="acceleration of a generated mask")
    g.add_argument("--mask-kind", choices=["random", "equispaced"], default="random",
                   help="fastMRI RandomMaskFunc or EquispacedMaskFunc (default random)")
    g.add_argument("--center-fraction", type=float, default=None, metavar="F",
                   help="fraction of fully sampled centre columns (default 0.08 for R<=4, else 0.04, as fastMRI)")
    g.add_argument("--mask-seed", type=int, default=0, metavar="S", help="seed of the generated mask")


def _retro_mask(args, shape):
    """The ``(ny, nx)`` mask of ``--mask``/``--accel``, or None."""
    import numpy as np  # noqa: PLC0415

    if args.mask_file and args.accel is not None:
        raise UserError("--mask FILE and --accel both given; use one")
    if args.mask_file:
        from .io import read_array  # noqa: PLC0415
        from .validate import check_mask_values  # noqa: PLC0415

        m = np.asarray(read_array(args.mask_file, "mask"))
        if np.iscomplexobj(m) and not np.any(m.imag):  # BART stores patterns as complex floats
            m = m.real
        name = f"--mask {args.mask_file}"
        try:
            check_mask_values(m, name)  # 0/1 (or bool); negative, > 1, NaN and complex refused by name
        except (TypeError, ValueError) as e:
            raise UserError(str(e)) from None
        m = m.astype(np.float32)
        if np.any((m > 0) & (m < 1)):
            raise UserError(f"{name}: values strictly between 0 and 1 (a sampling density?); retrospective "
                            "undersampling needs a 0/1 pattern (e.g. density > threshold)")
        if not m.any():
            raise UserError(f"{name}: samples nothing (all zero)")
        while m.ndim > 2 and m.shape[0] == 1:  # leading singleton axes (a BART pattern read as (1, ny, nx))
            m = m[0]
        m = m.reshape(m.shape[-1:]) if m.ndim == 2 and m.shape[0] == 1 else m
        try:
            return np.broadcast_to(m != 0, shape).astype(np.float32)
        except ValueError:
            bart = str(args.mask_file).lower().endswith((".cfl", ".hdr"))
            hint = (f" (BART dimensions {tuple(reversed(m.shape))}: a 'bart poisson -Y -Z' pattern lies on BART's "
                    "y, z axes; 'bart transpose 0 2' puts it on x, y)") if bart and m.ndim == 3 and m.shape[-1] == 1 \
                else ""
            raise UserError(f"{name}: shape {m.shape} (numpy order) does not broadcast to the k-space "
                            f"(ny, nx) = {tuple(shape)}{hint}") from None
    if args.accel is not None:
        if not np.isfinite(args.accel) or args.accel < 1:
            raise UserError(f"--accel must be a number >= 1; got {args.accel:g}")
        from .preprocess import fastmri_mask  # noqa: PLC0415

        cf = args.center_fraction if args.center_fraction is not None else (0.08 if args.accel <= 4 else 0.04)
        cols = fastmri_mask(shape[-1], args.accel, cf, args.mask_kind, seed=args.mask_seed)
        return np.broadcast_to(cols, shape).astype(np.float32)
    if args.center_fraction is not None:
        raise UserError("--center-fraction needs --accel")
    return None


def espirit_kwargs(args) -> dict:
    """The :func:`mri_csc.sim.estimate_maps` keywords from :func:`add_espirit_options`' arguments."""
    return {"calib_width": args.calib_width, "thresh": args.espirit_thresh, "crop": args.espirit_crop,
            "kernel_width": args.espirit_kernel, "maps": args.espirit_maps}


def add_recon(sub) -> None:
    p = sub.add_parser("recon", help="reconstruct your own k-space file",
                       description="Reconstruct k-space from a .npy/.npz/.cfl/fastMRI .h5/ISMRMRD file. "
                                   "The output format follows OUTPUT's extension: .npy, .npz, .cfl, .h5 "
                                   "(fastMRI 'reconstruction'), .nii/.nii.gz (<stem>_mag.nii.gz and "
                                   "<stem>_phase.nii.gz). Frames (ISMRMRD repetitions/contrasts/phases/sets, "
                                   "BART time/echo dims) are reconstructed one by one into a frame axis "
                                   "(axis 0 of .npy, NIfTI t, BART dim 10). The parameters used are written "
                                   "to <output stem>_params.json.")
    p.add_argument("input", help="k-space file")
    p.add_argument("--out", required=True, help="output image file")
    add_maps_options(p)
    add_espirit_options(p)
    p.add_argument("--method", default="csc", help="reconstruction method (default csc; see mri-csc methods)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param lam=0.01 --param max_iter=50 (csc's are listed below)")
    p.add_argument("--slice", type=int, help="slice of a multi-slice file (default: all)")
    add_noise_options(p)
    p.add_argument("--crop", type=int, nargs=2, metavar=("NY", "NX"),
                   help="centre-crop the image (default: the file's recon matrix, e.g. fastMRI's 320x320)")
    p.add_argument("--voxel-size", type=float, nargs="+", metavar="MM",
                   help="NIfTI voxel size in mm, readout first (x y [z]), for files without geometry (.npy, "
                        ".cfl); ISMRMRD files carry theirs")
    add_undersampling_options(p)
    p.add_argument("--compress-coils", type=int, metavar="N",
                   help="SVD coil compression to N virtual coils first (as bart cc -S -p N)")
    p.add_argument("--precision", choices=["single", "double"], default="single",
                   help="single: complex128 input is computed in complex64 (default); double keeps it")
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.add_argument("--no-pbar", "--no-progress", dest="no_pbar", action="store_true", help="no progress bars")
    p.add_argument("--traj", metavar="FILE", help="non-Cartesian: trajectory (.npy/.npz in SigPy's coord layout, or "
                   "a BART .cfl from bart traj); INPUT is then (coils, *samples) k-space (.npy/.npz, or BART's "
                   "(1, readout, spokes, coils) .cfl)")
    p.add_argument("--image-shape", type=int, nargs="+", metavar="N",
                   help="non-Cartesian k-space: the image shape (default: an ISMRMRD file's recon matrix or an .npz "
                        "input's 'image_shape' array, else the --maps'); ESPIRiT (the default without maps) "
                        "needs it")
    p.set_defaults(func=cmd_recon)
    p.epilog = _csc_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter


#: One line per CSC parameter, for ``--help``.
CSC_PARAM_HELP = {
    "lam": "l1 weight of the codes z, relative to the coupling ('auto': from the noise estimate and mask kind)",
    "mu": "weight of the CSC term mu*(1/2|H u - sum d_k * z_k|^2 + lam|z|_1) ('auto': from the noise estimate)",
    "gamma": "weight pushing the demodulated image's imaginary part to 0 ('auto': = mu; 0 with phase=False)",
    "lam_lp": "Tikhonov weight of the high-pass filter H = I - (I + lam_lp grad^T grad)^-1 (larger: lower cut)",
    "noise_std": "k-space noise std in the input's units ('auto': from the calibration region; 1 if whitened)",
    "solver": "'bcd' (block-coordinate descent, default) or 'admm' (the generic ReconSolver, one split per prior)",
    "x_step": "data step of 'bcd': 'mm' (majorize-minimize, monotone) or 'exact' (CG on the exact x-subproblem)",
    "monotone": "keep the coder's new codes only when they lower the objective (True: a monotone objective)",
    "adapt_dictionary": ("blind CSC: a dictionary-update step every N code steps, kept if it lowers F "
                         "('auto': 10 on Cartesian data, 0 on non-Cartesian)"),
    "max_iter": "outer iterations (CSC coding + CG data step) at most",
    "tol": "stop when the image's relative change, averaged over tol_window iterations, is below this",
    "tol_window": "outer iterations whose image changes the stopping test averages (1: the last alone)",
    "phase": "estimate a smooth phase from the calibration region and demodulate (True/False/'auto')",
    "phase_width": ("Hann window width (k-space samples) of the phase estimate, one or one per axis, e.g. "
                    "[32,21] ('auto': 4/3 of the fully sampled centre, within 16..32)"),
    "imag_codes": "also code the imaginary part ('auto')",
    "csc_iter": "sparse-coding ADMM steps per outer iteration (the coder's state carries over)",
    "cg_iter": "conjugate-gradient steps of the data-consistency update per outer iteration",
    "rho": "the coder's ADMM penalty (None: automatic, then residual-balanced)",
    "rho_period": "coder steps between residual-balancing updates of rho",
    "relax": "ADMM over-relaxation factor of the coder (1 = none; 1.8 is the usual choice)",
    "dictionary": "filters: an .npz file (its 'filters', as learn-dict writes) or an .npy array (None: the shipped "
                  "48 real 11x11 filters, 16 7x7x7 ones for volumes solved as 3-D); "
                  "filters not of unit l2 norm are normalised with a warning, all-zero ones refused",
    "volume": ("a 3-D volume: 'per-readout' (one 2-D problem per readout position, the 2-D dictionary and rule) "
               "or '3d' (one 3-D problem, the 7x7x7 dictionary); 'auto': per readout when the mask is the same "
               "at every readout position"),
    "x0": "initial image (None: the solver's own start); Python API only",
    "callback": "function called after each iteration; Python API only",
}


def _csc_help() -> str:
    try:
        from .recon import get_method  # noqa: PLC0415

        params = get_method("csc").params
    except Exception:  # the help must not fail
        return ""
    lines = ["csc parameters (--param KEY=VALUE; defaults in brackets):"]
    for k, v in params.items():
        lines.append(f"  {k:14s} {CSC_PARAM_HELP.get(k, 'see mri-csc methods')} [{v!r}]")
    return "\n".join(lines)


def _params_path(out):
    from .io.formats import _stem  # noqa: PLC0415

    return type(_stem(out))(f"{_stem(out)}_params.json")


def _write_params(out, record: dict, params: dict, overwrite: bool):
    """Write ``record`` plus the method's resolved ``params`` (JSON-safe) next to ``out``; return the path."""
    import json  # noqa: PLC0415

    from .io import atomic_path  # noqa: PLC0415

    def json_safe(v):  # numbers, strings and (per-axis) sequences of them as themselves, anything else by repr
        if isinstance(v, (int, float, str, bool, type(None))):
            return v
        if isinstance(v, (tuple, list)) and all(isinstance(x, (int, float)) for x in v):
            return list(v)
        return repr(v)

    record = {**record, "params": {k: json_safe(v) for k, v in (params or {}).items()}}
    pp = _params_path(out)
    with atomic_path(pp, overwrite) as t:
        with open(t, "w") as fh:
            json.dump(record, fh, indent=2)
    return pp


def _voxel_sizes(args) -> "list[float] | None":
    """``--voxel-size`` as three sizes in mm (:func:`mri_csc.io.formats.check_voxel_size`), or None."""
    from .io.formats import check_voxel_size  # noqa: PLC0415

    try:
        vs = check_voxel_size(args.voxel_size or None, "--voxel-size")
    except ValueError as e:
        raise UserError(str(e)) from None
    return None if vs is None else list(vs)


def _refuse_outputs_on_inputs(outputs, inputs) -> None:
    """Refuse, even with ``--force``, an output that is one of the command's input files (a ``.cfl`` input with
    its ``.hdr``): the image would replace the data it came from."""
    import os  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from .io.cfl import cfl_base  # noqa: PLC0415

    files = []
    for f in filter(None, inputs):
        p = Path(f)
        base = cfl_base(p)  # a BART name may hold dots: "k_r0.5"
        files += [p] + [Path(base + ".cfl"), Path(base + ".hdr")]
    for out in outputs:
        for f in files:
            if Path(out).exists() and f.exists() and os.path.samefile(out, f):
                raise UserError(f"output {out} is the input file {f}: it would be replaced by the image (refused "
                                "even with --force); choose another --out")


def cmd_recon(args) -> int:
    import os  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from .backend import to_numpy  # noqa: PLC0415
    from .io import check_writable, detect_format, image_outputs, read_array, read_kspace, write_image  # noqa: PLC0415
    from .recon import get_method  # noqa: PLC0415
    from .validate import check_output, per_slice  # noqa: PLC0415

    spec = get_method(args.method)
    params = _parse_kv(args.param, "--param")
    try:
        spec.check(params)  # names, values and availability: the registry's one check
    except ValueError as e:
        raise UserError(str(e)) from None
    detect_format(args.out)
    if os.path.basename(args.out).lower() in (".npy", ".cfl", ".hdr", ".h5", ".hdf5", ".nii", ".nii.gz"):  # no name
        raise UserError(f"--out {args.out}: give the file a name before its extension (e.g. image.npy)")
    _voxel_sizes(args)  # checked now, used when the image is written
    outputs = [*image_outputs(args.out), _params_path(args.out)]
    _refuse_outputs_on_inputs(outputs, [args.input, args.maps, args.mask_file, args.noise, args.traj])
    for o in outputs[:-1]:
        check_writable(o, args.force)
    if _params_path(args.out).exists() and not args.force:  # the images are free: an earlier run of the same stem
        raise UserError(f"{_params_path(args.out)} exists: the record of an earlier run writing {args.out}'s stem "
                        "(perhaps in another format); choose another --out name, or --force to replace it too")
    check_writable(_params_path(args.out), args.force)
    if args.slice is not None and args.slice < 0:
        raise UserError(f"--slice must be >= 0; got {args.slice}")
    if args.noise and args.no_prewhiten:
        raise UserError("--noise and --no-prewhiten contradict each other; drop one")
    maps_mode = resolve_maps_options(args)
    if args.traj or _has_trajectories(args.input):
        return _recon_noncartesian(args, params, maps_mode)

    noise = read_noise_file(args.noise) if args.noise else None
    d = read_kspace(args.input, slice=args.slice, prewhiten=False if args.no_prewhiten else None, noise=noise)
    k, stacked = d["kspace"], d["stacked"]
    slices = list(k) if stacked else [k]
    if k.ndim == 4 and not stacked and d.get("format") in ("npy", "npz"):  # no metadata says which: say it
        _note(f"mri-csc: note: {args.input}: {tuple(k.shape)} read as one 3-D volume (coils, nz, ny, nx); a stack "
              "of 2-D slices (slices, coils, ny, nx) is reconstructed with --slice N, or all with 'mri-csc batch'")
    from .io.formats import check_centred_kspace  # noqa: PLC0415

    check_centred_kspace(slices[0], str(args.input))  # an image given as k-space: refused, not "reconstructed"
    _check_for_image(spec, params, slices[0].shape[1:], False)  # before ESPIRiT and the solve
    if slices[0].ndim == 4 and args.method == "csc-tv":  # measured for csc in benchmarks/RESULTS.md section 22
        _note("mri-csc: note: csc-tv on a 3-D volume uses the 3-D dictionary; csc (one 2-D problem per readout "
              "position) gave 2.0-2.5 dB more than 3-D CSC on the held-out benchmark slab, for 1.9-3.3x the time")
    mask = d["mask"]
    retro = _retro_mask(args, k.shape[-2:])
    if retro is not None:
        if mask is not None and not np.all(mask != 0):
            raise UserError(f"{args.input} is already undersampled (it has a mask sampling "
                            f"{float(np.mean(mask != 0)):.1%}); --mask/--accel need fully sampled data")
        slices = [s * retro for s in slices]  # before ESPIRiT: maps from the undersampled data
        mask = retro
    estimated = False  # ESPIRiT maps of these very data: the maps check (for a user's maps) is skipped
    maps_source = None  # what params.json records when not a file or ESPIRiT
    if args.maps:
        maps = np.asarray(read_array(args.maps)).astype(np.complex64)
        if stacked and maps.shape == k.shape[1:]:
            maps_list = [maps] * len(slices)
        elif maps.shape == k.shape:
            maps_list = list(maps) if stacked else [maps]
        elif not stacked and maps.ndim == 4 and maps.shape[1:] == k.shape and args.slice is not None \
                and args.slice < maps.shape[0]:
            maps_list = [maps[args.slice]]
        else:
            raise UserError(f"{args.maps}: coil maps of shape {maps.shape} disagree with the k-space of "
                            f"{args.input}, shape {k.shape}")
        if d.get("whitener") is not None:  # the k-space is W y: its coil sensitivities are W S
            from .io.ismrmrd import whiten_maps  # noqa: PLC0415

            maps_list = [whiten_maps(m, d["whitener"]) for m in maps_list]
            _note(f"mri-csc: note: the coil maps of {args.maps} are whitened with the k-space's noise whitener "
                  "(the prewhitened data's sensitivities; with --no-prewhiten neither is whitened)")
    elif d["maps"] is not None and maps_mode != "espirit":
        maps_list = list(d["maps"]) if stacked else [d["maps"]]
    elif maps_mode == "file":
        raise UserError(f"{args.input} holds no coil maps and --no-espirit was given; pass --maps FILE, or drop "
                        "--no-espirit to estimate them with ESPIRiT")
    else:
        from .sim import estimate_maps  # noqa: PLC0415

        estimated = True

        if k.shape[stacked] == 1:  # one coil: nothing to estimate
            maps_source, maps_list = _one_coil_maps(args, [sl.shape[1:] for sl in slices])
        else:
            if not args.espirit:
                args.espirit = "sigpy"
                _note(f"mri-csc: note: {args.input} holds no coil maps: estimating them with ESPIRiT (sigpy); "
                      "--espirit bart, --maps FILE or --no-espirit to choose")
            kw = espirit_kwargs(args)
            from .io.formats import calibration_data  # noqa: PLC0415

            if d.get("calibration") is not None:  # an ISMRMRD reference scan of its own: the maps come from it
                _note(f"mri-csc: note: the coil maps come from the calibration-only lines of {args.input} (a "
                      "reference scan of their own); they are not in the image's k-space")
            maps_list, last = [], (None, None)
            for i, s in enumerate(tqdm(slices, desc="espirit", disable=args.no_pbar or len(slices) == 1)):
                c = calibration_data(d, i, s)
                if c is not s and c is last[0]:
                    maps_list.append(last[1])  # a slice's reference lines serve each of its frames: ESPIRiT once
                    continue
                maps_list.append(estimate_maps(c, method=args.espirit, **kw))
                last = (c, maps_list[-1])
    # one mask per slice (read_kspace checked the file's mask against the slices; a retrospective one is 2-D);
    # every branch above gives one map set per slice, and zip(strict=True) below holds them to it
    masks = per_slice(f"{args.input}: mask", mask, len(slices), k.ndim - 1 - stacked) if stacked \
        else [mask]

    images, total, ran, runs, skipped = [], 0.0, None, [], 0
    lead = "frame" if "frame" in d["lead_axes"] else "slice"  # also names each volume's planes in per_readout
    bar = tqdm(list(zip(slices, maps_list, masks, strict=True)), desc=args.method, unit=lead,
               disable=args.no_pbar or len(slices) == 1)
    for i, (s, m, mk) in enumerate(bar):
        res = _reconstruct_file(args.input, s, m, mask=mk, method=args.method, device=args.device, maps_path=args.maps,
                                show_pbar=not args.no_pbar and len(slices) == 1, check_maps=not estimated,
                                compress_coils=args.compress_coils, precision=args.precision, **params)
        images.append(to_numpy(res.image))
        total += res.time
        ran = ran or res.params
        planes = [r for r in res.extras.get("planes", ()) if r["skipped"] is None]  # csc per readout position
        skipped += len(res.extras.get("planes", ())) - len(planes)
        at = {lead: i} if len(slices) > 1 else {}  # several volumes: which one each readout position is of
        runs += [(r["iterations"], {**res.params, **r, **at}) for r in planes] or [(len(res.history), res.params)]
    img = np.stack(images).reshape(tuple(d["lead_shape"]) + images[0].shape) if stacked else images[0]
    crop = tuple(args.crop) if args.crop else d["crop"]
    if crop is not None:
        from .io.formats import center_crop  # noqa: PLC0415

        img = center_crop(img, crop)
    frames = "frame" in d["lead_axes"]
    if d["lead_axes"] == ("slice", "frame"):
        img = np.moveaxis(img, 1, 0)  # (frames, slices, ny, nx)
    check_output(img, args.out, args.method)
    affine = d.get("affine")  # an .npz's (e.g. simulated from a NIfTI phantom); ISMRMRD's is in geometry
    if args.voxel_size:
        vs = _voxel_sizes(args)
        if affine is not None or d.get("geometry") is not None:
            _note(f"mri-csc: note: --voxel-size replaces the geometry of {args.input} (orientation and position "
                  "are dropped)")
        affine = np.diag(vs + [1.0])
    written = write_image(args.out, img, overwrite=args.force, frames=frames, geometry=d.get("geometry"),
                          affine=affine,
                          bart_frame_dims=d.get("bart_frame_dims"), h5_attrs=d.get("h5_attrs"),
                          ismrmrd_header=d.get("ismrmrd_header"))
    record = {"input": str(args.input), "method": args.method,
              "maps": args.maps or maps_source or (f"espirit-{args.espirit}" if args.espirit else "input"),
              "espirit": espirit_kwargs(args) if args.espirit else None,
              "prewhitened": bool(d.get("whitened", False)), "crop": list(crop) if crop else None,
              "compress_coils": args.compress_coils, "precision": args.precision,
              "retrospective_mask": None if retro is None else {
                  "file": args.mask_file, "accel": args.accel, "kind": args.mask_kind if args.accel else None,
                  "center_fraction": args.center_fraction, "seed": args.mask_seed,
                  "sampled": float(np.mean(retro != 0))},
              "frames": len(slices) if frames else 1, "output_shape": list(img.shape), "time_s": total}
    what = "frame" if frames else "volume" if slices[0].ndim == 4 else "slice"
    unit = what
    if ran.get("volume") == "per-readout":  # one run per readout position: their iterations and weights
        record["per_readout"] = [{k: v for k, v in p.items()
                                  if k in ("frame", "slice", "x", "iterations", "lam", "mu", "noise_std")}
                                 for _, p in runs]
        unit = "readout position"
    written.append(_write_params(args.out, record, ran, args.force))
    whitened = ("; prewhitened with the noise scans (intensities are then relative to the noise std; "
                "--no-prewhiten keeps the file's scale)") if d.get("whitened") else ""
    iterations = _iterations_note(runs, unit, args.method)
    how = _volume_note(args.method, ran, len(runs), skipped, asked="volume" in params)
    _note(f"{args.method}: {len(slices)} {what}(s){how} in {total:.2f} s of "
          f"solving{iterations}{whitened}; wrote {', '.join(map(str, written))}")
    return 0


def _volume_note(method: str, params: dict, solved: int, skipped: int, asked: bool = False) -> str:
    """How a volume was solved, for recon's closing line: ``solved`` 2-D problems per readout position
    (``skipped`` more left at zero), or one 3-D problem and why (``asked``: the user's ``--param volume``);
    "" for 2-D images."""
    volume = params.get("volume")
    if volume == "per-readout":
        left = f" ({skipped} more with no coil map energy or no data left at zero)" if skipped else ""
        return f" as {solved} 2-D problems, one per readout position{left},"
    if volume != "3d":
        return ""
    if method != "csc":  # csc-tv: always one 3-D problem (the note before the solve)
        return " as one 3-D problem each,"
    if asked:
        return " as one 3-D problem each (--param volume=3d),"
    return (" as one 3-D problem each (volume=3d: the mask varies along the readout, a 3-D dictionary was given "
            "or asked for, or the 2-D filters or the noise estimate do not fit the (nz, ny) planes),")


def _one_coil_maps(args, shapes) -> tuple[str, list]:
    """One coil's map is ones, as :func:`mri_csc.sim.estimate_maps` gives (the image carries the coil's
    sensitivity): said as such, not as ESPIRiT; returns the record for params.json and one map per image shape."""
    import numpy as np  # noqa: PLC0415

    args.espirit = None
    _note(f"mri-csc: note: {args.input} has one coil: its coil map is ones (the image carries the coil's "
          "sensitivity)")
    return "ones (one coil)", [np.ones((1, *sh), np.complex64) for sh in shapes]


def _reconstruct_file(path, *args, maps_path=None, **kwargs):
    """:func:`mri_csc.reconstruct` on data read from ``path`` (coil maps from ``maps_path`` when given); a
    refused input names the file it came from."""
    from .recon import reconstruct  # noqa: PLC0415
    from .validate import InputError  # noqa: PLC0415

    try:
        return reconstruct(*args, **kwargs)
    except InputError as e:
        name = maps_path if maps_path is not None and str(e).startswith("coil_maps") else path
        raise type(e)(f"{name}: {e}") from e


def _iterations_note(runs, unit: str, method: str = "") -> str:
    """``", N iterations"`` for ``runs`` of ``(iterations, resolved params)``, and how many stopped at
    ``max_iter`` with a stopping test (``tol`` > 0) that was not met ("" for direct methods)."""
    iters = [n for n, _ in runs]
    if not any(iters):
        return ""
    out = f", {iters[0]} iterations" if min(iters) == max(iters) else f", {min(iters)}-{max(iters)} iterations"
    capped = [p["max_iter"] for n, p in runs
              if isinstance(p.get("max_iter"), int) and p.get("tol") and n >= p["max_iter"]]
    if capped:
        out += (f"; {len(capped)} of {len(runs)} {unit}(s) ran to max_iter={capped[0]} without meeting tol"
                + (" (for CG-based methods such as sense, stopping early is the regularisation)"
                   if method == "sense" else ""))
    return out


def _has_trajectories(path) -> bool:
    """Whether ``path`` is an ISMRMRD file of non-Cartesian acquisitions (they carry ``traj``)."""
    if not str(path).lower().endswith((".h5", ".hdf5", ".mrd")):
        return False
    from .io.ismrmrd import has_trajectories  # noqa: PLC0415

    return has_trajectories(path)


def _read_noncartesian(args):
    """``(kspace list, trajectory list, image shape or None, lead shape, record)`` of a non-Cartesian input; the
    image shape is the ISMRMRD recon matrix, or an ``.npz`` input's ``image_shape`` member."""
    import numpy as np  # noqa: PLC0415

    from .io import read_array  # noqa: PLC0415
    from .io.cfl import read_cfl  # noqa: PLC0415
    from .io.trajectory import bart_noncartesian_kspace, read_image_shape, read_trajectory  # noqa: PLC0415

    if not args.traj:  # ISMRMRD acquisitions with their trajectories
        import h5py  # noqa: PLC0415

        from .io.ismrmrd import read_ismrmrd_noncartesian  # noqa: PLC0415

        noise = read_noise_file(args.noise) if args.noise else None
        with h5py.File(args.input, "r") as f:
            d = read_ismrmrd_noncartesian(args.input, f, slice=args.slice, noise=noise,
                                          prewhiten=False if args.no_prewhiten else None)
        k, t = d["kspace"], d["trajectory"]
        lead = tuple(n for n in k.shape[:2] if n > 1)
        return (list(k.reshape(-1, *k.shape[2:])), list(t.reshape(-1, *t.shape[2:])), d["image_shape"], lead,
                {"trajectory": f"ISMRMRD ({d['trajectory_type']}, units {d['units']})",
                 "prewhitened": d["whitened"], "_whitener": d["whitener"]})
    coord = read_trajectory(args.traj)
    shape = None  # the image matrix an .npz declares ('image_shape', as the batch reads it)
    if str(args.input).lower().endswith((".cfl", ".hdr")):
        k = bart_noncartesian_kspace(read_cfl(str(args.input)[:-4]))
    else:
        k = np.asarray(read_array(args.input, key="kspace"))
        if str(args.input).lower().endswith(".npz") and not args.image_shape:  # --image-shape comes first
            from .io.formats import _open_npz  # noqa: PLC0415

            stars = coord.ndim == 4 and coord.shape[-1] == 3  # the batch's layout: image_shape is (ny, nx)
            with _open_npz(args.input) as z:
                shape = read_image_shape(args.input, z, coord.shape[-1], nz=coord.shape[0] if stars else None)
    samples = coord.shape[:-1]
    if k.ndim < 2 or int(np.prod(k.shape[1:])) != int(np.prod(samples)):
        raise UserError(f"{args.input}: k-space of shape {k.shape} does not hold (coils, *{samples}) samples of "
                        f"the trajectory {args.traj} (shape {coord.shape})")
    return [k.reshape(k.shape[0], *samples).astype(np.complex64)], [coord], shape, (), {"trajectory": str(args.traj)}


def _check_for_image(spec, params, image_shape, noncartesian) -> None:
    """The method's parameters against the image's shape (``Method.check_for_image``), as a :class:`UserError`."""
    try:
        spec.check_for_image(params, image_shape, noncartesian)
    except ValueError as e:
        raise UserError(f"method {spec.name!r}: {e}") from None


def _recon_noncartesian(args, params, maps_mode=None) -> int:
    """``mri-csc recon INPUT --traj FILE`` (or an ISMRMRD file with trajectories): non-Cartesian k-space.

    Coil maps as for Cartesian input (``maps_mode``, :func:`resolve_maps_options`): ``--maps``, the input's own,
    else ESPIRiT (SigPy by default) on the regridded k-space centre, which needs the image shape (the ISMRMRD
    recon matrix, an ``.npz`` input's ``image_shape``, or ``--image-shape``).
    """
    import numpy as np  # noqa: PLC0415

    from .backend import to_numpy  # noqa: PLC0415
    from .io import read_array, write_image  # noqa: PLC0415
    from .recon import get_method  # noqa: PLC0415
    from .validate import check_output  # noqa: PLC0415

    ks, coords, file_shape, lead, record = _read_noncartesian(args)  # errors are classified by main()
    whitener = record.pop("_whitener", None)  # the prewhitening applied to the k-space (ISMRMRD), not recorded
    shape = tuple(args.image_shape) if args.image_shape else file_shape
    if shape is not None:
        _check_for_image(get_method(args.method), params, shape, True)  # before ESPIRiT and the solve
    own = None  # the input's own maps (an .npz 'maps'), the default as for Cartesian input
    if not args.maps and not args.espirit and str(args.input).lower().endswith(".npz"):
        from .io.formats import _open_npz  # noqa: PLC0415

        with _open_npz(args.input) as z:
            own = z["maps"] if "maps" in z else None
    estimated = False  # ESPIRiT maps of these very data: the maps check (for a user's maps) is skipped
    maps_source = None  # what params.json records when not a file or ESPIRiT
    if args.maps or own is not None:
        maps = np.asarray(read_array(args.maps) if args.maps else own).astype(np.complex64)
        stack = len(ks) > 1 and maps.ndim == coords[0].shape[-1] + 2 and maps.shape[0] == len(ks)
        maps_list = list(maps) if stack else [maps] * len(ks)  # one map set per slice/frame, or one for all
        if args.maps and whitener is not None:  # the k-space is W y: its coil sensitivities are W S
            from .io.ismrmrd import whiten_maps  # noqa: PLC0415

            maps_list = [whiten_maps(m, whitener) for m in maps_list]
            _note(f"mri-csc: note: the coil maps of {args.maps} are whitened with the k-space's noise whitener")
    elif maps_mode != "file":  # --espirit, or the default as for Cartesian input: ESPIRiT (SigPy)
        from .sim.trajectories import estimate_maps_noncartesian  # noqa: PLC0415

        if shape is None:
            raise UserError(f"{args.input} holds no coil maps: ESPIRiT on non-Cartesian k-space needs the image "
                            "shape to calibrate on (--image-shape N N, or an 'image_shape' array in the .npz), or "
                            "give the maps (--maps FILE)")
        if ks[0].shape[0] == 1:  # one coil: nothing to estimate
            maps_source, maps_list = _one_coil_maps(args, [tuple(shape)] * len(ks))
        else:
            if not args.espirit:
                args.espirit = "sigpy"
                _note(f"mri-csc: note: {args.input} holds no coil maps: estimating them with ESPIRiT (sigpy) on "
                      "the regridded k-space centre; --espirit bart, --maps FILE or --no-espirit to choose")
            kw = {k: v for k, v in espirit_kwargs(args).items() if v is not None}  # None: the implementation's
            maps_list = [estimate_maps_noncartesian(k, c, shape, method=args.espirit, **kw)
                         for k, c in zip(ks, coords)]
        estimated = True
    else:
        raise UserError(f"{args.input} holds no coil maps and --no-espirit was given; pass --maps FILE, or drop "
                        "--no-espirit to estimate them with ESPIRiT")
    if shape is not None and tuple(shape) != tuple(maps_list[0].shape[1:]):
        raise UserError(f"the image shape {tuple(shape)} differs from the coil maps' {maps_list[0].shape[1:]}")
    images, total, ran, runs = [], 0.0, None, []
    for k, c, m in zip(ks, coords, maps_list, strict=True):
        res = _reconstruct_file(args.input, k, m, trajectory=c, method=args.method, device=args.device,
                                maps_path=args.maps, check_maps=not estimated,
                                show_pbar=not args.no_pbar and len(ks) == 1, **params)
        images.append(to_numpy(res.image))
        total += res.time
        ran = ran or res.params
        runs.append((len(res.history), res.params))
    img = np.stack(images).reshape(lead + images[0].shape) if lead else images[0]
    check_output(img, args.out, args.method)
    written = write_image(args.out, img, overwrite=args.force)
    record = {"input": str(args.input), "method": args.method, **record,
              "maps": args.maps or maps_source or (f"espirit-{args.espirit}" if args.espirit else "input"),
              "espirit": espirit_kwargs(args) if args.espirit else None,
              "output_shape": list(img.shape), "time_s": total}
    written.append(_write_params(args.out, record, ran, args.force))
    _note(f"{args.method}: non-Cartesian, {len(ks)} slice(s)/frame(s) of {ks[0].shape[0]} coils x "
          f"{int(np.prod(ks[0].shape[1:]))} samples in {total:.2f} s of solving"
          f"{_iterations_note(runs, 'slice/frame', args.method)}; wrote {', '.join(map(str, written))}")
    return 0


# ----------------------------------------------------------------------------- simulate

def add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="write a simulated phantom's k-space, coil maps and mask",
                       description="Simulate undersampled multi-coil k-space of a phantom and write it (with "
                                   "the true maps and the mask) as .npy (+ _maps/_mask siblings), .npz, .cfl "
                                   "(+ _maps/_mask), fastMRI .h5 or ISMRMRD .mrd.")
    p.add_argument("--phantom", default="shepp-logan", help="shepp-logan, brain or a NIfTI file")
    p.add_argument("--out", required=True, help="output file (.npy .npz .cfl .h5 .mrd)")
    p.add_argument("--shape", type=int, nargs="+", default=[128, 128], metavar="N",
                   help="image shape NY NX, or NZ NY NX for a volume (a brain/NIfTI one: an axial slab of "
                        "cubic voxels inside the z field of view; default 128 128)")
    p.add_argument("--coils", type=int, default=8, help="number of coils (default 8)")
    p.add_argument("--mask", default="poisson",
                   help="poisson, random-lines, equispaced-lines or uniform-random (default poisson)")
    p.add_argument("--accel", type=float, default=4.0, help="acceleration (default 4)")
    p.add_argument("--calib", type=int, help="fully sampled centre width")
    p.add_argument("--phase", default="random", choices=["random", "polynomial", "none"])
    p.add_argument("--phase-amplitude", type=float, default=3.141592653589793)
    p.add_argument("--snr-db", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice", type=int, help="slice of a brain/NIfTI volume (for NZ NY NX: the slab's centre)")
    p.add_argument("--format", choices=["npy", "npz", "cfl", "fastmri", "ismrmrd"],
                   help="force a format (default: from the extension; .h5 is fastMRI)")
    p.add_argument("--no-maps", action="store_true", help="do not write the coil maps")
    p.add_argument("--reference", help="also write the ground-truth complex image here (.npy, .nii.gz, ...)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--trajectory", choices=["radial", "golden-radial", "spiral"],
                   help="non-Cartesian: k-space on this trajectory at --accel (NUFFT of a 2x finer image), "
                        "written as .npz with 'kspace', 'maps', 'trajectory' (--mask is ignored)")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    from .io import check_writable, detect_format, image_outputs, write_image, write_kspace  # noqa: PLC0415
    from .sim import make_dataset  # noqa: PLC0415

    detect_format(args.out, args.format)
    if args.reference:
        for o in image_outputs(args.reference):
            check_writable(o, args.force)
    check_writable(args.out if detect_format(args.out, args.format) != "cfl" else
                   args.out if args.out.endswith((".cfl", ".hdr")) else args.out + ".cfl", args.force)
    if args.trajectory:
        return _simulate_noncartesian(args)
    ds = make_dataset(phantom=args.phantom, shape=tuple(args.shape), n_coils=args.coils, mask=args.mask,
                      accel=args.accel, calib=args.calib, phase=None if args.phase == "none" else args.phase,
                      phase_amplitude=args.phase_amplitude, snr_db=args.snr_db, seed=args.seed,
                      slice_index=args.slice)
    from .sim.simulate import phantom_affine  # noqa: PLC0415

    aff = phantom_affine(args.phantom, tuple(args.shape), args.slice)  # a NIfTI phantom's geometry, carried along
    written = write_kspace(args.out, ds.kspace, None if args.no_maps else ds.maps, ds.mask,
                           overwrite=args.force, fmt=args.format, affine=aff)
    if args.reference:
        written += write_image(args.reference, ds.image, overwrite=args.force, affine=aff)
    _note(f"simulated {args.phantom} {tuple(args.shape)}, {args.coils} coils, {args.mask} "
          f"R={ds.acceleration:.2f}; wrote {', '.join(map(str, written))}")
    return 0


def _simulate_noncartesian(args) -> int:
    """``mri-csc simulate --trajectory KIND``: one .npz with kspace ``(coils, *samples)``, maps, trajectory."""
    import numpy as np  # noqa: PLC0415

    from .io import atomic_path, write_image  # noqa: PLC0415
    from .sim import make_dataset  # noqa: PLC0415
    from .sim.trajectories import make_trajectory, simulate_noncartesian  # noqa: PLC0415

    if not str(args.out).endswith(".npz") or args.format not in (None, "npz"):
        raise UserError(f"--trajectory writes .npz (kspace, maps, trajectory); got --out {args.out}")
    ds = make_dataset(phantom=args.phantom, shape=tuple(args.shape), n_coils=args.coils, mask="poisson",
                      accel=1, phase=None if args.phase == "none" else args.phase,
                      phase_amplitude=args.phase_amplitude, snr_db=None, seed=args.seed, slice_index=args.slice)
    coord = make_trajectory(args.trajectory, tuple(args.shape), args.accel)
    k = simulate_noncartesian(ds.image, ds.maps, coord, snr_db=args.snr_db, seed=args.seed)
    arrays = {"kspace": k, "trajectory": coord, **({} if args.no_maps else {"maps": ds.maps})}
    with atomic_path(args.out, args.force) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    written = [args.out]
    if args.reference:
        written += write_image(args.reference, ds.image, overwrite=args.force)
    _note(f"simulated {args.phantom} {tuple(args.shape)}, {args.coils} coils, {args.trajectory} R={args.accel:g} "
          f"({coord.shape[0]} x {coord.shape[1]} samples); wrote {', '.join(map(str, written))}")
    return 0


# ----------------------------------------------------------------------------- info / methods

def add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a k-space, trajectory, image or config file")
    p.add_argument("file")
    p.add_argument("--traj", metavar="FILE", help="the trajectory of non-Cartesian k-space in FILE (as for recon)")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    if args.file.lower().endswith(".toml"):
        from .config import load_config, to_toml  # noqa: PLC0415

        print(to_toml(load_config(args.file)), end="")
        return 0
    from .io import describe  # noqa: PLC0415

    print(describe(args.file, traj=args.traj))
    return 0


def add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the reconstruction methods and their parameters")
    p.set_defaults(func=cmd_methods)


def cmd_methods(args) -> int:
    from .recon import available_methods, get_method  # noqa: PLC0415

    for name in available_methods():
        spec = get_method(name)
        reason = spec.available()
        flags = ("gpu" if spec.gpu else "cpu only") + (f"; unavailable: {reason}" if reason else "")
        print(f"{name:16s} {spec.description} [{flags}]")
        if spec.params:
            print(" " * 17 + ", ".join(f"{k}={v!r}" for k, v in spec.params.items()))
    return 0


# ----------------------------------------------------------------------------- parser / main

def build_parser() -> argparse.ArgumentParser:
    """The full ``mri-csc`` parser, extra subcommands included."""
    from . import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="mri-csc", description="Compressed-sensing MRI reconstruction with a "
                                     "convolutional sparse coding prior.")
    parser.add_argument("--version", action="version", version=f"mri-csc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (add_eval, add_recon, add_simulate, add_info, add_methods):
        add(sub)
    for modname in EXTRA_SUBCOMMANDS:
        try:
            importlib.import_module(modname).add_parser(sub)
        except ImportError as e:
            log.warning("subcommands from %s not available: %s", modname, e)
    return parser


def memory_message(e: MemoryError) -> str:
    """One line for a ``MemoryError``, naming the size asked for when NumPy says it."""
    from .io.limits import ENV_VAR, format_bytes, max_bytes  # noqa: PLC0415

    what = " ".join(str(e).split()) or "an allocation failed"
    return (f"out of memory: {what} (the memory budget is {format_bytes(max_bytes())}; use a smaller input, "
            f"a single --slice, or set {ENV_VAR})")


def deliberate_runtime_error(e: BaseException) -> bool:
    """Whether ``e`` is a ``RuntimeError`` raised on purpose by a ``raise RuntimeError(`` in mri_csc's code."""
    from .validate import raised_here  # noqa: PLC0415

    return (isinstance(e, RuntimeError) and not isinstance(e, (RecursionError, NotImplementedError))
            and raised_here(e))


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (``poll`` reports an error on its write end)."""
    import select  # noqa: PLC0415

    try:
        p = select.poll()
        p.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def report_error(e: BaseException, debug: bool = False) -> int:
    """The CLI's error contract for an exception that escaped a command; returns the exit code.

    A user error (:func:`mri_csc.validate.is_user_error`, or :class:`UserError`) prints one
    line ``mri-csc: error: ...`` and gives 2; ``MemoryError`` one line naming the size and 2;
    ``KeyboardInterrupt`` 130; a broken pipe on standard output (``info | head``) no message and 141; a
    ``RuntimeError`` mri_csc raised on purpose (an external
    tool such as ``bart`` that failed: :func:`deliberate_runtime_error`) one line and 1;
    anything else (``RecursionError``, ``NotImplementedError``, an error raised inside SigPy
    or NumPy) is a bug: its traceback and 1. ``debug`` re-raises every error.
    """
    from .validate import is_user_error  # noqa: PLC0415

    if isinstance(e, KeyboardInterrupt):
        _err(f"{'terminated' if isinstance(e, Terminated) else 'interrupted'}; no partial output was left behind")
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPT
    if isinstance(e, BrokenPipeError) and _stdout_closed():  # `mri-csc info f | head`: the reader left
        import os  # noqa: PLC0415

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes stdout
        return EXIT_BROKEN_PIPE
    if debug:
        raise e
    if isinstance(e, MemoryError):
        _err(memory_message(e))
        return EXIT_USER
    if isinstance(e, UserError) or is_user_error(e):
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
        _err(" ".join(msg.split()) or type(e).__name__)
        return EXIT_USER
    if deliberate_runtime_error(e):
        _err(" ".join(str(e).split()))
        return 1
    import traceback  # noqa: PLC0415

    traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    _err(f"internal error ({type(e).__name__}); this is a bug in mri_csc, please report it with the traceback above")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see :func:`report_error`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    previous = _on_sigterm()
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001  (the contract is in report_error)
        return report_error(e, args.debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` arrived: raised in the main thread so that every clean-up (temporary files) runs."""


def _on_sigterm():
    """Turn ``SIGTERM`` into :class:`Terminated` (main thread only); returns the previous handler."""
    import threading  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
