"""The Gymnasium environment: ``check_env``, seeding, and that it is the loop's model exactly."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dtnopt import MBIT, Scenario, Solver, run_episode
from dtnopt.env import ENV_ID, DTNEnv
from dtnopt.features import DEVICE_ACTIONS, action_from_unit, action_size, observation_size

SMALL = Scenario(devices=5, sbs=2, slots=6)


def check_quietly(env, **kwargs):
    """``check_env``, failing on any warning except the (deliberate) unbounded observation box."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, **kwargs)
    unexpected = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not unexpected


def test_check_env_passes():
    check_quietly(DTNEnv(SMALL), skip_render_check=True)


def test_registered_id_makes_the_env_with_forwarded_scenario_fields():
    env = gymnasium.make(ENV_ID, devices=3, sbs=1, slots=4)
    assert isinstance(env.unwrapped, DTNEnv) and env.unwrapped.scenario == Scenario(devices=3, sbs=1, slots=4)
    check_quietly(env.unwrapped)
    env = gymnasium.make(ENV_ID, scenario=SMALL, V=10.0)
    assert env.unwrapped.scenario == SMALL.replace(V=10.0)


def test_spaces_match_the_shared_features():
    env = DTNEnv(SMALL)
    assert env.observation_space.shape == (observation_size(SMALL),) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (action_size(SMALL),)
    assert np.all(env.action_space.low == 0) and np.all(env.action_space.high == 1)
    observation, info = env.reset(seed=0)
    assert observation.dtype == np.float32 and observation in env.observation_space and info["slot"] == 0


class FixedUnit(Solver):
    """Plays one unit action vector through the shared map, as a learned solver would."""

    name = "fixed-unit"

    def __init__(self, scenario, unit):
        super().__init__(scenario)
        self.unit = unit

    def decide(self, observation):
        return action_from_unit(observation, np.repeat(self.unit[None, :], observation.batch, axis=0))


def test_an_env_episode_is_the_loop_episode_of_the_same_seed():
    unit = np.random.default_rng(0).uniform(size=action_size(SMALL)).astype(np.float32)
    table = run_episode(FixedUnit(SMALL, unit), SMALL, seed=42).slots
    env = DTNEnv(SMALL)
    env.reset(seed=42)
    truncated, slot = False, 0
    while not truncated:
        _, reward, terminated, truncated, info = env.step(unit)
        row = table.iloc[slot]
        assert terminated is False and info["slot"] == slot
        assert reward == pytest.approx(-row["cost"], rel=1e-12) and info["cost"] == -reward  # reward (22)
        for key in ("energy_j", "served_mbit", "local_backlog_mbit", "edge_backlog_mbit", "eta_j_per_mbit"):
            assert info[key] == pytest.approx(row[key], rel=1e-12, abs=1e-15), key
        slot += 1
    assert slot == SMALL.slots  # truncated exactly at T
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(unit)


def test_reset_without_a_seed_follows_np_random_and_stays_below_the_held_out_seeds():
    env = DTNEnv(SMALL)
    env.reset(seed=7)
    first = [env.reset()[1]["episode_seed"] for _ in range(3)]
    env.reset(seed=7)
    again = [env.reset()[1]["episode_seed"] for _ in range(3)]
    assert first == again and len(set(first)) == 3 and all(0 <= s < 1_000_000 for s in first)
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2)
    assert not np.array_equal(a, b)


def test_out_of_range_and_nan_actions_are_mapped_into_the_feasible_set():
    env = DTNEnv(SMALL)
    env.reset(seed=0)
    wild = np.random.default_rng(1).normal(0.5, 2.0, action_size(SMALL))
    wild[::3] = np.nan
    observation, reward, *_ = env.step(wild)
    assert np.isfinite(reward) and np.all(np.isfinite(observation))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"devices must be in \[1, 100000\]"):
        DTNEnv(devices=0)
    with pytest.raises(ValueError, match="scenario must be a dtnopt.Scenario"):
        DTNEnv({"devices": 3})
    env = DTNEnv(SMALL)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(action_size(SMALL)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action must have shape \({action_size(SMALL)},\)"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"devices": 3})


def test_info_reports_instability():
    env = DTNEnv(SMALL.replace(queue_cap=2 * MBIT, slots=20))
    env.reset(seed=0)
    flags = [env.step(np.zeros(action_size(SMALL)))[4]["unstable"] for _ in range(20)]  # nothing served
    assert flags[0] is False and flags[-1] is True


def test_a_non_finite_slot_terminates_the_episode_naming_the_quantities():
    scenario = Scenario(devices=2, sbs=0, slots=10)
    env = DTNEnv(scenario)
    env.reset(seed=0)
    unit = np.full(action_size(scenario), 0.5)
    for _ in range(2):  # queues above zero
        assert env.step(unit)[2] is False
    starving = unit.copy()
    starving[DEVICE_ACTIONS.index("edge_cpu") + len(DEVICE_ACTIONS)] = 1e-320  # device 1's edge-CPU weight
    with pytest.warns(RuntimeWarning, match="overflow"):
        observation, reward, terminated, truncated, info = env.step(starving)
    assert terminated is True and truncated is False and reward == 0.0
    assert info["non_finite"] == ("cost", "energy_j") and not np.isfinite(info["energy_j"])
    assert np.all(np.isfinite(observation)) and observation in env.observation_space
    with pytest.raises(RuntimeError, match="terminated by a non-finite .* call reset"):
        env.step(unit)
    env.reset(seed=0)
    assert np.isfinite(env.step(unit)[1])
