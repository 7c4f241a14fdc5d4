r"""Baseline methods: zero-filled, SENSE by CG, and SigPy's ℓ1-wavelet and TV.

All take a scaled :class:`~mri_csc.recon.problem.ReconProblem`, so one default
λ works across data sets.

- ``zero-filled``: :math:`x = S^H F^H y / \sum_c |S_c|^2` on the coil support (:math:`y` the samples as
  acquired, :meth:`~mri_csc.recon.problem.ReconProblem.measured`).
- ``sense``: CG on :math:`(A^H A + \lambda I) x = A^H y`.
- ``l1wavelet``: ``sigpy.mri.app.L1WaveletRecon``,
  :math:`\min_x \tfrac12\|Ax-y\|^2 + \lambda\|\Psi x\|_1` (Daubechies-4).
- ``tv``: ``sigpy.mri.app.TotalVariationRecon``,
  :math:`\min_x \tfrac12\|Ax-y\|^2 + \lambda\|\nabla x\|_1`.

Fractional mask values :math:`w` are data weights applied once, :math:`A = wFS`: every method fits
:math:`\tfrac12\|w(FSx - y)\|^2`. SigPy's ``weights`` and BART's pattern :math:`W` enter as :math:`\sqrt W`
on model and data, so both get :math:`W = w^2`
(:meth:`~mri_csc.recon.problem.ReconProblem.data_weights`) with the samples as acquired.

SigPy picks its step sizes by a power iteration (``sigpy.app.MaxEig``) from a random start vector
drawn from the global ``np.random`` (``cupy.random`` on a GPU), and its apps take no start vector
or generator. So the two SigPy methods run with that global generator seeded with
:data:`SIGPY_SEED` and put back afterwards (:func:`_seeded_global_rng`): the same input gives the
same image bit for bit, and the caller's random stream is left as it was (not thread-safe: another
thread drawing from ``np.random`` meanwhile would see the fixed seed).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from tqdm.auto import tqdm

from ..solvers import History, conjugate_gradient
from .problem import ReconProblem
from .registry import Param, register_method

__all__ = ["zero_filled", "sense", "sigpy_l1wavelet", "sigpy_tv", "SIGPY_SEED"]

#: the seed of the global generator while a SigPy method runs (its power iteration's start vector)
SIGPY_SEED = 0


def zero_filled(problem: ReconProblem, *, show_pbar: bool = False):
    r"""Coil-combined adjoint of the samples as acquired, :math:`S^H F^H y` (data weights :math:`w`
    left out: :math:`A^H(y\,/\,w)` on the sampled points), normalised by :math:`\sum_c |S_c|^2`."""
    xp = problem.xp
    m = problem.mask
    img = problem.operator.adjoint(xp.where(m > 0, problem.measured() / xp.where(m > 0, m, 1), 0)) \
        if problem.weighted else problem.adjoint_image()
    sos = problem.sense().coils.sum_of_squares()
    out = xp.where(sos > 0, img / xp.where(sos > 0, sos, 1), 0).astype(img.dtype)
    return out, History()


def sense(problem: ReconProblem, *, lam: float, max_iter: int, tol: float, show_pbar: bool = False):
    r"""SENSE: CG on :math:`(A^H A + \lambda I)x = A^H y` from zero (parameters checked by the registry)."""
    op = problem.sense()
    history = History()
    b = op.adjoint(problem.kspace)
    pbar = tqdm(total=max_iter, desc="sense", disable=not show_pbar, leave=False)

    def record(k, x, rnorm):
        history.append(residual=rnorm)
        pbar.update()

    precond = getattr(problem, "preconditioner", None)  # non-Cartesian with dcf=: density compensation
    P = precond(lam) if precond is not None else None
    if P is None:
        x = conjugate_gradient(lambda v: op.normal(v) + lam * v, b, max_iter=max_iter, tol=tol, callback=record)
    else:  # CG on P (A^H A + lam) P z = P b, x = P z: the same solution, better conditioned
        x = P(conjugate_gradient(lambda v: P(op.normal(P(v)) + lam * P(v)), P(b), max_iter=max_iter, tol=tol,
                                 callback=record))
    pbar.close()
    return x, history


def _sigpy_device(problem: ReconProblem):
    import sigpy as sp  # noqa: PLC0415

    return sp.Device(-1 if problem.device.kind == "cpu" else problem.device.index)


@contextmanager
def _seeded_global_rng(problem: ReconProblem):
    """Seed the global generator SigPy draws from (``np.random``; ``cupy.random`` too on a GPU) with
    :data:`SIGPY_SEED`, and restore the caller's state on exit, error or not."""
    state = np.random.get_state()
    cp_state = None
    if problem.device.kind != "cpu":
        import cupy  # noqa: PLC0415

        cp_state = cupy.random.get_random_state()
        cupy.random.set_random_state(cupy.random.RandomState(SIGPY_SEED))
    np.random.seed(SIGPY_SEED)
    try:
        yield
    finally:
        np.random.set_state(state)
        if cp_state is not None:
            cupy.random.set_random_state(cp_state)


def _run_sigpy_app(app, name: str, max_iter: int, show_pbar: bool):
    """Drive a SigPy App step by step so that each iteration is timed."""
    history = History()
    pbar = tqdm(total=max_iter, desc=name, disable=not show_pbar, leave=False)
    while not app.alg.done():
        app._pre_update()
        app.alg.update()
        app._post_update()
        resid = getattr(app.alg, "resid", None)
        history.append(**({"residual": float(resid)} if resid is not None else {}))
        pbar.update()
    pbar.close()
    return app._output(), history


def sigpy_l1wavelet(problem: ReconProblem, *, lam: float, max_iter: int, show_pbar: bool = False):
    """SigPy ``L1WaveletRecon`` on the scaled problem."""
    from sigpy.mri.app import L1WaveletRecon  # noqa: PLC0415

    with _seeded_global_rng(problem):  # SigPy's power iteration: deterministic, the caller's RNG untouched
        app = L1WaveletRecon(problem.measured(), problem.maps, lam, weights=problem.data_weights(),
                             coord=getattr(problem, "trajectory", None),  # non-Cartesian: SigPy's NUFFT
                             device=_sigpy_device(problem), max_iter=max_iter, show_pbar=False)
        return _run_sigpy_app(app, "l1wavelet", max_iter, show_pbar)


def sigpy_tv(problem: ReconProblem, *, lam: float, max_iter: int, show_pbar: bool = False):
    """SigPy ``TotalVariationRecon`` on the scaled problem."""
    from sigpy.mri.app import TotalVariationRecon  # noqa: PLC0415

    with _seeded_global_rng(problem):  # SigPy's power iteration: deterministic, the caller's RNG untouched
        app = TotalVariationRecon(problem.measured(), problem.maps, lam, weights=problem.data_weights(),
                                  coord=getattr(problem, "trajectory", None),  # non-Cartesian: SigPy's NUFFT
                                  device=_sigpy_device(problem), max_iter=max_iter, show_pbar=False)
        return _run_sigpy_app(app, "tv", max_iter, show_pbar)


LAM = Param(0.005, "float", lo=0)
MAX_ITER = Param(100, "int", lo=1)

register_method("zero-filled", zero_filled, {}, "coil-combined zero-filled inverse FFT")
register_method("sense", sense, {"lam": Param(0.0, "float", lo=0), "max_iter": Param(30, "int", lo=1),
                                 "tol": Param(1e-6, "float", lo=0)}, "SENSE by conjugate gradient")
register_method("l1wavelet", sigpy_l1wavelet, {"lam": LAM, "max_iter": MAX_ITER},
                "SigPy L1WaveletRecon (l1 on Daubechies-4 wavelets)")
register_method("tv", sigpy_tv, {"lam": LAM, "max_iter": MAX_ITER}, "SigPy TotalVariationRecon")
