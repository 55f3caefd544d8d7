"""The digital twin (Sec. II-A, eqs. 1-2, 21): it mirrors the plant and hands solvers a
structured observation. Solvers decide on the twin; the loop executes on the plant.

By default the twin is a perfect mirror. Optionally (docs/model.md section 1) its channel gains carry a
relative estimation error and its device locations are ``twin_staleness`` slots old.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .channel import path_gain, spectral_efficiency
from .config import Scenario
from .lyapunov import largest_service, perturbation, price
from .plant import Plant
from .topology import by_link, coverage, nearest_covering_station, own_link, squared_distances_by_station


@dataclass
class Observation:
    """The twin's state s(t) of (21), batched over B environments (SI units).

    Do not modify its arrays: they may be shared with the plant."""

    scenario: Scenario
    slot: int  # t
    device_position: np.ndarray  # l_i(t), m, (B, N, 2)
    station_position: np.ndarray  # l_j, m, (M+1, 2)
    association: np.ndarray  # station index of each device, (B, N)
    gain: np.ndarray  # channel power gain h r^-alpha on each device's own link, (B, N)
    spectral_efficiency: np.ndarray  # log2(1 + p_max g / sigma^2), zero off coverage: R(t)/w, (B, N, M+1)
    local_queue: np.ndarray  # Q^l_i(t), bits, (B, N)
    edge_queue: np.ndarray  # Q^e_j(t), bits, (B, M+1)
    arrivals: np.ndarray  # lambda_i(t), bits, (B, N)
    eta: np.ndarray  # eta_EE (13) of the slots before t, J/bit, (B,): a KPI, never in the cost
    beta: np.ndarray  # beta_i (19), bits, (B, N)
    psi_max: np.ndarray  # Psi_max of (19), bits, (B,)

    @property
    def batch(self) -> int:
        return self.local_queue.shape[0]

    @property
    def eta_hat(self) -> float:
        """The fixed energy price of P2 (20) and beta (19), J/bit (``Scenario.eta0``)."""
        return price(self.scenario)

    @property
    def max_power(self) -> float:
        """p_i,max of DT_i (1), W."""
        return self.scenario.max_power

    @property
    def station_cpu(self) -> np.ndarray:
        """F: f^e_j (2), cycles/s, (M+1,)."""
        return self.scenario.station_cpu

    @property
    def station_bandwidth(self) -> np.ndarray:
        """w_j (2), Hz, (M+1,)."""
        return self.scenario.station_bandwidth

    @property
    def own_spectral_efficiency(self) -> np.ndarray:
        """(B, N) efficiency at p_max on each device's own link."""
        return own_link(self.spectral_efficiency, self.association)

    def select(self, index) -> "Observation":
        """The sub-batch ``index`` (an int keeps a batch axis of one)."""
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1)
        fields = {name: value for name, value in vars(self).items()}
        for name, value in fields.items():
            if isinstance(value, np.ndarray) and name != "station_position":
                fields[name] = value[index]
        return Observation(**fields)


class DigitalTwin:
    """Builds observations from a plant, with optional twin deviation."""

    def __init__(self, scenario: Scenario, seed: int | None = None):
        self.scenario = scenario
        # Station-level constants, and the error stream of the twin, kept apart from the plant's.
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        seed = self.scenario.seed if seed is None else seed
        self.rng = np.random.default_rng([seed, 0x7717])
        self.history: deque = deque(maxlen=self.scenario.twin_staleness + 1)

    def observe(self, plant: Plant, eta: np.ndarray) -> Observation:
        sc = self.scenario
        self.history.append(plant.position)
        exact = sc.twin_staleness == 0 and sc.twin_gain_error == 0.0
        if exact:
            position, association, link_gain = plant.position, plant.association, plant.link_gain
            squared_distance = plant.squared_distance
        else:
            position = self.history[0]  # k slots old once the history is full
            squared = squared_distances_by_station(position, plant.stations)
            association = nearest_covering_station(sc, squared).reshape(position.shape[:-1])
            squared_distance = by_link(squared, position.shape[:-1])
            fading = plant.link_gain / path_gain(sc, plant.squared_distance, squared=True)
            link_gain = fading * path_gain(sc, squared_distance, squared=True)
            if sc.twin_gain_error > 0:
                error = 1.0 + sc.twin_gain_error * self.rng.standard_normal(link_gain.shape)
                link_gain = link_gain * np.maximum(error, 0.0)
        efficiency = spectral_efficiency(sc.max_power, link_gain, sc.noise_power)
        # Zero off coverage (in place: a fresh, finite array).
        efficiency *= coverage(sc, squared_distance, squared=True)
        own = own_link(efficiency, association)
        gain = plant.gain if exact else own_link(link_gain, association)
        psi_max = largest_service(sc, association, own)
        return Observation(
            scenario=sc,
            slot=plant.slot,
            device_position=position,
            station_position=plant.stations,
            association=association,
            gain=gain,
            spectral_efficiency=efficiency,
            local_queue=plant.local_queue,
            edge_queue=plant.edge_queue,
            arrivals=plant.arrivals,
            eta=eta,
            beta=perturbation(sc, psi_max, sc.devices),
            psi_max=psi_max,
        )
