"""DQN figures at N = 20: training throughput in environment slots per second and the
greedy policy's decision time per slot.

``python -m benchmarks.dqn``; ``benchmarks.solvers`` calls ``report()`` at its end. Throughput is
measured on a short ``fit`` with the default hyper-parameters (``envs`` environments stepped
together, one gradient step per slot once ``learning_starts`` transitions are stored), so it
includes acting, environment steps, replay and Adam updates, and the one evaluation episode at
the end. Timings are wall clock on whatever the machine is doing: on a shared machine they are
pessimistic.
"""

from __future__ import annotations

import time

import numpy as np

from dtnopt import Scenario, held_out_seeds, make, run_episode


def training_throughput(scenario: Scenario, episodes: int = 64) -> tuple[float, float]:
    """Environment slots per second of ``fit`` (learning from the first slots on): per wall
    second, and per CPU second of this process (less sensitive to other jobs on the machine)."""
    solver = make("dqn", scenario, learning_starts=1_000)
    wall, cpu = time.perf_counter(), time.process_time()
    curve = solver.fit(episodes=episodes, progress=False, eval_seeds=1)
    slots = float(curve.slots.iloc[-1])
    return slots / (time.perf_counter() - wall), slots / (time.process_time() - cpu)


def decision_ms(scenario: Scenario) -> float:
    """Median wall time of ``act`` per slot (batch of one environment), ms, over one episode."""
    solver = make("dqn", scenario)
    return float(np.median(run_episode(solver, scenario, seed=held_out_seeds(1)[0]).slots.decision_ms))


def report() -> None:
    scenario = Scenario(devices=20, sbs=3)
    print(f"dqn (N={scenario.devices}, M={scenario.sbs}), wall clock, shared machine: pessimistic")
    per_wall, per_cpu = training_throughput(scenario)
    print(f"  training throughput      {per_wall:8.0f} env slots/s  ({per_cpu:.0f} per CPU second)")
    print(f"  decision time per slot   {decision_ms(scenario):8.3f} ms")


if __name__ == "__main__":
    report()
