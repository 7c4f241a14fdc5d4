r"""The CSC reconstruction solver: block-coordinate descent over the image and the CSC prior's variables.

Model
-----
With :math:`u = e^{-i\varphi}x` the phase-demodulated image, the solver minimises

.. math::
    F(x, z) = \tfrac12\|Ax-y\|^2
    + \mu\Big(\tfrac12\big\|H u - Dz\big\|^2 + \lambda\|z\|_1\Big)
    + \tfrac{\gamma}{2}\|\operatorname{Im} u\|^2

over :math:`x` restricted to the coil maps' support (where ``A`` sees anything; the image is
zero elsewhere) and the codes :math:`z`; minimising over :math:`z` alone gives the CSC prior
:math:`R(x)` of :mod:`mri_csc.prior.csc_prior`, so this is
:math:`\min_x \tfrac12\|Ax-y\|^2 + R(x) + \tfrac{\gamma}{2}\|\operatorname{Im}u\|^2`.
:math:`H = I - (I + \lambda_{lp}\nabla^T\nabla)^{-1}` is the Tikhonov high-pass filter (Neumann
boundary, exact in the DCT-II domain; the low-pass part :math:`Lu` is left to the data), applied
to both real channels of :math:`u`; :math:`D` the dictionary's synthesis (real filters; real codes
of :math:`\operatorname{Re}u`, or of both parts with ``imag_codes``). ``A`` is any
:class:`~mri_csc.operators.LinearOperator` with ``normal`` (Cartesian SENSE by default).

Iteration
---------
Block-coordinate descent, each block warm-started:

1. **code step** (:meth:`CSCPrior.code`) — ``csc_iter`` ADMM steps of convolutional sparse
   coding of :math:`Hu` with ℓ1 weight λ (:class:`~mri_csc.prior.sparse_coding.ConvSparseCoder`:
   exact Sherman–Morrison solves, over-relaxation, residual balancing of its own penalty
   ``coder_rho``), its iterates kept between outer iterations; the prior's codes :math:`z` take
   the coder's new codes only when they do not raise :math:`F` (``monotone``, default), so the
   step is a descent step;
2. **data step** — ``cg_iter`` warm-started CG iterations (the residual carried over, since
   only the right-hand side changes), restricted to the support, on one of two quadratics in
   :math:`x` (``x_step``):

   - ``"mm"`` (default), majorize–minimize: since :math:`0 \preceq H^2 \preceq I`,
     :math:`\|Hu - Dz\|^2 \le \|u - t\|^2 + \text{const}` with equality at the current
     :math:`u_k`, for :math:`t = u_k - H(Hu_k - Dz) = (I - H^2)u_k + HDz`; minimising the
     majorizer,

     .. math::
         \big(A^HA + e^{i\varphi}(\mu\operatorname{Re} + (\mu+\gamma)\,i\operatorname{Im})e^{-i\varphi}\big)x
         = A^Hy + \mu e^{i\varphi} t ,

     lowers :math:`F` whenever CG lowers the majorizer (it does from the warm start), and
     costs no transform inside CG (the DCTs for :math:`t` and the record: 2 forward, 2
     inverse per iteration);
   - ``"exact"``: the x-block minimisation itself,

     .. math::
         \big(A^HA + e^{i\varphi}(\mu H^2 + \gamma\, i\operatorname{Im})e^{-i\varphi}\big)x
         = A^Hy + \mu e^{i\varphi} H Dz ,

     with a DCT pair per CG step. Both operators are self-adjoint for the real inner product
     CG uses.

Extra priors (hybrids)
----------------------
``priors`` adds terms :math:`\sum_j R_j(x)` (any :class:`~mri_csc.prior.base.Prior`, e.g.
:class:`~mri_csc.prior.functionals.TVPrior`) to :math:`F`, each by an ADMM split :math:`x = v_j`
with penalty :math:`\rho_j` and scaled dual :math:`w_j`, inside the same outer iteration: the
data step's operator gains :math:`\sum_j\rho_j I` and its right-hand side
:math:`\sum_j\rho_j(v_j - w_j)`; after it, :math:`v_j \leftarrow \operatorname{prox}_{R_j/\rho_j}(x + w_j)`
and :math:`w_j \leftarrow w_j + x - v_j`. The CSC block stays block-coordinate descent; at a fixed
point (:math:`x = v_j`) the iterate is stationary for :math:`F + \sum_j R_j`. Each split's
relative primal residual :math:`\|x - v_j\|/\|x\|` is recorded as ``<name>_residual`` and its
:math:`R_j(x)` under ``<name>`` (part of ``objective``).

The recorded ``objective`` is :math:`F` at the iterate :math:`(x, z)`, :math:`z` the prior's
codes (``data_fidelity``, ``coupling`` (:math:`\tfrac{\mu}{2}\|Hu - Dz\|^2`), ``l1`` and
``phase`` are its terms, weights included; plus the extra priors' :math:`R_j(x)`); with
``monotone`` and no extra priors it is non-increasing up to rounding, since both block steps are
descent steps (the ADMM splits of extra priors make the data step no descent step on
:math:`F + \sum_j R_j`); ``codes_rejected`` counts the code steps whose codes were not kept;
``coupling_misfit`` is :math:`\|Hu - Dz\|/\max(\|Hu\|, \|Dz\|)`, which settles at the prior's
misfit, not at zero; the solver stops when the mean ``image_change``
(:math:`\|x_k - x_{k-1}\|/\|x_k\|`) over the last ``tol_window`` iterations whose codes were kept
falls below ``tol``, or after ``max_iter`` iterations. (One iteration's change is a poor test with
``monotone`` codes: a step after rejected codes moves the image little while it is still
improving; with ``tol_window=1`` and ``tol=1e-3`` the default CSC stopped after 50 iterations on
average on ``benchmarks/quality.py``'s tuning split, 0.6 dB below its PSNR at 150.)
A non-finite or exploding image, or a collapsing coder penalty, raises
:class:`~mri_csc.solvers.guard.DivergenceError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..backend import dctn_ortho, get_xp, idctn_ortho, to_numpy
from ..prior.base import PriorSum, history_names
from ..prior.csc_prior import CSCPrior
from .base import IterativeSolver
from .cg import conjugate_gradient
from .guard import check_divergence
from .history import History

__all__ = ["CSCReconSolver"]


class CSCReconSolver(IterativeSolver):
    r"""Block-coordinate CSC reconstruction; one :meth:`update` is one outer iteration.

    Parameters
    ----------
    A : LinearOperator
        Forward operator with ``adjoint``, ``normal`` and a call (SENSE keeps a fast residual norm).
    y : array ``A.oshape``
        Scaled, masked k-space.
    prior : CSCPrior
        Its coder's state is the warm start; its ``phasor``, ``mu`` are the model's.
    gamma : float
        Phase-smoothness weight γ.
    support : boolean array, optional
        Image support (default: where ``A.maps`` is non-zero, for SENSE; everywhere otherwise).
    cg_iter : int
        CG iterations per outer iteration.
    max_iter : int
    tol : float
        Stop when the mean relative change of the image over the last ``tol_window`` iterations
        whose codes were kept falls below it (0: run ``max_iter``).
    tol_window : int
        Iterations averaged by the stopping test (1: the last kept iteration's change alone).
    x0 : array, optional
        Initial image (warm start); otherwise ``init_iter`` CG iterations from zero.
    init_iter : int
    callback : callable, optional
        ``callback(record, x)`` after each iteration; returning ``True`` stops.
    hint : str
        Added to a divergence error: which parameter to change.
    priors : sequence of Prior, optional
        Extra terms :math:`R_j`, each split off with its own ADMM penalty (see the module docstring);
        recorded as ``<name>`` and ``<name>_residual``, a repeated name as ``<name>_2``, ...
        (:func:`~mri_csc.prior.base.history_names`).
    rho : sequence of float, optional
        Their penalties :math:`\rho_j` (> 0), one per extra prior.
    """

    progress = ("misfit", "coupling_misfit")

    def __init__(self, A, y, prior: CSCPrior, *, gamma: float = 0.0, support=None, cg_iter: int = 3,
                 max_iter: int = 50, tol: float = 0.0, tol_window: int = 1, x0=None, init_iter: int = 10,
                 callback: Callable | None = None, hint: str = "", x_step: str = "mm", priors=(), rho=()):
        if x_step not in ("mm", "exact"):
            raise ValueError(f"x_step must be 'mm' or 'exact'; got {x_step!r}")
        self.extra = list(PriorSum(list(priors)).terms) if len(priors) else []
        self.extra_rho = [float(r) for r in rho]
        # history keys of the extra priors: distinct from each other and from the model's own terms
        self._extra_names = history_names(self.extra, reserved=("objective", "data_fidelity", "coupling", "l1",
                                                                 "phase"))
        if len(self.extra_rho) != len(self.extra) or not all(0 < r < float("inf") for r in self.extra_rho):
            raise ValueError(f"rho must give one finite penalty > 0 per extra prior ({len(self.extra)}); got {rho!r}")
        self._rho_sum = 0.0  # the extra splits' part of the x-step operator; off for the initial CG
        self.x_step = x_step
        self.A, self.y, self.prior = A, y, prior
        self.xp = xp = get_xp(y)
        self.phasor = prior.phasor
        self.mu, self.gamma = prior.mu, float(gamma)
        self.cg_iter, self.max_iter, self.tol = int(cg_iter), int(max_iter), float(tol)
        if int(tol_window) < 1:
            raise ValueError(f"tol_window must be an integer >= 1; got {tol_window!r}")
        self.tol_window = int(tol_window)
        self._changes = deque(maxlen=self.tol_window)  # the image changes of the last kept iterations
        self.callback, self.hint = callback, hint
        self._h2 = self.mu * prior.filter.high_gain ** 2  # the gain of mu H^2
        self._hu = None  # H of the current x's channels, from the last record
        self._uf = None  # their DCT (the "mm" step), from the last record
        if support is None and hasattr(A, "maps"):
            support = xp.any(A.maps != 0, axis=0)
        self.support = support
        self.rhs_data = self._restrict(A.adjoint(y))
        self.history = History()
        self.iter = 0
        self._stop = False
        # the CG residual b - N x is carried between outer iterations (only b changes)
        self._rhs = self._residual = None
        if x0 is None:
            x0, self._residual = conjugate_gradient(self._normal, self.rhs_data, max_iter=init_iter,
                                                    return_residual=True)
            self._rhs = self.rhs_data
        self.x = self._restrict(x0.astype(self.rhs_data.dtype, copy=True))
        self._ref = max(float(xp.linalg.norm(self.x)), float(xp.linalg.norm(self.rhs_data)), 1e-30)
        self._coder_rho0 = prior.coder.rho
        self._rejected = prior.n_rejected
        self._v = [self.x.copy() for _ in self.extra]  # the extra priors' splits x = v_j, and their duals
        self._w = [xp.zeros_like(self.x) for _ in self.extra]
        self._rho_sum = sum(self.extra_rho)
        if self._rhs is not None and self._rho_sum:  # the carried residual, for the system with the splits:
            self._rhs = self._rhs + self._rho_sum * self.x  # (b + rho x0) - (N + rho) x0 = b - N x0

    def _restrict(self, x):
        return x if self.support is None else x * self.support

    def _prior_weight(self, x):
        r"""The prior's part of the x-step operator, :math:`u = e^{-i\varphi}x`:
        :math:`e^{i\varphi}(\mu H^2 u + \gamma\,i\operatorname{Im}u)` (``"exact"``) or
        :math:`e^{i\varphi}(\mu u + \gamma\,i\operatorname{Im}u)` (``"mm"``)."""
        pr = self.prior
        if self.x_step == "mm":
            if self.gamma == 0.0:
                return self.mu * x
            u = pr.demod(x)
            return pr.mod(self.mu * u + (1j * self.gamma) * u.imag)
        u = pr.demod(x)
        out = pr.filter.apply_gain(u, self._h2)
        if self.gamma:
            out += (1j * self.gamma) * u.imag
        return pr.mod(out)

    def _normal(self, x):
        """The x-step operator restricted to the support (CG keeps ``x`` there)."""
        out = self.A.normal(x) + self._prior_weight(x)
        if self._rho_sum:
            out += self._rho_sum * x
        return self._restrict(out)

    def _data_residual2(self):
        if hasattr(self.A, "residual_norm2"):  # SENSE: no output shift
            if not hasattr(self, "_y_u"):
                self._y_u = self.A.uncentred(self.y)
            return self.A.residual_norm2(self.x, self._y_u)
        r = self.A(self.x) - self.y
        return self.xp.vdot(r.ravel(), r.ravel()).real

    def prior_step(self, x, hu=None):
        r"""The code step on the demodulated image; returns :math:`H Dz` (complex), the prior's target.

        ``hu``: :math:`H(\operatorname{Re}u, \operatorname{Im}u)` when already known (the last
        iteration's record computed it for this ``x``)."""
        pr = self.prior
        if hu is None:
            hu = pr.filter.high(pr.channels(pr.demod(x)))
        dz = pr.code(hu)
        n = pr.n_coded
        hdz = pr.filter.high(dz[:n])  # the uncoded imaginary channel of Dz is 0
        return hdz[0].astype(x.dtype) if n == 1 else pr.complex(hdz, x.dtype)

    def _mm_target(self):
        r"""Code step and the majorizer's target :math:`t = (I - H^2)u + H Dz` (complex), with the DCT of
        ``Dz``'s coded channels; one forward DCT of ``Dz`` and one inverse for ``t``."""
        pr = self.prior
        f = pr.filter
        xp = self.xp
        if self._uf is None:
            self._uf = dctn_ortho(pr.channels(pr.demod(self.x)), f.axes)
        hu = idctn_ortho(self._uf * f.high_gain, f.axes).astype(self._uf.dtype, copy=False)
        dz = pr.code(hu)
        n = pr.n_coded
        dzf = dctn_ortho(dz[:n], f.axes)
        tf = self._uf * (1 - f.high_gain ** 2)
        tf[:n] += f.high_gain * dzf
        t = idctn_ortho(tf, f.axes)
        return pr.complex(t, self.x.dtype), dzf, xp

    def update(self) -> dict:
        """Run one outer iteration and append its record to :attr:`history`."""
        xp = self.xp
        pr = self.prior
        if self.x_step == "mm":
            target, dzf, _ = self._mm_target()
        else:
            target = self.prior_step(self.x, self._hu)
        rhs = self.rhs_data + self.mu * self._restrict(pr.mod(target))
        for r, v, w in zip(self.extra_rho, self._v, self._w):
            rhs += r * self._restrict(v - w)
        r0 = None if self._residual is None else self._residual + (rhs - self._rhs)
        x_old = self.x
        self.x, self._residual = conjugate_gradient(self._normal, rhs, self.x, max_iter=self.cg_iter,
                                                    residual=r0, return_residual=True)
        self._rhs = rhs
        for j, (prior, r) in enumerate(zip(self.extra, self.extra_rho)):
            self._v[j] = self._restrict(prior.prox(self.x + self._w[j], 1.0 / r))
            self._w[j] = self._w[j] + self.x - self._v[j]
        # every norm as a device scalar, moved to the host in one transfer (one GPU sync per iteration)
        u = pr.demod(self.x)

        def n2(a):
            return xp.vdot(a.ravel(), a.ravel()).real

        if self.x_step == "mm":  # the coupling in the DCT domain (orthonormal): ||h U - C Dz||^2
            uf = self._uf = dctn_ortho(pr.channels(u), pr.filter.axes)
            huf = uf * pr.filter.high_gain
            n = pr.n_coded
            cpl = n2(huf[:n] - dzf) + (n2(huf[n:]) if n < huf.shape[0] else 0.0)
            hn, dn = n2(huf), n2(dzf)
        else:
            hu = self._hu = pr.filter.high(pr.channels(u))
            cpl, hn, dn = n2(hu - pr.dz), n2(hu), n2(pr.dz)
        vals = xp.stack([n2(self.x), cpl, hn, dn, n2(self.x - x_old), self._data_residual2(),
                         n2(u.imag)] + [n2(self.x - v) for v in self._v]).astype(xp.float64)
        xn2, c2, hn2, dn2, dx2, r2, im2, *split2 = (float(v) for v in to_numpy(vals))
        l1sum = pr.code_l1
        terms = {"data_fidelity": 0.5 * r2, "coupling": 0.5 * self.mu * c2, "l1": self.mu * pr.lam * l1sum,
                 "phase": 0.5 * self.gamma * im2}
        for prior, name in zip(self.extra, self._extra_names):
            terms[name] = prior.value(self.x)
        xnorm = xn2 ** 0.5 or 1.0
        change = dx2 ** 0.5 / xnorm
        splits = {f"{name}_residual": s2 ** 0.5 / xnorm for name, s2 in zip(self._extra_names, split2)}
        rec = self.history.append(objective=sum(terms.values()), **terms, **splits,
                                  coupling_misfit=c2 ** 0.5 / max(hn2 ** 0.5, dn2 ** 0.5, 1e-30),
                                  image_change=change, code_l1=l1sum, coder_rho=pr.coder.rho,
                                  codes_rejected=pr.n_rejected, dictionary_updates=pr.n_adapted)
        check_divergence(self.iter, xn2 ** 0.5, self._ref, rho={"coder_rho": (pr.coder.rho, self._coder_rho0)},
                         hint=self.hint)
        self.iter += 1
        if self.callback is not None and self.callback(rec, self.x):
            self._stop = True
        # a rejected code step leaves the target unchanged, so a small image change then says
        # nothing about convergence: the window holds the changes of iterations whose codes were
        # kept, and the test runs on a full window after such an iteration
        if pr.n_rejected == self._rejected:
            self._changes.append(change)
            if (self.tol > 0 and len(self._changes) == self.tol_window
                    and sum(self._changes) / self.tol_window < self.tol):
                self._stop = True
        self._rejected = pr.n_rejected
        return rec
