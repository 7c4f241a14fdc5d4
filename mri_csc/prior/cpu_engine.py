r"""The CPU engine of the sparse coder: fused kernels, the cache-blocked sweep and its threads.

:class:`~mri_csc.prior.sparse_coding.ConvSparseCoder` states the algorithm (ADMM for
ConvBPDN); this module holds how its element-wise work runs fast on NumPy arrays, and nothing
of the algorithm beyond the formulas of one sweep:

- :func:`kernels` imports :mod:`mri_csc.prior._kernels` (numba) on first use, with a Ctrl-C
  during the first compilation held back (:func:`sigint_deferred`) and raised afterwards;
- :func:`fused` says whether the kernels can run on some arrays;
- :func:`sweep` runs the code half of one ADMM step one cache-sized block of code maps at a
  time, on :func:`~mri_csc.backend.fft_workers` threads of a shared pool (:func:`sweep_pool`,
  started afresh in a forked child).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numpy as np
import scipy.fft

from ..backend import fft_workers

__all__ = ["SWEEP_BLOCK_BYTES", "fused", "kernels", "sigint_deferred", "sweep", "sweep_pool"]


@contextmanager
def sigint_deferred():
    """Record a Ctrl-C (SIGINT) in the main thread instead of raising it, and raise it on exit.

    numba's compiler callbacks print and swallow a KeyboardInterrupt raised inside them, so a
    Ctrl-C during the first (uncached) compilation of the kernels would be lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        raise KeyboardInterrupt


@functools.cache
def kernels():
    """:mod:`mri_csc.prior._kernels`, imported (and compiled, or loaded from numba's cache) on
    first use: numba's import costs ~0.5 s, which ``import mri_csc`` should not pay."""
    with sigint_deferred():
        from . import _kernels  # noqa: PLC0415
    return _kernels


#: bytes of code maps one block of :func:`sweep` handles (its working set, with the spectra and
#: scratch, is about 3x this: well inside a core's L2 cache)
SWEEP_BLOCK_BYTES = 1 << 18


@functools.cache
def sweep_pool(n_threads: int) -> ThreadPoolExecutor:
    """Helper threads for :func:`sweep` (the calling thread does one share); one pool per
    :func:`~mri_csc.backend.fft_workers` setting, whatever the problem size."""
    return ThreadPoolExecutor(max(1, n_threads), thread_name_prefix="mri_csc-sweep")


# a forked child inherits the pool object but not its threads: start afresh there
if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=sweep_pool.cache_clear)


def fused(*arrays):
    """The fused CPU kernels when they can run on ``arrays`` (NumPy, one dtype, contiguous), else ``None``."""
    if type(arrays[0]) is not np.ndarray:
        return None
    kern = kernels()
    return kern if kern.ENABLED and kern.available(*arrays) else None


def sweep(Y, Yold, U, vf, dv, df, tf, code_shape, a, thr):
    r"""The code half of a ConvBPDN ADMM step, one cache-sized block of code maps at a time.

    Arrays (real NumPy codes, their real-FFT spectra): codes ``Y``, ``Yold``, ``U``
    ``(*B, K, *code_shape)``; ``vf`` their spectra's shape, holding :math:`\hat v = F(Y_{old} -
    U)` on entry; filter spectra ``df (K, *F)``; the Sherman–Morrison solve ``tf (*B, *F)``;
    ``dv (*B, *F)``, overwritten. For each block of maps :math:`k` (same batch index :math:`b`)
    it runs, while the block stays in cache: the z-step :math:`\hat x_k = \hat v_k + \bar{\hat
    d}_k \hat t_b` (in place in ``vf``), :math:`x_k = F^{-1}\hat x_k`, the fused relaxation and
    soft threshold (:func:`~mri_csc.prior._kernels.relax_shrink`, relaxation ``a``, threshold
    ``thr``: writes ``Y``, ``U`` and ``Y - U``), :math:`\hat v_k = F(y_k - u_k)` back into
    ``vf`` and its share of :math:`dv_b = \sum_k \hat d_k \hat v_k`. The full-array path
    streams each code array through memory several times per step; here ``X`` and ``Y - U``
    never leave the cache. Blocks are shared among :func:`~mri_csc.backend.fft_workers`
    threads (numba and pocketfft release the GIL), each with one-thread FFTs and its own
    partial ``dv``. The split is static, so the partial sums always add up in the same order:
    for a given thread count, results are bit-identical from run to run.

    Returns the six code norms of :func:`~mri_csc.prior._kernels.relax_shrink` (five squared
    norms for the residuals, then the ℓ1 norm of ``Y``), summed.
    """
    kern = kernels()
    ndim = len(code_shape)
    n_k = df.shape[0]
    axes = tuple(range(-ndim, 0))
    fshape = vf.shape[-ndim:]
    Y, Yold, U = (arr.reshape(-1, *code_shape) for arr in (Y, Yold, U))
    V = vf.reshape(-1, *fshape)
    dfk = df.reshape(n_k, *fshape)
    tfb = tf.reshape(-1, *fshape)
    # blocks [m0, m1) of flat map indices (channel b = m // K), never across a channel
    per_block = max(1, SWEEP_BLOCK_BYTES // (math.prod(code_shape) * Y.itemsize))
    blocks = [(m, min(m + per_block, b0 + n_k)) for b0 in range(0, len(Y), n_k)
              for m in range(b0, b0 + n_k, per_block)]
    n_threads = max(1, min(fft_workers(), len(blocks)))
    dvb = dv.reshape(-1, *fshape)

    def run(share):
        dv_part = np.zeros_like(dvb)
        tmp = np.empty((per_block, *code_shape), Y.dtype)
        norms = [0.0] * 6
        for m0, m1 in share:
            b, k0 = divmod(m0, n_k)
            k1 = k0 + m1 - m0
            v = V[m0:m1]
            kern.add_filter_product(v, dfk[k0:k1], tfb[b])
            x = scipy.fft.irfftn(v, s=code_shape, axes=axes, workers=1)
            w = tmp[: m1 - m0]
            got = kern.relax_shrink(x, Yold[m0:m1], U[m0:m1], Y[m0:m1], w, a, thr)
            norms = [p + q for p, q in zip(norms, got, strict=True)]
            v[...] = scipy.fft.rfftn(w, axes=axes, workers=1)
            kern.filter_sum(dfk[k0:k1], v, dv_part[b], accumulate=True)
        return dv_part, norms

    shares = [blocks[i * len(blocks) // n_threads : (i + 1) * len(blocks) // n_threads]
              for i in range(n_threads)]
    futures = []
    for sh in shares[1:]:
        try:
            futures.append(sweep_pool(fft_workers() - 1).submit(run, sh))
        except RuntimeError:  # interpreter shutting down (a late thread, atexit): the rest runs here
            break
    try:
        results = [run(shares[0])]
        results += [futures[i].result() if i < len(futures) else run(sh) for i, sh in enumerate(shares[1:])]
    except BaseException:  # e.g. Ctrl-C: let the helpers finish their blocks before unwinding
        wait(futures)
        raise
    np.copyto(dvb, results[0][0])
    for dv_part, _ in results[1:]:
        dvb += dv_part
    return tuple(sum(r[1][i] for r in results) for i in range(6))
