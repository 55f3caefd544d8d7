"""Solver registry: ``register``, ``make(name)``, ``available()``.

Solvers, the built-in ones of the ``solvers`` package included, are found through the
``dtnopt.solvers`` entry-point group: an entry point names a ``Solver`` subclass
(``a3c = "solvers.a3c:A3CSolver"``). They are loaded once, the first time the registry is asked
for a solver, so importing ``dtnopt`` imports no solver. An entry point that fails to load is
skipped with a warning naming it and the error (entry points failing with one error, such as
the solvers of one module whose optional dependency is missing, share one warning); two solvers
claiming one name are an error naming both.
``register`` adds a class in code. Every base name ``NAME`` also resolves ``NAME-no-cpu`` and
``NAME-no-radio`` (the ablations).
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from .config import Scenario
from .solver import ABLATIONS, NO_ABLATION, Solver

ENTRY_POINT_GROUP = "dtnopt.solvers"
_REGISTRY: dict[str, type] = {}
_loaded = False


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(name: str, cls: type | None = None):
    """Register a ``Solver`` subclass under ``name`` (usable as a class decorator)."""

    def add(solver_cls: type) -> type:
        if not isinstance(name, str) or not name or any(name.endswith("-" + a) for a in ABLATIONS):
            raise ValueError(f"solver name must be a non-empty string without an ablation suffix, got {name!r}")
        if not (isinstance(solver_cls, type) and issubclass(solver_cls, Solver)):
            raise TypeError(f"solver {name!r} must be a subclass of dtnopt.Solver, got {solver_cls!r}")
        if _REGISTRY.get(name, solver_cls) is not solver_cls:
            raise ValueError(f"solver name {name!r} is already registered to {_qualified(_REGISTRY[name])}; "
                             f"cannot register {_qualified(solver_cls)} under it too")
        solver_cls.name = name
        _REGISTRY[name] = solver_cls
        return solver_cls

    return add if cls is None else add(cls)


def _load() -> None:
    """Load every entry point of ``ENTRY_POINT_GROUP`` into the registry, once (again after a
    name clash, so the clash is reported on every use)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: an entry point's module may itself ask the registry
    try:
        _load_entry_points()
    except ValueError:
        _loaded = False
        raise


def _load_entry_points() -> None:
    claimed = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in claimed and claimed[entry.name].value != entry.value:
            raise ValueError(f"solver name {entry.name!r} is claimed by two entry points: "
                             f"{claimed[entry.name].value} and {entry.value}")
        claimed[entry.name] = entry
    failed = {}  # (error type, message) -> entry points: one module's missing dependency is one warning
    for name, entry in claimed.items():
        try:
            loaded = entry.load()
        except Exception as error:  # a plug-in's own fault: it must not take the other solvers down
            failed.setdefault((type(error).__name__, str(error)), []).append(f"{name} = {entry.value}")
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Solver)):
            warnings.warn(f"skipped solver entry point {name} = {entry.value}: it names {loaded!r}, "
                          f"not a subclass of dtnopt.Solver", RuntimeWarning, stacklevel=4)
            continue
        if _REGISTRY.get(name, loaded) is not loaded:
            raise ValueError(f"solver name {name!r} is claimed by entry point {entry.value} and by "
                             f"{_qualified(_REGISTRY[name])}")
        register(name, loaded)
    for (kind, message), entries in failed.items():
        what = f"entry point {entries[0]}: it" if len(entries) == 1 else f"entry points {', '.join(entries)}: they"
        warnings.warn(f"skipped solver {what} failed to load ({kind}: {message})", RuntimeWarning, stacklevel=4)


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
