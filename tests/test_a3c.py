"""The A3C solver: configuration, networks, credit assignment, the idle and one-sender gates,
ablation masks, deterministic training with one worker, checkpoints, the NaN guard, the CLI and
(expensive) that it learns. Training budgets are a few hundred slots of a small scenario."""

import itertools
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

from dtnopt import (KPI_NAMES, Environments, Scenario, held_out_seeds, is_feasible, make, run_episode, run_seeds, slots,
                    validation_seeds)
from dtnopt.features import (DEVICE_ACTIONS, IDLE_ENTRIES, action_size, device_feature_size, observation_features,
                             station_leaders)
from dtnopt.lyapunov import evaluate, p2_cost_terms
from solvers.a3c import A3CConfig, credit, externality, free_dimensions, gated_action, scheduled_rate, selection_key

ROOT = Path(__file__).resolve().parents[1]
SMALL = Scenario(devices=4, sbs=1, slots=20)
TINY_TRAINING = dict(n_workers=1, envs_per_worker=2, t_max=5, hidden_size=16)


def weights(solver):
    return {name: value.clone() for name, value in solver.model.state_dict().items()}


@pytest.mark.parametrize("field, value", [("t_max", 0), ("discount", 1.5), ("learning_rate", -1.0),
                                          ("envs_per_worker", 2.5), ("counterfactual_credit", 1),
                                          ("keep_best", "yes"), ("actor", "device")])
def test_bad_hyperparameter_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        A3CConfig(**{field: value})


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="unknown a3c hyper-parameter.*gamma"):
        make("a3c", SMALL, gamma=0.9)


@pytest.mark.parametrize("actor", ["station", "mlp"])
def test_networks_have_the_papers_depth_and_width(actor):
    model = make("a3c", SMALL, actor=actor).model
    networks = [model.critic, *(module for module in model.actor.modules() if isinstance(module, torch.nn.Sequential))]
    assert len(networks) == (2 if actor == "mlp" else 3)
    for environments in networks:
        hidden = [layer for layer in environments if isinstance(layer, torch.nn.Linear)][:-1]
        assert [layer.out_features for layer in hidden] == [128, 128, 128]
    assert make("a3c", SMALL).config.learning_rate == 1e-3


def test_learning_rate_is_annealed_linearly_to_zero_by_default():
    assert [scheduled_rate(A3CConfig(), p) for p in (0.0, 0.25, 1.0, 1.5)] == pytest.approx([1e-3, 7.5e-4, 0.0, 0.0])


def test_station_context_is_the_mean_and_max_over_each_devices_station():
    scenario = Scenario(devices=6, sbs=2)
    actor = make("a3c", scenario, actor="station", hidden_size=16).model.actor
    observation = Environments(scenario, batch=2).reset(3)
    width = device_feature_size(scenario)
    own = torch.from_numpy(observation_features(observation))[:, : 6 * width].reshape(2, 6, width)
    mean, peak = actor._station_context(own)
    for b in range(2):
        for i in range(6):
            mates = observation.association[b] == observation.association[b, i]
            torch.testing.assert_close(mean[b, i], own[b, mates].mean(0))
            torch.testing.assert_close(peak[b, i], own[b, mates].amax(0))


def test_device_actor_is_shared_by_the_devices():
    """Permuting the devices permutes the device actor's per-device entries and leaves the
    departures unchanged."""
    solver = make("a3c", SMALL, hidden_size=16)
    torch.nn.init.normal_(solver.model.actor.heads()[0].weight)  # not the near-constant start
    torch.nn.init.normal_(solver.model.actor.heads()[1].weight)
    observation = Environments(SMALL, batch=2).reset(4)
    features = torch.from_numpy(observation_features(observation))
    width, devices = device_feature_size(SMALL), SMALL.devices
    order = torch.tensor([2, 0, 3, 1])
    permuted = torch.cat([features[:, : devices * width].reshape(2, devices, width)[:, order].flatten(1),
                          features[:, devices * width:]], dim=1)
    with torch.no_grad():
        out, out_permuted = solver.model.mean_action(features), solver.model.mean_action(permuted)
    entries = len(DEVICE_ACTIONS)
    per_device = out[:, : devices * entries].reshape(2, devices, entries)
    torch.testing.assert_close(out_permuted[:, : devices * entries].reshape(2, devices, entries), per_device[:, order])
    torch.testing.assert_close(out_permuted[:, devices * entries:], out[:, devices * entries:])
    assert len(set(per_device[0, :, 0].tolist())) == devices  # devices differ by their own features


@pytest.mark.parametrize("actor", ["station", "mlp"])
def test_numpy_decision_path_is_the_torch_actor_and_follows_its_weights(actor):
    """``decide`` uses ``NumpyActor``: the same mean as the torch actor, on a batch, and again after
    the weights change in place (an optimizer step, ``load_state_dict``)."""
    scenario = Scenario(devices=6, sbs=2)
    solver = make("a3c", scenario, actor=actor, hidden_size=16)
    features = observation_features(Environments(scenario, batch=3).reset(2))
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
    for step in itertools.islice(slots(make("random", SMALL), SMALL, seed=5, batch=3), 8):
        device, station = p2_cost_terms(SMALL, step.result.observation, step.result.service)
        np.testing.assert_allclose(device.sum(1) + station.sum(1), step.result.cost, rtol=1e-9, atol=1e-9)


def test_credit_follows_the_cost_parts_each_entry_changes():
    scenario = Scenario(devices=3, sbs=1)
    observation = Environments(scenario).reset(0)
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


@pytest.mark.parametrize("offloaders", [0, 1])
def test_externality_is_the_cost_a_device_puts_on_the_others_by_claiming_its_station(offloaders):
    scenario = Scenario(devices=5, sbs=1)
    observation = Environments(scenario, batch=2).reset(7)
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


def test_counterfactual_credit_is_the_default_and_trains():
    assert A3CConfig().counterfactual_credit and A3CConfig().actor == "station"
    solver = make("a3c", SMALL, **TINY_TRAINING)
    curve = solver.fit(episodes=2, progress=False, eval_seeds=1)
    assert np.isfinite(curve["system_cost"]).all()


def test_gate_gives_a_silent_device_no_band_and_no_edge_cpu():
    scenario = Scenario(devices=3, sbs=0)  # all three at the MBS
    observation = Environments(scenario).reset(0)
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
    observation = Environments(scenario).reset(0)
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


@pytest.mark.parametrize("ablation, fixed", [("no-cpu", {"local_cpu", "edge_cpu"}),
                                             ("no-radio", {"bandwidth_share", "power"})])
def test_ablation_masks_exactly_the_fixed_blocks(ablation, fixed):
    solver = make(f"a3c-{ablation}", SMALL)
    free = free_dimensions(SMALL, solver.ablation)
    assert free.shape == (action_size(SMALL),)
    per_device = free[: len(DEVICE_ACTIONS) * SMALL.devices].reshape(SMALL.devices, len(DEVICE_ACTIONS))
    for k, name in enumerate(DEVICE_ACTIONS):
        assert per_device[:, k].all() == (name not in fixed)
    assert free[len(DEVICE_ACTIONS) * SMALL.devices:].all() == (ablation != "no-cpu")


def test_ablated_training_leaves_the_fixed_entries_untouched():
    solver = make("a3c-no-radio", SMALL, **TINY_TRAINING)
    before = solver.model.log_std.detach().clone()
    solver.fit(episodes=4, progress=False, eval_seeds=1)
    changed = solver.model.log_std.detach() != before
    free = torch.as_tensor(free_dimensions(SMALL, solver.ablation))
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
    restored = make("a3c-no-cpu", SMALL).load(path)
    assert restored.config == solver.config
    assert restored.curve.equals(solver.curve)
    observation = Environments(SMALL, batch=2).reset(11)
    first, second = solver.decide(observation), restored.decide(observation)
    for name in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert is_feasible(SMALL, first, observation.association)
    with pytest.raises(ValueError, match="devices"):
        make("a3c-no-cpu", SMALL.replace(devices=5)).load(path)
    with pytest.raises(ValueError, match="sbs"):
        make("a3c-no-cpu", SMALL.replace(sbs=2)).load(path)
    with pytest.raises(ValueError, match="ablation 'no-cpu'"):
        make("a3c", SMALL).load(path)


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


@pytest.mark.expensive  # about ten seconds of training
def test_learns_to_close_most_of_the_gap_from_equal_shares_to_greedy():
    """On held-out episodes the untrained policy closes about a fifth of the equal -> greedy gap in
    system cost (measured: equal -193, untrained -845, greedy -3,701); 400 episodes close more
    than half of it (about 80%)."""
    scenario = Scenario(devices=4, sbs=1, slots=50)
    solver = make("a3c", scenario, seed=0, n_workers=1, envs_per_worker=8, hidden_size=64)
    solver.fit(episodes=400, progress=False, eval_seeds=1)
    seeds = held_out_seeds(4)
    cost = {name: run_seeds(solver if name == "a3c" else make(name, scenario), scenario, seeds).system_cost.mean()
            for name in ("a3c", "equal", "greedy")}
    assert cost["a3c"] < cost["equal"] + 0.5 * (cost["greedy"] - cost["equal"]), cost
