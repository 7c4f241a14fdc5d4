"""benchmarks/gpu.py runs its non-GPU parts on the CPU (--dry-run) and exits cleanly without a GPU."""

import importlib.util
import sys
from pathlib import Path

import pytest

from mri_csc.backend import gpu_available

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def gpu_script(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_gpu_script", BENCH / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)  # results go to a temporary folder
    return mod


def test_dry_run_times_both_cases(gpu_script, tmp_path, capsys):
    assert gpu_script.main(["--dry-run", "--skip-tests"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "2D 48x48" in out and "3D 8x16x16" in out
    assert (tmp_path / "gpu_dry_run.json").is_file()


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
def test_no_gpu_exits_cleanly_with_a_reason(gpu_script, capsys):
    assert gpu_script.main([]) == 0
    assert "no usable GPU" in capsys.readouterr().out
    assert gpu_script.main(["--require-gpu"]) == 1
