"""``dqn``: deep Q-learning over a discretised action space, the paper's DRL benchmark (Fig. 7).

The paper compares its A3C against a DQN whose action space must be discretised. A flat
discretisation of a(t) = [x, p, Psi_j, f^l, f^e] (21) has ``levels ** (4N + M + 1)`` joint
actions, so this solver uses an action-branching dueling Q-network (BDQ, Tavakoli et al. 2018,
"Action Branching Architectures for Deep Reinforcement Learning"): a shared trunk reads the
twin's observation (``dtnopt.features.observation_features``), one state-value head and one
advantage head per action branch give ``Q_d(s, a_d) = V(s) + A_d(s, a_d) - mean_a A_d(s, a)``,
and each branch is maximised on its own. The network grows linearly with N.

Branches are the entries of the unit action vector of ``dtnopt.features``: per device a
bandwidth weight, power / p_max, local CPU / f^l_max and an edge-CPU weight (``DEVICE_ACTIONS``),
and per station the edge departure as a fraction of f^e_j tau / c. Each is discretised into
``levels`` evenly spaced values in [0, 1] and the unit vector is mapped onto the feasible set
(14a)-(14e) by ``dtnopt.features.action_from_unit``. Under an ablation (``dqn-no-cpu``,
``dqn-no-radio``) the fixed blocks have no branch: they are not learned and are held at the
values of ``dtnopt.solver.fixed_allocation``.

Learning (CleanRL's ``dqn.py`` structure, with BDQ's branch-averaged target): a batch of
``envs`` environments is stepped slot by slot with per-branch epsilon-greedy exploration
(epsilon decays linearly from ``epsilon_start`` to ``epsilon_end`` over ``exploration_fraction``
of the budget); transitions go to a uniform replay buffer; every slot does ``updates_per_slot``
Adam steps on the Huber loss between ``Q_d(s, a_d)`` and the double-DQN target
``y = r + delta (1 - done) mean_d Q_d^target(s', argmax_a Q_d(s', a))``; the target network is
copied every ``target_update_every`` updates. The reward of (22) is ``-cost(t)``, the P2 cost
(20), times ``reward_scale / N`` so its size does not grow with N.

Options (``gate_idle``, ``offloaders_per_station``, off by default): a3c's gates
(``dtnopt.features.gate_unit``) can be put on the unit vector before the map, so that Fig. 7 can
compare the two learning algorithms on one action map.

The discount delta of (23) defaults to 0: P2 is a per-slot problem whose queue weights already
carry the future (docs/model.md section 7), so the Lyapunov-consistent Q-function is the expected per-slot
reward and the target needs neither bootstrapping nor the target network (both remain, and are
used, when ``discount > 0``). The defaults were tuned at N = 20, M = 3 (docs/experiments/dqn.md).
Evaluation, learning curve, model selection and checkpoints are ``dtnopt.learned``'s.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from dtnopt.config import Scenario
from dtnopt.features import (DEVICE_ACTIONS, gated_unit_action, observation_features, observation_size,
                             unit_from_action)
from dtnopt.learned import LearnedSolver, TrainingRun, mlp_parameters
from dtnopt.loop import HELD_OUT_SEED_BASE
from dtnopt.environments import Environments
from dtnopt.registry import register
from dtnopt.solver import check_flags, check_ranges, fixed_allocation


@contextmanager
def single_thread():
    """Run torch on one thread: the matrices here are small, and a second intra-op thread on a
    busy machine made a batch-1 decision 100 times slower (33 ms against 0.35 ms, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class DQNConfig:
    """Hyper-parameters of the branching DQN; validated at construction."""

    levels: int = 5
    """Discrete levels per action branch, evenly spaced in [0, 1]; 5 measured better than 3 and 9."""
    hidden: int = 256
    """Units per hidden layer of the shared trunk (ReLU)."""
    hidden_layers: int = 2
    """Hidden layers of the shared trunk."""
    learning_rate: float = 3e-4
    """Adam step size (measured best here; the paper's 1e-3 is its A3C's)."""
    discount: float = 0.0
    """delta of (23); 0 is the per-slot P2 objective (docs/model.md section 7)."""
    episodes: int = 1600
    """Default training budget, in environment episodes of T slots."""
    envs: int = 32
    """Environments stepped together (one ``Environments`` batch); 32 gave a smoother curve than 16."""
    buffer_size: int = 200_000
    """Replay buffer capacity, transitions."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_starts: int = 4_000
    """Transitions collected before the first gradient step."""
    updates_per_slot: int = 1
    """Gradient steps per slot of the envs batch."""
    target_update_every: int = 500
    """Gradient steps between target-network copies (no effect at delta = 0: the target is the reward)."""
    epsilon_start: float = 1.0
    """Initial per-branch probability of a random level."""
    epsilon_end: float = 0.02
    """Final per-branch probability of a random level."""
    exploration_fraction: float = 0.5
    """Fraction of the budget over which epsilon decays linearly."""
    reward_scale: float = 0.05
    """Reward (22) = -cost(t) * reward_scale / N, so its size does not grow with N."""
    unstable_penalty: float = 0.0
    """Reward penalty per slot while a queue is above queue_cap (the paper's constant); 0 because
    1 and 10 measured worse (a myopic Q-value sees it only once a queue is over the cap)."""
    max_grad_norm: float = 10.0
    """Gradient clipping of each update."""
    gate_idle: bool = False
    """a3c's idle gate on the unit vector (``dtnopt.features.gate_unit``); off, as the studies measured."""
    offloaders_per_station: int = 0
    """With gate_idle: at most this many senders per station (0: no limit)."""
    keep_best: bool = False
    """End with the evaluated weights of least validation system cost (all-stable ones first);
    off, so a run ends with its last weights as the studies measured."""

    def __post_init__(self) -> None:
        ranges = {
            "levels": (2, 1_000, int), "hidden": (1, 100_000, int), "hidden_layers": (1, 100, int),
            "learning_rate": (1e-8, 1.0, float), "discount": (0.0, 1.0, float),
            "episodes": (1, 10**9, int), "envs": (1, 100_000, int), "buffer_size": (1, 10**9, int),
            "batch_size": (1, 10**6, int), "learning_starts": (0, 10**9, int),
            "updates_per_slot": (0, 1_000, int), "target_update_every": (1, 10**9, int),
            "epsilon_start": (0.0, 1.0, float), "epsilon_end": (0.0, 1.0, float),
            "exploration_fraction": (0.0, 1.0, float), "reward_scale": (1e-12, 1e12, float),
            "unstable_penalty": (0.0, 1e12, float), "max_grad_norm": (1e-12, 1e12, float),
            "offloaders_per_station": (0, 1_000_000, int),
        }
        check_ranges(self, ranges)
        check_flags(self, ("gate_idle", "keep_best"))
        if self.offloaders_per_station and not self.gate_idle:
            raise ValueError("offloaders_per_station needs gate_idle=True")


class BranchingQNetwork(nn.Module):
    """Dueling action-branching Q-network: (B, observation) -> Q of every level of every
    branch, (B, branches, levels)."""

    def __init__(self, inputs: int, branches: int, levels: int, hidden: int, hidden_layers: int):
        super().__init__()
        layers, width = [], inputs
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.state_value = nn.Linear(hidden, 1)
        self.advantage = nn.Linear(hidden, branches * levels)  # one linear head per branch, stacked
        self.branches, self.levels = branches, levels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(features)
        advantage = self.advantage(hidden).view(-1, self.branches, self.levels)
        return self.state_value(hidden)[:, :, None] + advantage - advantage.mean(dim=2, keepdim=True)


class ReplayBuffer:
    """Uniform replay of (features, levels, reward, next features, done), numpy ring buffer."""

    def __init__(self, capacity: int, feature_size: int, branches: int):
        self.features = np.zeros((capacity, feature_size), dtype=np.float32)
        self.next_features = np.zeros((capacity, feature_size), dtype=np.float32)
        self.levels = np.zeros((capacity, branches), dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.done = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.size, self.position = capacity, 0, 0

    def add(self, features, levels, reward, next_features, done) -> None:
        rows = (self.position + np.arange(len(reward))) % self.capacity
        self.features[rows], self.levels[rows], self.reward[rows] = features, levels, reward
        self.next_features[rows], self.done[rows] = next_features, done
        self.position = int(rows[-1] + 1) % self.capacity
        self.size = min(self.size + len(reward), self.capacity)

    def sample(self, rng: np.random.Generator, count: int):
        index = rng.integers(0, self.size, size=count)
        return tuple(torch.from_numpy(array[index]) for array in
                     (self.features, self.levels, self.reward, self.next_features, self.done))


@register("dqn")
class DQNSolver(LearnedSolver):
    """Branching dueling double DQN over discretised actions (the paper's DRL benchmark)."""

    config_class = DQNConfig

    # --- networks (LearnedSolver hooks) --------------------------------------------------
    def build_networks(self, config: DQNConfig) -> None:
        self.branch_entries = self._learned_entries()
        self.q_network = BranchingQNetwork(observation_size(self.scenario), len(self.branch_entries),
                                           config.levels, config.hidden, config.hidden_layers)
        self.level_values = np.linspace(0.0, 1.0, config.levels)

    def parameter_count(self, config: DQNConfig) -> int:
        branches = len(self._learned_entries())
        return mlp_parameters(observation_size(self.scenario), 1 + branches * config.levels, config.hidden,
                              config.hidden_layers)

    def state_dict(self) -> dict:
        return self.q_network.state_dict()

    def load_state_dict(self, weights: dict) -> None:
        self.q_network.load_state_dict(weights)

    # --- discretised actions -------------------------------------------------------------
    def _learned_entries(self) -> np.ndarray:
        """Indices of the unit action vector that have a branch (the blocks not fixed)."""
        devices, stations = self.scenario.devices, self.scenario.stations
        per_device = [k for k, name in enumerate(DEVICE_ACTIONS) if name not in self.ablation.fixed]
        entries = [i * len(DEVICE_ACTIONS) + k for i in range(devices) for k in per_device]
        if "edge_departure" not in self.ablation.fixed:
            entries += [len(DEVICE_ACTIONS) * devices + j for j in range(stations)]
        return np.array(entries, dtype=np.int64)

    def action_from_levels(self, observation, levels: np.ndarray):
        """Feasible ``Action`` for (B, branches) level indices; unbranched (fixed) entries take
        the values of ``fixed_allocation``. With ``gate_idle`` the unit vector is gated as a3c's
        (``dtnopt.features.gate_unit``, optionally one sender per station) before the map."""
        unit_action = unit_from_action(observation, fixed_allocation(self.scenario, observation.association))
        unit_action[:, self.branch_entries] = self.level_values[levels]
        return self.ablation.apply(observation, gated_unit_action(
            observation, unit_action, self.config.gate_idle, self.config.offloaders_per_station, self.ablation.fixed))

    def greedy_levels(self, features: np.ndarray) -> np.ndarray:
        """(B, branches) argmax level of each branch."""
        with torch.no_grad(), single_thread():
            return self.q_network(torch.from_numpy(features)).argmax(dim=2).numpy()

    def decide(self, observation):
        return self.action_from_levels(observation, self.greedy_levels(observation_features(observation)))

    # --- training ------------------------------------------------------------------------
    def learn(self, episodes: int, run: TrainingRun) -> tuple:
        """Replay training, ``envs`` episodes at a time (module docstring); one torch thread."""
        with single_thread():
            return self._train(episodes, run)

    def _train(self, episodes: int, run: TrainingRun) -> tuple:
        cfg = self.config
        sc = self.scenario
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        target_network = copy.deepcopy(self.q_network)
        optimizer = torch.optim.Adam(self.q_network.parameters(), lr=cfg.learning_rate)
        buffer = ReplayBuffer(min(cfg.buffer_size, episodes * sc.slots), observation_size(sc), len(self.branch_entries))
        total_slots = episodes * sc.slots
        decay_slots = max(cfg.exploration_fraction * total_slots, 1.0)
        done_episodes, slots_seen, updates = 0, 0, 0

        def counts() -> tuple:
            return done_episodes, slots_seen

        while done_episodes < episodes:
            batch = min(cfg.envs, episodes - done_episodes)
            environments = Environments(sc, batch)
            observation = environments.reset(int(rng.integers(0, HELD_OUT_SEED_BASE)))
            features = observation_features(observation)
            for slot in range(sc.slots):
                epsilon = cfg.epsilon_end + (cfg.epsilon_start - cfg.epsilon_end) * max(0.0, 1.0 - slots_seen / decay_slots)
                levels = self.greedy_levels(features)
                explore = rng.random(levels.shape) < epsilon
                levels = np.where(explore, rng.integers(0, cfg.levels, size=levels.shape), levels)
                result = environments.step(self.action_from_levels(observation, levels), check=False)
                reward = -result.cost * cfg.reward_scale / sc.devices - cfg.unstable_penalty * result.unstable
                observation = environments.observation
                next_features = observation_features(observation)
                buffer.add(features, levels, reward, next_features, float(slot == sc.slots - 1))
                features = next_features
                slots_seen += batch
                if buffer.size >= max(cfg.learning_starts, 1):
                    for _ in range(cfg.updates_per_slot):
                        self._update(buffer.sample(rng, cfg.batch_size), target_network, optimizer, run)
                        updates += 1
                        if updates % cfg.target_update_every == 0:
                            target_network.load_state_dict(self.q_network.state_dict())
            done_episodes += batch
            run.advance(done_episodes, epsilon=f"{epsilon:.2f}")
            run.evaluate_due(counts, self.state_dict)
        return counts()

    def _update(self, sample, target_network, optimizer, run: TrainingRun) -> None:
        """One Adam step on the Huber loss to the double-DQN target, averaged over branches."""
        features, levels, reward, next_features, done = sample
        q_taken = self.q_network(features).gather(2, levels[:, :, None])[:, :, 0]
        target = reward
        if self.config.discount > 0:
            with torch.no_grad():
                next_levels = self.q_network(next_features).argmax(dim=2, keepdim=True)
                next_value = target_network(next_features).gather(2, next_levels)[:, :, 0].mean(dim=1)
                target = reward + self.config.discount * (1.0 - done) * next_value
        loss = functional.smooth_l1_loss(q_taken, target[:, None].expand_as(q_taken))
        if not torch.isfinite(loss):
            raise run.non_finite("the loss")
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_network.parameters(), self.config.max_grad_norm)
        optimizer.step()
