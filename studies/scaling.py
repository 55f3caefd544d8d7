"""Learning against optimising as N grows (not a figure of the paper).

A learned policy decides with one forward pass, ``bcd`` solves convex programs every slot: the
study sweeps N (default 5 to 200) with M = 3 fixed and with M growing with N (M = max(1, N // 7)),
for ``a3c``, ``a3c-any``, ``dqn``, ``bcd``, ``greedy`` and ``reference``, and measures per N the
decision time per slot (each episode's median and 95th percentile), the per-slot P2 cost and
eta_EE relative to a paired baseline, the backlog, and the learned solvers' training time
(``training_s``). ``a3c`` and ``dqn`` train per N and M at the sweep budget; ``a3c-any`` trains
once per replicate at N = 20, M = 3 with its own default budget and is scored at every N and M,
so the sweep shows both a policy retrained per size and one policy for every size.

``reference`` (``bcd`` from every one of the 2^N - 1 sets of offloading devices) takes 3-4 s per
slot at N = 5, so it is scored only at N <= ``--reference-max-devices`` (default 6) and on short
episodes of ``--reference-slots`` slots (the label ``horizon = short``; ``REFERENCE_EPISODES`` per
replicate, from empty queues, so lightly loaded), where every solver also
plays those same episodes; learned solvers keep the models trained on full episodes
(``Run.training_scenario``). The baseline is ``reference`` on the short episodes and the
optimiser (``--optimiser``, default ``bcd``) on the full ones.

Findings, from the table: the smallest N where each learned solver decides at least
``SPEEDUP``-fold faster than ``bcd`` while within ``QUALITY_LOSS_PCT`` % of its eta_EE (and of
its system cost), with a backlog within ``BACKLOG_EXCESS_PCT`` % of its and stable queues, or
"nowhere in the sweep"; and how each solver's decision time grows with N, the
exponent fitted on log-log axes with a stratified bootstrap interval.

    python -m studies.scaling [--quick] [--devices-values 5,10,20,50,100,200] [--sbs-rule both]
                              [--solvers a3c,a3c-any,dqn,bcd,greedy,reference] [--reference-slots 10]
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd

from dtnopt.registry import resolve as resolve_solver

from .claims import Claim, Verdict, episode_cube, evaluations, means_table, stratified_bootstrap
from .common import DEFAULT_POINT, Budget, Study, UsageError, integer_list, listed, size_independent
from .figures import draw_scaling
from .tradeoff import exponent

DEVICES = (5, 10, 20, 50, 100, 200)
DEVICES_QUICK = (5, 20)
DEVICES_MAX = 1000
RULES = ("fixed", "growing")
REFERENCE_MAX_DEVICES = 6
REFERENCE_SLOTS, REFERENCE_SLOTS_QUICK = 10, 4
REFERENCE_EPISODES = 2
"""Short episodes per replicate (at most ``--episodes-per-seed``): ``reference`` takes 3-4 s a slot."""

SCALING = Budget(seeds=2, episodes=300, eval_every=300, eval_seeds=1, episodes_per_seed=5)
"""Paper scale of this study: the sweeps' 300 training episodes per learned model (so its N = 20,
M = 3 models are the sweeps' in ``studies.paper``), 2 replicates of 5 held-out episodes (1,000
slots of decision times per solver, N and M rule, per replicate). Training a3c and dqn at every N
and M rule (24 models each, up to N = 200) and a3c-any once per replicate took 47 of its measured
49 minutes on 2 cores (``studies.estimate`` prints 78); a third replicate would add about 25."""

SCALING_QUICK = Budget(seeds=2, episodes=16, eval_every=16, eval_seeds=1, episodes_per_seed=2)
"""``--quick``: half the other studies' training episodes, as every N and rule trains anew."""

SPEEDUP = 10.0
"""The decision-time advantage (bcd's over the learned solver's) the crossing asks for."""

QUALITY_LOSS_PCT = 1.0
"""The quality loss (eta_EE and system cost, %, against bcd) the crossing allows."""

BACKLOG_EXCESS_PCT = 5.0
"""The backlog excess (%, against bcd) the crossing allows: a policy that serves less than the
optimiser can spend less energy per bit while its queues grow, which is no quality."""

DECISION, P95, ENERGY, COST = "decision_ms", "decision_p95_ms", "energy_efficiency_j_per_mbit", "system_cost"
BACKLOG, STABLE = "backlog_mbit", "stable"


def sbs_of(devices: int, rule: str, sbs: int, devices_per_sbs: int) -> int:
    """M of a point of the sweep: ``sbs`` (rule ``fixed``) or max(1, N // ``devices_per_sbs``)."""
    return sbs if rule == "fixed" else max(1, devices // devices_per_sbs)


# --- relative quality and speed -------------------------------------------------------------------

def optimiser_of(values: pd.DataFrame) -> str | None:
    """The per-slot optimiser of a table: its first non-learned solver other than ``reference``
    (``--optimiser``, whose runs the plan puts first; None if there is none)."""
    names = [s for s in dict.fromkeys(values["solver"]) if s != "reference" and not resolve_solver(s)[0].learned]
    return names[0] if names else None


def relative(values: pd.DataFrame) -> pd.DataFrame:
    """Per episode, each solver against the baseline of its point (``reference`` on the short
    episodes where it ran, else the optimiser, ``optimiser_of``), paired by replicate and
    evaluation episode:
    ``cost_pct`` = 100 (cost - cost_base) / |cost_base| (the per-slot P2 cost, (20)),
    ``eta_loss_pct`` = 100 (eta_EE / eta_EE_base - 1), ``backlog_pct`` = 100 (backlog /
    backlog_base - 1) and ``speedup`` = decision time of the baseline / the solver's (medians per
    slot); positive percentages are worse."""
    frames, optimiser = [], optimiser_of(values)
    for (rule, horizon, devices), point in values.groupby(["sbs_rule", "horizon", "devices"], sort=False):
        names = set(point["solver"])
        base_name = "reference" if horizon == "short" and "reference" in names else optimiser
        if base_name not in names:
            continue
        base = point.loc[point["solver"] == base_name, ["seed", "evaluation_seed", COST, ENERGY, BACKLOG, DECISION]]
        joined = point.merge(base, on=["seed", "evaluation_seed"], how="left", suffixes=("", "_base"))
        frames.append(joined.assign(
            baseline=base_name,
            cost_pct=100.0 * (joined[COST] - joined[f"{COST}_base"]) / joined[f"{COST}_base"].abs(),
            eta_loss_pct=100.0 * (joined[ENERGY] / joined[f"{ENERGY}_base"] - 1.0),
            backlog_pct=100.0 * (joined[BACKLOG] / joined[f"{BACKLOG}_base"] - 1.0),
            speedup=joined[f"{DECISION}_base"] / joined[DECISION]))
    if not frames:
        return values.iloc[0:0].assign(baseline="", cost_pct=np.nan, eta_loss_pct=np.nan, backlog_pct=np.nan,
                                       speedup=np.nan)
    return pd.concat(frames, ignore_index=True)


def interval(rows: pd.DataFrame, column: str) -> tuple:
    """(mean, low, high, replicates) of ``column`` by the stratified bootstrap."""
    return stratified_bootstrap(episode_cube(rows, [column]))


def crossing(compared: pd.DataFrame, solver: str, rule: str, quality: str) -> tuple:
    """(N or None, evidence): the smallest N of the full-horizon sweep under ``rule`` where
    ``solver`` decides at least ``SPEEDUP`` times faster than the optimiser (interval of the
    speed-up above it) while its loss in ``quality`` (``eta_loss_pct`` or ``cost_pct``) stays within
    ``QUALITY_LOSS_PCT`` (interval below it), its backlog within ``BACKLOG_EXCESS_PCT`` of the
    optimiser's (interval below it) and every episode stable; None: nowhere in the sweep."""
    rows = compared[(compared["solver"] == solver) & (compared["sbs_rule"] == rule)
                    & (compared["horizon"] == "full") & (compared["baseline"] != "reference")]
    steps = []
    for devices, point in sorted(rows.groupby("devices"), key=lambda item: item[0]):
        fast, fast_low, _, replicates = interval(point, "speedup")
        loss, _, loss_high, _ = interval(point, quality)
        excess, _, excess_high, _ = interval(point, "backlog_pct")
        stable = float(point[STABLE].mean())
        steps.append(f"N={devices}: {fast:.3g}x (low {fast_low:.3g}), {loss:+.3g}% (high {loss_high:+.3g}%), "
                     f"backlog {excess:+.3g}% (high {excess_high:+.3g}%), {stable:.0%} stable")
        if (replicates >= 2 and fast_low >= SPEEDUP and loss_high <= QUALITY_LOSS_PCT
                and excess_high <= BACKLOG_EXCESS_PCT and stable == 1.0):
            return int(devices), "; ".join(steps)
    return None, "; ".join(steps)


# --- the study --------------------------------------------------------------------------------------

class ScalingStudy(Study):
    name = "scaling"
    title = "Learning against optimising as N grows: decision time and quality (not in the paper)"
    solvers = ("a3c", "a3c-any", "dqn", "bcd", "greedy", "reference")
    label_columns = ("sbs_rule", "horizon")
    decision_p95 = True
    quick = SCALING_QUICK
    full = SCALING

    def add_arguments(self, parser) -> None:
        parser.add_argument("--devices-values", dest="devices_values", type=integer_list, default=None,
                            help=f"N values, at least 2, each in [1, {DEVICES_MAX}] (default {listed(DEVICES)}; "
                                 f"--quick {listed(DEVICES_QUICK)})")
        parser.add_argument("--sbs-rule", dest="sbs_rule", choices=(*RULES, "both"), default="both",
                            help="M fixed at --sbs, growing as max(1, N // --devices-per-sbs), or both (default)")
        parser.add_argument("--sbs", type=int, default=3, help="M of the fixed rule (default 3)")
        parser.add_argument("--devices-per-sbs", dest="devices_per_sbs", type=int, default=7,
                            help="devices per SBS of the growing rule, in [1, 1000] (default 7)")
        parser.add_argument("--reference-slots", dest="reference_slots", type=int, default=None,
                            help=f"slots of the short episodes reference is scored on, in [1, 1000] "
                                 f"(default {REFERENCE_SLOTS}; --quick {REFERENCE_SLOTS_QUICK})")
        parser.add_argument("--optimiser", default="bcd",
                            help="the per-slot optimiser every solver is compared against (default bcd)")
        parser.add_argument("--reference-max-devices", dest="reference_max_devices", type=int,
                            default=REFERENCE_MAX_DEVICES,
                            help=f"largest N reference is scored at, in [1, 8] (default {REFERENCE_MAX_DEVICES})")

    def resolve(self, args) -> None:
        super().resolve(args)
        values = args.devices_values or list(DEVICES_QUICK if args.quick else DEVICES)
        bad = [n for n in values if not 1 <= n <= DEVICES_MAX]
        if bad:
            raise UsageError(f"argument --devices-values: each N must be in [1, {DEVICES_MAX}], got {bad[0]}")
        args.devices_values = sorted(set(values))
        if len(args.devices_values) < 2:
            raise UsageError(f"argument --devices-values: at least 2 distinct values (a growth exponent), "
                             f"got {listed(args.devices_values)}")
        if args.reference_slots is None:
            args.reference_slots = REFERENCE_SLOTS_QUICK if args.quick else REFERENCE_SLOTS
        for flag, value, high in (("--devices-per-sbs", args.devices_per_sbs, 1000),
                                  ("--reference-slots", args.reference_slots, 1000),
                                  ("--reference-max-devices", args.reference_max_devices, 8)):
            if not 1 <= value <= high:
                raise UsageError(f"argument {flag}: must be an integer in [1, {high}], got {value}")
        args.reference_slots = min(args.reference_slots, args.slots)
        if args.optimiser not in args.solvers:
            raise UsageError(f"argument --optimiser: {args.optimiser!r} must be one of --solvers "
                             f"({','.join(args.solvers)}), the baseline of every comparison")
        if resolve_solver(args.optimiser)[0].learned:
            raise UsageError(f"argument --optimiser: must be a non-learned solver, got {args.optimiser!r}")

    def plan(self, args) -> list:
        rules = RULES if args.sbs_rule == "both" else (args.sbs_rule,)
        solvers = [args.optimiser, *(s for s in args.solvers if s != args.optimiser)]
        runs = []
        for rule in rules:
            for devices in args.devices_values:
                sbs = sbs_of(devices, rule, args.sbs, args.devices_per_sbs)
                short = devices <= args.reference_max_devices and "reference" in args.solvers
                for solver in solvers:
                    for seed in range(args.seeds):
                        full = self.run(args, solver, seed, devices=devices, sbs=sbs,
                                        labels={"sbs_rule": rule, "horizon": "full"})
                        if solver != "reference":
                            runs.append(full)
                        if short:  # the same solver (learned: the same model) on short episodes
                            scenario = replace(full.scenario, slots=args.reference_slots)
                            runs.append(replace(full, scenario=scenario,
                                                labels=(("sbs_rule", rule), ("horizon", "short")),
                                                training_scenario=full.trained_on if full.learned else None,
                                                evaluation_episodes=min(args.episodes_per_seed, REFERENCE_EPISODES)))
        return runs

    def draw(self, table, stem) -> None:
        draw_scaling(relative(evaluations(table)), table, stem, self.title)

    def claims(self, table) -> tuple:
        values = evaluations(table)
        compared = relative(values)
        full = values[values["horizon"] == "full"]
        optimiser = optimiser_of(values)
        claims, notes = [], [
            f"- Decision times are per slot, wall clock on the machine as loaded while the study ran (each episode's "
            f"median and 95th percentile); the speed-up is {optimiser}'s median over the solver's, per paired "
            f"episode. Relative quality is paired per replicate and episode against {optimiser} on the full episodes "
            "and against reference on the short ones (from empty queues, where eta_EE is often undefined: nothing "
            "served yet); the system cost is compared as 100 (cost - cost_base) / |cost_base|."]
        learned = [s for s in dict.fromkeys(values["solver"]) if resolve_solver(s)[0].learned]
        for rule in dict.fromkeys(full["sbs_rule"]):
            in_rule = full[full["sbs_rule"] == rule]
            for solver in learned:
                for quality, name in (("eta_loss_pct", "eta_EE"), ("cost_pct", "system cost")):
                    devices, evidence = crossing(compared, solver, rule, quality)
                    found = f"N = {devices}" if devices is not None else "nowhere in the sweep"
                    claims.append(Claim(
                        f"{solver} decides at least {SPEEDUP:g}x faster than {optimiser} while within "
                        f"{QUALITY_LOSS_PCT:g}% of its {name} ({rule} M): {found}",
                        [Verdict(name, devices is not None, in_rule["seed"].nunique() >= 2, evidence)]))
            for solver in dict.fromkeys(in_rule["solver"]):
                fit = exponent(in_rule, solver, DECISION, x="devices")
                shown = ("no exponent (fewer than two N)" if not np.isfinite(fit["estimate"]) else
                         f"decision time ~ N^{fit['estimate']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}] over "
                         f"N = {listed(fit['settings'])}")
                resolved = fit["replicates"] >= 2 and np.isfinite(fit["low"]) and (fit["low"] > 0 or fit["high"] < 0)
                claims.append(Claim(f"the decision time of {solver} grows with N ({rule} M)",
                                    [Verdict("decision time", None if not np.isfinite(fit["estimate"])
                                             else fit["estimate"] > 0, resolved, shown)]))
        notes += sign_changes(compared, optimiser)
        checked = set(values.loc[values["solver"] == "reference", "devices"])
        if checked:
            skipped = sorted(set(full["devices"]) - checked)
            notes.append(f"- reference runs only at N = {listed(sorted(checked))} on short episodes; it is skipped at "
                         f"N = {listed(skipped)} (2^N - 1 bcd solves per slot).")
        trained = table[(table["phase"] == "eval") & table["episode"].notna()]
        for solver, rows in trained.groupby("solver", sort=False):
            episodes = int(rows["episode"].max())
            if size_independent(solver, {}):
                notes.append(f"- {solver} trains {episodes} episodes once per replicate at N = {DEFAULT_POINT[0]}, "
                             f"M = {DEFAULT_POINT[1]} (sizes drawn from its training range) and is scored at every "
                             "N and M rule, beyond its training range too.")
            else:
                notes.append(f"- {solver} trains {episodes} episodes per N and M rule (the sweep budget), far below "
                             "its shipped budget: its quality here is that budget's.")
        means = means_table(full, ["sbs_rule", "devices", "sbs", "solver"])
        return claims, scaling_table(compared) + "\n\n" + means, notes


def sign_changes(compared: pd.DataFrame, optimiser: str | None) -> list:
    """Notes on the full-horizon points where the optimiser's system cost changes sign across the
    episodes: ``cost_pct`` divides by values near 0 there, so it can run to hundreds of percent
    whatever the difference; the system cost is a sum of drift terms, not a ratio-scale quantity."""
    notes = []
    rows = compared[(compared["horizon"] == "full") & (compared["baseline"] == optimiser)]
    for (rule, devices), point in rows.groupby(["sbs_rule", "devices"], sort=False):
        base = point[f"{COST}_base"]
        if not base.min() < 0 < base.max():
            continue
        means = point[point["solver"] != optimiser].groupby("solver", sort=False)["cost_pct"].mean()
        worst = means.abs().idxmax() if len(means) else None
        shown = f" (a mean of {means[worst]:+.3g}% for {worst} there)" if worst is not None else ""
        notes.append(f"- At N = {devices} ({rule} M) {optimiser}'s system cost changes sign across the episodes "
                     f"({base.min():,.0f} to {base.max():,.0f}): its percentages divide by values near 0{shown}, so "
                     "eta_EE and the backlog are the comparison there (the system cost is a sum of queue-drift "
                     "terms, docs/model.md section 5, not a ratio-scale quantity).")
    return notes


def scaling_table(compared: pd.DataFrame) -> str:
    """Markdown table per M rule, horizon, N and solver: decision time (median and p95, ms), the
    speed-up and the relative quality against the baseline, and training time, with intervals."""
    columns = ((DECISION, "decision ms (median)"), (P95, "decision ms (p95)"), ("speedup", "speed-up vs baseline"),
               ("cost_pct", "P2 cost vs baseline %"), ("eta_loss_pct", "eta_EE loss vs baseline %"),
               ("training_s", "training s"))
    lines = ["| M rule | horizon | N | M | solver | baseline | " + " | ".join(label for _, label in columns) + " |",
             "|" + "---|" * (6 + len(columns))]
    for (rule, horizon, devices, solver), rows in compared.groupby(["sbs_rule", "horizon", "devices", "solver"],
                                                                   sort=False):
        cells = [rule, horizon, str(devices), str(int(rows["sbs"].iloc[0])), solver, rows["baseline"].iloc[0]]
        for column, _ in columns:
            if column not in rows or not rows[column].notna().any():
                cells.append("-")
                continue
            mean, low, high, _ = interval(rows, column)
            cells.append(f"{mean:.3g} [{low:.3g}, {high:.3g}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STUDY = ScalingStudy()

if __name__ == "__main__":
    sys.exit(STUDY.main())
