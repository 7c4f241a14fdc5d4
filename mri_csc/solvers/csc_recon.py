r"""The CSC reconstruction solver: ADMM-based alternation on NumPy or CuPy.

Model
-----
With :math:`u = e^{-i\varphi}x` the phase-demodulated image, the solver
minimises

.. math::
    \tfrac12\|Ax-y\|^2
    + \tfrac{\mu}{2}\big\|u - (l + \textstyle\sum_k d_k * z_k)\big\|^2
    + \lambda\|z\|_1 + \tfrac{\lambda_{lp}}{2}\|\nabla l\|^2
    + \tfrac{\gamma}{2}\|\operatorname{Im} u\|^2 ,

a soft version of the coupling :math:`u = l + Dz`. ``A = M F S`` is the SENSE
operator, :math:`l` the smooth (complex) low-pass part, :math:`z` sparse codes,
and the last term is the phase-smoothness penalty: with :math:`\varphi` a smooth
phase estimated from the data, a smooth-phase image has a small imaginary part
after demodulation. With ``imag_codes`` the real and imaginary parts of ``u`` are
coded as two real channels sharing the dictionary; without it only the real part
is (``z`` real, so ``Dz`` is real): after demodulation the detail an image has is
real, and the imaginary part is modelled by its low-pass part and the γ penalty
alone, which halves the cost of the sparse coding, the dominant one.
``γ = 0`` with :math:`\varphi = 0` and ``imag_codes`` is a plain complex (re/im)
CSC prior.

Iteration
---------
Block coordinate descent over ``(l, z)`` and ``x``, each block solved inexactly
and warm-started:

1. **prior step** — split :math:`u` into low-pass ``l`` and high-pass part by a
   Tikhonov filter (:func:`mri_csc.prior.lowpass.lowpass_split`), then run
   ``csc_iter`` ADMM iterations of convolutional sparse coding on the high-pass
   part (of the real part only, without ``imag_codes``;
   :class:`mri_csc.prior.sparse_coding.ConvSparseCoder`, exact Sherman–Morrison
   solves, over-relaxation, residual-balancing ρ), keeping its iterates and duals
   between outer iterations;
2. **data step** — ``cg_iter`` warm-started CG iterations (the residual carried over
   from the previous outer iteration, since only the right-hand side changes) on the
   normal equations

   .. math::
       \big(A^HA + e^{i\varphi}(\mu\operatorname{Re} + (\mu+\gamma)\,i\operatorname{Im})e^{-i\varphi}\big)x
       = A^Hy + \mu e^{i\varphi} p ,\qquad p = l + Dz ,

   an operator that is self-adjoint for the real inner product
   :math:`\operatorname{Re}\langle a,b\rangle` CG uses (it is only real-linear when γ > 0).

Outside the coil maps' support ``A`` sees nothing, and there the prior target
is set to zero, so the image is zero where the maps are (ESPIRiT maps are zero
outside the object): nothing is invented there.

Each iteration records the relative coupling (primal) residual
:math:`\|u-p\|/\max(\|u\|,\|p\|)` and the relative change of the image
:math:`\|x_k-x_{k-1}\|/\|x_k\|` (dual). The coupling is soft, so the primal
residual settles at a non-zero value (the prior's misfit, about 1-2 % on brain
data) rather than going to zero; the solver therefore stops when the relative
change falls below ``tol``, or after ``max_iter`` iterations.
"""

from __future__ import annotations

from collections.abc import Callable

from ..backend import get_xp, to_numpy
from ..operators import Sense
from ..prior.lowpass import lowpass_split
from ..prior.sparse_coding import ConvSparseCoder
from .cg import conjugate_gradient
from .history import History

__all__ = ["CSCReconSolver"]


class CSCReconSolver:
    r"""Alternating CSC reconstruction; one :meth:`update` is one outer iteration.

    Parameters
    ----------
    A : Sense
        Forward operator (maps and mask on the working device).
    y : array ``(coils, *image_shape)``
        Scaled, masked k-space.
    coder : ConvSparseCoder
        Sparse coder over the image shape (built once; its state is the warm start).
    phasor : array or None
        :math:`e^{i\varphi}` (unit modulus, image shape); ``None`` means no demodulation.
    mu : float
        Coupling weight μ between the image and the prior.
    gamma : float
        Phase-smoothness weight γ on :math:`\operatorname{Im}(e^{-i\varphi}x)`.
    lam_lp : float
        Tikhonov weight of the low-pass split.
    cg_iter, csc_iter : int
        Inner iterations per outer iteration.
    imag_codes : bool
        Sparse-code the imaginary part of ``u`` too (default), not only the real part.
        The coder then sees signals of shape ``(2, *image_shape)``, else ``(1, *image_shape)``.
    max_iter : int
        Outer iterations.
    tol : float
        Stop when the relative change of the image falls below it (0: run ``max_iter``).
    x0 : array, optional
        Initial image (warm start); otherwise ``init_iter`` CG iterations from zero.
    init_iter : int
    callback : callable, optional
        ``callback(record, x)`` after each iteration; returning ``True`` stops.
    """

    def __init__(self, A: Sense, y, coder: ConvSparseCoder, *, phasor=None, mu: float = 0.3,
                 gamma: float = 0.0, lam_lp: float = 5.0, cg_iter: int = 3, csc_iter: int = 3,
                 max_iter: int = 50, tol: float = 0.0, x0=None, init_iter: int = 10,
                 imag_codes: bool = True, callback: Callable | None = None):
        self.A, self.y, self.coder = A, y, coder
        self.n_coded = 2 if imag_codes else 1  # channels (re, im) given to the sparse coder
        self.xp = get_xp(y)
        self.phasor = phasor
        self.mu, self.gamma, self.lam_lp = float(mu), float(gamma), float(lam_lp)
        self.cg_iter, self.csc_iter = int(cg_iter), int(csc_iter)
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.callback = callback
        self.support = self.xp.any(A.maps != 0, axis=0)
        self.rhs_data = A.adjoint(y)
        self._y_u = A.uncentred(y)  # k-space in the uncentred layout of A.residual_norm2
        self.history = History()
        self.iter = 0
        self._stop = False
        # the CG residual b - N x is carried between outer iterations (only b changes), which
        # saves one application of N (a coil FFT pair) per iteration
        self._rhs = self._residual = None
        if x0 is None:
            x0, self._residual = conjugate_gradient(self._normal, self.rhs_data, max_iter=init_iter,
                                                    return_residual=True)
            self._rhs = self.rhs_data
        self.x = x0.astype(self.rhs_data.dtype, copy=True)

    # -- the pieces of the x-step ----------------------------------------------------------
    def _demod(self, x):
        return x if self.phasor is None else x * self.phasor.conj()

    def _mod(self, u):
        return u if self.phasor is None else u * self.phasor

    def _prior_weight(self, x):
        r""":math:`e^{i\varphi}(\mu\operatorname{Re}u + (\mu+\gamma)i\operatorname{Im}u)`."""
        if self.gamma == 0.0:
            return self.mu * x
        u = self._demod(x)
        return self._mod(self.mu * u + (1j * self.gamma) * u.imag)

    def _normal(self, x):
        return self.A.normal(x) + self._prior_weight(x)

    # -- one outer iteration ------------------------------------------------------------------
    def prior_step(self, x):
        """Low-pass split and sparse coding of the demodulated image; returns the prior ``p``."""
        xp = self.xp
        u = self._demod(x)
        chans = xp.stack([u.real, u.imag])
        p, high = lowpass_split(chans, self.lam_lp, axes=tuple(range(-(x.ndim), 0)))
        n = self.n_coded
        self.coder.solve(high[:n], max_iter=self.csc_iter, tol=0.0, warm=True, copy=False)
        p[:n] += self.coder.synthesize()
        prior = (p[0] + 1j * p[1]).astype(x.dtype)
        prior *= self.support
        return prior

    def update(self) -> dict:
        """Run one outer iteration and append its record to :attr:`history`."""
        xp = self.xp
        prior = self.prior_step(self.x)
        rhs = self.rhs_data + self.mu * self._mod(prior)
        r0 = None if self._residual is None else self._residual + (rhs - self._rhs)
        x_old = self.x
        self.x, self._residual = conjugate_gradient(self._normal, rhs, self.x, max_iter=self.cg_iter,
                                                    residual=r0, return_residual=True)
        self._rhs = rhs
        # history: every norm as a device scalar, moved to the host in one transfer (one sync
        # per outer iteration on a GPU); the data term skips the output fftshift (norms are
        # shift-invariant) against the k-space shifted once in __init__
        u = self._demod(self.x)

        def n2(a):
            return xp.vdot(a.ravel(), a.ravel()).real

        d = u - prior
        vals = xp.stack([n2(self.x), n2(d), n2(u), n2(prior), n2(self.x - x_old),
                         self.A.residual_norm2(self.x, self._y_u), xp.abs(self.coder.codes).sum(),
                         n2(u.imag)]).astype(xp.float64)
        xn2, c2, un2, pn2, dx2, r2, l1sum, im2 = (float(v) for v in to_numpy(vals))
        xnorm = xn2 ** 0.5 or 1.0
        coupling = c2 ** 0.5
        primal = coupling / max(un2 ** 0.5, pn2 ** 0.5, 1e-30)
        dual = dx2 ** 0.5 / xnorm
        data = 0.5 * r2
        l1 = self.coder.lam * l1sum
        phase_pen = 0.5 * self.gamma * im2
        objective = data + 0.5 * self.mu * coupling ** 2 + l1 + phase_pen
        rec = self.history.append(objective=objective, data_fidelity=data, l1=l1,
                                  primal_residual=primal, dual_residual=dual, rho=self.coder.rho)
        self.iter += 1
        if self.callback is not None and self.callback(rec, self.x):
            self._stop = True
        if self.tol > 0 and dual < self.tol:
            self._stop = True
        return rec

    def done(self) -> bool:
        return self._stop or self.iter >= self.max_iter

    def run(self, pbar=None):
        """Iterate until :meth:`done`; returns the image."""
        while not self.done():
            rec = self.update()
            if pbar is not None:
                pbar.set_postfix(obj=f"{rec['objective']:.4g}", r=f"{rec['primal_residual']:.2e}")
                pbar.update()
        return self.x
