r"""A 3-D Cartesian problem as one 2-D problem per readout position.

When the sampling pattern of a volume is the same at every readout position :math:`k_x` (the readout
fully sampled, the undersampling over the phase-encoding plane :math:`(k_z, k_y)`, as 3-D Cartesian
scans acquire it), the inverse FFT along the readout separates the data term exactly:

.. math::

    \|M F_{zyx} S u - y\|_2^2 = \sum_x \|M_{zy} F_{zy} S_{\cdot,x}\, u_{\cdot,x} - (F_x^{-1} y)_{\cdot,x}\|_2^2,

with :math:`M = M_{zy} \otimes 1_x` and :math:`F_x` unitary. A prior that is a sum over readout positions of
2-D priors on the :math:`(z, y)` planes then splits the problem into ``nx`` independent 2-D problems
``(coils, nz, ny)`` (each with its own data scale and noise estimate, as :func:`mri_csc.reconstruct` would
give a 2-D slice). ``mri-csc batch --layout volume`` runs the same split as one task per plane; this module
runs it inside one call (:func:`solve_per_readout`), the planes shared among :func:`~mri_csc.backend.fft_workers`
threads on the CPU (each with one FFT thread: 1.4-2x faster than one plane at a time with two-thread FFTs on
2 cores over four runs, the same image), one at a time on a GPU.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ..backend import fft_workers, ifftc, thread_fft_workers
from .problem import ReconProblem, make_problem

__all__ = ["readout_separable", "solve_per_readout"]

log = logging.getLogger(__name__)


def readout_separable(problem: ReconProblem) -> bool:
    """True for a 3-D Cartesian problem whose mask is the same at every readout position (the last axis)."""
    if problem.ndim != 3 or getattr(problem, "trajectory", None) is not None or problem.mask is None:
        return False
    m = problem.xp.broadcast_to(problem.mask, problem.image_shape)
    return bool((m == m[..., :1]).all())


def solve_per_readout(problem: ReconProblem, solve_plane, *, x0=None, noise_std="auto", show_pbar: bool = False,
                      desc: str = "csc"):
    """Solve a readout-separable 3-D problem as ``nx`` 2-D problems (see the module docstring).

    Parameters
    ----------
    problem : ReconProblem
        3-D Cartesian, :func:`readout_separable`.
    solve_plane : callable
        ``solve_plane(plane, x0=..., noise_std=...) -> (image, history, params)``: one 2-D problem's solve,
        returning its image in the plane's scaled units (as a method function does) and the parameters it
        resolved.
    x0 : array ``(nz, ny, nx)`` or None
        Initial image in the units of the input data (as :func:`mri_csc.reconstruct` takes it).
    noise_std : float or "auto"
        The noise standard deviation in the units of the input k-space (the readout FFT is unitary, so it
        is each plane's too), or ``"auto"``: each plane estimates its own.

    Returns
    -------
    image : array ``(nz, ny, nx)``
        In the problem's scaled units; zero on planes where every coil map, or every sample, is zero.
    history : list of dict
        Every plane's records, each with its ``"plane"`` (the readout index ``x``).
    planes : list of dict
        One record per readout position: ``x``, ``skipped`` (a reason, or None) and the resolved parameters
        and iteration count of the plane's solve.
    """
    xp = problem.xp
    # the samples as measured (kspace is w y for a mask of weights w; each plane's make_problem applies w once)
    hybrid = ifftc(problem.measured(), axes=(-1,))  # (coils, nz, ny, nx): kz, ky, x
    mask = xp.ascontiguousarray(xp.broadcast_to(problem.mask, problem.image_shape)[..., 0])
    if x0 is not None:  # to the problem's scaled units, each plane's input units
        x0 = x0 * (problem.maps_gain / problem.scale)
    if noise_std != "auto":
        noise_std = float(noise_std) / problem.scale
    nx = problem.image_shape[-1]

    def solve(x):
        """Readout position ``x``: ``(x, (image, history, params), None)``, or ``(x, None, reason)`` when skipped."""
        maps = xp.ascontiguousarray(problem.maps[..., x])
        k = xp.ascontiguousarray(hybrid[..., x])
        if not bool(xp.any(maps != 0)):
            return x, None, "no coil map energy"
        if not bool(xp.any(k != 0)):
            return x, None, "no data"
        start = None if x0 is None else xp.ascontiguousarray(x0[..., x])
        try:
            plane = make_problem(k, maps, mask, device=problem.device, scale=True, check_maps=False)
            image, history, params = solve_plane(plane, x0=start, noise_std=noise_std)
        except (ValueError, ArithmeticError, RuntimeError) as e:  # which plane failed, in the message
            raise _at_position(e, x, nx) from e
        return x, (image * image.real.dtype.type(plane.scale / plane.maps_gain), history, params), None

    image = xp.zeros(problem.image_shape, dtype=problem.kspace.dtype)
    history, planes = [], []
    threads = 1 if problem.device.kind != "cpu" else min(fft_workers(), nx)  # a GPU: in this thread, its context
    # the planes share the cores: BLAS (the noise estimate's SVDs) runs one thread each, as the FFTs do; under
    # load OpenBLAS's own threads on top of the planes' had made the run 3x slower (117 s against 35 s)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_input_checks_said_once())  # before the pool starts any plane
        if threads > 1:
            stack.enter_context(threadpool_limits(1, user_api="blas"))
            pool = stack.enter_context(ThreadPoolExecutor(threads))
            solved = pool.map(lambda x: _one_thread(solve, x), range(nx))
        else:
            solved = map(solve, range(nx))
        bar = stack.enter_context(tqdm(total=nx, desc=f"{desc} per readout", disable=not show_pbar, leave=False))
        for x, result, skipped in solved:
            bar.update()
            if result is None:
                planes.append({"x": x, "skipped": skipped})
                continue
            plane_image, plane_history, params = result
            image[..., x] = plane_image
            history += [{**h, "plane": x} for h in plane_history]
            planes.append({"x": x, "skipped": None, "iterations": len(plane_history), **params})
    if not any(p["skipped"] is None for p in planes):
        log.warning("%s per readout: every readout position was skipped (no coil map energy or no data): the "
                    "image is zero", desc)
    return image, history, planes


#: the loggers of the input checks :func:`make_problem` runs: the volume's warnings were given once already
_INPUT_CHECK_LOGGERS = ("mri_csc.validate", "mri_csc.recon.problem")


@contextlib.contextmanager
def _input_checks_said_once():
    """Within the block, the input checks' warnings (mask values, samples that hold zero, map power) are not
    repeated for each plane: the volume's own :func:`make_problem` gave them. Errors still propagate."""
    def below_warning(record):
        return record.levelno < logging.WARNING

    loggers = [logging.getLogger(name) for name in _INPUT_CHECK_LOGGERS]
    for logger in loggers:
        logger.addFilter(below_warning)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(below_warning)


def _at_position(error: Exception, x: int, nx: int) -> Exception:
    """``error`` with its readout position named in front of its message (the same type where it takes one
    message; else the error as it was)."""
    try:
        return type(error)(f"readout position x = {x} of {nx}: {error}")
    except TypeError:
        return error


def _one_thread(func, *args):
    """``func(*args)`` with one FFT thread: the planes, not the FFTs, share the cores."""
    with thread_fft_workers(1):
        return func(*args)
