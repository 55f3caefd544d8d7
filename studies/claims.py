"""Checking the paper's claims from a study's long-form table, and writing the summary.

Every claim is checked on three metrics, lower being better for each: the paper's system cost
(sum of the P2 cost (20)), the energy efficiency eta_EE (13), and the mean backlog (local plus
edge queues, (7a)-(7b)). docs/model.md section 5 explains why: the system cost is dominated by queue-drift
terms, is often negative and rewards bursty service, while P1's own objective is eta_EE under
stable queues.

Verdicts are stated from means over seeds; "resolved" adds that the 95% interval of the
difference (paired by seed) or of the trend's slope excludes zero, "not resolved" that it does
not at this number of seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dtnopt.evaluation import mean_interval

METRICS = (
    ("system_cost", "system cost"),
    ("energy_efficiency_j_per_mbit", "eta_EE (J/Mbit)"),
    ("backlog_mbit", "backlog (Mbit)"),
)
"""The metrics every claim is checked on, all lower-is-better."""

SHOWN = (
    ("system_cost", "system cost", "{:.4g}"),
    ("energy_efficiency_j_per_mbit", "eta_EE J/Mbit", "{:.4g}"),
    ("mean_local_backlog_mbit", "local backlog Mbit", "{:.4g}"),
    ("mean_edge_backlog_mbit", "edge backlog Mbit", "{:.4g}"),
    ("throughput_mbit", "throughput Mbit/slot", "{:.4g}"),
    ("stable", "stable", "{:.0%}"),
)


def evaluations(table: pd.DataFrame) -> pd.DataFrame:
    """The ``eval`` rows as one row per run, one column per metric, plus ``backlog_mbit``."""
    rows = table[table["phase"] == "eval"]
    keys = [c for c in rows.columns if c not in ("study", "phase", "episode", "metric", "value")]
    wide = rows.groupby([*keys, "metric"], dropna=False, sort=False)["value"].first().unstack("metric")
    wide = wide.reset_index()
    wide.columns.name = None
    wide["backlog_mbit"] = wide["mean_local_backlog_mbit"] + wide["mean_edge_backlog_mbit"]
    return wide


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4g}"


def _with_interval(values) -> str:
    mean, half = mean_interval(values)
    return f"{_fmt(mean)} ± {_fmt(half)}"


@dataclass
class Verdict:
    """One claim on one metric."""

    metric: str
    holds: bool | None  # None: could not be checked (solvers or settings missing)
    resolved: bool
    evidence: str

    def __post_init__(self):
        self.holds = None if self.holds is None else bool(self.holds)  # numpy bools are not True
        self.resolved = bool(self.resolved)

    def line(self) -> str:
        if self.holds is None:
            state = "not checked"
        else:
            state = ("holds" if self.holds else "does not hold") + ("" if self.resolved else " (not resolved)")
        return f"  - {self.metric}: **{state}**: {self.evidence}"


@dataclass
class Claim:
    """A claim of the paper and its verdict on each metric."""

    text: str
    verdicts: list

    def lines(self) -> list:
        return [f"- {self.text}", *(verdict.line() for verdict in self.verdicts)]


def ordering(values: pd.DataFrame, solvers: list, where: dict | None = None) -> list:
    """Verdicts of "solvers[0] < solvers[1] < ..." (lower is better) on every metric, on the
    runs matching ``where``; differences are paired by seed."""
    subset = _where(values, where)
    present = set(subset["solver"])
    missing = [s for s in solvers if s not in present]
    verdicts = []
    for metric, name in METRICS:
        if missing:
            verdicts.append(Verdict(name, None, False, f"no runs of {', '.join(missing)}"))
            continue
        by_seed = per_seed(subset, "solver", metric)
        means = [by_seed[s].mean() for s in solvers]
        if not np.all(np.isfinite(means)):
            evidence = ", ".join(f"{s} {_with_interval(by_seed[s])}" for s in solvers)
            verdicts.append(Verdict(name, None, False,
                                    f"undefined for some solver (nothing served, or training failed): {evidence}"))
            continue
        holds = all(a < b for a, b in zip(means, means[1:]))
        resolved = True
        for a, b in zip(solvers, solvers[1:]):
            low, high = _difference_interval(by_seed[b] - by_seed[a])
            resolved &= (low > 0 or high < 0)
        evidence = " < ".join(f"{s} {_with_interval(by_seed[s])}" for s in solvers) if holds else \
            ", ".join(f"{s} {_with_interval(by_seed[s])}" for s in solvers)
        verdicts.append(Verdict(name, holds, resolved, evidence))
    return verdicts


def beats(values: pd.DataFrame, winner: str, losers: list, where: dict | None = None) -> list:
    """Verdicts of "``winner`` is lower than each of ``losers``" on every metric (paired by seed)."""
    subset = _where(values, where)
    verdicts = []
    for metric, name in METRICS:
        pairs = [ordering(subset, [winner, loser])[[m for m, _ in METRICS].index(metric)] for loser in losers]
        if any(pair.holds is None for pair in pairs):
            verdicts.append(next(pair for pair in pairs if pair.holds is None))
            continue
        by_seed = per_seed(subset, "solver", metric)
        evidence = ", ".join(f"{s} {_with_interval(by_seed[s])}" for s in [winner, *losers])
        verdicts.append(Verdict(name, all(p.holds for p in pairs), all(p.resolved for p in pairs), evidence))
    return verdicts


def per_seed(values: pd.DataFrame, column: str, metric: str) -> pd.DataFrame:
    """``metric`` with one row per seed and one column per value of ``column`` (NaN kept)."""
    return values.groupby(["seed", column], dropna=False, sort=False)[metric].mean().unstack(column)


def _difference_interval(differences) -> tuple:
    mean, half = mean_interval(differences.dropna())
    return mean - half, mean + half


def _where(values: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    subset = values
    for column, value in (where or {}).items():
        subset = subset[subset[column] == value]
    return subset


def trend(values: pd.DataFrame, x: str, where: dict) -> dict:
    """Least-squares slope of each metric over ``x`` (all per-seed points) with its 95%
    interval, and the means at each ``x``: {metric: (slope, half_width, {x: mean})}."""
    from scipy import stats

    subset = _where(values, where)
    result = {}
    for metric, _ in METRICS:
        points = subset[[x, metric]].dropna()
        means = points.groupby(x)[metric].mean().to_dict()
        if points[x].nunique() < 2:
            result[metric] = (float("nan"), float("nan"), means)
            continue
        fit = stats.linregress(points[x].astype(float), points[metric].astype(float))
        dof = max(len(points) - 2, 1)
        result[metric] = (fit.slope, stats.t.ppf(0.975, dof) * fit.stderr, means)
    return result


def monotone(values: pd.DataFrame, x: str, where: dict, increasing: bool) -> list:
    """Verdicts of "the metric increases (decreases) with ``x``": holds when the slope has that
    sign; resolved when its 95% interval excludes zero. Evidence: the means at each ``x``."""
    verdicts = []
    for metric, name in METRICS:
        slope, half, means = trend(values, x, where)[metric]
        if not np.isfinite(slope):
            verdicts.append(Verdict(name, None, False, f"fewer than two values of {x}"))
            continue
        holds = slope > 0 if increasing else slope < 0
        resolved = abs(slope) > half
        evidence = (", ".join(f"{x}={k}: {_fmt(v)}" for k, v in sorted(means.items()))
                    + f"; slope {_fmt(slope)} ± {_fmt(half)} per unit of {x}")
        verdicts.append(Verdict(name, holds, resolved, evidence))
    return verdicts


def means_table(values: pd.DataFrame, keys: list) -> str:
    """Markdown table of mean ± 95% half-width over seeds of the shown KPIs, per ``keys``."""
    header = [*keys, "seeds", *(label for _, label, _ in SHOWN)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, rows in values.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        cells = [str(v) for v in group] + [str(rows["seed"].nunique())]
        for metric, _, form in SHOWN:
            mean, half = mean_interval(rows[metric])
            cells.append(form.format(mean) if metric == "stable" else f"{_fmt(mean)} ± {_fmt(half)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_counts(claims: list) -> str:
    verdicts = [v for c in claims for v in c.verdicts]
    held = sum(v.holds is True for v in verdicts)
    failed = sum(v.holds is False for v in verdicts)
    return f"{held} of {held + failed} checked claim/metric pairs hold"


def reading_notes(values: pd.DataFrame, claims: list) -> list:
    """Notes that explain, from the model, verdicts that differ between the system cost and the
    physical KPIs, and that flag learned runs whose training failed or whose policy is unstable."""
    notes = []
    split = [claim for claim in claims
             if len({v.holds for v in claim.verdicts if v.holds is not None}) > 1]
    if split:
        notes.append(
            f"- The verdicts on the system cost and on the physical KPIs differ for {len(split)} of {len(claims)} "
            "claims. docs/model.md section 5 explains why they can: summed over slots, -(Q_i - beta_i)(Psi_i - lambda_i) telescopes into "
            "boundary terms minus 1/2 sum_t (Psi_i - lambda_i)^2, and while a queue is below beta_i = V eta + Psi_max, "
            "serving less than the arrivals lowers the cost. So the system cost rewards bursty service and backlog "
            "held under beta, and every added device adds such negative terms; eta_EE and the backlog measure what P1 "
            "is about (energy per bit under stable queues).")
    falling = [c.text.split("(")[-1].rstrip(")") for c in claims if c.text.startswith("the cost grows with N")
               and c.verdicts and c.verdicts[0].holds is False and c.verdicts[1].holds and c.verdicts[2].holds]
    if falling:
        notes.append("- The system cost falls as N grows for " + ", ".join(falling) + " while its eta_EE and backlog "
                     "grow, as the paper says the cost should: the system cost is a sum over devices of the drift "
                     "terms above, and a solver that keeps each queue under its beta earns a negative term per "
                     "device per slot, so more devices give a more negative total.")
    if "training_failed" in values:
        failed = values[values["training_failed"] == 1]
        for row in failed.itertuples():
            notes.append(f"- Training of {row.solver} (N={row.devices}, M={row.sbs}, seed {row.seed}) diverged "
                         "(non-finite loss); its KPIs are missing (the run cache keeps the message).")
        learned = values[values["training_failed"].notna()]
        for solver, runs in learned.groupby("solver", sort=False):
            unstable = int((runs["stable"] == 0).sum())
            if unstable:
                notes.append(f"- The trained {solver} let a queue pass the stability cap in {unstable} of "
                             f"{len(runs)} evaluation episodes: at this training budget its policy is not yet "
                             "a stable one, so its numbers say more about the budget than about the method.")
    return notes


def summary(title: str, table: pd.DataFrame, claims: list, means: str, notes: list = ()) -> str:
    """The markdown summary of a study."""
    seeds = table["seed"].nunique()
    trained = table[(table["phase"] == "eval") & table["episode"].notna()]
    budget = ""
    if len(trained):
        budget = f" Learned solvers trained for {', '.join(map(str, sorted(set(trained['episode'].astype(int)))))} episodes."
    lines = [
        f"# {title}",
        "",
        f"Measured over {seeds} seed(s), one held-out evaluation episode per seed (the same episodes for every "
        f"solver), means ± 95% Student-t intervals (the figure: seaborn's bootstrap 95% intervals).{budget} Each claim of the paper is checked on the system cost and, "
        "because that cost is dominated by queue-drift terms (docs/model.md section 5), also on eta_EE and the backlog; "
        "lower is better for all three. " + verdict_counts(claims) + ".",
        "",
        "## Claims",
        "",
    ]
    for claim in claims:
        lines += claim.lines()
    lines += ["", "## Measured", "", means, ""]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)
