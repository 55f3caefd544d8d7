"""The Lyapunov loop (Algorithm 1): observe -> decide -> check -> step -> record.

``slots`` is the loop itself, slot by slot; ``run_episode`` records a whole episode from it.
Every action a solver returns is checked against (14a)-(14e); an infeasible one raises
``InfeasibleAction``. A slot whose cost, energy or served bits is NaN or infinite raises
``NonFiniteSlot``: the model's quantities are finite, so such a value is a solver's or the
model's fault, and summed into the episode's KPIs it would hide in a NaN mean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .action import Action
from .config import MBIT, Scenario
from .environments import Environments, SlotResult
from .twin import Observation

KPI_NAMES = (
    "system_cost",
    "energy_efficiency_j_per_mbit",
    "mean_energy_j",
    "mean_local_backlog_mbit",
    "mean_edge_backlog_mbit",
    "throughput_mbit",
    "stable",
    "decision_ms",
)
"""Episode KPIs (docs/model.md section 5):

- ``system_cost``: sum over slots of the P2 cost (20), the paper's figures' metric;
- ``energy_efficiency_j_per_mbit``: eta_EE (13), total energy over total served bits;
- ``mean_energy_j``: mean E_tol (12) per slot;
- ``mean_local_backlog_mbit`` / ``mean_edge_backlog_mbit``: mean over slots of the summed
  local (edge) queues at the start of a slot, the quantities of (7a) / (7b);
- ``throughput_mbit``: mean bits served per slot, sum over devices;
- ``stable``: no queue passed ``Scenario.queue_cap``;
- ``decision_ms``: median solver time per slot (for the whole batch).
"""


@dataclass
class Episode:
    """Per-slot records (a long table: one row per environment x slot) and per-environment
    KPIs (one dict per environment of the batch)."""

    slots: "pandas.DataFrame"  # noqa: F821
    kpis: list

    @property
    def kpi(self) -> dict:
        """The KPIs of a batch-1 episode."""
        return self.kpis[0]


class NonFiniteSlot(FloatingPointError):
    """A slot's cost, energy or served bits is NaN or infinite."""

    def __init__(self, who: str, slot: int, non_finite: dict):
        self.who, self.slot, self.non_finite = who, slot, non_finite
        quantities = ", ".join(f"{name} (environment {', '.join(map(str, environments))})"
                               for name, environments in non_finite.items())
        super().__init__(f"{who} at slot {slot}: non-finite {quantities}; the cost, energy and served "
                         f"bits of a slot must be finite (not NaN, not infinite)")


@dataclass(frozen=True)
class Slot:
    """One slot of the loop, as ``slots`` yields it."""

    index: int  # t, from 0
    observation: Observation  # the twin's state s(t) the solver decided on
    action: Action  # what the solver returned (before any projection when ``check`` is off)
    decision_s: float  # wall-clock seconds of ``solver.act``
    decision_cpu_s: float  # CPU seconds of this process in ``solver.act``
    result: SlotResult  # what the slot did: P2 cost (20), service, instability
    next_observation: Observation  # the twin's state s(t+1)


def slots(solver, scenario: Scenario | None = None, seed: int | None = None, batch: int = 1, *,
          check: bool = True) -> Iterator[Slot]:
    """The loop of ``solver`` over an episode of ``scenario.slots`` slots from empty queues,
    seeded by ``seed`` (default ``scenario.seed``), on ``batch`` environments: per slot, observe,
    let the solver decide (timed), check the action (with ``check``; else project it onto
    (14a)-(14e)), step the environments and check that the slot's cost, energy and served bits are
    finite (``NonFiniteSlot``). The environments are built and reset and the solver reset when this is
    called, so a bad seed fails here; the slots run as they are iterated (stop early by
    breaking off)."""
    scenario = scenario or solver.scenario
    seed = scenario.seed if seed is None else seed
    environments = Environments(scenario, batch)
    observation = environments.reset(seed)
    solver.reset(seed)
    return _slots(solver, environments, observation, check)


def _slots(solver, environments: Environments, observation: Observation, check: bool) -> Iterator[Slot]:
    who = f"solver {solver.label!r}"
    for index in range(environments.scenario.slots):
        started, started_cpu = time.perf_counter(), time.process_time()
        action = solver.act(observation)
        decision_s, decision_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        result = environments.step(action, check=check, who=who)
        non_finite = result.non_finite()
        if non_finite:
            raise NonFiniteSlot(who, index, non_finite)
        yield Slot(index, observation, action, decision_s, decision_cpu_s, result, environments.observation)
        observation = environments.observation


def episode_kpis(cost, energy, served, local_backlog, edge_backlog, unstable, decision_s) -> list:
    """The KPIs (``KPI_NAMES``) of each environment of a batch from its per-slot records: (T, B)
    arrays of the P2 cost, energy (J), served bits and the summed local and edge queues (bits) at
    the start of each slot, (B,) whether a queue passed the cap, and (T,) decision times (s)."""
    slot_count = len(cost)
    kpis = []
    for b in range(cost.shape[1]):
        total_served = served[:, b].sum() / MBIT
        kpis.append({
            "system_cost": float(cost[:, b].sum()),
            "energy_efficiency_j_per_mbit": float(energy[:, b].sum() / total_served) if total_served > 0 else None,
            "mean_energy_j": float(energy[:, b].mean()),
            "mean_local_backlog_mbit": float(local_backlog[:, b].mean() / MBIT),
            "mean_edge_backlog_mbit": float(edge_backlog[:, b].mean() / MBIT),
            "throughput_mbit": float(total_served / slot_count),
            "stable": bool(not unstable[b]),
            "decision_ms": float(np.median(decision_s) * 1e3),
        })
    return kpis


def run_episode(solver, scenario: Scenario | None = None, seed: int | None = None, batch: int = 1,
                progress: bool = False) -> Episode:
    """Run ``solver`` for ``scenario.slots`` slots from empty queues, seeded by ``seed``
    (default ``scenario.seed``): the records of ``slots``."""
    import pandas as pd

    scenario = scenario or solver.scenario
    loop = slots(solver, scenario, seed, batch)
    slot_count = scenario.slots
    cost, energy, served = (np.zeros((slot_count, batch)) for _ in range(3))
    local_backlog, edge_backlog, eta = (np.zeros((slot_count, batch)) for _ in range(3))
    decision = np.zeros(slot_count)
    unstable = np.zeros(batch, dtype=bool)
    if progress:
        from tqdm import tqdm

        loop = tqdm(loop, total=slot_count, desc=solver.label, unit="slot", leave=False)
    for slot in loop:
        t, observation = slot.index, slot.observation
        decision[t] = slot.decision_s
        cost[t] = slot.result.cost
        energy[t] = slot.result.service.energy
        served[t] = slot.result.service.served_total
        local_backlog[t] = observation.local_queue.sum(axis=1)
        edge_backlog[t] = observation.edge_queue.sum(axis=1)
        eta[t] = observation.eta
        unstable |= slot.result.unstable

    kpis = episode_kpis(cost, energy, served, local_backlog, edge_backlog, unstable, decision)
    table = pd.DataFrame({
        "env": np.tile(np.arange(batch), slot_count),
        "slot": np.repeat(np.arange(slot_count), batch),
        "cost": cost.ravel(),
        "energy_j": energy.ravel(),
        "served_mbit": served.ravel() / MBIT,
        "local_backlog_mbit": local_backlog.ravel() / MBIT,
        "edge_backlog_mbit": edge_backlog.ravel() / MBIT,
        "eta_j_per_mbit": eta.ravel() * MBIT,
        "decision_ms": np.repeat(decision * 1e3, batch),
    })
    return Episode(slots=table, kpis=kpis)


HELD_OUT_SEED_BASE = 1_000_000
"""Evaluation seeds are ``HELD_OUT_SEED_BASE + k``; training never uses seeds this large."""


def held_out_seeds(count: int) -> list[int]:
    """The fixed test seeds of studies and of the README's tables (training curves use
    ``validation_seeds``)."""
    return _seed_list(HELD_OUT_SEED_BASE, count)


VALIDATION_SEED_BASE = 2_000_000
"""Seeds of the episodes learned solvers evaluate on while training (learning curves, model
selection): ``VALIDATION_SEED_BASE + k``, disjoint from training seeds (below
``HELD_OUT_SEED_BASE``) and from the test seeds ``held_out_seeds``, so selecting the best
weights never looks at a test episode."""


def validation_seeds(count: int) -> list[int]:
    """The fixed validation seeds of learning curves and model selection."""
    return _seed_list(VALIDATION_SEED_BASE, count)


def _seed_list(base: int, count: int) -> list[int]:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an integer >= 0, got {count!r}")
    return [base + k for k in range(count)]


def run_seeds(solver, scenario: Scenario | None = None, seeds=(0,)) -> "pandas.DataFrame":  # noqa: F821
    """KPIs of one batch-1 episode per seed, one row per seed (columns ``seed`` + KPI_NAMES)."""
    import pandas as pd

    rows = []
    for seed in seeds:
        rows.append({"seed": seed, **run_episode(solver, scenario, seed=seed).kpi})
    return pd.DataFrame(rows)


def mean_kpis(solver, scenario: Scenario | None = None, seeds=(0,)) -> dict:
    """Each KPI's mean over ``run_seeds`` (``stable``: the share of stable episodes), as floats:
    a learning-curve point or a reference level."""
    kpis = run_seeds(solver, scenario, seeds)
    return {name: float(kpis[name].astype(float).mean()) for name in KPI_NAMES}
