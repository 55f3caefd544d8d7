"""A batch of independent DTN environments, each the plant, its digital twin and the running
energy efficiency, stepped slot by slot in lockstep (vectorised with numpy over the batch).

``observe -> (solver decides) -> step`` is the slot cycle every user of the model shares: the
Lyapunov loop, the Gymnasium environment and the RL trainers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .action import Action, check_feasible, project
from .config import Scenario
from .lyapunov import RunningEfficiency, p2_cost
from .plant import Plant
from .service import Service
from .twin import DigitalTwin, Observation


@dataclass
class SlotResult:
    """What one slot did, per environment."""

    cost: np.ndarray  # P2 cost (20), (B,)
    service: Service
    observation: Observation  # the twin's state at the start of the slot that was decided
    unstable: np.ndarray  # a queue is above scenario.queue_cap after the slot, (B,)

    def non_finite(self) -> dict:
        """The slot's scored quantities that are NaN or infinite in some environment: name (as
        in the loop's slot table: ``cost``, ``energy_j``, ``served_mbit``) -> the indices of
        those environments. Empty when all are finite, as the model requires: a non-finite
        value would poison every sum and mean of the episode."""
        quantities = {"cost": self.cost, "energy_j": self.service.energy, "served_mbit": self.service.served_total}
        found = {}
        for name, values in quantities.items():
            bad = ~np.isfinite(values)
            if bad.any():
                found[name] = np.flatnonzero(bad)
        return found


class Environments:
    """A batch of ``batch`` independent DTN environments driven slot by slot."""

    def __init__(self, scenario: Scenario, batch: int = 1):
        self.scenario = scenario
        self.plant = Plant(scenario, batch)
        self.twin = DigitalTwin(scenario)
        self.reset(scenario.seed)

    @property
    def batch(self) -> int:
        return self.plant.batch

    @property
    def slot(self) -> int:
        return self.plant.slot

    @property
    def done(self) -> bool:
        return self.plant.slot >= self.scenario.slots

    def reset(self, seed: int | None = None) -> Observation:
        seed = self.scenario.seed if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.plant.reset(seed)
        self.twin.reset(seed)
        self.efficiency = RunningEfficiency(self.scenario, self.batch)
        self.observation = self.twin.observe(self.plant, self.efficiency.eta)
        return self.observation

    def _unstable(self) -> np.ndarray:
        """(B,) a queue of the environment is above ``scenario.queue_cap``."""
        cap, largest = self.scenario.queue_cap, np.maximum.reduce
        local_queue, edge_queue = self.plant.local_queue, self.plant.edge_queue
        # Usually no queue of the whole batch is over: one reduction over all of it says so
        # (per-environment reductions along the short device axis are slower).
        if largest(local_queue, axis=None) <= cap and largest(edge_queue, axis=None) <= cap:
            return np.zeros(self.batch, dtype=bool)
        return (largest(local_queue, axis=1) > cap) | (largest(edge_queue, axis=1) > cap)

    def step(self, action: Action, check: bool = True, who: str = "solver") -> SlotResult:
        """Execute ``action`` (decided on the current observation) on the plant. With ``check``
        an infeasible action raises ``InfeasibleAction``; without, it is projected."""
        sc = self.scenario
        observation = self.observation
        if check:
            check_feasible(sc, action, observation.association, who)
        else:
            action = project(sc, action, observation.association)
        if observation.association is not self.plant.association:
            # Decided on a stale twin: the plant's stations see the shares it really gets.
            action = project(sc, action, self.plant.association)
        service = self.plant.step(action)
        cost = p2_cost(sc, observation, service)
        self.efficiency.update(service.energy, service.served_total)
        unstable = self._unstable()
        self.observation = self.twin.observe(self.plant, self.efficiency.eta)
        return SlotResult(cost=cost, service=service, observation=observation, unstable=unstable)
