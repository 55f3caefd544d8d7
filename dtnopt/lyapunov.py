"""The Lyapunov transformation of P1 into the per-slot problem P2 (eqs. 13-20).

Units of the drift terms: queues and bits in Mbit (``MBIT``), energy in J, ``V`` in Mbit^2/J
(MODEL.md 5). Internally eta is kept in J/bit.
"""

from __future__ import annotations

import numpy as np

from .config import MBIT, Scenario


class EfficiencyEstimate:
    """Running estimate eta(t) of the energy efficiency (13) from the slots before t.

    At t = 0 (or while nothing was served) it is ``eta0``. Using the same slot's own ratio would
    make ``E - eta D`` identically zero (MODEL.md 5)."""

    def __init__(self, scenario: Scenario, batch: int):
        self.initial = scenario.eta0 / MBIT
        self.energy = np.zeros(batch)
        self.served = np.zeros(batch)

    @property
    def eta(self) -> np.ndarray:
        """(B,) eta(t), J/bit."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.served > 0, self.energy / self.served, self.initial)

    def update(self, energy: np.ndarray, served_bits: np.ndarray) -> None:
        self.energy = self.energy + energy
        self.served = self.served + served_bits


def largest_service(scenario: Scenario, association: np.ndarray, spectral_efficiency: np.ndarray) -> np.ndarray:
    """Psi_max of (19), bits, (B,): the largest per-slot service any device can get this slot,
    full local CPU plus its whole station's band at p_max (``spectral_efficiency`` is the (B, N)
    efficiency at p_max on each device's own link)."""
    offload = scenario.tau * scenario.station_bandwidth[association] * spectral_efficiency
    return scenario.local_capacity_bits + offload.max(axis=1)


def perturbation(scenario: Scenario, eta: np.ndarray, psi_max: np.ndarray, devices: int) -> np.ndarray:
    """beta_i = V eta(t) + Psi_max (19), bits, (B, N); zero when the perturbation is off."""
    if not scenario.perturbation:
        return np.zeros((eta.shape[0], devices))
    beta = scenario.V * eta * MBIT * MBIT + psi_max
    return np.repeat(beta[:, None], devices, axis=1)


def p2_cost(scenario: Scenario, observation, service) -> np.ndarray:
    """Per-slot cost, the objective of P2 (20), (B,):

    ``V [E_tol - eta sum_i Psi_i] + sum_j Q^e_j [sum_{i in j} D^e_i - Psi_j]
    - sum_i (Q^l_i - beta_i)(Psi_i - lambda_i)``, bits in Mbit, energy in J.
    The reward of (22) is its negative."""
    served = service.served
    penalty = scenario.V * (service.energy - observation.eta * served.sum(axis=1))
    edge = (observation.edge_queue * (service.offload_per_station - service.edge_departure)).sum(axis=1)
    local = ((observation.local_queue - observation.beta) * (served - observation.arrivals)).sum(axis=1)
    return penalty + (edge - local) / (MBIT * MBIT)


def evaluate(observation, action):
    """P2 cost (20) of ``action`` on the twin's view of the slot, and the service it gives:
    what solvers use to compare candidate actions without touching the plant."""
    from .service import serve

    service = serve(observation.scenario, action, observation.local_queue, observation.edge_queue,
                    observation.association, observation.gain)
    return p2_cost(observation.scenario, observation, service), service
