"""The Lyapunov loop (Algorithm 1): observe -> decide -> check -> step -> record.

Runs any solver for an episode and returns one row per slot plus the episode KPIs. Every
action a solver returns is checked against (14a)-(14e); an infeasible one raises
``InfeasibleAction``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .config import MBIT, Scenario
from .network import Network

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
"""Episode KPIs (MODEL.md 5):

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


def run_episode(solver, scenario: Scenario | None = None, seed: int | None = None, batch: int = 1,
                progress: bool = False) -> Episode:
    """Run ``solver`` for ``scenario.slots`` slots from empty queues, seeded by ``seed``
    (default ``scenario.seed``)."""
    import pandas as pd

    scenario = scenario or solver.scenario
    seed = scenario.seed if seed is None else seed
    network = Network(scenario, batch)
    observation = network.reset(seed)
    solver.reset(seed)
    slots = scenario.slots
    cost, energy, served = (np.zeros((slots, batch)) for _ in range(3))
    local_backlog, edge_backlog, eta = (np.zeros((slots, batch)) for _ in range(3))
    decision = np.zeros(slots)
    unstable = np.zeros(batch, dtype=bool)
    steps = range(slots)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=solver.label, unit="slot", leave=False)
    for t in steps:
        started = time.perf_counter()
        action = solver.act(observation)
        decision[t] = time.perf_counter() - started
        result = network.step(action, check=True, who=f"solver {solver.label!r}")
        cost[t] = result.cost
        energy[t] = result.service.energy
        served[t] = result.service.served_total
        local_backlog[t] = observation.local_queue.sum(axis=1)
        edge_backlog[t] = observation.edge_queue.sum(axis=1)
        eta[t] = observation.eta
        unstable |= result.unstable
        observation = network.observation

    kpis = []
    for b in range(batch):
        total_served = served[:, b].sum() / MBIT
        kpis.append({
            "system_cost": float(cost[:, b].sum()),
            "energy_efficiency_j_per_mbit": float(energy[:, b].sum() / total_served) if total_served > 0 else None,
            "mean_energy_j": float(energy[:, b].mean()),
            "mean_local_backlog_mbit": float(local_backlog[:, b].mean() / MBIT),
            "mean_edge_backlog_mbit": float(edge_backlog[:, b].mean() / MBIT),
            "throughput_mbit": float(total_served / slots),
            "stable": bool(not unstable[b]),
            "decision_ms": float(np.median(decision) * 1e3),
        })
    table = pd.DataFrame({
        "env": np.tile(np.arange(batch), slots),
        "slot": np.repeat(np.arange(slots), batch),
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
