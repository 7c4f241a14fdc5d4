r"""Smooth-phase estimation and the phase-demodulation used by the CSC prior.

MR images are complex, :math:`x = e^{i\varphi} m`, with a phase :math:`\varphi`
that varies slowly across the object. The CSC prior codes the *demodulated*
image :math:`u = e^{-i\varphi} x`, whose real part carries the anatomy, and the
phase-smoothness term penalises :math:`\tfrac{\gamma}{2}\|\operatorname{Im}(e^{-i\varphi}x)\|^2`.

The phase is never differenced or unwrapped: it is taken as the angle of a
smoothed *complex* image, :math:`e^{i\varphi} = \hat x_{\text{lp}}/|\hat x_{\text{lp}}|`,
which is wrap-safe (a jump of :math:`2\pi` in :math:`\varphi` is no jump in
:math:`e^{i\varphi}`).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_xp

__all__ = ["box_window", "hann_window", "lowres_image", "phase_from_image", "estimate_phase"]


def hann_window(shape, width, xp=np, dtype=np.float32):
    """Separable Hann window of ``width`` samples per axis, centred in ``shape``, zero elsewhere."""
    widths = (width,) * len(shape) if np.isscalar(width) else tuple(width)
    win = xp.ones(shape, dtype=dtype)
    for ax, (n, w) in enumerate(zip(shape, widths)):
        w = int(min(max(w, 2), n))
        prof = xp.zeros(n, dtype=dtype)
        start = n // 2 - w // 2
        prof[start:start + w] = xp.asarray(np.hanning(w + 2)[1:-1], dtype=dtype)
        view = [1] * len(shape)
        view[ax] = n
        win = win * prof.reshape(view)
    return win


def box_window(shape, width, xp=np, dtype=np.float32):
    """Centred box of ``width`` samples per axis in ``shape`` (1 inside, 0 outside)."""
    win = xp.zeros(shape, dtype=dtype)
    win[tuple(slice(max(n // 2 - width // 2, 0), n // 2 + width // 2) for n in shape)] = 1
    return win


def lowres_image(op, kspace, window):
    r"""The low-resolution image :math:`A^H(w \odot y)`: the forward operator's adjoint on windowed data.

    For Cartesian SENSE (:class:`~mri_csc.operators.Sense`) and a centred window ``w`` of the image
    shape this is the coil-combined image :math:`\sum_c \bar S_c F^{-1}(M w y_c)` of the centre of
    k-space; a non-Cartesian operator takes a window over its samples. It serves the data scale
    (:func:`~mri_csc.recon.problem.data_scale`, box window) and the phase estimate
    (:func:`estimate_phase`, Hann window).
    """
    return op.adjoint(kspace * window)


def phase_from_image(image, eps: float = 1e-12):
    r"""Unit phasor :math:`e^{i\varphi} = x/|x|` (1 where :math:`|x|` = 0)."""
    xp = get_xp(image)
    mag = xp.abs(image)
    safe = mag > eps * (float(mag.max()) if mag.size else 1.0)
    return xp.where(safe, image / xp.where(safe, mag, 1), 1).astype(image.dtype)


def estimate_phase(op, kspace, width: int = 24):
    """Smooth phase phasor of the data: of :func:`lowres_image` with a ``width``-wide Hann window."""
    xp = get_xp(kspace)
    return phase_from_image(lowres_image(op, kspace, hann_window(kspace.shape[1:], width, xp, kspace.real.dtype)))
