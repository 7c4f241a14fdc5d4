"""The validation layer (mri_csc.validate), the CLI's error contract and recon's slice/mask pairing."""

import logging
import subprocess
import sys

import numpy as np
import pytest

import mri_csc
from mri_csc.io.limits import BudgetError
from mri_csc.sim import make_dataset
from mri_csc.validate import (
    InputError,
    InputTypeError,
    check_finite,
    check_mask_values,
    check_output,
    is_user_error,
    maps_power,
    normalise_maps,
    per_slice,
)


@pytest.fixture(scope="module")
def ds():
    return make_dataset(phantom="shepp-logan", shape=(48, 48), n_coils=4, accel=3, seed=1)


def _err(ds, method):
    img = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=method, max_iter=10).image
    return float(np.linalg.norm(np.abs(img) - np.abs(ds.image)) / np.linalg.norm(ds.image))


@pytest.mark.parametrize("bad, match", [
    (lambda m: np.where(m > 0, 255, 0).astype(np.uint8), "0/255"),
    (lambda m: m * 1e30, "values up to 1e\\+30"),
    (lambda m: -m, "negative values"),
    (lambda m: np.where(m > 0, np.nan, 0), "NaN or Inf"),
    (lambda m: m.astype(np.complex64), "mask must have a boolean, integer or real float dtype"),
])
def test_mask_out_of_range_is_refused(ds, bad, match):
    with pytest.raises(InputError, match=match):
        mri_csc.reconstruct(ds.kspace, ds.maps, mask=bad(ds.mask), method="zero-filled")


def test_boolean_and_weighted_masks_are_accepted(ds, caplog):
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        a = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask > 0, method="zero-filled").image
        b = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask.astype(np.float32), method="zero-filled").image
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "between 0 and 1" not in caplog.text  # 0/1 patterns pass silently
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        check_mask_values(np.full((4, 4), 0.5, np.float32))
    # weights are accepted, but a soft mask meant as a pattern would sample everything: said so
    assert "16 of 16 values lie strictly between 0 and 1" in caplog.text and "mask > 0" in caplog.text


@pytest.mark.parametrize("factor", [1e-10, 1e20])
def test_unnormalised_maps_are_rescaled_with_a_warning(ds, factor, caplog):
    ref = _err(ds, "sense")
    with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
        img = mri_csc.reconstruct(ds.kspace, ds.maps * factor, mask=ds.mask, method="sense", max_iter=10).image
    assert "sum_c |S_c|^2" in caplog.text and "returned in their units" in caplog.text
    img = np.asarray(img) * factor  # the image of the maps as given (S x = (S/g)(g x)), as inside the tolerance
    assert np.isfinite(img).all()
    err = float(np.linalg.norm(np.abs(img) - np.abs(ds.image)) / np.linalg.norm(ds.image))
    assert err == pytest.approx(ref, rel=1e-2, abs=1e-3)


@pytest.mark.parametrize("method,kw", [("csc", {"max_iter": 15}), ("l1wavelet", {"max_iter": 30})])
def test_maps_within_the_tolerance_give_the_same_image_in_their_own_units(ds, method, kw):
    """Maps x0.6 or x1.8 (power 0.36 or 3.24, inside MAPS_TOLERANCE: not rescaled with a warning) are solved
    at unit power and the image returned in their units, c x = x_1: the automatic weights had followed the
    maps' scale (csc's NRMSE 0.09-0.22 over c = 0.55-1.9 on a user trial)."""
    ref = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=method, **kw)
    for c in (0.6, 1.8, 2.1):  # 2.1: outside the tolerance (warned), the same units (they had jumped 2x there)
        r = mri_csc.reconstruct(ds.kspace, ds.maps * c, mask=ds.mask, method=method, **kw)
        assert np.linalg.norm(c * r.image - ref.image) <= 1e-4 * np.linalg.norm(ref.image)
        assert r.params.get("lam") == ref.params.get("lam")
        if method == "csc":  # a warm start in the units the image is returned in
            w = mri_csc.reconstruct(ds.kspace, ds.maps * c, mask=ds.mask, method=method, x0=r.image, max_iter=1)
            w1 = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method=method, x0=ref.image, max_iter=1)
            assert w.history[0]["data_fidelity"] == pytest.approx(w1.history[0]["data_fidelity"], rel=1e-3)


def test_normalised_maps_are_left_alone(ds):
    assert maps_power(ds.maps) == pytest.approx(1.0, rel=1e-3)
    assert normalise_maps(ds.maps) is ds.maps
    with pytest.raises(InputError, match="coil_maps are all zero"):
        normalise_maps(np.zeros((2, 4, 4), np.complex64))


def test_correct_maps_that_leak_outside_the_object_are_not_rescaled(ds):
    """Maps with sum |S|^2 = 1 on a disc holding 23 % of the image and 0.01 outside it (leakage):
    judged on the high-power region they are normalised; a median over everything above 1e-6 of
    the peak would be 0.01 and rescale them tenfold."""
    yy, xx = np.mgrid[:48, :48]
    obj = (yy - 24) ** 2 + (xx - 24) ** 2 < 13 ** 2
    leaky = ds.maps / np.sqrt((np.abs(ds.maps) ** 2).sum(0))
    leaky[:, ~obj] *= 0.1
    assert 0.2 < obj.mean() < 0.3
    assert maps_power(leaky) == pytest.approx(1.0, rel=1e-4)
    assert normalise_maps(leaky) is leaky
    assert maps_power(leaky * 1e20) == pytest.approx(1e40, rel=1e-4)  # no float32 overflow
    assert maps_power(leaky * 1e-25) == pytest.approx(1e-50, rel=1e-4)  # nor underflow


def test_empty_arrays_are_named_empty(ds):
    k = np.zeros((4, 0, 48), np.complex64)
    with pytest.raises(InputError, match=r"kspace is empty \(shape \(4, 0, 48\)\)"):
        mri_csc.reconstruct(k, k.copy(), method="zero-filled")


def test_broadcast_view_is_budgeted_before_any_allocation(ds, monkeypatch):
    monkeypatch.setenv("MRI_CSC_MAX_BYTES", "64M")
    huge = np.broadcast_to(np.complex64(1), (8, 20000, 20000))  # 25 GiB if materialised
    with pytest.raises(BudgetError, match="over the memory budget of 64.0 MiB"):
        mri_csc.reconstruct(huge, huge, method="zero-filled")
    # the NaN scan looks at the data a view really holds (one element here), not 3.2e9 of them
    check_finite("kspace", huge)
    with pytest.raises(InputError, match="1 NaN"):
        check_finite("kspace", np.broadcast_to(np.complex64(np.nan), (8, 20000, 20000)))


def test_per_slice_never_zips_short():
    m = np.ones((4, 8, 8))
    assert len(per_slice("mask", m[0], 8, 2)) == 8
    assert len(per_slice("mask", m[:1], 8, 2)) == 8
    assert len(per_slice("mask", m, 4, 2)) == 4
    with pytest.raises(InputError, match=r"mask of shape \(4, 8, 8\) does not match 8 slice"):
        per_slice("mask", m, 8, 2)


def test_check_output_refuses_nan():
    check_output(np.ones(3), "out.npy")
    with pytest.raises(InputError, match="1 NaN/Inf value.*nothing was written.*lower its regularisation"):
        check_output(np.array([1, np.nan]), "out.npy", method="tv")


def test_user_errors_are_told_from_bugs():
    assert is_user_error(InputTypeError("x"))
    try:
        check_mask_values(-np.ones(3))
    except ValueError as e:
        assert is_user_error(e)
    try:
        len(None)  # a bug inside our code would look like this
    except TypeError as e:
        assert not is_user_error(e)
    try:
        np.ones(3) + np.ones(4)  # raised inside NumPy
    except ValueError as e:
        assert not is_user_error(e)


def test_typeerror_on_a_raise_line_is_a_bug():
    """Python's TypeError while formatting a message inside ``raise ValueError(...)`` is not a user
    error; nor is any plain TypeError; a ValueError mri_csc raises on purpose is."""
    def fmt(x):
        raise ValueError(f"bad value {x:.3g}")

    try:
        fmt(None)
    except TypeError as e:
        assert not is_user_error(e)
    try:
        fmt(2.0)
    except ValueError as e:
        assert not is_user_error(e)  # raised in a test file, not in mri_csc
    from mri_csc.sim import masks
    with pytest.raises(TypeError, match="accel must be a number") as info:
        masks.sample_mask("poisson", (8, 8), accel="abc")  # a deliberate plain TypeError of mri_csc's own
    assert not is_user_error(info.value)
    with pytest.raises(ValueError, match="accel must be a finite number") as info:
        masks.sample_mask("poisson", (8, 8), accel=0.5)  # a plain ValueError raised on purpose by mri_csc
    assert is_user_error(info.value)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mri_csc.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_recon_refuses_a_mask_with_fewer_slices(tmp_path):
    # 4 coils: a (4, ny, nx) mask broadcasts against one slice's (coils, ny, nx) k-space
    d = make_dataset(phantom="shepp-logan", shape=(32, 32), n_coils=4, accel=2, seed=0)
    import h5py

    with h5py.File(tmp_path / "k.h5", "w") as f:  # fastMRI layout: 8 slices
        f["kspace"] = np.stack([d.kspace] * 8)
        f["maps"] = np.stack([d.maps] * 8)
        f["mask"] = np.stack([d.mask] * 4).astype(np.float32)
    p = _cli("recon", tmp_path / "k.h5", "--out", tmp_path / "o.npy", "--method", "zero-filled")
    assert p.returncode == 2, p.stderr
    assert "mask" in p.stderr and "(4, 32, 32)" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o.npy").exists()


def test_cli_bug_gives_traceback_and_exit_1(monkeypatch, capsys):
    from mri_csc import cli

    def broken(args):
        return len(None)

    monkeypatch.setattr(cli, "cmd_methods", broken)
    assert cli.main(["methods"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "TypeError" in err and "bug" in err


def test_cli_memory_error_is_one_line(monkeypatch, capsys):
    from mri_csc import cli

    def hungry(args):
        np.empty((1 << 50,), np.uint8)

    monkeypatch.setattr(cli, "cmd_methods", hungry)
    assert cli.main(["methods"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mri-csc: error: out of memory")
    assert "1.00 PiB" in err[0]


@pytest.mark.parametrize("content", [b"", b"\x00" * 400, b"not a nifti at all" * 30])
def test_learn_dict_and_info_on_a_corrupt_nifti_give_one_line(tmp_path, content):
    bad = tmp_path / "bad.nii"
    bad.write_bytes(content)
    for args in (("learn-dict", bad, "--out", tmp_path / "d.npz", "--n-iter", 1), ("info", bad)):
        p = _cli(*args)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.strip().startswith("mri-csc: error: ") and "bad.nii" in p.stderr


@pytest.mark.parametrize("kind", ["h5", "npz"])
def test_a_leading_one_mask_is_shared_by_every_slice_in_the_readers_too(tmp_path, kind):
    """(1, ny, nx) is one pattern for all slices in per_slice and in every reader: full stack and one slice."""
    import h5py

    d = make_dataset(phantom="shepp-logan", shape=(32, 32), n_coils=4, accel=2, seed=0)
    k, maps, m = np.stack([d.kspace] * 3), np.stack([d.maps] * 3), d.mask[None].astype(np.float32)
    assert len(per_slice("mask", m, 3, 2)) == 3
    path = tmp_path / f"k.{kind}"
    if kind == "h5":
        with h5py.File(path, "w") as f:
            f["kspace"], f["maps"], f["mask"] = k, maps, m
    else:
        np.savez(path, kspace=k, maps=maps, mask=m)
    if kind == "h5":  # a 4-D .npz without slice= is one 3-D volume (coils, nz, ny, nx), not a stack
        full = mri_csc.io.read_kspace(path)
        assert full["stacked"] and full["mask"].shape == (32, 32)
        assert len(per_slice("mask", full["mask"], 3, 2)) == 3
    one = mri_csc.io.read_kspace(path, slice=2)
    assert one["kspace"].shape == (4, 32, 32) and one["mask"].shape == (32, 32)
    assert np.array_equal(one["mask"], d.mask.astype(np.float32))


def test_coil_maps_that_do_not_match_the_kspace_are_warned_about(caplog):
    """Maps transposed, flipped or with the coils permuted against the k-space explain little of its
    calibration coil images: a warning names it; the scan's own (true or ESPIRiT) maps pass silently."""
    from mri_csc.sim import estimate_maps
    from mri_csc.validate import MAPS_EXPLAINED_MIN, maps_explained_fraction

    d = make_dataset(phantom="brain", shape=(64, 64), n_coils=8, mask="poisson", accel=4, seed=2)
    k = d.kspace * d.mask
    for good in (d.maps, estimate_maps(k, method="sigpy")):
        assert maps_explained_fraction(k, good) > 0.99
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
            mri_csc.reconstruct(d.kspace, good, mask=d.mask, method="zero-filled")
        assert "explain only" not in caplog.text
    for bad in (d.maps.transpose(0, 2, 1), d.maps[:, ::-1], d.maps[::-1]):
        assert maps_explained_fraction(k, bad) < MAPS_EXPLAINED_MIN
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mri_csc.validate"):
            mri_csc.reconstruct(d.kspace, bad, mask=d.mask, method="zero-filled")
        assert "coil_maps explain only" in caplog.text and "transposed or flipped" in caplog.text
    # one coil, or no fully sampled centre: nothing to judge by
    assert maps_explained_fraction(k[:1], d.maps[:1]) is None
    k_nocal = k.copy()
    k_nocal[:, :, 1::2] = 0
    k_nocal[:, 1::2] = 0
    assert maps_explained_fraction(k_nocal, d.maps) is None


def test_noise_does_not_make_a_scans_own_maps_look_wrong():
    """The maps check discounts the noise's share; coil images that are mostly noise cannot be judged."""
    from mri_csc.validate import maps_explained_fraction

    d = make_dataset(phantom="brain", shape=(64, 64), n_coils=8, mask="poisson", accel=4, seed=2, snr_db=0)
    k = d.kspace * d.mask
    assert maps_explained_fraction(k, d.maps) > 0.99  # 0.93 with the noise counted as unexplained signal
    # a plane of pure noise (a 3-D scan's readout position outside the object): nothing to judge by
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64) * d.mask
    assert maps_explained_fraction(noise, d.maps) is None
