"""Sampling masks: exact acceleration, reproducibility, calibration, Poisson-disc character, errors."""

import logging
import time

import numpy as np
import pytest
from scipy import ndimage

from mri_csc.sim.masks import MASK_KINDS, calibration_region, realized_acceleration, sample_mask

SHAPES = [(128, 128), (160, 128), (192, 192), (256, 256), (320, 320), (96, 200)]


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_acceleration_within_5_percent(kind):
    worst = 0.0
    for shape in SHAPES:
        for accel in (2, 4.5, 8):
            for seed in (0, 1):
                m = sample_mask(kind, shape, accel, seed=seed)
                assert m.shape == shape and m.dtype == np.float32
                assert set(np.unique(m)) <= {0.0, 1.0}
                worst = max(worst, abs(realized_acceleration(m) / accel - 1))
    assert worst < 0.05


def test_same_seed_same_mask_and_rng():
    for kind in MASK_KINDS:
        a = sample_mask(kind, (96, 80), 4, seed=7)
        b = sample_mask(kind, (96, 80), 4, seed=7)
        c = sample_mask(kind, (96, 80), 4, seed=8)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        d = sample_mask(kind, (96, 80), 4, rng=np.random.default_rng(7))
        np.testing.assert_array_equal(a, d)


@pytest.mark.parametrize("kind", ["poisson", "uniform-random"])
def test_calibration_centre_fully_sampled_2d(kind):
    m = sample_mask(kind, (128, 96), 6, calib=(20, 16), seed=3)
    sl = calibration_region((128, 96), (20, 16))
    assert sl == (slice(54, 74), slice(40, 56))
    assert m[sl].all()


def test_line_masks_fastmri_convention():
    # lines are columns (last axis); centre fraction 8% at 4x and 4% at 8x
    for accel, frac in ((4, 0.08), (8, 0.04)):
        for kind in ("random-lines", "equispaced-lines"):
            m = sample_mask(kind, (64, 200), accel, seed=0)
            assert (m == m[:1]).all()  # identical rows: whole columns sampled
            n_low = round(200 * frac)
            assert m[0, calibration_region((200,), n_low)[0]].all()
    eq = sample_mask("equispaced-lines", (64, 256), 4, calib=0, seed=0)[0]
    gaps = np.diff(np.flatnonzero(eq))
    assert gaps.min() >= 3 and gaps.max() <= 5


def test_3d_masks():
    m = sample_mask("poisson", (40, 48, 32), 4, calib=16, seed=0)
    assert m.shape == (40, 48, 32)
    assert (m == m[:, :, :1]).all()  # readout x fully sampled
    assert abs(realized_acceleration(m) / 4 - 1) < 0.05
    assert m[calibration_region((40, 48), 16) + (slice(None),)].all()
    lines = sample_mask("random-lines", (8, 32, 64), 4, seed=0)
    assert (lines == lines[:1, :1]).all()


def test_poisson_looks_like_poisson_disc():
    m = sample_mask("poisson", (256, 256), 6, calib=0, seed=0).astype(bool)
    # variable density: the inner disc is sampled more densely than the outer ring
    y, x = np.mgrid[-128:128, -128:128] / 128
    r = np.hypot(y, x)
    inner, outer = m[r < 0.3].mean(), m[(r > 0.7) & (r < 1)].mean()
    assert inner > 2.5 * outer
    assert not m[r > 1.02].any()  # corners left empty
    # minimum distance: no two samples are 4-neighbours outside the densest centre
    ys, xs = np.nonzero(m & (r > 0.3))
    nb = ndimage.convolve(m.astype(int), np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]), mode="constant")
    assert (nb[ys, xs] == 0).all()
    # and it is not uniform random: nearest-neighbour gaps are far more regular
    u = sample_mask("uniform-random", (256, 256), 6, calib=0, seed=0).astype(bool)
    nb_u = ndimage.convolve(u.astype(int), np.ones((3, 3), int), mode="constant") - u
    assert (nb_u[u] > 0).mean() > 0.3


def test_poisson_is_fast_and_logs(caplog):
    sample_mask("poisson", (64, 64), 4, seed=0)  # warm up
    t = time.process_time()  # CPU time: a loaded CI machine stretches wall time, not this
    with caplog.at_level(logging.INFO, logger="mri_csc.sim.masks"):
        sample_mask("poisson", (320, 320), 4, seed=0)
    assert time.process_time() - t < 1.5  # ~0.15 s here
    assert "realised" in caplog.text


def test_bad_inputs():
    with pytest.raises(ValueError, match="poisson.*random-lines"):
        sample_mask("radial", (64, 64), 4)
    with pytest.raises(ValueError, match="accel must be.*>= 1; got 0.5"):
        sample_mask("poisson", (64, 64), 0.5)
    with pytest.raises(ValueError, match="larger than"):
        sample_mask("poisson", (64, 64), 2, calib=80)
    with pytest.raises(ValueError, match="more than the"):
        sample_mask("uniform-random", (64, 64), 8, calib=40)
    with pytest.raises(ValueError, match="calib=30 centre lines exceed"):
        sample_mask("random-lines", (64, 64), 4, calib=30)
    with pytest.raises(ValueError, match="shape"):
        sample_mask("poisson", (64,), 4)
    with pytest.raises(ValueError, match="seed or rng"):
        sample_mask("poisson", (64, 64), 4, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(ValueError, match="larger than shape"):
        calibration_region((10, 10), 12)
    assert realized_acceleration(np.zeros((4, 4))) == float("inf")
