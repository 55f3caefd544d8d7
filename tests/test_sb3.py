"""The Stable-Baselines3 solvers: each trains for a tiny budget through ``dtnopt.learned``, saves
a ``weights_only`` checkpoint, loads to the same actions and runs through the loop; the
observation statistics travel with the weights; SB3's view of the batched environment resets
as SB3 expects; and the command line trains, runs and evaluates them."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="the sb3-* solvers need stable-baselines3: pip install -e '.[sb3]'")

from dtnopt import Environments, Scenario, check_feasible, make, run_episode  # noqa: E402
from dtnopt.env import OffloadVectorEnv  # noqa: E402
from dtnopt.learned import CURVE_COLUMNS  # noqa: E402
from solvers.sb3 import BatchedVecEnv  # noqa: E402

TINY = Scenario(devices=3, sbs=1, slots=8)
SOLVERS = ["sb3-ppo", "sb3-a2c", "sb3-sac"]
QUICK = {"sb3-ppo": {"envs": 2, "n_steps": 8, "batch_size": 16, "hidden": 16},
         "sb3-a2c": {"envs": 2, "n_steps": 4, "hidden": 16},
         "sb3-sac": {"envs": 2, "learning_starts": 8, "batch_size": 16, "hidden": 16}}


def actions(solver, seed=4, batch=3):
    environments = Environments(TINY, batch)
    observation = environments.reset(seed)
    for _ in range(3):  # a few slots in, queues non-empty
        environments.step(solver.act(observation))
        observation = environments.observation
    return observation, solver.act(observation)


@pytest.mark.parametrize("name", SOLVERS)
def test_trains_saves_and_loads_to_the_same_actions(name, tmp_path):
    solver = make(name, TINY, seed=1, **QUICK[name])
    curve = solver.fit(episodes=8, eval_every=4, eval_seeds=1, progress=False, checkpoint=tmp_path / "x.pt")
    assert list(curve.columns) == list(CURVE_COLUMNS) and curve["episode"].tolist()[-1] >= 8
    assert np.isfinite(curve["system_cost"]).all()
    solver.save(tmp_path / "x.pt")
    saved = torch.load(tmp_path / "x.pt", weights_only=True)  # tensors and plain containers only
    assert saved["solver"] == name and any(key.startswith("policy.") for key in saved["weights"])
    assert saved["weights"]["observation_count"] > 1  # the running statistics were updated and saved
    loaded = make(name, TINY).load(tmp_path / "x.pt")
    assert loaded.config == solver.config and loaded.curve.equals(solver.curve)
    observation, expected = actions(solver)
    _, again = actions(loaded)
    check_feasible(TINY, again, observation.association)
    for block in ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"):
        np.testing.assert_array_equal(getattr(again, block), getattr(expected, block))
    played, replayed = ({k: v for k, v in run_episode(each, TINY, seed=5).kpi.items() if k != "decision_ms"}
                        for each in (solver, loaded))
    assert played == replayed


def test_training_writes_nothing_to_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    make("sb3-a2c", TINY, **QUICK["sb3-a2c"]).fit(episodes=2, eval_seeds=1, progress=False)
    assert not list(tmp_path.glob("SB3-*"))  # the folder of SB3's default logger


def test_the_observation_statistics_are_part_of_the_weights():
    solver = make("sb3-ppo", TINY, **QUICK["sb3-ppo"])
    solver.fit(episodes=4, eval_seeds=1, progress=False)
    weights = solver.state_dict()
    other = make("sb3-ppo", TINY, **QUICK["sb3-ppo"])
    assert not np.allclose(other.normalizer.obs_rms.mean, solver.normalizer.obs_rms.mean)
    other.load_state_dict(weights)
    np.testing.assert_array_equal(other.normalizer.obs_rms.mean, solver.normalizer.obs_rms.mean)
    del weights["observation_var"]
    with pytest.raises(RuntimeError, match="missing observation statistics observation_var"):
        other.load_state_dict(weights)


def test_a_checkpoint_of_another_algorithm_is_refused(tmp_path):
    solver = make("sb3-a2c", TINY, **QUICK["sb3-a2c"])
    solver.save(tmp_path / "a2c.pt")
    with pytest.raises(ValueError, match="is a checkpoint of solver 'sb3-a2c', not 'sb3-ppo'"):
        make("sb3-ppo", TINY).load(tmp_path / "a2c.pt")


@pytest.mark.parametrize("values, message", [
    ({"reward_scale": "per_slot"}, "reward_scale must be a number"),
    ({"gate_idle": False}, "offloaders_per_station .* needs gate_idle=True"),
    ({"n_steps": 1, "envs": 1}, r"n_steps x envs must be at least 2"), ({"clip": 0.1}, "unknown sb3-ppo hyper-parameter"),
])
def test_bad_hyper_parameters_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        make("sb3-ppo", TINY, **values)


def test_sb3s_view_resets_the_batch_in_the_step_that_ends_it():
    envs = BatchedVecEnv(OffloadVectorEnv(2, TINY, action_scale="symmetric"))
    envs.seed(3)
    first = envs.reset()
    np.testing.assert_array_equal(first, OffloadVectorEnv(2, TINY).reset(seed=3)[0])
    zeros = np.zeros((2, envs.action_space.shape[0]), dtype=np.float32)
    for slot in range(TINY.slots):
        observations, rewards, dones, infos = envs.step(zeros)
        assert dones.tolist() == [slot == TINY.slots - 1] * 2 and rewards.dtype == np.float32
    assert all(info["TimeLimit.truncated"] for info in infos)
    assert not np.array_equal(infos[0]["terminal_observation"], observations[0])  # the new episode's first
    assert not np.array_equal(observations, first)  # from a drawn seed, not the first one again


def test_the_command_line_trains_runs_and_evaluates_an_sb3_solver(tmp_path, capsys):
    from dtnopt.cli import main

    scenario = ["--devices", "3", "--sbs", "1", "--slots", "8"]
    out = str(tmp_path / "ppo.pt")
    settings = [item for name, value in QUICK["sb3-ppo"].items() for item in ("--set", f"{name}={value}")]
    assert main(["train", "--solver", "sb3-ppo", *scenario, "--episodes", "4", "--out", out, *settings]) == 0
    assert main(["run", "--solver", "sb3-ppo", "--model", out, *scenario, "--json"]) == 0
    assert main(["evaluate", "--solver", "sb3-ppo", "--model", out, "--baseline", "greedy", "--episodes", "2",
                 *scenario]) == 0
    assert "sb3-ppo" in capsys.readouterr().out
