"""``a3c``: asynchronous advantage actor-critic, the paper's primary method (Sec. IV-B,
Algorithms 2-3), with a continuous Gaussian policy over the unit action box.

Layout: ``config`` (``A3CConfig``), ``networks`` (``ActorCritic``, ``DeviceActor``,
``NumpyActor``), ``pooled`` (the size-independent ``PooledActorCritic``), ``credit`` (the action
map, rewards and per-entry advantages) and ``training`` (the workers and the shared-state Adam,
over drawn network sizes for ``a3c-any``). The solver below ties them to ``dtnopt.learned``'s
``LearnedSolver``, which owns the evaluation schedule, the learning curve, model selection and
the checkpoint format.

What follows the paper: the actor-critic with ``t_max``-step returns (23), the advantage (25),
the policy loss (26) with an entropy bonus and the critic loss (27); the paper's 3 x 128 ReLU
networks and learning rate 1e-3 (Fig. 8); the reward (22) from the P2 cost (20).

What the paper leaves open, and how it is chosen here (measurements in docs/experiments/a3c.md):

- Actor (``actor``): by default one MLP shared by all devices (``DeviceActor``), fed each
  device's features, a context and its station's devices' mean and max features; P2 is a sum of
  per-device problems coupled only through the stations, so a shared per-device map learns from
  every device's samples at once. ``actor="mlp"`` is the paper's single MLP. ``actor="pooled"``
  (``pooled``) gives the critic shared per-device and per-station heads too and feeds both only
  per-part inputs and pooled summaries, so one checkpoint runs at any N and M; with
  ``devices_range`` and ``sbs_range`` every training episode draws its size (``a3c-any``).
- Policy: a Gaussian per entry of the unit action vector (``dtnopt.features``), state-independent
  log std. Samples are clipped into [0, 1] and mapped onto the feasible set (14a)-(14e) by the
  model's projection; the mean is unsquashed, so the deterministic action reaches the bounds.
- Gates (``gate_idle``, ``offloaders_per_station``): a device whose power entry is 0 gets no band
  and no edge CPU, and at each station only the device of largest claim sends. A station's edge
  energy is at best ``epsilon c (sum_i sqrt(D^e_i))^2 / f^e_j`` (11), least when its bits come
  from one device, the structure ``bcd`` finds. The gates apply in training and in decisions.
- Credit (``credit``): the critic predicts each device's and each station's part of the P2 cost
  and each action entry gets the advantage of the parts it changes in the slot; the entries by
  which a device claims its station get a difference reward (``externality``). With delta = 0
  this is exact and removes the other devices' noise from each device's gradient.
- Rewards are the negative cost parts in units of ``Psi_max lambda_bar`` (``reward_scale``), so
  learning is stable across N and V.
- Discount delta of (23): 0 by default, the Lyapunov-consistent choice (docs/model.md section 7): P2 is a
  per-slot problem whose queue weights already carry the future.
- Model selection (``keep_best``): ``fit`` ends with the evaluated weights of least validation
  system cost (``dtnopt.learned``), on ``validation_seeds``, disjoint from the studies' test seeds.
- Decisions: ``decide`` computes the mean action with ``NumpyActor`` (numpy, float32) and compiled
  loops (numba) for the features, the actor's inputs and the gated map: at batch 1 torch's
  per-call overhead would outweigh the arithmetic. The loops repeat numpy's arithmetic, so every
  decision is the same to the bit as with plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtnopt.learned import LearnedSolver, selection_key
from dtnopt.registry import register

from .config import ACTORS, A3CConfig
from .credit import credit, each_device_idle, externality, free_dimensions, gated_action, reward_scale
from .networks import ActorCritic, DeviceActor, NumpyActor, bound_loss, parameter_count, station_actor_inputs
from .pooled import PooledActorCritic, PooledNumpyActor, pooled_inputs, pooled_parameter_count
from .training import SharedAdam, scheduled_rate, train, train_worker

__all__ = [
    "ACTORS", "A3CConfig", "A3CSolver", "ActorCritic", "AnySizeA3C", "AnySizeConfig", "DeviceActor", "NumpyActor",
    "PooledActorCritic", "PooledNumpyActor", "SharedAdam", "bound_loss", "credit", "each_device_idle", "externality",
    "free_dimensions", "gated_action", "pooled_inputs", "reward_scale", "scheduled_rate", "selection_key",
    "station_actor_inputs", "train_worker",
]


@register("a3c")
class A3CSolver(LearnedSolver):
    """Asynchronous advantage actor-critic (Sec. IV-B, Algorithms 2-3), continuous Gaussian policy."""

    config_class = A3CConfig

    @property
    def model(self) -> ActorCritic:
        return self._model

    @model.setter
    def model(self, model) -> None:
        pooled = isinstance(model, PooledActorCritic)
        self._model, self._decider = model, PooledNumpyActor(model) if pooled else NumpyActor(model.actor)

    # --- networks (LearnedSolver hooks) ---
    def build_networks(self, config: A3CConfig) -> None:
        self.model = PooledActorCritic(config) if config.actor == "pooled" else ActorCritic(self.scenario, config)

    def parameter_count(self, config: A3CConfig) -> int:
        return pooled_parameter_count(config) if config.actor == "pooled" else parameter_count(self.scenario, config)

    @staticmethod
    def size_independent(config: A3CConfig) -> bool:
        return config.actor == "pooled"

    def validation_scenarios(self) -> list:
        """The scenario, and with training ranges also their smallest and largest corners."""
        ranges = {name: bounds for name, bounds in zip(("devices", "sbs"), self.config.sizes) if bounds is not None}
        if not ranges:
            return [self.scenario]
        low, high = (self.scenario.replace(**{name: bounds[end] for name, bounds in ranges.items()}) for end in (0, 1))
        return [low, self.scenario, high]

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, weights: dict) -> None:
        self.model.load_state_dict(weights)

    # --- acting ---
    def decide(self, observation):
        """The deterministic mean action (``NumpyActor``) through the gated map."""
        mean = self._decider(self.model.inputs(observation))
        return gated_action(observation, mean, self.ablation, self.config.gate_idle, self.config.offloaders_per_station)

    # --- training ---
    def learn(self, episodes: int, run) -> tuple:
        """``config.workers`` asynchronous workers (``training.train``)."""
        return train(self, episodes, run)


@dataclass
class AnySizeConfig(A3CConfig):
    """``A3CConfig`` with the size-independent networks and training ranges as defaults
    (docs/experiments/a3c-any.md). N in 5..50 and M in 1..5 cover the paper's sweeps (N 5-40,
    M 1-5). Hidden layers of 64 units: the per-device network runs once per device, so its width
    sets the decision time at large N, and 64 measured as good as 128. The 12,000 episodes took
    318-347 s on 2 cores, less than one default ``a3c`` training at N = 20 (398-523 s)."""

    actor: str = "pooled"
    devices_range: str = "5:50"
    sbs_range: str = "1:5"
    hidden_size: int = 64


@register("a3c-any")
class AnySizeA3C(A3CSolver):
    """Size-independent asynchronous actor-critic: one checkpoint decides at every N and M.

    ``a3c`` with ``actor="pooled"``, every training episode of a size drawn from the ranges;
    ``run``, ``evaluate`` and the studies load its checkpoint at any size."""

    config_class = AnySizeConfig
