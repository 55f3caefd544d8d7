"""``dtnopt.features``: the observation vector's layout, and the service action map
(``action_from_service``): feasibility and the physics it inverts (local bits (8), the rate
formula (3)-(4), the square-root edge-CPU split (11))."""

import numpy as np
import pytest

from dtnopt import Network, Scenario, is_feasible
from dtnopt.blocks import edge_cpu_split
from dtnopt.config import MBIT
from dtnopt.action import ACTION_BLOCKS
from dtnopt.features import (SERVICE_ACTIONS, SHARE_FLOOR, SERVICE_BLOCKS, action_from_service, action_from_unit,
                             action_size, device_feature_size, gate_unit, gated_unit_action, observation_features,
                             service_action_size)
from dtnopt.channel import rate
from dtnopt.service import serve

SCENARIO = Scenario(devices=6, sbs=2)


def busy_observation(batch=3, seed=0, slots=4):
    """An observation with non-empty queues (a few slots of doing nothing)."""
    network = Network(SCENARIO, batch)
    network.reset(seed)
    idle = action_from_service(network.observation, np.zeros((batch, service_action_size(SCENARIO))))
    for _ in range(slots):
        network.step(idle)
    return network.observation


def service_vector(observation, share, offload, local, departure=1.0):
    batch, devices = observation.local_queue.shape
    entries = np.broadcast_arrays(share, offload, local, np.zeros((batch, devices)))[:3]
    per_device = np.stack(entries, axis=-1).reshape(batch, devices * 3)
    return np.concatenate([per_device, np.full((batch, SCENARIO.stations), departure)], axis=1)


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
    network = Network(scenario, batch)
    observation = network.reset(4)
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
        network.step(action_from_unit(observation, rng.random((batch, size))))
        observation = network.observation


def test_layout_names_the_blocks_an_ablation_fixes():
    assert service_action_size(SCENARIO) == len(SERVICE_ACTIONS) * SCENARIO.devices + SCENARIO.stations
    assert set(SERVICE_BLOCKS) == set(SERVICE_ACTIONS)
    assert set(SERVICE_BLOCKS.values()) <= {"bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"}


def test_random_vectors_map_onto_feasible_actions():
    observation = busy_observation()
    rng = np.random.default_rng(1)
    for _ in range(20):
        vector = rng.uniform(-0.5, 1.5, size=(observation.batch, service_action_size(SCENARIO)))
        action = action_from_service(observation, vector)
        assert is_feasible(SCENARIO, action, observation.association)
    nan = action_from_service(observation, np.full((observation.batch, service_action_size(SCENARIO)), np.nan))
    assert is_feasible(SCENARIO, nan, observation.association) and not nan.power.any()


def test_local_fraction_is_of_what_the_cpu_can_compute():
    observation = busy_observation()
    fraction = 0.3
    action = action_from_service(observation, service_vector(observation, 1.0, 0.0, fraction))
    service = serve(SCENARIO, action, observation.local_queue, observation.edge_queue, observation.association,
                    observation.gain)
    cap = SCENARIO.tau * SCENARIO.local_cpu / SCENARIO.cycles_per_bit
    np.testing.assert_allclose(service.local_bits, fraction * np.minimum(observation.local_queue, cap), rtol=1e-9)
    np.testing.assert_allclose(action.local_cpu, fraction * np.minimum(
        SCENARIO.cycles_per_bit * observation.local_queue / SCENARIO.tau, SCENARIO.local_cpu), rtol=1e-9)
    assert not service.offload_bits.any() and not action.power.any() and not action.edge_cpu.any()


@pytest.mark.parametrize("fraction", [0.4, 1.0])
def test_offload_fraction_is_of_what_the_link_carries_at_full_power(fraction):
    observation = busy_observation()
    action = action_from_service(observation, service_vector(observation, 1.0, fraction, 0.0))
    service = serve(SCENARIO, action, observation.local_queue, observation.edge_queue, observation.association,
                    observation.gain)
    bandwidth = action.bandwidth_share * SCENARIO.station_bandwidth[observation.association]
    at_full_power = rate(bandwidth, SCENARIO.max_power, observation.gain, SCENARIO.noise_power) * SCENARIO.tau
    limited_by_link = at_full_power < observation.local_queue
    assert limited_by_link.any() and (~limited_by_link).any()  # both regimes occur in this observation
    np.testing.assert_allclose(service.offload_bits, fraction * np.minimum(observation.local_queue, at_full_power),
                               rtol=1e-6)
    assert (action.power <= SCENARIO.max_power).all()
    if fraction == 1.0:
        np.testing.assert_allclose(action.power[limited_by_link], SCENARIO.max_power, rtol=1e-9)
    assert (action.power[~limited_by_link] < SCENARIO.max_power).all()  # least power, not p_max
    # Radio energy is p tau: the buffer never empties before the slot ends.
    radio = service.offload_energy - SCENARIO.edge_power * SCENARIO.cycles_per_bit * np.divide(
        service.offload_bits, action.edge_cpu, out=np.zeros_like(action.edge_cpu), where=action.edge_cpu > 0)
    np.testing.assert_allclose(radio, action.power * SCENARIO.tau, rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(action.edge_cpu, edge_cpu_split(observation, service.offload_bits), rtol=1e-6)


@pytest.mark.parametrize("departure", [0.0, 0.25, 1.0])
def test_departure_is_a_fraction_of_the_station_capacity(departure):
    observation = busy_observation()
    action = action_from_service(observation, service_vector(observation, 1.0, 0.5, 0.5, departure))
    capacity = SCENARIO.station_cpu * SCENARIO.tau / SCENARIO.cycles_per_bit
    expected = np.broadcast_to(departure * capacity, action.edge_departure.shape)
    np.testing.assert_allclose(action.edge_departure, expected)


def test_band_goes_to_the_senders_in_proportion_to_floor_plus_weight():
    observation = busy_observation(batch=1)
    weights = np.linspace(0.0, 0.6, SCENARIO.devices)[None]
    offload = np.full((1, SCENARIO.devices), 0.5)
    offload[0, 1] = 0.0  # device 1 sends nothing
    action = action_from_service(observation, service_vector(observation, weights, offload, 0.0))
    assert action.bandwidth_share[0, 1] == 0 and action.power[0, 1] == 0
    senders = (weights + SHARE_FLOOR) * (offload > 0)
    association = observation.association[0]
    for station in np.unique(association):
        at = association == station
        if senders[0, at].sum() > 0:
            np.testing.assert_allclose(action.bandwidth_share[0, at], senders[0, at] / senders[0, at].sum())
    assert action.bandwidth_share[0, 0] > 0  # a sender whose weight entry is 0 still gets a band
