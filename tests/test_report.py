"""Report: figures, the metrics table and the HTML report rendered by headless Chromium."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mri_csc.config import load_config
from mri_csc.report import format_table, save_convergence, save_grid

ROOT = Path(__file__).parents[1]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mri_csc.evaluate import run_eval

    cfg = load_config(ROOT / "recon_configs" / "quick_shepp_logan.toml",
                      ["data.shape=[64,64]", 'methods=[{name="zero-filled"},{name="sense",params={max_iter=5}},'
                       '{name="tv",params={max_iter=10}}]'])
    return run_eval(cfg, tmp_path_factory.mktemp("r") / "run")


def test_report_contents(run):
    html = (run.out_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "<table>" in html and "sense" in html and "versions" in html.lower()
    assert "src=\"http" not in html and "href=\"http" not in html  # self-contained
    assert "PSNR" in run.table


def test_figures_not_blank(tmp_path):
    import matplotlib.image as mpimg

    ref = np.zeros((32, 32))
    ref[8:24, 8:24] = 1
    save_grid(tmp_path / "g.png", ref, {"a": ref * 0.9, "b": ref + 0.1j}, {"a": {"psnr": 20.0, "ssim": 0.9}})
    save_convergence(tmp_path / "c.png", {"a": [{"iter": i, "objective": 1.0 / (i + 1)} for i in range(5)],
                                          "b": []})
    for f in ("g.png", "c.png"):
        img = mpimg.imread(tmp_path / f)
        assert img.std() > 0.02


def test_table_handles_missing_values():
    t = format_table([{"label": "x", "method": "y", "psnr": None, "ssim": float("nan"), "nmse": 1e-3, "time": 1.0}])
    assert "x" in t and "-" in t


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    import matplotlib.image as mpimg

    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           (run.out_dir / "report.html").resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90)
    assert shot.exists(), "chromium wrote no screenshot"
    img = mpimg.imread(shot)[..., :3]
    assert img.std() > 0.05
    colours = np.unique((img.reshape(-1, 3) * 255).astype(np.uint8) // 16, axis=0)
    assert len(colours) > 20
