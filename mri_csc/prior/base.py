r"""The prior interface every regulariser of :class:`~mri_csc.solvers.ReconSolver` implements.

A prior is a function :math:`R` of the image with

- ``prox(v, step)``: :math:`\operatorname{prox}_{\text{step}\,R}(v) = \arg\min_w R(w) + \|w - v\|^2/(2\,\text{step})`,
  which may be inexact, stateful and warm-started (the CSC prior runs a few coder steps
  from its last state);
- ``value(x)``: :math:`R(x)`, R's contribution to the objective the solver records;
- ``stats()``: a dict of what the history should record for it (ℓ1 of the codes, an
  inner penalty, ...), keys without a prefix (the solver adds the prior's ``name``; a second
  prior of the same name is recorded as ``<name>_2``, a third ``<name>_3``: :func:`history_names`).

A sum of priors (``p + q``) is a :class:`PriorSum`; the solver gives each term its own split
``x = v_i``, so a sum needs no prox of its own.
"""

from __future__ import annotations

__all__ = ["Prior", "PriorSum", "check_step", "history_names"]

import math


def check_step(step) -> float:
    """``step`` as a float > 0, else ``ValueError`` naming it."""
    try:
        s = float(step)
    except (TypeError, ValueError):
        raise TypeError(f"step must be a number > 0; got {step!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"step must be a finite number > 0; got {step!r}")
    return s


def history_names(priors, reserved=()) -> list[str]:
    """One distinct history prefix per prior: its ``name``, with ``_2``, ``_3``, ... on repeats.

    Two priors of one class (two :class:`~mri_csc.prior.functionals.TVPrior` of different
    weights) would otherwise write the same keys, and the history would keep one of the two
    values that the objective sums. ``reserved`` are names already used by the solver's own
    terms; a prior named like one of them is numbered too.
    """
    taken = set(reserved)
    names = []
    for p in priors:
        name, k = p.name, 1
        while name in taken:
            k += 1
            name = f"{p.name}_{k}"
        taken.add(name)
        names.append(name)
    return names


class Prior:
    """Base class: subclasses implement :meth:`prox` and :meth:`value` (and may add :meth:`stats`).

    Attributes
    ----------
    name : str
        Prefix of this prior's keys in the solver history (``"csc"`` gives ``csc_l1``, ...); a
        second prior of the same name in one solver gets ``<name>_2`` (:func:`history_names`).
    exact : bool
        Whether :meth:`prox` is exact (to rounding); an inexact prox (a few inner steps) keeps
        ADMM's fixed point only when its inner state is warm-started.
    """

    name = "prior"
    exact = True

    def prox(self, v, step: float):
        r""":math:`\arg\min_w R(w) + \|w - v\|^2/(2\,\text{step})`."""
        raise NotImplementedError

    def value(self, x) -> float:
        """:math:`R(x)`."""
        raise NotImplementedError

    def stats(self) -> dict:
        """Per-iteration quantities for the history (floats), keys without the name prefix."""
        return {}

    def __add__(self, other):
        if not isinstance(other, (Prior, PriorSum)):
            return NotImplemented
        return PriorSum([self, other])

    __radd__ = __add__


class PriorSum:
    r""":math:`R = \sum_i R_i`: the terms, flattened. :class:`~mri_csc.solvers.ReconSolver` splits
    ``x = v_i`` once per term, so only the terms' proxes are ever needed."""

    def __init__(self, terms):
        flat = []
        for t in terms:
            if isinstance(t, PriorSum):
                flat.extend(t.terms)
            elif isinstance(t, Prior):
                flat.append(t)
            else:
                raise TypeError(f"a sum of priors takes Prior objects; got {type(t).__name__}")
        if not flat:
            raise ValueError("a sum of priors needs at least one term")
        self.terms = flat

    def value(self, x) -> float:
        return sum(t.value(x) for t in self.terms)

    def __add__(self, other):
        if not isinstance(other, (Prior, PriorSum)):
            return NotImplemented
        return PriorSum([self, other])

    __radd__ = __add__

    def __iter__(self):
        return iter(self.terms)

    def __len__(self):
        return len(self.terms)
