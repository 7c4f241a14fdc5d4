r"""Smooth phase maps for simulated complex images.

MR images are complex, :math:`x = m\,e^{i\phi}`, with a phase :math:`\phi` that
varies slowly (B0 inhomogeneity, coil and receiver phase). These maps let a
simulation carry such a phase, up to several radians, so that methods which
assume a real image are tested fairly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._checks import check_image_shape
from .masks import make_rng

__all__ = ["PHASE_KINDS", "smooth_phase"]

PHASE_KINDS = ("polynomial", "random")


def smooth_phase(
    shape: Sequence[int],
    kind: str = "polynomial",
    amplitude: float = np.pi,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    *,
    length_scale: float = 0.15,
) -> np.ndarray:
    r"""A random smooth phase map with :math:`\max|\phi| = ` ``amplitude``.

    Parameters
    ----------
    shape : tuple of int
        Image shape (2D or 3D).
    kind : {"polynomial", "random"}
        ``"polynomial"``: a polynomial of degree 2 in coordinates normalised to
        :math:`[-1, 1]`, :math:`\phi = \sum_{|\alpha| \le 2} c_\alpha u^\alpha`
        with :math:`c_\alpha \sim \mathcal N(0, 1)`. ``"random"``: white
        Gaussian noise low-pass filtered by a Gaussian of standard deviation
        ``length_scale`` times each axis length (so its correlation length
        scales with the image).
    amplitude : float
        After removing the mean, the map is scaled so that its largest absolute
        value is ``amplitude`` (radians, >= 0): values lie in
        :math:`[-A, A]`. 0 gives a zero map.
    seed, rng
        A seed, or a :class:`numpy.random.Generator` (not both).
    length_scale : float
        Smoothness of ``"random"`` maps, as a fraction of the image size (> 0).

    Returns
    -------
    numpy.ndarray
        float32 phase map of ``shape``.
    """
    if kind not in PHASE_KINDS:
        raise ValueError(f"kind must be one of {PHASE_KINDS}; got {kind!r}")
    shape = check_image_shape(shape)
    if not np.isfinite(amplitude) or amplitude < 0:
        raise ValueError(f"amplitude must be a finite number >= 0; got {amplitude!r}")
    if not length_scale > 0:
        raise ValueError(f"length_scale must be > 0; got {length_scale!r}")
    if rng is not None and seed is not None:
        raise ValueError("give either seed or rng, not both")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    gen = make_rng(seed, rng)

    if kind == "polynomial":
        axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        terms = [np.ones(shape)] + list(axes)
        terms += [axes[i] * axes[j] for i in range(len(shape)) for j in range(i, len(shape))]
        coef = gen.standard_normal(len(terms))
        phi = sum(c * t for c, t in zip(coef, terms))
    else:
        noise = gen.standard_normal(shape)
        phi = ndimage.gaussian_filter(noise, sigma=[length_scale * n for n in shape], mode="reflect")
    phi = phi - phi.mean()
    peak = np.abs(phi).max()
    phi = phi * (amplitude / peak) if peak > 0 else np.zeros(shape)
    return phi.astype(np.float32)
