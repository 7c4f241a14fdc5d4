r"""Retrospective undersampling masks with fastMRI's conventions (``fastmri.data.subsample``).

Both kinds sample whole columns (the last axis, fastMRI's ``W``: the phase
encodes of fastMRI's ``(..., H, W)`` k-space) and keep a fully sampled centre of
``round(W * center_fraction)`` columns starting at ``(W - n_low + 1) // 2``.

``"random"`` (``RandomMaskFunc``)
    every other column with probability
    :math:`p = (W/R - n_{low}) / (W - n_{low})`.
``"equispaced"`` (``EquispacedMaskFunc``)
    columns ``round(offset + j a)`` with the adjusted spacing
    :math:`a = R (n_{low} - W) / (n_{low} R - W)` (so that, with the centre, about
    ``W / R`` columns are sampled) and a random integer ``offset`` in ``[0, round(a))``.

fastMRI draws with ``np.random.RandomState``; these draw with a
:class:`numpy.random.Generator`, so the conventions match but not the exact
columns for a given seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fastmri_mask", "FASTMRI_MASK_KINDS"]

FASTMRI_MASK_KINDS = ("random", "equispaced")


def fastmri_mask(n_cols: int, accel: float, center_fraction: float, kind: str = "random", seed=None) -> np.ndarray:
    """A fastMRI column mask of ``n_cols`` columns (float32 0/1), see the module docstring.

    Raises
    ------
    ValueError
        On a kind not in :data:`FASTMRI_MASK_KINDS`, ``accel < 1``, ``center_fraction``
        outside ``(0, 1)`` or a centre that already exceeds ``n_cols / accel``.
    """
    if kind not in FASTMRI_MASK_KINDS:
        raise ValueError(f"mask kind must be one of {FASTMRI_MASK_KINDS}; got {kind!r}")
    n_cols = int(n_cols)
    if n_cols < 2:
        raise ValueError(f"n_cols must be >= 2; got {n_cols}")
    if not np.isfinite(accel) or accel < 1:
        raise ValueError(f"accel must be >= 1; got {accel!r}")
    if not 0 < center_fraction < 1:
        raise ValueError(f"center_fraction must be in (0, 1); got {center_fraction!r}")
    n_low = int(round(n_cols * center_fraction))
    if n_low * accel >= n_cols and accel > 1:
        raise ValueError(f"center_fraction={center_fraction} keeps {n_low} of {n_cols} columns, already more than "
                         f"1/accel = 1/{accel:g} of them; lower center_fraction or accel")
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_cols, bool)
    if accel == 1:
        mask[:] = True
    elif kind == "random":
        prob = (n_cols / accel - n_low) / (n_cols - n_low)
        mask = rng.uniform(size=n_cols) < prob
    else:
        adjusted = (accel * (n_low - n_cols)) / (n_low * accel - n_cols)
        offset = int(rng.integers(0, max(round(adjusted), 1)))
        cols = np.around(np.arange(offset, n_cols - 1, adjusted)).astype(int)
        mask[cols[cols < n_cols]] = True
    pad = (n_cols - n_low + 1) // 2
    mask[pad:pad + n_low] = True
    return mask.astype(np.float32)
