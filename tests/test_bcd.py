"""The block-coordinate solver ``bcd`` and the ``reference`` optimum: closed-form
blocks against their cvxpy forms, monotone descent, never worse than the heuristics, ablations,
DPP, failure fallback and validation."""

from __future__ import annotations

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings

from dtnopt import Scenario, check_feasible, fixed_allocation
from dtnopt.blocks import edge_cpu_split, local_cpu_rule, offload_coefficient, power_rule, service_weight
from dtnopt.channel import power_for_bits, rate
from dtnopt.config import MBIT
from dtnopt.loop import slots as loop_slots
from dtnopt.lyapunov import evaluate, perturbation
from dtnopt.registry import make
from dtnopt.topology import station_sum
from solvers.bcd import BandwidthLP, bandwidth_for_bits, device_costs
from solvers.heuristics import fill_by_value

from conftest import observe, scenarios

MEDIUM = Scenario(devices=12, sbs=2, slots=40)


def busy_observations(scenario=MEDIUM, slots=(15, 25, 35), seed=3, V_values=(100.0,)):
    """Observations (batch of one) of a greedy-driven episode at ``slots``, with busy queues."""
    found = []
    for V in V_values:
        sc = scenario.replace(V=V)
        found += [slot.observation for slot in loop_slots(make("greedy", sc), sc, seed) if slot.index in slots]
    return found


def cost(observation, action) -> float:
    return float(evaluate(observation, action)[0][0])


# ----- closed-form blocks against their cvxpy forms -----

def random_blocks(seed):
    """A busy observation with random V, queues and price eta_hat (service weights of both signs)."""
    rng = np.random.default_rng(seed)
    (observation,) = busy_observations(slots=(20,), seed=seed, V_values=(float(rng.choice([10.0, 100.0, 1000.0])),))
    sc = observation.scenario.replace(eta0=float(rng.uniform(0, 0.05)))  # the price eta_hat, J/Mbit
    observation = replace(observation, scenario=sc,
                          local_queue=rng.uniform(0, 2, (1, sc.devices)) * observation.psi_max[:, None],
                          edge_queue=rng.uniform(0, 20, (1, sc.stations)) * MBIT,
                          beta=perturbation(sc, observation.psi_max, sc.devices))
    return rng, observation


@pytest.mark.parametrize("seed", range(3))
def test_local_cpu_rule_matches_cvxpy(seed):
    rng, observation = random_blocks(seed)
    sc = observation.scenario
    cap = rng.uniform(0, 1.5, (1, sc.devices)) * sc.local_capacity_bits
    rule = local_cpu_rule(observation, cap)
    u = service_weight(observation)[0]
    ghz = cp.Variable(sc.devices, nonneg=True)  # f^l in GHz keeps the problem well scaled
    upper = np.minimum(sc.local_cpu, sc.cycles_per_bit * cap[0] / sc.tau) / 1e9
    objective = sc.V * sc.switched_capacitance * sc.tau * 1e27 * cp.sum(cp.power(ghz, 3)) \
        - sc.tau * 1e9 / sc.cycles_per_bit * (u @ ghz)
    problem = cp.Problem(cp.Minimize(objective), [ghz <= upper])
    problem.solve(solver="CLARABEL")
    value = lambda f: sc.V * sc.switched_capacitance * sc.tau * np.sum(f**3) - sc.tau / sc.cycles_per_bit * u @ f
    assert value(rule[0]) <= value(ghz.value * 1e9) + 1e-9 * max(1.0, abs(problem.value))
    np.testing.assert_allclose(rule[0] / 1e9, ghz.value, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_power_rule_matches_cvxpy(seed):
    rng, observation = random_blocks(seed)
    sc = observation.scenario
    share = rng.uniform(0.05, 0.5, (1, sc.devices))
    coefficient = -rng.uniform(0.1, 5.0, (1, sc.devices)) * sc.V * 1e-3 / MBIT  # offloading pays
    cap = rng.uniform(0.1, 20.0, (1, sc.devices)) * MBIT
    rule = power_rule(observation, share, coefficient, cap)
    # in the spectral efficiency s = log2(1 + p g / sigma^2), each device's term divided by
    # -k x w tau > 0 (separable): exp(s ln2 + ln(V tau sigma^2 / g / (-k x w tau))) - s
    bandwidth = (share * sc.station_bandwidth[observation.association])[0]
    noise_over_gain = sc.noise_power / observation.gain[0]
    cap_power = np.minimum(sc.max_power, power_for_bits(cap, share * sc.station_bandwidth[observation.association],
                                                        observation.gain, sc))[0]
    efficiency = cp.Variable(sc.devices, nonneg=True)
    offset = np.log(sc.V * sc.tau * noise_over_gain / (-coefficient[0] * bandwidth * sc.tau))
    problem = cp.Problem(cp.Minimize(cp.sum(cp.exp(np.log(2.0) * efficiency + offset) - efficiency)),
                         [efficiency <= np.log2(1 + cap_power / noise_over_gain)])
    problem.solve(solver="CLARABEL")
    value = lambda p: sc.V * p * sc.tau + coefficient[0] * rate(bandwidth, p, observation.gain[0], sc.noise_power) * sc.tau
    cvx_power = np.clip(np.expm1(efficiency.value * np.log(2.0)) * noise_over_gain, 0, None)
    assert np.all(value(rule[0]) <= value(cvx_power) + 1e-6 * np.abs(value(cvx_power)) + 1e-9)
    np.testing.assert_allclose(rule[0], cvx_power, rtol=2e-3, atol=1e-7 * sc.max_power)  # interior-point accuracy


@pytest.mark.parametrize("seed", range(3))
def test_edge_cpu_split_matches_cvxpy(seed):
    rng, observation = random_blocks(seed)
    sc = observation.scenario
    bits = rng.uniform(0, 10, (1, sc.devices)) * MBIT * (rng.uniform(size=(1, sc.devices)) > 0.3)
    rule = edge_cpu_split(observation, bits)
    association = observation.association[0]
    active = bits[0] > 0
    share = cp.Variable(int(active.sum()), nonneg=True)  # f^e as a fraction of its station's CPU
    station_cpu = sc.station_cpu[association[active]]
    weight = bits[0, active] / station_cpu
    objective = cp.sum(cp.multiply(weight / weight.max(), cp.inv_pos(share)))  # epsilon c dropped: a constant
    incidence = (association[active][None, :] == np.arange(sc.stations)[:, None]).astype(float)
    problem = cp.Problem(cp.Minimize(objective), [incidence @ share <= 1])
    problem.solve(solver="CLARABEL")
    edge_energy = lambda f: np.sum(bits[0, active] / f)
    assert edge_energy(rule[0, active]) <= edge_energy(share.value * station_cpu) * (1 + 1e-6)  # cvxpy: 1e-8 slack
    np.testing.assert_allclose(rule[0, active], share.value * station_cpu, rtol=2e-3)
    assert np.all(rule[0, ~active] == 0)
    assert np.all(station_sum(rule, observation.association, sc.stations) <= sc.station_cpu * (1 + 1e-12))


@pytest.mark.parametrize("seed", range(3))
def test_bandwidth_for_bits_matches_cvxpy(seed):
    """Block 2: the least-power band for given bits, the Wright-omega KKT form against
    ``cp.exp(c ln2 * cp.inv_pos(x))``."""
    rng, observation = random_blocks(seed)
    sc = observation.scenario
    association = observation.association[0]
    width = sc.station_bandwidth[association] * sc.tau
    active = rng.uniform(size=sc.devices) > 0.3
    # bits each device could carry on an equal share at a random power
    counts = np.bincount(association, minlength=sc.stations)[association]
    power = rng.uniform(0.05, 1.0, sc.devices) * sc.max_power
    bits = np.where(active, rate(width / sc.tau / counts, power, observation.gain[0], sc.noise_power) * sc.tau, 0.0)
    shares = bandwidth_for_bits(observation, bits[None])[0]
    assert np.all(station_sum(shares[None], observation.association, sc.stations) <= 1 + 1e-12)
    assert np.all(shares[~active] == 0)
    noise_over_gain = sc.noise_power / observation.gain[0, active]
    exponent = bits[active] / width[active] * np.log(2.0)
    x = cp.Variable(int(active.sum()), nonneg=True)
    offset = np.log(noise_over_gain / noise_over_gain.max())
    incidence = (association[active][None, :] == np.arange(sc.stations)[:, None]).astype(float)
    objective = cp.sum(cp.exp(cp.multiply(exponent, cp.inv_pos(x)) + offset))
    minimum = exponent / np.log(2.0) / observation.own_spectral_efficiency[0, active]
    problem = cp.Problem(cp.Minimize(objective), [incidence @ x <= 1, x >= minimum])
    problem.solve(solver="CLARABEL")
    power_of = lambda share: np.sum(noise_over_gain * np.expm1(exponent / share))
    assert power_of(shares[active]) <= power_of(x.value) * (1 + 1e-5)
    np.testing.assert_allclose(shares[active], x.value, rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_queue_split_matches_cvxpy(seed):
    """Block 5: local CPU and power jointly, against cvxpy on the bits (Mbit) ``D^l`` and the
    spectral efficiency ``s``: ``V varsigma c^3 D^3 / tau^2 - u D + V tau sigma^2/g (2^s - 1)
    + k x w tau s`` s.t. ``D + x w tau s <= Q^l`` (``cp.power`` and ``cp.exp``)."""
    rng = np.random.default_rng(seed)
    (observation,) = busy_observations(slots=(20,), seed=seed, V_values=(10.0,))
    sc = observation.scenario
    solver = make("bcd", sc)
    # Short queues all computed locally, no perturbation, empty edge buffers and a large edge
    # CPU (a block test: f^e is given): offloading pays, the queue binds, and blocks 3-4 alone
    # cannot move (no room to offload, and local computing is worth keeping).
    observation = replace(observation, local_queue=rng.uniform(0.3, 1.0, (1, sc.devices)) * sc.local_capacity_bits,
                          beta=0.0 * observation.beta, edge_queue=0.0 * observation.edge_queue)
    share = rng.uniform(0.05, 0.5, (1, sc.devices))
    start = replace(fixed_allocation(sc, observation.association), bandwidth_share=share, power=0.0 * share,
                    edge_cpu=sc.station_cpu[observation.association] / 2.0)
    step = solver.queue_split_step(observation, start)
    stalled = solver.local_cpu_step(observation, solver.power_step(observation, start))
    assert np.any(device_costs(observation, step) < device_costs(observation, stalled) - 1e-6)
    u = service_weight(observation)[0] * MBIT
    k = offload_coefficient(observation, start.edge_cpu)[0] * MBIT
    noise_over_gain = sc.noise_power / observation.gain[0]
    bits_per_efficiency = (share * sc.station_bandwidth[observation.association])[0] * sc.tau / MBIT
    queue = observation.local_queue[0] / MBIT
    local_bits = cp.Variable(sc.devices, nonneg=True)
    efficiency = cp.Variable(sc.devices, nonneg=True)
    radio = sc.V * sc.tau * noise_over_gain
    objective = (sc.V * sc.switched_capacitance * sc.cycles_per_bit**3 / sc.tau**2 * MBIT**3) * cp.power(local_bits, 3) \
        - cp.multiply(u, local_bits) + cp.exp(np.log(2.0) * efficiency + np.log(radio)) - radio \
        + cp.multiply(k * bits_per_efficiency, efficiency)
    constraints = [local_bits + cp.multiply(bits_per_efficiency, efficiency) <= queue,
                   local_bits <= min(sc.local_capacity_bits / MBIT, queue.max()), local_bits <= queue,
                   efficiency <= observation.own_spectral_efficiency[0]]
    problem = cp.Problem(cp.Minimize(cp.sum(objective)), constraints)
    problem.solve(solver="CLARABEL")
    # cvxpy's answer as an action, priced by the model (interior-point round-off may leave it
    # a hair outside the queue constraint, which the model's min() then clips)
    cvx_action = replace(start, local_cpu=np.clip(local_bits.value * MBIT * sc.cycles_per_bit / sc.tau, 0, sc.local_cpu)[None],
                         power=np.clip(np.expm1(np.log(2.0) * efficiency.value) * noise_over_gain, 0, sc.max_power)[None])
    ours, theirs = device_costs(observation, step)[0], device_costs(observation, cvx_action)[0]
    assert np.all(ours <= theirs + 1e-6 * np.abs(theirs) + 1e-9)
    constant = ((observation.local_queue - observation.beta) * observation.arrivals)[0] / MBIT**2
    np.testing.assert_allclose(ours, objective.value + constant, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_bandwidth_lp_is_dpp_and_solves_the_fractional_knapsack(seed):
    """Block 1: the cvxpy LP (built once, association as parameter data) against the
    fractional knapsack of ``fill_by_value``, on several associations in a row."""
    rng = np.random.default_rng(seed)
    devices, stations = 9, 3
    program = BandwidthLP(devices, stations, "CLARABEL", rebuild=False)
    assert program.problem.is_dpp()
    for _ in range(3):
        association = rng.integers(0, stations, size=devices)
        value = rng.uniform(-1, 3, devices)
        width = rng.uniform(0, 0.7, devices)
        upper = np.where(value > 0, width, 0.0)
        share = program.solve(-value, upper, association)
        knapsack = fill_by_value(value[None], width[None], association[None], stations)[0]
        assert np.all(np.bincount(association, weights=share, minlength=stations) <= 1 + 1e-7)
        assert np.all(share <= upper + 1e-12)
        assert value @ share == pytest.approx(value @ knapsack, rel=1e-6, abs=1e-9)


def test_device_costs_add_up_to_the_p2_cost():
    for observation in busy_observations(slots=(20,)):
        action = make("greedy", observation.scenario).act(observation)
        _, service = evaluate(observation, action)
        station = (observation.edge_queue * service.edge_departure).sum(axis=1) / MBIT**2
        assert device_costs(observation, action).sum(axis=1) - station == pytest.approx(cost(observation, action))


# ----- the descent -----

@pytest.mark.parametrize("name", ["bcd", "bcd-no-cpu", "bcd-no-radio"])
def test_cost_never_increases_and_never_worse_than_heuristics(name):
    for observation in busy_observations(V_values=(10.0, 1000.0)):
        sc = observation.scenario
        solver = make(name, sc)
        trace = []
        action = solver.ablation.apply(observation, solver.solve(observation, trace=trace))
        check_feasible(sc, action, observation.association)
        assert np.all(np.diff(trace) < 0)  # only improving blocks are kept
        assert cost(observation, action) == pytest.approx(trace[-1])
        for heuristic in ("equal", "greedy"):
            baseline = solver.ablation.apply(observation, make(heuristic, sc).act(observation))
            assert cost(observation, action) <= cost(observation, baseline) + 1e-9


def test_bcd_improves_on_greedy_somewhere():
    """The blocks do real work: on busy slots at V = 1000, bcd beats greedy on some."""
    observations = busy_observations(slots=(10, 15, 20, 25, 30, 35), V_values=(1000.0,))
    gains = [cost(o, make("greedy", o.scenario).act(o)) - cost(o, make("bcd", o.scenario).act(o))
             for o in observations]
    assert max(gains) > 1e-3


def test_ablations_optimise_the_free_blocks_only():
    for observation in busy_observations(V_values=(1000.0,)):
        sc = observation.scenario
        fixed = fixed_allocation(sc, observation.association)
        for name, blocks in (("bcd-no-cpu", ("local_cpu", "edge_cpu", "edge_departure")),
                             ("bcd-no-radio", ("bandwidth_share", "power"))):
            solver = make(name, sc)
            decided = solver.decide(observation)  # before the loop overwrites anything
            for block in blocks:
                np.testing.assert_array_equal(getattr(decided, block), getattr(fixed, block))
            assert cost(observation, decided) <= cost(observation, fixed) + 1e-9
    # somewhere each ablation improves on the fixed allocation
    observation = busy_observations(slots=(30,), V_values=(1000.0,))[0]
    fixed_cost = cost(observation, fixed_allocation(observation.scenario, observation.association))
    for name in ("bcd-no-cpu", "bcd-no-radio"):
        assert cost(observation, make(name, observation.scenario).act(observation)) < fixed_cost - 1e-6


def test_solver_failure_falls_back_and_is_counted(monkeypatch):
    def fail(self, *args):
        raise cp.SolverError("forced failure")

    monkeypatch.setattr(BandwidthLP, "solve", fail)
    observation = busy_observations(slots=(20,))[0]
    solver = make("bcd", observation.scenario)
    start = solver.start(observation)
    action = solver.act(observation)
    check_feasible(observation.scenario, action, observation.association)
    assert solver.failures >= 1
    assert cost(observation, action) <= cost(observation, start)


def test_rebuild_gives_the_same_decision():
    observation = busy_observations(slots=(25,), V_values=(1000.0,))[0]
    dpp = make("bcd", observation.scenario).act(observation)
    rebuilt = make("bcd", observation.scenario, rebuild=True).act(observation)
    assert cost(observation, rebuilt) == pytest.approx(cost(observation, dpp), rel=1e-6)


@settings(max_examples=12)
@given(scenarios(slots=8))
def test_feasible_on_random_scenarios(scenario):
    environments, observation = observe(scenario, batch=2, seed=scenario.seed % 1000, slots=4)
    solver = make("bcd", scenario)
    action = solver.act(observation)
    check_feasible(scenario, action, observation.association)
    assert solver.failures == 0
    for b in range(2):
        sub = observation.select(b)
        assert cost(sub, action.select(b)) <= cost(sub, make("greedy", scenario).act(sub)) + 1e-9 * max(
            1.0, abs(cost(sub, action.select(b))))


# ----- reference and validation -----

def test_reference_is_at_least_as_good_as_bcd():
    observation = busy_observations(Scenario(devices=4, sbs=1), slots=(20,), V_values=(1000.0,))[0]
    sc = observation.scenario
    reference = make("reference", sc, random_starts=2, iterations=50)
    action = reference.act(observation)
    check_feasible(sc, action, observation.association)
    assert cost(observation, action) <= cost(observation, make("bcd", sc).act(observation)) + 1e-12


@pytest.mark.parametrize("field, value", [("max_iterations", 0), ("tolerance", -1.0), ("cvxpy_solver", "NOPE"),
                                          ("rebuild", "yes")])
def test_bcd_rejects_bad_hyperparameters(field, value):
    with pytest.raises(ValueError, match=field):
        make("bcd", MEDIUM, **{field: value})


def test_reference_rejects_large_networks():
    with pytest.raises(ValueError, match="devices"):
        make("reference", Scenario(devices=20))
    with pytest.raises(ValueError, match="random_starts"):
        make("reference", Scenario(devices=3), random_starts=-1)
