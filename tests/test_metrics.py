"""Metrics against scikit-image (a test-only dependency) and fastMRI conventions."""

import numpy as np
import pytest

from mri_csc.metrics import evaluate, nmse, psnr, ssim

skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:96j, -1:1:80j]
    ref = ((x**2 + y**2) < 0.7).astype(float) * (1 + 0.3 * np.cos(6 * x)) + 0.01
    img = ref + 0.05 * rng.standard_normal(ref.shape)
    return ref.astype(np.float32), img.astype(np.float32)


def test_psnr_nmse_match_skimage(pair):
    ref, img = pair
    r, i = ref.astype(np.float64), img.astype(np.float64)
    assert psnr(ref, img) == pytest.approx(skm.peak_signal_noise_ratio(r, i, data_range=r.max()), rel=1e-12)
    assert nmse(ref, img) == pytest.approx(skm.normalized_root_mse(r, i) ** 2, rel=1e-12)


@pytest.mark.parametrize("gaussian", [False, True])
def test_ssim_matches_skimage(pair, gaussian):
    ref, img = pair
    r, i = ref.astype(np.float64), img.astype(np.float64)
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False} if gaussian else {}
    want = skm.structural_similarity(r, i, data_range=r.max(), **kw)
    assert ssim(ref, img, gaussian=gaussian) == pytest.approx(want, abs=1e-4)


def test_complex_inputs_use_magnitude(pair):
    ref, img = pair
    ph = np.exp(1j * np.linspace(0, 3, ref.size).reshape(ref.shape))
    a, b = np.abs(ref), np.abs(img)
    assert psnr(ref * ph, img * ph) == pytest.approx(psnr(a, b), rel=1e-6)
    assert ssim(ref * ph, img * ph) == pytest.approx(ssim(a, b), abs=1e-6)
    assert nmse(ref * ph, img * ph) == pytest.approx(nmse(a, b), rel=1e-6)


def test_crop_and_mask(pair):
    ref, img = pair
    r, i = ref.astype(np.float64), img.astype(np.float64)
    # crop: same as cropping by hand (fastMRI centre crop)
    rc, ic = r[8:88, 10:70], i[8:88, 10:70]
    assert psnr(ref, img, crop=(80, 60)) == pytest.approx(
        skm.peak_signal_noise_ratio(rc, ic, data_range=rc.max()), rel=1e-12
    )
    assert ssim(ref, img, crop=(80, 60)) == pytest.approx(
        skm.structural_similarity(rc, ic, data_range=rc.max()), abs=1e-4
    )
    # mask: PSNR/NMSE over the masked pixels, data range still the reference max
    m = ref > 0.5
    mse = np.mean((r[m] - i[m]) ** 2)
    assert psnr(ref, img, mask=m) == pytest.approx(10 * np.log10(r.max() ** 2 / mse), rel=1e-12)
    assert nmse(ref, img, mask=m) == pytest.approx(np.sum((r[m] - i[m]) ** 2) / np.sum(r[m] ** 2), rel=1e-12)
    # SSIM with a full mask equals the unmasked value; a foreground mask averages the map there
    assert ssim(ref, img, mask=np.ones(ref.shape, bool)) == pytest.approx(ssim(ref, img), abs=1e-12)
    _, smap = skm.structural_similarity(r, i, data_range=r.max(), full=True)
    inner = np.zeros_like(m)
    inner[3:-3, 3:-3] = True
    assert ssim(ref, img, mask=m) == pytest.approx(smap[m & inner].mean(), abs=1e-4)


def test_evaluate_and_identity(pair):
    ref, img = pair
    out = evaluate(ref, img)
    assert set(out) == {"psnr", "ssim", "nmse"}
    assert evaluate(ref, ref)["ssim"] == pytest.approx(1.0)
    assert evaluate(ref, ref)["nmse"] == 0.0
    assert psnr(ref, ref) == float("inf")


def test_metrics_bad_input(pair):
    ref, img = pair
    with pytest.raises(ValueError, match="same shape"):
        psnr(ref, img[:-1])
    with pytest.raises(ValueError, match="crop"):
        ssim(ref, img, crop=(200, 10))
    with pytest.raises(TypeError, match="boolean"):
        nmse(ref, img, mask=np.ones(ref.shape))
    with pytest.raises(ValueError, match="NaN"):
        psnr(ref, np.full_like(img, np.nan))
