"""Speed of the ``a3c`` solver: training throughput (environment slots per second) with 1 and
2 workers, and the trained-or-not policy's decision time per slot, beside ``bcd``'s.

    python -m benchmarks.a3c [--episodes K] [--devices N] [--sbs M] [--model X.pt] [--skip-bcd]
                             [--timed-episodes E] [--repeats R]

Throughput is measured between the first and the last evaluation of a ``fit`` run (so process
start-up is excluded; the two one-seed evaluations in the parent are included). Decision time is
the median time of ``solver.act`` per slot, as ``run_episode`` times it, over all slots of E
held-out episodes, ``a3c`` and ``bcd`` taking turns episode by episode. It is split into its
parts (features, actor, gate and map) to show where a faster path must cut; the actor's MLP
forwards alone are its arithmetic floor in numpy. Timings on a shared machine are pessimistic
and vary from minute to minute (``a3c``'s more than ``bcd``'s: a few tens of microseconds of
vector arithmetic suffer more from a busy neighbour than milliseconds of solver code), so the
ratio is measured R times in a row and reported per measurement and as their median; the load
average is printed beside them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np

from dtnopt import Scenario, held_out_seeds, make, run_episode
from dtnopt.loop import slots as loop_slots


def training_throughput(scenario: Scenario, workers: int, episodes: int) -> tuple[float, float]:
    """(steady-state, overall) environment slots per second of ``fit`` with ``workers`` workers."""
    solver = make("a3c", scenario, n_workers=workers)
    curve = solver.fit(episodes=episodes, progress=False, eval_every=max(1, episodes // 4), eval_seeds=1)
    first, last = curve.iloc[0], curve.iloc[-1]
    steady = (last["slots"] - first["slots"]) / max(last["wall_s"] - first["wall_s"], 1e-9)
    return steady, last["slots"] / last["wall_s"]


def decision_ms(solvers: dict, scenario: Scenario, episodes: int = 3) -> dict:
    """Median per-slot decision time (ms) of each solver of ``solvers`` (name -> solver) over all
    slots of ``episodes`` held-out episodes, as ``run_episode`` times ``solver.act``. The solvers
    take turns episode by episode, so a slower spell of a shared machine falls on all of them alike."""
    times = {name: [] for name in solvers}
    for seed in held_out_seeds(episodes):
        for name, solver in solvers.items():
            times[name].append(run_episode(solver, scenario, seed=seed).slots["decision_ms"].to_numpy())
    return {name: float(np.median(np.concatenate(values))) for name, values in times.items()}


def decision_parts_ms(scenario: Scenario, model: str | None = None, slots: int = 50, repeats: int = 5) -> dict:
    """Breakdown of ``a3c``'s decision per slot (ms, best of ``repeats`` passes over
    the first ``slots`` observations of a held-out episode): the observation features, the actor
    (``NumpyActor``), of which its MLP forwards alone, and the gate with the feasible-action map
    (``gated_action``)."""
    from dtnopt.features import observation_features
    from solvers.a3c import gated_action

    solver = make("a3c", scenario)
    if model:
        solver.load(model)
    episode = loop_slots(solver, scenario, held_out_seeds(1)[0])
    observations = [slot.observation for slot in itertools.islice(episode, slots)]
    features = [observation_features(o) for o in observations]
    means = [solver._decider(f) for f in features]
    config = solver.config
    decider = solver._decider
    # The actor's MLP forwards alone, on inputs of their shapes (per device for the shared
    # per-device MLP, one row for the stations' MLP and the paper's MLP): the arithmetic floor.
    leading = [(1, scenario.devices), (1,)] if len(decider.nets) == 2 else [(1,)]
    mlp_inputs = [np.ones(lead + (net[0][0].shape[0],), dtype=np.float32) for lead, net in zip(leading, decider.nets)]
    parts = {
        "features": lambda k: observation_features(observations[k]),
        "actor": lambda k: decider(features[k]),
        "actor MLPs only": lambda k: [decider._mlp(net, x) for net, x in zip(decider.nets, mlp_inputs)],
        "gate and map": lambda k: gated_action(observations[k], means[k], solver.ablation, config.gate_idle,
                                               config.offloaders_per_station),
        "whole decision": lambda k: solver.act(observations[k]),
    }
    timings = {}
    for name, part in parts.items():
        passes = []
        for _ in range(repeats):
            started = time.perf_counter()
            for k in range(len(observations)):
                part(k)
            passes.append((time.perf_counter() - started) / len(observations) * 1e3)
        timings[name] = min(passes)
    return timings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.a3c", description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=320, help="training episodes per throughput run")
    parser.add_argument("--devices", type=int, default=20, help="N (default 20)")
    parser.add_argument("--sbs", type=int, default=3, help="M (default 3)")
    parser.add_argument("--model", default=None, help="a3c checkpoint whose decision time to measure")
    parser.add_argument("--skip-bcd", action="store_true", help="do not time bcd")
    parser.add_argument("--timed-episodes", type=int, default=3, help="held-out episodes timed per solver (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="decision-time measurements in a row (default 5)")
    args = parser.parse_args(argv)
    for name in ("episodes", "timed_episodes", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    try:
        scenario = Scenario(devices=args.devices, sbs=args.sbs)
    except ValueError as error:
        parser.error(str(error))
    print(f"scenario N={scenario.devices} M={scenario.sbs}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for workers in (1, 2):
        steady, overall = training_throughput(scenario, workers, args.episodes)
        print(f"a3c training, {workers} worker(s): {steady:,.0f} env slots/s steady, "
              f"{overall:,.0f} including start-up (load average {os.getloadavg()[0]:.1f})")
    solvers = {name: make(name, scenario) for name in (("a3c",) if args.skip_bcd else ("a3c", "bcd"))}
    if args.model:
        solvers["a3c"].load(args.model)
    ratios = []
    for repeat in range(args.repeats):  # the same solvers each time: built and loaded once
        times = decision_ms(solvers, scenario, args.timed_episodes)
        line = (f"decision time {repeat + 1}/{args.repeats}: a3c {times['a3c']:.3f} ms/slot (median over "
                f"{args.timed_episodes} held-out episodes)")
        if not args.skip_bcd:
            ratios.append(times["bcd"] / times["a3c"])
            line += f", bcd {times['bcd']:.2f} ms/slot (the same episodes, taking turns): {ratios[-1]:,.0f}x"
        print(line + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    if ratios:
        print(f"bcd / a3c over the {len(ratios)} measurements: median {np.median(ratios):,.0f}x, "
              f"range {min(ratios):,.0f}x-{max(ratios):,.0f}x")
    parts = decision_parts_ms(scenario, args.model)
    print("a3c decision, best pass over 50 slots: " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in parts.items()))


if __name__ == "__main__":
    main()
