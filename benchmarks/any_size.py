"""One size-independent checkpoint at every network size:
``python -m benchmarks.any_size --model A.pt [--model B.pt ...] [--episodes 10] [--out FILE.csv]``.

Scores each ``a3c-any`` checkpoint (one per training seed), ``equal`` and ``bcd`` on the same
held-out episodes (``dtnopt.evaluation.evaluate``) at every point of the paper's sweeps
(``SWEEP_POINTS``: Figs. 5-7, N 5-40, M 1-5) and at sizes far beyond its training ranges
(``LARGE_POINTS``: N = 100 and 200, M = 3 and 6), with no retraining, and prints per point and
checkpoint the share of the ``equal`` -> ``bcd`` gap in system cost it closes, its eta_EE
relative to ``bcd``'s, its backlog beside ``bcd``'s, its stable episodes and how many times
faster than ``bcd`` it decides (mean decision time per slot); then the worst of each over the
sweep points and over the large ones. Each point's rows are appended to ``--out`` as soon as
they are measured, and a rerun skips the points (per checkpoint file content) already there.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pandas as pd

from dtnopt.config import Scenario
from dtnopt.evaluation import evaluate
from dtnopt.registry import make

SWEEP_POINTS = ((5, 3), (10, 3), (15, 3), (20, 3), (30, 3), (40, 3),
                *((devices, sbs) for devices in (20, 40) for sbs in (1, 2, 4, 5)))
"""(N, M) of the sweeps of Figs. 5-7 (``studies.sbs``, ``studies.devices``, ``studies.vs_dqn``)."""

LARGE_POINTS = ((100, 3), (100, 6), (200, 3), (200, 6))
"""(N, M) far beyond the default training ranges (N 5..50, M 1..5)."""

COLUMNS = ("checkpoint", "digest", "devices", "sbs", "episodes", "gap_share", "eta_ratio", "backlog_mbit",
           "bcd_backlog_mbit", "stable", "bcd_stable", "decision_ms", "bcd_decision_ms", "speedup")


def digest(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]


def measure(models: dict, devices: int, sbs: int, episodes: int) -> list:
    """One row per checkpoint (path -> content digest) at (N, M): its scores beside ``equal``
    and ``bcd``."""
    scenario = Scenario(devices=devices, sbs=sbs)
    solvers = {path: make("a3c-any", scenario).load(path) for path in models}
    scored = evaluate(solvers, scenario, episodes, baseline="bcd")
    bcd = scored.kpis("bcd")
    rows = []
    for path in models:
        kpis = scored.kpis(path)
        rows.append({
            "checkpoint": path, "digest": models[path], "devices": devices, "sbs": sbs, "episodes": episodes,
            "gap_share": scored.gap_share(path),
            "eta_ratio": kpis["energy_efficiency_j_per_mbit"].mean() / bcd["energy_efficiency_j_per_mbit"].mean(),
            "backlog_mbit": kpis["mean_local_backlog_mbit"].mean(),
            "bcd_backlog_mbit": bcd["mean_local_backlog_mbit"].mean(),
            "stable": kpis["stable"].mean(), "bcd_stable": bcd["stable"].mean(),
            "decision_ms": kpis["decision_ms"].mean(), "bcd_decision_ms": bcd["decision_ms"].mean(),
            "speedup": bcd["decision_ms"].mean() / kpis["decision_ms"].mean(),
        })
    return rows


def summary(table: pd.DataFrame) -> str:
    """The worst of each score over the sweep points and over the large ones."""
    lines = []
    for name, points in (("sweep points (N 5-40, M 1-5)", SWEEP_POINTS), ("large points (N 100-200)", LARGE_POINTS)):
        rows = table[[(n, m) in points for n, m in zip(table["devices"], table["sbs"])]]
        if rows.empty:
            continue
        lines.append(f"{name}: {len(rows)} checkpoint x point; least gap share {rows['gap_share'].min():.1%}, "
                     f"eta_EE / bcd's {rows['eta_ratio'].min():.3f}-{rows['eta_ratio'].max():.3f}, "
                     f"least stable share {rows['stable'].min():.0%}, least speed-up {rows['speedup'].min():.0f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.any_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", dest="models", action="append", required=True, help="a3c-any checkpoint, repeatable")
    parser.add_argument("--episodes", type=int, default=10, help="held-out episodes per point, at least 2 (default 10)")
    parser.add_argument("--large", action=argparse.BooleanOptionalAction, default=True,
                        help="also the points of N = 100 and 200 (default: yes)")
    parser.add_argument("--out", default="results/any_size.csv", help="table, appended point by point")
    args = parser.parse_args(argv)
    if args.episodes < 2:
        parser.error(f"argument --episodes: must be an integer >= 2, got {args.episodes}")
    for path in args.models:
        if not Path(path).is_file():
            parser.error(f"argument --model: no checkpoint file at {path!r}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=COLUMNS)
    models = {path: digest(path) for path in args.models}
    wanted = set(models.values())
    for devices, sbs in (*SWEEP_POINTS, *(LARGE_POINTS if args.large else ())):
        here = done[(done["devices"] == devices) & (done["sbs"] == sbs) & (done["episodes"] == args.episodes)]
        if wanted <= set(here["digest"]):
            continue
        print(f"N={devices} M={sbs}: {args.episodes} episodes", file=sys.stderr, flush=True)
        rows = pd.DataFrame(measure(models, devices, sbs, args.episodes), columns=COLUMNS)
        rows.to_csv(out, mode="a", header=not out.is_file(), index=False)
        done = pd.concat([done, rows], ignore_index=True)
    table = done[done["digest"].isin(wanted) & (done["episodes"] == args.episodes)]
    shown = table.drop(columns=["digest"]).sort_values(["devices", "sbs", "checkpoint"])
    print(shown.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    print(summary(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
