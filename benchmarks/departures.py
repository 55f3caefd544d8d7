"""Where a learned policy departs from ``bcd``: the diagnosis of issue 4's backlog target
(``solvers/a3c.py`` docstring, seventh round).

    python -m benchmarks.departures --model X.pt [--model Y.pt ...] [--solver a3c] [--devices N]
                                    [--sbs M] [--seeds S] [--episodes E]

1. Finished decisions. Each checkpoint is scored on ``held_out_seeds(S)`` beside the references
   (the figures of ``benchmarks.targets``) as it decides, then with one of ``FINISHES`` applied to
   its decision at every slot: P2's local-CPU rule given the bits it offloads, or ``bcd``'s queue
   split (local CPU and power jointly), which keeps the bands and the edge CPU, so it may stop a
   device sending but cannot start one. What is left above ``bcd`` after a finish lies in the
   blocks the finish keeps.
2. Who sends. On the policy's own states under the queue-split finish (the first E held-out
   episodes), ``bcd`` decides on the same observations, and every station-slot where either
   sends is counted: both send (the same device or another), only the policy, only ``bcd``.
   Where only ``bcd`` sends: the medians of its bits and of its sender's queue above beta, and
   how often the station's edge queue was busy there (``BUSY_EDGE``) against where both send.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dtnopt import Network, Scenario, held_out_seeds, make
from dtnopt.blocks import local_cpu_rule
from dtnopt.config import MBIT
from dtnopt.lyapunov import evaluate
from dtnopt.solver import Solver
from benchmarks.targets import checkpoint_parser, load_checkpoints, pooled, reference_kpis, score


def local_cpu_finish(bcd, observation, action):
    """P2's cubic local-CPU rule (``dtnopt.blocks.local_cpu_rule``) given the bits ``action`` offloads."""
    _, service = evaluate(observation, action)
    return replace(action, local_cpu=local_cpu_rule(observation, observation.local_queue - service.offload_bits))


def queue_split_finish(bcd, observation, action):
    """``bcd``'s queue split: local CPU and power jointly, device by device where it lowers P2's cost."""
    return bcd.queue_split_step(observation, action)


FINISHES = {"local-CPU rule": local_cpu_finish, "queue split": queue_split_finish}
"""Blocks of ``bcd`` that may finish a policy's decision: name -> (bcd, observation, action) -> action."""


BUSY_EDGE = 0.5 * MBIT
"""Edge queue (bits) above which ``senders`` counts a station-slot as one with a busy edge."""


class Finished(Solver):
    """A solver's decision with a finish of ``FINISHES`` applied to it (same ablation: the loop
    then resets the blocks it fixes)."""

    def __init__(self, solver: Solver, finish: str, bcd: Solver):
        super().__init__(solver.scenario, solver.ablation, solver.seed)
        self.solver, self.finish, self.bcd = solver, FINISHES[finish], bcd
        self.name = f"{solver.label} + {finish}"

    def reset(self, seed=None) -> None:
        self.solver.reset(seed)

    def decide(self, observation):
        return self.finish(self.bcd, observation, self.solver.act(observation))


def senders(solver: Solver, bcd: Solver, scenario: Scenario, seeds) -> dict:
    """Who sends at each station-slot (MBS and SBSs) on ``solver``'s own states, ``bcd``
    deciding on the same observations beside it; where only ``bcd`` sends, the medians of its
    bits and of its sender's queue above beta, and the share of those station-slots whose edge
    queue holds more than ``BUSY_EDGE`` (beside the same share where both send; nan if none)."""
    counts = dict.fromkeys(("same device", "other device", "only policy", "only bcd"), 0)
    bits, above_beta, busy = [], [], {"both": [], "only bcd": []}
    for seed in seeds:
        network = Network(scenario, 1)
        observation = network.reset(seed)
        solver.reset(seed)
        while not network.done:
            action = solver.act(observation)
            reference = bcd.act(observation)
            _, ours = evaluate(observation, action)
            _, theirs = evaluate(observation, reference)
            ours, theirs = ours.offload_bits[0], theirs.offload_bits[0]
            association = observation.association[0]
            for station in range(scenario.stations):
                here = association == station
                mine, other = np.flatnonzero(here & (ours > 0)), np.flatnonzero(here & (theirs > 0))
                edge_busy = observation.edge_queue[0, station] > BUSY_EDGE
                if len(mine) and len(other):
                    same = mine[np.argmax(ours[mine])] == other[np.argmax(theirs[other])]
                    counts["same device" if same else "other device"] += 1
                    busy["both"].append(edge_busy)
                elif len(mine):
                    counts["only policy"] += 1
                elif len(other):
                    counts["only bcd"] += 1
                    busy["only bcd"].append(edge_busy)
                    sender = other[np.argmax(theirs[other])]
                    bits.append(theirs[other].sum() / MBIT)
                    above_beta.append((observation.local_queue[0, sender] - observation.beta[0, sender]) / MBIT)
            network.step(action, who=f"solver {solver.label!r}")
            observation = network.observation
    median = (lambda values: float(np.median(values)) if values else float("nan"))
    share = (lambda flags: float(np.mean(flags)) if flags else float("nan"))
    return {**counts, "bcd_bits_mbit": median(bits), "sender_above_beta_mbit": median(above_beta),
            "busy_edge_only_bcd": share(busy["only bcd"]), "busy_edge_both": share(busy["both"])}


def sender_line(counts: dict) -> str:
    both = counts["same device"] + counts["other device"]
    return (f"  who sends (station-slots): both {both} (same device {counts['same device']}), "
            f"only the policy {counts['only policy']}, only bcd {counts['only bcd']}\n"
            f"  where only bcd sends: median {counts['bcd_bits_mbit']:.1f} Mbit from a queue "
            f"{counts['sender_above_beta_mbit']:+.1f} Mbit above beta; edge queue over {BUSY_EDGE / MBIT:g} Mbit "
            f"in {counts['busy_edge_only_bcd']:.0%} of them, against {counts['busy_edge_both']:.0%} where both send")


def main(argv=None) -> None:
    parser = checkpoint_parser("python -m benchmarks.departures", __doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2,
                        help="held-out episodes of the sender count, 0 to skip it (default 2)")
    args = parser.parse_args(argv)
    if not 0 <= args.episodes <= args.seeds:
        parser.error(f"--episodes must be in [0, --seeds = {args.seeds}], got {args.episodes}")
    scenario, solvers = load_checkpoints(parser, args)
    seeds, bcd = held_out_seeds(args.seeds), make("bcd", scenario)
    print(f"scenario N={scenario.devices} M={scenario.sbs}; held_out_seeds({args.seeds})", flush=True)
    references = reference_kpis(scenario, seeds)
    differences = {"as decided": [], **{finish: [] for finish in FINISHES}}
    for path, solver in zip(args.model, solvers):
        for finish in differences:
            variant = solver if finish == "as decided" else Finished(solver, finish, bcd)
            differences[finish].append(score(f"{path}, {finish}", variant, scenario, seeds, references))
        if args.episodes:
            print(sender_line(senders(Finished(solver, "queue split", bcd), bcd, scenario, seeds[: args.episodes])),
                  flush=True)
    if len(args.model) > 1:
        for finish, values in differences.items():
            print(f"{finish}: {pooled(values)}")


if __name__ == "__main__":
    main()
