"""Gymnasium environments over the DTN model: the same ``Environments`` and P2 cost (20) the
Lyapunov loop evaluates, so RL solvers and outside RL libraries train on exactly that model.

- ``OffloadEnv``: one environment, registered as ``dtnopt/Offload-v0`` (and, as an alias, the
  earlier id ``dtnopt/DTN-v0``) when ``dtnopt`` is imported:
  ``gymnasium.make("dtnopt/Offload-v0", devices=10, action_scale="symmetric")``.
- ``OffloadVectorEnv``: B environments stepped in lockstep by one batched ``Environments.step``
  (a ``gymnasium.vector.VectorEnv``, numpy over the batch, no per-environment Python loop):
  ``gymnasium.make_vec("dtnopt/Offload-v0", num_envs=B, vectorization_mode="vector_entry_point")``.

Both take the scenario (``scenario=``, default ``Scenario()``), its fields as keyword overrides
(``devices=``, ``sbs=``, ``slots=``, ...), and:

- ``ablation``: ``None``, ``"no-cpu"`` or ``"no-radio"``: the ablation's fixed blocks are
  overwritten with ``fixed_allocation``'s values after the map, as the loop does for a solver
  ``NAME-no-cpu``; the action entries of those blocks then have no effect;
- ``action_scale``: ``"unit"`` (default), an action box ``[0, 1]^K``, or ``"symmetric"``, a box
  ``[-1, 1]^K`` mapped affinely onto it (``u = (a + 1) / 2``), the range Gaussian policies with
  a tanh squash or clipping (PPO, SAC, A2C) are built for;
- ``gate_idle`` and ``offloaders_per_station`` (default ``False``, 0): the learned solvers'
  gates on the action before the map (``dtnopt.features.gated_unit_action``): a device whose
  power entry is 0 takes no band or edge CPU, and at most so many devices per station send
  (those of largest claim), which by (11) is where a station's edge energy is least;
- ``reward_scale``: ``None`` (default), the reward ``-cost(t)`` of (22); a positive number ``s``,
  ``-s cost(t)``; or ``"per_device"``, ``-cost(t) / (N lambda_bar Psi_ref)`` in Mbit^2, with
  ``Psi_ref`` the ``Psi_max`` of (19) at the start of the scenario's own episode (about 20-30 Mbit
  at the defaults), so a reward is of order one per device whatever N. The raw per-slot cost at
  the defaults spans about -4.8k to +1.7k, so raw returns reach 1e5 per episode: value targets
  of that size make the critic's loss, and with it the shared gradient, dwarf the policy's, and
  advantage normalisation alone does not fix the value function's scale. Scaling changes no
  decision: the policy that maximises one return maximises the other.

Observation: ``dtnopt.features.observation_features`` of the twin's state s(t) (21), a float32
vector of ``observation_size(scenario)`` entries. Action: a vector of ``K =
action_size(scenario)`` entries mapped onto a feasible action (14a)-(14e) by
``dtnopt.features.action_from_unit`` (out-of-range entries are clipped, NaN counts as 0), after
the gates if they are on.

An episode is truncated after ``scenario.slots`` slots (``gymnasium.make`` sets
``max_episode_steps`` to the scenario's slots) and terminated only when the slot's cost, energy or
served bits is NaN or infinite (where the loop raises ``NonFiniteSlot``): then the reward is 0
rather than NaN, the observation is the one the action was taken on, and ``info["non_finite"]``
says so. ``info`` holds the per-slot quantities of the loop's slot table (``cost``, ``energy_j``,
``served_mbit``, ``local_backlog_mbit``, ``edge_backlog_mbit``, ``eta_j_per_mbit``), ``slot`` and
``unstable`` (a queue passed ``scenario.queue_cap``); at the last slot ``info["episode_kpis"]``
holds the episode's ``dtnopt.KPI_NAMES`` as ``run_episode`` computes them, ``decision_ms`` being
the median time the agent took between an observation and its action.

``reset(seed=s)`` runs the episode the loop runs under seed ``s`` (``run_episode(..., seed=s,
batch=B)``); ``reset()`` without a seed draws the episode seed from ``self.np_random``, below the
held-out evaluation seeds.
"""

from __future__ import annotations

import numbers
import time

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import MBIT, Scenario
from .environments import Environments
from .gym_ids import ALIAS_IDS, ENV_ID  # noqa: F401 (the ids, beside the environments)
from .features import action_size, gated_unit_action, observation_features, observation_size
from .loop import HELD_OUT_SEED_BASE, KPI_NAMES, episode_kpis
from .solver import ABLATIONS, NO_ABLATION

ACTION_SCALES = ("unit", "symmetric")
REWARD_SCALES = ("per_device",)
"""Named reward scales; ``reward_scale`` may also be ``None`` or a positive number."""

SLOT_INFO = ("cost", "energy_j", "served_mbit", "local_backlog_mbit", "edge_backlog_mbit", "eta_j_per_mbit",
             "unstable")


def scenario_from(scenario: Scenario | None, overrides: dict) -> Scenario:
    """``scenario`` (default ``Scenario()``) with the fields in ``overrides`` replaced."""
    if scenario is None:
        scenario = Scenario()
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a dtnopt.Scenario, got {type(scenario).__name__}")
    return scenario.replace(**overrides) if overrides else scenario


def reward_factor(scenario: Scenario, reward_scale) -> float:
    """The factor of ``-cost(t)`` in the reward for ``reward_scale`` (module docstring)."""
    if reward_scale is None:
        return 1.0
    if isinstance(reward_scale, str) and reward_scale == "per_device":
        psi_ref = float(Environments(scenario, 1).reset(scenario.seed).psi_max[0]) / MBIT
        return 1.0 / (scenario.devices * max(scenario.arrival_mean / MBIT, 1e-6) * max(psi_ref, 1e-6))
    if isinstance(reward_scale, bool) or not isinstance(reward_scale, numbers.Real) \
            or not 0 < float(reward_scale) < np.inf:
        raise ValueError(f"reward_scale must be None, a positive number or one of {', '.join(REWARD_SCALES)}, "
                         f"got {reward_scale!r}")
    return float(reward_scale)


def unit_from_scaled(action: np.ndarray, action_scale: str) -> np.ndarray:
    """The unit-box vector of an action of the box ``action_scale`` (``u = (a + 1) / 2`` for
    ``"symmetric"``), as float."""
    unit = np.asarray(action, dtype=float)
    return (unit + 1.0) / 2.0 if action_scale == "symmetric" else unit


class EpisodeBatch:
    """The slot cycle both environments share: ``batch`` environments, actions of the chosen
    scale mapped onto feasible actions, the ablation's fixed blocks, scaled rewards, and the
    per-slot records from which the episode KPIs are computed."""

    def __init__(self, scenario: Scenario, batch: int, ablation=None, action_scale: str = "unit", reward_scale=None,
                 gate_idle: bool = False, offloaders_per_station: int = 0):
        if not isinstance(gate_idle, bool):
            raise ValueError(f"gate_idle must be True or False, got {gate_idle!r}")
        if isinstance(offloaders_per_station, bool) or not isinstance(offloaders_per_station, (int, np.integer)) \
                or offloaders_per_station < 0:
            raise ValueError(f"offloaders_per_station must be an integer >= 0, got {offloaders_per_station!r}")
        if offloaders_per_station and not gate_idle:
            raise ValueError("offloaders_per_station needs gate_idle=True")
        if ablation not in (None, "", *ABLATIONS):
            raise ValueError(f"ablation must be None or one of {', '.join(ABLATIONS)}, got {ablation!r}")
        if action_scale not in ACTION_SCALES:
            raise ValueError(f"action_scale must be one of {', '.join(ACTION_SCALES)}, got {action_scale!r}")
        self.scenario = scenario
        self.ablation = ABLATIONS[ablation] if ablation else NO_ABLATION
        self.action_scale = action_scale
        self.gate_idle, self.offloaders_per_station = gate_idle, int(offloaders_per_station)
        self.reward_factor = reward_factor(scenario, reward_scale)
        self.environments = Environments(scenario, batch)
        low = -1.0 if action_scale == "symmetric" else 0.0
        self.action_space = spaces.Box(low, 1.0, shape=(action_size(scenario),), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size(scenario),), dtype=np.float32)

    @property
    def batch(self) -> int:
        return self.environments.batch

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode of every environment from seed ``seed``: (B, observation) features."""
        sc, batch = self.scenario, self.batch
        self.records = {name: np.zeros((sc.slots, batch)) for name in ("cost", "energy", "served", "local", "edge")}
        self.decision_s = np.zeros(sc.slots)
        self.unstable = np.zeros(batch, dtype=bool)
        observation = self.environments.reset(seed)
        self.observed_at = time.perf_counter()
        return observation_features(observation)

    def step(self, action: np.ndarray):
        """Apply a (B, K) action to the current slot. Returns the next features (the features
        the action was taken on for an environment whose slot was not finite), the rewards
        (0 where not finite), the quantities of ``SlotResult.non_finite``, the slot's info
        arrays, and the episode KPIs after the last slot (else ``None``)."""
        decided_at = time.perf_counter()
        observation = self.environments.observation
        t = observation.slot
        mapped = self.ablation.apply(observation, gated_unit_action(
            observation, unit_from_scaled(action, self.action_scale), self.gate_idle, self.offloaders_per_station,
            self.ablation.fixed))
        result = self.environments.step(mapped, check=True, who="the Gymnasium environment")
        records = self.records
        records["cost"][t], records["energy"][t] = result.cost, result.service.energy
        records["served"][t] = result.service.served_total
        records["local"][t] = observation.local_queue.sum(axis=1)
        records["edge"][t] = observation.edge_queue.sum(axis=1)
        self.decision_s[t] = decided_at - self.observed_at
        self.unstable |= result.unstable
        info = {
            "cost": result.cost.copy(), "energy_j": result.service.energy.copy(),
            "served_mbit": result.service.served_total / MBIT, "local_backlog_mbit": records["local"][t] / MBIT,
            "edge_backlog_mbit": records["edge"][t] / MBIT, "eta_j_per_mbit": observation.eta * MBIT,
            "unstable": result.unstable.copy(),
        }
        non_finite = result.non_finite()
        features = observation_features(self.environments.observation)
        reward = -self.reward_factor * result.cost
        kpis = None
        if non_finite:
            bad = np.zeros(self.batch, dtype=bool)
            for environments in non_finite.values():
                bad[environments] = True
            features[bad] = observation_features(observation)[bad]
            reward = np.where(bad, 0.0, reward)
        elif self.environments.done:
            kpis = episode_kpis(records["cost"], records["energy"], records["served"], records["local"],
                                records["edge"], self.unstable, self.decision_s)
        self.observed_at = time.perf_counter()
        return features, reward, non_finite, info, kpis


class OffloadEnv(gymnasium.Env):
    """One DTN environment slot by slot: ``OffloadEnv(scenario, ablation=None,
    action_scale="unit", reward_scale=None, gate_idle=False, offloaders_per_station=0, **overrides)`` (module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario | None = None, *, ablation=None, action_scale: str = "unit",
                 reward_scale=None, gate_idle: bool = False, offloaders_per_station: int = 0, **overrides):
        self.episodes = EpisodeBatch(scenario_from(scenario, overrides), 1, ablation, action_scale, reward_scale,
                                     gate_idle, offloaders_per_station)
        self.scenario = self.episodes.scenario
        self.observation_space, self.action_space = self.episodes.observation_space, self.episodes.action_space
        self._started = self._terminated = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode from empty queues. Returns ``(observation, info)``."""
        if options:
            raise ValueError(f"options: the environment takes no reset options, got {sorted(options)}")
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(HELD_OUT_SEED_BASE))
        features = self.episodes.reset(episode_seed)
        self._started, self._terminated = True, False
        return features[0], {"slot": 0, "episode_seed": episode_seed}

    def step(self, action):
        """Apply the action to the current slot: ``(observation, reward, terminated, truncated, info)``."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._terminated:
            raise RuntimeError("the episode was terminated by a non-finite cost, energy or served bits: call reset()")
        if self.episodes.environments.done:
            raise RuntimeError(f"the episode ended after {self.scenario.slots} slots: call reset()")
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got shape {action.shape}")
        slot = self.episodes.environments.slot
        features, reward, non_finite, slot_info, kpis = self.episodes.step(action[None, :])
        info = {"slot": slot, **{name: slot_info[name][0].item() for name in SLOT_INFO}}
        if non_finite:  # the model's state is no longer meaningful: end the episode, keep rewards finite
            self._terminated = True
            info["non_finite"] = tuple(non_finite)
            return features[0], 0.0, True, False, info
        if kpis is not None:
            info["episode_kpis"] = kpis[0]
        return features[0], float(reward[0]), False, kpis is not None, info


class OffloadVectorEnv(VectorEnv):
    """``num_envs`` DTN environments stepped in lockstep by one ``Environments`` batch:
    ``OffloadVectorEnv(num_envs, scenario, **options)`` with the options of ``OffloadEnv`` (module docstring).

    The environments of a batch are drawn together from one episode seed (``reset(seed=s)``
    plays the loop's ``run_episode(..., seed=s, batch=num_envs)``), so they start, end and reset
    together: ``reset`` takes one integer seed, not one per environment. Autoreset follows
    Gymnasium's default ``AutoresetMode.NEXT_STEP``: the step after the one that ended the
    episode (every environment truncated at ``scenario.slots``, or one terminated by a non-finite
    slot and the others truncated with it) ignores its actions, resets the batch from a seed
    drawn from ``np_random`` and returns the first observation with reward 0. Per-slot ``info``
    entries are (B,) arrays with Gymnasium's ``_name`` masks; ``info["episode_kpis"]`` maps each
    KPI to a (B,) array (eta_EE NaN where nothing was served)."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scenario: Scenario | None = None, *, ablation=None,
                 action_scale: str = "unit", reward_scale=None, gate_idle: bool = False,
                 offloaders_per_station: int = 0, **overrides):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.episodes = EpisodeBatch(scenario_from(scenario, overrides), int(num_envs), ablation, action_scale,
                                     reward_scale, gate_idle, offloaders_per_station)
        self.scenario, self.num_envs = self.episodes.scenario, int(num_envs)
        self.single_observation_space = self.episodes.observation_space
        self.single_action_space = self.episodes.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._started, self._autoreset = False, False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode of every environment. Returns ``(observations, info)``."""
        if options:
            raise ValueError(f"options: the environment takes no reset options, got {sorted(options)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be None or one integer (the batch is drawn from one seed), got {seed!r}")
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(HELD_OUT_SEED_BASE))
        features = self.episodes.reset(episode_seed)
        self._started, self._autoreset = True, False
        return features, {"episode_seed": np.full(self.num_envs, episode_seed),
                          "_episode_seed": np.ones(self.num_envs, dtype=bool)}

    def step(self, actions):
        """Apply (B, K) actions: ``(observations, rewards, terminations, truncations, info)``."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        batch = self.num_envs
        if self._autoreset:
            features, info = self.reset()
            nothing = np.zeros(batch, dtype=bool)
            return features, np.zeros(batch), nothing, nothing.copy(), info
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got shape {actions.shape}")
        slot = self.episodes.environments.slot
        features, reward, non_finite, slot_info, kpis = self.episodes.step(actions)
        info = {"slot": np.full(batch, slot), **slot_info}
        terminated = np.zeros(batch, dtype=bool)
        for environments in non_finite.values():
            terminated[environments] = True
        info["non_finite"] = terminated.copy()
        # A lockstep batch ends together: the others of a terminated environment are truncated.
        truncated = ~terminated if terminated.any() else np.full(batch, self.episodes.environments.done)
        if kpis is not None:
            info["episode_kpis"] = {name: np.array([np.nan if kpi[name] is None else kpi[name] for kpi in kpis])
                                    for name in KPI_NAMES}
        for name in list(info):
            info[f"_{name}"] = np.ones(batch, dtype=bool)
        self._autoreset = bool((terminated | truncated).all())
        return features, reward, terminated, truncated, info


def make_env(**kwargs) -> gymnasium.Env:
    """The entry point of ``dtnopt/Offload-v0``: an ``OffloadEnv`` under a ``TimeLimit`` of the
    scenario's slots (the episode length depends on the keyword arguments, so the registered
    spec cannot carry it)."""
    env = OffloadEnv(**kwargs)
    return gymnasium.wrappers.TimeLimit(env, env.scenario.slots)

