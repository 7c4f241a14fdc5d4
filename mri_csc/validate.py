r"""One validation layer for the arrays a reconstruction is given.

Every entry point (:func:`mri_csc.reconstruct` through
:func:`mri_csc.recon.problem.make_problem`, ``mri-csc recon``, ``eval`` and
``batch``) calls these functions, so that a bad input is refused in one place,
with one message, before any heavy work:

- :func:`check_recon_inputs`: k-space, coil maps and mask of one problem --
  types, dtypes, shapes, empty arrays, the memory budget of
  :mod:`mri_csc.io.limits` (from the shape alone, before anything is
  allocated), finite values (checked on the data a broadcast view really holds),
  k-space that is not all zeros, the mask's range and the coil maps' normalisation;
- :func:`check_mask_values`: a sampling mask is boolean or real in ``[0, 1]``;
- :func:`unit_power_gain`: the factor that brings coil maps to :math:`\sum_c |S_c|^2 = 1` on their
  support (the solve runs at unit power, the image is returned in the maps' units; maps far from it
  are warned about), :func:`normalise_maps` the maps divided by it;
- :func:`per_slice`: one mask (or map set) per slice, or one for all slices,
  never a shorter list zipped against the slices;
- :func:`check_output`: no NaN/Inf image is ever written.

Errors are :class:`InputError` (a ``ValueError``) or :class:`InputTypeError`
(also a ``TypeError``): raised on purpose, for input the user can fix, which the
command line reports in one line with exit code 2.
"""

from __future__ import annotations

import logging
import math
import re

import numpy as np

from .io.limits import check_shape

__all__ = ["InputError", "InputTypeError", "check_recon_inputs", "check_maps_match_kspace", "maps_explained_fraction",
           "check_array", "check_finite", "check_not_all_zero",
           "check_mask_values", "normalise_maps", "explained_share",
           "warn_maps_mismatch", "unit_power_gain", "maps_power", "per_slice", "check_output",
           "is_user_error", "raised_here", "MAPS_TOLERANCE"]

log = logging.getLogger(__name__)

#: Coil maps whose median :math:`\sum_c |S_c|^2` where it is high (see :func:`maps_power`) lies outside
#: ``[1 / MAPS_TOLERANCE, MAPS_TOLERANCE]`` are warned about (all maps are solved at unit power).
MAPS_TOLERANCE = 4.0
_CHUNK = 1 << 22  # elements per block when scanning for NaN/Inf


class InputError(ValueError):
    """An input the user can fix (a wrong shape, value, range or file); one line, exit code 2."""


class InputTypeError(InputError, TypeError):
    """An input of the wrong type or dtype, raised on purpose (not a ``TypeError`` from a bug)."""


def _xp(a):
    from .backend import get_xp  # noqa: PLC0415

    return get_xp(a)


def _compact(a):
    """The data a (possibly broadcast) array really holds: zero-stride axes reduced to length 1."""
    strides = getattr(a, "strides", None)
    if not strides or a.size == 0:
        return a
    idx = tuple(slice(0, 1) if (st == 0 and n > 1) else slice(None) for st, n in zip(strides, a.shape))
    return a[idx]


def check_array(name: str, a, *, kinds: str = "cf", ndim: "tuple[int, ...] | None" = None) -> None:
    """Refuse a non-array, a wrong dtype kind, a wrong number of dimensions, or an empty array.

    Parameters
    ----------
    name : str
        The argument's name, used in the message.
    a : array
        NumPy or CuPy array.
    kinds : str
        Accepted ``dtype.kind`` letters (``"c"`` complex, ``"f"`` float, ``"b"`` bool,
        ``"i"``/``"u"`` integers).
    ndim : tuple of int, optional
        Accepted numbers of dimensions.
    """
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise InputTypeError(f"{name} must be a NumPy or CuPy array; got {type(a).__name__}")
    kind = np.dtype(a.dtype).kind
    if kind not in kinds:
        expected = {"cf": "a complex (or real float)", "fbiu": "a boolean, integer or real float"}.get(
            kinds, f"a {kinds!r}-kind")
        raise InputTypeError(f"{name} must have {expected} dtype; got {a.dtype}")
    if ndim is not None and a.ndim not in ndim:
        raise InputError(f"{name} has {a.ndim} dimension(s), shape {tuple(a.shape)}; expected "
                         f"{' or '.join(map(str, ndim))}")
    if a.size == 0:
        raise InputError(f"{name} is empty (shape {tuple(a.shape)}); expected at least one element per axis")


def check_finite(name: str, a) -> None:
    """Refuse NaN/Inf values, scanning the data the array holds in blocks (no full-size temporary)."""
    c = _compact(a)
    if np.dtype(c.dtype).kind not in "cf":
        return
    xp = _xp(c)
    flat = c.reshape(-1) if c.flags.c_contiguous else None
    n_bad = 0
    if flat is not None:
        for i in range(0, flat.size, _CHUNK):
            n_bad += int((~xp.isfinite(flat[i:i + _CHUNK])).sum())
    else:
        for block in (c if c.ndim > 1 else [c]):
            n_bad += int((~xp.isfinite(block)).sum())
    if n_bad:
        raise InputError(f"{name} contains {n_bad} NaN or Inf value(s) (of {c.size} stored); clean the data first")


def check_not_all_zero(name: str, a) -> None:
    """Refuse an array whose every value is zero (k-space of no object has no image to return).

    Scans the data the array holds block by block and stops at the first block with a non-zero value
    (the first, for measured data), so it costs next to nothing on real data.
    """
    c = _compact(a)
    xp = _xp(c)
    blocks = [c.reshape(-1)] if c.flags.c_contiguous else list(c if c.ndim > 1 else [c])
    for block in blocks:
        for i in range(0, block.size, _CHUNK):
            if bool(xp.any(block[i:i + _CHUNK] != 0)):
                return
    raise InputError(f"{name} is all zeros (shape {tuple(a.shape)}): there is no image to reconstruct; check that "
                     "the right data were read (file, slice, coil and repetition)")


def check_mask_values(mask, name: str = "mask") -> None:
    """A sampling mask is boolean, or real with values in ``[0, 1]`` (1 = sampled; weights between).

    Refuses negative values, values above 1 (a 0/255 image mask is named as
    such), NaN/Inf and complex masks. Values strictly between 0 and 1 are accepted as data
    weights, with a warning that says so (a probability or soft mask meant as a sampling pattern
    would otherwise undersample nothing without a word).
    """
    check_array(name, mask, kinds="fbiu")
    kind = np.dtype(mask.dtype).kind
    if kind == "b":
        return
    check_finite(name, mask)
    c = _compact(mask)
    lo, hi = float(c.min()), float(c.max())
    if lo < 0:
        raise InputError(f"{name} has negative values (min {lo:.4g}); expected 0/1 (or weights in [0, 1])")
    if hi > 1:
        hint = " (a 0/255 image: pass mask > 0 or mask / 255)" if kind in "iu" or hi == 255 else ""
        raise InputError(f"{name} has values up to {hi:.4g}{hint}; expected 0/1 (or weights in [0, 1])")
    if lo < 1 and hi > 0:
        n_soft = int(((c > 0) & (c < 1)).sum())
        if n_soft:
            log.warning("%s: %d of %d values lie strictly between 0 and 1; they weight the data term "
                        "(every nonzero entry counts as sampled), they do not sample it: pass (mask > 0) "
                        "or a 0/1 pattern for undersampling", name, n_soft, c.size)


def maps_power(maps):
    r"""The median of :math:`\sum_c |S_c|^2` over the maps' high-power region (above 0.1 of its max).

    Judged where the maps are strong (the object), so that correct maps which
    leak a little outside the object are not taken for unnormalised ones. The
    sum is formed in single precision on ``|S| / max|S|`` (no overflow or
    underflow for maps scaled by 1e±20) and scaled back in a Python float; the
    median is one ``partition``, not a sort.
    """
    xp = _xp(maps)
    a = xp.abs(_compact(maps))
    a = a.astype(np.float32 if a.dtype.itemsize <= 4 else np.float64, copy=False)
    amax = float(a.max())
    if not math.isfinite(amax) or amax <= 0:
        return amax
    power = ((a / a.dtype.type(amax)) ** 2).sum(axis=0)
    high = power[power > 0.1 * power.max()].ravel()
    k = high.size // 2
    return float(xp.partition(high, k)[k]) * amax * amax


def normalise_maps(maps, name: str = "coil_maps"):
    r"""``maps`` divided by :func:`unit_power_gain` (the same object when that is 1).

    Raises
    ------
    InputError
        All-zero maps, or maps whose power overflows or cannot be scaled.
    """
    g = unit_power_gain(maps, name)
    if g == 1.0:
        return maps
    scaled = maps / np.asarray(g, dtype=np.dtype(maps.dtype).type(0).real.dtype)
    if not bool(_xp(scaled).isfinite(_compact(scaled)).all()):
        raise InputError(f"{name}: cannot normalise the maps (sum |S|^2 = {g * g:.3g}); rescale them first")
    return scaled


#: fraction of the calibration coil images' energy the maps must explain (:func:`check_maps_match_kspace`)
MAPS_EXPLAINED_MIN = 0.97
#: the same for a fully sampled centre narrower than :data:`NARROW_CENTRE` samples, whose coil images are
#: blurred over a scale on which the maps vary (BART's phantom, readout 2x oversampled, 8-12 centre lines: ESPIRiT
#: maps of the same scan 0.947-0.980, flipped 0.58-0.60)
MAPS_EXPLAINED_MIN_NARROW = 0.9
NARROW_CENTRE = 16
#: the same for non-Cartesian data, whose gridded calibration coil images alias where the centre is undersampled:
#: measured (brain and Shepp-Logan, golden-angle radial and spiral R = 2-8, 15-45 dB) 0.86-0.99 with the true or
#: ESPIRiT maps (spiral R = 8 lowest), 0.58-0.77 with the maps transposed or flipped (or the trajectory's axes swapped)
MAPS_EXPLAINED_MIN_NONCARTESIAN = 0.82


def maps_explained_fraction(kspace, maps, width: int = 24, *, centre: "int | None" = None) -> "float | None":
    r"""How much of the calibration region's coil images the coil maps explain, in [0, 1].

    The low-resolution coil images :math:`g_c = F^{-1}(h\,y_c)` (``h`` a Hann window over the
    fully sampled centre, at most ``width`` wide) are projected, pixel by pixel, onto the maps'
    vector :math:`S(r)`, :math:`P g(r) = S(r)\,S(r)^H g(r) / \|S(r)\|^2`, on the maps' support
    :math:`\Omega`; energy of :math:`g` outside :math:`\Omega` counts as unexplained (maps of another
    scan cut the object: 0.999 over :math:`\Omega` alone, 0.89 over the image). Noise lowers the share
    explained, as a share :math:`(C-1)/C` of its energy lies outside any one vector: with
    :math:`v = \hat\sigma^2 \sum_k h_k^2 / N_{\mathrm{pix}}` its variance per coil and pixel (orthonormal
    FFT, the sum over the sampled points, :math:`\hat\sigma` from
    :func:`mri_csc.recon.noise.estimate_noise_std`), the fraction is that of the signal,

    .. math::  f = \frac{\sum_\Omega \|P g\|^2 - |\Omega|\,v}{\sum_r \|g(r)\|^2 - C N_{\mathrm{pix}}\,v}.

    Measured (``benchmarks/quality.py``'s 30 cases, 25-45 dB, ESPIRiT maps): the maps of the same scan
    0.9917-0.9998; the same maps transposed 0.32-0.82, flipped along y 0.47-0.88; BART's phantom with
    ``bart ecalib`` maps of ``bart phantom -G`` / ``-B`` (the same coils, another object) 0.905 / 0.546,
    its own 0.997. An earlier form (the support only, no noise term) gave 0.57-0.66 on the (kz, ky) planes
    of a 3-D scan at readout positions outside the object, with the maps of that scan (noise alone).
    ``None`` when it cannot tell: one coil, no fully sampled centre of at least 6 samples, or coil
    images of which noise is over half the energy. ``centre``: the fully sampled centre's width
    (:func:`~mri_csc.sim.coils.fully_sampled_centre`) when the caller has it.
    """
    from .backend import ifftc  # noqa: PLC0415
    from .prior.phase import hann_window  # noqa: PLC0415
    from .recon.noise import estimate_noise_std  # noqa: PLC0415
    from .sim.coils import fully_sampled_centre  # noqa: PLC0415

    n_coils = kspace.shape[0]
    if n_coils < 2:
        return None
    w = min(int(width), fully_sampled_centre(kspace) if centre is None else centre)
    if w < 6:  # as ESPIRiT needs: a smaller centre blurs smooth maps' coil images too much to judge by
        return None
    xp = _xp(kspace)
    win = hann_window(kspace.shape[1:], w, xp, kspace.real.dtype)
    try:
        sigma = estimate_noise_std(kspace, warn=False)
    except ValueError:  # no region to estimate from: no noise term
        sigma = 0.0
    sampled = xp.any(kspace != 0, axis=0)
    pixel_noise = sigma ** 2 * float((win ** 2 * sampled).sum()) / sampled.size  # per coil and pixel
    return explained_share(ifftc(kspace * win, axes=tuple(range(1, kspace.ndim))), maps, pixel_noise)


def explained_share(images, maps, pixel_noise: float = 0.0) -> "float | None":
    r"""The share :math:`f` of :func:`maps_explained_fraction` for coil ``images`` :math:`g`, whose noise
    variance per coil and pixel is ``pixel_noise`` :math:`v`; ``None`` when noise is over half their energy."""
    xp = _xp(images)
    n_coils = images.shape[0]
    s2 = (maps.real ** 2 + maps.imag ** 2).sum(axis=0)
    strong = s2[s2 > 0.1 * s2.max()]
    support = s2 > 0.5 * float(xp.median(strong))
    coef = (maps.conj() * images).sum(axis=0) / xp.where(s2 > 0, s2, 1)
    explained = float((s2 * (coef.real ** 2 + coef.imag ** 2))[support].sum())  # ||P g||^2 = ||S||^2 |coef|^2
    total = float((images.real ** 2 + images.imag ** 2).sum())  # everywhere: energy outside the maps is unexplained
    noise = n_coils * s2.size * pixel_noise
    if total <= 0 or total - noise < 0.5 * total:
        return None
    return min(max((explained - float(support.sum()) * pixel_noise) / (total - noise), 0.0), 1.0)


def check_maps_match_kspace(kspace, maps) -> "float | None":
    """Warn when the coil maps do not explain the k-space's own coil images (:func:`maps_explained_fraction`
    below :data:`MAPS_EXPLAINED_MIN`, or :data:`MAPS_EXPLAINED_MIN_NARROW` for a centre narrower than
    :data:`NARROW_CENTRE`): maps of another scan, or axes transposed or flipped. Returns the fraction."""
    from .sim.coils import fully_sampled_centre  # noqa: PLC0415

    centre = fully_sampled_centre(kspace)
    f = maps_explained_fraction(kspace, maps, centre=centre)
    warn_maps_mismatch(f, MAPS_EXPLAINED_MIN_NARROW if centre < NARROW_CENTRE else MAPS_EXPLAINED_MIN)
    return f


def warn_maps_mismatch(fraction: "float | None", threshold: float = MAPS_EXPLAINED_MIN,
                       what: str = "axes transposed or flipped against the k-space (readout last)",
                       noise: str = "noise discounted") -> None:
    """The warning of :func:`check_maps_match_kspace` for an explained ``fraction`` under ``threshold``."""
    if fraction is not None and fraction < threshold:
        log.warning("coil_maps explain only %.1f%% of the energy of the k-space's calibration coil images (maps "
                    "of this scan: over %.0f%%, %s): they may belong to another scan, or have %s; "
                    "the image will be wrong unless the maps (or the data) are fixed", 100 * fraction,
                    100 * threshold, noise, what)


#: maps whose power (:func:`maps_power`) is within this relative distance of 1 are used as given
UNIT_POWER_TOLERANCE = 0.01


def unit_power_gain(maps, name: str = "coil_maps") -> float:
    r"""The factor :math:`g = \sqrt{p}` that brings ``maps`` to unit power, :math:`p` their median
    :math:`\sum_c |S_c|^2` where it is high (:func:`maps_power`); 1.0 within :data:`UNIT_POWER_TOLERANCE`.

    SENSE-type reconstructions assume :math:`\sum_c |S_c|^2 = 1` where the object is (as ESPIRiT and the
    simulated maps give), and the automatic weights are set for it. The reconstruction solves with
    :math:`S/g` and returns the image divided by :math:`g`, the image of the maps as given
    (:math:`S x = (S/g)(g x)`): a result is the same for maps ×0.55 or ×1.9 (their NRMSE had ranged
    0.09-0.22), and maps ×1e-10 or ×1e20 no longer give all-zero or NaN images. Maps whose power is
    outside ``[1/MAPS_TOLERANCE, MAPS_TOLERANCE]`` are likely not meant so, and a warning says what is done.

    Raises
    ------
    InputError
        All-zero maps, or maps whose power overflows.
    """
    p = maps_power(maps)
    if not math.isfinite(p):
        raise InputError(f"{name}: sum of |S|^2 overflows (values too large to square); rescale the maps "
                         "so that sum_c |S_c|^2 = 1 on the object")
    if p <= 0 or not math.isfinite(1.0 / math.sqrt(p)):
        raise InputError(f"{name} are all zero (or too small to use); expected sensitivities that are "
                         "non-zero on the object")
    if not 1 / MAPS_TOLERANCE <= p <= MAPS_TOLERANCE:
        log.warning("%s: sum_c |S_c|^2 on the support is %.3g, expected about 1; the maps are used divided by "
                    "%.3g and the image is returned in their units (multiply it by %.3g for unit-power maps)",
                    name, p, math.sqrt(p), math.sqrt(p))
    return 1.0 if abs(p - 1.0) <= UNIT_POWER_TOLERANCE else math.sqrt(p)


def check_recon_inputs(kspace, coil_maps, mask=None, *, normalise: bool = True):
    """Check one reconstruction problem's arrays; return the coil maps (normalised when needed).

    Parameters
    ----------
    kspace : array, ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``, complex or real
    coil_maps : array, same shape
    mask : array or None
        Boolean or real in ``[0, 1]``, broadcastable to ``kspace``.
    normalise : bool
        Return the maps divided to unit power (:func:`normalise_maps`).

    Raises
    ------
    InputError, InputTypeError, mri_csc.io.limits.BudgetError
        Naming the argument, what was received and what was expected; the
        budget is checked from the shapes before any allocation. All-zero
        k-space is refused (it has no image, for any method).
    """
    check_array("kspace", kspace)
    if kspace.ndim not in (3, 4):
        raise InputError("kspace must have shape (coils, ny, nx) or (coils, nz, ny, nx); "
                         f"got {kspace.ndim}-D shape {tuple(kspace.shape)}")
    check_array("coil_maps", coil_maps)
    if tuple(coil_maps.shape) != tuple(kspace.shape):
        raise InputError(f"coil_maps must have the same shape as kspace {tuple(kspace.shape)}; "
                         f"got {tuple(coil_maps.shape)}")
    cdtype = np.complex128 if np.dtype(kspace.dtype) == np.complex128 else np.complex64
    # a solver holds several copies of the problem: budget the k-space, maps and a few work arrays
    check_shape((4, *kspace.shape), cdtype, "kspace and coil_maps with solver work arrays")
    if mask is not None:
        check_mask_values(mask)
        try:
            np.broadcast_shapes(tuple(mask.shape), tuple(kspace.shape))
        except ValueError:
            raise InputError(f"mask of shape {tuple(mask.shape)} does not broadcast against kspace "
                             f"{tuple(kspace.shape)}; expected the image shape {tuple(kspace.shape[1:])}") from None
    check_finite("kspace", kspace)
    check_not_all_zero("kspace", kspace)
    check_finite("coil_maps", coil_maps)
    return normalise_maps(coil_maps) if normalise else coil_maps


def per_slice(name: str, a, n_slices: int, slice_ndim: int) -> list:
    """Split ``a`` into one entry per slice: ``a`` itself for all slices, or ``a[i]`` for slice ``i``.

    ``a`` with at most ``slice_ndim`` dimensions (or a leading axis of length 1) is shared
    by every slice; with one more axis of length ``n_slices`` it is one per slice.
    Any other length is refused: a shorter list is never zipped against the slices.
    """
    if a is None:
        return [None] * n_slices
    if a.ndim <= slice_ndim:
        return [a] * n_slices
    if a.ndim == slice_ndim + 1:
        if a.shape[0] == n_slices:
            return list(a)
        if a.shape[0] == 1:
            return [a[0]] * n_slices
    raise InputError(f"{name} of shape {tuple(a.shape)} does not match {n_slices} slice(s): expected one "
                     f"pattern for all slices ({slice_ndim}-D) or one per slice (leading axis {n_slices})")


def check_output(image, what: str, method: str | None = None) -> None:
    """Refuse to write an image with NaN/Inf values; the message names what to change."""
    xp = _xp(image)
    n_bad = int((~xp.isfinite(image)).sum())
    if n_bad:
        hint = (f"method {method!r} diverged or was given unscaled inputs: lower its regularisation "
                "weight (lam) or step parameters, or check the mask and coil maps") if method else \
            "check the inputs"
        raise InputError(f"{what}: reconstruction has {n_bad} NaN/Inf value(s) of {image.size}; nothing "
                         f"was written; {hint}")


def raised_here(exc: BaseException) -> bool:
    """Whether ``exc`` was raised on purpose in mri_csc's own code: by a ``raise <its class>(`` statement.

    The innermost frame must be in the package, on a ``raise`` statement that
    names the exception's own class, so that an error Python raises while
    evaluating that statement (formatting ``None`` with ``:.3g`` inside
    ``raise ValueError(f"...")`` gives a ``TypeError``) is not taken for it.
    """
    import linecache  # noqa: PLC0415
    import os  # noqa: PLC0415

    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    fname = tb.tb_frame.f_code.co_filename
    if not os.path.abspath(fname).startswith(_PACKAGE_DIR):
        return False
    line = linecache.getline(fname, tb.tb_lineno).strip()
    return line.startswith("raise ") and re.match(rf"raise ([\w.]+\.)?{type(exc).__name__}\(", line) is not None


def _package_dir() -> str:
    import os  # noqa: PLC0415

    return os.path.dirname(os.path.abspath(__file__)) + os.sep


_PACKAGE_DIR = _package_dir()


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input (one line, exit 2) rather than a bug (traceback, exit 1).

    User errors are the input-error classes (:class:`InputError`,
    :class:`~mri_csc.io.formats.FileFormatError`, :class:`~mri_csc.config.ConfigError`,
    :class:`~mri_csc.io.limits.BudgetError`, :class:`~mri_csc.io.atomic.OutputExistsError`),
    operating-system errors with an ``errno`` (a missing file, no permission, a
    full disk: the environment, not mri_csc, is at fault), and a
    ``ValueError`` raised on purpose by mri_csc's own code (:func:`raised_here`).
    A plain ``TypeError`` is never one (deliberate type errors are
    :class:`InputTypeError`), nor a ``TypeError`` or ``ValueError`` raised
    inside NumPy, h5py or by Python itself (``'NoneType' object is not
    subscriptable``): those are bugs.
    """
    from .config import ConfigError  # noqa: PLC0415
    from .io.atomic import OutputExistsError  # noqa: PLC0415
    from .io.formats import FileFormatError  # noqa: PLC0415
    from .io.limits import BudgetError  # noqa: PLC0415

    if isinstance(exc, (InputError, FileFormatError, ConfigError, BudgetError, OutputExistsError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno is not None or isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError,
                                                         IsADirectoryError, NotADirectoryError))
    if isinstance(exc, ValueError) and not isinstance(exc, TypeError):
        return raised_here(exc)
    return False
