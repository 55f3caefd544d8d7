"""The compute a plan of runs needs, estimated from measured costs on 2 cores, so a study (and
``studies.paper``) can say before it starts how long it will take, and how much of it is left
when the run cache already holds part of it.

Measured at N = 20, T = 200 on 2 cores: ``a3c`` trains its default 12,000 episodes in 400-520 s
with its two worker processes, ``dqn`` its default 1,600 in about 80 s; one ``bcd`` episode
takes 1-1.5 s (about 2.5 s at N = 40, so linear in N); an episode of ``a3c``, ``dqn`` or a
heuristic takes about 0.3 s; a training has a fixed cost of about 4 s (``--quick``: a3c trains 32
episodes in about 5 s). The estimate takes the upper end, scales everything linearly with
T, and with N above 20 (below 20 it keeps the N = 20 cost: the fixed per-slot work dominates
there), and counts every episode a run plays: training, learning-curve points (validation
episodes), reference levels and the held-out evaluation episodes.
"""

from __future__ import annotations

from pathlib import Path

from dtnopt.learned import EVALUATIONS_PER_RUN
from dtnopt.registry import resolve

from .runner import Run, RunCache

TRAINING_S_PER_EPISODE = {"a3c": 520 / 12_000, "dqn": 80 / 1_600, "a3c-any": 350 / 12_000}
"""Seconds per training episode at N = 20, T = 200 on 2 cores (whole default budget / episodes;
``a3c-any``'s episodes are of N drawn from 5..50)."""

OTHER_TRAINING_S_PER_EPISODE = 0.05
"""A learned solver not measured above."""

TRAINING_START_S = 4.0
"""Fixed cost of a training (worker processes, first evaluations), measured on ``--quick`` runs."""

EPISODE_S = {"bcd": 1.5}
"""Seconds per played episode at N = 20, T = 200 (``bcd`` and its ablations)."""

REFERENCE_START_S = 0.14
"""Seconds per slot and start of ``reference``, which runs ``bcd`` from each of the 2^N - 1 sets of
offloading devices every slot (measured at N = 5: 2.8 s per slot with M = 3, 4.1 s with M = 1)."""

FAST_EPISODE_S = 0.3
"""Seconds per played episode of every other solver (a learned policy's forward pass, a heuristic)."""

REFERENCE_DEVICES = 20
REFERENCE_SLOTS = 200


def _base(solver: str) -> str:
    return resolve(solver)[0].name


def episode_seconds(run: Run) -> float:
    """One played (evaluation or validation) episode of ``run``'s solver on its scenario."""
    devices, slots = run.scenario.devices, run.scenario.slots
    base = _base(run.solver)
    if base == "reference":  # exhaustive over the offloading sets: exponential in N
        return REFERENCE_START_S * (2 ** devices - 1) * slots
    if base in EPISODE_S:  # an optimisation per slot: linear in N
        return EPISODE_S[base] * devices / REFERENCE_DEVICES * slots / REFERENCE_SLOTS
    return FAST_EPISODE_S * max(1.0, devices / REFERENCE_DEVICES) * slots / REFERENCE_SLOTS


def training_seconds(run: Run) -> float:
    """Training of ``run`` (0 for a non-learned solver), learning-curve points included."""
    if not run.learned:
        return 0.0
    budget = run.budget or 0
    per_episode = TRAINING_S_PER_EPISODE.get(_base(run.solver), OTHER_TRAINING_S_PER_EPISODE)
    trained = run.trained_on
    scale = max(1.0, trained.devices / REFERENCE_DEVICES) * trained.slots / REFERENCE_SLOTS
    points = EVALUATIONS_PER_RUN if run.eval_every is None else -(-budget // max(run.eval_every, 1))
    return TRAINING_START_S + per_episode * budget * scale + points * run.eval_seeds * episode_seconds(run)


def run_seconds(run: Run, cache: RunCache | None = None) -> float:
    """What executing ``run`` costs: nothing if its result is cached, no training if its model is."""
    if cache is not None and cache.result(run).is_file():
        return 0.0
    trained = cache is not None and run.learned and cache.training(run).is_file()
    played = run.evaluation_episodes + run.reference_seeds
    return (0.0 if trained else training_seconds(run)) + played * episode_seconds(run)


def plan_seconds(runs: list, root: Path | None = None) -> tuple:
    """(total, remaining) seconds of a plan: ``total`` from scratch, ``remaining`` given the run
    cache at ``root``. A model shared by several runs (same training key) is counted once."""
    cache = RunCache(Path(root)) if root is not None else None
    total = remaining = 0.0
    trained, trained_left = set(), set()
    for run in dict.fromkeys(runs):
        key = repr(run.training_key())
        played = (run.evaluation_episodes + run.reference_seeds) * episode_seconds(run)
        total += played + (0.0 if key in trained else training_seconds(run))
        trained.add(key)
        left = run_seconds(run, cache)
        if left and key in trained_left and run.learned:
            left = played
        remaining += left
        if left:
            trained_left.add(key)
    return total, remaining


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
