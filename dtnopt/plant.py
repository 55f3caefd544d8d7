"""The physical IIoT network: device locations, links, arrivals and queues, batched over
``B`` independent environments. Only the digital twin reads it; solvers never touch it.

Per slot t the plant holds the locations, association, fading and the arrivals lambda(t) that
join the local queues at the end of the slot (eq. 5: served from slot t+1).
"""

from __future__ import annotations

import numpy as np

from .action import Action
from .arrivals import draw_arrivals
from .channel import draw_fading, path_gain
from .config import Scenario
from .service import Service, serve
from .topology import (by_link, initial_positions, move, nearest_covering_station, own_link,
                       squared_distances_by_station, station_positions)


class Plant:
    """Physical state and dynamics (eqs. 3-6). State arrays are replaced, never written in
    place, so an observation built from them stays valid after ``step``."""

    def __init__(self, scenario: Scenario, batch: int = 1):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.scenario = scenario
        self.batch = int(batch)
        self.stations = station_positions(scenario)
        self.rng = np.random.default_rng(scenario.seed)
        self.reset(scenario.seed)

    def reset(self, seed: int | None = None) -> None:
        """Empty queues, fresh locations, fading and arrivals drawn from ``seed``."""
        sc = self.scenario
        self.rng = np.random.default_rng(sc.seed if seed is None else seed)
        self.slot = 0
        self.position = initial_positions(self.rng, sc, self.batch)
        self._refresh_links()
        self.arrivals = draw_arrivals(self.rng, sc, (self.batch, sc.devices))
        self.local_queue = np.zeros((self.batch, sc.devices))
        self.edge_queue = np.zeros((self.batch, sc.stations))

    def _refresh_links(self) -> None:
        sc = self.scenario
        devices = (self.batch, sc.devices)
        squared = squared_distances_by_station(self.position, self.stations)  # (M+1, B N)
        self.association = nearest_covering_station(sc, squared).reshape(devices)  # (B, N)
        self.squared_distance = by_link(squared, devices)  # r_ij^2, (B, N, M+1)
        self.link_gain = draw_fading(self.rng, self.squared_distance.shape)
        self.link_gain *= path_gain(sc, self.squared_distance, squared=True)
        self.gain = own_link(self.link_gain, self.association)

    @property
    def distance(self) -> np.ndarray:
        """(B, N, M+1) distances r_ij, m (the plant itself works with their squares)."""
        return np.sqrt(self.squared_distance)

    def step(self, action: Action) -> Service:
        """Execute a feasible action for the current slot and advance to the next one:
        queues by (5)-(6), then mobility, association, fading and new arrivals."""
        sc = self.scenario
        service = serve(sc, action, self.local_queue, self.edge_queue, self.association, self.gain)
        self.local_queue = np.maximum(self.local_queue - service.served, 0.0) + self.arrivals
        self.edge_queue = (
            np.maximum(self.edge_queue - service.edge_departure, 0.0) + service.offload_per_station
        )
        self.slot += 1
        self.position = move(self.rng, sc, self.position)
        self._refresh_links()
        self.arrivals = draw_arrivals(self.rng, sc, (self.batch, sc.devices))
        return service
