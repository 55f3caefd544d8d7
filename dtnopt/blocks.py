"""Closed-form solutions of the blocks of P2 (20), shared by the heuristic and convex solvers.

Write ``s = 1 Mbit``. For device i at station j, P2's variable part is

``sum_i [V E^l_i + V E^e_i - u_i (D^l_i + D^e_i) + q_i D^e_i] - sum_j Q^e_j Psi_j / s^2``

with the per-bit weights ``u_i = V eta_hat + (Q^l_i - beta_i) / s^2`` (serving a bit) and
``q_i = Q^e_j / s^2`` (loading the edge buffer). Each rule below minimises this over one block
with the others fixed, exactly.

An offload that would leave the buffer before the slot ends is never better than the same bits
sent over the whole slot at lower power (p / log(1 + p g) grows with p), so the rules keep
``R tau <= Q^l - D^l`` and the radio energy is ``p tau``.
"""

from __future__ import annotations

import numpy as np

from .action import max_departure
from .channel import power_for_bits
from .config import MBIT
from .topology import station_sum
from .twin import Observation


def service_weight(observation: Observation) -> np.ndarray:
    """u_i = V eta_hat + (Q^l_i - beta_i) / s^2: P2 cost saved per bit served, (B, N)."""
    sc = observation.scenario
    return sc.V * observation.eta_hat + (observation.local_queue - observation.beta) / MBIT**2


def edge_weight(observation: Observation) -> np.ndarray:
    """q_i = Q^e_j / s^2: P2 cost per bit offloaded to device i's station, (B, N)."""
    return np.take_along_axis(observation.edge_queue, observation.association, axis=1) / MBIT**2


def offload_coefficient(observation: Observation, edge_cpu: np.ndarray) -> np.ndarray:
    """k_i = V epsilon c / f^e_i + q_i - u_i: P2 cost per offloaded bit besides the radio
    energy; offloading can only pay where it is negative. Infinite where f^e_i = 0."""
    sc = observation.scenario
    energy_per_bit = sc.V * sc.edge_power * sc.cycles_per_bit
    compute = np.divide(energy_per_bit, edge_cpu, out=np.full(np.shape(edge_cpu), np.inf), where=edge_cpu > 0)
    return compute + edge_weight(observation) - service_weight(observation)


def local_cpu_rule(observation: Observation, cap_bits: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Best f^l given at most ``cap_bits`` may be computed locally (the cubic rule).

    The local part ``V varsigma tau f^3 - u tau f / c`` is convex in f with its minimum at
    ``f = sqrt(u / (3 V varsigma c))``, clipped to [0, min(f^l_max, c cap / tau)]: past the
    queue more CPU only costs energy (eq. 9). ``weight`` replaces u (default
    ``service_weight``), e.g. by ``u - nu`` with nu the price of the queue shared with offloading."""
    sc = observation.scenario
    u = service_weight(observation) if weight is None else weight
    upper = np.minimum(sc.local_cpu, sc.cycles_per_bit * np.maximum(cap_bits, 0.0) / sc.tau)
    energy_scale = 3.0 * sc.V * sc.switched_capacitance * sc.cycles_per_bit
    if energy_scale == 0:  # V = 0, or so small that the product underflows (0/0 below)
        return np.where(u > 0, upper, 0.0)
    best = np.sqrt(np.maximum(u, 0.0) / energy_scale)
    return np.minimum(best, upper)


def power_rule(observation: Observation, bandwidth_share: np.ndarray, coefficient: np.ndarray,
               cap_bits: np.ndarray) -> np.ndarray:
    """Best p given the bandwidth share, the offload coefficient k and the bits that may leave.

    ``V p tau + k x w tau log2(1 + p g / sigma^2)`` is convex in p for k < 0 with its minimum at
    ``p = -k x w / (V ln 2) - sigma^2 / g`` (water-filling), clipped to p_max and to the power
    that empties the buffer; zero where offloading cannot pay."""
    sc = observation.scenario
    bandwidth = bandwidth_share * sc.station_bandwidth[observation.association]
    usable = (coefficient < 0) & (bandwidth > 0) & (observation.gain > 0) & (cap_bits > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        upper = np.minimum(sc.max_power, power_for_bits(np.maximum(cap_bits, 0.0), bandwidth, observation.gain, sc))
        if sc.V == 0:
            best = upper
        else:
            best = -coefficient * bandwidth / (sc.V * np.log(2.0)) - sc.noise_power / observation.gain
        power = np.clip(best, 0.0, upper)
    return np.where(usable, np.nan_to_num(power, nan=0.0, posinf=0.0), 0.0)


def edge_cpu_split(observation: Observation, offload_bits: np.ndarray) -> np.ndarray:
    """Best f^e given the offloaded bits: minimising ``sum_i epsilon c D_i / f_i`` subject to
    ``sum_{i in j} f_i <= f^e_j`` gives ``f_i = f^e_j sqrt(D_i) / sum_{i' in j} sqrt(D_i')`` (11)."""
    sc = observation.scenario
    root = np.sqrt(np.maximum(offload_bits, 0.0))
    totals = np.take_along_axis(station_sum(root, observation.association, sc.stations), observation.association, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(root > 0, sc.station_cpu[observation.association] * root / totals, 0.0)


def edge_departure_rule(observation: Observation) -> np.ndarray:
    """Psi_j = min(f^e_j tau / c, Q^e_j): departures cost no energy and Q^e_j >= 0 rewards them."""
    return np.minimum(max_departure(observation.scenario, observation.batch), observation.edge_queue)
