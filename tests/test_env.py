"""The Gymnasium environments: ``check_env``, registration, seeding, the options (ablation, action
and reward scale), the native vector environment and its autoreset, and that both are the loop's
model exactly (slot by slot and in the episode KPIs)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dtnopt import ABLATIONS, KPI_NAMES, MBIT, Scenario, Solver, run_episode
from dtnopt.env import ALIAS_IDS, ENV_ID, OffloadEnv, OffloadVectorEnv
from dtnopt.features import DEVICE_ACTIONS, action_from_unit, action_size, gated_unit_action, observation_size

SMALL = Scenario(devices=5, sbs=2, slots=6)


def check_quietly(env, **kwargs):
    """``check_env``, failing on any warning except the (deliberate) unbounded observation box."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, **kwargs)
    unexpected = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not unexpected


def test_check_env_passes():
    check_quietly(OffloadEnv(SMALL), skip_render_check=True)


def test_registered_id_makes_the_env_with_forwarded_scenario_fields():
    env = gymnasium.make(ENV_ID, devices=3, sbs=1, slots=4)
    assert isinstance(env.unwrapped, OffloadEnv) and env.unwrapped.scenario == Scenario(devices=3, sbs=1, slots=4)
    check_quietly(env.unwrapped)
    env = gymnasium.make(ENV_ID, scenario=SMALL, V=10.0)
    assert env.unwrapped.scenario == SMALL.replace(V=10.0)
    assert env.spec.max_episode_steps == SMALL.slots  # the TimeLimit is the scenario's slots
    assert gymnasium.make(ENV_ID, slots=300).spec.max_episode_steps == 300
    for alias in ALIAS_IDS:
        assert isinstance(gymnasium.make(alias, scenario=SMALL).unwrapped, OffloadEnv)


def test_a_fresh_interpreter_makes_the_env_after_importing_dtnopt():
    code = ("import gymnasium, dtnopt; env = gymnasium.make('dtnopt/Offload-v0', devices=2, slots=3); "
            "env.reset(seed=0); print(env.spec.max_episode_steps)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_spaces_match_the_shared_features():
    env = OffloadEnv(SMALL)
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
        unit = self.unit if self.unit.ndim == 2 else np.repeat(self.unit[None, :], observation.batch, axis=0)
        return action_from_unit(observation, unit)


def test_an_env_episode_is_the_loop_episode_of_the_same_seed():
    unit = np.random.default_rng(0).uniform(size=action_size(SMALL)).astype(np.float32)
    table = run_episode(FixedUnit(SMALL, unit), SMALL, seed=42).slots
    env = OffloadEnv(SMALL)
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
    env = OffloadEnv(SMALL)
    env.reset(seed=7)
    first = [env.reset()[1]["episode_seed"] for _ in range(3)]
    env.reset(seed=7)
    again = [env.reset()[1]["episode_seed"] for _ in range(3)]
    assert first == again and len(set(first)) == 3 and all(0 <= s < 1_000_000 for s in first)
    a, _ = env.reset(seed=1)
    b, _ = env.reset(seed=2)
    assert not np.array_equal(a, b)


def test_out_of_range_and_nan_actions_are_mapped_into_the_feasible_set():
    env = OffloadEnv(SMALL)
    env.reset(seed=0)
    wild = np.random.default_rng(1).normal(0.5, 2.0, action_size(SMALL))
    wild[::3] = np.nan
    observation, reward, *_ = env.step(wild)
    assert np.isfinite(reward) and np.all(np.isfinite(observation))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"devices must be in \[1, 100000\]"):
        OffloadEnv(devices=0)
    with pytest.raises(ValueError, match="scenario must be a dtnopt.Scenario"):
        OffloadEnv({"devices": 3})
    env = OffloadEnv(SMALL)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(action_size(SMALL)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action must have shape \({action_size(SMALL)},\)"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"devices": 3})


def test_info_reports_instability():
    env = OffloadEnv(SMALL.replace(queue_cap=2 * MBIT, slots=20))
    env.reset(seed=0)
    flags = [env.step(np.zeros(action_size(SMALL)))[4]["unstable"] for _ in range(20)]  # nothing served
    assert flags[0] is False and flags[-1] is True


def test_a_non_finite_slot_terminates_the_episode_naming_the_quantities():
    scenario = Scenario(devices=2, sbs=0, slots=10)
    env = OffloadEnv(scenario)
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


def play(env, actions, seed):
    """Step ``env`` from ``reset(seed)`` through ``actions``; returns the rewards and the last info."""
    env.reset(seed=seed)
    rewards = []
    for action in actions:
        _, reward, _, _, info = env.step(action)
        rewards.append(reward)
    return np.array(rewards), info


def unit_actions(scenario, count, seed=0, batch=None):
    shape = (count, action_size(scenario)) if batch is None else (count, batch, action_size(scenario))
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_the_episode_kpis_at_the_last_step_are_run_episodes():
    unit = unit_actions(SMALL, 1)[0]
    expected = run_episode(FixedUnit(SMALL, unit), SMALL, seed=3).kpi
    _, info = play(OffloadEnv(SMALL), [unit] * SMALL.slots, seed=3)
    assert set(info["episode_kpis"]) == set(KPI_NAMES)
    for name in KPI_NAMES:
        if name != "decision_ms":  # the agent's time, not the solver's
            assert info["episode_kpis"][name] == pytest.approx(expected[name], rel=1e-12), name
    assert info["episode_kpis"]["decision_ms"] >= 0
    env = OffloadEnv(SMALL)
    env.reset(seed=3)
    assert "episode_kpis" not in env.step(unit)[4]


@pytest.mark.parametrize("options", [{"action_scale": "symmetric"}, {"ablation": "no-cpu"},
                                     {"ablation": "no-radio", "reward_scale": "per_device"}])
def test_check_env_passes_with_the_options(options):
    env = OffloadEnv(SMALL, **options)
    check_quietly(env, skip_render_check=True)
    if options.get("action_scale") == "symmetric":
        assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)


def test_the_symmetric_box_maps_affinely_onto_the_unit_box():
    units = unit_actions(SMALL, SMALL.slots)
    plain, _ = play(OffloadEnv(SMALL), units, seed=4)
    symmetric, _ = play(OffloadEnv(SMALL, action_scale="symmetric"), 2 * units - 1, seed=4)
    np.testing.assert_allclose(symmetric, plain, rtol=1e-6)


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_an_ablation_overwrites_the_fixed_blocks_as_the_loop_does(ablation):
    unit = unit_actions(SMALL, 1, seed=2)[0]
    solver = FixedUnit(SMALL, unit)
    solver.ablation = ABLATIONS[ablation]  # the loop's NAME-no-cpu: decide, then overwrite
    expected = run_episode(solver, SMALL, seed=5)
    rewards, info = play(OffloadEnv(SMALL, ablation=ablation), [unit] * SMALL.slots, seed=5)
    np.testing.assert_allclose(rewards, -expected.slots["cost"].to_numpy(), rtol=1e-12)
    assert info["episode_kpis"]["system_cost"] == pytest.approx(expected.kpi["system_cost"], rel=1e-12)
    plain, _ = play(OffloadEnv(SMALL), [unit] * SMALL.slots, seed=5)
    assert not np.allclose(plain, rewards)


class GatedUnit(FixedUnit):
    def decide(self, observation):
        return gated_unit_action(observation, np.repeat(self.unit[None, :], observation.batch, axis=0), True, 1)


def test_the_gates_are_the_learned_solvers_gated_map():
    unit = unit_actions(SMALL, 1, seed=12)[0]
    expected = run_episode(GatedUnit(SMALL, unit), SMALL, seed=13).slots["cost"].to_numpy()
    rewards, _ = play(OffloadEnv(SMALL, gate_idle=True, offloaders_per_station=1), [unit] * SMALL.slots, seed=13)
    np.testing.assert_allclose(rewards, -expected, rtol=1e-12)
    assert not np.allclose(play(OffloadEnv(SMALL), [unit] * SMALL.slots, seed=13)[0], rewards)


def test_reward_scales():
    units = unit_actions(SMALL, SMALL.slots)
    raw, _ = play(OffloadEnv(SMALL), units, seed=6)
    scaled, _ = play(OffloadEnv(SMALL, reward_scale=0.01), units, seed=6)
    np.testing.assert_allclose(scaled, 0.01 * raw, rtol=1e-12)
    per_device = OffloadEnv(SMALL, reward_scale="per_device")
    factor = per_device.episodes.reward_factor
    np.testing.assert_allclose(play(per_device, units, seed=6)[0], factor * raw, rtol=1e-12)
    # -cost / (N lambda_bar Psi_ref), Psi_ref of the scenario's own episode, in Mbit
    assert 1 / factor == pytest.approx(SMALL.devices * 1.0 * OffloadEnv(SMALL).episodes.environments.reset(
        SMALL.seed).psi_max[0] / MBIT)


@pytest.mark.parametrize("option, value, message", [
    ("ablation", "no-gpu", "ablation must be None or one of no-cpu, no-radio"),
    ("action_scale", "tanh", "action_scale must be one of unit, symmetric"),
    ("reward_scale", "per_episode", "reward_scale must be None, a positive number or one of per_device"),
    ("reward_scale", -1.0, "reward_scale must be None"), ("reward_scale", True, "reward_scale must be None"),
    ("gate_idle", 1, "gate_idle must be True or False"),
    ("offloaders_per_station", 1, "offloaders_per_station needs gate_idle=True"),
    ("offloaders_per_station", -1, "offloaders_per_station must be an integer >= 0"),
])
def test_bad_options_are_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        OffloadEnv(SMALL, **{option: value})
    with pytest.raises(ValueError, match=message):
        OffloadVectorEnv(2, SMALL, **{option: value})


# --- the native vector environment ------------------------------------------------------------

def test_make_vec_builds_the_native_vector_environment():
    envs = gymnasium.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", scenario=SMALL,
                              action_scale="symmetric")
    assert isinstance(envs.unwrapped, OffloadVectorEnv) and envs.num_envs == 3
    assert envs.single_action_space == OffloadEnv(SMALL, action_scale="symmetric").action_space
    assert envs.observation_space.shape == (3, observation_size(SMALL))
    assert envs.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.NEXT_STEP
    observations, _ = envs.reset(seed=0)
    assert observations in envs.observation_space
    observations, rewards, terminated, truncated, _ = envs.step(envs.action_space.sample())
    assert observations in envs.observation_space and rewards.shape == terminated.shape == truncated.shape == (3,)


def test_vector_steps_are_the_loops_batch_episode_and_autoreset_on_the_next_step():
    batch = 3
    units = unit_actions(SMALL, 1, seed=8, batch=batch)[0]
    expected = run_episode(FixedUnit(SMALL, units), SMALL, seed=9, batch=batch)
    envs = OffloadVectorEnv(batch, SMALL)
    first, info = envs.reset(seed=9)
    assert info["episode_seed"].tolist() == [9] * batch
    for slot in range(SMALL.slots):
        observations, rewards, terminated, truncated, info = envs.step(units)
        rows = expected.slots[expected.slots["slot"] == slot]
        np.testing.assert_allclose(rewards, -rows["cost"].to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(info["served_mbit"], rows["served_mbit"].to_numpy(), rtol=1e-12)
        assert not terminated.any() and truncated.tolist() == [slot == SMALL.slots - 1] * batch
    for name in KPI_NAMES[:-1]:
        np.testing.assert_allclose(info["episode_kpis"][name], [kpi[name] for kpi in expected.kpis], rtol=1e-12)
    assert info["_episode_kpis"].all()
    # NEXT_STEP: the next step ignores its actions, resets the batch and returns reward 0
    observations, rewards, terminated, truncated, info = envs.step(np.full_like(units, np.nan))
    assert np.all(rewards == 0) and not terminated.any() and not truncated.any()
    assert 0 <= info["episode_seed"][0] < 1_000_000 and not np.array_equal(observations, first)
    assert envs.step(units)[4]["slot"].tolist() == [0] * batch


def test_a_batch_of_one_is_the_single_environment():
    units = unit_actions(SMALL, SMALL.slots, seed=10)
    single, single_info = play(OffloadEnv(SMALL, reward_scale="per_device"), units, seed=11)
    envs = OffloadVectorEnv(1, SMALL, reward_scale="per_device")
    vector, vector_info = play(envs, units[:, None, :], seed=11)
    np.testing.assert_array_equal(vector[:, 0], single)
    assert vector_info["episode_kpis"]["system_cost"][0] == single_info["episode_kpis"]["system_cost"]


def test_vector_seeding_and_bad_inputs():
    envs = OffloadVectorEnv(2, SMALL)
    with pytest.raises(RuntimeError, match="call reset"):
        envs.step(np.zeros((2, action_size(SMALL))))
    envs.reset(seed=7)
    drawn = [envs.reset()[1]["episode_seed"][0] for _ in range(3)]
    envs.reset(seed=7)
    assert drawn == [envs.reset()[1]["episode_seed"][0] for _ in range(3)]
    with pytest.raises(ValueError, match=r"actions must have shape \(2, "):
        envs.step(np.zeros(action_size(SMALL)))
    with pytest.raises(ValueError, match="seed must be None or one integer"):
        envs.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        OffloadVectorEnv(0, SMALL)


def test_a_non_finite_environment_terminates_and_truncates_the_rest_of_its_batch():
    scenario = Scenario(devices=2, sbs=0, slots=10)
    envs = OffloadVectorEnv(2, scenario)
    envs.reset(seed=0)
    units = np.full((2, action_size(scenario)), 0.5)
    for _ in range(2):
        envs.step(units)
    units[1, DEVICE_ACTIONS.index("edge_cpu") + len(DEVICE_ACTIONS)] = 1e-320  # env 1, device 1's edge-CPU weight
    with pytest.warns(RuntimeWarning, match="overflow"):
        observations, rewards, terminated, truncated, info = envs.step(units)
    assert terminated.tolist() == [False, True] and truncated.tolist() == [True, False]
    assert info["non_finite"].tolist() == [False, True] and rewards[1] == 0 and np.isfinite(rewards[0])
    assert np.all(np.isfinite(observations)) and "episode_kpis" not in info
    assert "episode_seed" in envs.step(units)[4]  # the autoreset step
    assert envs.step(np.full_like(units, 0.5))[4]["slot"].tolist() == [0, 0]
