"""The ``mri-csc`` command line.

Subcommands::

    mri-csc eval CONFIG [--out DIR] [--device D] [--set key=value ...] [--force]
    mri-csc recon INPUT --out OUTPUT [--maps FILE | --espirit sigpy|bart] [--method csc]
                  [--param key=value ...] [--slice N] [--device D] [--force]
    mri-csc simulate --phantom shepp-logan|brain|FILE.nii --out FILE [--shape NY NX] [--coils N]
                  [--mask KIND] [--accel R] [--snr-db DB] [--seed S] [--force]
    mri-csc info FILE
    mri-csc methods

Exit codes: 0 success; 2 user error (bad arguments, missing/corrupt file,
invalid config, unknown method or parameter, output exists without
``--force``); 130 interrupted (Ctrl-C; no partial output is left behind);
1 anything else (a bug: rerun with ``--debug`` for the traceback). User errors
print one line, ``mri-csc: error: ...``, on stderr, with no traceback.

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

Raise ``ValueError``/``FileNotFoundError``/``FileExistsError`` for user
errors; :func:`main` turns them into the one-line message and exit code 2.
:func:`build_parser` returns the whole parser (handy for tests and docs).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .config import parse_value

__all__ = ["main", "build_parser", "EXTRA_SUBCOMMANDS", "UserError"]

log = logging.getLogger("mri_csc.cli")

#: Modules exposing ``add_parser(subparsers)``; each adds its own subcommand(s).
EXTRA_SUBCOMMANDS: list[str] = [
    "mri_csc.batch.cli",          # mri-csc batch
    "mri_csc.learn_cli",          # mri-csc learn-dict
]

EXIT_USER = 2
EXIT_INTERRUPT = 130


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

def add_recon(sub) -> None:
    p = sub.add_parser("recon", help="reconstruct your own k-space file",
                       description="Reconstruct k-space from a .npy/.npz/.cfl/fastMRI .h5/ISMRMRD file. "
                                   "The output format follows OUTPUT's extension: .npy, .npz, .cfl, .h5 "
                                   "(fastMRI 'reconstruction'), .nii/.nii.gz (<stem>_mag.nii.gz and "
                                   "<stem>_phase.nii.gz).")
    p.add_argument("input", help="k-space file")
    p.add_argument("--out", required=True, help="output image file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--maps", help="coil maps file (same shape as the k-space)")
    g.add_argument("--espirit", choices=["sigpy", "bart"], help="estimate coil maps with ESPIRiT")
    p.add_argument("--calib-width", type=int, default=24, help="ESPIRiT calibration width (default 24)")
    p.add_argument("--method", default="csc", help="reconstruction method (default csc; see mri-csc methods)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter, e.g. --param lam=0.01 --param max_iter=50")
    p.add_argument("--slice", type=int, help="slice of a multi-slice file (default: all)")
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    p.add_argument("--no-pbar", action="store_true", help="no progress bars")
    p.add_argument("--traj", metavar="FILE", help="non-Cartesian: trajectory (.npy/.npz in SigPy's coord layout, or "
                   "a BART .cfl from bart traj); INPUT is then (coils, *samples) k-space (.npy/.npz, or BART's "
                   "(1, readout, spokes, coils) .cfl)")
    p.add_argument("--image-shape", type=int, nargs="+", metavar="N",
                   help="with --traj and --espirit: the image shape (default: from --maps)")
    p.set_defaults(func=cmd_recon)


def cmd_recon(args) -> int:
    import numpy as np  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from .backend import to_numpy  # noqa: PLC0415
    from .io import check_writable, detect_format, image_outputs, read_array, read_kspace, write_image  # noqa: PLC0415
    from .recon import get_method, reconstruct  # noqa: PLC0415

    spec = get_method(args.method)
    params = _parse_kv(args.param, "--param")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise UserError(f"unknown parameter {unknown[0]!r} for method {args.method!r}; accepted: {sorted(spec.params)}")
    reason = spec.available()
    if reason:
        raise UserError(f"method {args.method!r} is not available here: {reason}")
    detect_format(args.out)
    for o in image_outputs(args.out):
        check_writable(o, args.force)
    if args.slice is not None and args.slice < 0:
        raise UserError(f"--slice must be >= 0; got {args.slice}")
    if args.traj:
        return _recon_noncartesian(args, params)

    d = read_kspace(args.input, slice=args.slice)
    k, stacked = d["kspace"], d["stacked"]
    slices = list(k) if stacked else [k]
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
    elif args.espirit:
        from .sim import estimate_maps  # noqa: PLC0415

        maps_list = [estimate_maps(s, calib_width=args.calib_width, method=args.espirit)
                     for s in tqdm(slices, desc="espirit", disable=args.no_pbar or len(slices) == 1)]
    elif d["maps"] is not None:
        maps_list = list(d["maps"]) if stacked else [d["maps"]]
    else:
        raise UserError(f"{args.input} holds no coil maps; pass --maps FILE or --espirit sigpy|bart")
    mask = d["mask"]
    masks = list(mask) if (stacked and mask is not None and mask.ndim == k.ndim - 1) else [mask] * len(slices)

    images, total = [], 0.0
    bar = tqdm(list(zip(slices, maps_list, masks)), desc=args.method, unit="slice",
               disable=args.no_pbar or len(slices) == 1)
    for s, m, mk in bar:
        res = reconstruct(s, m, mask=mk, method=args.method, device=args.device,
                          show_pbar=not args.no_pbar and len(slices) == 1, **params)
        images.append(to_numpy(res.image))
        total += res.time
    img = np.stack(images) if stacked else images[0]
    written = write_image(args.out, img, overwrite=args.force)
    _note(f"{args.method}: {len(slices)} slice(s) in {total:.2f} s; wrote {', '.join(map(str, written))}")
    return 0


def _recon_noncartesian(args, params) -> int:
    """``mri-csc recon INPUT --traj FILE``: one non-Cartesian k-space ``(coils, *samples)``."""
    import numpy as np  # noqa: PLC0415

    from .backend import to_numpy  # noqa: PLC0415
    from .io import read_array, write_image  # noqa: PLC0415
    from .io.cfl import read_cfl  # noqa: PLC0415
    from .io.trajectory import bart_noncartesian_kspace, read_trajectory  # noqa: PLC0415
    from .recon import reconstruct  # noqa: PLC0415

    coord = read_trajectory(args.traj)
    if str(args.input).lower().endswith((".cfl", ".hdr")):
        k = bart_noncartesian_kspace(read_cfl(str(args.input)[:-4]))
    else:
        k = np.asarray(read_array(args.input, key="kspace"))
    samples = coord.shape[:-1]
    if k.ndim < 2 or int(np.prod(k.shape[1:])) != int(np.prod(samples)):
        raise UserError(f"{args.input}: k-space of shape {k.shape} does not hold (coils, *{samples}) samples of "
                        f"the trajectory {args.traj} (shape {coord.shape})")
    k = k.reshape(k.shape[0], *samples).astype(np.complex64)
    if args.maps:
        maps = np.asarray(read_array(args.maps)).astype(np.complex64)
    elif args.espirit:
        from .sim.trajectories import estimate_maps_noncartesian  # noqa: PLC0415

        if not args.image_shape:
            raise UserError("--traj with --espirit needs --image-shape N N (the image shape to calibrate on)")
        maps = estimate_maps_noncartesian(k, coord, tuple(args.image_shape), calib_width=args.calib_width,
                                          method=args.espirit)
    else:
        raise UserError("--traj needs coil maps: pass --maps FILE or --espirit sigpy|bart")
    if args.image_shape and tuple(args.image_shape) != tuple(maps.shape[1:]):
        raise UserError(f"--image-shape {tuple(args.image_shape)} differs from the coil maps' {maps.shape[1:]}")
    try:
        res = reconstruct(k, maps, trajectory=coord, method=args.method, device=args.device,
                          show_pbar=not args.no_pbar, **params)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    written = write_image(args.out, to_numpy(res.image), overwrite=args.force)
    _note(f"{args.method}: non-Cartesian, {k.shape[0]} coils x {int(np.prod(samples))} samples in {res.time:.2f} s; "
          f"wrote {', '.join(map(str, written))}")
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
                   help="image shape (default 128 128)")
    p.add_argument("--coils", type=int, default=8, help="number of coils (default 8)")
    p.add_argument("--mask", default="poisson",
                   help="poisson, random-lines, equispaced-lines or uniform-random (default poisson)")
    p.add_argument("--accel", type=float, default=4.0, help="acceleration (default 4)")
    p.add_argument("--calib", type=int, help="fully sampled centre width")
    p.add_argument("--phase", default="random", choices=["random", "polynomial", "none"])
    p.add_argument("--phase-amplitude", type=float, default=3.141592653589793)
    p.add_argument("--snr-db", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice", type=int, help="slice of a brain/NIfTI volume")
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
    written = write_kspace(args.out, ds.kspace, None if args.no_maps else ds.maps, ds.mask,
                           overwrite=args.force, fmt=args.format)
    if args.reference:
        written += write_image(args.reference, ds.image, overwrite=args.force)
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
    try:
        ds = make_dataset(phantom=args.phantom, shape=tuple(args.shape), n_coils=args.coils, mask="poisson",
                          accel=1, phase=None if args.phase == "none" else args.phase,
                          phase_amplitude=args.phase_amplitude, snr_db=None, seed=args.seed, slice_index=args.slice)
        coord = make_trajectory(args.trajectory, tuple(args.shape), args.accel)
        k = simulate_noncartesian(ds.image, ds.maps, coord, snr_db=args.snr_db, seed=args.seed)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
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
    p = sub.add_parser("info", help="describe a k-space, image or config file")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    if args.file.lower().endswith(".toml"):
        from .config import load_config, to_toml  # noqa: PLC0415

        print(to_toml(load_config(args.file)), end="")
        return 0
    from .io import describe  # noqa: PLC0415

    print(describe(args.file))
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


_USER_ERRORS = (UserError, ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
                NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted; no partial output was left behind")
        return EXIT_INTERRUPT
    except _USER_ERRORS as e:
        if args.debug:
            raise
        msg = str(e) if not isinstance(e, (FileNotFoundError, PermissionError)) or not e.filename else \
            f"{e.filename}: {e.strerror}"
        _err(" ".join(msg.split()) or type(e).__name__)
        return EXIT_USER
    except RuntimeError as e:
        if args.debug:
            raise
        _err(" ".join(str(e).split()))
        return 1


if __name__ == "__main__":
    sys.exit(main())
