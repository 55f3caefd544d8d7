"""Every study of the paper (Figs. 4-8), the Lyapunov trade-off over V, what an imperfect digital
twin costs, learning against optimising as N grows, and one published report.

    python -m studies.paper [--quick] [--out DIR] [--cache DIR] [--seeds K] [--jobs J] [--only ablation,sbs]

The studies run with one shared run cache, ``CACHE/runs`` (default ``results/paper-cache``),
so a model trained for one figure (``a3c`` at N = 20, M = 3, the shipped policy) is reused by
the others, and a rerun redoes nothing; each study's own outputs (long-form table, configuration,
summary, figure) stay in ``CACHE/NAME``. ``OUT`` (default ``results/paper``; the repository
publishes ``docs/results``) receives only what is meant to be read and committed:
``REPORT.md`` (every claim x metric with its verdict and numbers, the notes on what differs from
the paper and why, the budgets, the git commit, the exact command and each study's measured wall
time), one PNG per figure (``fig4_ablation.png`` ... ``fig8_learning_rate.png``, ``tradeoff_V.png``,
``twin_deviation.png``, ``scaling_N.png``) and the
long-form CSVs when they total at most ``CSV_LIMIT`` bytes (else they stay in ``CACHE``).
Before anything runs, the compute of the whole plan is estimated and printed
(``studies.estimate``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from importlib import import_module
from pathlib import Path

from .common import StudyParser, UsageError, add_executor_arguments, check_executor, git_commit, name_list, writable_directory
from .estimate import hours, plan_seconds
from .runner import write_atomically

STUDIES = ("ablation", "sbs", "devices", "vs_dqn", "learning_rate", "tradeoff", "twin", "scaling")

FIGURES = {"ablation": "fig4_ablation", "sbs": "fig5_sbs", "devices": "fig6_devices", "vs_dqn": "fig7_vs_dqn",
           "learning_rate": "fig8_learning_rate", "tradeoff": "tradeoff_V", "twin": "twin_deviation",
           "scaling": "scaling_N"}
"""The published file name of each study's figure."""

NOTES_HEADING = {"tradeoff": "Where the model departs from the theory, and why", "twin": "Findings",
                 "scaling": "Findings"}
"""The heading of a study's notes in the report, where it is not a figure of the paper."""

CSV_LIMIT = 2_000_000
"""Long-form tables are published beside the report only while they total at most this many bytes."""


def build_parser():
    parser = StudyParser(prog="python -m studies.paper", description="all the paper's studies and one report")
    parser.add_argument("--quick", action="store_true", help="small budgets for every study")
    parser.add_argument("--seeds", type=int, default=None, help="replicates (default: each study's)")
    parser.add_argument("--episodes-per-seed", type=int, default=None,
                        help="held-out evaluation episodes per replicate (default: each study's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs executed in parallel processes (default 1)")
    add_executor_arguments(parser)
    parser.add_argument("--episodes", type=int, default=None, help="training episodes of learned runs (default: each study's)")
    parser.add_argument("--slots", type=int, default=None, help="T, slots per episode (default 200)")
    parser.add_argument("--out", default="results/paper", help="published report and figures (default results/paper)")
    parser.add_argument("--cache", default="results/paper-cache",
                        help="run cache and the studies' own outputs (default results/paper-cache)")
    parser.add_argument("--learned", default="a3c", help="the proposed learned solver (default a3c)")
    parser.add_argument("--benchmark", default="dqn", help="the DRL benchmark of Fig. 7 (default dqn)")
    parser.add_argument("--any-size", dest="any_size", default="a3c-any",
                        help="the size-independent learned solver scaling scores at every N, trained once "
                             "(default a3c-any; '' leaves it out)")
    parser.add_argument("--reference", default="bcd", help="the non-learned reference (default bcd)")
    parser.add_argument("--scheme", default=None, help="full scheme of Figs. 5-6 (default: --learned)")
    parser.add_argument("--only", type=name_list, default=list(STUDIES), help=f"studies to run (default {','.join(STUDIES)})")
    parser.add_argument("--plot-only", action="store_true", help="redraw every figure and the report from the tables")
    return parser


def study_arguments(name: str, args) -> list:
    """The command line of study ``name`` within the paper run."""
    learned, reference, scheme = args.learned, args.reference, args.scheme or args.learned
    solvers = {
        "ablation": [learned, f"{learned}-no-cpu", f"{learned}-no-radio",
                     reference, f"{reference}-no-cpu", f"{reference}-no-radio"],
        "sbs": [scheme],
        "devices": [scheme, f"{scheme}-no-cpu", f"{scheme}-no-radio"],
        "vs_dqn": [learned, args.benchmark, reference],
        "learning_rate": [learned, reference],
        "tradeoff": [reference, "greedy", learned],  # the learned solver at the study's few learned V only
        "twin": [reference, learned],  # the learned solver trained on a perfect twin and on each deviated one
        # the exhaustive reference (exponential in N) checks the optimiser only where that is bcd
        "scaling": [reference, learned, *([args.any_size] if args.any_size else []), args.benchmark, "greedy",
                    *(["reference"] if reference == "bcd" else [])],
    }[name]
    argv = ["--solvers", ",".join(solvers), "--out", str(Path(args.cache) / name), "--cache",
            str(Path(args.cache) / "runs"), "--jobs", str(args.jobs), "--executor", args.executor]
    if args.address is not None:
        argv += ["--address", args.address]
    if name == "scaling":
        argv += ["--optimiser", reference]
    for flag in ("seeds", "episodes", "episodes_per_seed", "slots"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.quick:
        argv.append("--quick")
    if args.plot_only:
        argv.append("--plot-only")
    return argv


def study_timing(path: Path) -> str:
    """The measured wall time of a study's last execution and, when that one ran nothing, of the
    last execution that ran anything, from its configuration record."""
    def shown(record: dict) -> str:
        return f"{record['wall_s']:.0f} s ({record['executed']} runs executed, {record['cached']} from the cache)"

    try:
        record = json.loads(path.read_text())
        text = shown(record)
        if not record["executed"] and record.get("last_execution"):
            text += f"; the last that executed runs: {shown(record['last_execution'])}"
        return text
    except (OSError, ValueError, KeyError, TypeError):
        return "-"


def training_time(table: Path) -> str:
    """The measured training time of a study's models, summed (each model once): the compute
    that dominates a study, whichever executions of a resumed run did it. Runs that share a model
    (a size-independent one scored at every N, a model scored on other episodes or another twin)
    carry its one training record, so a model is its solver, replicate and measured seconds."""
    import pandas as pd

    try:
        frame = pd.read_csv(table)
    except (OSError, ValueError):
        return "-"
    rows = frame[(frame["metric"] == "training_s") & (frame["phase"] == "eval")]
    if rows.empty:
        return "no training"
    models = rows.drop_duplicates(["solver", "seed", "value"])
    return f"{models['value'].sum() / 60:.0f} min ({len(models)} models)"


def _section(summary: str, heading: str) -> str:
    """The body of a ``## heading`` section of a study summary ("" if absent)."""
    parts = summary.split(f"## {heading}\n", 1)
    return parts[1].split("\n## ", 1)[0].strip() if len(parts) > 1 else ""


def report(out: Path, cache: Path, names, command: str, commit: str, timings: dict, estimates: dict,
           published_csv: bool) -> str:
    """REPORT.md: per study, its figure, how it was measured, every claim x metric with its
    verdict and numbers, and its notes; the commit, the command and the timings."""
    lines = ["# The paper's figures reproduced, and the studies beyond them", "",
             f"Commit `{commit}`; command `{command}`. Each claim of the paper is decided on paired per-episode "
             "differences with a 95% stratified bootstrap interval (replicates, then held-out episodes within "
             "them): **holds** / **does not hold** when the interval excludes 0, else **not resolved**; each is "
             "checked on the system cost and, because that cost is dominated by queue-drift terms "
             "(docs/model.md section 5), on eta_EE and the backlog.", "",
             "| study | estimated compute alone (2 cores, from scratch) | measured training time of its models | "
             "measured wall time of its last execution (and of the last that executed runs) |",
             "|---|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {hours(estimates.get(name, 0.0))} | {training_time(cache / name / f'{name}.csv')} | "
                     f"{timings.get(name, '-')} |")
    lines.append("")
    if not published_csv:
        lines += [f"The long-form tables exceed {CSV_LIMIT / 1e6:.0f} MB together and are not published here; they "
                  f"are in `{cache}/NAME/NAME.csv`.", ""]
    for name in names:
        summary = (cache / name / f"{name}.md").read_text()
        title, _, body = summary.partition("\n")
        measured = body.strip().split("\n\n", 1)[0]
        lines += [f"## {title.lstrip('# ')}", "", f"![{name}]({FIGURES[name]}.png)", "", measured, "",
                  "### Claims", "", _section(summary, "Claims"), ""]
        notes = _section(summary, "Notes")
        if notes:
            lines += [f"### {NOTES_HEADING.get(name, 'What differs from the paper, and why')}", "", notes, ""]
        if published_csv:
            lines += [f"Table: [{name}.csv]({name}.csv).", ""]
    return "\n".join(lines)


def publish(out: Path, cache: Path, names) -> bool:
    """Copy each figure (and the tables, if small enough) into ``out``; True if the tables went."""
    for name in names:
        shutil.copyfile(cache / name / f"{name}.png", out / f"{FIGURES[name]}.png")
    tables = [cache / name / f"{name}.csv" for name in names]
    small = sum(table.stat().st_size for table in tables) <= CSV_LIMIT
    for table in tables:
        if small:
            shutil.copyfile(table, out / table.name)
        else:
            (out / table.name).unlink(missing_ok=True)  # never leave a stale copy beside the report
    return small


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        check_executor(args)
        unknown = [name for name in args.only if name not in STUDIES]
        if unknown:
            raise UsageError(f"argument --only: unknown study {unknown[0]!r}; studies: {', '.join(STUDIES)}")
        out, cache = Path(args.out), Path(args.cache)
        if not args.plot_only:
            writable_directory(out, "--out")
            writable_directory(cache, "--cache")
        plans = {}
        for name in args.only:
            try:
                plans[name] = import_module(f"studies.{name}").STUDY.planned(study_arguments(name, args))[1]
            except UsageError as error:
                raise UsageError(f"study {name}: {error}") from None
    except UsageError as error:
        print(f"python -m studies.paper: error: {error}", file=sys.stderr)
        return 2
    estimates = {name: plan_seconds(runs)[0] for name, runs in plans.items()}
    total, remaining = plan_seconds([run for runs in plans.values() for run in runs], cache / "runs")
    if not args.plot_only:
        print(f"paper: estimated compute on 2 cores {hours(total)} for {len(args.only)} studies (models shared "
              f"between studies counted once), {hours(remaining)} of it not in the cache ({cache / 'runs'}); "
              "per study alone: " + ", ".join(f"{name} {hours(seconds)}" for name, seconds in estimates.items()),
              flush=True)
    for name in args.only:
        print(f"== python -m studies.{name} {shlex.join(study_arguments(name, args))}", flush=True)
        code = import_module(f"studies.{name}").STUDY.main(study_arguments(name, args))
        if code != 0:
            return code
    timings = {name: study_timing(cache / name / f"{name}.json") for name in args.only}
    out.mkdir(parents=True, exist_ok=True)
    published_csv = publish(out, cache, args.only)
    command = shlex.join(["python", "-m", "studies.paper", *argv])
    text = report(out, cache, args.only, command, git_commit(), timings, estimates, published_csv)
    write_atomically(out / "REPORT.md", lambda p: p.write_text(text))
    print(f"paper: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
