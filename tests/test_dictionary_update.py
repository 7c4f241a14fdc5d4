"""The shared parts of dictionary learning: the ρ rule, the coder's filter swap and the N-D dictionary update."""

import numpy as np
import pytest

from mri_csc.prior.conv import ConvSynthesis, _rfftn
from mri_csc.prior.csc_prior import CSCPrior
from mri_csc.prior.dictionary_update import ConvDictionaryUpdate
from mri_csc.prior.penalty import ResidualBalance
from mri_csc.prior.sparse_coding import ConvSparseCoder


def _unit(d):
    k = d.shape[0]
    return d / np.linalg.norm(d.reshape(k, -1), axis=1).reshape((k,) + (1,) * (d.ndim - 1))


# ----------------------------------------------------------------------------- the rho rule
def test_residual_balance_rules():
    dl = ResidualBalance.dictionary_learning()
    assert (dl.period, dl.due(10), dl.due(11)) == (10, True, False)
    assert dl.factor(11.0, 1.0) == 2.0 and dl.factor(1.0, 11.0) == 0.5 and dl.factor(5.0, 1.0) == 1.0
    cb = ResidualBalance.convbpdn(0.1)
    assert cb.target == pytest.approx(2.0)  # 1 + 18.3^0
    # auto-scaling: the factor is sqrt of the ratio to the target, at most the scaling
    assert cb.factor(8.0, 1.0) == pytest.approx(2.0)
    assert cb.factor(1.0, 8.0) == pytest.approx(1 / 4.0)
    assert cb.factor(1e12, 1.0) == 1000.0
    assert cb.factor(1.0, 0.0) == 1000.0
    with pytest.raises(ValueError, match="period"):
        ResidualBalance(period=0)
    with pytest.raises(ValueError, match="scaling"):
        ResidualBalance(scaling=float("nan"))
    with pytest.raises(ValueError, match="rho_period or rho_rule"):
        ConvSparseCoder(_unit(np.ones((2, 3, 3))), (8, 8), 0.1, rho_period=2, rho_rule=dl)


# ----------------------------------------------------------------------------- the coder
@pytest.mark.parametrize("boundary", ["pad", "circular"])
def test_code_step_carries_its_synthesis(boundary):
    """``step()`` returns the codes with their synthesis and l1 norm explicitly; the synthesis is
    a new array that the next step does not overwrite."""
    rng = np.random.default_rng(0)
    d = _unit(rng.standard_normal((4, 5, 5)).astype(np.float32))
    s = rng.standard_normal((24, 20)).astype(np.float32)
    coder = ConvSparseCoder(d, s.shape, 0.05, boundary=boundary)
    op = ConvSynthesis(d, s.shape, boundary=boundary)
    for _ in range(3):
        res = coder.step(s, max_iter=2)
        assert res.n_iter == 2 and res.codes is coder.codes
        assert np.abs(res.synthesis - op(res.codes)).max() < 1e-5 * np.abs(res.synthesis).max()
        assert res.l1 == pytest.approx(float(np.abs(res.codes).sum()), rel=1e-5)
        kept = res.synthesis.copy()
        coder.step(s * 1.1)
        assert np.array_equal(res.synthesis, kept)


@pytest.mark.parametrize("boundary", ["pad", "circular"])
def test_set_filters_from_the_cached_spectrum_matches_a_full_recompute(boundary):
    """set_filters reuses F(Y) (code_spectrum) and F(Y - U) by linearity; recomputing both from the
    codes (what a fresh look-ahead does) gives the same next iterates. ``reset`` zeroes codes and duals."""
    rng = np.random.default_rng(1)
    d1, d2 = (_unit(rng.standard_normal((4, 5, 5)).astype(np.float32)) for _ in range(2))
    s = rng.standard_normal((2, 24, 20)).astype(np.float32)
    a, b = (ConvSparseCoder(d1, (24, 20), 0.05, boundary=boundary) for _ in range(2))
    for c in (a, b):
        c.solve(s, max_iter=7, tol=0)
    a.code_spectrum()  # cached: set_filters uses it
    a.set_filters(d2)
    b._state.vf = b._state.YF = None  # nothing cached: everything recomputed from the codes
    b._state.DT = None
    b.set_filters(d2)
    for c in (a, b):
        c.solve(s, max_iter=3, tol=0)
    np.testing.assert_allclose(a.codes, b.codes, atol=1e-5 * np.abs(b.codes).max())
    op = ConvSynthesis(d2, (24, 20), boundary=boundary)
    ref = op.geom.synth(a.codes)
    assert np.abs(a.synthesize() - ref).max() < 1e-5 * np.abs(ref).max()
    a.set_filters(d1, reset=[1, 3])
    assert not a.codes[:, [1, 3]].any() and a.codes[:, 0].any()
    assert np.abs(a.synthesize() - ConvSynthesis(d1, (24, 20), boundary=boundary).geom.synth(a.codes)).max() < 1e-5


# ----------------------------------------------------------------------------- the dictionary update
@pytest.mark.parametrize("boundary, shape, f", [("circular", (24, 20), 5), ("pad", (24, 20), 5),
                                                 ("pad", (10, 9, 8), 3)])
def test_dictionary_update_recovers_a_planted_dictionary(boundary, shape, f):
    """Codes fixed, signals synthesised by a unit-norm dictionary (cropped for "pad": only the image
    window is data): the update converges to that dictionary from a random start, 2-D and 3-D."""
    rng = np.random.default_rng(2)
    k, n = 3, 2
    d_true = _unit(rng.standard_normal((k,) + (f,) * len(shape)))
    op = ConvSynthesis(d_true, shape, boundary=boundary)
    z = rng.standard_normal((n,) + op.ishape) * (rng.random((n,) + op.ishape) < 0.1)
    s = np.stack([op(zi) for zi in z])
    upd = ConvDictionaryUpdate(rng.standard_normal(d_true.shape), shape, n, boundary=boundary, dtype=np.float64)
    zf = _rfftn(z, op.geom.axes)
    for _ in range(500):
        d = upd.step(zf, s)
    assert d.shape == d_true.shape and np.all(np.linalg.norm(d.reshape(k, -1), axis=1) <= 1 + 1e-12)
    assert np.abs(d - d_true).max() < 2e-2, np.abs(d - d_true).max()
    res = np.stack([ConvSynthesis(d, shape, boundary=boundary)(zi) for zi in z]) - s
    assert np.linalg.norm(res) < 3e-2 * np.linalg.norm(s)


def test_dictionary_update_support_and_bad_input():
    rng = np.random.default_rng(3)
    d = rng.standard_normal((2, 5, 5))
    supp = np.zeros_like(d)
    supp[:, 1:4, 1:4] = 1
    upd = ConvDictionaryUpdate(d, (16, 16), 1, support=supp, dtype=np.float64)
    assert not upd.filters[:, 0].any() and upd.filters[:, 1:4, 1:4].any()
    zf = _rfftn(rng.standard_normal((1, 2, 16, 16)), (-2, -1))
    out = upd.step(zf, rng.standard_normal((1, 16, 16)))
    assert not out[:, 0].any() and not out[:, :, 4].any()
    with pytest.raises(ValueError, match="codes_f"):
        upd.step(zf[:, :1], rng.standard_normal((1, 16, 16)))
    with pytest.raises(ValueError, match="s must have shape"):
        upd.step(zf, rng.standard_normal((2, 16, 16)))
    with pytest.raises(ValueError, match="sigma"):
        ConvDictionaryUpdate(d, (16, 16), 1, sigma=0)
    with pytest.raises(ValueError, match="n_signals"):
        ConvDictionaryUpdate(d, (16, 16), 0)
    with pytest.raises(ValueError, match="support"):
        ConvDictionaryUpdate(d, (16, 16), 1, support=supp[:1])


# ----------------------------------------------------------------------------- the monotone code step
def test_monotone_code_step_never_raises_the_csc_part():
    """CSCPrior.code keeps the coder's codes only when they do not raise 1/2||hu - Dz||^2 + lam||z||_1
    at that hu; without ``monotone`` the coder's raw ADMM steps do raise it here."""
    rng = np.random.default_rng(4)
    d = _unit(rng.standard_normal((6, 5, 5)).astype(np.float32))
    base = ConvSynthesis(d, (32, 28))(rng.standard_normal((6, 36, 32)).astype(np.float32)
                                       * (rng.random((6, 36, 32)) < 0.05))
    rises = {}
    for mono in (True, False):
        pr = CSCPrior(ConvSparseCoder(d, (32, 28), 0.05), mu=1.0, lam_lp=0.0, imag_codes=False, monotone=mono)
        worst = -np.inf
        for k in range(40):
            hu = np.stack([base * (1 + 0.3 * np.sin(k)), np.zeros_like(base)])
            before = None if pr.codes is None else (0.5 * np.sum((hu[0] - pr.dz[0]) ** 2) + 0.05 * pr.code_l1)
            pr.code(hu)
            after = 0.5 * np.sum((hu[0] - pr.dz[0]) ** 2) + 0.05 * np.abs(pr.codes).sum()
            assert pr.code_l1 == pytest.approx(float(np.abs(pr.codes).sum()), rel=1e-5)
            if before is not None:
                worst = max(worst, (after - before) / before)
        rises[mono] = worst
    assert rises[True] <= 1e-6, rises
    assert rises[False] > 1e-3, rises


# ----------------------------------------------------------------------------- blind CSC
def _blind_problem(rng, shape, n_filters):
    """A perturbed start dictionary and the channels (signal, 0) of a sparse synthesis by the true one."""
    d_true = _unit(rng.standard_normal((n_filters, 5, 5)).astype(np.float32))
    d_start = _unit(d_true + 0.5 * rng.standard_normal(d_true.shape).astype(np.float32))
    op = ConvSynthesis(d_true, shape)
    z = (rng.standard_normal(op.ishape) * (rng.random(op.ishape) < 0.05)).astype(np.float32)
    return d_start, np.stack([op(z), np.zeros(shape, np.float32)])


def test_blind_csc_adapt_lowers_the_misfit_and_never_raises_it():
    """CSCPrior.adapt (masked dictionary update on the prior's codes) keeps a new dictionary only
    when it lowers ||hu - Dz||^2; on a signal made by a different dictionary it does lower it."""
    shape = (32, 28)
    d_start, hu = _blind_problem(np.random.default_rng(5), shape, 4)
    pr = CSCPrior(ConvSparseCoder(d_start, shape, 0.01), mu=1.0, lam_lp=0.0, imag_codes=False)
    assert not pr.adapt(hu)  # no codes yet: nothing to adapt to
    for _ in range(30):
        pr.code(hu)
    misfit = [np.sum((hu[0] - pr.dz[0]) ** 2)]
    for _ in range(30):
        pr.adapt(hu)
        misfit.append(np.sum((hu[0] - pr.dz[0]) ** 2))
        # dz is the synthesis of the kept codes with the dictionary now in use
        ref = ConvSynthesis(pr.filters, shape)(pr.codes[0])
        assert np.abs(pr.dz[0] - ref).max() < 1e-4 * np.abs(ref).max()
    assert np.all(np.diff(misfit) <= 0)
    assert pr.n_adapted >= 1 and misfit[-1] < 0.9 * misfit[0], (pr.n_adapted, misfit[0], misfit[-1])
    assert np.all(np.linalg.norm(pr.filters.reshape(4, -1), axis=1) <= 1 + 1e-5)
    with pytest.raises(ValueError, match="adapt_every"):
        CSCPrior(ConvSparseCoder(d_start, shape, 0.01), mu=1.0, lam_lp=0.0, adapt_every=-1)


def test_blind_csc_adapt_uses_the_kept_codes_after_the_coder_moved_on():
    """adapt() reuses the coder's cached code spectrum only while the coder's codes are the prior's
    kept ones: after the coder is stepped (or reset) directly, it transforms the kept codes."""
    shape = (24, 20)
    d_start, hu = _blind_problem(np.random.default_rng(6), shape, 3)
    for move in ("step", "reset"):
        pr = CSCPrior(ConvSparseCoder(d_start, shape, 0.01), mu=1.0, lam_lp=0.0, imag_codes=False)
        for _ in range(10):
            pr.code(hu)
        kept = pr.codes.copy()
        if move == "step":
            pr.coder.step(0.3 * hu[:1], max_iter=3)  # codes of another signal
            assert not np.allclose(pr.coder.codes, kept)
        else:
            pr.coder.reset()
        for _ in range(5):
            pr.adapt(hu)
        assert pr.n_adapted >= 1
        ref = ConvSynthesis(pr.filters, shape)(kept[0])
        assert np.abs(pr.dz[0] - ref).max() < 1e-4 * np.abs(ref).max(), move
