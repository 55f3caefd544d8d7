"""A slow, careful per-slot optimum of P2 (20) for small N: the solver ``reference``.

Only used to measure how far ``bcd`` is from the best known per-slot cost. P2 is not jointly
convex, so it runs scipy's SLSQP on the joint problem in ``(x, p, f^l, f^e)`` (each scaled to
[0, 1] of its bound) from many starts: the ``bcd``, ``greedy`` and ``equal`` decisions and
``random_starts`` uniformly random feasible actions; and it runs ``bcd`` from every set of
offloading devices (2^N starts: which devices offload is the combinatorial part of P2, whose
optima concentrate bandwidth). Edge departures sit at their exact rule
``min(f^e_j tau / c, Q^e_j)``. The objective is the exact P2 cost (``dtnopt.lyapunov.evaluate``)
under the constraints (14a), (14d), ``tau f^l / c <= Q^l`` and ``R tau <= Q^l - D^l`` (8, 10),
inside which it is smooth; an offload that empties the buffer early is dominated (see
``dtnopt.blocks``), so these constraints lose nothing. Every SLSQP result is polished by
``bcd`` sweeps from it, and the cheapest action found, starts included, is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from dtnopt.action import Action, project
from dtnopt.blocks import edge_departure_rule
from dtnopt.channel import rate
from dtnopt.lyapunov import evaluate
from dtnopt.registry import register
from dtnopt.solver import NO_ABLATION, Solver, check_ranges, fixed_allocation, make_config
from dtnopt.topology import station_sum

from .bcd import BCDSolver
from .heuristics import GreedySolver, RandomSolver

MIN_EDGE_SHARE = 1e-4
"""Lower bound of the edge-CPU share in SLSQP: keeps ``epsilon c D / f^e`` finite and smooth."""


@dataclass(frozen=True)
class ReferenceConfig:
    """Hyper-parameters of ``reference``."""

    random_starts: int = 12  # random feasible starts besides bcd, greedy and equal
    max_devices: int = 8  # largest N accepted (the search is slow by design)
    iterations: int = 300  # SLSQP iteration cap per start

    def __post_init__(self):
        check_ranges(self, {"random_starts": (0, 10_000, int), "max_devices": (1, 64, int),
                            "iterations": (1, 100_000, int)})


@register("reference")
class ReferenceSolver(Solver):
    """Best known P2 optimum for small N: multi-start SLSQP and bcd over all offload sets."""

    def __init__(self, scenario, ablation=NO_ABLATION, seed=0, **hyperparameters):
        super().__init__(scenario, ablation, seed)
        self.config = make_config(ReferenceConfig, hyperparameters, "reference")
        if scenario.devices > self.config.max_devices:
            raise ValueError(f"reference solves small instances only: devices must be in "
                             f"[1, {self.config.max_devices}], got {scenario.devices}")
        self.bcd = BCDSolver(scenario, ablation)
        self.greedy = GreedySolver(scenario)
        self.random = RandomSolver(scenario, seed=seed)
        self.random.reset(seed)

    def reset(self, seed=None):
        self.random.reset(self.seed if seed is None else seed)

    def decide(self, observation):
        return Action.stack([self.solve(observation.select(b)) for b in range(observation.batch)])

    def solve(self, observation) -> Action:
        """The cheapest action found for one environment (batch of one)."""
        starts = [self.bcd.solve(observation), self.greedy.decide(observation),
                  fixed_allocation(self.scenario, observation.association)]
        starts += [self.random.decide(observation) for _ in range(self.config.random_starts)]
        starts = [self.ablation.apply(observation, a) for a in starts]
        best, best_cost = None, np.inf
        for start in starts:
            for candidate in (start, self.search(observation, start)):
                cost = float(evaluate(observation, candidate)[0][0])
                if cost < best_cost:
                    best, best_cost = candidate, cost
        if "bandwidth_share" not in self.ablation.fixed:
            for candidate in self.offload_set_starts(observation, starts[1]):
                cost = float(evaluate(observation, candidate)[0][0])
                if cost < best_cost:
                    best, best_cost = candidate, cost
        return best

    def offload_set_starts(self, observation, base: Action):
        """``bcd`` from every set of offloading devices (P2 concentrates bandwidth, so which
        devices offload is the combinatorial part): the set's devices share their station's band
        and edge CPU equally at p_max, the other blocks as in ``base``."""
        sc = self.scenario
        association = observation.association
        for mask in range(1, 2 ** sc.devices):
            chosen = ((mask >> np.arange(sc.devices)) & 1).astype(float)[None]
            counts = np.take_along_axis(station_sum(chosen, association, sc.stations), association, axis=1)
            share = np.where(chosen > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
            start = Action(share, chosen * sc.max_power, base.local_cpu, share * sc.station_cpu[association],
                           base.edge_departure)
            yield self.bcd.solve(observation, start=start)

    def search(self, observation, start: Action) -> Action:
        """SLSQP from ``start``, then ``bcd`` sweeps from its result."""
        sc = self.scenario
        association = observation.association
        devices, stations = sc.devices, sc.stations
        station_cpu = sc.station_cpu[association][0]
        upper = np.concatenate([np.ones(devices), np.full(devices, sc.max_power), np.full(devices, sc.local_cpu),
                                station_cpu])

        def decode(z):
            x, p, f_local, f_edge = (z[k * devices:(k + 1) * devices][None] * upper[k * devices:(k + 1) * devices]
                                     for k in range(4))
            return Action(x, p, f_local, f_edge, edge_departure_rule(observation))

        z0 = np.concatenate([start.bandwidth_share[0], start.power[0], start.local_cpu[0], start.edge_cpu[0]]) / upper
        bounds = [(0.0, 1.0)] * (3 * devices) + [(MIN_EDGE_SHARE, 1.0)] * devices
        for k, block in enumerate(("bandwidth_share", "power", "local_cpu", "edge_cpu")):
            if block in self.ablation.fixed:
                for i in range(devices):
                    bounds[k * devices + i] = (z0[k * devices + i],) * 2
        z0 = np.clip(z0, [b[0] for b in bounds], [b[1] for b in bounds])
        queue = observation.local_queue[0]
        scale = 1.0 / max(queue.max(), 1.0)

        def capacity(z):
            a = decode(z)
            local_bits = sc.tau * a.local_cpu[0] / sc.cycles_per_bit
            bandwidth = a.bandwidth_share * sc.station_bandwidth[association]
            offload = rate(bandwidth, a.power, observation.gain, sc.noise_power)[0] * sc.tau
            shares = [1.0 - station_sum(a.bandwidth_share, association, stations)[0],
                      1.0 - station_sum(a.edge_cpu, association, stations)[0] / sc.station_cpu,
                      (queue - local_bits) * scale]
            if not self.ablation.fixed & {"bandwidth_share", "power"}:
                shares.append((queue - local_bits - offload) * scale)
            return np.concatenate(shares)

        start_cost = float(evaluate(observation, decode(z0))[0][0])
        cost_scale = max(abs(start_cost), 1e-9)

        def objective(z):
            return (float(evaluate(observation, decode(z))[0][0]) - start_cost) / cost_scale

        result = minimize(objective, z0, method="SLSQP", bounds=bounds,
                          constraints=[{"type": "ineq", "fun": capacity}],
                          options={"maxiter": self.config.iterations, "ftol": 1e-12})
        candidate = project(sc, decode(np.clip(result.x, 0.0, 1.0)), association)
        candidate = self.ablation.apply(observation, candidate)
        return self.bcd.solve(observation, start=candidate)
