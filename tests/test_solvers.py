"""Conjugate gradient: convergence, the returned residual, and the carried-over residual."""

import numpy as np
import pytest

from mri_csc.solvers.cg import conjugate_gradient


@pytest.fixture
def system():
    rng = np.random.default_rng(0)
    n = 40
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    m = a.conj().T @ a + 0.5 * np.eye(n)  # Hermitian positive definite
    b = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    return m, b


def test_cg_converges_to_the_dense_solution(system):
    m, b = system
    x = conjugate_gradient(lambda v: m @ v, b, max_iter=200, tol=1e-12)
    np.testing.assert_allclose(x, np.linalg.solve(m, b), rtol=1e-8, atol=1e-10)


def test_returned_residual_is_b_minus_normal_x(system):
    m, b = system
    x, r = conjugate_gradient(lambda v: m @ v, b, max_iter=7, return_residual=True)
    np.testing.assert_allclose(r, b - m @ x, atol=1e-9 * np.linalg.norm(b))


def test_carried_residual_gives_the_same_iterates(system):
    """Warm start with b changed: passing r' + (b - b') equals recomputing b - N x0."""
    m, b = system
    normal_calls = []

    def normal(v):
        normal_calls.append(1)
        return m @ v

    x1, r1 = conjugate_gradient(normal, b, max_iter=5, return_residual=True)
    b2 = b + 0.1 * np.roll(b, 3)
    fresh = conjugate_gradient(normal, b2, x1, max_iter=5)
    n_before = len(normal_calls)
    carried = conjugate_gradient(normal, b2, x1, max_iter=5, residual=r1 + (b2 - b))
    assert len(normal_calls) - n_before == 5  # one application fewer than the fresh start
    np.testing.assert_allclose(carried, fresh, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="residual must have the shape of b"):
        conjugate_gradient(normal, b2, x1, residual=r1[:-1])
