"""`mri-csc learn-dict` through real subprocess calls on real NIfTI and .npy files."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import mri_csc
from mri_csc.sim import make_dataset, shepp_logan


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mri_csc.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    path = tmp_path_factory.mktemp("nii") / "vol.nii.gz"
    vol = np.stack([shepp_logan((48, 48)) * (0.5 + 0.1 * i) for i in range(6)], axis=-1)
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), str(path))
    return path


def test_learn_dict_from_nifti_then_reconstruct_with_it(nifti, tmp_path):
    out = tmp_path / "d.npz"
    r = _cli("learn-dict", nifti, "--slices", "1:5", "--n-filters", "6", "--size", "5", "--n-iter", "8",
             "--out", out)
    assert r.returncode == 0, r.stderr
    filters = np.load(out)["filters"]
    assert filters.shape == (6, 5, 5) and filters.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(filters.reshape(6, -1), axis=1), 1, rtol=1e-4)
    ds = make_dataset("shepp-logan", shape=(48, 48), n_coils=4, accel=3, seed=0)
    res = mri_csc.reconstruct(ds.kspace, ds.maps, mask=ds.mask, method="csc", dictionary=str(out), max_iter=3)
    assert np.isfinite(res.image).all()


def test_learn_dict_from_npy_stack_and_no_clobber(tmp_path):
    stack = np.stack([shepp_logan((40, 40)), shepp_logan((40, 40))[::-1]])
    src = tmp_path / "imgs.npy"
    np.save(src, stack)
    out = tmp_path / "d.npz"
    out.write_bytes(b"precious")
    r = _cli("learn-dict", src, "--n-filters", "4", "--size", "5", "--n-iter", "3", "--out", out)
    assert r.returncode == 2 and "output exists" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"precious"
    r = _cli("learn-dict", src, "--n-filters", "4", "--size", "5", "--n-iter", "3", "--out", out, "--force")
    assert r.returncode == 0, r.stderr
    assert np.load(out)["filters"].shape == (4, 5, 5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.nii.gz"], "no such file"),
        (["{nifti}", "--slices", "99"], "out of range"),
        (["{nifti}", "--slices", "a:b"], "expected INDEX or START:STOP"),
        (["{nifti}", "--out-ignored"], None),
        (["{nifti}", "--slices", "1:5:0"], "must not be 0"),
        (["{nifti}", "--slices", "5:2"], "selects no slice"),
        (["{stack}", "--slices", "7"], "out of range for 3 images"),
        (["{zeros}"], "all zero"),
        (["{nifti}", "--n-iter", "0"], "--n-iter must be >= 1"),
        (["{const}"], "no detail once their low-pass part is removed"),
    ],
)
def test_learn_dict_bad_input(nifti, tmp_path, args, message):
    np.save(tmp_path / "stack.npy", np.stack([shepp_logan((32, 32))] * 3))
    np.save(tmp_path / "zeros.npy", np.zeros((2, 32, 32), np.float32))
    np.save(tmp_path / "const.npy", np.full((2, 32, 32), 0.7, np.float32))
    args = [a.replace("{nifti}", str(nifti)).replace("{stack}", str(tmp_path / "stack.npy"))
            .replace("{zeros}", str(tmp_path / "zeros.npy")).replace("{const}", str(tmp_path / "const.npy"))
            for a in args]
    r = _cli("learn-dict", *args, "--out", tmp_path / "x.npz")
    assert r.returncode == 2
    if message:
        assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.npz").exists()
