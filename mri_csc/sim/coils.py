r"""Coil sensitivity maps: simulated birdcage coils and ESPIRiT estimation.

Maps have shape ``(coils, *image_shape)`` (SigPy order). ESPIRiT maps are
defined up to a common phase per voxel and are normalised so that
:math:`\sum_c |S_c|^2 = 1` on the object (and 0 where the eigenvalue falls
below ``crop``); :func:`birdcage_maps` uses the same normalisation so simulated
and estimated maps are directly comparable.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backend import get_xp, resolve_device, to_device, to_numpy
from ..io.cfl import read_cfl, write_cfl
from ._checks import check_image_shape

__all__ = ["ESPIRIT_METHODS", "birdcage_maps", "calibration_shape", "estimate_maps", "fully_sampled_centre",
           "map_agreement"]

log = logging.getLogger(__name__)

ESPIRIT_METHODS = ("sigpy", "bart")


def birdcage_maps(
    shape: Sequence[int],
    n_coils: int = 8,
    *,
    radius: float = 1.5,
    coils_per_ring: int = 8,
    dtype=np.complex64,
) -> np.ndarray:
    r"""Simulated birdcage coil sensitivities (via :func:`sigpy.mri.birdcage_maps`).

    Coil :math:`c` sits at :math:`r(\cos\theta_c, \sin\theta_c)` in coordinates
    normalised to :math:`[-1, 1]` over the field of view, with
    :math:`\theta_c = 2\pi c / n` and sensitivity :math:`e^{i\phi_c}/|p - p_c|`;
    in 3D coils are stacked in rings of ``coils_per_ring`` along z. The maps are
    normalised to unit sum of squares, :math:`\sum_c |S_c(p)|^2 = 1` everywhere
    — the ESPIRiT convention.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)`` or ``(nz, ny, nx)``.
    n_coils : int
        Number of coils (>= 1).
    radius : float
        Coil radius relative to the half field of view (> 1 keeps coils outside
        the image).
    coils_per_ring : int
        Coils per ring (3D only).
    dtype : numpy dtype
        Complex output dtype (default complex64).

    Returns
    -------
    numpy.ndarray
        Maps of shape ``(n_coils, *shape)``.
    """
    shape = check_image_shape(shape)
    if int(n_coils) != n_coils or n_coils < 1:
        raise ValueError(f"n_coils must be a positive integer; got {n_coils!r}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0; got {radius!r}")
    if not np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise TypeError(f"dtype must be a complex dtype; got {np.dtype(dtype)}")
    import sigpy.mri

    maps = sigpy.mri.birdcage_maps(
        (int(n_coils), *shape), r=float(radius), nzz=int(coils_per_ring), dtype=np.complex128
    )
    return maps.astype(dtype)


def _check_kspace(kspace):
    if not hasattr(kspace, "shape") or kspace.ndim not in (3, 4):
        shape = getattr(kspace, "shape", None)
        raise ValueError(
            f"kspace must be an array of shape (coils, ny, nx) or (coils, nz, ny, nx); got shape {shape}"
        )
    xp = get_xp(kspace)
    if not xp.iscomplexobj(kspace):
        raise TypeError(f"kspace must be complex; got dtype {kspace.dtype}")
    if not bool(xp.isfinite(kspace).all()):
        raise ValueError("kspace contains NaN or Inf values")


def _sampled(kspace) -> np.ndarray:
    """Where any coil's k-space is non-zero (NumPy bool, the image axes)."""
    return to_numpy(get_xp(kspace).any(kspace != 0, axis=0))


def fully_sampled_centre(kspace, sampled=None) -> int:
    """The side of the largest centred calibration block that is fully sampled (every point non-zero).

    A point counts as sampled where any coil's k-space is non-zero; the block is
    :func:`~mri_csc.sim.masks.calibration_region` of side ``w`` on every image
    axis (at most the axis' size), as ESPIRiT cuts it. 0 when the centre itself
    is not sampled.
    """
    from .masks import calibration_region  # noqa: PLC0415

    sampled = _sampled(kspace) if sampled is None else sampled
    w = 0
    for side in range(1, max(sampled.shape) + 1):
        block = sampled[calibration_region(sampled.shape, tuple(min(side, n) for n in sampled.shape))]
        if not block.all():
            break
        w = side
    return w


def calibration_shape(kspace, calib_width: int, sampled=None) -> tuple[int, ...]:
    """Per image axis, the side of the centred block ESPIRiT calibrates on: ``calib_width`` (at most the axis'
    size), or less along an axis whose fully sampled centre is narrower.

    As BART's ``ecalib`` limits its calibration region with ``-r``: 16 centre lines of whole-line sampling give
    a 16 × 24 block, where a 24 × 24 one would take in unsampled lines and a 16 × 16 one would leave sampled
    rows out. Grown from the largest fully sampled square (:func:`fully_sampled_centre`) one axis at a time.
    """
    from .masks import calibration_region  # noqa: PLC0415

    sampled = _sampled(kspace) if sampled is None else sampled
    cap = [min(int(calib_width), n) for n in sampled.shape]
    sides = [min(fully_sampled_centre(kspace, sampled), c) for c in cap]
    for ax in range(len(sides)):
        while sides[ax] < cap[ax]:
            trial = sides[:ax] + [sides[ax] + 1] + sides[ax + 1:]
            if not sampled[calibration_region(sampled.shape, tuple(trial))].all():
                break
            sides = trial
    return tuple(sides)


def _espirit_sigpy(ksp, calib_shape, thresh, kernel_shape, crop, max_iter, dev):
    """SigPy's ESPIRiT; a square ``calib_shape`` and kernel run :class:`sigpy.mri.app.EspiritCalib` itself, other
    shapes :func:`_espirit_sigpy_rect` (the same algorithm on that block and kernel)."""
    import sigpy
    import sigpy.mri

    sp_dev = sigpy.Device(-1 if dev.kind == "cpu" else dev.index)
    ksp = to_device(ksp, dev)
    kernel_shape = tuple(kernel_shape) if np.ndim(kernel_shape) else (int(kernel_shape),) * len(calib_shape)
    if len(set(calib_shape)) > 1 or len(set(kernel_shape)) > 1:
        return _espirit_sigpy_rect(ksp, calib_shape, thresh, kernel_shape, crop, max_iter, sp_dev)
    app = sigpy.mri.app.EspiritCalib(
        ksp,
        calib_width=calib_shape[0],
        thresh=thresh,
        kernel_width=kernel_shape[0],
        crop=crop,
        max_iter=max_iter,
        device=sp_dev,
        show_pbar=False,
    )
    return app.run()


def _espirit_sigpy_rect(ksp, calib_shape, thresh, kernel_shape, crop, max_iter, device):
    r""":class:`sigpy.mri.app.EspiritCalib` (sigpy 0.1.x) on a rectangular calibration block ``calib_shape``.

    Its steps, unchanged but for the block's and the kernel's shapes: the calibration matrix of all
    ``kernel_shape`` patches of the block (rows) over coils × kernel taps (columns); its right singular vectors
    with singular value above ``thresh`` times the largest; their kernels zero-padded to the grid and
    inverse-FFT'd, giving per voxel :math:`A^HA = \sum_k a_k a_k^H` (coils × coils), scaled by
    :math:`N / \prod_i w_i` (:math:`w` the kernel's sides); the maps are the
    dominant eigenvector of each voxel's :math:`A^HA` by power iteration (``max_iter``), phase-referenced to
    the first coil and zeroed where the eigenvalue is at most ``crop``.
    """
    import sigpy as sp

    img_ndim = ksp.ndim - 1
    num_coils = len(ksp)
    kernel_shape = [int(w) for w in (kernel_shape if np.ndim(kernel_shape) else [kernel_shape] * img_ndim)]
    taps = int(np.prod(kernel_shape))
    with sp.get_device(ksp):
        calib = sp.to_device(sp.resize(ksp, [num_coils, *calib_shape]), device)
    xp = device.xp
    with device:
        mat = sp.array_to_blocks(calib, kernel_shape, [1] * img_ndim)
        mat = mat.reshape([num_coils, -1, taps]).transpose([1, 0, 2])
        mat = mat.reshape([-1, num_coils * taps])
        _, s, vh = xp.linalg.svd(mat, full_matrices=False)
        kernels = vh[s > thresh * s.max(), :].reshape([-1, num_coils, *kernel_shape])
        img_shape = ksp.shape[1:]
        aha = xp.zeros(img_shape[::-1] + (num_coils, num_coils), dtype=ksp.dtype)
        for kernel in kernels:
            img_kernel = sp.ifft(sp.resize(kernel, ksp.shape), axes=range(-img_ndim, 0))
            ah = xp.expand_dims(img_kernel.T, axis=-1)
            aha += ah @ xp.conj(ah.swapaxes(-1, -2))
        aha *= sp.prod(img_shape) / taps
        mps = xp.ones(ksp.shape[::-1] + (1,), dtype=ksp.dtype)

        def normalize(x):
            return xp.sum(xp.abs(x) ** 2, axis=-2, keepdims=True) ** 0.5

        alg = sp.alg.PowerMethod(lambda x: aha @ x, mps, norm_func=normalize, max_iter=max_iter)
        while not alg.done():
            alg.update()
        out = mps.T[0]
        out *= xp.conj(out[0] / xp.abs(out[0]))
        out *= alg.max_eig.T[0] > crop
    return out


def _espirit_bart(ksp, calib_width, thresh, kernel_width, crop, bart):
    """``bart ecalib -m 1``; ``None`` options are left to BART's own defaults (``-t 0.001 -c 0.8 -k 6 -r 24``)."""
    k = to_numpy(ksp)
    if k.ndim == 3:  # (coils, ny, nx) -> BART (nx, ny, 1, coils)
        k = k[:, None]
    three_d = k.shape[1] > 1
    opts = ["-m", "1"]
    if thresh is not None:
        opts += ["-t", repr(float(thresh))]
    if crop is not None:
        opts += ["-c", repr(float(crop))]
    if kernel_width is not None:
        opts += ["-k", f"{kernel_width}:{kernel_width}:{kernel_width if three_d else 1}"]
    if calib_width is not None:  # per axis, at most the axis (BART order x, y, z = the last numpy axis first)
        r = [min(int(calib_width), n) for n in k.shape[:0:-1]]
        opts += ["-r", f"{r[0]}:{r[1]}:{r[2] if three_d else 1}"]
    with tempfile.TemporaryDirectory(prefix="mri_csc_ecalib_") as tmp:
        kin, kout = Path(tmp) / "ksp", Path(tmp) / "sens"
        write_cfl(kin, k.T)
        cmd = [bart, "ecalib", *opts, str(kin), str(kout)]
        log.debug("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"'bart ecalib' failed (exit {proc.returncode}): {proc.stderr.strip()}")
        sens = read_cfl(kout)
    # BART (nx, ny, nz, coils) -> (coils, nz, ny, nx)
    sens = sens.reshape(sens.shape + (1,) * (4 - sens.ndim)).T
    return sens[:, 0] if to_numpy(ksp).ndim == 3 else sens


#: ESPIRiT defaults per implementation: SigPy's ``EspiritCalib`` and BART's ``ecalib``.
ESPIRIT_DEFAULTS = {"sigpy": {"calib_width": 24, "thresh": 0.02, "kernel_width": 6, "crop": 0.95},
                    "bart": {"calib_width": 24, "thresh": 0.001, "kernel_width": 6, "crop": 0.8}}

#: SigPy ESPIRiT's ``crop`` when the calibration block is cut by a narrow fully sampled centre (BART's default):
#: with 10 centre lines of R = 4 whole-line sampling (fastMRI layout, 8 coils, 256 × 128) SigPy's 0.95 zeroed the
#: maps over part of the object (CSC 20.9 dB; 0.8: 33.0 dB, ``bart ecalib`` 32.5 dB); with 16 lines 43.8 / 44.1 dB
NARROW_CALIBRATION_CROP = 0.8
#: ... and its kernel, when the fully sampled centre cuts the block to fewer than NARROW_CALIBRATION_SIDE samples along
#: an axis: with 8 / 10 / 12 / 14 centre lines (the layout above) CSC 25.5 / 33.0 / 32.2 / 36.7 dB at kernel 6 and
#: 28.9 / 36.0 / 40.1 / 40.9 dB at 4; at 16 and 20 lines kernel 6 is 1 dB better (43.3 / 47.1 against 42.3 / 45.8).
#: Not uniform: on fastMRI's own R = 4 masks (10 centre lines; equispaced and random, seeds 0-2) kernel 4 minus
#: kernel 6 was -3.3, +2.0, -3.3, +8.1, +1.0, -1.5 dB (mean +0.5; with the lines above +0.9 over seven masks)
NARROW_CALIBRATION_KERNEL = 4
NARROW_CALIBRATION_SIDE = 16


def estimate_maps(
    kspace,
    *,
    calib_width: "int | None" = None,
    method: str = "sigpy",
    thresh: "float | None" = None,
    kernel_width: "int | None" = None,
    crop: "float | None" = None,
    max_iter: int = 100,
    device="cpu",
    maps: int = 1,
):
    r"""Estimate coil maps from the fully sampled k-space centre by ESPIRiT.

    ESPIRiT (Uecker et al., MRM 71:990, 2014) finds the maps as the
    eigenvectors, with eigenvalue 1, of the operator built from the
    calibration matrix's signal subspace (singular values above
    ``thresh`` times the largest); voxels whose eigenvalue is below ``crop``
    are set to zero.

    Parameters
    ----------
    kspace : array, shape ``(coils, ny, nx)`` or ``(coils, nz, ny, nx)``
        Complex k-space (NumPy or CuPy) whose centre ``calib_width`` block is
        fully sampled.
    calib_width : int
        Side of the calibration block, at most (see below).
    method : {"sigpy", "bart"}
        ``"sigpy"`` uses :class:`sigpy.mri.app.EspiritCalib`; ``"bart"`` runs
        ``bart ecalib -m 1`` on ``.cfl`` files in a temporary directory (CPU only).
    thresh, kernel_width, crop, max_iter
        ESPIRiT parameters (``max_iter`` is SigPy's power iterations). ``None``
        (the default for ``calib_width`` too) takes the chosen implementation's
        own default, :data:`ESPIRIT_DEFAULTS`: SigPy ``thresh=0.02, crop=0.95``,
        BART ``-t 0.001 -c 0.8`` (BART's defaults are left to BART itself);
        ``kernel_width=6`` and ``calib_width=24`` for both. ``calib_width`` is a limit per
        axis, as BART's ``-r``: SigPy's ESPIRiT calibrates on :func:`calibration_shape`, cut to the
        fully sampled centre along an axis where that is narrower (e.g. 16 × 24 for 16 centre
        lines). A block with a side under ``calib_width`` crops at :data:`NARROW_CALIBRATION_CROP`
        unless ``crop`` is given; one cut by the centre to under :data:`NARROW_CALIBRATION_SIDE`
        takes the kernel :data:`NARROW_CALIBRATION_KERNEL` unless ``kernel_width`` is given; and along
        each axis the kernel is at most the block's side less 2 (at least 3 positions).
    maps : int
        Number of ESPIRiT map sets; only 1 is supported (soft-SENSE with two sets
        is not in the forward model), anything else is refused.
    device : str
        ``"cpu"`` or ``"gpu[:N]"``: where the SigPy calibration runs and where
        the maps are returned.

    Returns
    -------
    array
        complex64 maps of ``kspace``'s shape, on ``device``.

    Raises
    ------
    ValueError
        On a bad ``kspace`` shape, NaN/Inf values, an unknown ``method`` or a
        calibration block larger than the grid.
        Also when the k-space has no fully sampled centre block at least
        ``kernel_width`` wide (:func:`fully_sampled_centre`): there is nothing to
        calibrate on.
    RuntimeError
        If ``method="bart"`` and ``bart`` is not on ``PATH`` or fails.
    """
    if method not in ESPIRIT_METHODS:
        raise ValueError(f"method must be one of {ESPIRIT_METHODS}; got {method!r}")
    if maps != 1:
        raise ValueError(f"maps={maps!r} (--espirit-maps): mri_csc reconstructs with one set of ESPIRiT maps "
                         "(soft-SENSE, several sets in one forward model, is not supported); use 1, or for "
                         "soft-SENSE 'bart ecalib -m 2' then 'bart pics' and 'bart rss 16'")
    _check_kspace(kspace)
    img_shape = kspace.shape[1:]
    if kspace.shape[0] == 1:  # one coil (e.g. fastMRI single-coil): its sensitivity is not identifiable; SENSE = FFT
        log.info("one coil: coil map of ones (the image carries the coil's sensitivity)")
        return to_device(np.ones(kspace.shape, np.complex64), resolve_device(device))
    given = {"calib_width": calib_width, "thresh": thresh, "kernel_width": kernel_width, "crop": crop}
    d = ESPIRIT_DEFAULTS[method]
    calib_width, thresh, kernel_width, crop = (d[n] if v is None else v for n, v in given.items())
    if not 0 < float(thresh) < 1:
        raise ValueError(f"thresh must be in (0, 1); got {thresh}")
    if int(calib_width) < kernel_width:  # a limit per axis: an axis shorter than it is taken whole, as BART -r
        raise ValueError(f"calib_width must be at least kernel_width={kernel_width}; got {calib_width}")
    if not 0 <= crop < 1:
        raise ValueError(f"crop must be in [0, 1); got {crop}")
    sampled = _sampled(kspace)
    full = fully_sampled_centre(kspace, sampled)
    need = NARROW_CALIBRATION_KERNEL if method == "sigpy" and given["kernel_width"] is None else int(kernel_width)
    if full < need:  # no calibration data: ESPIRiT would fit aliasing (16 dB instead of 27 dB seen)
        raise ValueError(
            f"the k-space centre is not fully sampled (the largest fully sampled centre block is {full} wide, "
            f"fewer than the ESPIRiT kernel's {need}): coil maps cannot be calibrated from it - "
            "acquire a calibration region (e.g. ismrmrd_generate_cartesian_shepp_logan -w 24, bart poisson -C 24) "
            "or give the coil maps (--maps FILE)"
        )
    dev = resolve_device(device)
    t0 = time.perf_counter()
    if method == "bart":
        bart = shutil.which("bart")
        if bart is None:
            raise RuntimeError(
                "method='bart' needs the BART command-line tool on PATH (e.g. 'apt-get install bart' "
                "or build from https://mrirecon.github.io/bart/); use method='sigpy' otherwise"
            )
        maps = _espirit_bart(kspace, *(None if given[n] is None else v for n, v in
                                       (("calib_width", int(calib_width)), ("thresh", thresh),
                                        ("kernel_width", int(kernel_width)), ("crop", crop))), bart)
    else:
        shape = calibration_shape(kspace, int(calib_width), sampled)
        cut = [s for s, n in zip(shape, img_shape) if s < min(int(calib_width), n)]  # cut by the sampled centre
        if any(s < int(calib_width) for s in shape):  # fewer calibration rows lower the eigenvalues inside
            crop = NARROW_CALIBRATION_CROP if given["crop"] is None else crop  # the object too
            if cut and min(cut) < NARROW_CALIBRATION_SIDE and given["kernel_width"] is None:
                kernel_width = NARROW_CALIBRATION_KERNEL
            log.info("ESPIRiT calibrates on a %s block (narrower than calib_width=%d), kernel %d, crop %g",
                     " x ".join(map(str, shape)), int(calib_width), int(kernel_width), crop)
        # at least 3 positions along every axis: a kernel as long as the block (a 3-D volume of 4 partitions) fits
        # once along it, and the maps came out zero (nz = 4: agreement 0 at (4, 4, 6), 0.999 at (2, 2, 6))
        kernel = tuple(min(int(kernel_width), max(1, s - 2)) for s in shape)
        maps = _espirit_sigpy(kspace, shape, thresh, kernel, crop, int(max_iter), dev)
    maps = to_device(maps, dev)
    maps = maps.astype(np.complex64, copy=False)
    log.info("ESPIRiT (%s) maps %s in %.2f s", method, tuple(maps.shape), time.perf_counter() - t0)
    return maps


def map_agreement(a, b, support=None) -> float:
    r"""Agreement of two sets of coil maps up to a per-voxel phase.

    The normalised correlation of the magnitudes,
    :math:`\langle |a|, |b| \rangle / (\||a|\| \||b|\|)` over ``support``
    (all voxels by default); 1 means identical up to phase.
    """
    a, b = np.abs(to_numpy(a)), np.abs(to_numpy(b))
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape; got {a.shape} and {b.shape}")
    if support is not None:
        s = np.broadcast_to(to_numpy(support).astype(bool), a.shape)
        a, b = a[s], b[s]
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.vdot(a, b).real / den) if den > 0 else 0.0
