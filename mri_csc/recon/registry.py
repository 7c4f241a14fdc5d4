"""The method registry: one name → one reconstruction function.

A method is a function ``f(problem, *, show_pbar=False, **params) -> (image, history)``
taking a validated, scaled :class:`~mri_csc.recon.problem.ReconProblem`. It
declares its parameter names so that unknown parameters are rejected before
any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Method", "register_method", "get_method", "available_methods"]


@dataclass(frozen=True)
class Method:
    """A registered reconstruction method.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"csc"``.
    func : callable
        ``func(problem, *, show_pbar, **params) -> (image, history)``.
    params : dict
        Accepted parameters and their defaults.
    description : str
        One line for listings.
    gpu : bool
        Whether the method runs on ``device="gpu"``.
    available : callable
        Returns ``None`` when usable here, or a reason string (e.g. a missing binary).
    resolve : callable or None
        ``resolve(problem, params) -> params``: validates the parameters and replaces
        data-dependent defaults (``"auto"``) by the values the method will use, so that a
        result records what actually ran. Must be idempotent. ``None``: kept as given.
    """

    name: str
    func: Callable
    params: dict = field(default_factory=dict)
    description: str = ""
    gpu: bool = True
    available: Callable[[], "str | None"] = lambda: None
    resolve: "Callable[[object, dict], dict] | None" = None

    def check(self, params: dict) -> None:
        """Raise ``ValueError`` for parameters the method does not take, or when it is unavailable here.

        Cheap: callers run it before any heavy work (reading files, starting a cluster).
        """
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for method {self.name!r}; accepted: {sorted(self.params)}"
            )
        reason = self.available()
        if reason:
            raise ValueError(f"method {self.name!r} is not available here: {reason}")


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, func: Callable, params: dict | None = None, description: str = "",
                    gpu: bool = True, available: Callable[[], "str | None"] | None = None,
                    resolve: "Callable[[object, dict], dict] | None" = None) -> Method:
    """Register ``func`` under ``name`` (re-registering a name replaces it); see :class:`Method`."""
    method = Method(name, func, dict(params or {}), description, gpu, available or (lambda: None), resolve)
    _REGISTRY[name] = method
    return method


def get_method(name: str) -> Method:
    """Look a method up by name, with a clear error listing the valid names."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"method must be one of {sorted(_REGISTRY)}; got {name!r}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    """Names of all registered methods."""
    return sorted(_REGISTRY)
