"""Iterative solvers: CG, the ADMM reconstruction solver, histories."""

from .cg import conjugate_gradient
from .history import History

__all__ = ["conjugate_gradient", "History"]
