"""Shared numerics of the learned solvers and the Gymnasium environment: the twin's structured
observation flattened and normalised into a vector, and a unit-box action vector mapped onto the
feasible set (14a)-(14e) through the model's projection.

Observation vector (per environment), with ``N`` devices and ``M+1`` stations:

- per device (``DEVICE_FEATURES`` each, device-major): ``log1p(Q^l / lambda_bar)``,
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

from .action import Action, max_departure, project
from .config import MBIT, Scenario
from .topology import station_sum
from .twin import Observation

DEVICE_ACTIONS = ("bandwidth_share", "power", "local_cpu", "edge_cpu")
"""Order of the per-device entries of the unit action vector."""


def observation_size(scenario: Scenario) -> int:
    return scenario.devices * (6 + scenario.stations) + scenario.stations + 3


def action_size(scenario: Scenario) -> int:
    return len(DEVICE_ACTIONS) * scenario.devices + scenario.stations


def observation_features(observation: Observation) -> np.ndarray:
    """(B, observation_size) float32 vector of the twin's state, each entry of order one."""
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    unit = max(sc.arrival_mean, 1.0)
    queue = observation.local_queue
    excess = queue - observation.beta
    one_hot = np.zeros((batch, devices, sc.stations))
    np.put_along_axis(one_hot, observation.association[:, :, None], 1.0, axis=2)
    per_device = np.concatenate(
        [
            np.log1p(queue / unit)[:, :, None],
            np.log1p(observation.arrivals / unit)[:, :, None],
            observation.own_spectral_efficiency[:, :, None] / 32.0,
            (np.log1p(np.maximum(excess, 0.0) / unit) - np.log1p(np.maximum(-excess, 0.0) / unit))[:, :, None],
            observation.device_position / sc.area,
            one_hot,
        ],
        axis=2,
    ).reshape(batch, -1)
    overall = np.stack(
        [observation.eta * MBIT * 10.0, np.log1p(observation.psi_max / unit),
         np.full(batch, observation.slot / sc.slots)],
        axis=1,
    )
    return np.concatenate([per_device, np.log1p(observation.edge_queue / unit), overall], axis=1).astype(np.float32)


def action_from_unit(observation: Observation, unit: np.ndarray) -> Action:
    """Map a (B, action_size) vector in [0, 1] (clipped) onto a feasible ``Action``."""
    sc = observation.scenario
    batch, devices = observation.local_queue.shape
    unit = np.clip(np.nan_to_num(np.asarray(unit, dtype=float), nan=0.0), 0.0, 1.0)
    per_device = unit[:, : len(DEVICE_ACTIONS) * devices].reshape(batch, devices, len(DEVICE_ACTIONS))
    association = observation.association

    def shares(weights):
        totals = np.take_along_axis(station_sum(weights, association, sc.stations), association, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(totals > 0, weights / totals, 0.0)

    action = Action(
        bandwidth_share=shares(per_device[:, :, 0]),
        power=per_device[:, :, 1] * sc.max_power,
        local_cpu=per_device[:, :, 2] * sc.local_cpu,
        edge_cpu=shares(per_device[:, :, 3]) * sc.station_cpu[association],
        edge_departure=unit[:, len(DEVICE_ACTIONS) * devices:] * max_departure(sc, batch),
    )
    return project(sc, action, association)


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
