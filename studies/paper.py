"""Every study of the paper (Figs. 4-8) and one report, ``OUT/REPORT.md`` (default
``results/paper``), linking each figure and summary and repeating each study's claims.

The studies share one run cache (``OUT/runs``), so a model trained for one figure (e.g. ``a3c``
at N = 20, M = 3 with the same budget) is reused by the others, and a rerun redoes nothing.

    python -m studies.paper [--quick] [--seeds K] [--jobs J] [--only ablation,sbs] [--plot-only]
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .common import UsageError, StudyParser, name_list
from .runner import write_atomically

STUDIES = ("ablation", "sbs", "devices", "vs_dqn", "learning_rate")


def build_parser():
    parser = StudyParser(prog="python -m studies.paper", description="all the paper's studies and one report")
    parser.add_argument("--quick", action="store_true", help="small budgets for every study")
    parser.add_argument("--seeds", type=int, default=None, help="independent seeds (default: each study's)")
    parser.add_argument("--jobs", type=int, default=1, help="runs executed in parallel processes (default 1)")
    parser.add_argument("--episodes", type=int, default=None, help="training episodes of learned runs (default: each study's)")
    parser.add_argument("--slots", type=int, default=None, help="T, slots per episode (default 200)")
    parser.add_argument("--out", default="results/paper", help="output directory (default results/paper)")
    parser.add_argument("--learned", default="a3c", help="the proposed learned solver (default a3c)")
    parser.add_argument("--benchmark", default="dqn", help="the DRL benchmark of Fig. 7 (default dqn)")
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
    }[name]
    argv = ["--solvers", ",".join(solvers), "--out", str(Path(args.out) / name), "--cache", str(Path(args.out) / "runs"),
            "--jobs", str(args.jobs)]
    for flag in ("seeds", "episodes", "slots"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    if args.quick:
        argv.append("--quick")
    if args.plot_only:
        argv.append("--plot-only")
    return argv


def report(out: Path, names) -> str:
    """REPORT.md: per study, its figure, a link to its summary and the summary's claims."""
    lines = ["# The paper's figures, reproduced", "",
             "Each section links a study's figure and summary and repeats its claims, checked on the system cost "
             "and, because that cost is dominated by queue-drift terms (docs/model.md section 5), on eta_EE and the backlog.", ""]
    for name in names:
        summary = (out / name / f"{name}.md").read_text()
        title, _, body = summary.partition("\n")
        claims = body.split("## Claims", 1)[-1].split("## Measured", 1)[0].strip()
        lines += [f"## {title.lstrip('# ')}", "", f"![{name}]({name}/{name}.png)", "",
                  f"Summary: [{name}/{name}.md]({name}/{name}.md); table: [{name}/{name}.csv]({name}/{name}.csv).", "",
                  claims, ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    from importlib import import_module

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        unknown = [name for name in args.only if name not in STUDIES]
        if unknown:
            raise UsageError(f"argument --only: unknown study {unknown[0]!r}; studies: {', '.join(STUDIES)}")
    except UsageError as error:
        print(f"python -m studies.paper: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    for name in args.only:
        print(f"== python -m studies.{name} {shlex.join(study_arguments(name, args))}")
        code = import_module(f"studies.{name}").STUDY.main(study_arguments(name, args))
        if code != 0:
            return code
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "REPORT.md", lambda p: p.write_text(report(out, args.only)))
    print(f"paper: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
