"""The Lyapunov transformation of P1 into the per-slot problem P2 (eqs. 13-20).

Units of the drift terms: queues and bits in Mbit (``MBIT``), energy in J, ``V`` in Mbit^2/J
(docs/model.md section 5). Internally eta is kept in J/bit.

Two etas, kept apart on purpose: the price ``eta_hat`` (``Scenario.eta0``) that P2 (20) and
beta (19) use is fixed before the episode, so no action can change it; the running ratio
``sum E_tol / sum Psi`` (13) is the KPI, which solvers may observe but which never enters the
cost. With the running ratio in the cost, energy already wasted would lower every later slot's
cost through ``-V eta sum_i lambda_i``, and the summed cost would reward waste.
"""

from __future__ import annotations

import numpy as np

from .config import MBIT, Scenario


def price(scenario: Scenario) -> float:
    """eta_hat, J/bit: the fixed energy price of P2 (20) and beta (19), ``Scenario.eta0``."""
    return scenario.eta0 / MBIT


class RunningEfficiency:
    """eta_EE (13) of the slots before t, J/bit: the KPI a solver may observe, never part of
    the cost. Before any bit was served it reads ``eta_hat``."""

    def __init__(self, scenario: Scenario, batch: int):
        self._initial = np.full(batch, price(scenario))
        self.energy = np.zeros(batch)
        self.served = np.zeros(batch)

    @property
    def eta(self) -> np.ndarray:
        """(B,) eta(t), J/bit."""
        return np.divide(self.energy, self.served, out=self._initial.copy(), where=self.served > 0.0)

    def update(self, energy: np.ndarray, served_bits: np.ndarray) -> None:
        self.energy = self.energy + energy
        self.served = self.served + served_bits


def largest_service(scenario: Scenario, association: np.ndarray, spectral_efficiency: np.ndarray) -> np.ndarray:
    """Psi_max of (19), bits, (B,): the largest per-slot service any device can get this slot,
    full local CPU plus its whole station's band at p_max (``spectral_efficiency`` is the (B, N)
    efficiency at p_max on each device's own link)."""
    offload = scenario.tau * scenario.station_bandwidth[association] * spectral_efficiency
    return scenario.local_capacity_bits + np.maximum.reduce(offload, axis=1)


def perturbation(scenario: Scenario, psi_max: np.ndarray, devices: int) -> np.ndarray:
    """beta_i = V eta_hat + Psi_max (19), bits, (B, N); zero when the perturbation is off."""
    if not scenario.perturbation:
        return np.zeros((psi_max.shape[0], devices))
    beta = price(scenario) * (scenario.V * MBIT * MBIT) + psi_max
    return beta[:, None].repeat(devices, axis=1)


def p2_cost(scenario: Scenario, observation, service) -> np.ndarray:
    """Per-slot cost, the objective of P2 (20), (B,):

    ``V [E_tol - eta_hat sum_i Psi_i] + sum_j Q^e_j [sum_{i in j} D^e_i - Psi_j]
    - sum_i (Q^l_i - beta_i)(Psi_i - lambda_i)``, bits in Mbit, energy in J.
    The reward of (22) is its negative."""
    served = service.served
    total = np.add.reduce  # ndarray.sum without its Python wrapper: this runs every slot
    penalty = scenario.V * (service.energy - observation.eta_hat * service.served_total)
    edge = total(observation.edge_queue * (service.offload_per_station - service.edge_departure), axis=1)
    local = total((observation.local_queue - observation.beta) * (served - observation.arrivals), axis=1)
    return penalty + (edge - local) / (MBIT * MBIT)


def p2_cost_terms(scenario: Scenario, observation, service):
    """The P2 cost (20) split into the parts each device and each station owns, ((B, N), (B, M+1)):

    device i: ``V [E^l_i + E^e_i - eta_hat Psi_i] + q_i D^e_i - (Q^l_i - beta_i)(Psi_i - lambda_i)``
    (``q_i = Q^e_j / s^2`` of its station, ``dtnopt.blocks``); station j: ``-Q^e_j Psi_j``.
    Their sum over devices and stations is ``p2_cost``. Within a slot, a device's power and local
    CPU change only its own part: learned solvers use the split for credit assignment."""
    served = service.served
    loading = np.take_along_axis(observation.edge_queue, observation.association, axis=1) * service.offload_bits
    device = (scenario.V * (service.local_energy + service.offload_energy - observation.eta_hat * served)
              + (loading - (observation.local_queue - observation.beta) * (served - observation.arrivals)) / (MBIT * MBIT))
    station = -observation.edge_queue * service.edge_departure / (MBIT * MBIT)
    return device, station


def evaluate(observation, action):
    """P2 cost (20) of ``action`` on the twin's view of the slot, and the service it gives:
    what solvers use to compare candidate actions without touching the plant."""
    from .service import serve

    service = serve(observation.scenario, action, observation.local_queue, observation.edge_queue,
                    observation.association, observation.gain)
    return p2_cost(observation.scenario, observation, service), service
