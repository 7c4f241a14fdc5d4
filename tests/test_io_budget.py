"""Readers read one slice of a stack without reading the stack, and refuse over-budget headers."""

import tracemalloc

import h5py
import numpy as np
import pytest

from mri_csc.io import read_kspace
from mri_csc.io.formats import FileFormatError
from mri_csc.io.limits import BudgetError


def _stack(n=24):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, 2, 64, 64)) + 1j * rng.standard_normal((n, 2, 64, 64))).astype(np.complex64)


@pytest.mark.parametrize("kind", ["npz-compressed", "npz-stored", "h5"])
def test_one_slice_of_a_stack_costs_one_slice(tmp_path, kind):
    k = _stack()
    if kind == "h5":
        p = tmp_path / "s.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("kspace", data=k, compression="gzip", chunks=(1, 2, 64, 64))
    else:
        p = tmp_path / "s.npz"
        (np.savez_compressed if kind == "npz-compressed" else np.savez)(p, kspace=k, maps=k)
    tracemalloc.start()
    d = read_kspace(p, slice=5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(d["kspace"], k[5])
    if "maps" in d and d["maps"] is not None:
        np.testing.assert_array_equal(d["maps"], k[5])
    assert peak < 6 * k[0].nbytes + (1 << 20), (peak, k.nbytes)  # the stack is 24 slices


def test_npy_slice_is_memory_mapped(tmp_path):
    k = _stack()
    np.save(tmp_path / "s.npy", k)
    tracemalloc.start()
    from mri_csc.io.formats import _load_npy

    a = _load_npy(tmp_path / "s.npy", 7)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(a, k[7])
    assert peak < 3 * k[0].nbytes + (1 << 20)


def test_declared_sizes_are_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("MRI_CSC_MAX_BYTES", "4M")
    with h5py.File(tmp_path / "bomb.h5", "w") as f:
        f.create_dataset("kspace", shape=(8, 4, 256, 256), dtype=np.complex64, compression="gzip",
                         chunks=(1, 1, 256, 256))
    with pytest.raises(BudgetError, match=r"kspace \(8, 4, 256, 256\) complex64 would take 16.0 MiB"):
        read_kspace(tmp_path / "bomb.h5")
    assert read_kspace(tmp_path / "bomb.h5", slice=0)["kspace"].shape == (4, 256, 256)  # one slice: 2 MiB
    (tmp_path / "x.cfl").write_bytes(bytes(8 * 16 + 3))
    (tmp_path / "x.hdr").write_text("# Dimensions\n4 4 1 1 1\n")
    with pytest.raises(FileFormatError, match="not a multiple of 8"):
        read_kspace(tmp_path / "x.cfl")


@pytest.mark.parametrize("kind", ["npz", "h5", "npy"])
def test_budget_is_per_file_not_per_array(tmp_path, monkeypatch, kind):
    """k-space and maps of 3 MiB each fit a 4 MiB budget one by one, not together: refused before
    either is read; one slice of the stack (1 MiB + 1 MiB) is read."""
    monkeypatch.setenv("MRI_CSC_MAX_BYTES", "4M")
    k = np.ones((3, 4, 256, 128), np.complex64)  # 3 MiB
    if kind == "npz":
        np.savez(tmp_path / "k.npz", kspace=k, maps=k)
        path = tmp_path / "k.npz"
    elif kind == "h5":
        with h5py.File(tmp_path / "k.h5", "w") as f:
            f["kspace"], f["maps"] = k, k
        path = tmp_path / "k.h5"
    else:
        np.save(tmp_path / "k.npy", k)
        np.save(tmp_path / "k_maps.npy", k)
        path = tmp_path / "k.npy"
    tracemalloc.start()
    with pytest.raises(BudgetError, match=r"k-space, coil maps and mask together would take 6.0 MiB"):
        read_kspace(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # nothing was read
    d = read_kspace(path, slice=1)
    assert d["kspace"].shape == d["maps"].shape == (4, 256, 128)


def test_h5_programming_errors_are_not_called_corrupt_files(tmp_path):
    from mri_csc.io import read_array

    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["maps"] = np.ones((2, 4, 4), np.complex64)
    with pytest.raises(TypeError) as info:
        read_array(tmp_path / "m.h5", key=5)
    assert not isinstance(info.value, FileFormatError)
    assert read_array(tmp_path / "m.h5").shape == (2, 4, 4)
