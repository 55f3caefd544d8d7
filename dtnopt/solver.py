"""The per-slot P2 solver interface and the ablation mechanism of Sec. V.

A solver only decides: the loop observes, checks, steps and records. Learned solvers add
``fit``, ``save`` and ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .action import Action, equal_shares, max_departure
from .config import Scenario
from .twin import Observation

CPU_BLOCKS = frozenset({"local_cpu", "edge_cpu", "edge_departure"})
RADIO_BLOCKS = frozenset({"bandwidth_share", "power"})


def fixed_allocation(scenario: Scenario, association: np.ndarray) -> Action:
    """The allocation with nothing optimised (the paper's benchmarks): equal bandwidth shares
    and p_max (no radio allocation); full local CPU, equal edge-CPU shares and maximal edge
    departures (no CPU allocation)."""
    share = equal_shares(scenario, association)
    batch, devices = association.shape
    return Action(
        bandwidth_share=share,
        power=np.full((batch, devices), scenario.max_power),
        local_cpu=np.full((batch, devices), scenario.local_cpu),
        edge_cpu=share * scenario.station_cpu[association],
        edge_departure=max_departure(scenario, batch),
    )


@dataclass(frozen=True)
class Ablation:
    """Action blocks held at their un-optimised values of ``fixed_allocation`` (Sec. V, Fig. 4).

    ``no-cpu`` fixes f^l, f^e and Psi_j; ``no-radio`` fixes x and p. Any solver can run under an
    ablation: the loop overwrites the fixed blocks, and a solver that reads ``fixed`` optimises
    only the free ones given them."""

    name: str = ""
    fixed: frozenset = frozenset()

    def apply(self, observation: Observation, action: Action) -> Action:
        if not self.fixed:
            return action
        reference = fixed_allocation(observation.scenario, observation.association)
        values = {name: getattr(reference if name in self.fixed else action, name) for name in _BLOCKS}
        return Action(**values)


def make_config(config_class, hyperparameters: dict, solver_name: str):
    """Build a solver's hyper-parameter dataclass; an unknown name raises a ``ValueError``
    listing the known ones (the dataclass validates the values)."""
    known = sorted(f.name for f in fields(config_class))
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ValueError(f"unknown {solver_name} hyper-parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return config_class(**hyperparameters)


def check_ranges(config, ranges: dict) -> None:
    """Validate hyper-parameters: ``ranges`` maps a field of ``config`` to ``(low, high, kind)``
    with ``kind`` int or float; a ``ValueError`` names the field, its kind and its range."""
    for name, (low, high, kind) in ranges.items():
        value = getattr(config, name)
        numeric = isinstance(value, int) if kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not numeric or not low <= value <= high:  # NaN fails the range
            raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'} "
                             f"in [{low}, {high}], got {value!r}")


def check_flags(config, names) -> None:
    """Validate boolean hyper-parameters: each field of ``config`` in ``names`` must be True or
    False (not 1, not "yes"); a ``ValueError`` names the field."""
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(config, name)!r}")


def check_fit_arguments(episodes, eval_every, eval_seeds) -> None:
    """The budget arguments of a learned solver's ``fit``: integers >= 1 (``eval_every`` may be
    None, the solver's default); a ``ValueError`` names the bad one."""
    for name, value in (("episodes", episodes), ("eval_every", eval_every), ("eval_seeds", eval_seeds)):
        if name == "eval_every" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


_BLOCKS = ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure")
NO_ABLATION = Ablation()
ABLATIONS = {
    "no-cpu": Ablation("no-cpu", CPU_BLOCKS),
    "no-radio": Ablation("no-radio", RADIO_BLOCKS),
}


class Solver:
    """Base class of per-slot P2 solvers.

    Subclasses implement ``decide``; learned ones also ``fit``, ``save`` and ``load``. Construct
    through ``dtnopt.registry.make`` so ablated variants (``NAME-no-cpu``) come for free."""

    name: str = "solver"
    learned: bool = False

    def __init__(self, scenario: Scenario, ablation: Ablation = NO_ABLATION, seed: int = 0):
        self.scenario = scenario
        self.ablation = ablation
        self.seed = seed

    @property
    def label(self) -> str:
        """Registry name including the ablation suffix."""
        return f"{self.name}-{self.ablation.name}" if self.ablation.name else self.name

    def reset(self, seed: int | None = None) -> None:
        """Called at the start of every episode."""

    def decide(self, observation: Observation) -> Action:
        raise NotImplementedError

    def act(self, observation: Observation) -> Action:
        """``decide``, with the ablation's fixed blocks applied."""
        return self.ablation.apply(observation, self.decide(observation))

    def fit(self, **budget):
        """Train (learned solvers). Returns the learning curve as a DataFrame."""
        raise NotImplementedError(f"solver {self.name!r} has nothing to train")

    def save(self, path) -> None:
        raise NotImplementedError(f"solver {self.name!r} has no model to save")

    def load(self, path) -> "Solver":
        raise NotImplementedError(f"solver {self.name!r} has no model to load")
