r"""A small linear-operator abstraction.

A :class:`LinearOperator` maps arrays of ``ishape`` to arrays of ``oshape``.
It has an adjoint (``op.H``), a normal operator (``op.N`` = :math:`A^H A`),
composes with ``@`` (``A @ B`` applies ``B`` first) and is applied by calling
it (``A(x)``). Unlike SigPy, ``*`` is not overloaded: scaling is
:class:`Scaled`, composition ``@``, application a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..backend import get_xp, to_device

__all__ = ["LinearOperator", "FunctionOperator", "Compose", "Scaled", "Identity"]


def _shape(s: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(n) for n in s)


class LinearOperator:
    """Base class: subclasses implement :meth:`_apply` and :meth:`_adjoint`.

    Parameters
    ----------
    ishape, oshape : sequence of int
        Shapes of the input and output arrays.
    """

    def __init__(self, ishape: Sequence[int], oshape: Sequence[int]):
        self.ishape = _shape(ishape)
        self.oshape = _shape(oshape)

    # -- to implement -------------------------------------------------------------
    def _apply(self, x):
        raise NotImplementedError

    def _adjoint(self, y):
        raise NotImplementedError

    def _normal(self, x):
        return self._adjoint(self._apply(x))

    # -- public ---------------------------------------------------------------------
    def __call__(self, x):
        if tuple(x.shape) != self.ishape:
            raise ValueError(f"{type(self).__name__} expects input of shape {self.ishape}; got {tuple(x.shape)}")
        return self._apply(x)

    def adjoint(self, y):
        """Apply :math:`A^H`."""
        if tuple(y.shape) != self.oshape:
            raise ValueError(
                f"{type(self).__name__}.H expects input of shape {self.oshape}; got {tuple(y.shape)}"
            )
        return self._adjoint(y)

    def normal(self, x):
        """Apply :math:`A^H A` (subclasses may fuse the two passes)."""
        if tuple(x.shape) != self.ishape:
            raise ValueError(f"{type(self).__name__}.N expects input of shape {self.ishape}; got {tuple(x.shape)}")
        return self._normal(x)

    @property
    def H(self) -> "LinearOperator":
        """The adjoint operator."""
        return _Adjoint(self)

    @property
    def N(self) -> "LinearOperator":
        """The normal operator :math:`A^H A`."""
        return _Normal(self)

    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Compose(self, other)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ishape} -> {self.oshape}>"


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        super().__init__(op.oshape, op.ishape)
        self.op = op

    def _apply(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._apply(y)

    @property
    def H(self) -> LinearOperator:
        return self.op


class _Normal(LinearOperator):
    def __init__(self, op: LinearOperator):
        super().__init__(op.ishape, op.ishape)
        self.op = op

    def _apply(self, x):
        return self.op._normal(x)

    _adjoint = _apply


class Compose(LinearOperator):
    """``A @ B``: apply ``B`` then ``A``."""

    def __init__(self, a: LinearOperator, b: LinearOperator):
        if a.ishape != b.oshape:
            raise ValueError(f"cannot compose {a!r} @ {b!r}: {a.ishape} != {b.oshape}")
        super().__init__(b.ishape, a.oshape)
        self.a, self.b = a, b

    def _apply(self, x):
        return self.a._apply(self.b._apply(x))

    def _adjoint(self, y):
        return self.b._adjoint(self.a._adjoint(y))


class Scaled(LinearOperator):
    """``alpha * A`` for a scalar ``alpha``."""

    def __init__(self, op: LinearOperator, alpha: complex):
        super().__init__(op.ishape, op.oshape)
        self.op, self.alpha = op, alpha

    def _apply(self, x):
        return self.op._apply(x) * self.alpha

    def _adjoint(self, y):
        return self.op._adjoint(y) * (self.alpha.conjugate() if hasattr(self.alpha, "conjugate") else self.alpha)


class Identity(LinearOperator):
    """The identity on arrays of ``shape``."""

    def __init__(self, shape: Sequence[int]):
        super().__init__(shape, shape)

    def _apply(self, x):
        return x

    _adjoint = _apply


class FunctionOperator(LinearOperator):
    """Wrap a pair of functions ``(apply, adjoint)`` as an operator."""

    def __init__(self, ishape, oshape, apply: Callable, adjoint: Callable, name: str = "FunctionOperator"):
        super().__init__(ishape, oshape)
        self._f, self._fh, self.name = apply, adjoint, name

    def _apply(self, x):
        return self._f(x)

    def _adjoint(self, y):
        return self._fh(y)


def dot_test(op: LinearOperator, rng=None, dtype="complex64", device="cpu") -> float:
    r"""Relative error of the dot-product test :math:`|\langle Ax,y\rangle-\langle x,A^Hy\rangle|/(\|Ax\|\|y\|)`.

    Random vectors are drawn on the CPU from ``rng`` (a ``numpy.random.Generator``
    or seed) and moved to ``device``, where ``op`` must live.
    """
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(rng)
    x = (rng.standard_normal(op.ishape) + 1j * rng.standard_normal(op.ishape)).astype(dtype)
    y = (rng.standard_normal(op.oshape) + 1j * rng.standard_normal(op.oshape)).astype(dtype)
    x, y = to_device(x, device), to_device(y, device)
    ax = op(x)
    ahy = op.H(y)
    xp = get_xp(ax)
    lhs = xp.vdot(ax, y)
    rhs = xp.vdot(x, ahy)
    return float(abs(lhs - rhs) / (xp.linalg.norm(ax) * xp.linalg.norm(y)))
