"""``dtnopt.features``: the observation vector's layout, and the gated unit map (the compiled
loop against its numpy composition; feasibility)."""

import numpy as np
import pytest

from dtnopt import Environments, Scenario, is_feasible
from dtnopt.config import MBIT
from dtnopt.action import ACTION_BLOCKS
from dtnopt.features import (action_from_unit, action_size, device_feature_size, gate_unit, gated_unit_action,
                             observation_features)

SCENARIO = Scenario(devices=6, sbs=2)


def busy_observation(batch=3, seed=0, slots=4):
    """An observation with non-empty queues (a few slots of doing nothing)."""
    environments = Environments(SCENARIO, batch)
    environments.reset(seed)
    idle = action_from_unit(environments.observation, np.zeros((batch, action_size(SCENARIO))))
    for _ in range(slots):
        environments.step(idle)
    return environments.observation


@pytest.mark.parametrize("slots", [6, 20])  # local queues below beta after 6 idle slots, above after 20
def test_observation_vector_follows_the_documented_layout(slots):
    observation = busy_observation(batch=2, slots=slots)
    vector = observation_features(observation)
    unit = SCENARIO.arrival_mean
    devices, width, stations = SCENARIO.devices, device_feature_size(SCENARIO), SCENARIO.stations
    assert vector.dtype == np.float32 and vector.shape == (2, devices * width + stations + 3)
    per_device = vector[:, : devices * width].reshape(2, devices, width)
    excess = observation.local_queue - observation.beta
    assert ((excess < 0) if slots == 6 else (excess > 0)).all()
    expected = np.concatenate([
        np.stack([np.log1p(observation.local_queue / unit), np.log1p(observation.arrivals / unit),
                  observation.own_spectral_efficiency / 32.0,
                  np.log1p(np.maximum(excess, 0.0) / unit) - np.log1p(np.maximum(-excess, 0.0) / unit)], axis=2),
        observation.device_position / SCENARIO.area,
        np.eye(stations)[observation.association],
    ], axis=2)
    np.testing.assert_allclose(per_device, expected, rtol=1e-6, atol=1e-7)
    rest = vector[:, devices * width:]
    np.testing.assert_allclose(rest[:, :stations], np.log1p(observation.edge_queue / unit), rtol=1e-6)
    np.testing.assert_allclose(rest[:, stations:], np.stack(
        [observation.eta * MBIT * 10.0, np.log1p(observation.psi_max / unit),
         np.full(2, observation.slot / SCENARIO.slots)], axis=1), rtol=1e-6)


@pytest.mark.parametrize("scenario, batch", [(Scenario(), 1), (Scenario(devices=9, sbs=5), 4), (SCENARIO, 3)])
def test_compiled_gated_map_has_the_bits_of_gate_then_map(scenario, batch):
    """``gated_unit_action`` (one compiled loop) against ``action_from_unit(gate_unit(...))`` on
    unit vectors with entries out of the box, zeros, ties and NaN, in float64 and float32: equal
    bit for bit."""
    rng = np.random.default_rng(5)
    environments = Environments(scenario, batch)
    observation = environments.reset(4)
    size = action_size(scenario)
    for _ in range(8):
        vectors = [rng.normal(0.3, 0.6, (batch, size)), np.round(rng.random((batch, size)), 1),
                   np.where(rng.random((batch, size)) < 0.3, 0.0, rng.random((batch, size))),
                   np.where(rng.random((batch, size)) < 0.1, np.nan, rng.random((batch, size))),
                   rng.normal(0.3, 0.6, (batch, size)).astype(np.float32)]  # a policy's output is float32
        for unit in vectors:
            for gate, one_sender in ((True, True), (True, False), (False, False)):
                gated = gate_unit(observation, unit, offloaders=int(one_sender)) if gate else unit
                expected = action_from_unit(observation, gated)
                got = gated_unit_action(observation, unit, gate, int(one_sender))
                for name in ACTION_BLOCKS:
                    np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
        environments.step(action_from_unit(observation, rng.random((batch, size))))
        observation = environments.observation


def test_random_vectors_map_onto_feasible_actions():
    observation = busy_observation()
    rng = np.random.default_rng(1)
    for _ in range(20):
        vector = rng.uniform(-0.5, 1.5, size=(observation.batch, action_size(SCENARIO)))
        for gate in (False, True):
            action = gated_unit_action(observation, vector, gate, offloaders=int(gate))
            assert is_feasible(SCENARIO, action, observation.association)
