import numpy as np
import pytest
import sigpy.mri as mr

from mri_csc import backend
from mri_csc.operators import FFT, CoilSensitivity, Identity, Mask, Scaled, Sense, dot_test
from mri_csc.operators.nufft import NUFFTSense

from .conftest import random_complex


def _operators(rng):
    maps2 = random_complex(rng, (4, 20, 16))
    maps3 = random_complex(rng, (3, 6, 10, 8))
    mask2 = (rng.random((20, 16)) < 0.4).astype(np.float32)
    mask3 = (rng.random((6, 10, 1)) < 0.5).astype(np.float32)  # broadcasts along readout
    return {
        "fft2": FFT((3, 20, 16), ndim=2),
        "fft3": FFT((6, 10, 8), ndim=3),
        "coils": CoilSensitivity(maps2),
        "mask": Mask(mask2, (4, 20, 16)),
        "sense2": Sense(maps2, mask2),
        "sense3": Sense(maps3, mask3),
        "sense-full": Sense(maps2),
        "single-coil": Sense(np.ones((1, 20, 16), np.complex64), mask2),
        "scaled-compose": Scaled(FFT((4, 20, 16)), 2 - 1j) @ CoilSensitivity(maps2),
        # non-Cartesian (eps 1e-6 so that the Toeplitz normal meets the generic 1e-5 tolerance)
        "nufft2": NUFFTSense(maps2, (rng.random((30, 9, 2)) - 0.5).astype(np.float32) * [20, 16], eps=1e-6),
        "nufft3": NUFFTSense(maps3, (rng.random((90, 3)) - 0.5).astype(np.float32) * [6, 10, 8], eps=1e-6),
        "nufft-direct": NUFFTSense(maps2, (rng.random((120, 2)) - 0.5).astype(np.float32) * [20, 16],
                                   toeplitz=False),
        "nufft-sigpy": NUFFTSense(maps2, (rng.random((120, 2)) - 0.5).astype(np.float32) * [20, 16],
                                  backend="sigpy"),
    }


NAMES = list(_operators(np.random.default_rng(0)))


@pytest.mark.parametrize("name", NAMES)
def test_adjoint_dot_product(name, rng):
    op = _operators(rng)[name]
    assert dot_test(op, rng) < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_linearity_and_dtype(name, rng):
    op = _operators(rng)[name]
    x, y = random_complex(rng, op.ishape), random_complex(rng, op.ishape)
    a, b = np.complex64(0.7 - 0.2j), np.complex64(-1.3 + 0.5j)
    lhs = op(a * x + b * y)
    rhs = a * op(x) + b * op(y)
    assert lhs.dtype == np.complex64
    assert np.linalg.norm(lhs - rhs) <= 1e-5 * np.linalg.norm(rhs)


@pytest.mark.parametrize("name", NAMES)
def test_normal_equals_adjoint_of_forward(name, rng):
    op = _operators(rng)[name]
    x = random_complex(rng, op.ishape)
    ref = op.H(op(x))
    assert np.linalg.norm(op.N(x) - ref) <= 1e-5 * np.linalg.norm(ref)


def test_sense_matches_sigpy(rng):
    maps = random_complex(rng, (6, 24, 18))
    mask = (rng.random((24, 18)) < 0.35).astype(np.float32)
    x = random_complex(rng, (24, 18))
    y = random_complex(rng, (6, 24, 18))
    ours = Sense(maps, mask)
    theirs = mr.linop.Sense(maps, weights=mask)
    fwd, ref = ours(x), theirs * x
    assert np.linalg.norm(fwd - ref) <= 1e-5 * np.linalg.norm(ref)
    adj, ref_adj = ours.H(y), theirs.H * y
    assert np.linalg.norm(adj - ref_adj) <= 1e-5 * np.linalg.norm(ref_adj)


def test_shape_errors_name_shapes(rng):
    op = Sense(random_complex(rng, (2, 8, 8)))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        op(np.zeros((8, 9), np.complex64))
    with pytest.raises(ValueError, match="compose"):
        Identity((3,)) @ Identity((4,))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["sense2", "sense3"])
def test_sense_gpu_parity(name, rng):
    op = _operators(rng)[name]
    x = random_complex(rng, op.ishape)
    gop = Sense(backend.to_device(op.maps, "gpu"), backend.to_device(op.mask, "gpu"))
    out = backend.to_numpy(gop(backend.to_device(x, "gpu")))
    np.testing.assert_allclose(out, op(x), rtol=1e-4, atol=1e-5)
    assert dot_test(gop, rng, device="gpu") < 1e-5
