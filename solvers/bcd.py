"""Block-coordinate descent on the per-slot problem P2 (20): the convex benchmark solver ``bcd``.

P2 is not jointly convex (at fixed power the rate is linear in the bandwidth share and
``min_p [V p tau - a x SE(p)]`` is concave in x, so optima concentrate bandwidth), but each block
is convex given the others. Every iteration runs, over the blocks the ablation leaves free:

1. **offload set** (bandwidth shares, cvxpy LP, ``BandwidthLP``): given powers and edge CPU,
   with the invariant ``R_i tau <= Q^l_i - D^l_i`` the cost is linear in x, so
   ``min sum_i k_i w_j SE_i(p_i) tau x_i`` s.t. ``sum_{i in j} x_i <= 1`` (14a) and
   ``0 <= x_i <= (Q^l_i - D^l_i) / (w_j SE_i(p_i) tau)`` (the queue cap of (10) as a convex
   constraint). Devices that do not offload are priced at p_max and a provisional edge-CPU
   share (two pricings: joining the offloading devices, or taking one's place) so they can
   enter; the powers are then re-set by water-filling and the edge CPU by its split.
2. **bandwidth for the bits** (closed form): with the offloaded bits D^e fixed, the radio energy
   ``V tau sum_i sigma^2/g_i (2^{D^e_i / (x_i w_j tau)} - 1)`` is convex in x; its KKT point
   is ``x_i = max(x_i^min, c_i ln2 / (2 omega_i))`` with ``omega`` the Wright omega function
   and one multiplier per station found by bisection (``bandwidth_for_bits``). The LP cannot
   see this: at fixed power, band beyond the queue cap is worth nothing to it.
3. **power** (water-filling, ``dtnopt.blocks.power_rule``), device by device.
4. **local CPU** (the cubic rule, ``dtnopt.blocks.local_cpu_rule``), device by device.
5. **queue split** (local CPU and power jointly): both parts are convex in the bits and share
   the queue, ``D^l + D^e <= Q^l``; blocks 3 and 4 alone stall on that coupling constraint.
   The two rules with the constraint's price nu_i, bisected per device, give the optimum.
6. **edge CPU and departures** (square-root split and ``min(f^e_j tau / c, Q^e_j)``).

It starts from the better of ``equal`` and ``greedy``, evaluates the exact P2 cost
(``dtnopt.lyapunov.evaluate``) after every block and keeps a block only if it lowers the cost
(per device for the separable blocks 3-5), so the cost never increases and the result is never
worse than either heuristic. It stops when an iteration lowers the cost by less than ``tolerance``
(relative) or after ``max_iterations``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cvxpy as cp
import numpy as np
from scipy.special import wrightomega

from dtnopt.action import Action, project
from dtnopt.blocks import (
    edge_cpu_split,
    edge_departure_rule,
    edge_weight,
    local_cpu_rule,
    offload_coefficient,
    power_rule,
    service_weight,
)
from dtnopt.channel import power_for_bits, rate, spectral_efficiency
from dtnopt.config import MBIT
from dtnopt.lyapunov import evaluate
from dtnopt.registry import register
from dtnopt.solver import NO_ABLATION, Solver, check_flags, fixed_allocation, make_config
from dtnopt.topology import station_sum

from .heuristics import GreedySolver


@dataclass(frozen=True)
class BCDConfig:
    """Hyper-parameters of ``bcd``."""

    max_iterations: int = 20  # cap on BCD sweeps per slot
    tolerance: float = 1e-6  # stop when a sweep lowers the P2 cost by less than this, relative
    cvxpy_solver: str = "CLARABEL"  # conic solver of the bandwidth LP
    rebuild: bool = False  # rebuild the cvxpy problem every solve (to measure the DPP speed-up)

    def __post_init__(self):
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) \
                or not 1 <= self.max_iterations <= 10_000:
            raise ValueError(f"max_iterations must be an integer in [1, 10000], got {self.max_iterations!r}")
        if not isinstance(self.tolerance, (int, float)) or not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be a number in [0, 1), got {self.tolerance!r}")
        if self.cvxpy_solver not in cp.installed_solvers():
            raise ValueError(f"cvxpy_solver must be one of the installed solvers "
                             f"{', '.join(cp.installed_solvers())}, got {self.cvxpy_solver!r}")
        check_flags(self, ("rebuild",))


def device_costs(observation, action: Action) -> np.ndarray:
    """(B, N) each device's share of the P2 cost (20): ``V (E_i - eta_hat Psi_i) +
    [Q^e_j D^e_i - (Q^l_i - beta_i)(Psi_i - lambda_i)] / s^2``. P2 is their sum minus
    ``sum_j Q^e_j Psi_j / s^2``, so with the edge departures fixed a per-device choice between
    two actions that share the coupled blocks lowers P2 device by device."""
    sc = observation.scenario
    _, service = evaluate(observation, action)
    energy = service.local_energy + service.offload_energy
    served = service.served
    drift = edge_weight(observation) * MBIT**2 * service.offload_bits \
        - (observation.local_queue - observation.beta) * (served - observation.arrivals)
    return sc.V * (energy - observation.eta_hat * served) + drift / MBIT**2


class BandwidthLP:
    """The offload-set block: ``min c^T x`` s.t. ``A x <= 1`` (14a), ``0 <= x <= upper``, with
    the station incidence ``A`` ((M+1) x N) a parameter, so association changes are parameter
    data. Built once per (N, M+1) (DPP) unless ``rebuild``. (A (M+1) x N share variable with
    the association in its bounds was measured 1.2-3x slower to re-solve.)"""

    def __init__(self, devices: int, stations: int, solver: str, rebuild: bool):
        self.devices, self.stations, self.solver, self.rebuild = devices, stations, solver, rebuild
        self.problem = None if rebuild else self._build()

    def _build(self):
        self.coefficient = cp.Parameter(self.devices)
        self.upper = cp.Parameter(self.devices, nonneg=True)
        self.incidence = cp.Parameter((self.stations, self.devices), nonneg=True)
        self.share = cp.Variable(self.devices)
        problem = cp.Problem(cp.Minimize(self.coefficient @ self.share),
                             [self.share >= 0, self.share <= self.upper, self.incidence @ self.share <= 1])
        assert problem.is_dpp()
        return problem

    def solve(self, coefficient: np.ndarray, upper: np.ndarray, association: np.ndarray) -> np.ndarray:
        """Shares (N,) for one environment; raises ``cp.SolverError`` on a non-optimal status."""
        problem = self._build() if self.rebuild else self.problem
        scale = np.abs(coefficient).max()
        self.coefficient.value = coefficient / scale if scale > 0 else coefficient
        self.upper.value = upper
        incidence = np.zeros((self.stations, self.devices))
        incidence[association, np.arange(self.devices)] = 1.0
        self.incidence.value = incidence
        problem.solve(solver=self.solver, enforce_dpp=True)
        if problem.status != cp.OPTIMAL:
            raise cp.SolverError(f"bandwidth LP ended with status {problem.status}")
        return np.clip(self.share.value, 0.0, upper)


def bandwidth_for_bits(observation, offload_bits: np.ndarray, iterations: int = 40) -> np.ndarray:
    """Shares (B, N) minimising the radio power ``sum_i sigma^2/g_i (2^{c_i / x_i} - 1)``,
    ``c_i = D^e_i / (w_j tau)``, that carries ``offload_bits`` (eqs. 3-4), s.t.
    ``sum_{i in j} x_i <= 1`` (14a) and ``p_i <= p_max`` (14b), i.e. ``x_i >= c_i / SE_i(p_max)``.

    Stationarity ``(sigma^2/g) ln2 (c/x^2) 2^{c/x} = mu_j`` solves in closed form as
    ``x = c ln2 / (2 omega)`` with ``omega + ln omega = (ln mu_j - a_i)/2 + ln(c_i ln2 / 2)``,
    ``a_i = ln(sigma^2 ln2 c_i / g_i)`` (Wright omega); ``ln mu_j`` is bisected so each
    station's band is used up. Devices with no bits get no band. Assumes the bits are feasible
    (the sum of the minimal shares at p_max is at most 1 at each station)."""
    sc = observation.scenario
    association = observation.association
    width = sc.station_bandwidth[association] * sc.tau
    active = (offload_bits > 0) & (observation.gain > 0)
    bits_per_hz = np.where(active, offload_bits / width, 1.0)
    with np.errstate(divide="ignore"):
        minimum = np.where(active, bits_per_hz / observation.own_spectral_efficiency, 0.0)
    ln2 = np.log(2.0)
    a = np.log(sc.noise_power * ln2 * bits_per_hz / np.where(active, observation.gain, 1.0))
    shift = np.log(bits_per_hz * ln2 / 2.0) - a / 2.0

    rows = np.arange(association.shape[0])[:, None]

    def shares(log_multiplier):
        omega = wrightomega(log_multiplier[rows, association] / 2.0 + shift).real
        with np.errstate(divide="ignore", over="ignore"):  # omega underflows to 0: share 1
            x = np.clip(bits_per_hz * ln2 / (2.0 * omega), minimum, 1.0)
        return np.where(active, x, 0.0)

    def log_marginal(x):  # ln of the power saved per unit share, decreasing in x
        return a - 2.0 * np.log(x) + bits_per_hz * ln2 / x

    # bracket: below every device's marginal at share 1 the band is over-used; above every
    # marginal at the minimal share each device sits at its minimum
    low = np.full((association.shape[0], sc.stations), np.inf)
    high = np.full_like(low, -np.inf)
    np.minimum.at(low, (rows + 0 * association, association), np.where(active, log_marginal(1.0), np.inf))
    with np.errstate(divide="ignore"):
        at_minimum = np.where(active, log_marginal(np.where(active, minimum, 1.0)), -np.inf)
    np.maximum.at(high, (rows + 0 * association, association), at_minimum)
    low = np.where(np.isfinite(low), low - 1.0, 0.0)
    high = np.where(np.isfinite(high), np.maximum(high + 1.0, low), 1.0)
    for _ in range(iterations):
        middle = (low + high) / 2.0
        over = station_sum(shares(middle), association, sc.stations) > 1.0
        low = np.where(over, middle, low)
        high = np.where(over, high, middle)
    return shares(high)


@register("bcd")
class BCDSolver(Solver):
    """Block-coordinate descent on P2 from the better of equal and greedy (see the module).

    ``failures`` counts cvxpy failures (exceptions or a non-optimal status); each falls back to
    the last feasible iterate."""

    def __init__(self, scenario, ablation=NO_ABLATION, seed=0, **hyperparameters):
        super().__init__(scenario, ablation, seed)
        self.config = make_config(BCDConfig, hyperparameters, "bcd")
        self.failures = 0
        self.greedy = GreedySolver(scenario)
        self._programs: dict = {}
        self.free = {f.name for f in fields(Action)} - set(ablation.fixed)

    # ----- the solver -----
    def decide(self, observation):
        return Action.stack([self.solve(observation.select(b)) for b in range(observation.batch)])

    def solve(self, observation, start: Action | None = None, trace: list | None = None) -> Action:
        """BCD on one environment (batch of one) from ``start`` (default: the better of
        ``equal`` and ``greedy``); appends the P2 cost after every accepted block to ``trace``."""
        action = self.start(observation) if start is None else self.ablation.apply(observation, start)
        cost = float(evaluate(observation, action)[0][0])
        if trace is not None:
            trace.append(cost)

        def accept(candidate):
            nonlocal action, cost
            candidate_cost = float(evaluate(observation, candidate)[0][0])
            if candidate_cost < cost:
                action, cost = candidate, candidate_cost
                if trace is not None:
                    trace.append(cost)

        radio = "bandwidth_share" in self.free
        for _ in range(self.config.max_iterations):
            before = cost
            if radio:
                for entrants_join in (True, False):
                    candidate = self.offload_set_step(observation, action, entrants_join)
                    if candidate is not None:
                        accept(candidate)
                accept(self.bandwidth_step(observation, action))
            if "power" in self.free:
                accept(self.power_step(observation, action))
            if "local_cpu" in self.free:
                accept(self.local_cpu_step(observation, action))
            if {"local_cpu", "power"} <= self.free:
                accept(self.queue_split_step(observation, action))
            if "edge_cpu" in self.free:
                accept(self.edge_step(observation, action))
            if before - cost <= self.config.tolerance * max(abs(before), 1e-12):
                break
        return action

    def start(self, observation) -> Action:
        """The better of ``equal`` and ``greedy`` (fixed blocks at their ablation values)."""
        candidates = [fixed_allocation(self.scenario, observation.association),
                      self.ablation.apply(observation, self.greedy.decide(observation))]
        costs = [float(evaluate(observation, a)[0][0]) for a in candidates]
        return candidates[int(np.argmin(np.nan_to_num(costs, nan=np.inf)))]  # never a nan start

    # ----- the blocks -----
    def _offloadable(self, observation, action):
        """Bits left after local computing, Q^l - D^l, (1, N)."""
        sc = self.scenario
        local_bits = np.minimum(sc.tau * action.local_cpu / sc.cycles_per_bit, observation.local_queue)
        return observation.local_queue - local_bits

    def _lp(self, devices, stations):
        key = (devices, stations)
        if key not in self._programs:
            self._programs[key] = BandwidthLP(devices, stations, self.config.cvxpy_solver, self.config.rebuild)
        return self._programs[key]

    def offload_set_step(self, observation, action, entrants_join: bool = True):
        """Block 1: the bandwidth LP at the current powers (p_max for devices not sending) and
        edge CPU, then water-filling powers, edge CPU split. A device without edge CPU is priced
        at an equal share among the offloading devices and itself (``entrants_join``) or as if
        it took one's place (an equal share among them). None on a solver failure (counted) or
        when the second pricing changes nothing."""
        sc = self.scenario
        association = observation.association
        left = self._offloadable(observation, action)
        power = np.where(action.power > 0, action.power, sc.max_power)
        if "power" not in self.free:
            power = action.power
        if not entrants_join and "edge_cpu" not in self.free:
            return None  # fixed edge CPU: one pricing only
        edge_cpu = action.edge_cpu
        if "edge_cpu" in self.free:
            # an entrant is priced at an equal share among the offloading devices and itself
            offloading = np.take_along_axis(station_sum((edge_cpu > 0).astype(float), association, sc.stations),
                                            association, axis=1)
            if not entrants_join and not np.any((edge_cpu == 0) & (offloading > 0)):
                return None  # priced as when joining: nothing new to try
            counts = np.maximum(offloading + (1.0 if entrants_join else 0.0), 1.0)
            edge_cpu = np.where(edge_cpu > 0, edge_cpu, sc.station_cpu[association] / counts)
        coefficient = offload_coefficient(observation, edge_cpu)
        bits_per_share = sc.station_bandwidth[association] * spectral_efficiency(power, observation.gain,
                                                                                sc.noise_power) * sc.tau
        usable = np.isfinite(coefficient) & (coefficient < 0) & (bits_per_share > 0) & (left > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            upper = np.where(usable, np.minimum(left / bits_per_share, 1.0), 0.0)
        value = np.where(usable, coefficient * bits_per_share, 0.0)
        try:
            share = self._lp(*association.shape[1:], sc.stations).solve(value[0], upper[0], association[0])[None]
        except (cp.SolverError, ArithmeticError, ValueError):
            self.failures += 1
            return None
        if "power" in self.free:
            power = power_rule(observation, share, coefficient, left)
        # provisional edge CPU only to count the offloaded bits that the split then serves
        candidate = replace(action, bandwidth_share=share, power=np.where(share > 0, power, 0.0), edge_cpu=edge_cpu)
        return project(sc, self._with_edge_rules(observation, candidate), association)  # LP round-off

    def bandwidth_step(self, observation, action):
        """Block 2: the band that carries the current offloaded bits at least power."""
        sc = self.scenario
        _, service = evaluate(observation, action)
        bits = service.offload_bits
        stations, association = sc.stations, observation.association
        senders = station_sum((bits > 0).astype(float), association, stations)
        held = station_sum(np.where(bits > 0, action.bandwidth_share, 0.0), association, stations)
        if np.all((senders == 0) | ((senders == 1) & (held >= 1.0))):
            return action  # no station has band to move: each has at most one sender, holding it all
        share = bandwidth_for_bits(observation, bits)
        bandwidth = share * sc.station_bandwidth[observation.association]
        power = np.minimum(power_for_bits(bits, bandwidth, observation.gain, sc), sc.max_power)
        power = np.where(share > 0, np.nan_to_num(power, nan=0.0), 0.0)
        return project(sc, replace(action, bandwidth_share=share, power=power), observation.association)

    def power_step(self, observation, action):
        """Block 3: water-filling powers, kept device by device where they lower the cost."""
        coefficient = offload_coefficient(observation, action.edge_cpu)
        power = power_rule(observation, action.bandwidth_share, coefficient, self._offloadable(observation, action))
        candidate = self._per_device_best(observation, action, replace(action, power=power), "power")
        if "bandwidth_share" in self.free:  # a silent device frees its band for the others
            candidate.bandwidth_share = np.where(candidate.power > 0, candidate.bandwidth_share, 0.0)
        return candidate

    def local_cpu_step(self, observation, action):
        """Block 4: the cubic rule, with the offloaded bits kept (cap Q^l - D^e) or not (cap
        Q^l, when the radio is fixed and may empty the buffer), device by device."""
        _, service = evaluate(observation, action)
        candidate = action
        for cap in (observation.local_queue - service.offload_bits, observation.local_queue):
            trial = replace(candidate, local_cpu=local_cpu_rule(observation, cap))
            candidate = self._per_device_best(observation, candidate, trial, "local_cpu")
        return candidate

    def queue_split_step(self, observation, action, iterations: int = 32):
        """Block 5, the queue split: local CPU and power jointly given the band and edge CPU. In the bits
        ``(D^l, D^e)`` both parts are convex and share the queue, ``D^l + D^e <= Q^l`` (10), so
        with nu_i >= 0 its price the cubic rule (weight ``u - nu``) and water-filling
        (coefficient ``k + nu``) give the optimum; nu is bisected per device until the bits fit."""
        sc = self.scenario
        queue = observation.local_queue
        weight = service_weight(observation)
        coefficient = offload_coefficient(observation, action.edge_cpu)
        unbounded = np.full_like(queue, np.inf)

        def split(price):  # the two rules at queue price nu, the offload not yet capped by the queue
            local_cpu = local_cpu_rule(observation, queue, weight=weight - price)
            local_bits = np.minimum(sc.tau * local_cpu / sc.cycles_per_bit, queue)
            power = power_rule(observation, action.bandwidth_share, coefficient + price, unbounded)
            return local_cpu, local_bits, power

        bandwidth = action.bandwidth_share * sc.station_bandwidth[observation.association]
        low = np.zeros_like(queue)
        # at nu >= max(u, -k) neither part serves anything, so the bits fit
        high = np.maximum(np.maximum(weight, np.where(np.isfinite(coefficient), -coefficient, 0.0)), 0.0)
        _, local_bits, power = split(low)
        if np.all(local_bits + rate(bandwidth, power, observation.gain, sc.noise_power) * sc.tau <= queue):
            iterations = 0  # the queue is not binding anywhere: nu = 0
            high = low
        for _ in range(iterations):
            middle = (low + high) / 2.0
            _, local_bits, power = split(middle)
            offload = rate(bandwidth, power, observation.gain, sc.noise_power) * sc.tau
            over = local_bits + offload > queue
            low = np.where(over, middle, low)
            high = np.where(over, high, middle)
        # local CPU at the feasible price; power at the over-demanding one, capped by what the
        # queue leaves: the offload is steep in nu (log of k + nu), this fills the queue exactly
        local_cpu, local_bits, _ = split(high)
        power = power_rule(observation, action.bandwidth_share, coefficient + low, queue - local_bits)
        candidate = replace(action, local_cpu=local_cpu, power=power)
        better = device_costs(observation, candidate) < device_costs(observation, action)
        return replace(action, local_cpu=np.where(better, local_cpu, action.local_cpu),
                       power=np.where(better, power, action.power))

    def edge_step(self, observation, action):
        """Block 6: square-root edge-CPU split of the offloaded bits and maximal useful departures."""
        return self._with_edge_rules(observation, action)

    def _with_edge_rules(self, observation, action):
        if "edge_cpu" not in self.free:
            return action
        _, service = evaluate(observation, action)
        return replace(action, edge_cpu=edge_cpu_split(observation, service.offload_bits),
                       edge_departure=edge_departure_rule(observation))

    @staticmethod
    def _per_device_best(observation, old, new, block):
        """``old`` with ``block`` taken from ``new`` on the devices where that is cheaper."""
        better = device_costs(observation, new) < device_costs(observation, old)
        return replace(old, **{block: np.where(better, getattr(new, block), getattr(old, block))})
