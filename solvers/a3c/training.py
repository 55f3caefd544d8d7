"""Asynchronous training of ``a3c`` (Algorithms 2-3), pytorch-a3c style.

The global actor-critic lives in shared memory. Each worker (one process, ``torch.set_num_threads(1)``)
owns an environment replica, a ``dtnopt.environments.Environments`` stepping ``envs_per_worker``
environments in lockstep whose episode seeds come from ``seed + rank``. It copies the global
weights, rolls out ``t_max`` slots, computes n-step returns per cost part and the advantage (25),
and pushes the gradients of the policy loss (26) and the critic loss (27) to the global networks
lock-free (Hogwild) through a shared-state Adam. Only the global counters are updated under a
lock. The caller's process is the evaluator. With one worker, the worker runs in a thread of the
caller and evaluates between two of its own updates, so a seeded run is deterministic.
"""

from __future__ import annotations

import copy
import os
import threading
import time

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn

from dtnopt.config import Scenario
from dtnopt.learned import TrainingRun
from dtnopt.loop import HELD_OUT_SEED_BASE
from dtnopt.lyapunov import p2_cost_terms
from dtnopt.environments import Environments
from dtnopt.solver import Ablation

from .config import A3CConfig
from .credit import credit, externality, free_dimensions, gated_action, reward_scale
from .networks import ActorCritic, bound_loss


def scheduled_rate(config: A3CConfig, progress: float) -> float:
    """The step size after ``progress`` (fraction of the budget's slots done, 0..1): annealed
    linearly to 0, as the A3C paper does (Mnih et al. 2016, experimental setup)."""
    return config.learning_rate * max(0.0, 1.0 - progress)


class SharedAdam(torch.optim.Adam):
    """Adam whose step counts and moment estimates live in shared memory, so every worker's
    update uses and advances the same statistics (pytorch-a3c ``my_optim.py``)."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr, foreach=False)
        for group in self.param_groups:
            for param in group["params"]:
                state = self.state[param]
                state["step"] = torch.zeros(())
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def share_memory(self) -> "SharedAdam":
        for group in self.param_groups:
            for param in group["params"]:
                for value in self.state[param].values():
                    value.share_memory_()
        return self


class Sizes:
    """The environments a worker trains on: ``scenario`` itself, or with ``config.sizes`` (the
    size-independent actor) a new batch for every episode whose N and M are drawn uniformly from
    the ranges."""

    def __init__(self, scenario: Scenario, config: A3CConfig, rng: np.random.Generator):
        self.scenario, self.batch, self.rng = scenario, config.envs_per_worker, rng
        self.devices, self.sbs = config.sizes
        self.vary = self.devices is not None or self.sbs is not None

    def draw(self, ablation: Ablation) -> tuple:
        """(environments, the free entries of the policy output as a tensor)."""
        changes = {}
        for name, bounds in (("devices", self.devices), ("sbs", self.sbs)):
            if bounds is not None:
                changes[name] = int(self.rng.integers(bounds[0], bounds[1] + 1))
        scenario = self.scenario.replace(**changes) if changes else self.scenario
        return Environments(scenario, self.batch), torch.as_tensor(free_dimensions(scenario, ablation))


def _each(function, inputs):
    """``function`` of the networks' input, which is one array or tensor (``ActorCritic``) or a
    tuple of them (``PooledActorCritic``): of each part of a tuple."""
    return tuple(map(function, inputs)) if isinstance(inputs, tuple) else function(inputs)


def _stack(states: list):
    """One rollout's inputs, stacked over its steps."""
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*states))
    return torch.stack(states)


def train_worker(rank: int, scenario: Scenario, ablation: Ablation, config: A3CConfig, seed: int,
                 budget: int, model: ActorCritic, optimizer: SharedAdam, counter, failure, after_update=None,
                 parent: int | None = None) -> None:
    """Algorithm 3 for one worker: sync, roll out t_max slots, push gradients, repeat until the
    global episode count reaches ``budget``, some worker failed or (a worker process) its
    ``parent`` process is gone: a killed run leaves no workers training on. ``after_update`` (the
    single-worker thread only) is called after every update, so evaluations see the weights at
    fixed points."""
    torch.set_num_threads(1)
    torch.manual_seed(seed + rank)
    local = copy.deepcopy(model)
    episode_seeds = np.random.default_rng(seed + rank)
    sizes = Sizes(scenario, config, episode_seeds)
    environments, free = sizes.draw(ablation)
    observation = environments.reset(int(episode_seeds.integers(HELD_OUT_SEED_BASE)))
    gate, offloaders = config.gate_idle, config.offloaders_per_station
    while not failure.value and counter["episodes"].value < budget and parent in (None, os.getppid()):
        local.load_state_dict(model.state_dict())
        scenario = environments.scenario
        features, samples, rewards, observed, externalities = [], [], [], [], []
        for _ in range(config.t_max):
            state = _each(torch.from_numpy, local.inputs(observation))
            with torch.no_grad():
                sample = local.policy(state).sample()
            result = environments.step(gated_action(observation, sample.numpy(), ablation, gate, offloaders), check=False)
            features.append(state)
            samples.append(sample)
            parts = np.concatenate(p2_cost_terms(scenario, observation, result.service), axis=1)
            scale = reward_scale(observation)
            rewards.append(-parts / scale)
            if config.counterfactual_credit:
                externalities.append(-externality(observation, sample.numpy(), ablation, gate, offloaders) / scale)
            observed.append(observation)
            observation = environments.observation
            if environments.done:
                break
        rewards = np.stack(rewards)  # (steps, B, N + M+1): the scaled parts of the P2 cost (20)
        states, actions = _stack(features), torch.stack(samples)
        values = local.value(states)  # (steps, B, N + M+1)
        # n-step returns per cost part, bootstrapped unless the episode ended (Algorithm 3).
        running = np.zeros(rewards.shape[1:])
        if config.discount > 0 and not environments.done:
            with torch.no_grad():
                running = local.value(_each(torch.from_numpy, local.inputs(observation))).numpy()
        returns = np.empty_like(rewards)
        for t in reversed(range(len(rewards))):
            running = rewards[t] + config.discount * running
            returns[t] = running
        advantage = returns - values.detach().numpy()  # (25), per cost part
        advantage = np.stack([credit(observed[t], advantage[t], scenario, externalities[t] if externalities else None)
                              for t in range(len(observed))])
        advantage = torch.as_tensor(advantage.reshape(-1, actions.shape[2]), dtype=torch.float32)
        if config.normalize_advantage and len(advantage) > 1:
            advantage = (advantage - advantage.mean(0)) / (advantage.std(0) + 1e-8)
        distribution = local.policy(_each(lambda part: part.flatten(0, 1), states))
        log_prob = distribution.log_prob(actions.flatten(0, 1)) * free
        entropy = (distribution.entropy() * free).sum(-1)
        policy_loss = -(log_prob * advantage).sum(-1).mean() - config.entropy_coef * entropy.mean()  # (26)
        value_loss = 0.5 * (torch.as_tensor(returns, dtype=torch.float32) - values).pow(2).sum(-1).mean()  # (27)
        loss = policy_loss + config.value_coef * value_loss + config.bound_coef * bound_loss(distribution.mean).mean()
        if not torch.isfinite(loss):
            failure.value = 1 + rank
            return
        local.zero_grad()
        loss.backward()
        # Actor and critic are separate networks: clip each, so a large critic error cannot
        # shrink the policy step.
        nn.utils.clip_grad_norm_(local.policy_parameters(), config.max_grad_norm)
        nn.utils.clip_grad_norm_(local.critic_parameters(), config.max_grad_norm)
        for shared, own in zip(model.parameters(), local.parameters()):
            shared.grad = own.grad
        rate = scheduled_rate(config, counter["slots"].value / (budget * scenario.slots))
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()  # lock-free (Hogwild)
        with counter["lock"]:
            counter["slots"].value += rewards.shape[0] * rewards.shape[1]
            if environments.done:
                counter["episodes"].value += environments.batch
        if after_update is not None:
            after_update()
        if environments.done:
            if sizes.vary:
                environments, free = sizes.draw(ablation)
            observation = environments.reset(int(episode_seeds.integers(HELD_OUT_SEED_BASE)))


def train(solver, budget: int, run: TrainingRun) -> tuple:
    """Run ``solver.config.workers`` workers on a shared copy of ``solver.model`` until ``budget``
    episodes are done, evaluating through ``run`` at its due points; returns the (episodes,
    slots) done. A worker's non-finite loss stops every worker (``run.non_finite``)."""
    config = solver.config
    shared = copy.deepcopy(solver.model).share_memory()
    optimizer = SharedAdam(shared.parameters(), lr=config.learning_rate).share_memory()
    context = mp.get_context("spawn")
    counter = {"lock": context.Lock(), "slots": context.Value("q", 0, lock=False),
               "episodes": context.Value("q", 0, lock=False)}
    failure = context.Value("i", 0)
    arguments = [(rank, solver.scenario, solver.ablation, config, solver.seed, budget, shared, optimizer,
                  counter, failure) for rank in range(config.workers)]

    def counts() -> tuple:
        return counter["episodes"].value, counter["slots"].value

    def evaluate_when_due() -> None:
        run.evaluate_due(counts, shared.state_dict)

    crashes = []
    if len(arguments) == 1:
        # A single worker runs in a thread of this process: no process start-up, same code.
        # It evaluates between its own updates, so the run is deterministic under a seed.
        def run_thread(args=arguments[0]):
            try:
                train_worker(*args, after_update=evaluate_when_due)
            except BaseException as error:  # reported to the caller after the join
                failure.value = failure.value or -1
                crashes.append(error)

        workers = [threading.Thread(target=run_thread, daemon=True)]
    else:
        workers = [context.Process(target=train_worker, args=args, kwargs={"parent": os.getpid()}, daemon=True)
                   for args in arguments]
    threads = torch.get_num_threads()
    try:
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers) and not failure.value:
            time.sleep(0.05)
            run.advance(counter["episodes"].value)
            if len(arguments) > 1:
                evaluate_when_due()
    except BaseException:  # e.g. KeyboardInterrupt: stop the workers too
        failure.value = failure.value or -2
        raise
    finally:
        for worker in workers:
            if worker.ident is None:
                continue
            worker.join(timeout=None if not failure.value else 10)
            if worker.is_alive() and isinstance(worker, mp.process.BaseProcess):
                worker.terminate()
        torch.set_num_threads(threads)
    run.advance(counter["episodes"].value)
    if crashes:
        if isinstance(crashes[0], FloatingPointError):
            raise crashes[0]
        raise RuntimeError("a3c worker failed") from crashes[0]
    crashed = [w.exitcode for w in workers if getattr(w, "exitcode", 0) not in (0, None)]
    if not failure.value and crashed:
        raise RuntimeError(f"a3c worker process exited with code {crashed[0]}")
    if failure.value:
        raise run.non_finite(f"worker {failure.value - 1}")
    solver.model.load_state_dict(shared.state_dict())
    return counts()
