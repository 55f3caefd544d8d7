"""Credit assignment of ``a3c``: the map from the policy's output to an action, the rewards, and
the advantage of each action entry.

P2 (20) is a sum of per-device and per-station parts (``dtnopt.lyapunov.p2_cost_terms``). The
critic predicts the value of each part, and every action entry gets the advantage (25) of the
parts it changes within the slot (``credit``): with delta = 0 this is exact and removes the noise
of the other devices from each device's gradient. The entries by which a device claims a share of
its station get a difference reward instead (``externality``).
"""

from __future__ import annotations

import numpy as np

from dtnopt.config import MBIT, Scenario
from dtnopt.features import DEVICE_ACTIONS, IDLE_ENTRIES, gated_unit_action
from dtnopt.lyapunov import p2_cost_terms
from dtnopt.service import serve
from dtnopt.solver import NO_ABLATION, Ablation
from dtnopt.topology import station_sum

STATION_SHARED = frozenset({"bandwidth_share", "edge_cpu"})
"""Per-device entries whose effect spreads over the device's station within a slot: weights
normalised over the station's devices."""


def gated_action(observation, unit_action: np.ndarray, ablation: Ablation = NO_ABLATION, gate: bool = True,
                 offloaders: int = 0):
    """The feasible ``Action`` of a policy output in the unit box (``dtnopt.features``) and the
    ablation's fixed blocks. With ``gate`` the vector is first gated by
    ``dtnopt.features.gate_unit``: a device that does not send gets no band and no edge CPU, and
    with ``offloaders`` > 0 at most that many devices per station send."""
    return ablation.apply(observation, gated_unit_action(observation, unit_action, gate, offloaders, ablation.fixed))


def free_dimensions(scenario: Scenario, ablation: Ablation) -> np.ndarray:
    """(action size,) bool: the policy-output entries the policy learns; entries of blocks the
    ablation fixes are left out of the log-probability and the entropy."""
    per_device = np.array([name not in ablation.fixed for name in DEVICE_ACTIONS])
    departure = "edge_departure" not in ablation.fixed
    return np.concatenate([np.tile(per_device, scenario.devices), np.full(scenario.stations, departure)])


def reward_scale(observation) -> np.ndarray:
    """(B, 1) cost unit of a slot: ``Psi_max lambda_bar`` in Mbit^2, the size of a device's queue
    term in (20) when its queue sits near beta. Read from the observation, so it follows N, M and
    the channel, and (unlike a running statistic) no rare huge cost can shrink every reward."""
    arrival_unit = max(observation.scenario.arrival_mean, 1.0) / MBIT
    return np.maximum(observation.psi_max / MBIT * arrival_unit, 1e-6)[:, None]


def credit(observation, advantage: np.ndarray, scenario: Scenario, externality: np.ndarray | None = None) -> np.ndarray:
    """(B, action size) advantage of every policy-output entry from the (B, N + M+1) advantages
    of the P2 cost parts: within a slot a bandwidth or edge-CPU weight (``STATION_SHARED``)
    changes the parts of its station's devices and the station, the power and the local CPU only
    the device's own part, and an edge departure only its station's part.

    With ``externality`` ((B, N), reward units), every entry by which a device takes a share of
    its station (``IDLE_ENTRIES``: bandwidth weight, power and edge-CPU weight) gets instead its
    own part's advantage plus the effect its action had on the other devices' parts: a
    difference reward, whose counterfactual (the device idle) depends on none of the device's
    own entries, so it is a valid baseline and the gradient stays unbiased for the whole cost,
    without the noise of the other devices' own actions that the station total carries."""
    devices = scenario.devices
    own, station = advantage[:, :devices], advantage[:, devices:]
    if externality is not None:
        claimed = own + externality
        per_device = [claimed if name in IDLE_ENTRIES else own for name in DEVICE_ACTIONS]
    else:
        association = observation.association
        station_total = station_sum(own, association, scenario.stations) + station
        shared = np.take_along_axis(station_total, association, axis=1)
        per_device = [shared if name in STATION_SHARED else own for name in DEVICE_ACTIONS]
    per_device = np.stack(per_device, axis=2)
    return np.concatenate([per_device.reshape(len(own), -1), station], axis=1)


def device_parts(observation, unit_actions: np.ndarray, ablation: Ablation, gate: bool,
                 offloaders: int = 0) -> np.ndarray:
    """(B, k, N) the device parts of the P2 cost under each of k policy outputs per environment,
    ``unit_actions`` (B, k, action size), mapped as ``gated_action`` maps them and served on the
    twin's view (``serve``): one batch of B x k environments."""
    batch, count = unit_actions.shape[:2]
    rows = observation.select(np.repeat(np.arange(batch), count))  # row b * k + r
    action = gated_action(rows, unit_actions.reshape(batch * count, -1), ablation, gate, offloaders=offloaders)
    service = serve(observation.scenario, action, rows.local_queue, rows.edge_queue, rows.association, rows.gain)
    return p2_cost_terms(observation.scenario, rows, service)[0].reshape(batch, count, -1)


def each_device_idle(unit_action: np.ndarray, devices: int) -> np.ndarray:
    """(B, 1 + N, action size): the policy output ``unit_action`` (B, action size), then one row
    per device i with its ``IDLE_ENTRIES`` at 0 (device i idle) and everyone else's unchanged."""
    unit_action = np.asarray(unit_action, dtype=float)
    batch = len(unit_action)
    counterfactual = np.repeat(unit_action, devices, axis=0).reshape(batch, devices, -1)
    diagonal = np.arange(devices)
    for name in IDLE_ENTRIES:
        counterfactual[:, diagonal, diagonal * len(DEVICE_ACTIONS) + DEVICE_ACTIONS.index(name)] = 0.0
    return np.concatenate([unit_action[:, None, :], counterfactual], axis=1)


def externality(observation, unit_action: np.ndarray, ablation: Ablation, gate: bool,
                offloaders: int = 0) -> np.ndarray:
    """(B, N) the P2 cost parts of the other devices under the policy output ``unit_action``
    minus the same with device i idle and everyone else unchanged: the cost device i's claim on
    its station put on the others this slot (only its station's devices can differ; with
    ``offloaders``, the next claimant of its station may send in its place). Evaluated on the
    twin's view, one counterfactual batch of B x N environments."""
    devices = observation.local_queue.shape[1]
    parts = device_parts(observation, each_device_idle(unit_action, devices), ablation, gate, offloaders)
    factual, idle_parts = parts[:, 0], parts[:, 1:]  # (B, N), (B, i, j)
    diagonal = np.arange(devices)
    others = factual.sum(axis=1, keepdims=True) - factual
    others_idle = idle_parts.sum(axis=2) - idle_parts[:, diagonal, diagonal]
    return others - others_idle
