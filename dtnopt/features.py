"""Shared numerics of the learned solvers and the Gymnasium environment: the twin's structured
observation flattened and normalised into a vector, and a unit-box action vector mapped onto the
feasible set (14a)-(14e) through the model's projection, optionally after the gates of
``gate_unit`` (idle devices take no share; at most so many senders per station). The observation
vector and the gated map (``gated_unit_action``) run as compiled loops (``dtnopt.compiled``).

Observation vector (per environment), with ``N`` devices and ``M+1`` stations:

- per device (``device_feature_size`` each, device-major): ``log1p(Q^l / lambda_bar)``,
  ``log1p(lambda / lambda_bar)``, own-link spectral efficiency at p_max / 32,
  ``log1p(max(Q^l - beta, 0) / lambda_bar) - log1p(max(beta - Q^l, 0) / lambda_bar)``, position / L (2),
  one-hot station (``M+1``);
- per station: ``log1p(Q^e / lambda_bar)``;
- global: ``eta`` in J/Mbit x 10, ``log1p(Psi_max / lambda_bar)``, ``t / T``.

Unit action vector ``u`` in [0, 1]^K, ``K = 4 N + (M+1)``: per device (device-major) a bandwidth
weight, power / p_max, local CPU / f^l_max and an edge-CPU weight; per station the edge departure
as a fraction of f^e_j tau / c. Weights are normalised over each station's devices (the whole
band and edge CPU are shared out whenever some weight is positive).
"""

from __future__ import annotations

import numpy as np

from . import compiled
from .action import Action, max_departure, project
from .config import MBIT, Scenario
from .topology import at_station, station_sum
from .twin import Observation

DEVICE_ACTIONS = ("bandwidth_share", "power", "local_cpu", "edge_cpu")
"""Order of the per-device entries of the unit action vector."""


def device_feature_size(scenario: Scenario) -> int:
    """Entries per device at the head of the observation vector (``DEVICE_FEATURES``): 6 plus
    the one-hot station."""
    return 6 + scenario.stations


def observation_size(scenario: Scenario) -> int:
    return scenario.devices * device_feature_size(scenario) + scenario.stations + 3


def action_size(scenario: Scenario) -> int:
    return len(DEVICE_ACTIONS) * scenario.devices + scenario.stations


def observation_features(observation: Observation) -> np.ndarray:
    """(B, observation_size) float32 vector of the twin's state, each entry of order one (the
    layout of the module docstring; a compiled loop, ``dtnopt.compiled.fill_features``)."""
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    vector = np.empty((batch, observation_size(sc)), dtype=np.float32)
    return compiled.fill_features(
        observation.local_queue, observation.arrivals, observation.spectral_efficiency, observation.beta,
        observation.device_position, observation.association, observation.edge_queue, observation.eta,
        observation.psi_max, observation.slot / sc.slots, float(max(sc.arrival_mean, 1.0)), float(sc.area),
        float(MBIT), vector)


def action_from_unit(observation: Observation, unit: np.ndarray) -> Action:
    """Map a (B, action_size) vector in [0, 1] (clipped) onto a feasible ``Action``."""
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    unit = np.asarray(unit, dtype=float)
    unit = np.minimum(np.fmax(unit, 0.0), 1.0)  # NaN counts as 0 (fmax ignores NaN)
    per_device = unit[:, : len(DEVICE_ACTIONS) * devices].reshape(batch, devices, len(DEVICE_ACTIONS))
    association = observation.association

    def shares(weights):
        totals = at_station(station_sum(weights, association, sc.stations), association)
        return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)

    action = Action(
        bandwidth_share=shares(per_device[:, :, 0]),
        power=per_device[:, :, 1] * sc.max_power,
        local_cpu=per_device[:, :, 2] * sc.local_cpu,
        edge_cpu=shares(per_device[:, :, 3]) * sc.station_cpu[association],
        edge_departure=unit[:, len(DEVICE_ACTIONS) * devices:] * max_departure(sc, batch),
    )
    return project(sc, action, association)


IDLE_ENTRIES = ("bandwidth_share", "power", "edge_cpu")
"""The unit vector's entries by which a device takes a share of its station (with ``gate_unit``,
power too); set to 0 they leave the device idle: no band, no edge CPU, nothing sent."""


def gate_unit(observation: Observation, unit: np.ndarray, fixed=frozenset(), offloaders: int = 0) -> np.ndarray:
    """A gated copy of a (B, action_size) unit vector, for a learned solver's map to the feasible
    set (``action_from_unit`` then normalises the shares). A device whose power entry is not
    positive gets no bandwidth weight, and one that cannot send (power or bandwidth entry not
    positive) no edge-CPU weight: a share or CPU given to a device that sends nothing only takes
    it from the devices that do (D^e = 0 there, eq. 10). With ``offloaders`` > 0 as well, only
    that many devices per station send: those whose claim (the product of their bandwidth, power
    and edge-CPU entries, clipped to [0, 1]) is largest (``station_leaders``); the others are
    idle, as if their power entry were 0. By (11) a station's edge energy is least when its bits
    come from one device, and ``bcd`` has at most one sender per station in nearly every slot.
    Entries of the blocks in ``fixed`` (an ablation's) do not gate and do not count in the claim
    (the fixed allocation sends with p_max and equal shares, so under ``no-radio`` every device
    sends)."""
    unit = np.array(unit, dtype=float)
    batch, devices = observation.local_queue.shape
    width = devices * len(DEVICE_ACTIONS)
    per_device = unit[:, :width].reshape(batch, devices, len(DEVICE_ACTIONS))
    share, power, edge = (DEVICE_ACTIONS.index(name) for name in IDLE_ENTRIES)
    # Which devices keep their bandwidth weight (they send) and their edge-CPU weight (they send
    # and have a band); an entry of a fixed block counts as positive.
    sends = per_device[:, :, power] > 0 if "power" not in fixed else np.ones((batch, devices), dtype=bool)
    banded = sends & (per_device[:, :, share] > 0) if "bandwidth_share" not in fixed else sends
    if offloaders and "power" not in fixed:
        claims = [DEVICE_ACTIONS.index(name) for name in IDLE_ENTRIES if name not in fixed]
        clipped = np.clip(per_device[:, :, claims], 0.0, 1.0)
        priority = clipped[:, :, 0]
        for k in range(1, len(claims)):
            priority = priority * clipped[:, :, k]
        claiming = banded & (per_device[:, :, edge] > 0) if "edge_cpu" not in fixed else banded
        keep = station_leaders(np.where(claiming, priority, 0.0), observation.association,
                               observation.scenario.stations, offloaders)
        sends, banded = sends & keep, banded & keep
        per_device[:, :, power] = np.where(keep, per_device[:, :, power], 0.0)
    per_device[:, :, share] = np.where(sends, per_device[:, :, share], 0.0)
    per_device[:, :, edge] = np.where(banded, per_device[:, :, edge], 0.0)
    return unit


def station_leaders(priority: np.ndarray, association: np.ndarray, stations: int, count: int) -> np.ndarray:
    """(B, N) bool: at each station the ``count`` devices of largest positive ``priority`` (ties
    to the lower index); devices of priority 0 are never leaders."""
    positive = priority > 0
    member = association[:, :, None] == np.arange(stations)  # (B, N, M+1)
    ranked = np.where(member & positive[:, :, None], priority[:, :, None], -np.inf)
    if count == 1:  # the common case, without a sort: a device leads if it is its station's first best
        best = ranked.argmax(axis=1)  # (B, M+1)
        return positive & (at_station(best, association) == np.arange(priority.shape[1]))
    order = np.argsort(-ranked, axis=1, kind="stable")  # (B, N, M+1), best first per station
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(priority.shape[1])[None, :, None], axis=1)
    return ((rank < count) & np.isfinite(ranked)).any(axis=2)


def gated_unit_action(observation: Observation, unit: np.ndarray, gate: bool = True, offloaders: int = 0,
                      fixed=frozenset()) -> Action:
    """``action_from_unit(observation, gate_unit(observation, unit, fixed, offloaders))`` for a
    (B, action_size) unit vector (without ``gate``: ``action_from_unit`` alone), the map of the
    learned solvers' unit vectors. With no fixed block and at most one sender per station (the
    common case) it runs as one compiled loop (``dtnopt.compiled.gated_unit_action``) with the
    same arithmetic, so the same bits; otherwise as that composition. ``fixed`` are an
    ablation's blocks, which the caller then sets (``Ablation.apply``)."""
    if fixed or offloaders > 1:
        return action_from_unit(observation, gate_unit(observation, unit, fixed, offloaders) if gate else unit)
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    unit = np.asarray(unit)
    if unit.dtype.kind != "f":
        unit = unit.astype(float)
    per_device, departure = np.empty((4, batch, devices)), np.empty((batch, sc.stations))
    compiled.gated_unit_action(unit, observation.association, sc.stations, gate, gate and offloaders == 1,
                               float(sc.max_power), float(sc.local_cpu), sc.station_cpu,
                               sc.tau / sc.cycles_per_bit, *per_device, departure)
    return Action(*per_device, departure)


def unit_from_action(observation: Observation, action: Action) -> np.ndarray:
    """A unit vector that ``action_from_unit`` maps back to ``action`` (up to the share
    normalisation): for imitation, tests and discretisation checks."""
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    per_device = np.stack(
        [action.bandwidth_share, action.power / sc.max_power, action.local_cpu / sc.local_cpu,
         action.edge_cpu / sc.station_cpu[observation.association]],
        axis=2,
    ).reshape(batch, -1)
    return np.clip(np.concatenate([per_device, action.edge_departure / max_departure(sc, batch)], axis=1), 0.0, 1.0)
