r"""Residual balancing of an ADMM penalty: the one ρ rule of the sparse coder and the dictionary update.

Boyd et al. (2010, §3.4.1) with SPORCO's refinements (Wohlberg, 2017): every ``period``
iterations, with :math:`r` and :math:`s` the (normalised) primal and dual residuals, ξ the
target ratio, μ the tolerated ratio and τ the largest factor,

.. math::
    \rho \leftarrow \begin{cases} \rho\,m & r > \xi\mu\, s \\ \rho / m & s > (\mu/\xi)\, r \\
    \rho & \text{otherwise,} \end{cases}
    \qquad m = \begin{cases} \min\big(\tau, \sqrt{\max(r/(\xi s),\ \xi s / r)}\big) &
    \text{auto-scaling} \\ \tau & \text{otherwise,} \end{cases}

and the scaled dual is divided by the same factor. :meth:`ResidualBalance.convbpdn` gives
SPORCO ``ConvBPDN``'s constants (:math:`\xi = 1 + 18.3^{\log_{10}\lambda + 1}`, μ = 1.2,
τ = 1000, auto-scaling), :meth:`ResidualBalance.dictionary_learning` those SPORCO's
``ConvBPDNDictLearn`` sets for both of its ADMM steps (period 10, ξ = 1, μ = 10, τ = 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ResidualBalance"]


@dataclass(frozen=True)
class ResidualBalance:
    """The rule's constants; :meth:`factor` is the multiplier of ρ for residuals ``(r, s)``."""

    period: int = 1
    ratio: float = 1.2
    scaling: float = 1000.0
    target: float = 1.0
    auto_scaling: bool = True

    def __post_init__(self):
        if isinstance(self.period, bool) or not isinstance(self.period, int) or self.period < 1:
            raise ValueError(f"period must be an integer >= 1; got {self.period!r}")
        for name in ("ratio", "scaling", "target"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")

    @classmethod
    def convbpdn(cls, lam: float, period: int = 1) -> ResidualBalance:
        """SPORCO ``ConvBPDN``'s rule for ℓ1 weight ``lam``."""
        return cls(period=int(period), target=1.0 + 18.3 ** (math.log10(lam) + 1.0) if lam > 0 else 1.0)

    @classmethod
    def dictionary_learning(cls) -> ResidualBalance:
        """The rule SPORCO's ``ConvBPDNDictLearn`` gives both its ADMM steps."""
        return cls(period=10, ratio=10.0, scaling=2.0, target=1.0, auto_scaling=False)

    def due(self, n_iter: int) -> bool:
        """Whether iteration ``n_iter`` (counted from 1) rebalances."""
        return n_iter % self.period == 0

    def factor(self, r: float, s: float) -> float:
        """The factor ρ is multiplied by (the scaled dual divided by), 1.0 for no change."""
        tau, mu, xi = self.scaling, self.ratio, self.target
        if not self.auto_scaling or s == 0.0 or r == 0.0 or not math.isfinite(s):
            mlt = tau
        else:
            mlt = min(tau, math.sqrt(r / (s * xi) if r > s * xi else (s * xi) / r))
        if r > xi * mu * s:
            return mlt
        if s > (mu / xi) * r:
            return 1.0 / mlt
        return 1.0
