"""``mri-csc batch``: reconstruct many files on a Dask cluster.

Example::

    mri-csc batch data/*.h5 --out recons/ --method csc --param lam=0.006 --workers 8
    mri-csc batch data/ --out recons/ --scheduler tcp://head-node:8786 --resume
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import parse_value

__all__ = ["add_parser", "parse_params", "run", "main"]

log = logging.getLogger(__name__)


def parse_params(items) -> dict:
    """``["lam=0.01", "max_iter=20", "name=abc"]`` → ``{"lam": 0.01, "max_iter": 20, "name": "abc"}``.

    Values are parsed as in ``mri-csc recon --param`` (:func:`mri_csc.config.parse_value`:
    TOML, else a Python literal, else a string).
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param expects KEY=VALUE; got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``batch`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "batch", help="reconstruct many files slice by slice on a Dask cluster",
        description="Reconstruct fastMRI/ISMRMRD .h5, .npy/.npz stacks or .cfl files, one Dask task per 2-D "
                    "slice; each input file gives one output volume in --out.")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns (quote globs for the shell)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="csc", help="reconstruction method (default: csc)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a method parameter, e.g. --param lam=0.01 (repeatable)")
    from ..cli import add_espirit_options, add_maps_options, add_noise_options  # noqa: PLC0415

    add_maps_options(p)  # the same --maps FILE / --espirit / --no-espirit as mri-csc recon
    add_espirit_options(p)
    add_noise_options(p)
    p.add_argument("--compress-coils", type=int, metavar="N",
                   help="SVD coil compression of every slice to N virtual coils (as bart cc -S -p N)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local workers, one thread each (default: one per core, or per GPU)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: one worker per GPU through dask-cuda")
    p.add_argument("--retries", type=int, default=2, help="retries of a failing slice (default: 2)")
    p.add_argument("--resume", action="store_true", help="keep finished slices of an earlier run, do the rest")
    p.add_argument("--format", dest="output_format", choices=["h5", "nii", "npy", "cfl"], default="h5",
                   help="output format (default: fastMRI-style h5; cfl: BART (x, y, z))")
    p.add_argument("--layout", choices=["auto", "slices", "volume"], default="auto",
                   help="volume: inputs are 3-D k-space (coils, nz, ny, nx), sliced along the readout x")
    p.add_argument("--seed", type=int, default=0, help="root seed of the per-slice random streams")
    p.add_argument("--voxel-size", type=float, nargs="+", metavar="MM",
                   help="NIfTI voxel size in mm (x y [z], readout first), replacing the inputs' geometry (.npy, "
                        ".cfl and .npz inputs hold none)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for --scheduler")
    p.add_argument("--no-progress", "--no-pbar", dest="no_progress", action="store_true",
                   help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def _announce(info) -> None:
    where = "local cluster" if info.local else "scheduler"
    print(f"Dask {where} {info.scheduler}: {info.n_workers} worker(s); dashboard: {info.dashboard or '(none)'}",
          flush=True)


def _note_espirit(args) -> None:
    """Say, as ``recon`` does, which inputs hold no coil maps and will have them estimated by ESPIRiT."""
    from mri_csc.io.formats import holds_maps  # noqa: PLC0415

    from .tasks import expand_inputs  # noqa: PLC0415

    try:
        paths = expand_inputs(args.inputs)
        without = [p for p in paths if not holds_maps(p)]
    except Exception:  # noqa: BLE001  (unreadable inputs are reported by the batch itself)
        return
    if without:
        which = (f"{without[0].name} and {len(without) - 1} other input(s) hold" if len(without) > 1
                 else f"{without[0].name} holds")
        method = args.espirit or "sigpy"
        print(f"mri-csc: note: {which} no coil maps: estimating them with ESPIRiT ({method}) per slice; "
              "--espirit bart, --maps FILE or --no-espirit to choose", file=sys.stderr, flush=True)


def _note_layout(args) -> None:
    """Say how a 4-D ``.npy``/``.npz`` is read under ``--layout auto`` (as a stack of slices; the same array
    could be a volume, which ``recon`` reads it as), naming the first such input and the flag for the other."""
    from .tasks import expand_inputs, slice_count  # noqa: PLC0415

    if args.layout != "auto":
        return
    try:
        stacks = [(p, slice_count(p, "auto")) for p in expand_inputs(args.inputs)
                  if p.suffix.lower() in (".npy", ".npz")]
    except Exception:  # noqa: BLE001  (unreadable inputs are reported by the batch itself)
        return
    stacks = [(p, shape) for p, (_, _, layout, shape) in stacks if layout == "slices" and len(shape) == 4]
    if stacks:
        p, shape = stacks[0]
        more = f" (and {len(stacks) - 1} other input(s))" if len(stacks) > 1 else ""
        print(f"mri-csc: note: {p.name}{more}: {tuple(shape)} read as a stack (slices, coils, ny, nx) of {shape[0]} "
              f"slice(s) of {shape[1]} coils; a 3-D volume (coils, nz, ny, nx) needs --layout volume",
              file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``mri-csc batch`` from parsed arguments; returns the exit status (1 when anything failed)."""
    from ..cli import resolve_maps_options  # noqa: PLC0415
    from .runner import reconstruct_batch  # noqa: PLC0415

    maps = resolve_maps_options(args)
    if maps is None and not args.maps:  # the default: the inputs' own maps, else ESPIRiT, said in one line as recon
        _note_espirit(args)
    _note_layout(args)
    try:
        report = reconstruct_batch(
            args.inputs, args.out, method=args.method, params=parse_params(args.param),
            maps=maps, maps_file=args.maps, device=args.device, scheduler=args.scheduler,
            n_workers=args.workers, retries=args.retries, resume=args.resume, seed=args.seed,
            output_format=args.output_format, show_pbar=not args.no_progress, layout=args.layout,
            timeout=args.timeout, on_start=_announce, calib_width=args.calib_width,
            espirit={"method": args.espirit, "thresh": args.espirit_thresh, "crop": args.espirit_crop,
                     "kernel_width": args.espirit_kernel,
                     "maps": args.espirit_maps if args.espirit_maps != 1 else None},
            compress_coils=args.compress_coils, prewhiten=False if args.no_prewhiten else None,
            noise_file=args.noise, voxel_size=args.voxel_size)
    except (ConnectionError, ImportError) as exc:  # user errors the main CLI does not list
        print(f"mri-csc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mri-csc: error: interrupted; finished slices are kept in {args.out}/.partial/ "
              "- rerun with --resume to complete them", file=sys.stderr)
        return 130
    print(report.summary())
    return 0 if report.ok else 1


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m mri_csc.batch.cli``)."""
    parser = argparse.ArgumentParser(prog="mri-csc")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001  (the contract of mri-csc's main)
        from mri_csc.cli import report_error  # noqa: PLC0415

        return report_error(exc)


if __name__ == "__main__":
    sys.exit(main())
