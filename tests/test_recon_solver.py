"""ReconSolver: closed-form Tikhonov for any operator, SigPy's l1-wavelet objective, the divergence guard."""

import numpy as np
import pytest

from mri_csc.operators import Sense
from mri_csc.operators.base import FunctionOperator
from mri_csc.prior.base import Prior
from mri_csc.prior.functionals import WaveletPrior
from mri_csc.solvers import DivergenceError, ReconSolver

SHAPE = (16, 16)


class Tikhonov(Prior):
    r""":math:`R(x) = \tfrac{\alpha}{2}\|x\|^2`; prox :math:`v/(1 + \alpha t)`."""

    name = "tik"

    def __init__(self, alpha):
        self.alpha = alpha

    def prox(self, v, step):
        return v / (1 + self.alpha * step)

    def value(self, x):
        return 0.5 * self.alpha * float(np.vdot(x, x).real)


def _sense_problem(dtype=np.complex128, seed=0):
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((3, *SHAPE)) + 1j * rng.standard_normal((3, *SHAPE))
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0))
    mask = (rng.uniform(size=SHAPE) < 0.4).astype(np.float64)
    mask[6:10, 6:10] = 1
    x = rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)
    A = Sense(maps.astype(dtype), mask)
    return A, A(x.astype(dtype))


def _dense_problem(seed=1):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((40, 16)) + 1j * rng.standard_normal((40, 16))
    A = FunctionOperator((16,), (40,), lambda x: M @ x, lambda y: M.conj().T @ y, name="dense")
    return A, M @ (rng.standard_normal(16) + 1j * rng.standard_normal(16))


def _dense_normal(A):
    n = int(np.prod(A.ishape))
    cols = [A.normal(np.eye(n, dtype=complex)[i].reshape(A.ishape)).ravel() for i in range(n)]
    return np.array(cols).T


@pytest.mark.parametrize("make", [_sense_problem, _dense_problem], ids=["sense", "dense-operator"])
def test_tikhonov_matches_the_closed_form(make):
    A, y = make()
    alpha = 0.3
    n = int(np.prod(A.ishape))
    exact = np.linalg.solve(_dense_normal(A) + alpha * np.eye(n), A.adjoint(y).ravel()).reshape(A.ishape)
    solver = ReconSolver(A, y, [Tikhonov(alpha)], rho=1.0, max_iter=500, tol=1e-9, cg_iter=10)
    x = solver.run()
    assert np.linalg.norm(x - exact) / np.linalg.norm(exact) < 1e-4
    assert solver.converged
    h = solver.history[-1]
    for key in ("objective", "data_fidelity", "primal_residual", "dual_residual", "tik_value", "tik_rho"):
        assert np.isfinite(h[key])
    obj = 0.5 * np.linalg.norm(A(x) - y) ** 2 + 0.5 * alpha * np.linalg.norm(x) ** 2
    assert h["objective"] == pytest.approx(obj, rel=1e-6)


def test_l1_wavelet_reaches_sigpys_objective():
    """Same problem as SigPy's L1WaveletRecon (its LinearLeastSquares with the UnitaryTransform
    prox of the l1 of a wavelet), the wavelet made SigPy's Linop so that both use the same
    orthogonal transform; ReconSolver's objective is at least as low."""
    sp = pytest.importorskip("sigpy")
    from sigpy.mri.linop import Sense as SpSense

    A, y = _sense_problem(np.complex128, seed=3)
    lam = 0.02
    prior = WaveletPrior(lam, SHAPE, wave="db2", level=2, shift=False)

    class W(sp.linop.Linop):
        def __init__(self, adjoint=False):
            self.adj = adjoint
            super().__init__(SHAPE, SHAPE)

        def _apply(self, x):
            if self.adj:
                return prior._inv(x)
            return prior._fwd(x)

        def _adjoint_linop(self):
            return W(not self.adj)

    Wl = W()
    prior._fwd(np.zeros(SHAPE))  # sets the coefficient layout
    A_sp = SpSense(A.maps, weights=A.mask)
    app = sp.app.LinearLeastSquares(A_sp, y, proxg=sp.prox.UnitaryTransform(sp.prox.L1Reg(SHAPE, lam), Wl),
                                    max_iter=400, show_pbar=False)
    x_sp = app.run()

    def objective(x):
        return 0.5 * np.linalg.norm(A(x) - y) ** 2 + prior.value(x)

    solver = ReconSolver(A, y, [prior], rho=0.05, max_iter=400, tol=0, cg_iter=5)
    x = solver.run()
    assert objective(x) <= objective(x_sp) * (1 + 1e-4), (objective(x), objective(x_sp))
    assert solver.history[-1]["objective"] == pytest.approx(objective(x), rel=1e-6)


class Exploding(Prior):
    name = "boom"

    def prox(self, v, step):
        return v * 1e4

    def value(self, x):
        return 0.0


def test_divergence_guard_names_the_parameter():
    A, y = _sense_problem()
    solver = ReconSolver(A, y, [Exploding()], max_iter=20, tol=0, hint="lower boom")
    with pytest.raises(DivergenceError, match="lower boom"):
        solver.run()


def test_callback_stops_and_bad_arguments_are_rejected():
    A, y = _sense_problem()
    solver = ReconSolver(A, y, Tikhonov(0.1), max_iter=50, tol=0, callback=lambda rec, x: rec["iter"] >= 2)
    solver.run()
    assert len(solver.history) == 3
    for kw, match in (({"rho": -1}, "rho"), ({"rho": [1, 2]}, "one per prior"), ({"max_iter": 0}, "max_iter"),
                      ({"cg_iter": 1.5}, "cg_iter")):
        with pytest.raises(ValueError, match=match):
            ReconSolver(A, y, [Tikhonov(0.1)], **kw)


def test_numpy_scalars_are_numbers_and_tol_none_is_named():
    """rho / max_iter as NumPy scalars (what arithmetic on NumPy arrays gives) are accepted;
    bool and non-integral floats are still refused, and tol=None is named."""
    A, y = _sense_problem()
    for kw in ({"rho": np.float32(0.1)}, {"rho": [np.float32(0.1)]}, {"max_iter": np.int64(5)},
               {"cg_iter": np.int32(2), "init_iter": np.int64(0), "balance_period": np.uint8(2)}):
        solver = ReconSolver(A, y, [Tikhonov(0.1)], tol=0, **kw)
        solver.run()
        assert len(solver.history) == kw.get("max_iter", 100)
        assert solver.rho0 == ([float(np.float32(0.1))] if "rho" in kw else [1.0])
    for kw, match in (({"max_iter": True}, "max_iter"), ({"max_iter": 5.5}, "max_iter"),
                      ({"max_iter": np.float64(5.0)}, "max_iter"), ({"rho": True}, "rho"),
                      ({"rho": np.float32("nan")}, "rho")):
        with pytest.raises(ValueError, match=match):
            ReconSolver(A, y, [Tikhonov(0.1)], **kw)
    with pytest.raises(TypeError, match="tol must be a real number >= 0; got None"):
        ReconSolver(A, y, [Tikhonov(0.1)], tol=None)
    with pytest.raises(ValueError, match="tol"):
        ReconSolver(A, y, [Tikhonov(0.1)], tol=-1e-3)


def test_two_priors_of_one_class_keep_their_own_history_keys():
    """Two priors named alike get ``tik`` and ``tik_2`` keys: both values are recorded, and they
    add up (with the data term) to the recorded objective."""
    A, y = _sense_problem()
    solver = ReconSolver(A, y, [Tikhonov(0.1), Tikhonov(0.5), Tikhonov(1.0)], max_iter=3, tol=0)
    solver.run()
    h = solver.history[-1]
    assert {"tik_value", "tik_2_value", "tik_3_value", "tik_rho", "tik_2_rho", "tik_3_rho"} <= set(h)
    assert h["tik_2_value"] == pytest.approx(5 * h["tik_value"])
    total = h["data_fidelity"] + h["tik_value"] + h["tik_2_value"] + h["tik_3_value"]
    assert h["objective"] == pytest.approx(total)
