"""Solver registry: ``register``, ``make(name)``, ``available()``.

Built-in solvers live in the top-level ``solvers`` package; third-party ones are found through
the ``dtnopt.solvers`` entry-point group (an entry point names a ``Solver`` subclass). Every
base name ``NAME`` also resolves ``NAME-no-cpu`` and ``NAME-no-radio`` (the ablations).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .config import Scenario
from .solver import ABLATIONS, NO_ABLATION, Solver

ENTRY_POINT_GROUP = "dtnopt.solvers"
_REGISTRY: dict[str, type] = {}
_loaded = False


def register(name: str, cls: type | None = None):
    """Register a ``Solver`` subclass under ``name`` (usable as a class decorator)."""

    def add(solver_cls: type) -> type:
        if not isinstance(name, str) or not name or any(name.endswith("-" + a) for a in ABLATIONS):
            raise ValueError(f"solver name must be a non-empty string without an ablation suffix, got {name!r}")
        if not (isinstance(solver_cls, type) and issubclass(solver_cls, Solver)):
            raise TypeError(f"solver {name!r} must be a subclass of dtnopt.Solver, got {solver_cls!r}")
        if _REGISTRY.get(name, solver_cls) is not solver_cls:
            raise ValueError(f"solver name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        solver_cls.name = name
        _REGISTRY[name] = solver_cls
        return solver_cls

    return add if cls is None else add(cls)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("solvers")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        if isinstance(loaded, type) and entry.name not in _REGISTRY:
            register(entry.name, loaded)


def available(ablations: bool = True) -> list[str]:
    """Registered names, base names first, then their ablated variants."""
    _load()
    names = sorted(_REGISTRY)
    if ablations:
        names += [f"{n}-{a}" for n in sorted(_REGISTRY) for a in ABLATIONS]
    return names


def resolve(name: str):
    """(solver class, ablation) for a registered name; unknown names list the known ones."""
    _load()
    base, ablation = name, NO_ABLATION
    for suffix, candidate in ABLATIONS.items():
        if isinstance(name, str) and name.endswith("-" + suffix):
            base, ablation = name[: -len(suffix) - 1], candidate
    if base not in _REGISTRY:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(available())}")
    return _REGISTRY[base], ablation


def make(name: str, scenario: Scenario | None = None, **kwargs) -> Solver:
    """Build the solver ``name`` for ``scenario`` (default scenario if omitted)."""
    cls, ablation = resolve(name)
    return cls(scenario or Scenario(), ablation=ablation, **kwargs)
