"""Simple per-slot rules: ``equal``, ``local``, ``random`` and ``greedy``."""

from __future__ import annotations

import numpy as np

from dtnopt.action import Action, max_departure
from dtnopt.blocks import (
    edge_cpu_split,
    edge_departure_rule,
    local_cpu_rule,
    offload_coefficient,
    power_rule,
)
from dtnopt.channel import rate
from dtnopt.registry import register
from dtnopt.solver import Solver, fixed_allocation
from dtnopt.topology import station_sum


@register("equal")
class EqualSolver(Solver):
    """Nothing optimised (both ablations at once): equal bandwidth and edge-CPU shares at each
    station, p_max, full local CPU, maximal edge departures."""

    def decide(self, observation):
        return fixed_allocation(self.scenario, observation.association)


@register("local")
class LocalSolver(Solver):
    """No offloading: every device computes at full local CPU; edge buffers drain."""

    def decide(self, observation):
        batch, devices = observation.association.shape
        zeros = np.zeros((batch, devices))
        return Action(zeros, zeros.copy(), np.full((batch, devices), self.scenario.local_cpu), zeros.copy(),
                      max_departure(self.scenario, batch))


@register("random")
class RandomSolver(Solver):
    """Uniformly random feasible actions: bounded blocks uniform in their range, shares of a
    station uniform on the simplex (Dirichlet(1))."""

    def reset(self, seed=None):
        self.rng = np.random.default_rng(self.seed if seed is None else seed)

    def decide(self, observation):
        if not hasattr(self, "rng"):
            self.reset()
        sc = self.scenario
        association = observation.association
        batch, devices = association.shape

        def simplex():
            draws = self.rng.exponential(1.0, size=(batch, devices))
            totals = np.take_along_axis(station_sum(draws, association, sc.stations), association, axis=1)
            return draws / totals

        return Action(
            bandwidth_share=simplex(),
            power=self.rng.uniform(0.0, sc.max_power, size=(batch, devices)),
            local_cpu=self.rng.uniform(0.0, sc.local_cpu, size=(batch, devices)),
            edge_cpu=simplex() * sc.station_cpu[association],
            edge_departure=self.rng.uniform(0.0, 1.0, size=(batch, sc.stations)) * max_departure(sc, batch),
        )


def fill_by_value(value: np.ndarray, width: np.ndarray, association: np.ndarray, stations: int) -> np.ndarray:
    """Fractional knapsack per station: give each station's band, in decreasing ``value`` per
    unit share, to devices up to their ``width`` (the share they can use); devices of
    non-positive value get nothing. (B, N) shares."""
    batch, devices = value.shape
    group = (association + stations * np.arange(batch)[:, None]).ravel()
    width = np.where(value > 0, width, 0.0).ravel()
    order = np.lexsort((-value.ravel(), group))
    sorted_width = width[order]
    cumulative = np.cumsum(sorted_width) - sorted_width  # bandwidth before each device overall
    starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    base = np.zeros_like(cumulative)
    base[starts] = cumulative[starts]
    before = cumulative - np.maximum.accumulate(base)  # before it within its station
    share = np.empty_like(sorted_width)
    share[order] = np.clip(1.0 - before, 0.0, sorted_width)
    return share.reshape(batch, devices)


@register("greedy")
class GreedySolver(Solver):
    """One pass of the closed-form block rules of P2 (``dtnopt.blocks``), block by block.

    In this order:

    1. local CPU by the cubic rule on the whole local queue;
    2. a provisional equal edge-CPU split among devices with bits left, giving each device's
       offload coefficient k_i;
    3. each station's band to the devices with the largest P2 saving per unit share at p_max,
       ``-k_i w_j log2(1 + p_max g_i / sigma^2) tau``, each up to the share that empties its
       buffer (fractional knapsack); band left over is spread over the chosen devices in
       proportion, so they can send at lower power;
    4. power by the water-filling rule; devices whose offload does not pay
       (``V p tau + k_i D^e_i >= 0``) are switched off;
    5. edge CPU by the square-root split of the offloaded bits; Psi_j as large as useful."""

    def decide(self, observation):
        sc = self.scenario
        association = observation.association
        queue = observation.local_queue
        local_cpu = local_cpu_rule(observation, queue)
        left = queue - np.minimum(sc.tau * local_cpu / sc.cycles_per_bit, queue)

        wanting = (left > 0).astype(float)
        counts = np.take_along_axis(station_sum(wanting, association, sc.stations), association, axis=1)
        provisional_cpu = np.where(wanting > 0, sc.station_cpu[association] / np.maximum(counts, 1.0), 0.0)
        coefficient = offload_coefficient(observation, provisional_cpu)

        bandwidth = sc.station_bandwidth[association]
        bits_per_share = bandwidth * observation.own_spectral_efficiency * sc.tau
        value = np.where(np.isfinite(coefficient), -coefficient, 0.0) * bits_per_share
        with np.errstate(divide="ignore", invalid="ignore"):
            width = np.where(bits_per_share > 0, left / bits_per_share, 0.0)
        share = fill_by_value(value, width, association, sc.stations)
        used = station_sum(share, association, sc.stations)
        spare = np.take_along_axis(np.maximum(1.0 - used, 0.0) / np.maximum(used, 1e-12), association, axis=1)
        share = np.where(share > 0, share * (1.0 + spare), 0.0)

        power = power_rule(observation, share, coefficient, left)
        offload_bits = np.minimum(rate(share * bandwidth, power, observation.gain, sc.noise_power) * sc.tau, left)
        with np.errstate(invalid="ignore"):
            pays = (offload_bits > 0) & (sc.V * power * sc.tau + coefficient * offload_bits < 0)
        share = np.where(pays, share, 0.0)
        power = np.where(pays, power, 0.0)
        offload_bits = np.where(pays, offload_bits, 0.0)
        return Action(
            bandwidth_share=share,
            power=power,
            local_cpu=local_cpu,
            edge_cpu=edge_cpu_split(observation, offload_bits),
            edge_departure=edge_departure_rule(observation),
        )
