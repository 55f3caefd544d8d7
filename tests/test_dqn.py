"""The branching DQN solver: discretisation, ablations, training contract, checkpoints."""

import numpy as np
import pandas as pd
import pytest
import torch

from dtnopt import KPI_NAMES, Environments, Scenario, check_feasible, fixed_allocation, make, run_seeds
from dtnopt.cli import main
from dtnopt.features import action_size
from solvers.dqn import DQNConfig, DQNSolver

SMALL = Scenario(devices=4, sbs=1, slots=20)
QUICK = {"envs": 2, "learning_starts": 64, "batch_size": 32, "hidden": 32, "target_update_every": 20}


def observation(scenario=SMALL, batch=3, seed=5):
    environments = Environments(scenario, batch)
    return environments.reset(seed)


@pytest.mark.parametrize("name", ["dqn", "dqn-no-cpu", "dqn-no-radio"])
def test_every_level_combination_maps_to_a_feasible_action(name):
    solver = make(name, SMALL, levels=3)
    obs = observation()
    rng = np.random.default_rng(0)
    branches = len(solver.branch_entries)
    for levels in [np.zeros((3, branches), int), np.full((3, branches), 2), rng.integers(0, 3, (3, branches))]:
        check_feasible(SMALL, solver.action_from_levels(obs, levels), obs.association)


def test_gate_option_applies_a3cs_gate_to_the_levels():
    assert not DQNConfig().gate_idle and DQNConfig().offloaders_per_station == 0  # off by default
    with pytest.raises(ValueError, match="offloaders_per_station needs gate_idle"):
        DQNConfig(offloaders_per_station=1)
    plain, gated = make("dqn", SMALL, levels=3), make("dqn", SMALL, levels=3, gate_idle=True, offloaders_per_station=1)
    obs = observation()
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 3, (3, len(plain.branch_entries)))
    action = gated.action_from_levels(obs, levels)
    check_feasible(SMALL, action, obs.association)
    sending = (action.power > 0) & (action.bandwidth_share > 0)
    for j in range(SMALL.stations):
        assert ((sending & (obs.association == j)).sum(axis=1) <= 1).all()  # one sender per station
    assert (action.bandwidth_share[action.power == 0] == 0).all()  # a silent device has no band
    np.testing.assert_array_equal(action.local_cpu, plain.action_from_levels(obs, levels).local_cpu)


def test_levels_are_evenly_spaced_fractions_of_each_bound():
    solver = make("dqn", SMALL, levels=5)
    obs = observation(batch=1)
    top = solver.action_from_levels(obs, np.full((1, len(solver.branch_entries)), 4))
    half = solver.action_from_levels(obs, np.full((1, len(solver.branch_entries)), 2))
    np.testing.assert_allclose(top.power, SMALL.max_power)
    np.testing.assert_allclose(half.power, SMALL.max_power / 2)
    np.testing.assert_allclose(half.local_cpu, SMALL.local_cpu / 2)
    reference = fixed_allocation(SMALL, obs.association)
    np.testing.assert_allclose(half.bandwidth_share, reference.bandwidth_share)  # equal weights: equal shares
    np.testing.assert_allclose(half.edge_departure, reference.edge_departure / 2)


def test_branches_cover_the_unit_action_vector_and_ablations_drop_the_fixed_blocks():
    n, stations = SMALL.devices, SMALL.stations
    assert len(make("dqn", SMALL).branch_entries) == action_size(SMALL)
    assert len(make("dqn-no-cpu", SMALL).branch_entries) == 2 * n  # bandwidth weight and power
    assert len(make("dqn-no-radio", SMALL).branch_entries) == 2 * n + stations  # CPUs and departures
    assert make("dqn-no-cpu", SMALL).q_network.advantage.out_features == 2 * n * DQNConfig().levels


@pytest.mark.parametrize("name, fixed", [("dqn-no-cpu", ("local_cpu", "edge_cpu", "edge_departure")),
                                         ("dqn-no-radio", ("bandwidth_share", "power"))])
def test_ablated_blocks_stay_at_the_fixed_allocation_whatever_the_levels(name, fixed):
    solver = make(name, SMALL, levels=4)
    obs = observation()
    reference = fixed_allocation(SMALL, obs.association)
    branches = len(solver.branch_entries)
    low = solver.action_from_levels(obs, np.zeros((3, branches), int))
    high = solver.action_from_levels(obs, np.full((3, branches), 3))
    for block in fixed:
        np.testing.assert_allclose(getattr(low, block), getattr(reference, block))
        np.testing.assert_allclose(getattr(high, block), getattr(reference, block))
    free = {"bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"} - set(fixed) - {"bandwidth_share", "edge_cpu"}
    assert any(not np.allclose(getattr(low, block), getattr(high, block)) for block in free)


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ValueError, match="levels"):
        make("dqn", SMALL, levels=1)
    with pytest.raises(ValueError, match="discount"):
        make("dqn", SMALL, discount=1.5)
    with pytest.raises(ValueError, match="gate_idle must be True or False"):
        make("dqn", SMALL, gate_idle=1)
    with pytest.raises(ValueError, match="unknown dqn hyper-parameter"):
        make("dqn", SMALL, gamma=0.9)
    with pytest.raises(ValueError, match="episodes"):
        make("dqn", SMALL).fit(episodes=0, progress=False)


def test_short_fit_returns_the_learning_curve():
    solver = make("dqn", SMALL, **QUICK)
    curve = solver.fit(episodes=8, progress=False, eval_every=4, eval_seeds=2)
    assert list(curve.columns) == ["episode", "slots", "wall_s", *KPI_NAMES]
    assert list(curve.episode) == [4, 8]
    assert list(curve.slots) == [4 * SMALL.slots, 8 * SMALL.slots]
    assert np.isfinite(curve.system_cost).all()
    assert solver.curve is curve


def test_training_is_deterministic_under_the_seed():
    def trained(seed, **extra):
        solver = make("dqn", SMALL, seed=seed, **QUICK, **extra)
        curve = solver.fit(episodes=6, progress=False, eval_every=6, eval_seeds=1)
        return solver, curve

    first, curve_first = trained(3)
    second, curve_second = trained(3)
    for a, b in zip(first.q_network.parameters(), second.q_network.parameters()):
        assert torch.equal(a, b)
    pd.testing.assert_frame_equal(curve_first.drop(columns=["wall_s", "decision_ms"]),
                                  curve_second.drop(columns=["wall_s", "decision_ms"]))
    other, _ = trained(4)
    assert not all(torch.equal(a, b) for a, b in zip(first.q_network.parameters(), other.q_network.parameters()))


def test_discounted_double_dqn_target_trains():
    solver = make("dqn", SMALL, discount=0.9, **QUICK)
    before = [p.detach().clone() for p in solver.q_network.parameters()]
    curve = solver.fit(episodes=6, progress=False, eval_seeds=1)
    assert np.isfinite(curve.system_cost).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, solver.q_network.parameters()))


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "dqn.pt"
    solver = make("dqn-no-radio", SMALL, levels=3, **QUICK)
    solver.fit(episodes=4, progress=False, eval_seeds=1, checkpoint=path)
    assert path.is_file()
    solver.save(path)
    restored = make("dqn-no-radio", SMALL).load(path)
    assert restored.config == solver.config
    pd.testing.assert_frame_equal(restored.curve, solver.curve, check_dtype=False)
    obs = observation()
    for block in ("local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_array_equal(getattr(restored.decide(obs), block), getattr(solver.decide(obs), block))
    with pytest.raises(ValueError, match="N"):
        make("dqn-no-radio", SMALL.replace(devices=5)).load(path)
    with pytest.raises(ValueError, match="M"):
        make("dqn-no-radio", SMALL.replace(sbs=2)).load(path)
    with pytest.raises(ValueError, match="ablation"):
        make("dqn", SMALL).load(path)
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a checkpoint of this format: missing format"):
        make("dqn", SMALL).load(tmp_path / "other.pt")


def test_cli_trains_and_runs_a_model(tmp_path, capsys):
    path = tmp_path / "cli.pt"
    scenario = ["--devices", "3", "--sbs", "1", "--slots", "10"]
    assert main(["train", "--solver", "dqn", "--episodes", "2", *scenario, "--out", str(path)]) == 0
    assert main(["run", "--solver", "dqn", "--model", str(path), *scenario, "--json"]) == 0
    assert '"system_cost"' in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["run", "--solver", "dqn-no-cpu", "--model", str(path), *scenario]) == 2
    assert "ablation" in capsys.readouterr().err


@pytest.mark.expensive
def test_learns_to_beat_random_and_equal_actions_on_a_small_network():
    scenario = Scenario(devices=4, sbs=1, slots=50)
    solver = make("dqn", scenario, envs=8, hidden=64, learning_starts=500)
    solver.fit(episodes=160, progress=False, eval_seeds=1)
    seeds = range(1_000_100, 1_000_104)
    cost = {name: run_seeds(solver if name == "dqn" else make(name, scenario), scenario, seeds).system_cost.mean()
            for name in ("dqn", "random", "equal")}
    assert cost["dqn"] < min(cost["random"], cost["equal"]), cost
