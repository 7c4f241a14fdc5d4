r"""One ADMM for any forward operator and any list of priors.

:class:`ReconSolver` minimises

.. math::
    \tfrac12\|Ax - y\|^2 + \sum_i R_i(x) \quad (x = 0 \text{ off the support, when one is given})

by ADMM with one split :math:`x = v_i` per prior and scaled duals :math:`u_i`:

.. math::
    x &\leftarrow \arg\min_x \tfrac12\|Ax-y\|^2 + \sum_i \tfrac{\rho_i}{2}\|x - v_i + u_i\|^2
        \quad\text{(CG on } A^HA + \textstyle\sum_i\rho_i I\text{)},\\
    v_i &\leftarrow \operatorname{prox}_{R_i/\rho_i}(x + u_i),\qquad
    u_i \leftarrow u_i + x - v_i .

``A`` is any :class:`~mri_csc.operators.LinearOperator` with ``normal`` (SENSE uses its fused
normal pass); the x-step runs ``cg_iter`` CG iterations warm-started from the last ``x`` and
its residual. Primal residual :math:`r = (\sum_i\|x - v_i\|^2)^{1/2}`, dual residual
:math:`s = (\sum_i\rho_i^2\|v_i - v_i^{old}\|^2)^{1/2}` (Boyd et al. 2011, §3.3); it stops when
:math:`r \le \text{tol}\,\max(\|x\|\sqrt n, \|v\|)` and :math:`s \le \text{tol}\,\|\rho u\|` with
``n`` the number of splits. Residual balancing per split: :math:`\rho_i` is multiplied by
``tau`` when :math:`r_i > \mu s_i`, divided when :math:`s_i > \mu r_i` (duals rescaled).
With exact proxes and enough CG iterations this is ADMM on the objective above; an inexact
(warm-started) prox such as :class:`~mri_csc.prior.csc_prior.CSCPrior`'s makes it an inexact ADMM.

The recorded ``objective`` is :math:`\tfrac12\|Ax-y\|^2 + \sum_i R_i(x)` at the current ``x``
(each ``R_i`` as its :meth:`~mri_csc.prior.base.Prior.value` gives it).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import numpy as np

from ..backend import get_xp, to_numpy
from ..prior.base import Prior, PriorSum, history_names
from ..prior.sparse_coding import check_lam
from .base import IterativeSolver
from .cg import conjugate_gradient
from .guard import check_divergence
from .history import History

__all__ = ["ReconSolver"]


def _n2(xp, a):
    return xp.vdot(a.ravel(), a.ravel()).real


class ReconSolver(IterativeSolver):
    r"""ADMM over a forward operator and priors; one :meth:`update` is one iteration.

    Parameters
    ----------
    A : LinearOperator
        Forward operator with ``adjoint``, ``normal`` and a call (``A(x)``).
    y : array, ``A.oshape``
    priors : Prior, PriorSum or sequence of Prior
    rho : float or sequence of float
        Initial penalty per split (> 0); Python or NumPy numbers.
    max_iter : int
        Python or NumPy integer >= 1 (not a bool, not a float); so are ``cg_iter``,
        ``init_iter`` (>= 0) and ``balance_period``.
    tol : float
        Relative ADMM residual tolerance, a finite number >= 0 (0: run ``max_iter``).
    cg_iter : int
        CG iterations per x-step.
    x0 : array, optional
        Initial image; otherwise ``init_iter`` CG iterations on :math:`A^HA x = A^Hy`.
    init_iter : int
    support : boolean array, optional
        Constrain ``x`` to it (the x-step is solved on the support).
    balance : bool
        Residual-balanced ρ (``mu_balance``, ``tau``); ``balance_period`` iterations apart.
    callback : callable, optional
        ``callback(record, x)`` after each iteration; returning ``True`` stops.
    hint : str
        What the divergence error should suggest changing.

    Notes
    -----
    Each history record holds ``objective``, ``data_fidelity``, ``primal_residual``,
    ``dual_residual`` and, per prior, ``<name>_value``, ``<name>_rho`` and its
    :meth:`~mri_csc.prior.base.Prior.stats` as ``<name>_<key>``. Priors that share a ``name``
    (two :class:`~mri_csc.prior.functionals.TVPrior`) are told apart by a suffix in the order
    given: ``tv``, ``tv_2``, ``tv_3`` (:func:`~mri_csc.prior.base.history_names`).
    """

    progress = ("r", "primal_residual")

    def __init__(self, A, y, priors: "Prior | PriorSum | Sequence[Prior]", *, rho: "float | Sequence[float]" = 1.0,
                 max_iter: int = 100, tol: float = 1e-3, cg_iter: int = 3, x0=None, init_iter: int = 10,
                 support=None, balance: bool = True, mu_balance: float = 10.0, tau: float = 2.0,
                 balance_period: int = 1, callback: Callable | None = None, hint: str = ""):
        if isinstance(priors, Prior):
            priors = [priors]
        self.priors = list(PriorSum(list(priors)).terms)
        n = len(self.priors)
        rhos = [rho] * n if np.ndim(rho) == 0 else list(rho)
        if len(rhos) != n:
            raise ValueError(f"rho must be one number or one per prior ({n}); got {len(rhos)} values")
        for r in rhos:
            if isinstance(r, bool) or not (isinstance(r, numbers.Real) and 0 < float(r) < float("inf")):
                raise ValueError(f"rho must be finite numbers > 0; got {rhos!r}")
        for name, val in (("max_iter", max_iter), ("cg_iter", cg_iter), ("init_iter", init_iter),
                          ("balance_period", balance_period)):
            if isinstance(val, bool) or not isinstance(val, numbers.Integral) or val < (name != "init_iter"):
                raise ValueError(f"{name} must be an integer >= {1 if name != 'init_iter' else 0}; got {val!r}")
        tol = check_lam(tol, "tol")
        self.A, self.y = A, y
        self.xp = xp = get_xp(y)
        self.rho = [float(r) for r in rhos]
        self.rho0 = list(self.rho)
        self.max_iter, self.tol, self.cg_iter = int(max_iter), tol, int(cg_iter)
        self.balance, self.mu_balance, self.tau = bool(balance), mu_balance, tau
        self.balance_period = int(balance_period)
        self._names = history_names(self.priors, reserved=("objective", "data_fidelity", "primal_residual",
                                                            "dual_residual"))
        self.callback, self.hint = callback, hint
        self.support = support
        self.rhs_data = A.adjoint(y)
        if support is not None:
            self.rhs_data = self.rhs_data * support
        self.history = History()
        self.iter = 0
        self._stop = False
        self._sum_rho = sum(self.rho)
        if x0 is None:
            x0 = conjugate_gradient(self._data_normal, self.rhs_data, max_iter=int(init_iter))
        x0 = x0.astype(self.rhs_data.dtype, copy=True)
        if support is not None:
            x0 *= support
        self.x = x0
        self.v = [x0.copy() for _ in self.priors]
        self.u = [xp.zeros_like(x0) for _ in self.priors]
        self._rhs = self._residual = None
        self._ref = max(float(_n2(xp, x0)) ** 0.5, float(_n2(xp, self.rhs_data)) ** 0.5, 1e-30)
        self.converged = False

    def _data_normal(self, x):
        out = self.A.normal(x)
        return out if self.support is None else out * self.support

    def _normal(self, x):
        return self._data_normal(x) + self._sum_rho * x

    def _data_residual2(self):
        if hasattr(self.A, "residual_norm2"):  # SENSE: no output shift
            if not hasattr(self, "_y_u"):
                self._y_u = self.A.uncentred(self.y)
            return self.A.residual_norm2(self.x, self._y_u)
        r = self.A(self.x) - self.y
        return _n2(self.xp, r)

    def update(self) -> dict:
        xp = self.xp
        rhs = self.rhs_data
        for r, v, u in zip(self.rho, self.v, self.u):
            rhs = rhs + r * (v - u) if self.support is None else rhs + (r * (v - u)) * self.support
        # warm CG: the residual carries over when only the right-hand side changed (same rho)
        r0 = None if self._residual is None else self._residual + (rhs - self._rhs)
        self.x, self._residual = conjugate_gradient(self._normal, rhs, self.x, max_iter=self.cg_iter,
                                                    residual=r0, return_residual=True)
        self._rhs = rhs
        prim, dual = [], []
        for i, prior in enumerate(self.priors):
            v_old = self.v[i]
            self.v[i] = prior.prox(self.x + self.u[i], 1.0 / self.rho[i])
            self.u[i] = self.u[i] + self.x - self.v[i]
            prim.append(_n2(xp, self.x - self.v[i]))
            dual.append(_n2(xp, self.v[i] - v_old))
        norms = [float(t) for t in to_numpy(xp.stack(
            prim + dual + [_n2(xp, self.x)] + [_n2(xp, v) for v in self.v] + [_n2(xp, u) for u in self.u]
            + [self._data_residual2()]).astype(xp.float64))]
        n = len(self.priors)
        r2, d2 = norms[:n], norms[n:2 * n]
        xn2 = norms[2 * n]
        vn2, un2 = norms[2 * n + 1:3 * n + 1], norms[3 * n + 1:4 * n + 1]
        data = 0.5 * norms[-1]
        primal = sum(r2) ** 0.5
        dual_res = sum(self.rho[i] ** 2 * d2[i] for i in range(n)) ** 0.5
        prim_scale = max((n * xn2) ** 0.5, sum(vn2) ** 0.5, 1e-30)
        dual_scale = max(sum(self.rho[i] ** 2 * un2[i] for i in range(n)) ** 0.5, 1e-30)
        rec = {"data_fidelity": data}
        objective = data
        for i, (prior, name) in enumerate(zip(self.priors, self._names)):
            val = prior.value(self.x)
            objective += val
            rec[f"{name}_value"] = val
            rec.update({f"{name}_{k}": v for k, v in prior.stats().items()})
            rec[f"{name}_rho"] = self.rho[i]
        rec = self.history.append(objective=objective, primal_residual=primal / prim_scale,
                                  dual_residual=dual_res / dual_scale, **rec)
        check_divergence(self.iter, xn2 ** 0.5, self._ref,
                         rho={f"rho ({name})": (self.rho[i], self.rho0[i]) for i, name in enumerate(self._names)},
                         hint=self.hint)
        self.iter += 1
        if self.tol > 0 and primal <= self.tol * prim_scale and dual_res <= self.tol * dual_scale:
            self._stop = self.converged = True
        if self.balance and self.iter % self.balance_period == 0:
            changed = False
            for i in range(n):
                ri, si = r2[i] ** 0.5, self.rho[i] * d2[i] ** 0.5
                if ri > self.mu_balance * si:
                    self.rho[i] *= self.tau
                    self.u[i] = self.u[i] / self.tau
                    changed = True
                elif si > self.mu_balance * ri:
                    self.rho[i] /= self.tau
                    self.u[i] = self.u[i] * self.tau
                    changed = True
            if changed:  # the x-step matrix changed: its carried residual is stale
                self._sum_rho = sum(self.rho)
                self._residual = None
        if self.callback is not None and self.callback(rec, self.x):
            self._stop = True
        return rec
