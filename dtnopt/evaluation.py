"""Scoring solvers and checkpoints side by side on the same held-out episodes.

Every solver runs the episodes of ``held_out_seeds(K)`` (batch 1), so the per-episode KPIs are
paired: the difference of a solver to the baseline is taken episode by episode, which removes
the episode-to-episode spread (arrivals, positions, fading) that all solvers share. Intervals
are 95% Student-t intervals over the episodes. ``equal`` (nothing optimised) and the baseline
(``bcd`` by default) are always scored, for the share of the ``equal`` -> baseline gap in mean
system cost (20) that each solver closes: 0 is ``equal``'s cost, 1 the baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import Scenario
from .loop import KPI_NAMES, held_out_seeds, run_seeds

REFERENCE = "equal"
"""The solver with nothing optimised: the zero of the gap share."""

CONFIDENCE = 0.95


def mean_interval(values) -> tuple:
    """Mean and half-width of its 95% Student-t interval over the finite ``values`` (half-width 0
    for a single value or identical values; both NaN when none is finite)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1 or np.all(values == values[0]):
        return float(values.mean()), 0.0
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    mean = float(values.mean())
    return mean, float(half) if half > 1e-9 * abs(mean) else 0.0


@dataclass
class Evaluation:
    """The scores of solvers on the same held-out episodes."""

    scenario: Scenario
    seeds: list
    baseline: str  # label of the baseline in ``episodes``
    episodes: pd.DataFrame  # long form: one row per solver x episode (``solver``, ``seed``, KPI_NAMES)

    @property
    def solvers(self) -> list:
        """Labels in scoring order."""
        return list(dict.fromkeys(self.episodes["solver"]))

    def kpis(self, label: str) -> pd.DataFrame:
        """Per-episode KPIs of one solver, one row per seed in ``seeds`` order, as floats
        (``stable`` as 0/1, an undefined eta_EE as NaN)."""
        rows = self.episodes[self.episodes["solver"] == label].set_index("seed").loc[self.seeds]
        return rows[list(KPI_NAMES)].astype(float)

    def summary(self) -> pd.DataFrame:
        """Long form, one row per solver x KPI: the mean with its interval (``low``, ``high``)
        and the paired difference to the baseline with its interval (``minus_baseline``,
        ``minus_baseline_low``, ``minus_baseline_high``)."""
        baseline = self.kpis(self.baseline)
        rows = []
        for label in self.solvers:
            kpis = self.kpis(label)
            for kpi in KPI_NAMES:
                mean, half = mean_interval(kpis[kpi])
                difference, difference_half = mean_interval(kpis[kpi] - baseline[kpi])
                rows.append({"solver": label, "kpi": kpi, "mean": mean, "low": mean - half, "high": mean + half,
                             "minus_baseline": difference, "minus_baseline_low": difference - difference_half,
                             "minus_baseline_high": difference + difference_half})
        return pd.DataFrame(rows)

    def gap_share(self, label: str) -> float:
        """The share of the ``equal`` -> baseline gap in mean system cost that ``label`` closes
        (NaN when the two costs are equal)."""
        mean_cost = {name: self.kpis(name)["system_cost"].mean() for name in (REFERENCE, self.baseline, label)}
        span = mean_cost[REFERENCE] - mean_cost[self.baseline]
        return float((mean_cost[REFERENCE] - mean_cost[label]) / span) if span else float("nan")

    def to_dict(self) -> dict:
        """Everything as plain JSON types (NaN as None): the scenario, seeds, baseline, per solver
        each KPI's mean and interval, its difference to the baseline and the gap share, and the
        per-episode KPIs (long form) they come from."""
        summary = self.summary()
        solvers = {}
        for label in self.solvers:
            rows = summary[summary["solver"] == label].set_index("kpi")
            solvers[label] = {
                "kpis": {kpi: {"mean": _finite(row["mean"]), "low": _finite(row["low"]), "high": _finite(row["high"]),
                               "minus_baseline": {"mean": _finite(row["minus_baseline"]),
                                                  "low": _finite(row["minus_baseline_low"]),
                                                  "high": _finite(row["minus_baseline_high"])}}
                         for kpi, row in rows.iterrows()},
                "gap_share": _finite(self.gap_share(label)),
            }
        episodes = [{"solver": row["solver"], "seed": int(row["seed"]),
                     **{kpi: _finite(value) for kpi, value in row[list(KPI_NAMES)].astype(float).items()}}
                    for _, row in self.episodes.iterrows()]
        return {"scenario": self.scenario.to_dict(), "seeds": list(self.seeds), "baseline": self.baseline,
                "reference": REFERENCE, "interval": f"{CONFIDENCE:.0%} Student t over episodes", "solvers": solvers,
                "episodes": episodes}

    def report(self) -> str:
        """A readable table: per solver and KPI the mean with its interval and the paired
        difference to the baseline, then each solver's gap share."""
        summary = self.summary()
        lines = [f"{len(self.seeds)} held-out episodes (seeds {self.seeds[0]}..{self.seeds[-1]}), "
                 f"N={self.scenario.devices} M={self.scenario.sbs} T={self.scenario.slots}; "
                 f"{CONFIDENCE:.0%} Student-t intervals over episodes; differences paired by episode"]
        label_width = max(map(len, self.solvers + ["solver"]))
        kpi_width = max(map(len, KPI_NAMES))
        lines.append(f"{'solver':<{label_width}}  {'kpi':<{kpi_width}}  {'mean [95% interval]':<38}  "
                     f"minus {self.baseline} [95% interval]")
        for row in summary.itertuples():
            lines.append(f"{row.solver:<{label_width}}  {row.kpi:<{kpi_width}}  "
                         f"{_interval(row.mean, row.low, row.high):<38}  "
                         f"{_interval(row.minus_baseline, row.minus_baseline_low, row.minus_baseline_high, True)}")
        shares = ", ".join(f"{label} {self.gap_share(label):.1%}" for label in self.solvers)
        lines.append(f"share of the {REFERENCE} -> {self.baseline} gap in mean system cost: {shares}")
        return "\n".join(lines)


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    if not math.isfinite(mean):
        return "n/a"
    number = "{:+.6g}" if signed else "{:.6g}"
    return f"{number.format(mean)} [{low:.6g}, {high:.6g}]"


def evaluate(solvers: dict, scenario: Scenario, episodes: int = 10, baseline: str = "bcd") -> Evaluation:
    """Score ``solvers`` (label -> solver) on ``held_out_seeds(episodes)`` beside ``equal`` and
    the registered solver ``baseline``, scored last, in that order (each built for ``scenario``
    unless ``solvers`` holds one under that label)."""
    from .registry import make

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 2:
        raise ValueError(f"episodes must be an integer >= 2 (an interval needs two episodes), got {episodes!r}")
    scored = {label: solver for label, solver in solvers.items() if label not in (REFERENCE, baseline)}
    for label in (REFERENCE, baseline):
        scored[label] = solvers[label] if label in solvers else make(label, scenario)
    seeds = held_out_seeds(episodes)
    tables = [run_seeds(solver, scenario, seeds).assign(solver=label) for label, solver in scored.items()]
    table = pd.concat(tables, ignore_index=True)[["solver", "seed", *KPI_NAMES]]
    return Evaluation(scenario=scenario, seeds=seeds, baseline=baseline, episodes=table)
