r"""Convolutional dictionary learning and the shipped default dictionary.

:func:`learn_dictionary` solves

.. math::
    \min_{\{d_k\},\{z_{ik}\}} \tfrac12 \sum_i \Big\| \sum_k d_k * z_{ik} - s_i \Big\|^2
    + \lambda \sum_{ik} \|z_{ik}\|_1
    \quad \text{s.t. } \operatorname{supp} d_k \subseteq f\times f,\ \|d_k\| \le 1,

over high-pass training images :math:`s_i` by alternating one ADMM iteration of
each sub-problem per outer iteration (the interleaved scheme of SPORCO's
``ConvBPDNDictLearn``):

- codes: one iteration of :class:`~mri_csc.prior.sparse_coding.ConvSparseCoder` (ConvBPDN
  ADMM: per-frequency Sherman–Morrison, over-relaxation), all images at once as its batch,
  warm-started; after each dictionary step its filters are replaced
  (:meth:`~mri_csc.prior.sparse_coding.ConvSparseCoder.set_filters`, codes and duals kept);
- dictionary: one iteration of :class:`~mri_csc.prior.dictionary_update.ConvDictionaryUpdate`,
  the *consensus* ADMM form of CCMOD (Garcia-Cardona & Wohlberg, 2018): each image gets its own
  copy of the dictionary, solved exactly with one Sherman–Morrison per frequency, and the
  copies are averaged and projected onto the constraint set (crop to the support, unit-ball
  normalisation);
- both penalties balanced by one rule, :meth:`~mri_csc.prior.penalty.ResidualBalance.dictionary_learning`
  (SPORCO ``ConvBPDNDictLearn``'s: every 10 iterations, factor 2 when the residuals differ 10-fold).

The training images use circular boundaries (as SPORCO); brain slices have a
zero background at the edges, so nothing meaningful wraps around. Runs on NumPy
or CuPy (``device=``); returns NumPy filters.
"""

from __future__ import annotations

import logging
import time
from importlib import resources

import numpy as np

from ..backend import get_xp, resolve_device, to_device, to_numpy
from .dictionary_update import ConvDictionaryUpdate
from .lowpass import highpass
from .penalty import ResidualBalance
from .sparse_coding import ConvSparseCoder, check_lam

__all__ = ["DEFAULT_DICTIONARY", "DEFAULT_DICTIONARY_3D", "FILTER_NORM_TOLERANCE", "FILTER_NORM_MIN",
           "check_dictionary",
           "filter_norms", "learn_dictionary", "load_default_dictionary", "prepare_training_images"]

log = logging.getLogger(__name__)

DEFAULT_DICTIONARY = "default_dictionary.npz"
#: the shipped 3-D dictionary (volumes), ``benchmarks/learn_dictionary_3d.py``
DEFAULT_DICTIONARY_3D = "default_dictionary_3d.npz"
#: a given filter whose l2 norm is off 1 by more than this (relative) is divided by its norm (:func:`check_dictionary`)
FILTER_NORM_TOLERANCE = 0.01
#: filters inside the unit ball down to this norm are kept as they are (blind CSC's update leaves them there:
#: 0.98-1 seen); a shorter filter is lengthened with the rest (a filter c times shorter has its lam c times heavier)
FILTER_NORM_MIN = 0.9


def filter_norms(filters, name: str = "dictionary") -> np.ndarray:
    """The l2 norm of each filter of ``(K, *filter_shape)`` (NumPy float64); an all-zero filter is refused.

    Raises
    ------
    ValueError
        Naming the first all-zero filter's index (and how many there are): a zero filter synthesises
        nothing, so its codes are undetermined and it cannot be normalised.
    """
    xp = get_xp(filters)
    norms = to_numpy(xp.sqrt((filters.reshape(len(filters), -1).astype(xp.float64) ** 2).sum(axis=1)))
    zero = np.flatnonzero(norms == 0)
    if zero.size == len(norms):
        raise ValueError(f"{name} is all zero ({len(norms)} filter(s) of shape {tuple(filters.shape[1:])}); "
                         "pass filters of unit l2 norm, or None for the shipped dictionary")
    if zero.size:
        which = ", ".join(map(str, zero[:8])) + (", ..." if zero.size > 8 else "")
        raise ValueError(f"{name} filter {zero[0]} is all zero ({zero.size} of {len(norms)} filters: index "
                         f"{which}); remove it, or replace it by a filter of unit l2 norm")
    return norms


def check_dictionary(filters, name: str = "dictionary"):
    """A CSC dictionary ``(K, fy, fx)`` or ``(K, fz, fy, fx)`` made ready for the prior: checked, unit-norm filters.

    The CSC model assumes filters of unit l2 norm: the shipped dictionaries and :func:`learn_dictionary`'s
    have it, blind CSC's update keeps them in the unit ball, and the default weights (λ, μ) were
    fitted with them. A filter ``c`` times longer makes its codes ``1/c`` times smaller, so the same λ
    penalises it ``c`` times less, and blind CSC's first update, projecting it back into the unit ball,
    changes the model so much that no update is ever kept. So each filter whose norm is above
    1 + :data:`FILTER_NORM_TOLERANCE`, or below :data:`FILTER_NORM_MIN`, is divided by its norm, with a
    warning (the scale of a learned filter carries no information: only its shape does); the others
    are returned unchanged, so a dictionary from ``result.extras["dictionary"]`` (blind CSC's filters,
    inside the unit ball: norms 0.98-1 seen) is reused as it is.

    Returns
    -------
    array, the same type, dtype and device as ``filters`` (a new array when any filter was rescaled).

    Raises
    ------
    ValueError
        A wrong number of dimensions, complex or non-finite values (:func:`~mri_csc.prior.conv.check_filters`),
        or an all-zero filter, named by its index (:func:`filter_norms`).
    """
    from .conv import check_filters  # noqa: PLC0415

    check_filters(filters, name)
    norms = filter_norms(filters, name)
    off = (norms > 1 + FILTER_NORM_TOLERANCE) | (norms < FILTER_NORM_MIN)
    if not off.any():
        return filters
    log.warning("%s: %d of %d filters have an l2 norm outside [%g, %g] (from %.3g to %.3g); each is divided by its "
                "norm (the CSC model and its default weights assume unit-norm filters, as the shipped and learned "
                "dictionaries have)", name, int(off.sum()), len(norms), FILTER_NORM_MIN, 1 + FILTER_NORM_TOLERANCE,
                float(norms[off].min()), float(norms[off].max()))
    xp = get_xp(filters)
    scale = np.where(off, norms, 1.0).reshape((-1,) + (1,) * (filters.ndim - 1))
    return filters / xp.asarray(scale, dtype=filters.dtype if filters.dtype.kind == "f" else np.float64)


def prepare_training_images(images, lam_lp: float = 5.0, ndim: int = 2):
    """Magnitude, scale each image to max 1, remove the Tikhonov low-pass part (over the last
    ``ndim`` axes); float32 ``(n_images, *spatial)``."""
    xp = get_xp(images)
    s = xp.abs(xp.asarray(images)).astype(np.float32)
    if s.ndim == ndim:
        s = s[None]
    peak = s.reshape(s.shape[0], -1).max(axis=1)
    peak = xp.where(peak > 0, peak, 1).astype(np.float32)
    s = s / peak.reshape((-1,) + (1,) * ndim)
    return highpass(s, lam_lp, axes=tuple(range(-ndim, 0))).astype(np.float32)


def _validate(images, n_filters, size, lam, n_iter, ndim=2):
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes); got {ndim!r}")
    axes = "ny, nx" if ndim == 2 else "nz, ny, nx"
    if not hasattr(images, "shape"):
        raise TypeError(f"images must be an array (n_images, {axes}); got {type(images).__name__}")
    shape = tuple(images.shape)
    if len(shape) not in (ndim, ndim + 1):
        raise ValueError(f"images must have shape (n_images, {axes}) or ({axes}); got shape {shape}")
    if min(shape) < 1:
        raise ValueError(f"images must be non-empty; got shape {shape}")
    if int(n_filters) < 1:
        raise ValueError(f"n_filters must be >= 1; got {n_filters}")
    size = int(size)
    if size < 1 or size > min(shape[-ndim:]):
        raise ValueError(f"size must be between 1 and the image size {shape[-ndim:]}; got {size}")
    check_lam(lam)
    if int(n_iter) < 0:
        raise ValueError(f"n_iter must be >= 0; got {n_iter}")
    xp = get_xp(images)
    if not bool(xp.all(xp.isfinite(images))):
        raise ValueError("images contain NaN or Inf values")
    if not bool(xp.any(images != 0)):
        raise ValueError(f"images (shape {shape}) are all zero: there is nothing to learn filters from "
                         "(the dictionary would be its random start)")


def learn_dictionary(
    images,
    n_filters: int = 36,
    size: int = 11,
    *,
    lam: float = 0.1,
    n_iter: int = 100,
    seed: int = 0,
    device="cpu",
    show_pbar: bool = False,
    lam_lp: float = 5.0,
    preprocess: bool = True,
    init=None,
    rho: float | None = None,
    sigma: float | None = None,
    relax: float = 1.8,
    multiscale=None,
    reinit_every: int = 25,
    return_info: bool = False,
    ndim: int = 2,
):
    """Learn ``n_filters`` real ``size x size`` (``ndim=3``: ``size³``) convolutional filters from images.

    Parameters
    ----------
    images : array ``(n_images, ny, nx)`` (or one ``(ny, nx)``); ``(n_images, nz, ny, nx)`` with ``ndim=3``
        Training images (volumes), real or complex. With ``preprocess`` (default) their magnitude is
        scaled to max 1 and the low-pass part (:func:`~mri_csc.prior.lowpass.highpass`,
        ``lam_lp``) removed; otherwise they are used as given (real).
    n_filters, size : int
        Number and side of the filters.
    lam : float
        ℓ1 weight of the codes.
    n_iter : int
        Outer iterations (one code and one dictionary ADMM iteration each).
    seed : int
        Seed of the random initial dictionary (``numpy.random.default_rng``).
    device : "cpu" | "gpu" | "gpu:N"
        Where to compute (the images are copied there).
    show_pbar : bool
        tqdm progress bar.
    init : array ``(n_filters, size, size)``, optional
        Initial dictionary instead of a random one.
    rho, sigma : float, optional
        ADMM penalties of the code step (default ``50 lam + 1``) and the
        dictionary step (default 0.5; SPORCO uses the number of images, which
        learned more slowly here); both are residual-balanced every 10 iterations.
    relax : float
        Over-relaxation of both steps.
    multiscale : sequence of ``(count, size)``, optional
        Learn a multi-scale set instead, e.g. ``[(24, 8), (12, 16)]``: the
        filters are returned zero-padded (centred) to the largest size, each
        constrained to its own centred support; ``n_filters`` and ``size`` must
        then be the total count and the largest size (or are taken from it when
        left at their defaults).
    reinit_every : int
        Every this many iterations (during the first 80 %), filters whose codes
        carry under 2 % of the mean filter's ℓ1 mass are re-seeded with a
        high-energy patch of a training image (from ``seed``'s generator), so
        no filter stays random noise. 0 disables.
    return_info : bool
        Also return a dict with the objective history, time and final penalties.
    ndim : 2 or 3
        Spatial dimensions of the images and filters (``multiscale`` is 2-D only).

    Returns
    -------
    filters : ``numpy.ndarray`` ``(n_filters, *(size,) * ndim)``, float32, each of unit ℓ2 norm.
    info : dict (only with ``return_info``)
    """
    support = None
    ndim = int(ndim)
    if multiscale is not None and ndim != 2:
        raise ValueError(f"multiscale dictionaries are 2-D only; got ndim={ndim}")
    if multiscale is not None:
        pairs = [(int(n), int(sz)) for n, sz in multiscale]
        if not pairs or any(n < 1 or sz < 1 for n, sz in pairs):
            raise ValueError(
                f"multiscale must be a non-empty list of (count >= 1, size >= 1); got {multiscale!r}"
            )
        tot, big = sum(n for n, _ in pairs), max(sz for _, sz in pairs)
        if (n_filters, size) == (36, 11):
            n_filters, size = tot, big
        if (n_filters, size) != (tot, big):
            raise ValueError(
                f"with multiscale={pairs}, n_filters and size must be {tot} and {big}; got {n_filters}, {size}"
            )
        support = np.zeros((tot, big, big), np.float32)
        k0 = 0
        for n, sz in pairs:
            o = big // 2 - sz // 2
            support[k0 : k0 + n, o : o + sz, o : o + sz] = 1
            k0 += n
    _validate(images, n_filters, size, lam, n_iter, ndim)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    xp = dev.xp
    K, f = int(n_filters), int(size)
    with dev.use():
        imgs = to_device(images, dev)
        s = prepare_training_images(imgs, lam_lp, ndim) if preprocess else xp.asarray(imgs, dtype=np.float32)
        if preprocess and not bool(xp.any(xp.abs(s) > 1e-6 * float(xp.abs(imgs).max()))):
            raise ValueError("images hold no detail once their low-pass part is removed (constant images): there "
                             "is nothing to learn filters from (the dictionary would be its random start)")
        if s.ndim == ndim:
            s = s[None]
        C = s.shape[0]
        N = tuple(s.shape[-ndim:])
        fshape = (K,) + (f,) * ndim
        per_filter = (-1,) + (1,) * ndim
        rng = np.random.default_rng(seed)
        if init is None:
            d0 = rng.standard_normal(fshape).astype(np.float32)
        else:
            d0 = to_numpy(init).astype(np.float32)
            if d0.shape != fshape:
                raise ValueError(f"init must have shape {fshape}; got {d0.shape}")
        if support is not None:
            d0 *= support
        d0 /= np.maximum(np.linalg.norm(d0.reshape(K, -1), axis=1), 1e-12).reshape(per_filter)
        supp = None if support is None else xp.asarray(support)
        lam = float(lam)
        # SPORCO's CCMOD default is the number of images; on brain slices a smaller start
        # learns faster (50 iterations, 4 slices: common objective 43.8 with 0.5 vs 46.1 with C)
        sigma = float(sigma) if sigma is not None else 0.5
        rule = ResidualBalance.dictionary_learning()  # SPORCO ConvBPDNDictLearn's, for both steps
        coder = ConvSparseCoder(xp.asarray(d0), N, lam, rho=rho, relax=relax, boundary="circular",
                                rho_rule=rule)
        update = ConvDictionaryUpdate(xp.asarray(d0), N, C, boundary="circular", sigma=sigma, relax=relax,
                                      support=supp, rule=rule)
        d = update.filters
        history = []
        n_reseeded = 0
        pbar = None
        if show_pbar:
            from tqdm.auto import tqdm

            pbar = tqdm(total=int(n_iter), desc="learn_dictionary")
        for k in range(int(n_iter)):
            coder.solve(s, max_iter=1, tol=0.0, copy=False)  # code step: one ConvBPDN ADMM iteration
            d = update.step(coder.code_spectrum(), s)  # dictionary step: one consensus CCMOD iteration
            dead = None
            if reinit_every and (k + 1) % int(reinit_every) == 0 and k < 0.8 * n_iter:
                usage = to_numpy(xp.abs(coder.codes).sum(axis=(0,) + tuple(range(2, coder.codes.ndim))))
                dead = np.flatnonzero(usage < 0.02 * usage.mean())
                if dead.size:  # re-seed unused filters: new filters, their codes and duals from zero
                    d = _reseed(d, dead, s, f, rng, supp, xp)
                    update.set_filters(d, reset=dead)
                    n_reseeded += dead.size
                else:
                    dead = None
            coder.set_filters(d, reset=dead)
            obj = coder.objective(s)  # at the new dictionary and the codes
            history.append(obj)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(obj=f"{obj:.4g}")
        if pbar is not None:
            pbar.close()
        rho, sigma = coder.rho, update.sigma
        dn = to_numpy(d).astype(np.float32)
    norms = np.linalg.norm(dn.reshape(K, -1), axis=1)
    dead = norms < 1e-8
    if dead.any():
        log.warning("learn_dictionary: %d filter(s) vanished; replaced by random ones", int(dead.sum()))
        dn[dead] = rng.standard_normal((int(dead.sum()),) + (f,) * ndim).astype(np.float32)
        if support is not None:
            dn[dead] *= support[dead]
        norms = np.linalg.norm(dn.reshape(K, -1), axis=1)
    dn /= norms.reshape(per_filter)
    if not return_info:
        return dn
    info = {
        "objective": history,
        "time_s": time.perf_counter() - t0,
        "rho": rho,
        "sigma": sigma,
        "n_images": C,
        "n_reseeded": n_reseeded,
        "image_shape": N,
    }
    return dn, info


def _reseed(d, dead, s, f, rng, supp, xp):
    """Replace filters ``dead`` by unit-norm ``f``-wide patches centred on strong samples of the images."""
    spatial = s.shape[1:]
    d = d.copy()
    energy = to_numpy(xp.abs(s))
    for k in dead:
        i = int(rng.integers(s.shape[0]))
        # pick among the 1 % strongest samples away from the border (patch corners)
        inner = tuple(slice(f // 2, n - f // 2 - f % 2 + 1) for n in spatial)
        e = energy[(i,) + inner]
        thr = np.quantile(e, 0.99)
        cand = np.flatnonzero(e.ravel() >= thr)
        corner = np.unravel_index(int(cand[rng.integers(cand.size)]), e.shape)
        patch = s[(i,) + tuple(slice(c, c + f) for c in corner)]
        patch = patch - patch.mean()
        if supp is not None:
            patch = patch * supp[k]
        nrm = float(xp.linalg.norm(patch))
        d[k] = patch / nrm if nrm > 0 else d[k]
    return d


def load_default_dictionary(device="cpu", with_metadata: bool = False, ndim: int = 2):
    """The shipped default dictionary (``mri_csc/data/default_dictionary.npz``, key ``filters``; with
    ``ndim=3`` the 3-D one, ``default_dictionary_3d.npz``).

    Returns float32 filters ``(K, fy, fx)`` (``(K, fz, fy, fx)``) of unit norm, on ``device``; with
    ``with_metadata`` also a dict of the file's other keys (see ``DICTIONARY.md``).
    """
    if ndim not in (2, 3):
        raise ValueError(f"the shipped dictionaries are 2-D and 3-D; got ndim={ndim!r}")
    ref = resources.files("mri_csc").joinpath("data", DEFAULT_DICTIONARY if ndim == 2 else DEFAULT_DICTIONARY_3D)
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        filters = np.asarray(npz["filters"], dtype=np.float32)
        meta = {k: npz[k][()] if npz[k].ndim == 0 else npz[k] for k in npz.files if k != "filters"}
    out = to_device(filters, device)
    return (out, meta) if with_metadata else out
