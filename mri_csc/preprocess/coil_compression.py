r"""SVD coil compression to ``n`` virtual coils (as ``bart cc -S -p n``).

With the k-space samples of all coils as the rows of :math:`Y` (``coils x samples``)
and its SVD :math:`Y = U\Sigma V^H`, the compression matrix is
:math:`A = U_{:, :n}^H` (``n x coils``): the virtual coils ``A y`` keep the ``n``
directions of most signal energy. The forward model stays exact for maps
compressed the same way, :math:`A S`, since :math:`A (S x) = (A S) x`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["coil_compression_matrix", "compress_coils"]


def coil_compression_matrix(kspace, n: int) -> np.ndarray:
    """The ``(n, coils)`` SVD compression matrix :math:`U_{:, :n}^H` of ``kspace`` ``(coils, ...)``.

    Only sampled (non-zero) positions enter :math:`Y`, whose ``coils x coils``
    Gram matrix :math:`YY^H = U\\Sigma^2U^H` is what is decomposed.
    """
    from ..backend import get_xp, to_numpy  # noqa: PLC0415

    xp = get_xp(kspace)
    nc = kspace.shape[0]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= nc:
        raise ValueError(f"compress_coils must be an integer in [1, {nc}] (the number of coils); got {n!r}")
    y = kspace.reshape(nc, -1)
    gram = to_numpy(y @ y.conj().T).astype(np.complex128)
    w, u = np.linalg.eigh(gram)  # ascending
    u = u[:, ::-1][:, :n]
    return xp.asarray(u.conj().T.astype(np.complex64 if kspace.dtype == np.complex64 else kspace.dtype))


def compress_coils(kspace, n: int, maps=None):
    """Compress ``kspace`` ``(coils, ...)`` (and ``maps``, the same way) to ``n`` virtual coils.

    Returns ``(kspace_c, maps_c)`` (``maps_c`` None when ``maps`` is), ``n`` coils each.
    """
    a = coil_compression_matrix(kspace, n)
    nc = kspace.shape[0]
    kc = (a @ kspace.reshape(nc, -1)).reshape((n,) + kspace.shape[1:])
    mc = None
    if maps is not None:
        if maps.shape[0] != nc:
            raise ValueError(f"maps have {maps.shape[0]} coils; the k-space has {nc}")
        mc = (a.astype(maps.dtype) @ maps.reshape(nc, -1)).reshape((n,) + maps.shape[1:])
    return kc, mc
