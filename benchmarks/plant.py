"""Plant benchmark: full Lyapunov-loop slots per second.

One timed slot is what every user of the model pays per decision besides the solver itself: a
slot of the loop ``dtnopt.loop.slots(..., check=False)``, i.e. the projection of the action onto
(14a)-(14e), the plant step (service (3)-(12), queues (5)-(6), mobility, association, fading,
arrivals), the P2 cost (20), the finiteness check and the twin's next observation. The action is
fixed: the ``equal`` allocation (``fixed_allocation``) of the first slot, which the projection
adapts to each slot's stations. For reference the batch-1 line also shows the slot with that
allocation decided afresh every slot (the cheapest solver's decision included).

Targets: batch 1 at N = 20 at least 8,000 slots/s; batch 256 at least 250,000
env-slots/s; cost linear in N. Timings are the best of ``--repeats`` short runs, as wall-clock
and as CPU time of this process: on a shared machine (the load average is printed) the CPU time
is the fairer figure, and even it is pessimistic.

    python -m benchmarks.plant [--repeats 20] [--slots 400]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

from dtnopt.config import Scenario
from dtnopt.loop import slots as loop_slots
from dtnopt.solver import Solver, fixed_allocation

BATCH1_TARGET = 8_000  # slots/s, batch 1, N = 20
BATCHED_TARGET = 250_000  # env-slots/s, batch 256, N = 20


class FirstEqualAllocation(Solver):
    """The ``equal`` allocation of an episode's first slot, kept for the whole episode; with
    ``afresh`` decided from every slot's observation."""

    name = "first-equal-allocation"

    def __init__(self, scenario: Scenario, afresh: bool = False):
        super().__init__(scenario)
        self.afresh = afresh

    def reset(self, seed=None) -> None:
        self.action = None

    def decide(self, observation):
        if self.afresh or self.action is None:
            self.action = fixed_allocation(self.scenario, observation.association)
        return self.action


def seconds_per_slot(devices: int, batch: int, slots: int, repeats: int, decide: bool = False):
    """Best over ``repeats`` runs of ``slots`` slots of the mean time of one loop slot of the whole
    batch: (wall-clock seconds, CPU seconds of this process). On a shared machine the CPU time is
    the fairer figure; the targets are about wall-clock time on a quiet one. With ``decide`` the
    equal allocation is recomputed from every slot's observation."""
    scenario = Scenario(devices=devices, slots=10_000_000)
    solver = FirstEqualAllocation(scenario, afresh=decide)
    best_wall = best_cpu = float("inf")
    for repeat in range(-1, repeats):  # run -1 warms up and is not kept
        loop = itertools.islice(loop_slots(solver, scenario, seed=max(repeat, 0), batch=batch, check=False), slots)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in loop:
            pass
        if repeat >= 0:
            best_wall = min(best_wall, (time.perf_counter() - wall) / slots)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / slots)
    return best_wall, best_cpu


def verdict(rate: float, target: float) -> str:
    return "met" if rate >= target else "MISSED"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plant", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per setting, best kept (default 20)")
    parser.add_argument("--slots", type=int, default=400, help="slots per batch-1 run at N = 20 (default 400)")
    args = parser.parse_args(argv)
    repeats, slots = args.repeats, args.slots
    if repeats < 1 or slots < 1:
        parser.error("--repeats and --slots must be integers >= 1")
    print("load average (1, 5, 15 min): " + ", ".join(f"{load:.2f}" for load in os.getloadavg()))

    print(f"full loop slot (observe, project, step, cost), N = 20, M = 3, best of {repeats} runs")
    print("                   wall-clock                          CPU time of this process")
    (wall, cpu) = seconds_per_slot(20, 1, slots, repeats)
    print(f"  batch   1: {1 / wall:9,.0f} slots/s     ({wall * 1e6:7.1f} us)   "
          f"{1 / cpu:9,.0f} slots/s     ({cpu * 1e6:7.1f} us)   "
          f"target {BATCH1_TARGET:,}: wall {verdict(1 / wall, BATCH1_TARGET)}, cpu {verdict(1 / cpu, BATCH1_TARGET)}")
    (wall, cpu) = seconds_per_slot(20, 1, slots, repeats, decide=True)
    print(f"  + decision {1 / wall:9,.0f} slots/s     ({wall * 1e6:7.1f} us)   "
          f"{1 / cpu:9,.0f} slots/s     ({cpu * 1e6:7.1f} us)   (equal allocation decided every slot)")
    (wall, cpu) = seconds_per_slot(20, 256, max(slots // 40, 5), repeats)
    print(f"  batch 256: {256 / wall:9,.0f} env-slots/s ({wall * 1e6 / 256:7.2f} us)   "
          f"{256 / cpu:9,.0f} env-slots/s ({cpu * 1e6 / 256:7.2f} us)   "
          f"target {BATCHED_TARGET:,}: wall {verdict(256 / wall, BATCHED_TARGET)}, "
          f"cpu {verdict(256 / cpu, BATCHED_TARGET)}")

    print("growth with N (M = 3), CPU time: per slot, and per device-slot")
    print(f"  {'N':>5}  {'batch 1 us/slot':>16}  {'us/device':>10}  {'batch 256 us/env-slot':>22}  {'us/device':>10}")
    for devices in (20, 100, 1000):
        one = seconds_per_slot(devices, 1, max(slots * 20 // devices, 20), repeats)[1]
        many = seconds_per_slot(devices, 256, max(slots // (2 * devices), 2), max(repeats // 4, 3))[1] / 256
        print(f"  {devices:>5}  {one * 1e6:16.1f}  {one * 1e6 / devices:10.3f}  {many * 1e6:22.2f}  "
              f"{many * 1e6 / devices:10.4f}")


if __name__ == "__main__":
    main()
