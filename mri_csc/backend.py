"""Array backend: the one place that chooses NumPy or CuPy.

Every other module asks this one which array module an array belongs to
(:func:`get_xp`), which device a call should run on (:func:`resolve_device`),
moves arrays explicitly (:func:`to_device`, :func:`to_numpy`) and takes its
centred, orthonormal FFTs from here (:func:`fftc`, :func:`ifftc`).

CuPy is imported lazily and only here. "CuPy imports" is not taken to mean
"a GPU is usable": :func:`gpu_available` asks the CUDA runtime.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

__all__ = [
    "Device",
    "resolve_device",
    "gpu_available",
    "get_xp",
    "is_cupy_array",
    "to_device",
    "to_numpy",
    "fftc",
    "ifftc",
    "fft_workers",
    "set_fft_workers",
    "thread_fft_workers",
    "fftn_ortho",
    "ifftn_ortho",
]

_FFT_WORKERS: int | None = None
_THREAD = threading.local()  # a thread's own limit (thread_fft_workers), above the global one


@functools.lru_cache(maxsize=1)
def _cupy():
    """Return the ``cupy`` module, or ``None`` when it cannot be imported."""
    try:
        import cupy  # noqa: PLC0415
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


def gpu_available() -> bool:
    """Whether CuPy imports *and* the CUDA runtime reports a usable device."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return bool(cp.cuda.is_available()) and cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@dataclass(frozen=True)
class Device:
    """A compute device: ``kind`` is ``"cpu"`` or ``"gpu"``, ``index`` the GPU number."""

    kind: str
    index: int = 0

    @property
    def xp(self):
        """The array module for this device (``numpy`` or ``cupy``)."""
        return np if self.kind == "cpu" else _cupy()

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"

    def use(self):
        """Context manager that makes this device current (a no-op on the CPU)."""
        if self.kind == "cpu":
            import contextlib  # noqa: PLC0415

            return contextlib.nullcontext()
        return _cupy().cuda.Device(self.index)


def resolve_device(device: "str | Device | None" = "cpu") -> Device:
    """Parse ``"cpu"``, ``"gpu"`` or ``"gpu:N"`` (``"cuda"`` aliases ``"gpu"``).

    Raises
    ------
    ValueError
        On an unknown device string, or a GPU asked for where none is usable.
    """
    if isinstance(device, Device):
        spec = str(device)
    elif device is None:
        spec = "cpu"
    elif isinstance(device, str):
        spec = device.strip().lower()
    else:
        raise TypeError(f"device must be a string such as 'cpu', 'gpu' or 'gpu:0'; got {type(device).__name__}")
    if spec == "cpu":
        return Device("cpu")
    kind, _, index = spec.partition(":")
    if kind not in ("gpu", "cuda") or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'gpu' or 'gpu:N'; got {device!r}")
    if not gpu_available():
        reason = "CuPy is not installed" if _cupy() is None else "CuPy found no usable CUDA device"
        raise ValueError(
            f"device {device!r} asked for a GPU but none is usable ({reason}); "
            "install mri_csc[gpu] on a machine with an NVIDIA GPU, or use device='cpu'"
        )
    idx = int(index) if index else 0
    count = _cupy().cuda.runtime.getDeviceCount()
    if idx >= count:
        raise ValueError(f"device {device!r} asked for GPU {idx}, but only {count} GPU(s) are visible")
    return Device("gpu", idx)


def is_cupy_array(a: Any) -> bool:
    """True when ``a`` is a CuPy array (checked without importing CuPy)."""
    return type(a).__module__.startswith("cupy")


def get_xp(*arrays: Any):
    """Return the array module (``numpy`` or ``cupy``) shared by ``arrays``.

    Non-array arguments (``None``, scalars) are ignored. Mixing NumPy and CuPy
    arrays raises: nothing is copied between devices silently.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None and hasattr(a, "shape")}
    if len(kinds) > 1:
        raise TypeError(
            "arrays live on different devices (NumPy and CuPy mixed); move them explicitly with "
            "mri_csc.backend.to_device"
        )
    if kinds == {True}:
        return _cupy()
    return np


def to_device(a: Any, device: "str | Device" = "cpu"):
    """Copy ``a`` to ``device`` (a no-op when it is already there)."""
    dev = device if isinstance(device, Device) else resolve_device(device)
    if a is None:
        return None
    if dev.kind == "cpu":
        return to_numpy(a)
    cp = _cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(a)


def to_numpy(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array, copying from the GPU if needed."""
    if is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def fft_workers() -> int:
    """CPU threads for the FFT-bound work (this thread's :func:`thread_fft_workers` limit, else
    :func:`set_fft_workers`'s, else env ``MRI_CSC_FFT_WORKERS``, else all usable cores).

    ``scipy.fft`` runs with this many workers, and the sparse coder shares its blocked
    sweep among this many threads (:class:`mri_csc.prior.sparse_coding.ConvSparseCoder`).
    """
    own = getattr(_THREAD, "workers", None)
    if own is not None:
        return own
    if _FFT_WORKERS is not None:
        return _FFT_WORKERS
    env = os.environ.get("MRI_CSC_FFT_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def set_fft_workers(n: int | None) -> None:
    """Set the ``scipy.fft`` thread count (``None`` restores the default)."""
    global _FFT_WORKERS
    if n is not None and int(n) < 1:
        raise ValueError(f"fft workers must be >= 1; got {n}")
    _FFT_WORKERS = None if n is None else int(n)


@contextlib.contextmanager
def thread_fft_workers(n: int):
    """Within the block, :func:`fft_workers` is ``n`` in this thread only (other threads keep theirs): for
    the workers of a pool that already shares the cores among independent problems."""
    if int(n) < 1:
        raise ValueError(f"fft workers must be >= 1; got {n}")
    before = getattr(_THREAD, "workers", None)
    _THREAD.workers = int(n)
    try:
        yield
    finally:
        _THREAD.workers = before


def _fft_module(x):
    xp = get_xp(x)
    if xp is np:
        return scipy.fft, {"workers": fft_workers()}
    return xp.fft, {}


def fftc(x, axes: Sequence[int] = (-2, -1)):
    r"""Centred orthonormal FFT over ``axes``: :math:`\mathcal{S} F \mathcal{S}^{-1} x`.

    Implemented as ``fftshift(fftn(ifftshift(x)))`` with ``norm="ortho"``;
    the dtype of complex input is kept (complex64 stays complex64).
    """
    axes = tuple(axes)
    mod, kw = _fft_module(x)
    xp = get_xp(x)
    y = mod.fftn(xp.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho", **kw)
    return xp.fft.fftshift(y, axes=axes)


def ifftc(x, axes: Sequence[int] = (-2, -1)):
    r"""Centred orthonormal inverse FFT over ``axes``; the adjoint (and inverse) of :func:`fftc`."""
    axes = tuple(axes)
    mod, kw = _fft_module(x)
    xp = get_xp(x)
    y = mod.ifftn(xp.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho", **kw)
    return xp.fft.fftshift(y, axes=axes)


def fftn_ortho(x, axes: Sequence[int] = (-2, -1), overwrite_x: bool = False):
    """Uncentred orthonormal FFT over ``axes`` (no shifts), with ``scipy.fft`` worker threads on the CPU.

    Operators that fold the centring shifts into their own parameters (see
    :class:`mri_csc.operators.Sense`) use it to skip the per-call ``fftshift`` copies.
    ``overwrite_x`` lets the transform reuse ``x``'s memory (its content is then undefined).
    """
    axes = tuple(axes)
    mod, kw = _fft_module(x)
    return mod.fftn(x, axes=axes, norm="ortho", overwrite_x=overwrite_x, **kw)


def ifftn_ortho(x, axes: Sequence[int] = (-2, -1), overwrite_x: bool = False):
    """Uncentred orthonormal inverse FFT over ``axes``; the adjoint of :func:`fftn_ortho`."""
    axes = tuple(axes)
    mod, kw = _fft_module(x)
    return mod.ifftn(x, axes=axes, norm="ortho", overwrite_x=overwrite_x, **kw)


def _dct_module(x):
    xp = get_xp(x)
    if xp is np:
        # one thread: pocketfft's threaded DCTs of one image were 3x slower than a single thread
        # (0.55 ms against 0.20 ms for 256x256 float32 on 2 cores); the images here are small
        return scipy.fft, {"workers": 1}
    import cupyx.scipy.fft as cufft  # noqa: PLC0415

    return cufft, {}


def dctn_ortho(x, axes: Sequence[int] = (-2, -1)):
    """Orthonormal DCT-II over ``axes`` (real or complex input; complex transforms both parts)."""
    mod, kw = _dct_module(x)
    return mod.dctn(x, type=2, axes=tuple(axes), norm="ortho", **kw)


def idctn_ortho(x, axes: Sequence[int] = (-2, -1)):
    """Inverse of :func:`dctn_ortho` (its adjoint: the transform is orthonormal)."""
    mod, kw = _dct_module(x)
    return mod.idctn(x, type=2, axes=tuple(axes), norm="ortho", **kw)
