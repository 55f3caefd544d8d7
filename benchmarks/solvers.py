"""Benchmark of the per-slot solvers: ``python -m benchmarks.solvers [--quick]``.

Prints

1. decision time per slot (median and p95, ms, wall clock and process CPU time) of every
   registered solver but ``reference`` at N = 20, 100, 500 (M = 3), on the slots of a real
   episode driven by the solver itself (the first quarter of the episode, while the queues
   fill, is left out), and of ``bcd`` with its cvxpy problem rebuilt every solve, so the DPP
   speed-up is a measured figure (and the bandwidth LP's solve alone, DPP vs rebuilt);
   learned solvers are timed untrained;
2. the gap of ``bcd`` to ``reference`` on the P2 cost (20) of random small instances (N <= 6);
3. over 1,000 slots per N = 20, 100, 500 (of greedy-driven episodes, seeds 0, 1, ...): ``bcd``
   solver failures and the slots where it is worse than ``equal`` or ``greedy``.

Then calls ``benchmarks.dqn.report()`` if that exists. Wall-clock timings depend on the
machine's load; the CPU time much less so.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import time
from dataclasses import replace

import numpy as np
import pandas as pd

from dtnopt.config import MBIT, Scenario
from dtnopt.loop import slots as loop_slots
from dtnopt.lyapunov import evaluate, perturbation
from dtnopt.registry import available, make
from solvers.bcd import BandwidthLP

SIZES = (20, 100, 500)
SBS = 3


def decision_times(name: str, devices: int, slots: int, seed: int = 0, **kwargs) -> dict:
    """Median and p95 decision time per slot (ms), wall clock and process CPU time, of solver
    ``name`` over the last three quarters of an episode of ``slots`` slots that it drives itself
    (the first quarter, while the queues fill, is left out; it also builds any cached problem)."""
    scenario = Scenario(devices=devices, sbs=SBS, slots=slots)
    solver = make(name, scenario, **kwargs)
    wall, cpu = [], []
    for slot in loop_slots(solver, scenario, seed):
        if slot.index >= slots // 4:
            wall.append(slot.decision_s)
            cpu.append(slot.decision_cpu_s)
    wall, cpu = np.array(wall) * 1e3, np.array(cpu) * 1e3
    return {"median_ms": float(np.median(wall)), "p95_ms": float(np.percentile(wall, 95)),
            "median_cpu_ms": float(np.median(cpu)), "p95_cpu_ms": float(np.percentile(cpu, 95)),
            "failures": getattr(solver, "failures", None)}


def timing_table(slots: int) -> pd.DataFrame:
    rows = []
    names = [n for n in available(ablations=False) if n != "reference"]
    for devices in SIZES:
        for name in names + ["bcd rebuild"]:
            base, kwargs = ("bcd", {"rebuild": True}) if name == "bcd rebuild" else (name, {})
            try:
                rows.append({"solver": name, "N": devices, **decision_times(base, devices, slots, **kwargs)})
            except Exception as error:  # a solver that cannot run untrained or at this size
                rows.append({"solver": name, "N": devices, "note": f"skipped: {error}"[:70]})
    return pd.DataFrame(rows)


def lp_solve_times(devices: int, solves: int, seed: int = 0) -> dict:
    """Median time (ms, wall clock and CPU) of one solve of the bandwidth LP of ``bcd`` (block 1)
    re-solved through DPP against built from scratch, on random data of ``devices`` devices and
    M = 3."""
    rng = np.random.default_rng(seed)
    result = {"N": devices}
    for label, rebuild in (("dpp", False), ("rebuild", True)):
        program = BandwidthLP(devices, SBS + 1, "CLARABEL", rebuild)
        wall, cpu = [], []
        for k in range(solves + 1):
            association = rng.integers(0, SBS + 1, size=devices)
            started, started_cpu = time.perf_counter(), time.process_time()
            program.solve(-rng.uniform(0.0, 1.0, devices), rng.uniform(0.0, 0.5, devices), association)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        result[f"{label}_ms"] = float(np.median(wall[1:]) * 1e3)  # the first DPP solve compiles
        result[f"{label}_cpu_ms"] = float(np.median(cpu[1:]) * 1e3)
    result["speed_up"] = result["rebuild_ms"] / result["dpp_ms"]
    result["speed_up_cpu"] = result["rebuild_cpu_ms"] / result["dpp_cpu_ms"]
    return result


def random_instance(rng: np.random.Generator, devices: int, sbs: int = SBS, randomise: bool = False,
                    V: float = 100.0):
    """An observation (batch of one) from a ``greedy``-driven episode of a random seed at a
    random slot in [1, 150]; with ``randomise`` its queues and price eta_hat are redrawn: Q^l_i uniform in
    [0, 3 Psi_max], Q^e_j uniform in [0, 30 Mbit], eta_hat uniform in [0, 0.05] J/Mbit (beta (19)
    recomputed)."""
    scenario = Scenario(devices=devices, sbs=sbs, V=V)
    greedy_slots = loop_slots(make("greedy", scenario), scenario, int(rng.integers(0, 1_000_000)))
    observation = next(itertools.islice(greedy_slots, int(rng.integers(1, 151)) - 1, None)).next_observation
    if randomise:
        scenario = scenario.replace(eta0=float(rng.uniform(0.0, 0.05)))  # the price eta_hat, J/Mbit
        observation = replace(
            observation,
            scenario=scenario,
            local_queue=rng.uniform(0.0, 3.0, size=(1, devices)) * observation.psi_max[:, None],
            edge_queue=rng.uniform(0.0, 30.0, size=(1, scenario.stations)) * MBIT,
            beta=perturbation(scenario, observation.psi_max, devices),
        )
    return observation


def reference_gap(count: int, seed: int = 0) -> pd.DataFrame:
    """``bcd`` against ``reference`` on ``count`` random small instances (N in 2..6, M in
    1..3, V log-uniform in [10, 1000], half with redrawn queues). The relative gap is
    ``(bcd - reference) / |reference|`` (the issue's measure; P2 carries large constant terms,
    so also ``gap_of_saving``: the share of reference's saving over ``equal`` that bcd misses)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        devices, sbs, V = int(rng.integers(2, 7)), int(rng.integers(1, 4)), float(10.0 ** rng.uniform(1.0, 3.0))
        observation = random_instance(rng, devices, sbs, randomise=bool(k % 2), V=V)
        scenario = observation.scenario
        bcd_cost = float(evaluate(observation, make("bcd", scenario).act(observation))[0][0])
        equal_cost = float(evaluate(observation, make("equal", scenario).act(observation))[0][0])
        started = time.perf_counter()
        reference_cost = float(evaluate(observation, make("reference", scenario).act(observation))[0][0])
        rows.append({"N": devices, "M": sbs, "V": V, "randomised": bool(k % 2), "bcd": bcd_cost,
                     "reference": reference_cost,
                     "greedy": float(evaluate(observation, make("greedy", scenario).act(observation))[0][0]),
                     "equal": equal_cost,
                     "gap": (bcd_cost - reference_cost) / max(abs(reference_cost), 1e-12),
                     "gap_of_saving": (bcd_cost - reference_cost) / max(equal_cost - reference_cost, 1e-12),
                     "reference_s": time.perf_counter() - started})
    return pd.DataFrame(rows)


def failure_table(slots_per_size: int, seed: int = 0) -> pd.DataFrame:
    """``bcd`` over ``slots_per_size`` slots of ``greedy``-driven episodes (seeds from ``seed``,
    200 slots each) at every N: cvxpy failures and slots where it is worse than ``equal`` or
    ``greedy`` (beyond 1e-9 relative)."""
    rows = []
    for devices in SIZES:
        scenario = Scenario(devices=devices, sbs=SBS)
        bcd, greedy, equal = (make(n, scenario) for n in ("bcd", "greedy", "equal"))
        worse, seen, episode = 0, 0, 0
        while seen < slots_per_size:
            for slot in loop_slots(greedy, scenario, seed + episode):
                observation = slot.observation
                cost = float(evaluate(observation, bcd.act(observation))[0][0])
                best = min(float(evaluate(observation, a)[0][0]) for a in (slot.action, equal.act(observation)))
                worse += cost > best + 1e-9 * max(abs(best), 1.0)
                seen += 1
                if seen == slots_per_size:
                    break
            episode += 1
        rows.append({"N": devices, "slots": seen, "failures": bcd.failures, "worse_than_equal_or_greedy": worse})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.solvers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short version (fewer slots and instances)")
    args = parser.parse_args(argv)
    slots, instances, random_slots = (40, 12, 100) if args.quick else (200, 100, 1000)
    pd.set_option("display.width", 160)

    print(f"== decision time per slot, M = {SBS}, slots {slots // 4}..{slots - 1} of a {slots}-slot episode "
          "driven by the solver itself ==")
    timing = timing_table(slots)
    print(timing.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    dpp = timing[timing.solver == "bcd"].set_index("N").median_ms
    rebuilt = timing[timing.solver == "bcd rebuild"].set_index("N").median_ms
    dpp_cpu = timing[timing.solver == "bcd"].set_index("N").median_cpu_ms
    rebuilt_cpu = timing[timing.solver == "bcd rebuild"].set_index("N").median_cpu_ms
    print("bcd DPP speed-up, median rebuild / median DPP, wall (CPU):",
          ", ".join(f"N={n}: {rebuilt[n] / dpp[n]:.2f}x ({rebuilt_cpu[n] / dpp_cpu[n]:.2f}x)" for n in SIZES))

    print("bandwidth LP alone, median solve time, DPP re-solve vs built from scratch (ms, wall and CPU):")
    print(pd.DataFrame([lp_solve_times(n, 20 if args.quick else 100) for n in SIZES]).to_string(
        index=False, float_format=lambda v: f"{v:.2f}"))

    print(f"\n== bcd vs reference on {instances} random small instances (N <= 6) ==")
    gap = reference_gap(instances)
    print(gap.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    strictly = gap.reference < gap.bcd - 1e-9 * gap.bcd.abs().clip(lower=1.0)
    print(f"within 0.5% of reference: {(gap.gap <= 5e-3).mean():.1%}; median gap {gap.gap.median():.2e}, "
          f"max gap {gap.gap.max():.2e}; reference strictly better on {strictly.sum()} of {len(gap)}; "
          f"max gap of saving {gap.gap_of_saving.max():.2e}; bcd strictly below greedy on "
          f"{(gap.bcd < gap.greedy - 1e-9 * gap.greedy.abs().clip(lower=1.0)).mean():.0%}; "
          f"reference time median {gap.reference_s.median():.1f} s")

    print(f"\n== bcd failures over {random_slots} slots per N (greedy-driven episodes) ==")
    print(failure_table(random_slots).to_string(index=False))

    try:
        dqn = importlib.import_module("benchmarks.dqn")
    except ImportError:
        return
    if hasattr(dqn, "report"):
        print("\n== benchmarks.dqn ==")
        dqn.report()


if __name__ == "__main__":
    main()
