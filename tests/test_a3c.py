"""The A3C solver (issue 4): configuration, credit assignment, the idle and one-sender gates,
ablation masks, deterministic training with one worker, checkpoints, the NaN guard and the CLI.
Training budgets are a few hundred slots of a small scenario."""

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtnopt import KPI_NAMES, Network, Scenario, held_out_seeds, is_feasible, make, run_episode, validation_seeds
from dtnopt.features import (DEVICE_ACTIONS, IDLE_ENTRIES, SERVICE_ACTIONS, action_size, device_feature_size,
                             observation_features, service_action_size, station_leaders)
from dtnopt.lyapunov import p2_cost_terms
from dtnopt.lyapunov import evaluate
from solvers.a3c import (ACTION_MAPS, A3CConfig, credit, externality, free_dimensions, gated_action, local_cpu_gain,
                         radio_gain, scheduled_rate, selection_key)

ROOT = Path(__file__).resolve().parents[1]
SMALL = Scenario(devices=4, sbs=1, slots=20)
TINY_TRAINING = dict(n_workers=1, envs_per_worker=2, t_max=5, hidden_size=16)


def weights(solver):
    return {name: value.clone() for name, value in solver.model.state_dict().items()}


@pytest.mark.parametrize("field, value", [("t_max", 0), ("discount", 1.5), ("learning_rate", -1.0),
                                          ("envs_per_worker", 2.5), ("decomposed_credit", 1),
                                          ("action_map", "raw"), ("keep_best", "yes"), ("actor", "cnn"),
                                          ("lr_schedule", "cosine")])
def test_bad_hyperparameter_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        A3CConfig(**{field: value})


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="unknown a3c hyper-parameter.*gamma"):
        make("a3c", SMALL, gamma=0.9)


@pytest.mark.parametrize("actor", ["device", "station", "mlp"])
def test_networks_have_the_papers_depth_and_width(actor):
    model = make("a3c", SMALL, actor=actor).model
    networks = [model.critic, *(module for module in model.actor.modules() if isinstance(module, torch.nn.Sequential))]
    assert len(networks) == (2 if actor == "mlp" else 3)
    for network in networks:
        hidden = [layer for layer in network if isinstance(layer, torch.nn.Linear)][:-1]
        assert [layer.out_features for layer in hidden] == [128, 128, 128]
    assert make("a3c", SMALL).config.learning_rate == 1e-3


def test_learning_rate_is_annealed_linearly_to_zero_by_default():
    linear, constant = A3CConfig(), A3CConfig(lr_schedule="constant")
    assert [scheduled_rate(linear, p) for p in (0.0, 0.25, 1.0, 1.5)] == pytest.approx([1e-3, 7.5e-4, 0.0, 0.0])
    assert [scheduled_rate(constant, p) for p in (0.0, 1.0)] == [1e-3, 1e-3]


def test_station_context_is_the_mean_and_max_over_each_devices_station():
    scenario = Scenario(devices=6, sbs=2)
    actor = make("a3c", scenario, actor="station", hidden_size=16).model.actor
    observation = Network(scenario, batch=2).reset(3)
    width = device_feature_size(scenario)
    own = torch.from_numpy(observation_features(observation))[:, : 6 * width].reshape(2, 6, width)
    mean, peak = actor._station_context(own)
    for b in range(2):
        for i in range(6):
            mates = observation.association[b] == observation.association[b, i]
            torch.testing.assert_close(mean[b, i], own[b, mates].mean(0))
            torch.testing.assert_close(peak[b, i], own[b, mates].amax(0))


@pytest.mark.parametrize("actor", ["device", "station"])
def test_device_actor_is_shared_by_the_devices(actor):
    """Permuting the devices permutes the device actor's per-device entries and leaves the
    departures unchanged."""
    solver = make("a3c", SMALL, actor=actor, hidden_size=16)
    torch.nn.init.normal_(solver.model.actor.heads()[0].weight)  # not the near-constant start
    torch.nn.init.normal_(solver.model.actor.heads()[1].weight)
    observation = Network(SMALL, batch=2).reset(4)
    features = torch.from_numpy(observation_features(observation))
    width, devices = device_feature_size(SMALL), SMALL.devices
    order = torch.tensor([2, 0, 3, 1])
    permuted = torch.cat([features[:, : devices * width].reshape(2, devices, width)[:, order].flatten(1),
                          features[:, devices * width:]], dim=1)
    with torch.no_grad():
        out, out_permuted = solver.model.mean_action(features), solver.model.mean_action(permuted)
    entries = len(ACTION_MAPS[solver.config.action_map].entries)
    per_device = out[:, : devices * entries].reshape(2, devices, entries)
    torch.testing.assert_close(out_permuted[:, : devices * entries].reshape(2, devices, entries), per_device[:, order])
    torch.testing.assert_close(out_permuted[:, devices * entries:], out[:, devices * entries:])
    assert len(set(per_device[0, :, 0].tolist())) == devices  # devices differ by their own features


@pytest.mark.parametrize("actor", ["device", "station", "mlp"])
def test_numpy_decision_path_is_the_torch_actor_and_follows_its_weights(actor):
    """``decide`` uses ``NumpyActor``: the same mean as the torch actor, on a batch, and again after
    the weights change in place (an optimizer step, ``load_state_dict``)."""
    scenario = Scenario(devices=6, sbs=2)
    solver = make("a3c", scenario, actor=actor, hidden_size=16)
    features = observation_features(Network(scenario, batch=3).reset(2))
    for _ in range(2):
        for parameter in solver.model.actor.parameters():
            with torch.no_grad():
                parameter.normal_()  # in place, as training and loading change them
        with torch.no_grad():
            expected = solver.model.mean_action(torch.from_numpy(features)).numpy()
        np.testing.assert_allclose(solver._decider(features), expected, rtol=1e-4, atol=1e-4)
    other = make("a3c", scenario, actor=actor, hidden_size=16, seed=1)
    solver.model.load_state_dict(other.model.state_dict())
    with torch.no_grad():
        expected = other.model.mean_action(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(solver._decider(features), expected, rtol=1e-4, atol=1e-4)


def test_cost_parts_sum_to_the_p2_cost():
    network = Network(SMALL, batch=3)
    observation = network.reset(5)
    solver = make("random", SMALL)
    for _ in range(8):
        result = network.step(solver.decide(observation))
        device, station = p2_cost_terms(SMALL, result.observation, result.service)
        np.testing.assert_allclose(device.sum(1) + station.sum(1), result.cost, rtol=1e-9, atol=1e-9)
        observation = network.observation


def test_credit_follows_the_cost_parts_each_entry_changes():
    scenario = Scenario(devices=3, sbs=1)
    observation = Network(scenario).reset(0)
    observation.association = np.array([[0, 1, 1]])
    advantage = np.array([[1.0, 10.0, 100.0, 1000.0, 10000.0]])  # devices 0-2, stations 0-1
    per_entry = credit(observation, advantage, scenario)
    per_device = per_entry[0, :12].reshape(3, len(DEVICE_ACTIONS))
    column = {name: per_device[:, k] for k, name in enumerate(DEVICE_ACTIONS)}
    np.testing.assert_allclose(column["power"], [1.0, 10.0, 100.0])
    np.testing.assert_allclose(column["local_cpu"], [1.0, 10.0, 100.0])
    station_total = [1.0 + 1000.0, 10.0 + 100.0 + 10000.0, 10.0 + 100.0 + 10000.0]
    np.testing.assert_allclose(column["bandwidth_share"], station_total)
    np.testing.assert_allclose(column["edge_cpu"], station_total)
    np.testing.assert_allclose(per_entry[0, 12:], [1000.0, 10000.0])
    # Service map: the offload moves the station's square-root edge-CPU split, the local
    # fraction only the device's own part.
    per_entry = credit(observation, advantage, scenario, "service")
    per_device = per_entry[0, :9].reshape(3, len(SERVICE_ACTIONS))
    column = {name: per_device[:, k] for k, name in enumerate(SERVICE_ACTIONS)}
    np.testing.assert_allclose(column["local_fraction"], [1.0, 10.0, 100.0])
    np.testing.assert_allclose(column["offload_fraction"], station_total)
    np.testing.assert_allclose(column["bandwidth_share"], station_total)
    np.testing.assert_allclose(per_entry[0, 9:], [1000.0, 10000.0])


@pytest.mark.parametrize("offloaders", [0, 1])
def test_externality_is_the_cost_a_device_puts_on_the_others_by_claiming_its_station(offloaders):
    scenario = Scenario(devices=5, sbs=1)
    observation = Network(scenario, batch=2).reset(7)
    rng = np.random.default_rng(0)
    unit = rng.uniform(0.0, 1.0, (2, action_size(scenario)))
    power = DEVICE_ACTIONS.index("power")
    unit[0, 2 * len(DEVICE_ACTIONS) + power] = -0.5  # device 2 of environment 0 is idle (gated)
    spill = externality(observation, unit, make("a3c", scenario).ablation, gate=True, offloaders=offloaders)
    assert spill.shape == (2, 5)
    assert spill[0, 2] == 0.0  # an idle device takes nothing from anyone

    def others(u, i):
        _, service = evaluate(observation, gated_action(observation, u, offloaders=offloaders))
        parts = p2_cost_terms(scenario, observation, service)[0]
        return parts.sum(axis=1) - parts[:, i]

    for i in range(5):  # brute force: device i idle, everyone else unchanged
        idle = unit.copy()
        for name in IDLE_ENTRIES:
            idle[:, i * len(DEVICE_ACTIONS) + DEVICE_ACTIONS.index(name)] = 0.0
        np.testing.assert_allclose(spill[:, i], others(unit, i) - others(idle, i), rtol=1e-9, atol=1e-9)
    # With it, the entries that claim a share get own + externality; the local CPU its own part.
    advantage = rng.normal(size=(2, 5 + scenario.stations))
    per_entry = credit(observation, advantage, scenario, externality=spill)[:, :20].reshape(2, 5, -1)
    for name in IDLE_ENTRIES:
        np.testing.assert_allclose(per_entry[:, :, DEVICE_ACTIONS.index(name)], advantage[:, :5] + spill)
    np.testing.assert_allclose(per_entry[:, :, DEVICE_ACTIONS.index("local_cpu")], advantage[:, :5])


def test_counterfactual_credit_is_the_default_trains_and_needs_the_unit_map():
    assert A3CConfig().counterfactual_credit and A3CConfig().actor == "station"
    with pytest.raises(ValueError, match="counterfactual_credit .*set counterfactual_credit=False"):
        A3CConfig(action_map="service")
    solver = make("a3c", SMALL, **TINY_TRAINING)
    curve = solver.fit(episodes=2, progress=False, eval_seeds=1)
    assert np.isfinite(curve["system_cost"]).all()


def _queued_samples(seed: int):
    """(scenario, observation with queues above zero, policy mean, a sample around it, rng, ablation):
    the setting of the gain tests (N=5, M=1, batch 2)."""
    scenario = Scenario(devices=5, sbs=1)
    network = Network(scenario, batch=2)
    network.reset(7)
    for _ in range(15):  # queues above zero, so computing and sending matter
        network.step(make("equal", scenario).act(network.observation))
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.0, 1.0, (2, action_size(scenario)))
    unit = mean + rng.normal(0.0, 0.3, mean.shape)
    return scenario, network.observation, mean, unit, rng, make("a3c", scenario).ablation


@pytest.mark.parametrize("offloaders", [0, 1])
def test_local_cpu_gain_is_what_each_sampled_local_cpu_saved_its_own_part(offloaders):
    scenario, observation, mean, unit, rng, ablation = _queued_samples(1)
    np.testing.assert_array_equal(local_cpu_gain(observation, mean, mean, ablation, True, offloaders), 0.0)
    gain = local_cpu_gain(observation, unit, mean, ablation, True, offloaders)
    assert np.abs(gain).max() > 0

    def parts(u):
        _, service = evaluate(observation, gated_action(observation, u, offloaders=offloaders))
        return p2_cost_terms(scenario, observation, service)[0]

    local = DEVICE_ACTIONS.index("local_cpu")
    for i in range(5):  # brute force: only device i's local-CPU entry at the mean
        at_mean = unit.copy()
        at_mean[:, i * len(DEVICE_ACTIONS) + local] = mean[:, i * len(DEVICE_ACTIONS) + local]
        np.testing.assert_allclose(gain[:, i], parts(at_mean)[:, i] - parts(unit)[:, i], rtol=1e-9, atol=1e-9)
    # The local-CPU entry gets the gain in place of its own part's advantage; the others are unchanged.
    advantage = rng.normal(size=(2, 5 + scenario.stations))
    spill = rng.normal(size=(2, 5))
    for extra in ({}, {"externality": spill}):
        plain = credit(observation, advantage, scenario, **extra)
        with_gain = credit(observation, advantage, scenario, local_gain=gain, **extra)
        plain, with_gain = (x[:, :20].reshape(2, 5, -1) for x in (plain, with_gain))
        np.testing.assert_array_equal(with_gain[:, :, local], gain)
        others = [k for k in range(len(DEVICE_ACTIONS)) if k != local]
        np.testing.assert_array_equal(with_gain[:, :, others], plain[:, :, others])


@pytest.mark.parametrize("offloaders", [0, 1])
def test_radio_gain_is_what_each_devices_sampled_radio_entries_saved_the_cost(offloaders):
    scenario, observation, mean, unit, rng, ablation = _queued_samples(2)
    np.testing.assert_allclose(radio_gain(observation, mean, mean, ablation, True, offloaders), 0.0, atol=1e-12)
    gain = radio_gain(observation, unit, mean, ablation, True, offloaders)
    assert np.abs(gain).max() > 0

    def cost(u):
        _, service = evaluate(observation, gated_action(observation, u, offloaders=offloaders))
        return p2_cost_terms(scenario, observation, service)[0].sum(axis=1)

    for i in range(5):  # brute force: only device i's radio entries at the mean
        at_mean = unit.copy()
        for name in IDLE_ENTRIES:
            column = i * len(DEVICE_ACTIONS) + DEVICE_ACTIONS.index(name)
            at_mean[:, column] = mean[:, column]
        np.testing.assert_allclose(gain[:, i], cost(at_mean) - cost(unit), rtol=1e-9, atol=1e-9)
    # The entries that claim a share get the gain in place of own part (+ externality); the local CPU keeps its own.
    advantage = rng.normal(size=(2, 5 + scenario.stations))
    plain = credit(observation, advantage, scenario)[:, :20].reshape(2, 5, -1)
    with_gain = credit(observation, advantage, scenario, externality=rng.normal(size=(2, 5)),
                       radio=gain)[:, :20].reshape(2, 5, -1)
    for name in IDLE_ENTRIES:
        np.testing.assert_array_equal(with_gain[:, :, DEVICE_ACTIONS.index(name)], gain)
    local = DEVICE_ACTIONS.index("local_cpu")
    np.testing.assert_array_equal(with_gain[:, :, local], plain[:, :, local])


@pytest.mark.parametrize("flag", ["local_cpu_credit", "radio_credit"])
def test_gain_credits_train_and_need_delta_zero_and_the_unit_map(flag):
    assert not getattr(A3CConfig(), flag)
    for bad in ({"discount": 0.5}, {"decomposed_credit": False, "counterfactual_credit": False},
                {"action_map": "service", "counterfactual_credit": False, "offloaders_per_station": 0}):
        with pytest.raises(ValueError, match=f"{flag} needs"):
            A3CConfig(**{flag: True}, **bad)
    solver = make("a3c", SMALL, **{flag: True}, **TINY_TRAINING)
    curve = solver.fit(episodes=2, progress=False, eval_seeds=1)
    assert np.isfinite(curve["system_cost"]).all()


def test_service_map_policy_decides_feasible_actions():
    solver = make("a3c", SMALL, action_map="service", counterfactual_credit=False, offloaders_per_station=0)
    assert solver.model.log_std.shape == (service_action_size(SMALL),)
    observation = Network(SMALL, batch=2).reset(3)
    assert is_feasible(SMALL, solver.decide(observation), observation.association)


def test_gate_gives_a_silent_device_no_band_and_no_edge_cpu():
    scenario = Scenario(devices=3, sbs=0)  # all three at the MBS
    observation = Network(scenario).reset(0)
    unit = np.full((1, action_size(scenario)), 0.5)
    unit[0, DEVICE_ACTIONS.index("power")] = 0.0  # device 0 does not transmit
    gated = gated_action(observation, unit)
    assert gated.bandwidth_share[0, 0] == 0 and gated.edge_cpu[0, 0] == 0
    np.testing.assert_allclose(gated.bandwidth_share[0, 1:], 0.5)
    np.testing.assert_allclose(gated.edge_cpu[0, 1:], scenario.mbs_cpu / 2)
    assert is_feasible(scenario, gated, observation.association)
    ungated = gated_action(observation, unit, gate=False)
    np.testing.assert_allclose(ungated.bandwidth_share, 1 / 3)
    radio_fixed = gated_action(observation, unit, make("a3c-no-radio", scenario).ablation)
    np.testing.assert_allclose(radio_fixed.edge_cpu, scenario.mbs_cpu / 3)  # p_max is fixed: device 0 sends


def test_one_device_per_station_sends_by_default_the_one_of_largest_claim():
    assert A3CConfig().offloaders_per_station == 1
    with pytest.raises(ValueError, match="offloaders_per_station .*set offloaders_per_station=0"):
        A3CConfig(gate_idle=False)
    scenario = Scenario(devices=3, sbs=0)  # all three at the MBS
    observation = Network(scenario).reset(0)
    unit = np.full((1, action_size(scenario)), 0.5)
    per_device = unit[0, :12].reshape(3, 4)
    per_device[:, DEVICE_ACTIONS.index("bandwidth_share")] = [0.9, 0.5, 0.6]
    per_device[:, DEVICE_ACTIONS.index("edge_cpu")] = [0.2, 0.5, 0.6]  # claims 0.09, 0.125, 0.18
    unit[0, :12] = per_device.ravel()
    one = gated_action(observation, unit, offloaders=1)
    np.testing.assert_allclose(one.bandwidth_share[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(one.power[0], [0.0, 0.0, 0.5 * scenario.max_power])
    np.testing.assert_allclose(one.edge_cpu[0], [0.0, 0.0, scenario.mbs_cpu])
    np.testing.assert_allclose(one.local_cpu[0], 0.5 * scenario.local_cpu)  # local computing is untouched
    two = gated_action(observation, unit, offloaders=2)
    assert (two.power[0] > 0).tolist() == [False, True, True]
    # Under no-cpu the edge-CPU entry is fixed and does not count: claims 0.45, 0.25, 0.3.
    no_cpu = gated_action(observation, unit, make("a3c-no-cpu", scenario).ablation, offloaders=1)
    assert (no_cpu.power[0] > 0).tolist() == [True, False, False]
    # Under no-radio every device sends with p_max: there is no one to choose.
    no_radio = gated_action(observation, unit, make("a3c-no-radio", scenario).ablation, offloaders=1)
    np.testing.assert_allclose(no_radio.power[0], scenario.max_power)


@given(st.integers(0, 2**32 - 1), st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_station_leaders_are_the_largest_positive_priorities_of_each_station(seed, count):
    rng = np.random.default_rng(seed)
    batch, devices, stations = 3, 7, 3
    association = rng.integers(0, stations, (batch, devices))
    priority = np.where(rng.random((batch, devices)) < 0.3, 0.0, rng.integers(1, 4, (batch, devices)) / 4)
    keep = station_leaders(priority, association, stations, count)
    for b in range(batch):
        for j in range(stations):
            here = np.flatnonzero((association[b] == j) & (priority[b] > 0))
            # Ties go to the lower index: rank by (-priority, index).
            expected = sorted(here, key=lambda i: (-priority[b, i], i))[:count]
            assert set(np.flatnonzero(keep[b] & (association[b] == j))) == set(expected)


@pytest.mark.parametrize("action_map", ["unit", "service"])
@pytest.mark.parametrize("ablation, fixed", [("no-cpu", {"local_cpu", "edge_cpu", "local_fraction"}),
                                             ("no-radio", {"bandwidth_share", "power", "offload_fraction"})])
def test_ablation_masks_exactly_the_fixed_blocks(ablation, fixed, action_map):
    solver = make(f"a3c-{ablation}", SMALL)
    layout = ACTION_MAPS[action_map]
    free = free_dimensions(SMALL, solver.ablation, action_map)
    assert free.shape == (layout.size(SMALL),)
    per_device = free[: len(layout.entries) * SMALL.devices].reshape(SMALL.devices, len(layout.entries))
    for k, name in enumerate(layout.entries):
        assert per_device[:, k].all() == (name not in fixed)
    assert free[len(layout.entries) * SMALL.devices:].all() == (ablation != "no-cpu")


def test_ablated_training_leaves_the_fixed_entries_untouched():
    solver = make("a3c-no-radio", SMALL, **TINY_TRAINING)
    before = solver.model.log_std.detach().clone()
    solver.fit(episodes=4, progress=False, eval_seeds=1)
    changed = solver.model.log_std.detach() != before
    free = torch.as_tensor(free_dimensions(SMALL, solver.ablation, solver.config.action_map))
    assert not changed[~free].any()  # no log-probability or entropy gradient reaches them
    assert changed[free].all()


def test_one_worker_training_is_deterministic_and_records_the_curve():
    first = make("a3c", SMALL, seed=3, **TINY_TRAINING)
    curve = first.fit(episodes=6, progress=False, eval_every=2, eval_seeds=1)
    second = make("a3c", SMALL, seed=3, **TINY_TRAINING)
    second.fit(episodes=6, progress=False, eval_every=2, eval_seeds=1)
    for name, value in weights(first).items():
        torch.testing.assert_close(value, weights(second)[name], rtol=0, atol=0)
    assert list(curve.columns) == ["episode", "slots", "wall_s", *KPI_NAMES]
    assert curve["episode"].iloc[-1] >= 6 and curve["slots"].iloc[-1] >= 6 * SMALL.slots
    assert curve is first.curve and len(curve) >= 2
    other = make("a3c", SMALL, seed=4, **TINY_TRAINING)
    other.fit(episodes=6, progress=False, eval_seeds=1)
    assert any(not torch.equal(value, weights(other)[name]) for name, value in weights(first).items())


def test_checkpoint_round_trip_and_scenario_check(tmp_path):
    path = tmp_path / "a3c.pt"
    solver = make("a3c-no-cpu", SMALL, **TINY_TRAINING)
    solver.fit(episodes=2, progress=False, checkpoint=path, eval_seeds=1)
    solver.save(path)
    restored = make("a3c", SMALL).load(path)
    assert restored.ablation.name == "no-cpu" and restored.config == solver.config
    assert restored.curve.equals(solver.curve)
    observation = Network(SMALL, batch=2).reset(11)
    first, second = solver.decide(observation), restored.decide(observation)
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert is_feasible(SMALL, first, observation.association)
    assert run_episode(restored, SMALL, seed=1).kpi["stable"] in (True, False)
    with pytest.raises(ValueError, match="devices"):
        make("a3c", SMALL.replace(devices=5)).load(path)
    with pytest.raises(ValueError, match="sbs"):
        make("a3c", SMALL.replace(sbs=2)).load(path)


def test_keep_best_ends_with_the_best_evaluated_weights(tmp_path):
    assert selection_key({"stable": 1.0, "system_cost": 5.0}) < selection_key({"stable": 0.5, "system_cost": -9.0})
    path = tmp_path / "a3c.pt"
    solver = make("a3c", SMALL, seed=1, learning_rate=1e-2, **TINY_TRAINING)
    curve = solver.fit(episodes=8, progress=False, eval_every=2, eval_seeds=1, checkpoint=path)
    best = min(range(len(curve)), key=lambda k: selection_key(curve.iloc[k]))
    validation = validation_seeds(1)[0]  # selection never looks at a test seed
    assert validation not in held_out_seeds(1000)
    kept = run_episode(solver, SMALL, seed=validation).kpi["system_cost"]
    assert kept == pytest.approx(curve["system_cost"].iloc[best], rel=1e-9)
    restored = make("a3c", SMALL).load(path)
    assert run_episode(restored, SMALL, seed=validation).kpi["system_cost"] == pytest.approx(kept, rel=1e-9)


def test_checkpoint_of_the_first_version_loads_with_its_unit_map_and_mlp_actor(tmp_path):
    path = tmp_path / "old.pt"
    solver = make("a3c", SMALL, action_map="unit", actor="mlp", hidden_size=16)
    solver.save(path)
    saved = torch.load(path, weights_only=True)
    for name in ("action_map", "actor", "keep_best"):  # fields the first version did not have
        del saved["hyperparameters"][name]
    torch.save(saved, path)
    restored = make("a3c", SMALL).load(path)
    assert restored.config.action_map == "unit" and restored.config.actor == "mlp"
    assert restored.model.log_std.shape == (action_size(SMALL),)


def test_checkpoint_of_the_third_version_loads_without_the_one_sender_limit(tmp_path):
    path = tmp_path / "v3.pt"
    make("a3c", SMALL, hidden_size=16).save(path)
    saved = torch.load(path, weights_only=True)
    del saved["hyperparameters"]["offloaders_per_station"]  # the third version had no such field
    torch.save(saved, path)
    assert make("a3c", SMALL).load(path).config.offloaders_per_station == 0


def test_checkpoint_with_an_unknown_hyperparameter_or_code_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pt"
    make("a3c", SMALL, hidden_size=16).save(path)
    saved = torch.load(path, weights_only=True)
    saved["hyperparameters"]["final_std_factor"] = 0.25  # an option this version does not have
    torch.save(saved, path)
    with pytest.raises(ValueError, match="other.pt: unknown a3c hyper-parameter.*final_std_factor"):
        make("a3c", SMALL).load(path)
    torch.save({"solver": "a3c", "payload": Path}, path)  # a pickled class: loading it could run code
    with pytest.raises(ValueError, match="other.pt is not an a3c checkpoint"):
        make("a3c", SMALL).load(path)


def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "a3c.pt"
    solver = make("a3c", SMALL, **TINY_TRAINING)
    solver.fit(episodes=2, progress=False, checkpoint=path, eval_seeds=1)
    good = weights(solver)
    with torch.no_grad():
        next(solver.model.actor.parameters()).view(-1)[0] = math.nan
    with pytest.raises(FloatingPointError, match="non-finite.*last good checkpoint"):
        solver.fit(episodes=2, progress=False, checkpoint=path, eval_seeds=1)
    kept = make("a3c", SMALL).load(path)
    for name, value in good.items():
        torch.testing.assert_close(kept.model.state_dict()[name], value, rtol=0, atol=0)


@pytest.mark.expensive  # three Python processes start (CLI, two spawned workers): slow on a loaded machine
def test_cli_trains_and_runs_a_checkpoint(tmp_path):
    path = tmp_path / "cli.pt"
    scenario = ["--devices", "3", "--sbs", "1", "--slots", "10", "--seed", "2"]
    train = subprocess.run([sys.executable, "-m", "dtnopt", "train", "--solver", "a3c", "--episodes", "2",
                            *scenario, "--out", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert train.returncode == 0, train.stderr
    assert path.is_file() and "saved" in train.stdout
    run = subprocess.run([sys.executable, "-m", "dtnopt", "run", "--solver", "a3c", "--model", str(path),
                          *scenario, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert '"system_cost"' in run.stdout.splitlines()[-1]


def _state_and_parent(pid) -> tuple | None:
    """(state letter, parent pid) of process ``pid`` from Linux's /proc; None once it is gone."""
    try:
        state, ppid = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[:2]
    except OSError:
        return None
    return state, int(ppid)


def _alive(pid) -> bool:
    status = _state_and_parent(pid)
    return status is not None and status[0] != "Z"  # a zombie has ended


def _live_workers(parent: int) -> list:
    """Live spawned worker processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        status = _state_and_parent(entry.name) if entry.name.isdigit() else None
        if status is None or status[0] == "Z" or status[1] != parent:
            continue
        try:
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.expensive  # a training process with two spawned workers starts
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc")
def test_worker_processes_stop_when_the_training_process_is_killed():
    """A run killed without cleanup (SIGKILL) leaves no workers training on (they watch their parent)."""
    script = ("from dtnopt import Scenario, make\n"
              "make('a3c', Scenario(devices=3, sbs=1), n_workers=2, envs_per_worker=2, hidden_size=8)"
              ".fit(10**9, progress=False, eval_every=10**9)\n")
    trainer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _live_workers(trainer.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2, "the two workers did not start"
        time.sleep(2.0)  # they train
    finally:
        trainer.kill()
        trainer.wait()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def test_decision_breakdown_names_each_part_of_the_decision(tmp_path):
    from benchmarks.a3c import decision_parts_ms

    make("a3c", SMALL, actor="mlp", hidden_size=16).save(tmp_path / "mlp.pt")
    for model in (None, tmp_path / "mlp.pt"):  # the station actor's two MLPs, the paper's one
        parts = decision_parts_ms(SMALL, model, slots=3, repeats=1)  # a smoke run; no timing asserted
        assert list(parts) == ["features", "actor", "actor MLPs only", "gate and map", "whole decision"]
        assert all(0 < ms < float("inf") for ms in parts.values())


@pytest.mark.parametrize("argv, named", [(["--repeats", "0"], "--repeats"), (["--timed-episodes", "-1"],
                                         "--timed-episodes"), (["--devices", "0"], "devices")])
def test_benchmark_rejects_bad_counts_before_any_work(argv, named, capsys):
    from benchmarks.a3c import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and named in capsys.readouterr().err
