"""The per-slot action a(t) = [x, p, Psi_j, f^l, f^e] (eq. 21), its feasible set (14a)-(14e),
one projection onto that set and one feasibility check, shared by every solver.

Arrays are batched: per-device blocks are (B, N), the edge departures (B, M+1).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .config import Scenario
from .topology import at_station, station_count, station_index, station_sum

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
    return 1.0 / at_station(station_count(association, scenario.stations), association)


def _departure_capacity(scenario: Scenario) -> np.ndarray:
    """(M+1,) f^e_j tau / c, the most bits edge buffer j can release in a slot (14e)."""
    return scenario.station_cpu * (scenario.tau / scenario.cycles_per_bit)


def max_departure(scenario: Scenario, batch: int) -> np.ndarray:
    """(B, M+1) largest edge departures f^e_j tau / c (14e)."""
    return _departure_capacity(scenario)[None, :].repeat(batch, axis=0)


def _cap_station_sums(values: np.ndarray, index: np.ndarray, capacity, stations: int):
    """Scale each station's allocations down so they sum to at most its capacity (a scalar or
    an (M+1,) array). ``index`` is ``station_index(association, stations)``."""
    batch = index.shape[0]
    totals = np.bincount(index.ravel(), weights=values.ravel(), minlength=batch * stations).reshape(batch, stations)
    over = totals > capacity
    if not np.logical_or.reduce(over, axis=None):
        return values
    scale = np.divide(capacity, totals, out=np.ones_like(totals), where=over)
    return values * scale.ravel()[index]


def _clip(values, upper) -> np.ndarray:
    """Clip to [0, upper], NaN counting as 0 (``fmax`` ignores NaN)."""
    return np.minimum(np.fmax(values, 0.0), upper)


def project(scenario: Scenario, action: Action, association: np.ndarray) -> Action:
    """Map any action onto (14a)-(14e): clip every block to its bounds (NaN counts as 0) and
    scale a station's bandwidth shares and edge-CPU allocations down, in proportion, where they
    sum above its capacity. Feasible actions are returned unchanged up to rounding (the map is
    idempotent); the result never shares memory with ``action``."""
    stations = scenario.stations
    station_cpu = scenario.station_cpu
    index = station_index(association, stations)
    edge_cpu = _clip(action.edge_cpu, station_cpu[association])
    return Action(
        bandwidth_share=_cap_station_sums(_clip(action.bandwidth_share, 1.0), index, 1.0, stations),
        power=_clip(action.power, scenario.max_power),
        local_cpu=_clip(action.local_cpu, scenario.local_cpu),
        edge_cpu=_cap_station_sums(edge_cpu, index, station_cpu, stations),
        edge_departure=_clip(action.edge_departure, _departure_capacity(scenario)),
    )


def violations(scenario: Scenario, action: Action, association: np.ndarray, tol: float = FEASIBILITY_TOL):
    """Human-readable list of the constraints (14a)-(14e) the action breaks (empty if feasible)."""
    batch, devices = association.shape
    stations = scenario.stations
    per_device, per_station = (batch, devices), (batch, stations)
    shapes = {"bandwidth_share": per_device, "power": per_device, "local_cpu": per_device, "edge_cpu": per_device,
              "edge_departure": per_station}
    blocks = {}
    for name, shape in shapes.items():
        value = np.asarray(getattr(action, name))
        if value.shape != shape:
            return [f"{name} has shape {value.shape}, expected {shape}"]
        if value.dtype.kind not in "biuf":
            return [f"{name} has dtype {value.dtype}, expected real numbers"]
        blocks[name] = value

    problems = []
    for name, value in blocks.items():
        # min >= 0 fails for NaN too; max < inf rules out +inf. Two reductions on the hot path.
        if not (np.minimum.reduce(value, axis=None) >= 0 and np.maximum.reduce(value, axis=None) < np.inf):
            if not np.all(np.isfinite(value)):
                problems.append(f"{name} has non-finite entries")
            else:
                problems.append(f"{name} has negative entries (min {value.min():.3g})")
    if problems:
        return problems

    def over(name, value, upper, constraint):
        excess = value - upper * (1.0 + tol)
        if np.maximum.reduce(excess, axis=None) > 0:
            problems.append(f"{name} breaks {constraint}: exceeds its bound by up to {excess.max():.3g}")

    over("bandwidth_share", station_sum(blocks["bandwidth_share"], association, stations), 1.0,
         "(14a) sum of shares at a station <= 1")
    over("power", blocks["power"], scenario.max_power, f"(14b) 0 <= p <= p_max = {scenario.max_power} W")
    over("local_cpu", blocks["local_cpu"], scenario.local_cpu,
         f"(14c) 0 <= f^l <= {scenario.local_cpu:g} cycles/s")
    over("edge_cpu", station_sum(blocks["edge_cpu"], association, stations), scenario.station_cpu,
         "(14d) sum of edge CPU at a station <= its capacity")
    over("edge_departure", blocks["edge_departure"], _departure_capacity(scenario),
         "(14e) Psi_j c <= f^e_j tau")
    return problems


def check_feasible(scenario: Scenario, action: Action, association: np.ndarray, who: str = "solver") -> None:
    """Raise ``InfeasibleAction`` naming every broken constraint."""
    problems = violations(scenario, action, association)
    if problems:
        raise InfeasibleAction(f"{who} returned an infeasible action: " + "; ".join(problems))


def is_feasible(scenario: Scenario, action: Action, association: np.ndarray) -> bool:
    return not violations(scenario, action, association)
