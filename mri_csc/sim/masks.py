r"""Cartesian undersampling masks with an exact sample count.

Every mask returned by :func:`sample_mask` is a float32 array of 0/1 values of
the *image* shape, which broadcasts against k-space ``(coils, *shape)``. The
number of sampled points is fixed to ``round(N / accel)`` (``N`` the number of
k-space locations the pattern is drawn over), so the realised acceleration
:func:`realized_acceleration` is as close to the requested one as integer
counts allow — unlike :func:`sigpy.mri.poisson`, whose bisection tolerance lets
it miss by 10 % or more.

Conventions
-----------
2D, ``shape = (ny, nx)``
    ``"poisson"`` and ``"uniform-random"`` sample the whole ``(ky, kx)`` plane.
    ``"random-lines"`` and ``"equispaced-lines"`` sample whole *columns*
    ``mask[:, kx]`` — the fastMRI convention: the pattern is drawn along the last
    axis, which is therefore the phase-encoding direction, and the readout runs
    along ``y``.
3D, ``shape = (nz, ny, nx)``
    The readout is ``x`` (last axis) and is always fully sampled for the 2D
    kinds: ``"poisson"`` and ``"uniform-random"`` draw their pattern over the
    phase-encoding plane ``(kz, ky)`` and repeat it along ``kx``. The line kinds
    keep the 2D convention (columns of the last axis), the same columns in every
    ``(kz, ky)``; this is 2D multi-slice undersampling.

The calibration (auto-calibration signal, ACS) region is a centred block that
is always fully sampled; its points count towards the budget. The k-space
centre is index ``n // 2`` on every axis, matching the centred FFTs of
:mod:`mri_csc.backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._checks import check_image_shape

__all__ = ["MASK_KINDS", "calibration_region", "realized_acceleration", "sample_mask"]

log = logging.getLogger(__name__)

MASK_KINDS = ("poisson", "random-lines", "equispaced-lines", "uniform-random")
_LINE_KINDS = ("random-lines", "equispaced-lines")

#: default fully sampled calibration size (per axis) for the 2D kinds
_DEFAULT_CALIB_2D = 24
#: fastMRI's centre fraction times acceleration (0.08 at 4x, 0.04 at 8x)
_FASTMRI_CENTRE_FRACTION_TIMES_ACCEL = 0.32


# ----------------------------------------------------------------------------- helpers


def make_rng(seed=None, rng=None) -> np.random.Generator:
    """The one generator a simulation draws from: ``rng`` if given, else ``default_rng(seed)``."""
    if rng is not None and seed is not None:
        raise ValueError("give either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def calibration_region(shape: Sequence[int], calib) -> tuple[slice, ...]:
    """Slices of the centred calibration block of size ``calib`` in an array of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Array shape.
    calib : int or tuple of int
        Block size. An int applies to every axis; a tuple applies to the
        *trailing* ``len(calib)`` axes (leading axes get ``slice(None)``).

    Returns
    -------
    tuple of slice
        One slice per axis of ``shape``; axis ``i`` covers
        ``[n_i//2 - c_i//2, n_i//2 - c_i//2 + c_i)``, centred on the DC index ``n_i // 2``.

    Raises
    ------
    ValueError
        If ``calib`` has more entries than ``shape`` has axes, is negative, or
        is larger than ``shape`` on some axis.
    """
    shape = tuple(int(s) for s in shape)
    if np.isscalar(calib):
        calib = (int(calib),) * len(shape)
    calib = tuple(int(c) for c in calib)
    if len(calib) > len(shape):
        raise ValueError(f"calib {calib} has more axes than shape {shape}")
    full = (None,) * (len(shape) - len(calib)) + calib
    out = []
    for n, c in zip(shape, full):
        if c is None:
            out.append(slice(None))
            continue
        if c < 0:
            raise ValueError(f"calib must be >= 0 on every axis; got {calib}")
        if c > n:
            raise ValueError(f"calib {calib} is larger than shape {shape}")
        start = n // 2 - c // 2
        out.append(slice(start, start + c))
    return tuple(out)


def realized_acceleration(mask) -> float:
    """Acceleration actually achieved by a 0/1 mask: ``mask.size / count_nonzero(mask)``.

    Accepts NumPy or CuPy arrays; returns ``inf`` for an empty mask.
    """
    from ..backend import to_numpy

    m = to_numpy(mask)
    n = int(np.count_nonzero(m))
    return float("inf") if n == 0 else float(m.size / n)


def _normalised_radius(shape2d) -> np.ndarray:
    """Elliptical radius, 0 at the k-space centre and 1 at the middle of each edge."""
    ny, nx = shape2d
    ky = (np.arange(ny) - ny // 2) / max(ny / 2, 1)
    kx = (np.arange(nx) - nx // 2) / max(nx / 2, 1)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


# ----------------------------------------------------------------------------- Poisson disc

_STENCIL_CACHE: dict[float, np.ndarray] = {}


def _disc(r: float) -> np.ndarray:
    """Boolean footprint of integer offsets with distance < r (r quantised to 0.05 px)."""
    key = round(r * 20) / 20
    d = _STENCIL_CACHE.get(key)
    if d is None:
        h = int(np.ceil(key)) - 1 if key == int(key) else int(np.floor(key))
        h = max(h, 0)
        o = np.arange(-h, h + 1)
        d = (o[:, None] ** 2 + o[None, :] ** 2) < key**2
        d[h, h] = True
        _STENCIL_CACHE[key] = d
    return d


def _dart_throw(radius: np.ndarray, order: np.ndarray, allowed: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Saturated random sequential adsorption on the grid with a variable radius.

    Candidates are visited in ``order``; one is accepted when no earlier accepted
    point has blocked it, and then blocks the disc of radius ``radius`` around
    itself. ``pre`` points (the calibration block) are accepted up front.
    """
    ny, nx = radius.shape
    h = int(np.ceil(radius[allowed].max())) + 1 if allowed.any() else 1
    blocked = np.zeros((ny + 2 * h, nx + 2 * h), dtype=bool)
    core = blocked[h : h + ny, h : h + nx]
    core |= ~allowed
    # the calibration block blocks its surroundings with the radius found there
    if pre.any():
        ys, xs = np.nonzero(pre)
        m = int(np.floor(float(radius[ys, xs].max())))
        core[max(ys.min() - m, 0) : ys.max() + m + 1, max(xs.min() - m, 0) : xs.max() + m + 1] = True
    keys = np.round(radius * 20).astype(np.int64)
    uniq, inv = np.unique(keys[allowed], return_inverse=True)
    stencils = [_disc(k / 20) for k in uniq]
    sid = np.zeros(radius.shape, dtype=np.int64)
    sid[allowed] = inv
    sid_l = sid.ravel().tolist()
    half = [d.shape[0] // 2 for d in stencils]
    acc = []
    for idx in order.tolist():
        y, x = divmod(idx, nx)
        if core[y, x]:
            continue
        acc.append(idx)
        j = sid_l[idx]
        k = half[j]
        blocked[y + h - k : y + h + k + 1, x + h - k : x + h + k + 1] |= stencils[j]
    out = pre.copy()
    out.ravel()[acc] = True
    return out


def _poisson_2d(shape2d, n_target: int, calib2d, rng: np.random.Generator, slope: float = 2.0) -> np.ndarray:
    r"""Variable-density Poisson-disc pattern over ``shape2d`` with exactly ``n_target`` samples.

    The minimum distance at normalised k-space radius :math:`\rho` is
    :math:`r(\rho) = r_0 (1 + s\rho)` pixels (density falling as
    :math:`(1+s\rho)^{-2}`); samples lie inside the ellipse :math:`\rho \le 1`
    (k-space corners are left empty) unless the budget needs the corners.
    :math:`r_0` is found by a secant search on the count of a saturated
    dart-throwing pass; the last few points are then removed at random (which
    keeps the minimum distance) or added in the largest gaps.
    """
    ny, nx = shape2d
    n_all = ny * nx
    rho = _normalised_radius(shape2d)
    pre = np.zeros(shape2d, dtype=bool)
    pre[calibration_region(shape2d, calib2d)] = True
    n_pre = int(pre.sum())
    allowed = rho <= 1.0
    if n_target > 0.9 * int((allowed | pre).sum()):
        allowed = np.ones(shape2d, dtype=bool)
    allowed &= ~pre
    need = n_target - n_pre
    if need <= 0:
        return pre
    order = rng.permutation(n_all)
    order = order[allowed.ravel()[order]]
    shape_r = 1.0 + slope * rho

    # model of the count: saturated random packing holds ~0.7 / r^2 points per pixel
    def model(r0, a):
        return float(np.minimum(1.0, a / (r0 * shape_r[allowed]) ** 2).sum())

    def solve_r0(a):
        lo, hi = 1e-3, 1e3
        for _ in range(60):
            mid = np.sqrt(lo * hi)
            if model(mid, a) > need:
                lo = mid
            else:
                hi = mid
        return np.sqrt(lo * hi)

    a = 0.6
    best = None
    for _ in range(4):
        r0 = solve_r0(a)
        pts = _dart_throw(r0 * shape_r, order, allowed, pre)
        got = int(pts.sum()) - n_pre
        if (
            best is None
            or (got >= need and (best[1] < need or got < best[1]))
            or (best[1] < need and got > best[1])
        ):
            best = (pts, got)
        if need <= got <= need * 1.03 + 2:
            break
        a *= max(got, 1) / (1.01 * need)
    pts, got = best
    if got > need:
        # drop random excess: removing points never violates the minimum distance
        ys, xs = np.nonzero(pts & ~pre)
        drop = rng.choice(ys.size, size=got - need, replace=False)
        pts[ys[drop], xs[drop]] = False
    elif got < need:
        # fill the largest gaps (distance to the nearest sample over the local radius)
        r = r0 * shape_r
        while got < need:
            gap = ndimage.distance_transform_edt(~pts) / r
            gap[~allowed | pts] = -1
            gap += rng.uniform(0, 1e-3, size=gap.shape)
            k = min(need - got, 200)
            cand = np.argsort(gap.ravel())[::-1][: 8 * k]
            taken: list[tuple[int, int]] = []
            for idx in cand.tolist():
                y, x = divmod(idx, nx)
                if all((y - ty) ** 2 + (x - tx) ** 2 >= r[y, x] ** 2 for ty, tx in taken):
                    taken.append((y, x))
                    if len(taken) == k:
                        break
            for y, x in taken:
                pts[y, x] = True
            got = int(pts.sum()) - n_pre
    return pts


# ----------------------------------------------------------------------------- line masks


def _lines(n: int, n_target: int, n_low: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """1D 0/1 pattern of length ``n`` with ``n_target`` lines, ``n_low`` of them centred."""
    line = np.zeros(n, dtype=bool)
    line[calibration_region((n,), (n_low,))] = True
    need = n_target - n_low
    if need <= 0:
        return line
    free = np.flatnonzero(~line)
    if kind == "random-lines":
        line[rng.choice(free, size=need, replace=False)] = True
        return line
    # equispaced: a random offset, spacing bisected so that the union with the
    # centre holds n_target lines, then fixed up by one or two lines if needed
    offset = rng.uniform(0, 1)

    def build(step):
        pos = np.unique(np.round(offset * step + np.arange(0, n, step)).astype(int))
        pos = pos[pos < n]
        out = line.copy()
        out[pos] = True
        return out

    lo, hi = 1.0, float(n)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if build(mid).sum() > n_target:
            lo = mid
        else:
            hi = mid
    out = build(hi)
    while out.sum() < n_target:  # add in the middle of the largest gap
        idx = np.flatnonzero(out)
        gaps = np.diff(np.concatenate([idx, [idx[0] + n]]))
        g = int(np.argmax(gaps))
        out[(idx[g] + gaps[g] // 2) % n] = True
    while out.sum() > n_target:  # remove a line that is not in the centre
        cand = np.flatnonzero(out & ~line)
        out[cand[rng.integers(cand.size)]] = False
    return out


# ----------------------------------------------------------------------------- public


def _check_calib_2d(calib, plane, kind):
    if calib is None:
        return None
    if np.isscalar(calib):
        calib = (int(calib), int(calib))
    try:
        calib = tuple(int(c) for c in calib)
    except TypeError as exc:
        raise TypeError(f"calib must be an int or a tuple of 2 ints; got {calib!r}") from exc
    if len(calib) != 2:
        raise ValueError(f"calib for kind {kind!r} must be an int or a tuple of 2 ints; got {calib}")
    if any(c < 0 for c in calib):
        raise ValueError(f"calib must be >= 0; got {calib}")
    if any(c > n for c, n in zip(calib, plane)):
        raise ValueError(f"calib {calib} is larger than the sampled plane {plane}")
    return calib


def sample_mask(
    kind: str,
    shape: Sequence[int],
    accel: float,
    *,
    calib=None,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    r"""Draw a Cartesian undersampling mask with a fixed number of samples.

    Parameters
    ----------
    kind : {"poisson", "random-lines", "equispaced-lines", "uniform-random"}
        ``"poisson"``: 2D variable-density Poisson disc (minimum distance
        :math:`r_0(1 + 2\rho)` pixels at normalised k-space radius
        :math:`\rho`, k-space corners empty) with a fully sampled centre.
        ``"random-lines"``: fastMRI-style random columns plus a fully sampled
        centre. ``"equispaced-lines"``: equispaced columns (random offset) plus
        the centre. ``"uniform-random"``: 2D uniformly random points plus the
        centre. See the module docstring for which axes each kind samples.
    shape : tuple of int
        Image shape, ``(ny, nx)`` or ``(nz, ny, nx)``.
    accel : float
        Requested acceleration :math:`R \ge 1`; the mask holds
        :math:`\mathrm{round}(N/R)` samples of the :math:`N` locations the
        pattern is drawn over.
    calib : int or tuple of int, optional
        Fully sampled centre. For the line kinds, the number of centre columns
        (default: fastMRI's fraction :math:`0.32/R` of ``nx``, i.e. 8 % at 4x
        and 4 % at 8x). For the 2D kinds, an int or ``(c0, c1)`` over the
        sampled plane (default 24, reduced on small grids so the centre takes
        at most half the budget); 0 disables it.
    seed : int, optional
        Seed of a new :class:`numpy.random.Generator` (ignored when ``rng`` is given).
    rng : numpy.random.Generator, optional
        Generator to draw from (exclusive with ``seed``).

    Returns
    -------
    numpy.ndarray
        float32 0/1 mask of ``shape`` (always on the CPU; move it with
        :func:`mri_csc.backend.to_device`).

    Raises
    ------
    ValueError
        Unknown ``kind``, ``accel < 1``, a bad ``shape``, or ``calib`` larger
        than the grid or holding more points than the budget.
    """
    if not isinstance(kind, str) or kind.lower() not in MASK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, MASK_KINDS))}; got {kind!r}")
    kind = kind.lower()
    shape = check_image_shape(shape)
    try:
        accel = float(accel)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"accel must be a number >= 1; got {accel!r}") from exc
    if not np.isfinite(accel) or accel < 1:
        raise ValueError(f"accel must be a finite number >= 1; got {accel}")
    gen = make_rng(seed, rng)

    if kind in _LINE_KINDS:
        n = shape[-1]
        n_target = max(1, round(n / accel))
        if calib is None:
            n_low = round(n * _FASTMRI_CENTRE_FRACTION_TIMES_ACCEL / accel)
            n_low = min(n_low, n_target)
        else:
            if not np.isscalar(calib):
                c = tuple(calib)
                if len(c) != 1:
                    raise ValueError(
                        f"calib for kind {kind!r} is a number of centre lines (int); got {calib!r}"
                    )
                calib = c[0]
            n_low = int(calib)
            if n_low < 0 or n_low > n:
                raise ValueError(f"calib must be between 0 and nx={n} lines for kind {kind!r}; got {calib}")
            if n_low > n_target:
                raise ValueError(
                    f"calib={n_low} centre lines exceed the {n_target} lines allowed at accel={accel} "
                    f"on nx={n}; lower calib or accel"
                )
        line = _lines(n, n_target, n_low, kind, gen)
        mask = np.broadcast_to(line.astype(np.float32), shape).copy()
    else:
        plane = shape[-2:] if len(shape) == 2 else shape[:2]
        n_plane = plane[0] * plane[1]
        n_target = max(1, round(n_plane / accel))
        c = _check_calib_2d(calib, plane, kind)
        if c is None:
            side = min(_DEFAULT_CALIB_2D, int(np.floor(np.sqrt(0.5 * n_target))), *plane)
            c = (side, side)
        if c[0] * c[1] > n_target:
            raise ValueError(
                f"calib {c} holds {c[0] * c[1]} points, more than the {n_target} allowed at "
                f"accel={accel} on a {plane[0]}x{plane[1]} grid; lower calib or accel"
            )
        if kind == "poisson":
            pat = _poisson_2d(plane, n_target, c, gen)
        else:
            pat = np.zeros(plane, dtype=bool)
            pat[calibration_region(plane, c)] = True
            free = np.flatnonzero(~pat)
            pat.ravel()[gen.choice(free, size=n_target - int(pat.sum()), replace=False)] = True
        pat = pat.astype(np.float32)
        mask = pat if len(shape) == 2 else np.broadcast_to(pat[:, :, None], shape).copy()

    r = realized_acceleration(mask)
    log.info("sample_mask(%s, shape=%s): requested accel %.3g, realised %.4g", kind, shape, accel, r)
    return mask
