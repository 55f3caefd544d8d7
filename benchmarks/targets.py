"""Quality targets of trained checkpoints (issue 4), scored on held-out episodes beside the
references ``equal``, ``greedy`` and ``bcd`` run on the same episodes (paired by seed):

- the share of the gap between ``equal`` and ``bcd`` in mean system cost (20) it closes (90%);
- a lower mean system cost than ``greedy``'s;
- eta_EE (13) within 10% of ``bcd``'s (mean over episodes);
- no larger local backlog than ``bcd``'s: the mean paired difference is at most 0; its 95%
  Student-t interval over the episodes says whether a miss is resolved at this many episodes;
- every episode stable.

    python -m benchmarks.targets --model X.pt [--model Y.pt ...] [--solver a3c] [--devices N]
                                 [--sbs M] [--seeds S]

Asynchronous training is not repeatable run by run, so one checkpoint is one draw: with two or
more checkpoints (independent training runs) the backlog difference is also pooled over runs,
its mean with a 95% interval and the p-value of a t-test over runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dtnopt import Scenario, held_out_seeds, make, run_seeds
from dtnopt.registry import resolve
from studies.claims import mean_interval

REFERENCES = ("equal", "greedy", "bcd")
GAP_TARGET = 0.9  # share of the equal -> bcd gap in mean system cost
ETA_TOLERANCE = 0.10  # eta_EE at most this much above bcd's


def reference_kpis(scenario: Scenario, seeds: list) -> dict:
    """Per-seed KPIs (``run_seeds``) of each reference solver on ``seeds``, each announced when done."""
    references = {}
    for name in REFERENCES:
        references[name] = run_seeds(make(name, scenario), scenario, seeds)
        print(f"{name}: system cost {references[name]['system_cost'].mean():,.0f} over {len(seeds)} episodes",
              flush=True)
    return references


def targets(kpis: pd.DataFrame, references: dict) -> dict:
    """The targets' figures for one checkpoint's per-seed KPIs beside the references' (the same
    seeds): mean system cost, share of the equal -> bcd gap, greedy's cost, eta_EE over bcd's,
    mean local backlog, its paired difference from bcd's with the interval's half-width, and
    the share of stable episodes."""
    bcd = references["bcd"]
    for name, table in references.items():
        if list(table["seed"]) != list(kpis["seed"]):
            raise ValueError(f"{name}'s episodes are not the checkpoint's (seeds differ)")
    cost, equal, best = (table["system_cost"].mean() for table in (kpis, references["equal"], bcd))
    span = equal - best
    difference, half = mean_interval(kpis["mean_local_backlog_mbit"].to_numpy()
                                     - bcd["mean_local_backlog_mbit"].to_numpy())
    return {
        "system_cost": cost,
        "gap": (equal - cost) / span if span else float("nan"),
        "greedy_cost": references["greedy"]["system_cost"].mean(),
        "eta_ratio": kpis["energy_efficiency_j_per_mbit"].mean() / bcd["energy_efficiency_j_per_mbit"].mean(),
        "backlog": kpis["mean_local_backlog_mbit"].mean(),
        "backlog_minus_bcd": difference,
        "backlog_half_width": half,
        "stable": kpis["stable"].astype(float).mean(),
    }


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(name: str, figures: dict, bcd_backlog: float) -> list:
    """Lines stating each target's figure and verdict for one checkpoint."""
    difference, half = figures["backlog_minus_bcd"], figures["backlog_half_width"]
    if difference <= 0:
        backlog = "met"
    else:
        backlog = "MISSED (" + ("resolved: 0 is outside" if difference > half else "not resolved: 0 is inside") + \
            " the 95% interval)"
    return [
        f"{name}:",
        f"  gap closed {figures['gap']:.1%} of equal -> bcd (target {GAP_TARGET:.0%}): "
        f"{_met(figures['gap'] >= GAP_TARGET)}",
        f"  system cost {figures['system_cost']:,.0f} against greedy's {figures['greedy_cost']:,.0f}: "
        f"better than greedy {_met(figures['system_cost'] < figures['greedy_cost'])}",
        f"  eta_EE {figures['eta_ratio']:.3f}x bcd's (target at most {1 + ETA_TOLERANCE:.2f}x): "
        f"{_met(figures['eta_ratio'] <= 1 + ETA_TOLERANCE)}",
        f"  local backlog {figures['backlog']:.1f} Mbit, minus bcd's {bcd_backlog:.1f}: "
        f"{difference:+.2f} +- {half:.2f} (paired, 95%; target at most 0): {backlog}",
        f"  stable episodes {figures['stable']:.0%}: {_met(figures['stable'] == 1.0)}",
    ]


def score(name: str, solver, scenario: Scenario, seeds: list, references: dict) -> float:
    """Run ``solver`` on ``seeds``, print its targets' lines (``report``) beside ``references``
    and return its paired local-backlog difference from ``bcd``'s."""
    figures = targets(run_seeds(solver, scenario, seeds), references)
    print("\n".join(report(name, figures, references["bcd"]["mean_local_backlog_mbit"].mean())), flush=True)
    return figures["backlog_minus_bcd"]


def pooled(differences) -> str:
    """The backlog difference pooled over independent runs: mean, 95% interval, t-test p-value."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    mean, half = mean_interval(values)
    p_value = stats.ttest_1samp(values, 0.0).pvalue if np.ptp(values) > 0 else float("nan")
    return (f"over {len(values)} runs: local backlog minus bcd's {mean:+.2f} +- {half:.2f} Mbit "
            f"(95% over runs, t-test p = {p_value:.3f}); {int(np.sum(values > 0))} of {len(values)} runs above")


def checkpoint_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments of a command that scores trained checkpoints on held-out episodes."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", action="append", required=True, help="checkpoint to score (repeatable)")
    parser.add_argument("--solver", default="a3c", help="the checkpoints' learned solver (default a3c)")
    parser.add_argument("--devices", type=int, default=20, help="N (default 20)")
    parser.add_argument("--sbs", type=int, default=3, help="M (default 3)")
    parser.add_argument("--seeds", type=int, default=10, help="held-out episodes, at least 2 (default 10)")
    return parser


def load_checkpoints(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """(scenario, solvers): every checkpoint loaded before any episode runs; a bad argument
    exits through ``parser.error`` (code 2), naming it."""
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 (a paired interval needs two episodes), got {args.seeds}")
    try:
        scenario = Scenario(devices=args.devices, sbs=args.sbs)
        cls, _ = resolve(args.solver)
    except ValueError as error:
        parser.error(str(error))
    if not cls.learned:
        parser.error(f"--solver: {args.solver!r} is not a learned solver")
    solvers = []
    for path in args.model:
        if not Path(path).is_file():
            parser.error(f"--model: no checkpoint file at {path!r}")
        try:
            solvers.append(make(args.solver, scenario).load(path))
        except ValueError as error:  # a checkpoint of another scenario, solver or ablation
            parser.error(f"--model {path}: {error}")
    return scenario, solvers


def main(argv=None) -> None:
    parser = checkpoint_parser("python -m benchmarks.targets", __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    scenario, solvers = load_checkpoints(parser, args)
    seeds = held_out_seeds(args.seeds)
    print(f"scenario N={scenario.devices} M={scenario.sbs}; held_out_seeds({args.seeds})", flush=True)
    references = reference_kpis(scenario, seeds)
    differences = [score(path, solver, scenario, seeds, references) for path, solver in zip(args.model, solvers)]
    if len(differences) > 1:
        print(pooled(differences))


if __name__ == "__main__":
    main()
