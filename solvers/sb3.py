"""``sb3-ppo``, ``sb3-sac``, ``sb3-a2c``: Stable-Baselines3's PPO (Schulman et al. 2017), SAC
(Haarnoja et al. 2018) and A2C (Mnih et al. 2016) as learned per-slot solvers.

Each trains an SB3 ``MlpPolicy`` on the Gymnasium environment of the model
(``dtnopt.env.OffloadVectorEnv``, ``envs`` environments stepped in lockstep by one batched
``Environments.step``, seen by SB3 through ``BatchedVecEnv``) and decides like any other solver:
the twin's observation is flattened (``dtnopt.features.observation_features``), normalised with
the running statistics of training, and the deterministic policy's action in ``[-1, 1]^K`` is
mapped onto the unit box and onto a feasible action (14a)-(14e) by the environment's own map.

Defaults chosen so that a user who sets nothing trains on a well-posed problem:

- the symmetric action box ``[-1, 1]^K`` (SB3's Gaussian policies clip to it, SAC squashes to it);
- the reward ``-cost(t) / (N lambda_bar Psi_ref)`` (``reward_scale="per_device"``): the raw P2
  cost spans thousands per slot, which swamps the critic's loss (``dtnopt.env``);
- observations normalised by running mean and variance (SB3's ``VecNormalize``, rewards
  untouched); the statistics are part of the checkpoint's weights;
- a3c's gates on the action (``gate_idle``, one sender per station), the map under which a3c
  comes within 1% of ``bcd``'s system cost (docs/results/solvers.md);
- the discount 0, as a3c's and dqn's: P2 is a per-slot problem whose queue weights already carry
  the future (docs/model.md section 7).

Everything around the training loop (budget checks, evaluation on the validation seeds, the
learning curve, ``keep_best``, checkpoints that load with ``weights_only=True``) is
``dtnopt.learned``'s. The checkpoint's ``weights`` are the SB3 policy's tensors (``policy.*``)
and the observation statistics; optimiser state and SAC's replay buffer are not kept, so a loaded
solver decides exactly as saved but trains afresh. Needs ``pip install -e '.[sb3]'``.

Measured at the defaults, in a3c's training time, PPO closes about half of the equal -> bcd gap
in system cost and A2C about two thirds, against a3c's 99%; SAC, at 350 episodes, does not yet
keep the queues stable (docs/results/sb3.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

try:
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize
except ImportError as error:  # the registry skips these solvers with this message
    raise ImportError("the sb3-* solvers need stable-baselines3: pip install -e '.[sb3]'") from error

from dtnopt.env import OffloadVectorEnv, unit_from_scaled
from dtnopt.features import action_size, gated_unit_action, observation_features, observation_size
from dtnopt.learned import LearnedSolver, TrainingRun, mlp_parameters
from dtnopt.solver import check_flags, check_ranges

from .dqn import single_thread

ACTION_SCALE = "symmetric"


# --- hyper-parameters ------------------------------------------------------------------------

@dataclass
class SB3Config:
    """Hyper-parameters every SB3 solver has; validated at construction."""

    episodes: int = 5500
    """Default training budget, environment episodes of T slots summed over the ``envs``: about 8
    minutes of PPO at the defaults on 2 cores, a3c's default training time."""
    envs: int = 16
    """Environments stepped together (one ``OffloadVectorEnv`` batch)."""
    learning_rate: float = 3e-4
    """Adam (A2C: RMSprop) step size; SB3's default for PPO and SAC."""
    discount: float = 0.0
    """gamma; 0 is the per-slot P2 objective (docs/model.md section 7)."""
    hidden: int = 256
    """Units per hidden layer of the policy and of the critic."""
    hidden_layers: int = 2
    """Hidden layers of the policy and of the critic."""
    reward_scale: str | float = "per_device"
    """``dtnopt.env``'s reward scale: ``"per_device"`` or a positive factor of ``-cost(t)``."""
    normalize_observations: bool = True
    """Normalise observations by running mean and variance (saved with the weights)."""
    gate_idle: bool = True
    """a3c's idle gate on the action (``dtnopt.features.gate_unit``)."""
    offloaders_per_station: int = 1
    """With gate_idle: at most this many senders per station (0: no limit)."""
    keep_best: bool = True
    """End with the evaluated weights of least validation system cost (all-stable ones first)."""

    def __post_init__(self) -> None:
        check_ranges(self, {
            "episodes": (1, 10**9, int), "envs": (1, 100_000, int), "learning_rate": (1e-12, 10.0, float),
            "discount": (0.0, 1.0, float), "hidden": (1, 100_000, int), "hidden_layers": (1, 100, int),
            "offloaders_per_station": (0, 1_000_000, int),
        })
        check_flags(self, ("normalize_observations", "gate_idle", "keep_best"))
        if self.reward_scale != "per_device":
            check_ranges(self, {"reward_scale": (1e-12, 1e12, float)})
        if self.offloaders_per_station and not self.gate_idle:
            raise ValueError("offloaders_per_station (default 1) needs gate_idle=True; "
                             "set offloaders_per_station=0 with gate_idle=False")


@dataclass
class OnPolicyConfig(SB3Config):
    """The hyper-parameters PPO and A2C share (SB3's defaults unless said otherwise)."""

    n_steps: int = 5
    """Slots per environment in a rollout (rollout = envs x n_steps transitions)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Gradient clipping of each update."""
    log_std_init: float = -1.0
    """Initial log standard deviation of the Gaussian policy: std 0.37 on the [-1, 1] box (SB3's
    0, std 1, clips most actions to the box's corners)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {
            "n_steps": (1, 10**6, int), "entropy_coef": (0.0, 1e3, float), "value_coef": (0.0, 1e3, float),
            "max_grad_norm": (1e-12, 1e12, float), "log_std_init": (-20.0, 5.0, float),
        })


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO's hyper-parameters (SB3's defaults unless said otherwise)."""

    n_steps: int = 32
    """Slots per environment in a rollout (rollout = envs x n_steps transitions)."""
    batch_size: int = 128
    """Transitions per gradient step."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation (no effect at discount 0)."""
    clip_range: float = 0.2
    """epsilon of the clipped surrogate objective."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"batch_size": (2, 10**7, int), "n_epochs": (1, 1_000, int),
                            "gae_lambda": (0.0, 1.0, float), "clip_range": (1e-6, 10.0, float)})
        if self.n_steps * self.envs < 2:
            raise ValueError(f"n_steps x envs must be at least 2 (a rollout to normalise advantages over), "
                             f"got {self.n_steps} x {self.envs}")


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C's hyper-parameters (SB3's defaults unless said otherwise): an update every ``n_steps``."""

    episodes: int = 16000
    """Default training budget: about 8 minutes on 2 cores, as PPO's (an A2C update is one
    gradient step, so an episode costs a third of PPO's)."""
    learning_rate: float = 7e-4
    """RMSprop step size (SB3's default for A2C)."""


@dataclass
class SACConfig(SB3Config):
    """SAC's hyper-parameters (SB3's defaults unless said otherwise)."""

    episodes: int = 350
    """Default training budget: about 8 minutes on 2 cores, as PPO's (one gradient step per batch
    slot, about 1.4 s per episode at the defaults)."""
    envs: int = 4
    """Environments stepped together; each batch slot adds ``envs`` transitions."""
    buffer_size: int = 100_000
    """Replay buffer capacity, transitions."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_starts: int = 2_000
    """Transitions collected before the first gradient step."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    gradient_steps: int = 1
    """Gradient steps per batch slot."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {
            "buffer_size": (1, 10**9, int), "batch_size": (1, 10**6, int), "learning_starts": (0, 10**9, int),
            "tau": (0.0, 1.0, float), "gradient_steps": (1, 1_000, int),
        })


# --- Stable-Baselines3's view of the batched environment -------------------------------------

class BatchedVecEnv(VecEnv):
    """SB3's ``VecEnv`` over an ``OffloadVectorEnv``. SB3 resets an environment in the step that
    ends its episode and passes the last observation as ``info["terminal_observation"]``; the
    batch ends together, so that step resets the whole batch (from a seed of the vector
    environment's ``np_random``, below the held-out seeds)."""

    def __init__(self, envs: OffloadVectorEnv):
        self.envs = envs
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    def reset(self):
        seed = self._seeds[0]  # the batch is drawn from one seed: SB3's seed() sets seed, seed + 1, ...
        observations, _ = self.envs.reset(seed=seed)
        self._reset_seeds()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        observations, rewards, terminated, truncated, _ = self.envs.step(self._actions)
        dones = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(truncated[i] and not terminated[i])} for i in range(self.num_envs)]
        if dones.all():
            for i, info in enumerate(infos):
                info["terminal_observation"] = observations[i]
            observations, _ = self.envs.reset()
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.envs.close()

    def get_attr(self, attr_name: str, indices=None) -> list:
        return [getattr(self.envs, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        setattr(self.envs, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        result = getattr(self.envs, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list:
        return [False for _ in self._get_indices(indices)]


class TrainingCallback(BaseCallback):
    """Reports SB3's progress to the ``TrainingRun``: episodes done, evaluation when due, and a
    non-finite error when a rollout ends with non-finite weights."""

    def __init__(self, solver: "SB3Solver", run: TrainingRun):
        super().__init__()
        self.solver, self.run = solver, run

    def counts(self) -> tuple:
        slots = self.model.num_timesteps
        return slots // self.solver.scenario.slots, slots

    def _on_step(self) -> bool:
        self.run.advance(self.counts()[0])
        self.run.evaluate_due(self.counts, self.solver.state_dict)
        return True

    def _on_rollout_end(self) -> None:
        if not all(torch.isfinite(value).all() for value in self.model.policy.parameters()):
            raise self.run.non_finite("the weights")


# --- the solvers -----------------------------------------------------------------------------

class SB3Solver(LearnedSolver):
    """A Stable-Baselines3 algorithm as a learned solver (module docstring); subclasses name the
    algorithm and its keyword arguments."""

    algorithm: str = ""

    def algorithm_kwargs(self, config) -> dict:
        raise NotImplementedError

    def build_networks(self, config) -> None:
        self.envs = OffloadVectorEnv(config.envs, self.scenario, ablation=self.ablation.name or None,
                                     action_scale=ACTION_SCALE, reward_scale=config.reward_scale,
                                     gate_idle=config.gate_idle, offloaders_per_station=config.offloaders_per_station)
        self.normalizer = VecNormalize(BatchedVecEnv(self.envs), norm_obs=config.normalize_observations,
                                       norm_reward=False)
        algorithm = getattr(stable_baselines3, self.algorithm)
        self.model = algorithm("MlpPolicy", self.normalizer, gamma=config.discount, learning_rate=config.learning_rate,
                               seed=self.seed, device="cpu", verbose=0, **self.algorithm_kwargs(config))
        # A logger without outputs: SB3's default one makes a folder in the temporary directory per fit.
        self.model.set_logger(Logger(folder=None, output_formats=[]))

    def state_dict(self) -> dict:
        statistics = self.normalizer.obs_rms
        return {**{f"policy.{name}": value for name, value in self.model.policy.state_dict().items()},
                "observation_mean": torch.as_tensor(statistics.mean), "observation_var": torch.as_tensor(statistics.var),
                "observation_count": torch.tensor(float(statistics.count), dtype=torch.float64)}

    def load_state_dict(self, weights: dict) -> None:
        statistics = {"observation_mean", "observation_var", "observation_count"}
        missing = sorted(statistics - set(weights))
        if missing:
            raise RuntimeError(f"missing observation statistics {', '.join(missing)}")
        size = observation_size(self.scenario)
        if weights["observation_mean"].shape != (size,) or weights["observation_var"].shape != (size,):
            raise RuntimeError(f"observation statistics must have shape ({size},)")
        policy = {name[len("policy."):]: value for name, value in weights.items() if name.startswith("policy.")}
        unknown = sorted(set(weights) - statistics - {f"policy.{name}" for name in policy})
        if unknown:
            raise RuntimeError(f"unexpected tensors {', '.join(unknown)}")
        self.model.policy.load_state_dict(policy)
        running = self.normalizer.obs_rms
        running.mean = weights["observation_mean"].double().numpy().copy()
        running.var = weights["observation_var"].double().numpy().copy()
        running.count = float(weights["observation_count"])

    def decide(self, observation):
        features = self.normalizer.normalize_obs(observation_features(observation))
        with torch.no_grad(), single_thread():
            action, _ = self.model.policy.predict(features, deterministic=True)
        unit = unit_from_scaled(action, ACTION_SCALE)
        cfg = self.config
        return gated_unit_action(observation, unit, cfg.gate_idle, cfg.offloaders_per_station, self.ablation.fixed)

    def learn(self, episodes: int, run: TrainingRun) -> tuple:
        """SB3's ``learn`` for ``episodes`` x T transitions (a started rollout is finished), on
        one torch thread."""
        callback = TrainingCallback(self, run)
        self.normalizer.training = True
        try:
            with single_thread():
                self.model.learn(total_timesteps=episodes * self.scenario.slots, callback=callback)
        finally:
            self.normalizer.training = False  # the statistics stay as the weights say
        return callback.counts()


def _net_arch(config, critic: str) -> dict:
    return {"pi": [config.hidden] * config.hidden_layers, critic: [config.hidden] * config.hidden_layers}


class OnPolicySolver(SB3Solver):
    """PPO and A2C: a Gaussian policy and a state-value critic, separate MLPs."""

    def algorithm_kwargs(self, config: OnPolicyConfig) -> dict:
        return dict(n_steps=config.n_steps, ent_coef=config.entropy_coef, vf_coef=config.value_coef,
                    max_grad_norm=config.max_grad_norm,
                    policy_kwargs={"net_arch": _net_arch(config, "vf"), "log_std_init": config.log_std_init})

    def parameter_count(self, config: OnPolicyConfig) -> int:
        """The actor, the critic and the policy's log standard deviations."""
        inputs, outputs = observation_size(self.scenario), action_size(self.scenario)
        return (mlp_parameters(inputs, outputs, config.hidden, config.hidden_layers)
                + mlp_parameters(inputs, 1, config.hidden, config.hidden_layers) + outputs)


class PPOSolver(OnPolicySolver):
    """Stable-Baselines3's PPO on the batched environment (symmetric actions, scaled rewards)."""

    algorithm, config_class = "PPO", PPOConfig

    def algorithm_kwargs(self, config: PPOConfig) -> dict:
        return dict(super().algorithm_kwargs(config), batch_size=config.batch_size, n_epochs=config.n_epochs,
                    gae_lambda=config.gae_lambda, clip_range=config.clip_range)


class A2CSolver(OnPolicySolver):
    """Stable-Baselines3's A2C on the batched environment (symmetric actions, scaled rewards)."""

    algorithm, config_class = "A2C", A2CConfig


class SACSolver(SB3Solver):
    """Stable-Baselines3's SAC on the batched environment (squashed actions, scaled rewards)."""

    algorithm, config_class = "SAC", SACConfig

    def algorithm_kwargs(self, config: SACConfig) -> dict:
        return dict(buffer_size=config.buffer_size, batch_size=config.batch_size,
                    learning_starts=config.learning_starts, tau=config.tau, gradient_steps=config.gradient_steps,
                    policy_kwargs={"net_arch": _net_arch(config, "qf")})

    def parameter_count(self, config: SACConfig) -> int:
        """The actor (means and log standard deviations) and two critics with their targets."""
        inputs, outputs = observation_size(self.scenario), action_size(self.scenario)
        return (mlp_parameters(inputs, 2 * outputs, config.hidden, config.hidden_layers)
                + 4 * mlp_parameters(inputs + outputs, 1, config.hidden, config.hidden_layers))
