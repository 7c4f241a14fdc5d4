"""NUFFT SENSE operator: against SigPy's NUFFT, the Cartesian FFT, its Toeplitz normal; density compensation."""

import numpy as np
import pytest
import sigpy as sp
import sigpy.mri as mr

from mri_csc.operators import Sense
from mri_csc.operators.nufft import NUFFT, NUFFTSense, grid_calibration, nufft_backends, pipe_menon_dcf

from .conftest import random_complex


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _coord(rng, n, shape):
    return ((rng.random((n, len(shape))) - 0.5) * np.array(shape)).astype(np.float32)


def _radial(n, spokes, ro):
    ang = np.arange(spokes) * np.pi / spokes
    r = (np.arange(ro) - ro / 2) * n / ro
    return np.stack([r * np.sin(ang)[:, None], r * np.cos(ang)[:, None]], -1).astype(np.float32)


@pytest.mark.parametrize("shape", [(24, 18), (21, 15), (6, 10, 8)])
@pytest.mark.parametrize("backend", ["finufft", "sigpy"])
def test_matches_sigpy_nufft_to_1e4(shape, backend, rng):
    """Forward and adjoint equal SigPy's NUFFT SENSE at an accuracy where SigPy's own error is ~1e-6."""
    if not nufft_backends()[backend]:
        pytest.skip(f"{backend} not installed")
    maps = random_complex(rng, (3, *shape))
    coord = _coord(rng, 240, shape).reshape(40, 6, len(shape))
    x, y = random_complex(rng, shape), random_complex(rng, (3, 40, 6))
    ours = NUFFTSense(maps, coord, backend=backend)
    theirs = sp.linop.NUFFT(maps.shape, coord, oversamp=2, width=8) * sp.linop.Multiply(shape, maps)
    assert ours(x).shape == (3, 40, 6)
    assert rel(ours(x), theirs * x) < 1e-4
    assert rel(ours.H(y), theirs.H * y) < 1e-4


def test_matches_sigpy_sense_coord_at_its_accuracy(rng):
    """``sigpy.mri.linop.Sense(coord=)`` (oversampling 1.25, width 4) carries ~1e-2 interpolation error."""
    shape = (32, 28)
    maps, x = random_complex(rng, (4, *shape)), random_complex(rng, shape)
    coord = _coord(rng, 500, shape)
    err = rel(NUFFTSense(maps, coord)(x), mr.linop.Sense(maps, coord=coord) * x)
    assert err < 2e-2


def test_integer_grid_is_the_cartesian_fft(rng):
    """On the full integer grid the NUFFT SENSE is the centred orthonormal Cartesian SENSE."""
    shape = (16, 12)
    maps, x = random_complex(rng, (3, *shape)), random_complex(rng, shape)
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1).astype(np.float32)
    np.testing.assert_allclose(NUFFTSense(maps, grid)(x), Sense(maps)(x), rtol=0, atol=1e-4 * np.abs(x).max())


def test_coordinates_wrap_periodically(rng):
    shape = (16, 12)
    maps, x = random_complex(rng, (2, *shape)), random_complex(rng, shape)
    coord = _coord(rng, 50, shape)
    shifted = coord + np.array([16, -12], np.float32)
    assert rel(NUFFTSense(maps, shifted)(x), NUFFTSense(maps, coord)(x)) < 1e-4


@pytest.mark.parametrize("shape", [(32, 32), (17, 22), (6, 10, 8)])
def test_toeplitz_normal_matches_forward_adjoint(shape, rng):
    maps, x = random_complex(rng, (3, *shape)), random_complex(rng, shape)
    coord = _radial(shape[-1], 20, 2 * shape[-1]) if len(shape) == 2 and shape[0] == shape[1] else \
        _coord(rng, 400, shape)
    op = NUFFTSense(maps, coord)
    assert rel(op.normal(x), op.H(op(x))) < 1e-4
    direct = NUFFTSense(maps, coord, toeplitz=False)
    assert rel(op.normal(x), direct.normal(x)) < 1e-4


def test_plans_are_made_once(rng, monkeypatch):
    import mri_csc.operators.nufft as nu

    calls = []
    real = nu._make_plans
    monkeypatch.setattr(nu, "_make_plans", lambda *a, **k: calls.append(1) or real(*a, **k))
    shape = (16, 16)
    op = NUFFTSense(random_complex(rng, (2, *shape)), _coord(rng, 60, shape))
    n_built = len(calls)  # the SENSE NUFFT and the Toeplitz kernel's
    x = random_complex(rng, shape)
    for _ in range(3):
        op.H(op(x))
        op.normal(x)
    assert len(calls) == n_built == 2


def test_bad_input_names_the_argument(rng):
    maps = random_complex(rng, (2, 16, 16))
    with pytest.raises(ValueError, match=r"coord must have shape \(\*samples, 2\)"):
        NUFFTSense(maps, np.zeros((10, 3), np.float32))
    bad = _coord(rng, 10, (16, 16))
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NUFFTSense(maps, bad)
    with pytest.raises(TypeError, match="real"):
        NUFFTSense(maps, bad.astype(np.complex64))
    with pytest.raises(ValueError, match="backend must be one of"):
        NUFFT((16, 16), _coord(rng, 10, (16, 16)), backend="nfft")
    with pytest.raises(ValueError, match="cufinufft"):
        NUFFT((16, 16), _coord(rng, 10, (16, 16)), backend="cufinufft")


def test_pipe_menon_dcf():
    n = 48
    grid = np.stack(np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2, indexing="ij"), -1).astype(np.float32)
    w = pipe_menon_dcf(grid, (n, n))
    np.testing.assert_allclose(w, 1, atol=2e-3)  # a full Cartesian grid needs no compensation
    ro = 2 * n
    w = pipe_menon_dcf(_radial(n, 76, ro), (n, n))
    assert w.shape == (76, ro) and w.dtype == np.float32
    # radial density falls as 1/|k|: weights grow linearly with the radius
    assert w[0, ro // 2 + 40] / w[0, ro // 2 + 20] == pytest.approx(2.0, rel=0.1)


def test_grid_calibration_recovers_the_cartesian_centre(rng):
    """Regridded radial centre ≈ the Cartesian centre of the same coil images."""
    from mri_csc.sim import birdcage_maps, shepp_logan

    n = 48
    img = shepp_logan((n, n)).astype(np.complex64)
    maps = birdcage_maps((n, n), 4)
    coord = _radial(n, 120, 2 * n)
    y = NUFFTSense(maps, coord)(img)
    cal = grid_calibration(y, coord, (n, n), pipe_menon_dcf(coord, (n, n)), width=16)
    ref = Sense(maps)(img)
    c = slice(n // 2 - 8, n // 2 + 8)  # the 16-wide block
    assert rel(cal[:, c, c], ref[:, c, c]) < 0.2  # gridding error (0.14 here), not a convention mismatch
    assert not cal[:, :10].any()


@pytest.mark.gpu
def test_gpu_matches_cpu(rng):
    from mri_csc import backend

    shape = (32, 24)
    maps, x = random_complex(rng, (3, *shape)), random_complex(rng, shape)
    coord = _coord(rng, 300, shape)
    cpu = NUFFTSense(maps, coord)
    gpu = NUFFTSense(backend.to_device(maps, "gpu"), backend.to_device(coord, "gpu"))
    xg = backend.to_device(x, "gpu")
    assert rel(backend.to_numpy(gpu(xg)), cpu(x)) < 1e-4
    assert rel(backend.to_numpy(gpu.normal(xg)), cpu.normal(x)) < 1e-4


def test_residual_norm_without_a_nufft(rng):
    shape = (20, 16)
    maps, x = random_complex(rng, (3, *shape)), random_complex(rng, shape)
    coord = _coord(rng, 200, shape)
    y = random_complex(rng, (3, 200))
    op = NUFFTSense(maps, coord)
    ref = np.linalg.norm(op(x) - y) ** 2
    assert float(op.residual_norm2(x, op.uncentred(y))) == pytest.approx(ref, rel=1e-4)
    assert float(op.residual_norm2(2 * x, y)) == pytest.approx(np.linalg.norm(op(2 * x) - y) ** 2, rel=1e-4)
