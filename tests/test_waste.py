"""Waste never pays: a more wasteful action never lowers the P2 cost (20), in a slot or summed
over an episode (docs/model.md section 5, the fixed price eta_hat)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnopt import Scenario, Solver, held_out_seeds, make, project, run_episode
from dtnopt.lyapunov import evaluate
from dtnopt.topology import station_sum

from conftest import observe, scenarios, wild_action

EXAMPLES = 3400  # per property; three properties make the 10,000 examples of the waste check


def slot(scenario: Scenario, seed: int, warmup: int):
    """A feasible action on an observation after ``warmup`` slots, with room left in every
    station's band and CPU (shares scaled by a factor in (0.3, 1))."""
    rng = np.random.default_rng(seed)
    _, observation = observe(scenario, batch=1, seed=seed, slots=warmup)
    action = project(scenario, wild_action(rng, scenario, 1), observation.association)
    room = rng.uniform(0.3, 1.0)
    action = replace(action, bandwidth_share=action.bandwidth_share * room, edge_cpu=action.edge_cpu * room)
    return rng, observation, action


def cost(observation, action) -> float:
    value, service = evaluate(observation, action)
    return float(value[0]), service


def a_sender(scenario: Scenario, seed: int, warmup: int):
    """A slot of ``slot`` with the service it gives and one of its sending devices, drawn at
    random (None when nobody sends)."""
    rng, observation, action = slot(scenario, seed, warmup)
    _, service = cost(observation, action)
    senders = np.flatnonzero(service.offload_bits[0] > 0)
    return observation, action, service, (rng.choice(senders) if len(senders) else None)


def no_lower(wasteful: float, honest: float) -> bool:
    return wasteful >= honest - 1e-9 * max(1.0, abs(honest))


@settings(max_examples=EXAMPLES)
@given(scenarios(V=100.0), st.integers(0, 2**16), st.integers(0, 4), st.floats(1e-9, 1.0))
def test_starving_a_sender_of_edge_cpu_never_lowers_the_slot_cost(scenario, seed, warmup, factor):
    observation, action, service, device = a_sender(scenario, seed, warmup)
    if device is None:
        return
    honest, _ = cost(observation, action)
    edge_cpu = action.edge_cpu.copy()
    edge_cpu[0, device] *= factor
    wasteful, waste_service = cost(observation, replace(action, edge_cpu=edge_cpu))
    np.testing.assert_array_equal(waste_service.served, service.served)  # the same bits
    assert no_lower(wasteful, honest)


@settings(max_examples=EXAMPLES)
@given(scenarios(V=100.0), st.integers(0, 2**16), st.integers(0, 4), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_power_for_the_same_bits_never_lowers_the_slot_cost(scenario, seed, warmup, backlog, raise_by):
    observation, action, service, device = a_sender(scenario, seed, warmup)
    if device is None:
        return
    # Queue-limited sender: only ``backlog`` of what its link carries is left after local computing,
    # so more power sends the same bits faster, at more energy (p / log(1 + p g) grows with p).
    local_queue = observation.local_queue.copy()
    local_queue[0, device] = service.local_bits[0, device] + backlog * service.offload_bits[0, device]
    observation = replace(observation, local_queue=local_queue)
    honest, service = cost(observation, action)
    power = action.power.copy()
    power[0, device] += raise_by * (scenario.max_power - power[0, device])
    wasteful, waste_service = cost(observation, replace(action, power=power))
    np.testing.assert_allclose(waste_service.served, service.served, rtol=1e-12)
    assert no_lower(wasteful, honest)


@settings(max_examples=EXAMPLES)
@given(scenarios(V=100.0), st.integers(0, 2**16), st.integers(0, 4), st.floats(0.01, 1.0))
def test_a_send_that_serves_nothing_never_lowers_the_slot_cost(scenario, seed, warmup, use):
    rng, observation, action = slot(scenario, seed, warmup)
    device = int(rng.integers(scenario.devices))
    # The device's whole queue is computed locally, and it is given what is left of its station's
    # band and CPU at full power: a send with nothing to send.
    local_queue = observation.local_queue.copy()
    capacity = action.local_cpu[0, device] * (scenario.tau / scenario.cycles_per_bit)  # D^l as serve computes it
    local_queue[0, device] = min(local_queue[0, device], capacity)
    observation = replace(observation, local_queue=local_queue)
    honest, service = cost(observation, action)
    station = observation.association[0, device]
    changed = {}
    for block, capacity in (("bandwidth_share", 1.0), ("edge_cpu", scenario.station_cpu[station])):
        values = getattr(action, block).copy()
        left = capacity - station_sum(values, observation.association, scenario.stations)[0, station]
        values[0, device] += use * max(left, 0.0)
        changed[block] = values
    power = action.power.copy()
    power[0, device] = scenario.max_power
    wasteful, waste_service = cost(observation, replace(action, power=power, **changed))
    assert waste_service.offload_bits[0, device] == 0.0
    assert no_lower(wasteful, honest)


class WastefulBCD(Solver):
    """``bcd``'s decisions, except that at the first slot with a sender the sender of the largest
    offload gets only ``edge_cpu`` cycles/s of edge CPU: the same bits at (much) more energy,
    early enough for a running eta in the cost to pay the waste back over the episode."""

    name = "bcd-wasteful"

    def __init__(self, scenario: Scenario, edge_cpu: float):
        super().__init__(scenario)
        self.bcd, self.edge_cpu, self.wasted = make("bcd", scenario), edge_cpu, False

    def decide(self, observation):
        action = self.bcd.decide(observation)
        if not self.wasted:
            offload_bits = evaluate(observation, action)[1].offload_bits[0]
            if offload_bits.max() > 0:
                device = np.argmax(offload_bits)
                edge_cpu = action.edge_cpu.copy()
                edge_cpu[0, device] = min(self.edge_cpu, edge_cpu[0, device])
                action, self.wasted = replace(action, edge_cpu=edge_cpu), True
        return action


@pytest.mark.parametrize("edge_cpu", [1.0, 0.01 * Scenario().sbs_cpu])
def test_bcd_with_one_wasteful_send_never_has_a_lower_episode_cost(edge_cpu):
    scenario = Scenario(slots=40)
    for seed in held_out_seeds(10):
        honest = run_episode(make("bcd", scenario), scenario, seed=seed).kpi
        solver = WastefulBCD(scenario, edge_cpu)
        wasteful = run_episode(solver, scenario, seed=seed).kpi
        assert solver.wasted
        assert wasteful["mean_energy_j"] > honest["mean_energy_j"]
        assert no_lower(wasteful["system_cost"], honest["system_cost"]), seed
