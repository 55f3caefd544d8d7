"""The plant and the Lyapunov quantities against independent computations of docs/model.md sections 1-5:
association, mobility, rates (3)-(4), service and queues (5)-(10), energy (9)-(12), the P2 cost
(20), scenario validation, and batch independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnopt import MBIT, Action, Environments, Scenario, fixed_allocation, project
from dtnopt.lyapunov import p2_cost
from dtnopt.service import serve
from dtnopt.topology import station_positions

from conftest import scenarios, wild_action


def advance(scenario: Scenario, batch: int, seed: int, slots: int):
    """A network after ``slots`` slots of random projected actions (non-trivial queues)."""
    rng = np.random.default_rng(seed)
    environments = Environments(scenario, batch)
    environments.reset(seed)
    for _ in range(slots):
        environments.step(wild_action(rng, scenario, batch), check=False)
    return environments, rng


# --- topology: association and mobility (docs/model.md section 1) ---

@settings(max_examples=25)
@given(scenarios(), st.integers(0, 5))
def test_association_is_the_nearest_covering_sbs_else_the_mbs(scenario, slots):
    environments, _ = advance(scenario, 2, scenario.seed % 1000, slots)
    plant = environments.plant
    stations = station_positions(scenario)
    for b in range(2):
        for i in range(scenario.devices):
            x, y = plant.position[b, i]
            distances = [math.hypot(x - sx, y - sy) for sx, sy in stations]
            covering = [j for j in range(1, scenario.stations) if distances[j] < scenario.sbs_coverage]
            expected = min(covering, key=lambda j: distances[j]) if covering else 0
            assert plant.association[b, i] == expected


def test_stations_are_the_mbs_at_the_centre_and_sbss_on_the_ring():
    scenario = Scenario(sbs=4, area=600.0, sbs_ring=0.3)
    stations = station_positions(scenario)
    np.testing.assert_allclose(stations[0], [300.0, 300.0])
    np.testing.assert_allclose(np.hypot(*(stations[1:] - 300.0).T), 180.0)
    assert len({tuple(np.round(s, 6)) for s in stations}) == 5


@settings(max_examples=15)
@given(scenarios(devices=20), st.floats(0.0, 1e3))
def test_mobility_stays_inside_the_area_and_moves_at_most_speed_tau(scenario, speed):
    scenario = scenario.replace(speed_max=speed)
    environments = Environments(scenario)
    environments.reset(scenario.seed)
    plant = environments.plant
    for _ in range(10):
        before = plant.position
        environments.step(fixed_allocation(scenario, environments.observation.association))
        assert np.all((plant.position >= 0.0) & (plant.position <= scenario.area))
        if speed * scenario.tau <= scenario.area:  # one reflection at most: the step is no longer
            assert np.all(np.hypot(*(plant.position - before).T) <= speed * scenario.tau * (1 + 1e-9) + 1e-9)


def test_mobility_reflects_even_steps_much_longer_than_the_area():
    scenario = Scenario(area=1.0, speed_max=1000.0, tau=10.0, devices=50)
    environments = Environments(scenario)
    environments.reset(0)
    for _ in range(5):
        environments.step(fixed_allocation(scenario, environments.observation.association))
        assert np.all((environments.plant.position >= 0.0) & (environments.plant.position <= 1.0))


# --- channel, service, queues and energy (docs/model.md sections 2-4) ---

def expected_service(scenario: Scenario, action: Action, local_queue, edge_queue, association, gain):
    """(3)-(12) device by device in plain Python: (local bits, offloaded bits, local energy,
    offload energy, edge departures)."""
    tau, c = scenario.tau, scenario.cycles_per_bit
    batch, devices = local_queue.shape
    local, offload, e_local, e_offload = (np.zeros((batch, devices)) for _ in range(4))
    for b in range(batch):
        for i in range(devices):
            station = association[b, i]
            band = scenario.mbs_bandwidth if station == 0 else scenario.sbs_bandwidth
            share, power = action.bandwidth_share[b, i], action.power[b, i]
            f_local, f_edge = action.local_cpu[b, i], action.edge_cpu[b, i]
            rate = share * band * math.log2(1.0 + power * gain[b, i] / scenario.noise_power)  # (3)-(4)
            local[b, i] = min(tau * f_local / c, local_queue[b, i])  # (8)
            if share > 0 and power > 0 and f_edge > 0 and rate > 0:
                offload[b, i] = max(min(rate * tau, local_queue[b, i] - local[b, i]), 0.0)  # (10)
                e_offload[b, i] = power * offload[b, i] / rate + scenario.edge_power * c * offload[b, i] / f_edge
            e_local[b, i] = scenario.switched_capacitance * c * local[b, i] * f_local**2  # (9)
    departures = np.minimum(action.edge_departure, edge_queue)
    return local, offload, e_local, e_offload, departures


@settings(max_examples=80)
@given(scenarios(), st.integers(0, 6))
def test_service_rates_and_energy_follow_the_model(scenario, slots):
    environments, rng = advance(scenario, 2, scenario.seed % 997, slots)
    plant = environments.plant
    action = project(scenario, wild_action(rng, scenario, 2), plant.association)
    service = serve(scenario, action, plant.local_queue, plant.edge_queue, plant.association, plant.gain)
    local, offload, e_local, e_offload, departures = expected_service(
        scenario, action, plant.local_queue, plant.edge_queue, plant.association, plant.gain)
    np.testing.assert_allclose(service.local_bits, local, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(service.offload_bits, offload, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(service.local_energy, e_local, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(service.offload_energy, e_offload, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(service.edge_departure, departures)
    # served bits never exceed what was queued; energy is non-negative, zero when nothing is served
    assert np.all(service.local_bits >= 0) and np.all(service.offload_bits >= 0)
    assert np.all(service.served <= plant.local_queue * (1 + 1e-12) + 1e-6)
    assert np.all(service.edge_departure <= plant.edge_queue) and np.all(service.edge_departure >= 0)
    assert np.all(service.local_energy >= 0) and np.all(service.offload_energy >= 0)
    assert np.all(service.local_energy[service.local_bits == 0] == 0)
    assert np.all(service.offload_energy[service.offload_bits == 0] == 0)
    np.testing.assert_allclose(service.energy, (service.local_energy + service.offload_energy).sum(axis=1))
    for b in range(2):
        for j in range(scenario.stations):
            assert service.offload_per_station[b, j] == pytest.approx(
                offload[b][plant.association[b] == j].sum(), rel=1e-9, abs=1e-6)


def test_nothing_is_served_and_no_energy_spent_on_empty_queues():
    scenario = Scenario(devices=5, sbs=2)
    environments = Environments(scenario, 3)
    observation = environments.reset(1)
    assert np.all(observation.local_queue == 0) and np.all(observation.edge_queue == 0)
    result = environments.step(fixed_allocation(scenario, observation.association))  # everything at full blast
    assert np.all(result.service.served == 0) and np.all(result.service.edge_departure == 0)
    assert np.all(result.service.energy == 0)


def test_rayleigh_fading_has_unit_mean_power_on_top_of_the_path_loss():
    scenario = Scenario(devices=500, sbs=3)
    environments = Environments(scenario, 40)
    environments.reset(4)
    plant = environments.plant
    fading = plant.link_gain * np.maximum(plant.distance, 1.0) ** scenario.path_loss_exponent
    assert fading.mean() == pytest.approx(1.0, abs=0.02)  # Exp(1): mean 1 and variance 1
    assert fading.var() == pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(plant.gain, np.take_along_axis(plant.link_gain, plant.association[..., None], 2)[..., 0])


@settings(max_examples=50)
@given(scenarios(), st.integers(0, 2**16))
def test_queues_follow_5_and_6_and_never_go_negative(scenario, seed):
    rng = np.random.default_rng(seed)
    environments = Environments(scenario, 2)
    environments.reset(seed)
    plant = environments.plant
    for _ in range(8):
        local_queue, edge_queue, arrivals = plant.local_queue, plant.edge_queue, plant.arrivals
        association = plant.association
        result = environments.step(wild_action(rng, scenario, 2), check=False)
        service = result.service
        np.testing.assert_allclose(plant.local_queue, np.maximum(local_queue - service.served, 0) + arrivals)
        expected_edge = edge_queue - service.edge_departure
        for b in range(2):
            for i in range(scenario.devices):
                expected_edge[b, association[b, i]] += service.offload_bits[b, i]
        np.testing.assert_allclose(plant.edge_queue, expected_edge, rtol=1e-12, atol=1e-6)
        assert np.all(plant.local_queue >= 0) and np.all(plant.edge_queue >= 0)
        assert np.all(service.served <= local_queue * (1 + 1e-12) + 1e-6)


@pytest.mark.parametrize("law", ["uniform", "poisson", "constant"])
def test_arrivals_have_the_configured_mean_and_support(law):
    scenario = Scenario(devices=200, arrival_law=law, arrival_mean=2e6, packet_bits=1e5)
    environments = Environments(scenario, 50)
    environments.reset(2)
    arrivals = environments.plant.arrivals
    assert arrivals.mean() == pytest.approx(2e6, rel=0.02)
    assert np.all(arrivals >= 0)
    if law == "uniform":
        assert arrivals.max() <= 4e6
    if law == "poisson":
        np.testing.assert_allclose(arrivals / 1e5, np.round(arrivals / 1e5))
    if law == "constant":
        assert np.all(arrivals == 2e6)


# --- the P2 cost (20) and the efficiency estimate (13) ---

@settings(max_examples=50)
@given(scenarios(), st.integers(0, 2**16))
def test_p2_cost_equals_its_formula(scenario, seed):
    rng = np.random.default_rng(seed)
    environments = Environments(scenario, 2)
    environments.reset(seed)
    energy_sum, served_sum = np.zeros(2), np.zeros(2)
    for _ in range(4):
        observation = environments.observation
        eta = np.where(served_sum > 0, energy_sum / np.where(served_sum > 0, served_sum, 1), scenario.eta0 / MBIT)
        np.testing.assert_allclose(observation.eta, eta, rtol=1e-12)  # running estimate of (13)
        result = environments.step(wild_action(rng, scenario, 2), check=False)
        service = result.service
        price = scenario.eta0 / MBIT  # eta_hat, J/bit: fixed, whatever was spent so far
        for b in range(2):
            psi = observation.psi_max[b]
            beta = scenario.V * price * MBIT + psi / MBIT if scenario.perturbation else 0.0  # Mbit (19)
            cost = scenario.V * (service.energy[b] - price * service.served[b].sum())
            for j in range(scenario.stations):
                cost += observation.edge_queue[b, j] / MBIT * (
                    service.offload_per_station[b, j] - service.edge_departure[b, j]) / MBIT
            for i in range(scenario.devices):
                cost -= (observation.local_queue[b, i] / MBIT - beta) * (
                    service.served[b, i] - observation.arrivals[b, i]) / MBIT
            assert result.cost[b] == pytest.approx(cost, rel=1e-9, abs=1e-9)
        np.testing.assert_array_equal(result.cost, p2_cost(scenario, observation, service))
        energy_sum += service.energy
        served_sum += service.served.sum(axis=1)


def test_beta_is_v_eta_hat_plus_psi_max_or_zero():
    scenario = Scenario(devices=4, sbs=1, V=50.0, eta0=0.02)
    observation = Environments(scenario, 2).reset(0)
    np.testing.assert_allclose(observation.beta, (50.0 * 0.02 * MBIT + observation.psi_max)[:, None].repeat(4, 1))
    own = scenario.tau * scenario.station_bandwidth[observation.association] * observation.own_spectral_efficiency
    np.testing.assert_allclose(observation.psi_max, scenario.local_capacity_bits + own.max(axis=1))
    flat = Environments(scenario.replace(perturbation=False), 2).reset(0)
    assert np.all(flat.beta == 0)


# --- scenario validation ---

from dtnopt.config import _RANGES  # noqa: E402  (the validated ranges themselves)

OUT_OF_RANGE = [(name, lo, hi, bad) for name, (lo, hi, kind) in _RANGES.items()
                for bad in ([lo - 1 if kind is int else lo - abs(lo) * 0.5 - 1e-3]
                            + ([hi + 1 if kind is int else hi * 2] if hi != 2**63 - 1 else []))]


@pytest.mark.parametrize("name,lo,hi,bad", OUT_OF_RANGE, ids=[f"{n}={b:g}" for n, _, _, b in OUT_OF_RANGE])
def test_each_field_out_of_range_names_the_field_and_its_range(name, lo, hi, bad):
    with pytest.raises(ValueError) as error:
        Scenario(**{name: bad})
    message = str(error.value)
    assert message.startswith(name) and f"[{lo}, {hi}]" in message and repr(bad) in message


@pytest.mark.parametrize("name,bad", [
    ("devices", 2.5), ("devices", "20"), ("devices", True), ("sbs", None), ("slots", 1e3),
    ("tau", "0.1"), ("tau", float("nan")), ("area", float("inf")), ("V", True), ("noise_power", [1e-14]),
    ("twin_staleness", 1.0), ("seed", -1),
])
def test_wrong_types_name_the_field(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Scenario(**{name: bad})


def test_categorical_fields_list_their_choices():
    with pytest.raises(ValueError, match="arrival_law must be one of uniform, poisson, constant"):
        Scenario(arrival_law="bursty")
    with pytest.raises(ValueError, match="perturbation must be True or False"):
        Scenario(perturbation=1)
    with pytest.raises(ValueError, match="devices must be in"):
        Scenario().replace(devices=0)


def test_station_constants_are_cached_and_read_only():
    scenario = Scenario(sbs=2)
    np.testing.assert_array_equal(scenario.station_bandwidth, [10e6, 5e6, 5e6])
    np.testing.assert_array_equal(scenario.station_cpu, [50e9, 10e9, 10e9])
    assert scenario.station_cpu is scenario.station_cpu
    with pytest.raises(ValueError):
        scenario.station_cpu[0] = 1.0
    assert scenario == Scenario(sbs=2) and hash(scenario) == hash(Scenario(sbs=2))


# --- a batch is B independent environments ---

def test_batch_shapes_and_no_cross_talk():
    scenario = Scenario(devices=5, sbs=2, slots=15)
    batch = 3
    networks = [Environments(scenario, batch) for _ in range(2)]
    observations = [n.reset(9) for n in networks]
    assert observations[0].local_queue.shape == (batch, 5) and observations[0].edge_queue.shape == (batch, 3)
    assert observations[0].spectral_efficiency.shape == (batch, 5, 3) and observations[0].eta.shape == (batch,)
    rng = np.random.default_rng(0)
    for _ in range(scenario.slots):
        actions = [fixed_allocation(scenario, o.association) for o in observations]
        actions[1].power[0] = rng.uniform(0, scenario.max_power, 5) * (rng.uniform(size=5) < 0.3)
        actions[1].local_cpu[0] = 0.1 * scenario.local_cpu  # only environment 0 differs
        results = [n.step(a) for n, a in zip(networks, actions)]
        assert results[0].cost.shape == (batch,) and results[0].service.served.shape == (batch, 5)
        observations = [n.observation for n in networks]
        np.testing.assert_array_equal(results[0].cost[1:], results[1].cost[1:])
        np.testing.assert_array_equal(observations[0].local_queue[1:], observations[1].local_queue[1:])
        np.testing.assert_array_equal(observations[0].edge_queue[1:], observations[1].edge_queue[1:])
        np.testing.assert_array_equal(observations[0].eta[1:], observations[1].eta[1:])
    assert not np.array_equal(observations[0].local_queue[0], observations[1].local_queue[0])
    # and the environments of a batch are not copies of each other
    assert not np.array_equal(observations[0].local_queue[1], observations[0].local_queue[2])


@pytest.mark.parametrize("batch", [0, -2, 1.5, True, "4"])
def test_bad_batch_sizes_are_named(batch):
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        Environments(Scenario(devices=3), batch)
