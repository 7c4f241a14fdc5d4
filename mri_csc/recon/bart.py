r"""BART ``pics`` baselines: ``bart-l1wavelet`` and ``bart-tv``.

Each call writes the (already scaled) k-space, coil maps and sampling pattern
as ``.cfl`` files in a temporary folder, runs the ``bart`` binary and reads the
image back.

- ``bart-l1wavelet``: ``bart pics -R W:7:0:λ`` (ℓ1 on Daubechies wavelets, FISTA),
  :math:`\min_x \tfrac12\|Ax-y\|^2 + \lambda\|\Psi x\|_1`.
- ``bart-tv``: ``bart pics -R T:3:0:λ`` (isotropic TV over x and y, ADMM),
  :math:`\min_x \tfrac12\|Ax-y\|^2 + \lambda\|\nabla x\|_1`.

Layout: our ``(coils, ny, nx)`` goes to BART's ``(x, y, z, coils)`` as
``(nx, ny, 1, coils)`` (see :func:`mri_csc.io.formats.to_bart`); BART's centred
unitary FFT matches ours, so the maps carry over unchanged.

Non-Cartesian problems (:mod:`mri_csc.recon.noncartesian`) run ``bart pics -t traj -e``:
the trajectory as BART's ``(3, samples, 1)`` (its first coordinate along its first axis, our
first image axis), the k-space as ``(1, samples, 1, coils)``, no pattern; ``-e`` scales the
step size by the maximum eigenvalue of :math:`A^HA`, which is not 1 for non-Cartesian
sampling. BART's NUFFT has our scaling (checked against ``bart nufft``: a factor 1.000),
so λ means the same.

Scaling: ``pics`` normally rescales the data itself. :func:`mri_csc.reconstruct`
has already divided the k-space by its BART-style scale, so ``-w 1`` is passed
to switch BART's own scaling off; λ therefore means the same thing as for the
other methods, and :func:`~mri_csc.reconstruct` multiplies the scale back.

``bart`` is looked up on ``PATH`` (or ``$BART``); when absent, the methods stay
registered but report why they are unavailable. CPU only.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..backend import to_numpy
from ..solvers import History
from .problem import ReconProblem
from .registry import Param, register_method

__all__ = ["bart_binary", "bart_available", "bart_pics"]

log = logging.getLogger(__name__)


def bart_binary() -> str | None:
    """Path to the ``bart`` executable (``$BART`` first, then ``PATH``), or None."""
    env = os.environ.get("BART")
    if env and os.access(env, os.X_OK):
        return env
    return shutil.which("bart")


def bart_available() -> str | None:
    """None when BART can be run, else the reason."""
    return None if bart_binary() else "the 'bart' binary is not on PATH (install BART or set $BART)"


def _bart_dims(a: np.ndarray) -> np.ndarray:
    """Our ``(coils, *spatial)`` → BART ``(x, y, z, coils)``."""
    from ..io.formats import to_bart  # noqa: PLC0415

    return to_bart(a)


def bart_pics(problem: ReconProblem, regularizer: str, *, max_iter: int, randshift: bool = True,
              extra: tuple[str, ...] = ()) -> tuple[np.ndarray, History]:
    """Run ``bart pics`` with one ``-R`` regulariser on a scaled problem."""
    from ..io.cfl import read_cfl, write_cfl  # noqa: PLC0415

    exe = bart_binary()
    if exe is None:
        raise RuntimeError(bart_available())
    if problem.device.kind != "cpu":
        raise ValueError("BART methods run on the CPU only")
    history = History()
    k = to_numpy(problem.measured())  # BART weights model and data by the pattern's square root
    maps = to_numpy(problem.maps)
    coord = getattr(problem, "trajectory", None)
    with tempfile.TemporaryDirectory(prefix="mri_csc_bart_") as tmp:
        kb, sb, pb, ob = (os.path.join(tmp, n) for n in ("kspace", "sens", "pattern", "out"))
        write_cfl(sb, _bart_dims(maps))
        if coord is None:
            write_cfl(kb, _bart_dims(k))
            write_cfl(pb, _bart_dims(np.broadcast_to(to_numpy(problem.data_weights()), k.shape[1:])[None]))
            sampling = ["-p", pb]
        else:  # non-Cartesian: samples flattened, trajectory (3, M, 1), k-space (1, M, 1, coils)
            c = to_numpy(coord).reshape(-1, coord.shape[-1])
            traj = np.zeros((3, c.shape[0], 1), np.complex64)
            traj[: c.shape[1], :, 0] = c[:, ::-1].T  # BART (x, y, z): our components reversed
            write_cfl(pb, traj)
            write_cfl(kb, k.reshape(k.shape[0], -1).T[None, :, None, :])
            sampling = ["-t", pb, "-e"]
        cmd = [exe, "pics", "-w", "1", "-R", regularizer, "-i", str(int(max_iter)), *sampling,
               *(() if randshift else ("-n",)), *extra, kb, sb, ob]
        log.debug("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS":
                              os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))})
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"bart pics failed (exit {proc.returncode}): {msg[-1] if msg else 'no output'}")
        out = read_cfl(ob)
    out = np.asarray(out)
    if out.size != int(np.prod(problem.image_shape)):
        raise RuntimeError(f"bart pics returned shape {out.shape}; expected image shape {problem.image_shape}")
    img = out.T.reshape(problem.image_shape)  # BART (nx, ny[, nz]): the axes reversed (see to_bart)
    history.append(iterations=int(max_iter))
    dtype = np.complex128 if k.dtype == np.complex128 else np.complex64
    image = img.astype(dtype) * problem.support
    return problem.device.xp.asarray(image), history


def bart_l1wavelet(problem: ReconProblem, *, lam: float, max_iter: int, randshift: bool, show_pbar: bool = False):
    """``bart pics -R W:7:0:λ`` (ℓ1-wavelet; parameters checked by the registry)."""
    return bart_pics(problem, f"W:7:0:{lam}", max_iter=max_iter, randshift=randshift)


def bart_tv(problem: ReconProblem, *, lam: float, max_iter: int, randshift: bool, show_pbar: bool = False):
    """``bart pics -R T:3:0:λ`` (isotropic TV over x, y; parameters checked by the registry)."""
    return bart_pics(problem, f"T:3:0:{lam}", max_iter=max_iter, randshift=randshift)


_PICS = {"lam": Param(0.005, "float", lo=0), "max_iter": Param(100, "int", lo=1), "randshift": Param(True, "bool")}
register_method("bart-l1wavelet", bart_l1wavelet, _PICS,
                "BART pics, l1 on wavelets (-R W:7:0:lam)", gpu=False, available=bart_available)
register_method("bart-tv", bart_tv, _PICS,
                "BART pics, total variation (-R T:3:0:lam)", gpu=False, available=bart_available)
