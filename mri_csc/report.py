"""Figures and the self-contained HTML report of an evaluation run.

- :func:`save_grid`: reference | zero-filled | each method (magnitude), with
  error maps ``|x̂| − |x|`` beneath.
- :func:`save_convergence`: each method's history (objective / residuals)
  against iteration.
- :func:`html_report`: one HTML file, images embedded as base64, with the
  metrics table, the figures, the resolved config and the versions.

matplotlib runs with the Agg backend; nothing opens a window.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["save_grid", "save_convergence", "html_report", "format_table", "CONVERGENCE_KEYS"]

CONVERGENCE_KEYS = ("objective", "residual", "primal_residual", "dual_residual", "coupling_misfit", "image_change")


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _mid(a):
    a = np.asarray(a)
    return a[a.shape[0] // 2] if a.ndim == 3 else a


def save_grid(path, reference, images: dict, metrics: dict | None = None, support=None, dpi: int = 100) -> None:
    """Reference | each image on top, error maps (same colour scale for all) beneath.

    Parameters
    ----------
    reference : array, ``(ny, nx)`` (or 3D: the middle slice is shown)
        Magnitude reference.
    images : dict label → complex or real array
        In display order (put zero-filled first).
    metrics : dict label → dict with ``psnr``/``ssim``, optional
        Written under each title.
    """
    plt = _plt()
    ref = np.abs(_mid(reference))
    vmax = float(np.percentile(ref, 99.5)) or float(ref.max()) or 1.0
    mags = {k: np.abs(_mid(v)) for k, v in images.items()}
    errs = {k: m - ref for k, m in mags.items()}
    if support is not None:
        sup = _mid(support).astype(bool)
        errs = {k: np.where(sup, e, 0) for k, e in errs.items()}
    emax = max([float(np.percentile(np.abs(e), 99.5)) for e in errs.values()] + [1e-12])
    n = 1 + len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    axes[0, 0].imshow(ref, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("reference", fontsize=9)
    axes[1, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, f"error maps\n|x̂| − |x|\n±{emax:.3g}", ha="center", va="center", fontsize=9)
    im = None
    for j, (label, mag) in enumerate(mags.items(), start=1):
        axes[0, j].imshow(mag, cmap="gray", vmin=0, vmax=vmax)
        title = label
        if metrics and label in metrics and metrics[label].get("psnr") is not None:
            title += f"\n{metrics[label]['psnr']:.2f} dB"
            if metrics[label].get("ssim") is not None:
                title += f", SSIM {metrics[label]['ssim']:.3f}"
        axes[0, j].set_title(title, fontsize=8)
        im = axes[1, j].imshow(errs[label], cmap="RdBu_r", vmin=-emax, vmax=emax)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=list(axes[1, 1:]), shrink=0.8, fraction=0.05)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)


def save_convergence(path, histories: dict, dpi: int = 100) -> None:
    """Plot each method's per-iteration history (log scale) for the keys it records."""
    plt = _plt()
    keys = [k for k in CONVERGENCE_KEYS
            if any(len(h) > 1 and any(r.get(k) is not None for r in h) for h in histories.values())]
    n = max(len(keys), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    if not keys:
        axes[0, 0].text(0.5, 0.5, "no iterative history recorded", ha="center", va="center")
        axes[0, 0].axis("off")
    for ax, key in zip(axes[0], keys):
        for label, h in histories.items():
            pts = [(r.get("iter", i), r[key]) for i, r in enumerate(h)
                   if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if len(pts) > 1:
                it, val = zip(*pts)
                val = np.abs(np.asarray(val, float))
                ax.plot(it, val, label=label, lw=1.4)
                if (val > 0).all():
                    ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(key.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    """Plain-text metrics table (label, method, PSNR, SSIM, NMSE, time)."""
    head = ("method", "name", "PSNR [dB]", "SSIM", "NMSE", "time [s]", "iters")
    body = []
    for r in rows:
        body.append((r["label"], r["method"], _fmt(r.get("psnr"), ".2f"), _fmt(r.get("ssim"), ".4f"),
                     _fmt(r.get("nmse"), ".3e"), _fmt(r.get("time"), ".2f"), str(r.get("iterations", ""))))
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def _fmt(v, spec):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{color:#1a4e8a} h2{border-bottom:2px solid #1a4e8a;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;background:#fff} th,td{border:1px solid #bbb;padding:.3em .8em;text-align:right}
th{background:#1a4e8a;color:#fff} td:first-child,td:nth-child(2){text-align:left}
tr.best td{background:#e3f2d9;font-weight:600}
img{max-width:100%;border:1px solid #ccc;background:#fff}
pre{background:#f0f0f0;padding:1em;overflow-x:auto;font-size:.85em}
.meta{color:#555}
"""


def html_report(path, *, title: str, description: str, rows: list[dict], grid_png, convergence_png,
                config_text: str, versions: dict, dataset_info: dict) -> None:
    """Write the self-contained HTML report (atomic write is up to the caller)."""
    best = max((r for r in rows if r.get("psnr") is not None), key=lambda r: r["psnr"], default=None)
    trs = []
    for r in rows:
        cls = ' class="best"' if r is best else ""
        trs.append(f"<tr{cls}><td>{html.escape(r['label'])}</td><td>{html.escape(r['method'])}</td>"
                   f"<td>{_fmt(r.get('psnr'), '.2f')}</td><td>{_fmt(r.get('ssim'), '.4f')}</td>"
                   f"<td>{_fmt(r.get('nmse'), '.3e')}</td><td>{_fmt(r.get('time'), '.2f')}</td>"
                   f"<td>{r.get('iterations', '')}</td></tr>")
    info = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in dataset_info.items())
    meta = " · ".join(html.escape(str(v)) for v in (f"device: {versions.get('device', '')}",
                                                    f"mri_csc {versions.get('mri_csc', '')}",
                                                    versions.get("date", "")))
    head = "".join(f"<th>{h}</th>" for h in ("method", "name", "PSNR [dB]", "SSIM", "NMSE", "time [s]", "iterations"))
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(description)}</p>
<p class="meta">{meta}</p>
<h2>Data</h2><ul>{info}</ul>
<h2>Metrics</h2>
<table><thead><tr>{head}</tr></thead>
<tbody>{''.join(trs)}</tbody></table>
<h2>Reconstructions</h2>
{_img_tag(grid_png, 'reconstructions and error maps')}
<h2>Convergence</h2>
{_img_tag(convergence_png, 'convergence')}
<h2>Configuration</h2>
<pre>{html.escape(config_text)}</pre>
<h2>Versions</h2>
<pre>{html.escape(json.dumps(versions, indent=2))}</pre>
</body></html>
"""
    Path(path).write_text(doc, encoding="utf-8")
