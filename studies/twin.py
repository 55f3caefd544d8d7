"""What an imperfect digital twin costs (not a figure of the paper), at N = 20, M = 3.

Solvers decide on the twin and the loop executes their actions on the plant (docs/model.md
sections 1 and 6), so every KPI here is measured on the plant. The study sweeps the twin's
channel-gain error (``Scenario.twin_gain_error``) and, separately, its location staleness
(``Scenario.twin_staleness``), the other at 0, for non-learned solvers (default ``bcd``) deciding
on the deviated twin and for each learned solver named in ``--solvers`` twice: trained on a
perfect twin and scored on the deviated one (one model per replicate serves every deviation),
and trained on the deviated twin itself (at the sweep budget). The table's label columns are
``deviation`` (``none``, ``gain_error`` or ``staleness``), ``level`` and ``trained_on``
(``perfect twin``, ``this twin`` or ``not trained``).

Findings, from the table: each solver's eta_EE loss against the reference (``bcd``) on a perfect
twin, paired per replicate and episode (every deviation point plays the same episodes); how much
deviation each solver tolerates before losing 1%, 5% and 10% of eta_EE; and whether training on
the deviated twin helps, decided on the paired difference at each deviation.

    python -m studies.twin [--quick] [--gain-errors 0.05,0.1,0.2,0.4] [--staleness-values 1,2,5]
                           [--solvers bcd,a3c] [--devices 20] [--sbs 3]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from dtnopt.registry import resolve as resolve_solver

from .claims import Claim, beats, episode_cube, evaluations, means_table, stratified_bootstrap
from .common import SWEEP, Study, UsageError, add_network_arguments, float_list, integer_list, listed
from .figures import draw_twin

GAIN_ERRORS = (0.05, 0.1, 0.2, 0.4)
GAIN_ERRORS_QUICK = (0.1, 0.4)
STALENESS = (1, 2, 5)
STALENESS_QUICK = (2,)
GAIN_ERROR_MAX = 10.0  # the Scenario's range of twin_gain_error
STALENESS_MAX = 10_000  # the Scenario's range of twin_staleness

DEVIATIONS = {"gain_error": "twin_gain_error", "staleness": "twin_staleness"}
"""The swept deviations: the table's ``deviation`` label and the ``Scenario`` field it sets."""

SHOWN_DEVIATION = {"gain_error": "channel-gain error (relative std)", "staleness": "location staleness (slots)"}

PERFECT, THIS, NOT_TRAINED = "perfect twin", "this twin", "not trained"
REFERENCE = "bcd"
"""The reference: eta_EE losses are measured against it deciding on a perfect twin."""

LOSS_THRESHOLDS = (1.0, 5.0, 10.0)
"""eta_EE losses (%) whose tolerated deviation the findings report."""

ENERGY = "energy_efficiency_j_per_mbit"


# --- the table, one line per scheme ----------------------------------------------------------

def scheme(solver: str, trained_on: str) -> str:
    """A solver's line in the findings: a learned one is named with where it was trained."""
    if trained_on == NOT_TRAINED:
        return solver
    return f"{solver} (trained on {'a perfect twin' if trained_on == PERFECT else 'this twin'})"


def sweeps(values: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows with ``solver`` replaced by the scheme and the perfect-twin point
    (``deviation = none``, planned once) repeated at level 0 of each sweep; there a learned
    solver trained on a perfect twin is also the one trained on "this twin"."""
    perfect = values[values["deviation"] == "none"]
    retrained = perfect[perfect["trained_on"] == PERFECT].assign(trained_on=THIS)
    parts = []
    for kind in DEVIATIONS:
        swept = values[values["deviation"] == kind]
        if len(swept):
            parts += [swept, perfect.assign(deviation=kind), retrained.assign(deviation=kind)]
    frame = pd.concat(parts, ignore_index=True) if parts else values.iloc[0:0]
    frame = frame.sort_values(["deviation", "level"], kind="stable", ignore_index=True)
    frame = frame.assign(solver=[scheme(s, t) for s, t in zip(frame["solver"], frame["trained_on"])])
    return frame.drop(columns="trained_on")


def reference_name(values: pd.DataFrame) -> str | None:
    """``REFERENCE`` if it ran, else the first non-learned solver of the table (None: none ran)."""
    names = list(dict.fromkeys(values.loc[values["trained_on"] == NOT_TRAINED, "solver"]))
    return REFERENCE if REFERENCE in names else (names[0] if names else None)


def losses(values: pd.DataFrame) -> pd.DataFrame:
    """Per episode, each scheme's eta_EE loss (%) against the reference on a perfect twin, paired
    by replicate and evaluation episode: 100 (eta_EE / eta_EE_reference - 1), positive = worse.
    Columns: deviation, level, solver (the scheme), seed, evaluation_seed, loss_pct."""
    reference = reference_name(values)
    if reference is None:
        return pd.DataFrame(columns=["deviation", "level", "solver", "seed", "evaluation_seed", "loss_pct"])
    base = values[(values["deviation"] == "none") & (values["solver"] == reference)]
    base = base.set_index(["seed", "evaluation_seed"])[ENERGY].rename("reference")
    frame = sweeps(values).join(base, on=["seed", "evaluation_seed"])
    frame["loss_pct"] = 100.0 * (frame[ENERGY] / frame["reference"] - 1.0)
    return frame[["deviation", "level", "solver", "seed", "evaluation_seed", "loss_pct"]]


def loss_intervals(loss: pd.DataFrame) -> pd.DataFrame:
    """Mean eta_EE loss (%) per deviation, level and scheme with its 95% stratified bootstrap
    interval (replicates, then their episodes)."""
    rows = []
    for (kind, level, solver), group in loss.groupby(["deviation", "level", "solver"], sort=False):
        mean, low, high, replicates = stratified_bootstrap(episode_cube(group, ["loss_pct"]))
        rows.append({"deviation": kind, "level": level, "solver": solver, "mean": mean, "low": low, "high": high,
                     "replicates": replicates})
    return pd.DataFrame(rows, columns=["deviation", "level", "solver", "mean", "low", "high", "replicates"])


def tolerance(intervals: pd.DataFrame, kind: str, solver: str, threshold: float) -> str:
    """The first swept level of ``kind`` at which ``solver``'s eta_EE loss interval lies wholly
    above ``threshold`` %, as text, or "beyond the sweep" (up to its largest level)."""
    rows = intervals[(intervals["deviation"] == kind) & (intervals["solver"] == solver)].sort_values("level")
    for row in rows.itertuples():
        if row.replicates >= 2 and row.low > threshold:
            return f"from {row.level:g} on"
    return f"beyond the sweep (up to {rows['level'].max():g})" if len(rows) else "not measured"


# --- the study --------------------------------------------------------------------------------

class TwinStudy(Study):
    name = "twin"
    title = "What an imperfect digital twin costs: eta_EE and backlog on the plant (not in the paper)"
    solvers = ("bcd", "a3c")
    label_columns = ("deviation", "level", "trained_on")
    full = SWEEP

    def add_arguments(self, parser) -> None:
        parser.add_argument("--gain-errors", dest="gain_errors", type=float_list, default=None,
                            help=f"twin channel-gain errors (relative std) in [0, {GAIN_ERROR_MAX:g}]; 0, the perfect "
                                 f"twin, is always included (default {listed(GAIN_ERRORS)}; "
                                 f"--quick {listed(GAIN_ERRORS_QUICK)})")
        parser.add_argument("--staleness-values", dest="staleness_values", type=integer_list, default=None,
                            help=f"twin location staleness, slots, in [0, {STALENESS_MAX}]; 0 always included "
                                 f"(default {listed(STALENESS)}; --quick {listed(STALENESS_QUICK)})")
        add_network_arguments(parser)

    def resolve(self, args) -> None:
        super().resolve(args)
        gains = args.gain_errors or list(GAIN_ERRORS_QUICK if args.quick else GAIN_ERRORS)
        bad = [e for e in gains if not 0 <= e <= GAIN_ERROR_MAX]
        if bad:
            raise UsageError(f"argument --gain-errors: each must be in [0, {GAIN_ERROR_MAX:g}], got {bad[0]:g}")
        stale = args.staleness_values or list(STALENESS_QUICK if args.quick else STALENESS)
        bad = [k for k in stale if not 0 <= k <= STALENESS_MAX]
        if bad:
            raise UsageError(f"argument --staleness-values: each must be an integer in [0, {STALENESS_MAX}], "
                             f"got {bad[0]}")
        args.gain_errors = sorted(set(gains) - {0.0})
        args.staleness_values = sorted(set(stale) - {0})
        if not args.gain_errors and not args.staleness_values:
            raise UsageError("argument --gain-errors / --staleness-values: at least one deviation above 0")

    def plan(self, args) -> list:
        points = [("none", 0.0, {})]
        points += [("gain_error", float(e), {"twin_gain_error": e}) for e in args.gain_errors]
        points += [("staleness", float(k), {"twin_staleness": k}) for k in args.staleness_values]
        runs = []
        for solver in args.solvers:
            learned = resolve_solver(solver)[0].learned
            for kind, level, fields in points:
                if not learned:
                    variants = [(NOT_TRAINED, None)]
                else:  # at the perfect twin, the model trained on "this twin" is the perfect-twin one
                    variants = [(PERFECT, {})] + ([(THIS, None)] if kind != "none" else [])
                for trained_on, training in variants:
                    runs += [self.run(args, solver, seed, devices=args.devices, sbs=args.sbs, scenario=fields,
                                      training_scenario=training,
                                      labels={"deviation": kind, "level": level, "trained_on": trained_on})
                             for seed in range(args.seeds)]
        return runs

    def draw(self, table, stem) -> None:
        draw_twin(losses(evaluations(table)), table, stem, self.title)

    def claims(self, table) -> tuple:
        values = evaluations(table)
        frame = sweeps(values)
        intervals = loss_intervals(losses(values))
        claims = []
        learned = sorted({s for s, t in zip(values["solver"], values["trained_on"]) if t != NOT_TRAINED})
        for solver in learned:
            for kind in DEVIATIONS:
                for level in sorted(frame.loc[(frame["deviation"] == kind) & (frame["level"] > 0), "level"].unique()):
                    claims.append(Claim(
                        f"training on the deviated twin helps at {kind} {level:g}: {scheme(solver, THIS)} < "
                        f"{scheme(solver, PERFECT)}",
                        beats(frame, scheme(solver, THIS), [scheme(solver, PERFECT)],
                              where={"deviation": kind, "level": level})))
        reference = reference_name(values)
        notes = [
            f"- Every KPI is measured on the plant; solvers decide on the twin. The eta_EE loss is "
            f"100 (eta_EE / eta_EE of {reference} on a perfect twin - 1), per replicate and held-out episode (every "
            "deviation point plays the same episodes), its mean and 95% interval from the stratified bootstrap. A "
            "solver tolerates a deviation until the first swept level whose whole loss interval lies above the "
            "threshold.",
            *tolerance_notes(intervals),
            "- A learned solver trained on a perfect twin is one model per replicate scored at every deviation; trained "
            "on \"this twin\" it is trained anew at each deviation, with the same budget. At level 0 both are the "
            "same model.",
        ]
        trained = table[(table["phase"] == "eval") & table["episode"].notna()]
        for solver, rows in trained.groupby("solver", sort=False):
            notes.append(f"- {solver} trains {int(rows['episode'].max())} episodes per model (the sweeps' budget), far "
                         "below the shipped policy's: its losses are those of that budget's policies.")
        shown = frame.assign(level=frame["level"].map(lambda v: f"{v:g}"))
        return claims, loss_table(intervals) + "\n\n" + means_table(shown, ["deviation", "level", "solver"]), notes


def tolerance_notes(intervals: pd.DataFrame) -> list:
    """Per deviation and scheme, from which level on it loses more than each threshold of eta_EE."""
    lines = [f"- **Tolerated deviation** (first swept level whose eta_EE loss interval lies above "
             f"{', '.join(f'{t:g}%' for t in LOSS_THRESHOLDS)}):"]
    for kind in DEVIATIONS:
        for solver in dict.fromkeys(intervals.loc[intervals["deviation"] == kind, "solver"]):
            parts = [f"{t:g}%: {tolerance(intervals, kind, solver, t)}" for t in LOSS_THRESHOLDS]
            lines.append(f"  - {SHOWN_DEVIATION[kind]}, {solver}: " + "; ".join(parts) + ".")
    return lines


def loss_table(intervals: pd.DataFrame) -> str:
    """Markdown table of the eta_EE loss (%) per deviation, level and scheme."""
    lines = ["| deviation | level | solver | eta_EE loss % [95% interval] |", "|---|---|---|---|"]
    for row in intervals.sort_values(["deviation", "level"], kind="stable").itertuples():
        lines.append(f"| {row.deviation} | {row.level:g} | {row.solver} | "
                     f"{row.mean:.3g} [{row.low:.3g}, {row.high:.3g}] |")
    return "\n".join(lines)


STUDY = TwinStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
