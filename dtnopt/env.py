"""Gymnasium environment over the DTN model: the same ``Environments`` and P2 cost (20) the Lyapunov
loop evaluates, so RL solvers and outside RL libraries train on exactly that model.

- observation: ``dtnopt.features.observation_features`` of the twin's state s(t) (21), a float32
  vector of ``observation_size(scenario)`` entries;
- action: a vector in ``[0, 1]^K``, ``K = action_size(scenario)``, mapped onto a feasible action
  (14a)-(14e) by ``dtnopt.features.action_from_unit`` (out-of-range entries are clipped, NaN
  counts as 0);
- reward: ``-cost(t)``, the negative P2 cost (22);
- terminated: only when the slot's cost, energy or served bits is NaN or infinite (where the
  loop raises ``NonFiniteSlot``): then the reward is 0 rather than NaN, the observation is the
  one the action was taken on, ``info["non_finite"]`` names the quantities, and the episode is
  over (``reset()`` before stepping again); otherwise never (the queues run on); truncated after
  ``scenario.slots`` slots;
- info: the per-slot quantities of the loop's slot table (``cost``, ``energy_j``,
  ``served_mbit``, ``local_backlog_mbit``, ``edge_backlog_mbit``, ``eta_j_per_mbit``) plus
  ``slot`` and ``unstable`` (a queue passed ``scenario.queue_cap``).

``reset(seed=s)`` runs the episode the loop runs under seed ``s`` (``run_episode(..., seed=s)``);
``reset()`` without a seed draws the episode seed from ``self.np_random``, below the held-out
evaluation seeds. Importing this module registers the id ``dtnopt/DTN-v0``:
``gymnasium.make("dtnopt/DTN-v0", devices=10)`` forwards keyword arguments to ``DTNEnv``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

from .config import MBIT, Scenario
from .features import action_from_unit, action_size, observation_features, observation_size
from .loop import HELD_OUT_SEED_BASE
from .environments import Environments

ENV_ID = "dtnopt/DTN-v0"


class DTNEnv(gymnasium.Env):
    """One DTN environment (batch 1) slot by slot: ``DTNEnv(scenario, **overrides)``, where
    ``overrides`` replace fields of ``scenario`` (default ``Scenario()``)."""

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario | None = None, **overrides):
        if scenario is None:
            scenario = Scenario()
        if not isinstance(scenario, Scenario):
            raise ValueError(f"scenario must be a dtnopt.Scenario, got {type(scenario).__name__}")
        self.scenario = scenario.replace(**overrides) if overrides else scenario
        self.environments = Environments(self.scenario, batch=1)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size(self.scenario),),
                                            dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(action_size(self.scenario),), dtype=np.float32)
        self._started = self._terminated = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode from empty queues. Returns ``(observation, info)``."""
        if options:
            raise ValueError(f"options: DTNEnv takes no reset options, got {sorted(options)}")
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(HELD_OUT_SEED_BASE))
        observation = self.environments.reset(episode_seed)
        self._started, self._terminated = True, False
        return observation_features(observation)[0], {"slot": 0, "episode_seed": episode_seed}

    def step(self, action):
        """Apply the unit action to the current slot: ``(observation, reward, terminated,
        truncated, info)``."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._terminated:
            raise RuntimeError("the episode was terminated by a non-finite cost, energy or served bits: call reset()")
        if self.environments.done:
            raise RuntimeError(f"the episode ended after {self.scenario.slots} slots: call reset()")
        unit = np.asarray(action, dtype=float)
        if unit.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape} with entries in [0, 1], "
                             f"got shape {unit.shape}")
        observation = self.environments.observation
        result = self.environments.step(action_from_unit(observation, unit[None, :]), check=True, who="DTNEnv")
        cost = float(result.cost[0])
        info = {
            "slot": observation.slot,
            "cost": cost,
            "energy_j": float(result.service.energy[0]),
            "served_mbit": float(result.service.served[0].sum() / MBIT),
            "local_backlog_mbit": float(observation.local_queue[0].sum() / MBIT),
            "edge_backlog_mbit": float(observation.edge_queue[0].sum() / MBIT),
            "eta_j_per_mbit": float(observation.eta[0] * MBIT),
            "unstable": bool(result.unstable[0]),
        }
        non_finite = result.non_finite()
        if non_finite:  # the model's state is no longer meaningful: end the episode, keep rewards finite
            self._terminated = True
            info["non_finite"] = tuple(non_finite)
            return observation_features(observation)[0], 0.0, True, False, info
        truncated = self.environments.done
        return observation_features(self.environments.observation)[0], -cost, False, truncated, info


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="dtnopt.env:DTNEnv")
