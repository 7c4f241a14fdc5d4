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

from ..backend import get_xp, ifftc

__all__ = ["hann_window", "lowres_image", "phase_from_image", "estimate_phase"]


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


def lowres_image(kspace, maps, mask=None, width: int = 24):
    r"""Coil-combined low-resolution image :math:`\sum_c \bar S_c F^{-1}(h\,y_c)`, ``h`` a Hann window."""
    xp = get_xp(kspace, maps)
    shape = kspace.shape[1:]
    win = hann_window(shape, width, xp, kspace.real.dtype)
    if mask is not None:
        win = win * mask
    img = ifftc(kspace * win, tuple(range(-len(shape), 0)))
    return (maps.conj() * img).sum(axis=0)


def phase_from_image(image, eps: float = 1e-12):
    r"""Unit phasor :math:`e^{i\varphi} = x/|x|` (1 where :math:`|x|` = 0)."""
    xp = get_xp(image)
    mag = xp.abs(image)
    safe = mag > eps * (float(mag.max()) if mag.size else 1.0)
    return xp.where(safe, image / xp.where(safe, mag, 1), 1).astype(image.dtype)


def estimate_phase(kspace, maps, mask=None, width: int = 24):
    """Smooth phase phasor of the data, from the Hann-windowed calibration region."""
    return phase_from_image(lowres_image(kspace, maps, mask, width))
