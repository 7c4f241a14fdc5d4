"""Iterative solvers: CG, the ADMM reconstruction solver, the CSC block solver, histories."""

from .admm import ReconSolver
from .cg import conjugate_gradient
from .guard import DivergenceError
from .history import History

__all__ = ["conjugate_gradient", "DivergenceError", "History", "ReconSolver"]
