"""Tests of the CSC prior: convolution operator, prox, low-pass split, sparse coding, dictionary."""

from __future__ import annotations

import numpy as np
import pytest

from mri_csc.backend import gpu_available
from mri_csc.operators.base import dot_test
from mri_csc.prior.conv import ConvSynthesis
from mri_csc.prior.lowpass import highpass, lowpass_split
from mri_csc.prior.prox import soft_threshold
from mri_csc.prior.sparse_coding import ConvSparseCoder

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="no usable CUDA GPU / CuPy")


def _filters(k=6, f=5, seed=0, ndim=2):
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((k,) + (f,) * ndim).astype(np.float32)
    return d / np.linalg.norm(d.reshape(k, -1), axis=1).reshape((k,) + (1,) * ndim)


def _smooth_image(shape=(48, 40), seed=1):
    """A small piecewise-smooth test image (zero-mean high-pass part of a blob phantom)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(3, 10)
        img += rng.uniform(0.3, 1) * ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)
    return highpass(img, 5.0).astype(np.float32)


# ----------------------------------------------------------------------------- ConvSynthesis
@pytest.mark.parametrize("boundary", ["pad", "circular"])
def test_conv_adjoint_2d(boundary):
    op = ConvSynthesis(_filters(), (20, 24), boundary=boundary)
    assert dot_test(op, rng=1, dtype="complex64") < 1e-5
    assert dot_test(op, rng=2, dtype="complex128") < 1e-12


def test_conv_adjoint_3d():
    d = _filters(k=3, f=3, ndim=3)
    op = ConvSynthesis(d, (8, 9, 10))
    assert op.ishape[0] == 3 and all(c >= n + 2 for c, n in zip(op.code_shape, (8, 9, 10)))
    assert dot_test(op, rng=3) < 1e-5


def test_conv_real_adjoint_and_dtype():
    op = ConvSynthesis(_filters(), (20, 24))
    rng = np.random.default_rng(0)
    z = rng.standard_normal(op.ishape).astype(np.float32)
    y = rng.standard_normal(op.oshape).astype(np.float32)
    dz, dhy = op(z), op.H(y)
    assert dz.dtype == np.float32 and dhy.dtype == np.float32
    assert abs(np.vdot(dz, y) - np.vdot(z, dhy)) / (np.linalg.norm(dz) * np.linalg.norm(y)) < 1e-5
    assert op(z.astype(np.complex64)).dtype == np.complex64


def test_conv_linearity():
    op = ConvSynthesis(_filters(), (20, 24))
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(op.ishape) + 1j * rng.standard_normal(op.ishape)).astype(np.complex64)
    b = (rng.standard_normal(op.ishape) + 1j * rng.standard_normal(op.ishape)).astype(np.complex64)
    alpha, beta = 0.7 - 0.2j, -1.3 + 0.5j
    lhs = op(alpha * a + beta * b)
    rhs = alpha * op(a) + beta * op(b)
    assert np.linalg.norm(lhs - rhs) / np.linalg.norm(rhs) < 1e-5


def test_conv_matches_linear_convolution():
    """In the padded grid every image pixel is an exact 'valid' linear convolution."""
    from scipy.signal import convolve

    d = _filters(k=3, f=5).astype(np.float64)
    op = ConvSynthesis(d, (20, 24))
    rng = np.random.default_rng(0)
    z = rng.standard_normal(op.ishape)
    out = op(z)
    # image pixel n sees code samples n .. n + f - 1 of the grid (window offset (f-1)//2,
    # centred filters); the grid may extend further (FFT-friendly size), those codes touch nothing
    zz = z[:, : 20 + 4, : 24 + 4]
    ref = sum(convolve(zz[k], d[k], mode="valid") for k in range(3))
    assert np.allclose(out, ref, atol=1e-9)


@pytest.mark.parametrize("fshape, ishape, boundary", [((11, 11), (40, 36), "pad"), ((5, 4), (33, 30), "circular"),
                                                       ((3, 5, 3), (6, 12, 10), "pad")])
def test_pruned_filter_transforms_match_the_full_grid(fshape, ishape, boundary):
    """The pruned filter DFT and its windowed inverse equal the transforms of the whole code grid."""
    from mri_csc.prior.conv import _ConvGeometry, _fftn, _irfftn, _rfftn

    rng = np.random.default_rng(3)
    d = rng.standard_normal((4, *fshape))
    geom = _ConvGeometry(d, ishape, boundary)
    grid = geom.filters_to_grid(d)
    # the placement, written independently: taps at 0..f-1, rolled so that tap f // 2 sits at index 0
    ref = np.zeros((4, *geom.code_shape))
    ref[(slice(None),) + tuple(slice(0, f) for f in fshape)] = d
    ref = np.roll(ref, tuple(-(f // 2) for f in fshape), axis=geom.axes)
    assert np.array_equal(grid, ref) and np.array_equal(geom.grid_to_filters(ref), d)
    assert np.allclose(geom.filter_spectrum(d), _rfftn(grid, geom.axes), atol=1e-10)
    assert np.allclose(geom.filter_spectrum(d, half=False), _fftn(grid, geom.axes), atol=1e-10)
    spec = _rfftn(rng.standard_normal((4, *geom.code_shape)), geom.axes)
    full_inverse = geom.grid_to_filters(_irfftn(spec, geom.code_shape, geom.axes))
    assert np.allclose(geom.filters_from_spectrum(spec), full_inverse, atol=1e-10)
    with pytest.raises(ValueError, match="spectrum must have shape"):
        geom.seed_spectrum(spec[:, :-1], np.float64)


@pytest.mark.parametrize("edge", ["top", "left"])
def test_no_wraparound(edge):
    """An atom placed against one edge leaves no energy at the opposite edge."""
    f = 7
    d = _filters(k=2, f=f)
    op = ConvSynthesis(d, (32, 32))
    z = np.zeros(op.ishape, np.float32)
    o = (f - 1) // 2
    # code sample on image row/col 0 (the atom straddles the edge)
    if edge == "top":
        z[0, o + 0, o + 16] = 1.0
        far = op(z)[-f:, :]
    else:
        z[1, o + 16, o + 0] = 1.0
        far = op(z)[:, -f:]
    peak = np.abs(op(z)).max()
    assert peak > 0.1
    assert np.abs(far).max() < 1e-6 * peak  # FFT round-off only
    # the circular operator does wrap (sanity check that the test can fail)
    opc = ConvSynthesis(d, (32, 32), boundary="circular")
    zc = np.zeros(opc.ishape, np.float32)
    zc[0, 0, 16] = 1.0
    assert np.abs(opc(zc)[-f:, :]).max() > 1e-3


# ----------------------------------------------------------------------------- prox
def _brute_prox(v, t):
    """argmin_x 0.5|x - v|^2 + t|x| over a fine grid (complex scalar)."""
    r = np.linspace(0, abs(v) + 1, 20001)
    ph = np.exp(1j * np.angle(v)) if v != 0 else 1.0
    cost = 0.5 * np.abs(r * ph - v) ** 2 + t * r
    return r[np.argmin(cost)] * ph


def test_soft_threshold_brute_force():
    rng = np.random.default_rng(0)
    v = (rng.standard_normal(12) + 1j * rng.standard_normal(12)).astype(np.complex64)
    t = 0.6
    out = soft_threshold(v, t)
    ref = np.array([_brute_prox(x, t) for x in v.astype(np.complex128)])
    assert out.dtype == np.complex64
    assert np.allclose(out, ref, atol=2e-4)
    # also the brute-force minimum over a 2D grid for one complex value (phase included)
    x = 1.1 - 0.4j
    g = np.linspace(-2, 2, 801)
    re, im = np.meshgrid(g, g, indexing="ij")
    c = 0.5 * np.abs(re + 1j * im - x) ** 2 + t * np.abs(re + 1j * im)
    i = np.unravel_index(np.argmin(c), c.shape)
    assert abs(soft_threshold(np.array([x]), t)[0] - (g[i[0]] + 1j * g[i[1]])) < 1e-2
    # real input
    vr = rng.standard_normal(10).astype(np.float32)
    assert soft_threshold(vr, 0.3).dtype == np.float32
    assert np.allclose(soft_threshold(vr, 0.3), np.sign(vr) * np.maximum(np.abs(vr) - 0.3, 0))


def test_soft_threshold_zeros():
    for dt in (np.float32, np.float64, np.complex64, np.complex128):
        v = np.zeros(5, dtype=dt)
        with np.errstate(all="raise"):
            out = soft_threshold(v, 0.5)
            out0 = soft_threshold(v, 0.0)
        assert out.dtype == dt and np.all(out == 0) and np.all(np.isfinite(out))
        assert np.all(out0 == 0)
    v = np.array([0, 1e-30, 3 + 4j], np.complex64)
    out = soft_threshold(v, 1.0)
    assert np.all(np.isfinite(out)) and out[0] == 0 and out[1] == 0
    assert np.isclose(out[2], (3 + 4j) * 0.8)


# ----------------------------------------------------------------------------- low-pass
def test_lowpass_matches_sporco_and_sums():
    tikhonov_filter = pytest.importorskip("sporco.signal").tikhonov_filter

    rng = np.random.default_rng(0)
    s = rng.standard_normal((30, 26))
    low, high = lowpass_split(s, 5.0)
    ref_low, ref_high = tikhonov_filter(s, 5.0)
    assert np.allclose(low, ref_low, atol=1e-10) and np.allclose(high, ref_high, atol=1e-10)
    sc = (s + 1j * rng.standard_normal(s.shape)).astype(np.complex64)
    lowc, highc = lowpass_split(sc, 5.0)
    assert lowc.dtype == np.complex64 and np.allclose(lowc + highc, sc, atol=1e-6)
    assert np.allclose(lowc.real, lowpass_split(sc.real, 5.0)[0], atol=1e-5)
    assert highpass(s.astype(np.float32)).dtype == np.float32


# ----------------------------------------------------------------------------- sparse coding
def test_sherman_morrison_vs_dense():
    """One z-step of the circular solver equals a dense solve of (D^T D + rho I) z = D^T s + rho v."""
    d = _filters(k=3, f=3, seed=4)
    shape = (6, 5)
    op = ConvSynthesis(d.astype(np.float64), shape, boundary="circular")
    n_in = int(np.prod(op.ishape))
    dense = np.stack([op(e.reshape(op.ishape)).ravel() for e in np.eye(n_in)], axis=1)
    rng = np.random.default_rng(0)
    s = rng.standard_normal(shape)
    rho = 0.7
    coder = ConvSparseCoder(
        d, shape, lam=0.0, rho=rho, relax=1.0, dtype=np.float64, boundary="circular", auto_rho=False
    )
    coder.solve(s, max_iter=1, tol=0)  # from zero: v = y - u = 0; with lam = 0, relax = 1, y = x
    z_ref = np.linalg.solve(dense.T @ dense + rho * np.eye(n_in), dense.T @ s.ravel())
    assert np.allclose(coder.codes.ravel(), z_ref, atol=1e-10)


def test_masked_sherman_morrison_vs_dense():
    """The 'pad' solver's z-step solves (D^T D + I) z = D^T s_pad exactly from zero."""
    d = _filters(k=2, f=3, seed=5)
    shape = (5, 4)
    coder = ConvSparseCoder(d, shape, lam=0.0, relax=1.0, dtype=np.float64, auto_rho=False)
    geom = coder.geom
    opc = ConvSynthesis(d.astype(np.float64), geom.code_shape, boundary="circular")
    n_in = int(np.prod(opc.ishape))
    dense = np.stack([opc(e.reshape(opc.ishape)).ravel() for e in np.eye(n_in)], axis=1)
    s = np.random.default_rng(1).standard_normal(shape)
    coder.solve(s, max_iter=1, tol=0)
    spad = geom.pad_image(s).ravel()
    z_ref = np.linalg.solve(dense.T @ dense + np.eye(n_in), dense.T @ spad)
    assert np.allclose(coder.codes.ravel(), z_ref, atol=1e-10)


def _sporco_objective(d, s, lam, z_sp):
    """0.5||sum_k d_k * z_k - s||^2 + lam ||z||_1 with SPORCO's (uncentred, circular) convention."""
    from numpy.fft import irfft2, rfft2

    df = rfft2(d, s=s.shape)
    zf = rfft2(np.moveaxis(z_sp, -1, 0), s=s.shape)
    res = irfft2((df * zf).sum(0), s=s.shape) - s
    return 0.5 * np.sum(res**2) + lam * np.abs(z_sp).sum()


@pytest.fixture
def sporco_single_thread(monkeypatch):
    """SPORCO's pyFFTW plans use all cores; on a shared 2-core runner that thrashes, so use one."""
    sfft = pytest.importorskip("sporco.fft")
    monkeypatch.setattr(sfft, "pyfftw_threads", 1, raising=False)


def test_objective_matches_sporco_convbpdn(sporco_single_thread):
    cbpdn = pytest.importorskip("sporco.admm.cbpdn")

    # sizes keep SPORCO's residual norms under OpenBLAS's threading threshold (fast on a busy runner)
    d = _filters(k=8, f=7, seed=2)
    s = _smooth_image((32, 32))
    lam = 0.05
    n = 150
    ours = ConvSparseCoder(d, s.shape, lam, boundary="circular")
    z = ours.solve(s, max_iter=n, tol=0)
    f_ours = ours.objective(s)
    assert z.shape == (8, 32, 32) and z.dtype == np.float32
    opt = cbpdn.ConvBPDN.Options({"Verbose": False, "MaxMainIter": n, "RelStopTol": 0.0, "RelaxParam": 1.8})
    b = cbpdn.ConvBPDN(np.transpose(d, (1, 2, 0)).astype(np.float64), s.astype(np.float64), lam, opt)
    b.solve()
    zs = np.squeeze(b.getcoef())
    f_sp = _sporco_objective(d.astype(np.float64), s.astype(np.float64), lam, zs)
    assert abs(f_ours - f_sp) / f_sp < 0.01, (f_ours, f_sp)
    # the same codes evaluated by our operator (centred filters: shift by f//2) give the same objective
    z_sp_ours = np.roll(np.moveaxis(zs, -1, 0), (7 // 2, 7 // 2), axis=(1, 2)).astype(np.float32)
    assert abs(ours.objective(s, z_sp_ours) - f_sp) / f_sp < 1e-4


def test_masked_objective_matches_sporco_maskdcpl(sporco_single_thread):
    cbpdn = pytest.importorskip("sporco.admm.cbpdn")

    d = _filters(k=6, f=5, seed=3)
    s = _smooth_image((24, 20), seed=2)
    lam = 0.05
    n = 200
    ours = ConvSparseCoder(d, s.shape, lam)  # boundary="pad"
    ours.solve(s, max_iter=n, tol=0)
    f_ours = ours.objective(s)
    # SPORCO on the same padded grid with a 0/1 mask (uncentred filters: window at offset f-1)
    P = ours.code_shape
    spad = np.zeros(P)
    spad[4 : 4 + 24, 4 : 4 + 20] = s
    w = np.zeros(P)
    w[4 : 4 + 24, 4 : 4 + 20] = 1
    opt = cbpdn.ConvBPDNMaskDcpl.Options({"Verbose": False, "MaxMainIter": n, "RelStopTol": 0.0})
    b = cbpdn.ConvBPDNMaskDcpl(np.transpose(d, (1, 2, 0)).astype(np.float64), spad, lam, w, opt)
    b.solve()
    f_sp = b.getitstat().ObjFun[-1]
    assert abs(f_ours - f_sp) / f_sp < 0.01, (f_ours, f_sp)


def test_complex_and_batched_solve():
    d = _filters(k=4, f=5)
    rng = np.random.default_rng(0)
    s1, s2 = _smooth_image((24, 20), 1), _smooth_image((24, 20), 2)
    # complex signal = two real problems coupled only through |z|; with s2 = 0 they decouple
    lam = 0.02
    cr = ConvSparseCoder(d, s1.shape, lam, dtype=np.float64)
    zr = cr.solve(s1.astype(np.float64), max_iter=300, tol=1e-6)
    cc = ConvSparseCoder(d, s1.shape, lam, dtype=np.float64)
    zc = cc.solve(s1.astype(np.complex128), max_iter=300, tol=1e-6)
    assert zc.dtype == np.complex128
    assert abs(cc.objective(s1.astype(np.complex128)) - cr.objective(s1)) / cr.objective(s1) < 1e-3
    assert np.abs(zc.imag).max() < 1e-6 * max(1.0, np.abs(zr).max())
    # batched: two channels with one dictionary == two separate solves (objective)
    cb = ConvSparseCoder(d, s1.shape, lam)
    zb = cb.solve(np.stack([s1, s2]), max_iter=400, tol=1e-5)
    assert zb.shape == (2, 4) + cb.code_shape
    sep = 0.0
    for si in (s1, s2):
        c = ConvSparseCoder(d, s1.shape, lam)
        c.solve(si, max_iter=400, tol=1e-5)
        sep += c.objective(si)
    assert abs(cb.objective(np.stack([s1, s2])) - sep) / sep < 5e-3
    sc = (s1 + 1j * s2).astype(np.complex64)
    ccx = ConvSparseCoder(d, s1.shape, lam)
    ccx.solve(sc, max_iter=50)
    assert ccx.synthesize().dtype == np.complex64 and np.isfinite(ccx.objective(sc))
    del rng


def test_warm_start_needs_fewer_iterations():
    d = _filters(k=6, f=5)
    s = _smooth_image((40, 40))
    rng = np.random.default_rng(0)
    s2 = (s + 0.01 * np.abs(s).max() * rng.standard_normal(s.shape)).astype(np.float32)
    c = ConvSparseCoder(d, s.shape, 0.03)
    c.solve(s, max_iter=1000, tol=1e-4)
    c.solve(s2, max_iter=1000, tol=1e-4, warm=True)
    warm = c.last_iters
    c.solve(s2, max_iter=1000, tol=1e-4, warm=False)
    cold = c.last_iters
    assert warm < cold, (warm, cold)
    # repeated short calls keep the state: objective decreases across calls, nothing is rebuilt
    c2 = ConvSparseCoder(d, s.shape, 0.03)
    objs = []
    for _ in range(5):
        c2.solve(s, max_iter=3)
        objs.append(c2.objective(s))
    st = c2._state
    c2.solve(s, max_iter=3)
    assert c2._state is st and c2.n_iter == 18
    assert objs[-1] < objs[0]



@pytest.mark.parametrize("boundary", ["pad", "circular"])
@pytest.mark.parametrize("complex_signal", [False, True])
def test_synthesize_reuses_fourier_synthesis_exactly(boundary, complex_signal):
    """``synthesize()`` (no FFT of the codes) equals synthesising the codes directly, through
    warm restarts, changing signals, ρ changes and calls of different lengths."""
    d = _filters(k=6, f=5)
    s = _smooth_image((32, 28))
    sig = (s + 0.5j * s[::-1]).astype(np.complex64) if complex_signal else s
    c = ConvSparseCoder(d, s.shape, 0.02, boundary=boundary)
    rhos, errs = set(), []
    for k in range(12):
        c.solve(sig * (1 + 0.05 * k), max_iter=1 + k % 3, tol=0, copy=False)
        rhos.add(c.rho)
        ref = ConvSynthesis(d, s.shape, boundary=boundary)(c.codes)
        errs.append(np.linalg.norm(c.synthesize() - ref) / np.linalg.norm(ref))
    assert len(rhos) > 3  # ρ balancing did rescale the dual along the way
    assert max(errs) < 1e-5, errs
    c.solve(sig, max_iter=0)
    assert c.synthesize().dtype == (np.complex64 if complex_signal else np.float32)
    c.reset()
    c.solve(sig, max_iter=2)
    ref = ConvSynthesis(d, s.shape, boundary=boundary)(c.codes)
    assert np.linalg.norm(c.synthesize() - ref) <= 1e-5 * np.linalg.norm(ref)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relax_shrink_kernel_matches_numpy(dtype):
    from mri_csc.prior import _kernels

    rng = np.random.default_rng(0)
    X, Yold, U = (rng.standard_normal((3, 40, 30)).astype(dtype) for _ in range(3))
    Yold[rng.random(Yold.shape) < 0.8] = 0
    a, thr = 1.8, 0.3
    assert _kernels.available(X, Yold, U, X, X)  # numba comes with SigPy
    assert not _kernels.available(X, Yold, U.astype(np.complex64), X, X)
    t = a * X + (1 - a) * Yold + U
    clip = np.clip(t, -thr, thr)
    y_ref = t - clip
    Y, V, U1 = np.empty_like(X), np.empty_like(X), U.copy()
    norms = _kernels.relax_shrink(X, Yold, U1, Y, V, a, thr)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Y, y_ref, **tol)
    np.testing.assert_allclose(U1, clip, **tol)
    np.testing.assert_allclose(V, y_ref - clip, **tol)
    ref = [np.sum((X - y_ref) ** 2.0), np.sum(X**2.0), np.sum(y_ref**2.0), np.sum((y_ref - Yold) ** 2.0),
           np.sum(clip**2.0), np.sum(np.abs(y_ref), dtype=np.float64)]
    np.testing.assert_allclose(norms, ref, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_fused_spectral_kernels_match_numpy(dtype):
    from mri_csc.prior import _kernels

    rng = np.random.default_rng(1)

    def crandn(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)

    df, vf, tf = crandn(5, 8, 6), crandn(2, 5, 8, 6), crandn(2, 8, 6)
    dv = np.empty_like(tf)
    _kernels.filter_sum(df, vf, dv)
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(dv, (df * vf).sum(axis=1), rtol=tol, atol=tol)
    ref = vf + df.conj() * tf[:, None]
    _kernels.add_filter_product(vf, df, tf)
    np.testing.assert_allclose(vf, ref, rtol=tol, atol=tol)


def test_ctrl_c_while_kernels_compile_is_delivered_after():
    """numba swallows a KeyboardInterrupt raised in its compiler callbacks; the coder holds a
    Ctrl-C back while it imports (compiles) the kernels and raises it afterwards."""
    import os
    import signal
    import time

    from mri_csc.prior.cpu_engine import sigint_deferred

    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs in here and only records the signal
            reached.append(True)
    assert reached == [True]
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("boundary", ["pad", "circular"])
@pytest.mark.parametrize("complex_signal", [False, True])
def test_coder_same_with_and_without_the_fused_kernel(boundary, complex_signal, monkeypatch):
    from mri_csc.prior import _kernels

    d = _filters(k=6, f=5)
    s = _smooth_image((40, 36))
    if complex_signal:
        s = (s + 0.5j * s[::-1]).astype(np.complex64)
    out = {}
    for enabled in (False, True):
        monkeypatch.setattr(_kernels, "ENABLED", enabled)
        c = ConvSparseCoder(d, s.shape, 0.02, boundary=boundary)
        c.solve(s, max_iter=30, tol=0)
        c.solve(1.1 * s, max_iter=5, tol=1e-9)  # stopping test on: residuals every step
        out[enabled] = (c.codes.copy(), c.rho, c.residuals, c.synthesize())
    (z0, rho0, res0, syn0), (z1, rho1, res1, syn1) = out[False], out[True]
    assert abs(rho1 - rho0) <= 1e-4 * rho0
    np.testing.assert_allclose(res1, res0, rtol=1e-3)
    assert np.abs(z1 - z0).max() <= 1e-4 * np.abs(z0).max()
    assert np.linalg.norm(syn1 - syn0) <= 1e-4 * np.linalg.norm(syn0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("boundary", ["pad", "circular"])
def test_blocked_sweep_matches_full_array_path(boundary, threads, monkeypatch):
    """The cache-blocked sweep (blocks of 2 maps, never across channels; 1 or 2 threads, each
    with its own partial filter sum) gives the full-array path's iterates, ρ and synthesis."""
    from mri_csc.backend import set_fft_workers
    from mri_csc.prior import _kernels, cpu_engine

    d = _filters(k=5, f=5)
    s = np.stack([_smooth_image((32, 28), seed=i) for i in range(2)])  # a batch of two channels
    monkeypatch.setattr(cpu_engine, "SWEEP_BLOCK_BYTES", 2 * 4 * 36 * 32)  # 2 maps per block
    out = {}
    try:
        set_fft_workers(threads)
        for enabled in (False, True):
            monkeypatch.setattr(_kernels, "ENABLED", enabled)
            c = ConvSparseCoder(d, s.shape[1:], 0.02, boundary=boundary)
            c.solve(s, max_iter=25, tol=0)
            c.solve(0.9 * s, max_iter=4, tol=1e-9)
            out[enabled] = (c.codes.copy(), c.rho, c.synthesize())
    finally:
        set_fft_workers(None)
    (z0, rho0, syn0), (z1, rho1, syn1) = out[False], out[True]
    assert abs(rho1 - rho0) <= 1e-4 * rho0
    assert np.abs(z1 - z0).max() <= 1e-4 * np.abs(z0).max()
    assert np.linalg.norm(syn1 - syn0) <= 1e-4 * np.linalg.norm(syn0)
    assert np.abs(z1[1]).sum() > 0 and not np.allclose(z1[0], z1[1])  # both channels coded, apart


def test_threaded_sweep_is_bit_reproducible(monkeypatch):
    """Blocks are split among the threads statically, so the partial sums add up in one order:
    two fresh coders on two threads give bit-identical codes."""
    from mri_csc.backend import set_fft_workers
    from mri_csc.prior import cpu_engine

    d = _filters(k=6, f=5)
    s = _smooth_image((36, 32))
    monkeypatch.setattr(cpu_engine, "SWEEP_BLOCK_BYTES", 4 * 40 * 36)  # one map per block
    try:
        set_fft_workers(2)
        runs = []
        for _ in range(2):
            c = ConvSparseCoder(d, s.shape, 0.02)
            c.solve(s, max_iter=20, tol=0)
            runs.append((c.codes.copy(), c.rho))
    finally:
        set_fft_workers(None)
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][0], runs[1][0])


def test_sweep_runs_in_the_calling_thread_when_no_helper_can_start(monkeypatch):
    """At interpreter shutdown (a late non-daemon thread, atexit) an executor refuses new work;
    the sweep then does every share itself, in the same order, so the codes are unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    from mri_csc.backend import set_fft_workers
    from mri_csc.prior import cpu_engine

    d = _filters(k=6, f=5)
    s = _smooth_image((36, 32))
    monkeypatch.setattr(cpu_engine, "SWEEP_BLOCK_BYTES", 4 * 40 * 36)  # one map per block
    closed = ThreadPoolExecutor(1)
    closed.shutdown()
    try:
        set_fft_workers(2)
        runs = []
        for pool in (None, closed):
            if pool is not None:
                monkeypatch.setattr(cpu_engine, "sweep_pool", lambda n, pool=pool: pool)
            c = ConvSparseCoder(d, s.shape, 0.02)
            c.solve(s, max_iter=10, tol=0)
            runs.append(c.codes.copy())
    finally:
        set_fft_workers(None)
    assert np.array_equal(runs[0], runs[1])


# ----------------------------------------------------------------------------- dictionary
def test_learn_dictionary_unit_norm_and_decreasing():
    from mri_csc.prior.dictionary import learn_dictionary

    rng = np.random.default_rng(0)
    imgs = np.stack([_smooth_image((40, 40), seed=i) + 0.5 for i in range(2)])
    imgs = imgs + 0.02 * rng.standard_normal(imgs.shape)
    d, info = learn_dictionary(imgs, n_filters=4, size=5, lam=0.05, n_iter=25, seed=1, return_info=True)
    assert d.shape == (4, 5, 5) and d.dtype == np.float32
    assert np.allclose(np.linalg.norm(d.reshape(4, -1), axis=1), 1, atol=1e-5)
    obj = info["objective"]
    assert len(obj) == 25 and obj[-1] < 0.7 * obj[0]
    assert np.all(np.diff(obj[5:]) < 1e-3 * obj[0])  # (nearly) monotone after a few iterations
    # the same seed gives the same dictionary
    assert np.array_equal(d, learn_dictionary(imgs, n_filters=4, size=5, lam=0.05, n_iter=25, seed=1))


def test_default_dictionary():
    from mri_csc.prior.dictionary import load_default_dictionary

    d, meta = load_default_dictionary(with_metadata=True)
    assert d.dtype == np.float32 and d.ndim == 3 and d.shape[1] == d.shape[2]
    assert np.allclose(np.linalg.norm(d.reshape(d.shape[0], -1), axis=1), 1, atol=1e-4)
    assert "train_slices" in meta and "seed" in meta
    lo, hi = meta["test_range"]
    assert not np.any((meta["train_slices"] >= lo) & (meta["train_slices"] <= hi))


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs():
    d = _filters()
    with pytest.raises(ValueError, match="filters"):
        ConvSynthesis(d[0], (20, 20))
    with pytest.raises(ValueError, match="finite"):
        bad = d.copy()
        bad[0, 0, 0] = np.nan
        ConvSynthesis(bad, (20, 20))
    with pytest.raises(ValueError, match="larger than image_shape"):
        ConvSynthesis(d, (4, 20))
    with pytest.raises(ValueError, match="image_shape"):
        ConvSynthesis(d, (20, 20, 20))
    with pytest.raises(ValueError, match="real"):
        ConvSynthesis(d.astype(np.complex64), (20, 20))
    for lam in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="lam"):
            ConvSparseCoder(d, (20, 20), lam)
    with pytest.raises(ValueError, match="rho"):
        ConvSparseCoder(d, (20, 20), 0.1, rho=-1)
    with pytest.raises(ValueError, match="relax"):
        ConvSparseCoder(d, (20, 20), 0.1, relax=2.5)
    with pytest.raises(ValueError, match="boundary"):
        ConvSparseCoder(d, (20, 20), 0.1, boundary="wrap")
    c = ConvSparseCoder(d, (20, 20), 0.1)
    with pytest.raises(ValueError, match="shape"):
        c.solve(np.zeros((20, 21), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        c.solve(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="lam"):
        lowpass_split(np.zeros((8, 8)), -1)
    from mri_csc.prior.dictionary import learn_dictionary

    with pytest.raises(ValueError, match="size"):
        learn_dictionary(np.ones((2, 8, 8)), 4, 11)
    with pytest.raises(ValueError, match="images"):
        learn_dictionary(np.ones((2, 2, 8, 8)), 4, 3)
    with pytest.raises(ValueError, match="lam"):
        learn_dictionary(np.ones((2, 8, 8)), 4, 3, lam=-1)
    with pytest.raises(ValueError, match="NaN"):
        learn_dictionary(np.full((2, 8, 8), np.inf), 4, 3)


# ----------------------------------------------------------------------------- GPU parity
@gpu
@needs_gpu
def test_gpu_parity_conv_and_coder():
    import cupy as cp

    d = _filters()
    s = _smooth_image((32, 32))
    op, opg = ConvSynthesis(d, (32, 32)), ConvSynthesis(cp.asarray(d), (32, 32))
    z = np.random.default_rng(0).standard_normal(op.ishape).astype(np.float32)
    assert np.allclose(op(z), opg(cp.asarray(z)).get(), atol=1e-4)
    c, cg = ConvSparseCoder(d, s.shape, 0.05), ConvSparseCoder(cp.asarray(d), s.shape, 0.05)
    c.solve(s, max_iter=30, tol=0)
    cg.solve(cp.asarray(s), max_iter=30, tol=0)
    assert abs(c.objective(s) - cg.objective(cp.asarray(s))) / c.objective(s) < 1e-3
    sc = cp.asarray((s + 1j * s[::-1]).astype(np.complex64))
    assert cp.all(cp.isfinite(soft_threshold(sc, 0.1)))
    low, _high = lowpass_split(cp.asarray(s), 5.0)
    assert np.allclose(low.get(), lowpass_split(s, 5.0)[0], atol=1e-5)


@gpu
@needs_gpu
def test_gpu_learn_dictionary_parity():
    from mri_csc.prior.dictionary import learn_dictionary

    imgs = np.stack([_smooth_image((40, 40), seed=i) + 0.5 for i in range(2)])
    kw = {"n_filters": 4, "size": 5, "lam": 0.05, "n_iter": 10, "seed": 1, "return_info": True}
    _d_cpu, info_cpu = learn_dictionary(imgs, device="cpu", **kw)
    d_gpu, info_gpu = learn_dictionary(imgs, device="gpu", **kw)
    assert isinstance(d_gpu, np.ndarray) and d_gpu.dtype == np.float32
    assert abs(info_gpu["objective"][-1] - info_cpu["objective"][-1]) / info_cpu["objective"][-1] < 1e-2


def test_learn_dictionary_in_3d():
    """``ndim=3``: (K, f, f, f) unit-norm filters from volumes, the objective falling."""
    from mri_csc.prior.dictionary import learn_dictionary, load_default_dictionary

    rng = np.random.default_rng(2)
    vols = np.cumsum(rng.standard_normal((2, 12, 14, 14)), axis=-1).astype(np.float32)
    d, info = learn_dictionary(vols, 3, 5, ndim=3, n_iter=20, return_info=True, reinit_every=5)
    assert d.shape == (3, 5, 5, 5) and d.dtype == np.float32
    # a checkerboard filter the smooth volumes never use is re-seeded from a 3-D patch
    smooth = np.cumsum(vols, axis=-2).astype(np.float32)
    init = rng.standard_normal((4, 5, 5, 5)).astype(np.float32)
    z, y, x = np.indices((5, 5, 5))
    init[3] = (-1.0) ** (z + y + x)
    d4, info4 = learn_dictionary(smooth, 4, 5, ndim=3, n_iter=20, return_info=True, reinit_every=5, init=init)
    assert info4["n_reseeded"] >= 1
    assert np.allclose(np.linalg.norm(d4.reshape(4, -1), axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(d.reshape(3, -1), axis=1), 1, atol=1e-5)
    assert info["objective"][-1] < info["objective"][0]
    with pytest.raises(ValueError, match="ndim"):
        learn_dictionary(vols, 3, 5, ndim=4)
    with pytest.raises(ValueError, match="multiscale"):
        learn_dictionary(vols, 3, 5, ndim=3, multiscale=[(2, 3), (1, 5)])
    with pytest.raises(ValueError, match="ndim"):
        load_default_dictionary(ndim=1)


def test_soft_threshold_refuses_a_negative_threshold():
    """t < 0 is no prox (it would enlarge every value); the error names t and the value got."""
    v = np.array([1.0, -2.0, 0.5 + 0.5j], np.complex64)
    with pytest.raises(ValueError, match=r"t must be >= 0.*got -0\.1"):
        soft_threshold(v, -0.1)
    with pytest.raises(ValueError, match="t must be >= 0"):
        soft_threshold(v, np.array([0.1, -0.2, 0.3], np.float32))
    with pytest.raises(ValueError, match="t must be"):
        soft_threshold(v, float("nan"))
    assert np.array_equal(soft_threshold(v, np.float32(0.0)), v)
