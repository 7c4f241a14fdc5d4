import numpy as np
import pytest

from mri_csc import backend
from mri_csc.backend import fftc, get_xp, ifftc, resolve_device

from .conftest import random_complex


def test_cpu_device_and_xp():
    dev = resolve_device("cpu")
    assert dev.kind == "cpu" and dev.xp is np
    assert get_xp(np.zeros(3), None, 1.0) is np


@pytest.mark.parametrize("bad", ["tpu", "gpu:x", "cpu:0", ""])
def test_unknown_device_names_the_value(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("[", r"\[")):
        resolve_device(bad)


def test_device_type_error():
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)


@pytest.mark.skipif(backend.gpu_available(), reason="this machine has a GPU")
def test_gpu_requested_without_gpu_is_clear():
    with pytest.raises(ValueError, match="none is usable"):
        resolve_device("gpu")


def test_fftc_is_centred_orthonormal_and_keeps_dtype(rng):
    x = random_complex(rng, (3, 16, 12))
    k = fftc(x)
    assert k.dtype == np.complex64
    np.testing.assert_allclose(np.linalg.norm(k), np.linalg.norm(x), rtol=1e-5)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(k, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ifftc(k), x, rtol=1e-4, atol=1e-5)
    # a centred delta transforms to a constant
    d = np.zeros((8, 8), np.complex64)
    d[4, 4] = 1
    np.testing.assert_allclose(fftc(d), np.full((8, 8), 1 / 8), atol=1e-6)


def test_fft_workers_setting():
    backend.set_fft_workers(1)
    assert backend.fft_workers() == 1
    backend.set_fft_workers(None)
    assert backend.fft_workers() >= 1
    with pytest.raises(ValueError):
        backend.set_fft_workers(0)


def test_thread_fft_workers_limits_only_its_own_thread():
    """A pool's worker takes one FFT thread while the caller (and other threads) keep theirs, and the limit is
    undone on leaving the block, also after an error."""
    import threading

    backend.set_fft_workers(3)
    try:
        seen = {}
        inside = threading.Event()
        release = threading.Event()

        def worker():
            with backend.thread_fft_workers(1):
                seen["worker"] = backend.fft_workers()
                inside.set()
                release.wait(5)

        t = threading.Thread(target=worker)
        t.start()
        inside.wait(5)
        seen["caller"] = backend.fft_workers()  # while the worker is inside its block
        release.set()
        t.join()
        assert seen == {"worker": 1, "caller": 3}
        with pytest.raises(RuntimeError), backend.thread_fft_workers(2):
            assert backend.fft_workers() == 2
            raise RuntimeError
        assert backend.fft_workers() == 3
        with pytest.raises(ValueError, match=">= 1"), backend.thread_fft_workers(0):
            pass
    finally:
        backend.set_fft_workers(None)


@pytest.mark.gpu
def test_numpy_cupy_mix_raises():
    import cupy as cp

    with pytest.raises(TypeError, match="different devices"):
        get_xp(np.zeros(2), cp.zeros(2))


@pytest.mark.gpu
def test_fftc_parity_gpu(rng):
    x = random_complex(rng, (4, 32, 32))
    g = backend.to_device(x, "gpu")
    np.testing.assert_allclose(backend.to_numpy(fftc(g)), fftc(x), rtol=1e-4, atol=1e-5)
