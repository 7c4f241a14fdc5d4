"""The method registry: one name → one reconstruction function, its parameters and their checks.

A method is a function ``f(problem, *, show_pbar=False, **params) -> (image, history[, extras])``
taking a validated, scaled :class:`~mri_csc.recon.problem.ReconProblem`. It declares each
parameter as a :class:`Param` (its default, the one source of the method's defaults, and what
values it accepts); :meth:`Method.check` is the one check of parameter names and values (the
Python API, ``mri-csc recon`` and configs all call it), and :meth:`Method.check_device` the one
place that decides which methods run on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Method", "Param", "register_method", "get_method", "available_methods"]

_KINDS = ("float", "int", "bool", "choice", "callable", "any")


@dataclass(frozen=True)
class Param:
    """One method parameter: its default and the values it accepts.

    Attributes
    ----------
    default : object
    kind : {"float", "int", "bool", "choice", "callable", "any"}
        ``float``: a finite real number (not a bool) within ``[lo, hi]`` (``lo_open``/``hi_open``
        make an end open); ``int``: an integer within the same bounds; ``choice``: one of
        ``choices``; ``callable``: a callable; ``any``: not checked (arrays, paths).
    also : tuple
        Literal values accepted besides (e.g. ``"auto"``, ``None``).
    per_axis : bool
        ``int``/``float`` kinds: a non-empty tuple or list of such values (one per image axis) is
        accepted too; the number of entries is the method's to check against the image.
    """

    default: object
    kind: str = "any"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    also: tuple = ()
    per_axis: bool = False

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"Param kind must be one of {_KINDS}; got {self.kind!r}")

    def expected(self) -> str:
        """What this parameter accepts, in words."""
        if self.kind in ("float", "int"):
            what = "a finite number" if self.kind == "float" else "an integer"
            lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
            hi = "" if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
            rng = " and ".join(t for t in (lo, hi) if t)
            out = f"{what}{' ' + rng if rng else ''}"
        elif self.kind == "bool":
            out = "true or false"
        elif self.kind == "choice":
            out = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "callable":
            out = "a callable"
        else:
            out = "any value"
        if self.per_axis:
            out += ", or one such value per image axis"
        if self.also:
            out += " (or " + ", ".join(repr(a) for a in self.also) + ")"
        return out

    def ok(self, v) -> bool:
        """Whether ``v`` is accepted."""
        if any(v is a or (type(v) is type(a) and v == a) for a in self.also):
            return True
        if self.kind == "any":
            return True
        if self.kind == "callable":
            return callable(v)
        if self.kind == "bool":
            return isinstance(v, (bool, np.bool_))
        if self.kind == "choice":
            return any(v is c or (type(v) is type(c) and v == c) for c in self.choices)
        if self.per_axis and isinstance(v, (tuple, list)):
            return len(v) > 0 and all(self._number_ok(x) for x in v)
        return self._number_ok(v)

    def _number_ok(self, v) -> bool:
        """Whether ``v`` is one number of the ``int``/``float`` kind within the bounds."""
        if isinstance(v, (bool, np.bool_)):
            return False
        if self.kind == "int" and not isinstance(v, (int, np.integer)):
            return False
        if self.kind == "float" and not isinstance(v, (int, float, np.integer, np.floating)):
            return False
        x = float(v)
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        return not (self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)))


@dataclass(frozen=True)
class Method:
    """A registered reconstruction method.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"csc"``.
    func : callable
        ``func(problem, *, show_pbar, **params) -> (image, history[, extras])`` (``extras``: a dict).
    schema : dict
        Parameter name → :class:`Param`.
    description : str
        One line for listings.
    gpu : bool
        Whether the method runs on ``device="gpu"`` (ask :meth:`check_device`).
    available : callable
        Returns ``None`` when usable here, or a reason string (e.g. a missing binary).
    resolve : callable or None
        ``resolve(problem, params) -> params``: replaces data-dependent defaults (``"auto"``) by
        the values the method will use, so that a result records what actually ran. Must be
        idempotent. ``None``: kept as given.
    check_image : callable or None
        ``check_image(params, image_shape, noncartesian)``: raises ``ValueError`` for a value that
        the image refuses (e.g. a per-axis value with the wrong number of axes); cheap, so that
        callers can run it as soon as they know the image's shape, before estimating coil maps.
    """

    name: str
    func: Callable
    schema: dict = field(default_factory=dict)
    description: str = ""
    gpu: bool = True
    available: Callable[[], "str | None"] = lambda: None
    resolve: "Callable[[object, dict], dict] | None" = None
    check_image: "Callable[[dict, tuple, bool], None] | None" = None

    @property
    def params(self) -> dict:
        """Accepted parameters and their defaults."""
        return {k: p.default for k, p in self.schema.items()}

    def check(self, params: dict) -> None:
        """Raise ``ValueError`` for a parameter the method does not take or a value it does not
        accept (naming the method, the parameter, the value and what is expected), or when the
        method is unavailable here. Cheap: callers run it before any heavy work."""
        unknown = sorted(set(params) - set(self.schema))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for method {self.name!r}; "
                             f"accepted: {sorted(self.schema)}")
        for k, v in params.items():
            spec = self.schema[k]
            if not spec.ok(v):
                shown = f"array of shape {tuple(v.shape)}" if hasattr(v, "shape") else repr(v)
                raise ValueError(f"method {self.name!r}: parameter {k} = {shown} is invalid; expected "
                                 f"{spec.expected()}")
        reason = self.available()
        if reason:
            raise ValueError(f"method {self.name!r} is not available here: {reason}")

    def check_for_image(self, params: dict, image_shape, noncartesian: bool = False) -> None:
        """Raise ``ValueError`` when the checked ``params`` do not fit an image of ``image_shape``
        (see ``check_image``); a no-op for a method without that hook."""
        if self.check_image is not None:
            self.check_image(params, tuple(int(n) for n in image_shape), bool(noncartesian))

    def check_device(self, device) -> None:
        """Raise ``ValueError`` when ``device`` (a :class:`~mri_csc.backend.Device` or a string such
        as ``"gpu:0"``) is a GPU and the method runs on the CPU only."""
        kind = getattr(device, "kind", None) or str(device).split(":")[0].lower()
        if kind in ("gpu", "cuda") and not self.gpu:
            raise ValueError(f"method {self.name!r} runs on the CPU only; got device={str(device)!r}")


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, func: Callable, params: dict | None = None, description: str = "",
                    gpu: bool = True, available: Callable[[], "str | None"] | None = None,
                    resolve: "Callable[[object, dict], dict] | None" = None,
                    check_image: "Callable[[dict, tuple, bool], None] | None" = None) -> Method:
    """Register ``func`` under ``name`` (re-registering a name replaces it); see :class:`Method`.

    ``params`` maps names to :class:`Param` (a plain value is a default accepted unchecked).
    """
    schema = {k: (v if isinstance(v, Param) else Param(v)) for k, v in (params or {}).items()}
    method = Method(name, func, schema, description, gpu, available or (lambda: None), resolve, check_image)
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
