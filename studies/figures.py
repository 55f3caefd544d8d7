"""Figures of the studies, drawn from the saved long-form table alone (seaborn, 95% bootstrap
intervals over the table's rows: replicates x evaluation episodes, or replicates on a learning
curve), with a caption stating each learned solver's training budget. Every figure has three
panels: the paper's system cost (the sum over slots of the P2 cost (20)) beside the physical KPIs
that P1 is really about (docs/model.md section 5): the energy efficiency eta_EE (13) and the mean
local backlog (7a)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .claims import budget_line, mean_interval  # noqa: E402

PANELS = (
    ("system_cost", "system cost (sum of P2 cost (20))"),
    ("energy_efficiency_j_per_mbit", "energy efficiency eta_EE (13), J/Mbit"),
    ("mean_local_backlog_mbit", "mean local backlog, Mbit"),
)
ERRORBAR = ("ci", 95)


def _save(figure, stem: Path) -> None:
    figure.savefig(stem.with_suffix(".png"), dpi=110)
    figure.savefig(stem.with_suffix(".pdf"))
    plt.close(figure)


def _palette(names) -> dict:
    names = list(dict.fromkeys(names))
    return dict(zip(names, sns.color_palette("tab10", max(len(names), 1))))


def draw_sweep(table, x: str, stem: Path, title: str, style: str | None = None) -> None:
    """Metric vs the swept variable ``x``, one line per solver (and per ``style`` value)."""
    data = table[table["phase"] == "eval"].copy()
    if style is not None and data[style].nunique() <= 1:
        style = None
    if style is not None:
        symbol = {"devices": "N", "sbs": "M"}.get(style, style)
        data[style] = data[style].map(lambda value: f"{symbol}={value}")
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.8))
    palette = _palette(data["solver"])
    for axis, (metric, label) in zip(axes, PANELS):
        sns.lineplot(data=data[data["metric"] == metric], x=x, y="value", hue="solver", style=style,
                     palette=palette, errorbar=ERRORBAR, seed=0, marker="o", ax=axis)
        axis.set_ylabel(label)
        axis.set_xlabel({"devices": "number of devices N", "sbs": "number of SBSs M"}.get(x, x))
        axis.set_xticks(sorted(data[x].dropna().unique()))
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    _finish(figure, axes[0], table, title, stem)


def draw_curves(table, stem: Path, title: str, hue: str = "solver") -> None:
    """Learning curves (metric vs training episode, ``train`` rows) with the level of every
    solver without a curve (non-learned references) as a horizontal line and band: its level on
    the curves' own validation episodes (``validation`` rows) where the table has it, else on
    the evaluation episodes (labelled so, as those are other episodes than the curves')."""
    curves = table[table["phase"] == "train"].copy()
    curves[hue] = curves[hue].map(_label)
    curves["episode"] = curves.groupby(hue)["episode"].transform(_snap)
    learned = set(table.loc[table["phase"] == "train", "solver"])
    phase = "validation" if (table["phase"] == "validation").any() else "eval"
    references = table[(table["phase"] == phase) & ~table["solver"].isin(learned)]
    where = "" if phase == "validation" else ", evaluation episodes"
    palette = _palette(list(curves[hue]) + list(references["solver"]))
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.8))
    for axis, (metric, label) in zip(axes, PANELS):
        points = curves[curves["metric"] == metric]
        if len(points):
            sns.lineplot(data=points, x="episode", y="value", hue=hue, palette=palette, errorbar=ERRORBAR,
                         seed=0, marker="o", ax=axis)
        for solver, group in references[references["metric"] == metric].groupby("solver", sort=False):
            values = group["value"].dropna().to_numpy()
            if not len(values):
                continue
            mean, half = mean_interval(values)
            axis.axhline(mean, color=palette[solver], linestyle="--", label=f"{solver} (reference{where})")
            axis.axhspan(mean - half, mean + half, color=palette[solver], alpha=0.12)
        axis.set_ylabel(label)
        axis.set_xlabel("training episode")
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    _finish(figure, axes[0], table, title, stem, curves=True)


TRADEOFF_PANELS = (
    ("energy_efficiency_j_per_mbit", "eta_EE (13), J/Mbit", True),
    ("backlog_mbit", "mean backlog (local + edge), Mbit", True),
    ("system_cost", "system cost (sum of P2 cost (20))", False),
)
"""The panels against V of the trade-off figure: (metric, label, logarithmic y)."""


def draw_tradeoff(table, stem: Path, title: str) -> None:
    """The Lyapunov trade-off: eta_EE against the mean backlog, one point per V per solver (the
    means, 95% stratified bootstrap intervals both ways, connected in order of V, V annotated;
    a hollow marker where some episode passed the stability cap), and eta_EE, the backlog and
    the system cost against V on log axes, seaborn's intervals over the same rows."""
    from .claims import episode_cube, evaluations, stratified_bootstrap

    values = evaluations(table)
    palette = _palette(values["solver"])
    figure, axes = plt.subplots(1, 1 + len(TRADEOFF_PANELS), figsize=(5.0 * (1 + len(TRADEOFF_PANELS)), 4.8))
    curve = axes[0]
    for solver, runs in values.groupby("solver", sort=False):
        points = []
        for v, rows in runs.groupby("V", sort=True):
            (x, x_low, x_high, _), (y, y_low, y_high, _) = (stratified_bootstrap(episode_cube(rows, [metric]))
                                                          for metric in ("backlog_mbit", "energy_efficiency_j_per_mbit"))
            points.append((v, x, y))
            stable = rows["stable"].mean() == 1
            curve.errorbar(x, y, xerr=[[x - x_low], [x_high - x]], yerr=[[y - y_low], [y_high - y]], fmt="o",
                           color=palette[solver], mfc=palette[solver] if stable else "white", capsize=2)
            curve.annotate(f"V={v:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small",
                           color=palette[solver])
        curve.plot([p[1] for p in points], [p[2] for p in points], color=palette[solver], label=solver)
    curve.set_xlabel("mean backlog (local + edge), Mbit")
    curve.set_ylabel("eta_EE (13), J/Mbit")
    curve.set_title("trade-off (hollow: a queue passed the cap)", fontsize="small")
    for axis, (metric, label, logarithmic) in zip(axes[1:], TRADEOFF_PANELS):
        sns.lineplot(data=values, x="V", y=metric, hue="solver", palette=palette, errorbar=ERRORBAR, seed=0,
                     marker="o", ax=axis)
        axis.set_xscale("log")
        if logarithmic and (values[metric] > 0).all():
            axis.set_yscale("log")
            plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
            axis.yaxis.set_major_formatter(plain)
            axis.yaxis.set_minor_formatter(plain)
        axis.set_xlabel("V (Mbit^2/J), log scale")
        axis.set_ylabel(label)
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    _finish(figure, curve, table, title, stem)


def draw_twin(loss, table, stem: Path, title: str) -> None:
    """What an imperfect twin costs: the eta_EE loss (%) against the reference on a perfect twin,
    against the channel-gain error and against the location staleness, one line per solver (a
    learned one per training twin), then the mean backlog against each; seaborn's 95% intervals
    over the paired episodes. ``loss`` is ``studies.twin.losses`` of the table."""
    from .claims import evaluations
    from .twin import DEVIATIONS, SHOWN_DEVIATION, sweeps

    backlog = sweeps(evaluations(table))
    kinds = [kind for kind in DEVIATIONS if (loss["deviation"] == kind).any()]
    palette = _palette(backlog["solver"])
    figure, axes = plt.subplots(2, max(len(kinds), 1), figsize=(6.0 * max(len(kinds), 1), 8.4), squeeze=False)
    for column, kind in enumerate(kinds):
        rows = ((loss, "loss_pct", "eta_EE loss vs the reference on a perfect twin, %"),
                (backlog, "backlog_mbit", "mean backlog (local + edge), Mbit"))
        for row, (data, metric, label) in enumerate(rows):
            axis = axes[row, column]
            sns.lineplot(data=data[data["deviation"] == kind], x="level", y=metric, hue="solver", palette=palette,
                         errorbar=ERRORBAR, seed=0, marker="o", ax=axis)
            if metric == "loss_pct":
                axis.axhline(0.0, color="grey", linewidth=0.8)
            axis.set_xlabel(f"twin {SHOWN_DEVIATION[kind]}")
            axis.set_ylabel(label)
            if axis.get_legend() is not None:
                axis.get_legend().remove()
    _finish(figure, axes[0, 0], table, title, stem)


SCALING_PANELS = (
    ("decision_ms", "decision time per slot (episode median), ms", True),
    ("decision_p95_ms", "decision time per slot (episode p95), ms", True),
    ("eta_loss_pct", "eta_EE loss vs the optimiser, % (symlog)", False),
    ("cost_pct", "P2 cost vs the optimiser, % of its |cost| (symlog)", False),
)
"""The panels against N of the scaling figure: (column, label, logarithmic y). The relative
panels are symmetric-log, linear within +-``RELATIVE_LINEAR_PCT``: a policy within a few percent of
the optimiser and one hundreds of percent off are both readable on one axis."""

RELATIVE_LINEAR_PCT = 1.0


def draw_scaling(compared, table, stem: Path, title: str) -> None:
    """Decision time (median and p95 per slot) against N on log-log axes, and eta_EE and the P2
    cost relative to the optimiser (``bcd``) against N, one line per solver, dashed for M
    growing with N; full episodes only (``reference``'s short-episode check is in the
    summary). ``compared`` is ``studies.scaling.relative`` of the table."""
    data = compared[compared["horizon"] == "full"]
    style = "sbs_rule" if data["sbs_rule"].nunique() > 1 else None
    palette = _palette(data["solver"])
    figure, axes = plt.subplots(1, len(SCALING_PANELS), figsize=(5.0 * len(SCALING_PANELS), 4.8))
    for axis, (column, label, logarithmic) in zip(axes, SCALING_PANELS):
        shown = data[data[column].notna() & ((data[column] > 0) if logarithmic else True)]
        if not len(shown):  # e.g. no eta_EE where nothing was served
            continue
        sns.lineplot(data=shown, x="devices", y=column, hue="solver", style=style, palette=palette,
                     errorbar=ERRORBAR, seed=0, marker="o", ax=axis)
        axis.set_xscale("log")
        axis.set_xticks(sorted(data["devices"].unique()))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if logarithmic:
            axis.set_yscale("log")
        else:
            axis.set_yscale("symlog", linthresh=RELATIVE_LINEAR_PCT)
            axis.axhline(0.0, color="grey", linewidth=0.8)
        axis.set_xlabel("number of devices N, log scale")
        axis.set_ylabel(label)
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    _finish(figure, axes[0], table, title, stem)


def _finish(figure, legend_axis, table, title: str, stem: Path, curves: bool = False) -> None:
    """Every figure's ending: the legend of ``legend_axis`` below the panels, the budget caption,
    the title, and the PNG and PDF."""
    _legend_below(figure, legend_axis)
    _caption(figure, table, curves)
    figure.suptitle(title)
    _save(figure, stem)


def _legend_below(figure, axis) -> None:
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.04), ncol=min(len(handles), 6),
                      fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, 0.14, 1, 0.95))


def _caption(figure, table, curves: bool = False) -> None:
    """The budgets behind the figure, on the figure: training episodes of each learned solver,
    replicates and evaluation episodes."""
    evaluated = table[table["phase"] == "eval"]
    episodes = evaluated.groupby("seed")["evaluation_seed"].nunique()
    shown = ("points: means over replicates on the validation episodes" if curves else
             f"points: means over {evaluated['seed'].nunique()} replicates x "
             f"{'/'.join(map(str, sorted(set(episodes))))} held-out episodes")
    text = f"{budget_line(table)} {shown}; bands: 95% bootstrap intervals."
    figure.text(0.5, 0.005, text, ha="center", va="bottom", fontsize="x-small", wrap=True)


def _snap(episodes):
    """An asynchronous trainer evaluates when its episode counter passes a multiple of the
    evaluation period, so seeds report slightly different counts: put counts closer than half
    the first evaluation's into one cluster, at its mean, so seeds are averaged point by point."""
    values = np.sort(episodes.dropna().unique().astype(float))
    cluster = np.cumsum(np.r_[0, np.diff(values) > 0.5 * values[0]])
    centres = pd.Series(values).groupby(cluster).transform("mean").to_numpy()
    return episodes.astype(float).map(dict(zip(values, centres)))


def _label(value):
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

