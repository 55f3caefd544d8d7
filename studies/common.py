"""What every study shares: the command line, the budgets, and the run -> table -> figure ->
summary pipeline. A study (one module per figure of the paper) subclasses ``Study`` and
overrides only what differs: its extra arguments, its plan of runs, its figure and its claims.

Common options: ``--quick`` (small budgets), ``--seeds K`` (replicates), ``--episodes-per-seed K``
(held-out evaluation episodes per replicate), ``--out DIR`` (default ``results/NAME``), ``--jobs J``
(runs in parallel processes), ``--solvers a,b,c`` (any registered names), ``--episodes E``
(training budget of learned solvers), ``--slots T``,
``--cache DIR`` (the run cache, default ``OUT/runs``) and ``--plot-only`` (redraw the figure
and the summary from ``NAME.csv``). Bad arguments exit with code 2 and a one-line message.

Outputs in ``--out``: ``NAME.csv`` (long-form table, see ``runner.long_table``), ``NAME.json``
(resolved configuration and the exact command), ``NAME.png`` / ``NAME.pdf`` (the figure, drawn
from the table) and ``NAME.md`` (the paper's claims checked on the measured numbers).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dtnopt.config import Scenario
from dtnopt.registry import resolve as resolve_solver

from .estimate import hours, plan_seconds
from .runner import EPISODES_MAX, EXECUTORS, REPLICATES_MAX, Run, execute_all, long_table, write_atomically, write_json


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


LIBRARIES = ("numpy", "scipy", "cvxpy", "torch", "pandas", "gymnasium")
"""The libraries whose versions a study records beside its results."""


def git_commit() -> str:
    """The short commit of the working tree, or "unknown" outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def provenance() -> dict:
    """What produced a result: dtnopt's version and model version, the git commit, Python and
    the versions of ``LIBRARIES``."""
    from importlib.metadata import PackageNotFoundError, version

    import dtnopt

    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = None
    return {"dtnopt": dtnopt.__version__, "model_version": dtnopt.MODEL_VERSION, "commit": git_commit(),
            "python": platform.python_version(), "libraries": libraries}


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (records stay valid
    when the folder moves), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def add_network_arguments(parser) -> None:
    """``--devices`` (N) and ``--sbs`` (M) of a study at one network size."""
    parser.add_argument("--devices", type=int, default=20, help="N, number of devices (default 20)")
    parser.add_argument("--sbs", type=int, default=3, help="M, number of SBSs (default 3)")


def add_executor_arguments(parser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="where runs execute: local processes (--jobs), or Ray tasks (pip install -e '.[ray]')")
    parser.add_argument("--address", default=None, help="with --executor ray: the cluster, 'auto' or HOST:PORT "
                                                        "(default: start a local Ray)")


def check_executor(args) -> None:
    """``--executor ray`` needs Ray installed; ``--address`` needs ``--executor ray``."""
    if args.address is not None and args.executor != "ray":
        raise UsageError("argument --address: only with --executor ray")
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("argument --executor: ray is not installed (pip install -e '.[ray]')") from None


def writable_directory(path: Path, flag: str) -> Path:
    """``path`` as a directory this process can write to, created if missing; anything else is a
    ``UsageError`` naming ``flag``, raised before any work starts."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"argument {flag}: {str(path)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"argument {flag}: cannot write to {str(path)!r} ({error.strerror or error})") from None
    return path


class StudyParser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message)


@dataclass(frozen=True)
class Budget:
    """How much work a study does in one mode (``--quick`` or the paper-scale default)."""

    seeds: int  # independent replicates (training seeds; each owns its evaluation episodes)
    episodes: int | None  # training episodes per learned run (None: the solver's default)
    eval_every: int | None  # learning-curve point every this many episodes (None: ten per run)
    eval_seeds: int  # validation episodes per learning-curve point
    episodes_per_seed: int  # K, held-out evaluation episodes per replicate
    slots: int = 200  # T, slots per episode (the paper's default)


DEFAULT_POINT = (20, 3)
"""(N, M) of the paper's default scenario, where the shipped policies are compared."""

QUICK = Budget(seeds=2, episodes=32, eval_every=16, eval_seeds=1, episodes_per_seed=2)
"""``--quick``: a smoke run of every study in a few minutes on 2 cores (learned solvers barely
trained: the figures show the pipeline, not the paper's claims)."""

SHIPPED = Budget(seeds=5, episodes=None, eval_every=None, eval_seeds=3, episodes_per_seed=10)
"""Paper scale at the default point (Fig. 4, and the N = 20 point of Fig. 7): each learned
solver trains with its own default budget (a3c 12,000 episodes, dqn 1,600), i.e. the policies
that ship, with ten learning-curve points per run on 3 validation episodes."""

LEARNING_RATE = Budget(seeds=5, episodes=1000, eval_every=100, eval_seeds=3, episodes_per_seed=10)
"""Paper scale of Fig. 8: four learning rates x 5 replicates at the default budget would alone
take about 3 hours; 1,000 episodes (the step size annealed over them) rank the rates in about
20 minutes."""

SWEEP = Budget(seeds=5, episodes=300, eval_every=300, eval_seeds=1, episodes_per_seed=10)
"""Paper scale of the sweeps (Figs. 5-7, except the shipped N = 20 point of Fig. 7): 300
episodes per learned run (a3c: 17-30 s at N <= 40). 2.3 of the 4 hours ``studies.paper`` may
take on 2 cores go to the 15 shipped trainings of Fig. 4, and the sweeps' 150 trainings share
the rest (``studies.estimate``): their policies are far from the shipped ones, which the
figures' captions and the summaries state."""


def _comma_separated(kind, described: str):
    """An argparse type: a non-empty comma-separated list of ``kind`` values."""

    def parse(text: str) -> list:
        try:
            values = [kind(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {described}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    return parse


integer_list = _comma_separated(int, "integers")
float_list = _comma_separated(float, "numbers")


def listed(values) -> str:
    """Numbers as a study's options and summaries show them: ``1,10,100``."""
    return ",".join(f"{v:g}" for v in values)


def name_list(text: str) -> list:
    values = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not values:
        raise argparse.ArgumentTypeError("expected at least one solver name")
    return values


def canonical_hyper(solver: str, scenario: Scenario, hyper: dict) -> tuple:
    """``hyper`` without the values equal to the solver's defaults (as sorted pairs), so that a
    run at a default value (e.g. a3c's learning rate 1e-3) shares its cached model with the
    runs that do not set it. A bad name or value is a usage error."""
    from dataclasses import fields, is_dataclass

    from dtnopt.registry import make

    if not hyper:
        return ()
    try:
        make(solver, scenario, **hyper)
        config = getattr(make(solver, scenario), "config", None)
    except (TypeError, ValueError) as error:
        raise UsageError(f"hyper-parameters {hyper} of solver {solver!r}: {error}") from None
    defaults = {f.name: getattr(config, f.name) for f in fields(config)} if is_dataclass(config) else {}
    return tuple(sorted((name, value) for name, value in hyper.items()
                        if name not in defaults or defaults[name] != value))


def size_independent(solver: str, hyper: dict) -> bool:
    """Whether the learned ``solver`` with ``hyper`` has networks that run at any N and M."""
    return _size_independent(solver, tuple(sorted(hyper.items())))


@functools.lru_cache(maxsize=None)
def _size_independent(solver: str, hyper: tuple) -> bool:
    from dtnopt.registry import make

    try:
        learned = make(solver, Scenario(), **dict(hyper))
    except (TypeError, ValueError) as error:
        raise UsageError(f"hyper-parameters {dict(hyper)} of solver {solver!r}: {error}") from None
    check = getattr(learned, "size_independent", None)
    return bool(check and check(learned.config))


EXECUTION = ("executed", "cached", "wall_s")
"""What a study's configuration record says of an execution: runs executed, runs from the cache, seconds."""


def last_execution(path: Path) -> dict | None:
    """The record of the last execution of a study that executed any run, from its configuration
    record at ``path`` (None if there is none): a rerun from the cache keeps it, so the measured
    time of the work survives the reruns that only redraw."""
    try:
        record = json.loads(path.read_text())
        if record.get("executed"):
            return {key: record[key] for key in EXECUTION}
        return record.get("last_execution")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class Study:
    """One figure of the paper. Subclasses set the class attributes and override ``plan``,
    ``draw`` and ``claims`` (and ``add_arguments`` / ``default_solvers`` if needed)."""

    name = "study"
    title = "study"
    solvers: tuple = ()  # default solver names
    label_columns: tuple = ()  # extra swept columns of the long-form table besides devices, sbs
    curves = False  # draws learning curves: non-learned solvers are also scored on the validation episodes
    shipped_point = False  # at paper scale, learned runs at DEFAULT_POINT train with the SHIPPED budget
    decision_p95 = False  # the table also holds each episode's 95th-percentile decision time
    quick = QUICK
    full = SHIPPED

    # --- what a study overrides ---
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Study-specific options."""

    def default_solvers(self, args) -> list:
        return list(self.solvers)

    def plan(self, args) -> list:
        """The runs of the study."""
        raise NotImplementedError

    def draw(self, table, stem: Path) -> None:
        raise NotImplementedError

    def claims(self, table) -> tuple:
        """(list of ``claims.Claim``, markdown of the measured means, list of notes)."""
        raise NotImplementedError

    # --- shared ---
    def run(self, args, solver: str, seed: int, devices: int = 20, sbs: int = 3, hyper: dict | None = None,
            labels: dict | None = None, scenario: dict | None = None, training_scenario: dict | None = None) -> Run:
        """A run of ``solver`` in this study's budget; training settings only for learned solvers.
        ``scenario`` sets other ``Scenario`` fields than N, M and T (e.g. ``{"V": 10}``); fields
        left at their defaults give the same scenario, so the same cache keys, as not setting them.
        ``training_scenario`` (learned solvers) sets the fields of the scenario it is trained on
        instead, e.g. ``{}`` for a perfect twin scored on a deviated one; the model is then shared
        by every run trained there.

        A size-independent learned solver (``a3c-any``) is trained once per seed, at
        ``DEFAULT_POINT`` (and at paper scale with its own default budget), and scored at every N and M."""
        learned = resolve_solver(solver)[0].learned
        anysize = learned and size_independent(solver, hyper or {})
        if anysize:
            training_scenario = {**(scenario or {} if training_scenario is None else training_scenario),
                                 "devices": DEFAULT_POINT[0], "sbs": DEFAULT_POINT[1]}
        try:
            evaluated = Scenario(devices=devices, sbs=sbs, slots=args.slots, **(scenario or {}))
            trained = (Scenario(**{"devices": devices, "sbs": sbs, "slots": args.slots, **training_scenario})
                       if training_scenario is not None and learned else evaluated)
        except (TypeError, ValueError) as error:  # names the field and its range
            raise UsageError(f"scenario: {error}") from None
        settings = {"training_scenario": trained} if trained != evaluated else {}
        if self.decision_p95:
            settings["decision_p95"] = True
        if learned:
            settings.update(episodes=args.episodes, eval_every=args.eval_every, eval_seeds=args.eval_seeds)
            if args.shipped and (anysize or self.shipped_point and (devices, sbs) == DEFAULT_POINT):
                settings.update(episodes=SHIPPED.episodes, eval_every=SHIPPED.eval_every,
                                eval_seeds=SHIPPED.eval_seeds)
        elif self.curves:  # a reference line of a learning-curve figure: scored where the curves are
            settings["reference_seeds"] = args.eval_seeds
        return Run(solver, evaluated, seed, hyper=canonical_hyper(solver, evaluated, hyper or {}),
                   labels=tuple((labels or {}).items()), evaluation_episodes=args.episodes_per_seed, **settings)

    def parser(self) -> argparse.ArgumentParser:
        parser = StudyParser(prog=f"python -m studies.{self.name}", description=self.title)
        parser.add_argument("--quick", action="store_true", help="small budgets: a few minutes on 2 cores")
        parser.add_argument("--seeds", type=int, default=None, help="independent seeds (default: the budget's)")
        parser.add_argument("--out", default=None, help=f"output directory (default results/{self.name})")
        parser.add_argument("--jobs", type=int, default=1, help="runs executed in parallel processes (default 1)")
        add_executor_arguments(parser)
        parser.add_argument("--solvers", type=name_list, default=None,
                            help=f"comma-separated registered solver names (default {','.join(self.solvers)})")
        parser.add_argument("--episodes", type=int, default=None,
                            help="training episodes per learned run (default: the budget's)")
        parser.add_argument("--episodes-per-seed", type=int, default=None,
                            help=f"K, held-out evaluation episodes per replicate (default {self.full.episodes_per_seed}; "
                                 f"--quick {self.quick.episodes_per_seed})")
        parser.add_argument("--slots", type=int, default=None, help="T, slots per episode (default 200)")
        parser.add_argument("--cache", default=None, help="run cache directory (default OUT/runs)")
        parser.add_argument("--plot-only", action="store_true", help=f"redraw from OUT/{self.name}.csv only")
        self.add_arguments(parser)
        return parser

    def resolve(self, args) -> None:
        """Fill defaults from the budget and validate (``UsageError`` on a bad value)."""
        budget = self.quick if args.quick else self.full
        args.shipped = not args.quick and args.episodes is None  # no budget forced on the default point
        for name in ("seeds", "episodes", "episodes_per_seed", "slots"):
            if getattr(args, name) is None:
                setattr(args, name, getattr(budget, name))
        args.eval_every, args.eval_seeds = budget.eval_every, budget.eval_seeds
        if args.eval_every is not None and args.episodes is not None:
            args.eval_every = min(args.eval_every, args.episodes)
        check_executor(args)
        for flag, value, low in (("--seeds", args.seeds, 1), ("--jobs", args.jobs, 1), ("--slots", args.slots, 1)):
            if value < low:
                raise UsageError(f"argument {flag}: must be an integer >= {low}, got {value}")
        if args.seeds > REPLICATES_MAX:
            raise UsageError(f"argument --seeds: must be an integer in [1, {REPLICATES_MAX}], got {args.seeds}")
        if not 1 <= args.episodes_per_seed <= EPISODES_MAX:
            raise UsageError(f"argument --episodes-per-seed: must be an integer in [1, {EPISODES_MAX}], "
                             f"got {args.episodes_per_seed}")
        if args.episodes is not None and args.episodes < 1:
            raise UsageError(f"argument --episodes: must be an integer >= 1, got {args.episodes}")
        if args.slots > 100_000:
            raise UsageError(f"argument --slots: must be an integer in [1, 100000], got {args.slots}")
        if args.solvers is None:
            args.solvers = self.default_solvers(args)
        for solver in args.solvers:
            try:
                resolve_solver(solver)
            except ValueError as error:
                raise UsageError(f"argument --solvers: {error}") from None
        args.out = Path(args.out or Path("results") / self.name)
        args.cache = Path(args.cache) if args.cache else args.out / "runs"
        if not args.plot_only:
            writable_directory(args.out, "--out")
            writable_directory(args.cache, "--cache")

    def outputs(self, out: Path) -> dict:
        return {kind: out / f"{self.name}.{kind}" for kind in ("csv", "json", "png", "pdf", "md")}

    def report(self, table, out: Path) -> str:
        """Figure and summary from the table; returns the summary's verdict line."""
        from .claims import evaluations, reading_notes, summary, verdict_counts

        paths = self.outputs(out)
        self.draw(table, paths["csv"].with_suffix(""))
        claims, means, notes = self.claims(table)
        notes = [*notes, *reading_notes(evaluations(table), claims)]
        write_atomically(paths["md"], lambda p: p.write_text(summary(self.title, table, claims, means, notes)))
        return verdict_counts(claims)

    def planned(self, argv) -> tuple:
        """(resolved arguments, runs) of a command line, without running anything (a bad argument
        is a ``UsageError``)."""
        args = self.parser().parse_args(list(argv))
        self.resolve(args)
        return args, self.plan(args)

    def main(self, argv=None) -> int:
        argv = sys.argv[1:] if argv is None else list(argv)
        try:
            args = self.parser().parse_args(argv)
            self.resolve(args)
            return self._execute(args, argv)
        except UsageError as error:
            print(f"python -m studies.{self.name}: error: {error}", file=sys.stderr)
            return 2

    def _execute(self, args, argv) -> int:
        import pandas as pd

        paths = self.outputs(args.out)
        if args.plot_only:
            if not paths["csv"].is_file():
                raise UsageError(f"argument --plot-only: no table at {paths['csv']}; run the study first")
            table = pd.read_csv(paths["csv"])
            for column in ("episode", "evaluation_seed"):
                table[column] = table[column].astype("Int64")
            verdicts = self.report(table, args.out)
            print(f"{self.name}: redrew {paths['png']} and {paths['md']} from {paths['csv']} ({verdicts})")
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        runs = self.plan(args)
        config = {
            "study": self.name,
            "title": self.title,
            "command": " ".join(["python", "-m", f"studies.{self.name}", *map(shlex.quote, argv)]),
            "config": {key: (shown_path(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
            "budget": asdict(self.quick if args.quick else self.full),
            "scenarios": list({json.dumps(run.scenario.to_dict(), sort_keys=True): run.scenario.to_dict()
                               for run in runs}.values()),
            "provenance": provenance(),
            "runs": [run.describe() for run in dict.fromkeys(runs)],
        }
        total, remaining = plan_seconds(runs, args.cache)
        config["estimate_s"] = {"total": round(total), "remaining": round(remaining)}
        last = last_execution(paths["json"])
        if last:
            config["last_execution"] = last
        write_json(paths["json"], config)
        print(f"{self.name}: {len(dict.fromkeys(runs))} runs; estimated compute on 2 cores {hours(total)}, "
              f"{hours(remaining)} of it not in the cache ({args.cache})", flush=True)
        started = time.perf_counter()
        progress = execute_all(runs, args.cache, jobs=args.jobs, label=self.name, executor=args.executor,
                               address=args.address)
        table = long_table(self.name, runs, args.cache, self.label_columns)
        write_atomically(paths["csv"], lambda p: table.to_csv(p, index=False))
        verdicts = self.report(table, args.out)
        config.update(executed=progress.executed, cached=progress.cached, wall_s=time.perf_counter() - started)
        if progress.executed:
            config["last_execution"] = {key: config[key] for key in EXECUTION}
        write_json(paths["json"], config)
        print(f"{self.name}: {progress.executed} runs executed, {progress.cached} from the cache, "
              f"{config['wall_s']:.1f} s; {verdicts}")
        for kind in ("csv", "png", "md"):
            print(f"  {paths[kind]}")
        return 0
