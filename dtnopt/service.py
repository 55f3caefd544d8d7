"""What one slot's action really serves and what it costs in energy (eqs. 5-12).

Served bits are what really leaves a buffer (docs/model.md section 3, a departure from the paper, which
charges energy for bits that were never there):

- local ``D^l = min(tau f^l / c, Q^l)`` (8);
- offloaded ``D^e = min(R tau, Q^l - D^l)`` (10), zero when ``x``, ``p`` or ``f^e`` is zero;
- edge departures ``min(Psi_j, Q^e_j)`` (14e).

Energy (docs/model.md section 4): local ``E^l = varsigma c D^l (f^l)^2`` (= (9) when the queue is not the
limit); offload ``E^e = p D^e / R + epsilon c D^e / f^e``: radio energy for the time spent
transmitting (= ``p tau`` when not queue-limited) plus the edge CPU energy of (11).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .action import Action
from .channel import rate
from .config import Scenario
from .topology import station_sum


@dataclass
class Service:
    """Bits served and energy spent in one slot, batched like the action. A record: ``served``,
    ``served_total`` and ``energy`` are computed once, at construction."""

    local_bits: np.ndarray  # D^l_i, (B, N)
    offload_bits: np.ndarray  # D^e_i, (B, N)
    edge_departure: np.ndarray  # bits that left edge buffer j, (B, M+1)
    offload_per_station: np.ndarray  # sum_{i in j} D^e_i, (B, M+1)
    local_energy: np.ndarray  # E^l_i, J, (B, N)
    offload_energy: np.ndarray  # E^e_i, J, (B, N)

    def __post_init__(self) -> None:
        # Computed once: the queues, the cost, the eta estimate and the loop all read them.
        self._served = self.local_bits + self.offload_bits
        self._served_total = np.add.reduce(self._served, axis=1)
        self._energy = np.add.reduce(self.local_energy + self.offload_energy, axis=1)

    @property
    def served(self) -> np.ndarray:
        """Psi_i = D^l_i + D^e_i, (B, N)."""
        return self._served

    @property
    def served_total(self) -> np.ndarray:
        """sum_i Psi_i per environment, bits, (B,)."""
        return self._served_total

    @property
    def energy(self) -> np.ndarray:
        """E_tol (12) per environment, J, (B,)."""
        return self._energy


def serve(
    scenario: Scenario,
    action: Action,
    local_queue: np.ndarray,
    edge_queue: np.ndarray,
    association: np.ndarray,
    gain: np.ndarray,
) -> Service:
    """Apply a feasible ``action`` to queues ``Q^l`` (B, N) and ``Q^e`` (B, M+1) with channel
    power gains ``g = h r^-alpha`` (B, N) on each device's link to its station."""
    tau, c = scenario.tau, scenario.cycles_per_bit
    local_bits = np.minimum(action.local_cpu * (tau / c), local_queue)
    bandwidth = action.bandwidth_share * scenario.station_bandwidth[association]
    uplink = rate(bandwidth, action.power, gain, scenario.noise_power)
    active = (uplink > 0.0) & (action.edge_cpu > 0.0)
    # Q^l - D^l >= 0 exactly (D^l = min(., Q^l)) and R >= 0, so D^e needs no clipping at 0.
    offload_bits = np.where(active, np.minimum(uplink * tau, local_queue - local_bits), 0.0)
    radio = np.divide(action.power * offload_bits, uplink, out=np.zeros(offload_bits.shape), where=active)
    compute = np.divide(scenario.edge_power * c * offload_bits, action.edge_cpu, out=np.zeros(offload_bits.shape),
                        where=active)
    return Service(
        local_bits=local_bits,
        offload_bits=offload_bits,
        edge_departure=np.minimum(action.edge_departure, edge_queue),
        offload_per_station=station_sum(offload_bits, association, scenario.stations),
        local_energy=scenario.switched_capacitance * c * local_bits * action.local_cpu**2,
        offload_energy=radio + compute,
    )
