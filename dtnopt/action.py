"""The per-slot action a(t) = [x, p, Psi_j, f^l, f^e] (eq. 21), its feasible set (14a)-(14e),
one projection onto that set and one feasibility check, shared by every solver.

Arrays are batched: per-device blocks are (B, N), the edge departures (B, M+1).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .config import Scenario
from .topology import station_count, station_sum

FEASIBILITY_TOL = 1e-6
"""Relative slack allowed by the feasibility check (solvers' floating-point noise)."""


class InfeasibleAction(ValueError):
    """A solver returned an action outside (14a)-(14e)."""


@dataclass
class Action:
    """One slot's decisions for a batch of environments (SI units)."""

    bandwidth_share: np.ndarray  # x_i, share of its station's band, (B, N) (14a)
    power: np.ndarray  # p_i, W, (B, N) (14b)
    local_cpu: np.ndarray  # f^l_i, cycles/s, (B, N) (14c)
    edge_cpu: np.ndarray  # f^e_ij, cycles/s its station gives it, (B, N) (14d)
    edge_departure: np.ndarray  # Psi_j, bits leaving edge buffer j, (B, M+1) (14e)

    @property
    def batch(self) -> int:
        return self.power.shape[0]

    def copy(self) -> "Action":
        return Action(*(np.array(getattr(self, f.name), dtype=float) for f in fields(self)))

    def select(self, index) -> "Action":
        """The sub-batch ``index`` (an int keeps a batch axis of one)."""
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1)
        return Action(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def stack(actions) -> "Action":
        return Action(*(np.concatenate([getattr(a, f.name) for a in actions]) for f in fields(Action)))


ACTION_BLOCKS = tuple(f.name for f in fields(Action))


def equal_shares(scenario: Scenario, association: np.ndarray) -> np.ndarray:
    """(B, N) share 1 / n_j of its station j for every device."""
    counts = station_count(association, scenario.stations)
    return 1.0 / np.take_along_axis(counts, association, axis=1)


def max_departure(scenario: Scenario, batch: int) -> np.ndarray:
    """(B, M+1) largest edge departures f^e_j tau / c (14e)."""
    capacity = scenario.station_cpu * scenario.tau / scenario.cycles_per_bit
    return np.broadcast_to(capacity, (batch, scenario.stations)).copy()


def _cap_station_sums(values: np.ndarray, association: np.ndarray, capacity: np.ndarray, stations: int):
    """Scale each station's allocations down so they sum to at most its capacity."""
    totals = station_sum(values, association, stations)
    capacity = np.broadcast_to(capacity, totals.shape)
    scale = np.divide(capacity, totals, out=np.ones_like(totals), where=totals > capacity)
    return values * np.take_along_axis(scale, association, axis=1)


def project(scenario: Scenario, action: Action, association: np.ndarray) -> Action:
    """Map any action onto (14a)-(14e): clip every block to its bounds (NaN counts as 0) and
    scale a station's bandwidth shares and edge-CPU allocations down, in proportion, where they
    sum above its capacity. Feasible actions are returned unchanged (the map is idempotent)."""
    batch = action.power.shape[0]
    stations = scenario.stations

    def clip(values, upper):
        return np.clip(np.nan_to_num(np.asarray(values, dtype=float), nan=0.0), 0.0, upper)

    share = clip(action.bandwidth_share, 1.0)
    edge_cpu = clip(action.edge_cpu, np.inf)
    edge_cpu = np.minimum(edge_cpu, scenario.station_cpu[association])
    return Action(
        bandwidth_share=_cap_station_sums(share, association, np.ones((batch, stations)), stations),
        power=clip(action.power, scenario.max_power),
        local_cpu=clip(action.local_cpu, scenario.local_cpu),
        edge_cpu=_cap_station_sums(edge_cpu, association, scenario.station_cpu[None, :], stations),
        edge_departure=clip(action.edge_departure, max_departure(scenario, batch)),
    )


def violations(scenario: Scenario, action: Action, association: np.ndarray, tol: float = FEASIBILITY_TOL):
    """Human-readable list of the constraints (14a)-(14e) the action breaks (empty if feasible)."""
    batch, devices = association.shape
    stations = scenario.stations
    problems = []
    expected = {"bandwidth_share": (batch, devices), "power": (batch, devices), "local_cpu": (batch, devices),
                "edge_cpu": (batch, devices), "edge_departure": (batch, stations)}
    for name, shape in expected.items():
        value = np.asarray(getattr(action, name))
        if value.shape != shape:
            return [f"{name} has shape {value.shape}, expected {shape}"]
        if not np.all(np.isfinite(value)):
            problems.append(f"{name} has non-finite entries")
        elif np.any(value < 0):
            problems.append(f"{name} has negative entries (min {value.min():.3g})")
    if problems:
        return problems

    def over(name, value, upper, constraint):
        excess = value - upper * (1.0 + tol)
        if np.any(excess > 0):
            problems.append(f"{name} breaks {constraint}: exceeds its bound by up to {excess.max():.3g}")

    over("bandwidth_share", station_sum(action.bandwidth_share, association, stations), 1.0,
         "(14a) sum of shares at a station <= 1")
    over("power", action.power, scenario.max_power, f"(14b) 0 <= p <= p_max = {scenario.max_power} W")
    over("local_cpu", action.local_cpu, scenario.local_cpu, f"(14c) 0 <= f^l <= {scenario.local_cpu:g} cycles/s")
    over("edge_cpu", station_sum(action.edge_cpu, association, stations), scenario.station_cpu[None, :],
         "(14d) sum of edge CPU at a station <= its capacity")
    over("edge_departure", action.edge_departure, max_departure(scenario, batch),
         "(14e) Psi_j c <= f^e_j tau")
    return problems


def check_feasible(scenario: Scenario, action: Action, association: np.ndarray, who: str = "solver") -> None:
    """Raise ``InfeasibleAction`` naming every broken constraint."""
    problems = violations(scenario, action, association)
    if problems:
        raise InfeasibleAction(f"{who} returned an infeasible action: " + "; ".join(problems))


def is_feasible(scenario: Scenario, action: Action, association: np.ndarray) -> bool:
    return not violations(scenario, action, association)
