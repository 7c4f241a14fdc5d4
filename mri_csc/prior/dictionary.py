r"""Convolutional dictionary learning and the shipped default dictionary.

:func:`learn_dictionary` solves

.. math::
    \min_{\{d_k\},\{z_{ik}\}} \tfrac12 \sum_i \Big\| \sum_k d_k * z_{ik} - s_i \Big\|^2
    + \lambda \sum_{ik} \|z_{ik}\|_1
    \quad \text{s.t. } \operatorname{supp} d_k \subseteq f\times f,\ \|d_k\| \le 1,

over high-pass training images :math:`s_i` by alternating one ADMM iteration of
each sub-problem per outer iteration (the interleaved scheme of SPORCO's
``ConvBPDNDictLearn``):

- codes: ConvBPDN ADMM (per-frequency Sherman–Morrison, over-relaxation), all
  images at once;
- dictionary: the *consensus* ADMM form of CCMOD (Garcia-Cardona & Wohlberg,
  2018): each image gets its own copy of the dictionary, solved exactly with
  one Sherman–Morrison per frequency, and the copies are averaged and projected
  onto the constraint set (crop to the support, unit-ball normalisation).

The training images use circular boundaries (as SPORCO); brain slices have a
zero background at the edges, so nothing meaningful wraps around. Runs on NumPy
or CuPy (``device=``); returns NumPy filters.
"""

from __future__ import annotations

import logging
import math
import time
from importlib import resources

import numpy as np

from ..backend import get_xp, resolve_device, to_device, to_numpy
from .conv import _irfftn, _rfftn
from .lowpass import highpass
from .sparse_coding import _shrink_split, check_lam

__all__ = ["DEFAULT_DICTIONARY", "learn_dictionary", "load_default_dictionary", "prepare_training_images"]

log = logging.getLogger(__name__)

DEFAULT_DICTIONARY = "default_dictionary.npz"


def prepare_training_images(images, lam_lp: float = 5.0):
    """Magnitude, scale each image to max 1, remove the Tikhonov low-pass part; float32."""
    xp = get_xp(images)
    s = xp.abs(xp.asarray(images)).astype(np.float32)
    if s.ndim == 2:
        s = s[None]
    peak = s.reshape(s.shape[0], -1).max(axis=1)
    peak = xp.where(peak > 0, peak, 1).astype(np.float32)
    s = s / peak[:, None, None]
    return highpass(s, lam_lp).astype(np.float32)


def _validate(images, n_filters, size, lam, n_iter):
    if not hasattr(images, "shape"):
        raise TypeError(f"images must be an array (n_images, ny, nx); got {type(images).__name__}")
    shape = tuple(images.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"images must have shape (n_images, ny, nx) or (ny, nx); got shape {shape}")
    if min(shape) < 1:
        raise ValueError(f"images must be non-empty; got shape {shape}")
    if int(n_filters) < 1:
        raise ValueError(f"n_filters must be >= 1; got {n_filters}")
    size = int(size)
    if size < 1 or size > min(shape[-2:]):
        raise ValueError(f"size must be between 1 and the image size {shape[-2:]}; got {size}")
    check_lam(lam)
    if int(n_iter) < 0:
        raise ValueError(f"n_iter must be >= 0; got {n_iter}")
    xp = get_xp(images)
    if not bool(xp.all(xp.isfinite(images))):
        raise ValueError("images contain NaN or Inf values")


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
):
    """Learn ``n_filters`` real ``size x size`` convolutional filters from images.

    Parameters
    ----------
    images : array ``(n_images, ny, nx)`` (or one ``(ny, nx)``), real or complex
        Training images. With ``preprocess`` (default) their magnitude is
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

    Returns
    -------
    filters : ``numpy.ndarray`` ``(n_filters, size, size)``, float32, each of unit ℓ2 norm.
    info : dict (only with ``return_info``)
    """
    support = None
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
    _validate(images, n_filters, size, lam, n_iter)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    xp = dev.xp
    K, f = int(n_filters), int(size)
    with dev.use():
        imgs = to_device(images, dev)
        s = prepare_training_images(imgs, lam_lp) if preprocess else xp.asarray(imgs, dtype=np.float32)
        if s.ndim == 2:
            s = s[None]
        C = s.shape[0]
        N = tuple(s.shape[-2:])
        axes = (-2, -1)
        c = f // 2
        rng = np.random.default_rng(seed)
        if init is None:
            d0 = rng.standard_normal((K, f, f)).astype(np.float32)
        else:
            d0 = to_numpy(init).astype(np.float32)
            if d0.shape != (K, f, f):
                raise ValueError(f"init must have shape {(K, f, f)}; got {d0.shape}")
        if support is not None:
            d0 *= support
        d0 /= np.maximum(np.linalg.norm(d0.reshape(K, -1), axis=1), 1e-12)[:, None, None]
        supp = None if support is None else xp.asarray(support)

        def pad_centre(d):
            g = xp.zeros((K,) + N, dtype=np.float32)
            g[:, :f, :f] = d
            return xp.roll(g, (-c, -c), axis=axes)

        def project(gspatial):
            d = xp.roll(gspatial, (c, c), axis=axes)[:, :f, :f]
            if supp is not None:
                d = d * supp
            nrm = xp.sqrt((d**2).sum(axis=(1, 2)))
            d = d / xp.maximum(nrm, 1.0)[:, None, None]
            return d

        lam = float(lam)
        rho = float(rho) if rho is not None else 50.0 * lam + 1.0
        # SPORCO's CCMOD default is the number of images; on brain slices a smaller start
        # learns faster (50 iterations, 4 slices: common objective 43.8 with 0.5 vs 46.1 with C)
        sigma = float(sigma) if sigma is not None else 0.5
        a = float(relax)
        d = xp.asarray(d0)
        Gf = _rfftn(pad_centre(d), axes)  # (K, F)
        Sf = _rfftn(s, axes)  # (C, F)
        cshape = (C, K) + N
        X = xp.zeros(cshape, np.float32)
        Y = xp.zeros(cshape, np.float32)
        U = xp.zeros(cshape, np.float32)
        tmp = xp.zeros(cshape, np.float32)
        H = xp.zeros((C,) + Gf.shape, dtype=Gf.dtype)  # consensus duals, Fourier domain
        history = []
        n_reseeded = 0
        pbar = None
        if show_pbar:
            from tqdm.auto import tqdm

            pbar = tqdm(total=int(n_iter), desc="learn_dictionary")
        cb = None  # complex (C, K, F) scratch, allocated once
        rb = None  # real (C, K, F) scratch
        W = None  # per-image dictionaries / next duals (swapped with H)
        for k in range(int(n_iter)):
            balance = (k + 1) % 10 == 0
            # ---------------- code step (ConvBPDN ADMM iteration, circular)
            e = (Gf.real**2 + Gf.imag**2).sum(axis=0)
            Gfc = Gf.conj()
            xp.subtract(Y, U, out=tmp)
            vf = _rfftn(tmp, axes)
            if cb is None:
                cb = xp.empty_like(vf)
                rb = xp.empty(vf.shape, dtype=np.float32)
                W = xp.empty_like(vf)
            xp.multiply(Gf[None], vf, out=cb)
            t = (Sf - cb.sum(axis=1)) / (rho + e)
            xp.multiply(Gfc[None], t[:, None], out=cb)
            vf += cb
            X = _irfftn(vf, N, axes)
            del vf
            if balance:
                Yold = Y.copy()
            xp.multiply(X, a, out=tmp)
            Y *= 1 - a
            Y += tmp
            Y += U
            _shrink_split(Y, np.float32(lam / rho), U, xp)
            if balance:
                r = float(xp.linalg.norm(X - Y)) / max(
                    float(xp.linalg.norm(X)), float(xp.linalg.norm(Y)), 1e-30
                )
                sd = rho * float(xp.linalg.norm(Y - Yold)) / max(rho * float(xp.linalg.norm(U)), 1e-30)
                del Yold
                rsf = 2.0 if r > 10 * sd else (0.5 if sd > 10 * r else 1.0)
                if rsf != 1.0:
                    rho *= rsf
                    U /= rsf
            del X
            # ---------------- dictionary step (consensus CCMOD ADMM iteration, codes Y)
            Yf = _rfftn(Y, axes)  # (C, K, F)
            xp.subtract(Gf[None], H, out=W)  # G - H_i
            xp.abs(Yf, out=rb)
            rb *= rb
            ew = rb.sum(axis=1)  # (C, F)
            xp.multiply(Yf, W, out=cb)
            t = (Sf - cb.sum(axis=1)) / (sigma + ew)
            xp.conjugate(Yf, out=cb)
            cb *= t[:, None]
            W += cb  # W is now D_i (per-image dictionaries)
            W *= a
            W += (1 - a) * Gf[None]  # relaxed
            W += H  # D_r + H
            M = W.mean(axis=0)
            d = project(_irfftn(M, N, axes))
            Gf_old = Gf
            Gf = _rfftn(pad_centre(d), axes)
            # H <- H + D_r - G  = (D_r + H) - G ; swap buffers
            W -= Gf[None]
            H, W = W, H
            if balance:
                # normalised consensus residuals (Fourier domain, a heuristic scale)
                xp.subtract(H, W, out=cb)
                dr = float(xp.linalg.norm(cb))
                gn = float(xp.linalg.norm(Gf)) * math.sqrt(C)
                sd_ = sigma * float(xp.linalg.norm(Gf - Gf_old)) * math.sqrt(C)
                hn = sigma * float(xp.linalg.norm(H))
                r_, s_ = dr / max(gn, 1e-30), sd_ / max(hn, 1e-30)
                rsf = 2.0 if r_ > 10 * s_ else (0.5 if s_ > 10 * r_ else 1.0)
                if rsf != 1.0:
                    sigma *= rsf
                    H /= rsf
            del Gf_old
            # ---------------- re-seed unused filters
            if reinit_every and (k + 1) % int(reinit_every) == 0 and k < 0.8 * n_iter:
                usage = to_numpy(xp.abs(Y).sum(axis=(0, 2, 3)))
                dead = np.flatnonzero(usage < 0.02 * usage.mean())
                if dead.size:
                    d = _reseed(d, dead, s, f, rng, supp, xp)
                    Gf = _rfftn(pad_centre(d), axes)
                    H[:, dead] = 0
                    Y[:, dead] = 0
                    U[:, dead] = 0
                    n_reseeded += dead.size
            # ---------------- objective at (G, Y)
            xp.multiply(Gf[None], Yf, out=cb)
            dy = _irfftn(cb.sum(axis=1), N, axes) - s
            obj = 0.5 * float((dy**2).sum()) + lam * float(xp.abs(Y).sum())
            del Yf, dy
            history.append(obj)
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(obj=f"{obj:.4g}")
        if pbar is not None:
            pbar.close()
        dn = to_numpy(d).astype(np.float32)
    norms = np.linalg.norm(dn.reshape(K, -1), axis=1)
    dead = norms < 1e-8
    if dead.any():
        log.warning("learn_dictionary: %d filter(s) vanished; replaced by random ones", int(dead.sum()))
        dn[dead] = rng.standard_normal((int(dead.sum()), f, f)).astype(np.float32)
        if support is not None:
            dn[dead] *= support[dead]
        norms = np.linalg.norm(dn.reshape(K, -1), axis=1)
    dn /= norms[:, None, None]
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
    """Replace filters ``dead`` by unit-norm f x f patches centred on strong pixels of the images."""
    C, ny, nx = s.shape
    d = d.copy()
    energy = to_numpy(xp.abs(s))
    for k in dead:
        i = int(rng.integers(C))
        # pick among the 1 % strongest pixels away from the border
        e = energy[i, f // 2 : ny - f // 2 - f % 2 + 1, f // 2 : nx - f // 2 - f % 2 + 1]
        thr = np.quantile(e, 0.99)
        cand = np.flatnonzero(e.ravel() >= thr)
        j = int(cand[rng.integers(cand.size)])
        y, x = divmod(j, e.shape[1])
        patch = s[i, y : y + f, x : x + f]
        patch = patch - patch.mean()
        if supp is not None:
            patch = patch * supp[k]
        nrm = float(xp.linalg.norm(patch))
        d[k] = patch / nrm if nrm > 0 else d[k]
    return d


def load_default_dictionary(device="cpu", with_metadata: bool = False):
    """The shipped default dictionary (``mri_csc/data/default_dictionary.npz``, key ``filters``).

    Returns float32 filters ``(K, fy, fx)`` of unit norm, on ``device``; with
    ``with_metadata`` also a dict of the file's other keys (see ``DICTIONARY.md``).
    """
    ref = resources.files("mri_csc").joinpath("data", DEFAULT_DICTIONARY)
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        filters = np.asarray(npz["filters"], dtype=np.float32)
        meta = {k: npz[k][()] if npz[k].ndim == 0 else npz[k] for k in npz.files if k != "filters"}
    out = to_device(filters, device)
    return (out, meta) if with_metadata else out
