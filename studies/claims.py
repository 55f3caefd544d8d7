"""Checking the paper's claims from a study's long-form table, and writing the summary.

Every claim is checked on three metrics, lower being better for each: the paper's system cost
(sum of the P2 cost (20)), the energy efficiency eta_EE (13), and the mean backlog (local plus
edge queues, (7a)-(7b)). docs/model.md section 5 explains why: the system cost is dominated by queue-drift
terms, is often negative and rewards bursty service, while P1's own objective is eta_EE under
stable queues.

Decisions. A claim "A < B" is decided on the per-episode difference A - B, paired by replicate
and evaluation episode (every solver of a replicate faces the same held-out episodes). Its 95%
interval comes from a stratified (two-level) bootstrap: resample the replicates, then the
episodes within each resampled replicate, and take the percentiles of the mean difference (the
mean over replicates of each replicate's mean, so a replicate with many episodes weighs as much
as one with few). Replicates carry the training seed's variation, episodes the scenario's; a
plain bootstrap over all episodes would treat the K episodes of one trained policy as K
independent policies. The claim holds (does not hold) when the interval lies below (above) 0,
and is not resolved when it contains 0 or when there is only one replicate. Trends ("grows with
N") are decided the same way on the least-squares slope of the per-setting means. The
resampling uses a fixed seed, so a table always gives the same verdicts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dtnopt.evaluation import mean_interval  # noqa: F401  (the figures' reference bands)
from dtnopt.loop import KPI_NAMES

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

RESAMPLES = 10_000
"""Bootstrap resamples per interval."""

CONFIDENCE = 0.95

BOOTSTRAP_SEED = 0
"""Seed of every bootstrap: the same table always gives the same intervals and verdicts."""

VALUE_COLUMNS = frozenset(KPI_NAMES) | {"training_s", "training_failed", "backlog_mbit", "decision_p95_ms"}


def evaluations(table: pd.DataFrame) -> pd.DataFrame:
    """The ``eval`` rows as one row per run and evaluation episode, one column per metric, plus
    ``backlog_mbit`` (local plus edge)."""
    rows = table[table["phase"] == "eval"]
    keys = [c for c in rows.columns if c not in ("study", "phase", "episode", "metric", "value")]
    wide = rows.groupby([*keys, "metric"], dropna=False, sort=False)["value"].first().unstack("metric")
    wide = wide.reset_index()
    wide.columns.name = None
    wide["backlog_mbit"] = wide["mean_local_backlog_mbit"] + wide["mean_edge_backlog_mbit"]
    return wide


def keys(values: pd.DataFrame) -> list:
    """The columns of ``evaluations`` that identify an episode (solver, replicate, setting, seed)."""
    return [column for column in values.columns if column not in VALUE_COLUMNS]


# --- the stratified bootstrap -------------------------------------------------------------------

def stratified_bootstrap(cube, statistic=None, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple:
    """Estimate and 95% percentile interval of ``statistic`` of the mean over replicates of each
    replicate's mean, by resampling replicates and then episodes within each drawn replicate.

    ``cube`` has shape (replicates, episodes) or (replicates, episodes, columns); NaN marks an
    absent value (replicates may have different numbers of episodes). ``statistic`` maps the
    (resamples, columns) array of means to one number per resample (default: the first column).
    Returns ``(estimate, low, high, replicates)``; the interval is NaN without values."""
    cube = np.asarray(cube, dtype=float)
    if cube.ndim == 2:
        cube = cube[..., None]
    statistic = statistic or (lambda means: means[:, 0])
    present = np.isfinite(cube).any(axis=2)
    cube, present = cube[present.any(axis=1)], present[present.any(axis=1)]
    replicates = len(cube)
    if replicates == 0:
        return float("nan"), float("nan"), float("nan"), 0
    order = np.argsort(~present, axis=1, kind="stable")  # each replicate's episodes first, then padding
    cube = np.take_along_axis(cube, order[..., None], axis=1)
    counts = present.sum(axis=1)
    width = cube.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a metric undefined in a replicate
        estimate = float(statistic(np.nanmean(np.nanmean(cube, axis=1), axis=0)[None])[0])
        rng = np.random.default_rng(seed)
        drawn = rng.integers(0, replicates, size=(resamples, replicates))
        count = counts[drawn]
        positions = (rng.random((resamples, replicates, width)) * count[..., None]).astype(int)
        values = cube[drawn[..., None], positions]
        values[np.arange(width) >= count[..., None]] = np.nan  # a replicate draws as many episodes as it has
        means = np.nanmean(np.nanmean(values, axis=2), axis=1)
        low, high = np.nanpercentile(statistic(means), [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return estimate, float(low), float(high), replicates


def episode_cube(frame: pd.DataFrame, columns) -> np.ndarray:
    """(replicates, episodes, columns) array of ``frame``'s ``columns``, rows grouped by ``seed``
    (the replicate) in ``evaluation_seed`` order, padded with NaN."""
    frame = frame.sort_values(["seed", "evaluation_seed"])
    groups = [group[list(columns)].to_numpy(dtype=float) for _, group in frame.groupby("seed", sort=True)]
    if not groups:
        return np.full((0, 0, len(columns)), np.nan)
    cube = np.full((len(groups), max(len(g) for g in groups), len(columns)), np.nan)
    for index, group in enumerate(groups):
        cube[index, :len(group)] = group
    return cube


@dataclass
class Difference:
    """Mean paired difference ``a - b`` of one metric and its stratified bootstrap interval."""

    a: object
    b: object
    mean: float
    low: float
    high: float
    replicates: int
    pairs: int

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (and there are at least two replicates)."""
        return self.replicates >= 2 and (self.high < 0 or self.low > 0)

    def text(self, name=str) -> str:
        return f"{name(self.a)} - {name(self.b)} = {_fmt(self.mean)} [{_fmt(self.low)}, {_fmt(self.high)}]"


def difference(values: pd.DataFrame, column: str, a, b, metric: str) -> Difference:
    """The paired difference ``a - b`` of ``metric`` between two values of ``column`` (e.g. two
    solvers), per replicate and evaluation episode (and any other setting in the table)."""
    subset = values[values[column].isin([a, b])]
    index = [c for c in keys(subset) if c != column]
    wide = subset.set_index([*index, column])[metric].unstack(column)
    if a not in wide or b not in wide:
        return Difference(a, b, float("nan"), float("nan"), float("nan"), 0, 0)
    paired = (wide[a] - wide[b]).rename("difference").reset_index()
    paired = paired[np.isfinite(paired["difference"].astype(float))]
    mean, low, high, replicates = stratified_bootstrap(episode_cube(paired, ["difference"]))
    return Difference(a, b, mean, low, high, replicates, len(paired))


# --- verdicts -----------------------------------------------------------------------------------

def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4g}"


@dataclass
class Verdict:
    """One claim on one metric: ``holds`` is the direction of the estimate (None: not checked),
    ``resolved`` whether its interval excludes the other direction."""

    metric: str
    holds: bool | None
    resolved: bool
    evidence: str

    def __post_init__(self):
        self.holds = None if self.holds is None else bool(self.holds)  # numpy bools are not True
        self.resolved = bool(self.resolved)

    @property
    def state(self) -> str:
        if self.holds is None:
            return "not checked"
        if not self.resolved:
            return "not resolved"
        return "holds" if self.holds else "does not hold"

    def line(self) -> str:
        return f"  - {self.metric}: **{self.state}**: {self.evidence}"


@dataclass
class Claim:
    """A claim of the paper and its verdict on each metric."""

    text: str
    verdicts: list

    def lines(self) -> list:
        return [f"- {self.text}", *(verdict.line() for verdict in self.verdicts)]


def all_lower(name: str, differences: list, means: str = "") -> Verdict:
    """The verdict of "every difference is below 0": holds when all intervals lie below 0, does not
    hold when any lies above 0, else not resolved."""
    evidence = "; ".join(d.text() for d in differences) + (f" (means: {means})" if means else "")
    if any(d.pairs == 0 for d in differences):
        return Verdict(name, None, False, "no paired finite values (nothing served, or training failed): " + evidence)
    against = [d for d in differences if d.resolved and d.mean > 0]
    if against:
        return Verdict(name, False, True, evidence)
    return Verdict(name, all(d.mean < 0 for d in differences), all(d.resolved for d in differences), evidence)


def _means(subset: pd.DataFrame, column: str, names: list, metric: str) -> str:
    return ", ".join(f"{name} {_fmt(subset.loc[subset[column] == name, metric].mean())}" for name in names)


def ordering(values: pd.DataFrame, solvers: list, where: dict | None = None) -> list:
    """Verdicts of "solvers[0] < solvers[1] < ..." (lower is better) on every metric, on the runs
    matching ``where``: every neighbouring pair decided on its paired difference."""
    return _lower(values, [(a, b) for a, b in zip(solvers, solvers[1:])], solvers, where)


def beats(values: pd.DataFrame, winner: str, losers: list, where: dict | None = None) -> list:
    """Verdicts of "``winner`` is lower than each of ``losers``" on every metric."""
    return _lower(values, [(winner, loser) for loser in losers], [winner, *losers], where)


def _lower(values, pairs, solvers, where) -> list:
    subset = _where(values, where)
    missing = [s for s in solvers if s not in set(subset["solver"])]
    verdicts = []
    for metric, name in METRICS:
        if missing:
            verdicts.append(Verdict(name, None, False, f"no runs of {', '.join(missing)}"))
            continue
        differences = [difference(subset, "solver", a, b, metric) for a, b in pairs]
        verdicts.append(all_lower(name, differences, _means(subset, "solver", solvers, metric)))
    return verdicts


def _where(values: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    subset = values
    for column, value in (where or {}).items():
        subset = subset[subset[column] == value]
    return subset


def trend(values: pd.DataFrame, x: str, where: dict) -> dict:
    """Least-squares slope over ``x`` of each metric's per-setting mean, with its stratified
    bootstrap interval (episodes paired across settings by replicate and episode index):
    {metric: (slope, low, high, {x: mean})}."""
    subset = _where(values, where)
    result = {}
    for metric, _ in METRICS:
        means = subset.groupby(x)[metric].mean().to_dict()
        settings = sorted(subset[x].dropna().unique())
        if len(settings) < 2:
            result[metric] = (float("nan"), float("nan"), float("nan"), means)
            continue
        wide = subset.set_index(["seed", "evaluation_seed", x])[metric].unstack(x)[settings].reset_index()
        centred = np.asarray(settings, dtype=float) - np.mean(settings)

        def slope(points):
            return ((points - points.mean(axis=1, keepdims=True)) @ centred) / (centred @ centred)

        estimate, low, high, _ = stratified_bootstrap(episode_cube(wide, settings), slope)
        result[metric] = (estimate, low, high, means)
    return result


def monotone(values: pd.DataFrame, x: str, where: dict, increasing: bool) -> list:
    """Verdicts of "the metric increases (decreases) with ``x``": the sign of the slope, resolved
    when its interval excludes zero. Evidence: the means at each ``x`` and the slope."""
    verdicts = []
    for metric, name in METRICS:
        slope, low, high, means = trend(values, x, where)[metric]
        if not np.isfinite(slope):
            verdicts.append(Verdict(name, None, False, f"fewer than two values of {x}"))
            continue
        holds = slope > 0 if increasing else slope < 0
        resolved = values["seed"].nunique() >= 2 and (low > 0 or high < 0)
        evidence = (", ".join(f"{x}={k}: {_fmt(v)}" for k, v in sorted(means.items()))
                    + f"; slope {_fmt(slope)} [{_fmt(low)}, {_fmt(high)}] per unit of {x}")
        verdicts.append(Verdict(name, holds, resolved, evidence))
    return verdicts


def means_table(values: pd.DataFrame, group_by: list) -> str:
    """Markdown table of the shown KPIs per ``group_by``: mean [95% stratified bootstrap interval]
    over replicates and their evaluation episodes."""
    header = [*group_by, "replicates", "episodes", *(label for _, label, _ in SHOWN)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, rows in values.groupby(group_by, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        cells = [str(v) for v in group] + [str(rows["seed"].nunique()), str(len(rows))]
        for metric, _, form in SHOWN:
            if metric == "stable":
                cells.append(form.format(rows[metric].mean()))
                continue
            mean, low, high, _ = stratified_bootstrap(episode_cube(rows, [metric]))
            cells.append(f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict_counts(claims: list) -> str:
    states = [v.state for c in claims for v in c.verdicts if v.state != "not checked"]
    return (f"{states.count('holds')} of {len(states)} checked claim/metric pairs hold, "
            f"{states.count('does not hold')} do not hold, {states.count('not resolved')} not resolved")


def budget_line(table: pd.DataFrame) -> str:
    """Which training budget each learned solver had, from the table's ``eval`` rows."""
    trained = table[(table["phase"] == "eval") & table["episode"].notna()]
    if not len(trained):
        return "No learned solver."
    parts = []
    for solver, rows in trained.groupby("solver", sort=False):
        settings = rows.groupby("episode")[["devices", "sbs"]].apply(
            lambda r: [f"N={n} M={m}" for n, m in sorted(set(zip(r["devices"], r["sbs"])))])
        if len(settings) == 1:
            parts.append(f"{solver} {int(settings.index[0])}")
        else:
            parts.append(f"{solver} " + ", ".join(f"{int(budget)} ({'; '.join(where)})"
                                                 for budget, where in settings.items()))
    return "Training episodes: " + "; ".join(parts) + "."


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
        failed = failed.drop_duplicates([c for c in keys(failed) if c != "evaluation_seed"])
        for row in failed.itertuples():
            notes.append(f"- Training of {row.solver} (N={row.devices}, M={row.sbs}, seed {row.seed}) diverged "
                         "(non-finite loss); its KPIs are missing (the run cache keeps the message).")
        learned = values[values["training_failed"].notna()]
        attainable = stable_elsewhere(values)
        for solver, runs in learned.groupby("solver", sort=False):
            notes += unstable_note(solver, runs, attainable)
    return notes


def stable_elsewhere(values: pd.DataFrame) -> pd.DataFrame:
    """Per evaluation episode (every key but the solver), ``attainable``: 1 if a non-learned
    solver of ``values`` kept every queue stable on it, else 0."""
    episode = [column for column in keys(values) if column != "solver"]
    others = values[values["training_failed"].isna()]
    return others.groupby(episode)["stable"].max().rename("attainable").reset_index()


def unstable_note(solver: str, runs: pd.DataFrame, attainable: pd.DataFrame) -> list:
    """The note on the evaluation episodes ``runs`` of a learned ``solver`` whose queues passed
    the stability cap, told apart by ``attainable`` (``stable_elsewhere``): where no non-learned
    solver kept the queues stable either the network is overloaded there, elsewhere the policy is
    not yet a stable one."""
    unstable = runs[runs["stable"] == 0]
    if not len(unstable):
        return []
    episode = [column for column in attainable.columns if column != "attainable"]
    unstable = unstable.merge(attainable, on=episode, how="left")
    overloaded = unstable[unstable["attainable"] == 0]
    text = f"- The trained {solver} let a queue pass the stability cap in {len(unstable)} of {len(runs)} evaluation episodes"
    if len(overloaded):
        where = ", ".join(f"N={n} M={m}" for n, m in sorted(set(zip(overloaded["devices"], overloaded["sbs"]))))
        text += (f"; in {len(overloaded)} of them no non-learned solver kept the queues stable on the same episode "
                 f"either ({where}): the network is overloaded there")
    budget = ("at this training budget its policy is not yet a stable one, so its numbers say more about the budget "
              "than about the method")
    if not len(overloaded):
        text += f": {budget}"
    elif len(overloaded) < len(unstable):
        text += f"; in the other {len(unstable) - len(overloaded)}, {budget}"
    return [text + "."]


def summary(title: str, table: pd.DataFrame, claims: list, means: str, notes: list = ()) -> str:
    """The markdown summary of a study."""
    values = table[table["phase"] == "eval"]
    replicates = values["seed"].nunique()
    per_replicate = sorted(set(values.groupby("seed")["evaluation_seed"].nunique()))
    lines = [
        f"# {title}",
        "",
        f"Measured over {replicates} replicate(s) (training seeds) with {'/'.join(map(str, per_replicate))} held-out "
        "evaluation episode(s) each, the same episodes for every solver of a replicate. " + budget_line(table) + " "
        "Each claim is decided on the per-episode paired difference: its mean and 95% interval by a stratified "
        f"bootstrap ({RESAMPLES:,} resamples of replicates, then of episodes within each; fixed seed); it holds "
        "(does not hold) when the interval lies below (above) 0, and is not resolved otherwise. The tables give "
        "means with the same kind of interval; the figure, seaborn's bootstrap 95% intervals over the same rows. "
        "Each claim is checked on the system cost and, because that cost is dominated by queue-drift terms "
        "(docs/model.md section 5), also on eta_EE and the backlog; lower is better for all three. "
        + verdict_counts(claims) + ".",
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
