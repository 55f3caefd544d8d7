"""The digital twin (docs/model.md sections 1, 6): a perfect mirror by default; the deviation options change
what solvers observe but never the plant."""

from __future__ import annotations

import numpy as np
import pytest

from dtnopt import Action, Environments, Scenario
from dtnopt.action import max_departure
from dtnopt.topology import coverage

BASE = Scenario(devices=8, sbs=3, slots=30, speed_max=20.0, sbs_coverage=150.0)


def local_only(scenario: Scenario, batch: int) -> Action:
    """An action that ignores the observation, so two runs differ only through the twin."""
    zeros = np.zeros((batch, scenario.devices))
    return Action(zeros, zeros, np.full_like(zeros, 0.5 * scenario.local_cpu), zeros,
                  max_departure(scenario, batch))


def run(scenario: Scenario, slots: int = 12, batch: int = 2, seed: int = 5):
    environments = Environments(scenario, batch)
    environments.reset(seed)
    trace = []
    for _ in range(slots):
        observation = environments.observation
        plant = environments.plant
        trace.append((observation, plant.position, plant.link_gain, plant.arrivals, plant.local_queue))
        environments.step(local_only(scenario, batch))
    return trace


def test_perfect_mirror_shows_the_plant():
    environments = Environments(BASE, 2)
    observation = environments.reset(1)
    plant = environments.plant
    np.testing.assert_array_equal(observation.device_position, plant.position)
    np.testing.assert_array_equal(observation.association, plant.association)
    np.testing.assert_array_equal(observation.gain, plant.gain)
    np.testing.assert_array_equal(observation.local_queue, plant.local_queue)
    np.testing.assert_array_equal(observation.arrivals, plant.arrivals)
    expected = np.log2(1 + BASE.max_power * plant.link_gain / BASE.noise_power)
    covered = coverage(BASE, plant.distance)
    np.testing.assert_allclose(observation.spectral_efficiency[covered], expected[covered], rtol=1e-12)
    assert np.all(observation.spectral_efficiency[~covered] == 0)  # the paper's R(t): zero off coverage
    np.testing.assert_allclose(observation.own_spectral_efficiency,
                               np.log2(1 + BASE.max_power * plant.gain / BASE.noise_power), rtol=1e-12)
    np.testing.assert_array_equal(observation.station_cpu, BASE.station_cpu)
    assert observation.max_power == BASE.max_power and observation.slot == 0


@pytest.mark.parametrize("deviation", [{"twin_gain_error": 0.3}, {"twin_staleness": 3},
                                       {"twin_gain_error": 0.5, "twin_staleness": 2}])
def test_deviation_changes_the_observation_but_not_the_plant(deviation):
    exact = run(BASE)
    deviated = run(BASE.replace(**deviation))
    for (obs_a, *plant_a), (obs_b, *plant_b) in zip(exact, deviated):
        for a, b in zip(plant_a, plant_b):
            np.testing.assert_array_equal(a, b)  # positions, link gains, arrivals, queues
        np.testing.assert_array_equal(obs_a.local_queue, obs_b.local_queue)
    if "twin_gain_error" in deviation:
        assert not np.allclose(exact[5][0].gain, deviated[5][0].gain)
        assert not np.allclose(exact[5][0].spectral_efficiency, deviated[5][0].spectral_efficiency)
    if "twin_staleness" in deviation:
        k = deviation["twin_staleness"]
        for t in range(len(exact)):
            np.testing.assert_array_equal(deviated[t][0].device_position, exact[max(t - k, 0)][1])
        assert not np.array_equal(deviated[6][0].device_position, exact[6][1])


def test_gain_error_has_the_configured_relative_spread():
    scenario = Scenario(devices=400, twin_gain_error=0.2)
    environments = Environments(scenario, 20)
    observation = environments.reset(0)
    ratio = observation.gain / environments.plant.gain
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    assert ratio.std() == pytest.approx(0.2, abs=0.01)


def test_actions_decided_on_a_stale_twin_are_projected_onto_the_plant_stations():
    from dtnopt import fixed_allocation, project
    from dtnopt.service import serve

    scenario = BASE.replace(twin_staleness=4, speed_max=200.0)
    environments = Environments(scenario, 2)
    observation = environments.reset(2)
    plant = environments.plant
    mismatched = 0
    for _ in range(15):
        action = fixed_allocation(scenario, observation.association)  # feasible on the twin's stations
        executed = project(scenario, action, plant.association)
        expected = serve(scenario, executed, plant.local_queue, plant.edge_queue, plant.association, plant.gain)
        mismatched += int(np.any(observation.association != plant.association))
        result = environments.step(action)
        np.testing.assert_array_equal(result.service.offload_bits, expected.offload_bits)
        np.testing.assert_array_equal(result.service.offload_energy, expected.offload_energy)
        observation = environments.observation
    assert mismatched > 0  # the twin really was behind the plant


def test_observation_select_keeps_a_batch_axis():
    environments = Environments(BASE, 3)
    observation = environments.reset(0)
    one = observation.select(1)
    assert one.batch == 1 and one.local_queue.shape == (1, BASE.devices)
    assert one.spectral_efficiency.shape == (1, BASE.devices, BASE.stations)
    np.testing.assert_array_equal(one.gain[0], observation.gain[1])
    np.testing.assert_array_equal(one.station_position, observation.station_position)
