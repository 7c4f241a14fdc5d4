"""BART pics baselines: registration, availability and quality on a phantom."""

import shutil

import numpy as np
import pytest

import mri_csc
from mri_csc.recon import bart as bart_mod
from mri_csc.recon import get_method

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="the 'bart' binary is not on PATH")


def test_registered_cpu_only():
    for name in ("bart-l1wavelet", "bart-tv"):
        spec = get_method(name)
        assert spec.gpu is False
        assert {"lam", "max_iter"} <= set(spec.params)


def test_unavailable_reason_without_binary(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("BART", raising=False)
    reason = get_method("bart-tv").available()
    assert reason and "bart" in reason
    k = np.ones((2, 8, 8), np.complex64)
    with pytest.raises(ValueError, match="not available here: the 'bart' binary is not on PATH"):
        mri_csc.reconstruct(k, k, method="bart-tv")


@pytest.fixture(scope="module")
def dataset():
    from mri_csc.sim import make_dataset

    return make_dataset("shepp-logan", shape=(64, 64), n_coils=4, mask="poisson", accel=4, snr_db=30, seed=0)


@needs_bart
@pytest.mark.parametrize("method", ["bart-l1wavelet", "bart-tv"])
def test_bart_beats_zero_filled(dataset, method):
    from mri_csc.metrics import psnr

    ds = dataset
    zf = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="zero-filled").image
    res = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=method, lam=0.005, max_iter=60,
                              randshift=False)
    assert res.image.shape == (64, 64) and res.image.dtype == np.complex64
    p_zf = psnr(ds.magnitude_ref, np.abs(zf), mask=ds.support)
    p = psnr(ds.magnitude_ref, np.abs(res.image), mask=ds.support)
    assert p > p_zf + 3, (method, p, p_zf)
    # scale is undone: the image lives in the units of the data, like zero-filled
    ratio = np.linalg.norm(res.image[ds.support]) / np.linalg.norm(zf[ds.support])
    assert 0.7 < ratio < 1.3


@needs_bart
def test_bart_failure_is_reported(dataset, monkeypatch):
    monkeypatch.setattr(bart_mod, "bart_binary", lambda: "/bin/false")
    with pytest.raises(RuntimeError, match="bart pics failed"):
        mri_csc.reconstruct(dataset.kspace, dataset.maps, method="bart-tv", max_iter=2)
