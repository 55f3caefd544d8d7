"""Command line: ``python -m dtnopt solvers | run | train | evaluate``.

    python -m dtnopt run --solver NAME [--model X.pt] [--devices N --sbs M --slots T --seed S] [--json]
    python -m dtnopt train --solver NAME --out X.pt [--seed S] [--episodes E] [--set NAME=VALUE ...]
                           [--devices-range LO:HI --sbs-range LO:HI]   (size-independent solvers)
    python -m dtnopt evaluate --solver NAME [--model X.pt] [--solver NAME2 [--model Y.pt]] ...
                              [--baseline bcd] [--episodes 10] [--devices N --sbs M] [--json]

A learned solver is only ever scored with a checkpoint (``--model``): untrained weights are not a
result. Bad arguments exit with code 2 and a one-line message naming the argument, no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import sys
from pathlib import Path

from .config import Scenario


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message)


SCENARIO_OPTIONS = {"devices": "--devices", "sbs": "--sbs", "slots": "--slots", "seed": "--seed", "V": "--V"}
"""Scenario fields a command sets, and their options."""

LOAD_ERRORS = (ValueError, OSError, EOFError, RuntimeError, KeyError, pickle.UnpicklingError)
"""What loading a damaged or foreign checkpoint raises: the solver's own checks (``ValueError``)
and what the file reader meets in an empty, text or truncated file."""


def _scenario(args) -> Scenario:
    try:
        return Scenario(devices=args.devices, sbs=args.sbs, slots=args.slots,
                        **({"seed": args.seed} if getattr(args, "seed", None) is not None else {}),
                        **({"V": args.V} if getattr(args, "V", None) is not None else {}))
    except ValueError as error:
        message = str(error)
        name = message.split(" ", 1)[0]
        raise UsageError(f"argument {SCENARIO_OPTIONS.get(name, name)}: {message}") from None


def _add_scenario_arguments(parser, seed: bool = True) -> None:
    parser.add_argument("--devices", type=int, default=20, help="N, number of devices (default 20)")
    parser.add_argument("--sbs", type=int, default=3, help="M, number of small-cell base stations (default 3)")
    parser.add_argument("--slots", type=int, default=200, help="T, slots per episode (default 200)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--V", type=float, default=None, help="Lyapunov weight V (default: the scenario's)")


class _SolverEntry(argparse.Action):
    """``--solver NAME`` of ``evaluate``: starts an entry ``[NAME, checkpoint]``."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, (getattr(namespace, self.dest) or []) + [[value, None]])


class _ModelEntry(argparse.Action):
    """``--model PATH`` of ``evaluate``: the checkpoint of the ``--solver`` just before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = getattr(namespace, "solvers") or []
        if not entries:
            raise argparse.ArgumentError(self, f"{value!r} comes before any --solver: give --solver NAME first")
        if entries[-1][1] is not None:
            raise argparse.ArgumentError(self, f"solver {entries[-1][0]!r} already has the checkpoint "
                                               f"{entries[-1][1]!r}: give --solver again for another")
        entries[-1][1] = value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dtnopt", description="Digital-twin IIoT offloading toolkit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("solvers", help="list registered solvers, one per line")

    run = commands.add_parser("run", help="run one episode and print its KPIs")
    run.add_argument("--solver", required=True, help="registered solver name (see `solvers`)")
    _add_scenario_arguments(run)
    run.add_argument("--model", default=None, help="checkpoint of a trained solver to load")
    run.add_argument("--json", action="store_true", help="print the KPIs as one JSON object on the last line")

    train = commands.add_parser("train", help="train a learned solver and save a checkpoint")
    train.add_argument("--solver", required=True, help="registered learned solver (e.g. a3c, dqn)")
    _add_scenario_arguments(train, seed=False)
    train.add_argument("--seed", type=int, default=0,
                       help="training seed: initial weights and the training episodes' seeds (default 0)")
    train.add_argument("--episodes", type=int, default=None, help="training budget in episodes (default: the solver's)")
    train.add_argument("--out", required=True, help="checkpoint path to write")
    train.add_argument("--set", dest="hyper", action="append", type=_assignment, default=[], metavar="NAME=VALUE",
                       help="a hyper-parameter of the solver, repeatable (e.g. --set hidden_size=64 "
                            "--set actor=mlp); VALUE is read as JSON, else as a string")
    for option, symbol in (("--devices-range", "N"), ("--sbs-range", "M")):
        train.add_argument(option, default=None, metavar="LO:HI",
                           help=f"size-independent solvers (a3c-any): each training episode draws {symbol} "
                                f"from LO..HI (default: the solver's)")

    evaluate = commands.add_parser(
        "evaluate", help="score solvers and checkpoints on the same held-out episodes beside equal and a baseline")
    evaluate.add_argument("--solver", dest="solvers", action=_SolverEntry, required=True, metavar="NAME",
                          help="registered solver to score, repeatable")
    evaluate.add_argument("--model", action=_ModelEntry, metavar="PATH",
                          help="checkpoint of the learned --solver just before it (required for learned solvers)")
    evaluate.add_argument("--baseline", default="bcd", help="solver the differences and the gap share are "
                                                             "measured against (default bcd)")
    evaluate.add_argument("--episodes", type=int, default=10, help="held-out episodes, at least 2 (default 10)")
    _add_scenario_arguments(evaluate, seed=False)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def _assignment(text: str) -> tuple:
    """``NAME=VALUE`` -> (name, value), VALUE read as JSON (numbers, true/false) or else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return name.strip(), parsed


RANGE_OPTIONS = {"devices_range": "--devices-range", "sbs_range": "--sbs-range"}
"""Hyper-parameters of size-independent solvers that ``train`` also sets by an option of its own."""


def _make_solver(name: str, scenario: Scenario, hyper: dict | None = None, option: str = "--solver", seed: int = 0,
                 flagged: dict | None = None):
    """Build solver ``name``; a bad name is reported against ``option``, a construction error
    against the option it is about: the option of a hyper-parameter in ``flagged`` (field ->
    option), ``--set`` for another hyper-parameter, the scenario option it names, else ``option``."""
    from dataclasses import fields

    from .registry import make, resolve

    try:
        cls = resolve(name)[0]
    except ValueError as error:
        raise UsageError(f"argument {option}: {error}") from None
    known = {f.name for f in fields(cls.config_class)} if getattr(cls, "config_class", None) else set()
    for field, flag in (flagged or {}).items():
        if field not in known:
            raise UsageError(f"argument {flag}: solver {name!r} does not train over network sizes; "
                             f"a size-independent solver such as a3c-any does")
    try:
        return make(name, scenario, seed=seed, **(hyper or {}))
    except (TypeError, ValueError) as error:  # an unknown hyper-parameter, a value out of range, a size
        first = str(error).split(" ", 1)[0]
        where = (flagged or {}).get(first) or _option_of(str(error), hyper or {}, option)
        raise UsageError(f"argument {where}: {error}") from None


def _option_of(message: str, hyper: dict, option: str) -> str:
    if hyper and (message.split(" ", 1)[0] in hyper or "hyper-parameter" in message):
        return "--set"
    for field, scenario_option in SCENARIO_OPTIONS.items():
        if re.search(rf"\b{field} must\b", message):
            return scenario_option
    return "--set" if hyper else option


def _load_model(solver, path: str, option: str = "--model"):
    """``solver`` with the checkpoint at ``path`` loaded; any failure is one line naming the file."""
    if not Path(path).is_file():
        raise UsageError(f"argument {option}: no checkpoint file at {path!r}")
    if not solver.learned:
        raise UsageError(f"argument {option}: solver {solver.label!r} is not a learned solver")
    try:
        return solver.load(path)
    except LOAD_ERRORS as error:
        if isinstance(error, ValueError):  # the solver's own check: a checkpoint of another scenario or solver
            detail = str(error)
        else:
            detail = f"{path!r} is not a readable {solver.label} checkpoint ({type(error).__name__}"
            detail += f": {_first_line(error)})" if _first_line(error) else ")"
        raise UsageError(f"argument {option}: {' '.join(detail.split())}") from None


def _first_line(error: BaseException) -> str:
    """The first sentence of an error's message (library messages may run to paragraphs)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else ""


def _trained_solver(name: str, model: str | None, scenario: Scenario):
    """Solver ``name`` ready to score: a learned one with its checkpoint loaded (required)."""
    solver = _make_solver(name, scenario)
    if model is not None:
        return _load_model(solver, model)
    if solver.learned:
        raise UsageError(f"argument --model: solver {name!r} is learned and needs --model CHECKPOINT "
                         f"(untrained weights would be scored)")
    return solver


def _command_solvers(args) -> None:
    from .registry import available, resolve

    for name in available():
        cls, ablation = resolve(name)
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
        if ablation.name:
            summary = f"{cls.name} with {ablation.name.replace('-', ' ')} allocation (ablation)"
        print(f"{name}\t{summary}")


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _command_run(args) -> None:
    from .loop import run_episode

    scenario = _scenario(args)
    solver = _trained_solver(args.solver, args.model, scenario)
    kpis = run_episode(solver, scenario, seed=args.seed).kpi
    if args.json:
        print(json.dumps({key: _json_value(value) for key, value in kpis.items()}))
    else:
        width = max(map(len, kpis))
        for key, value in kpis.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")


def _check_out(path: str) -> None:
    """``train --out``: a file path that can be written, checked before any training is spent
    (by opening it for appending: permission bits alone do not tell, e.g. for root or /proc)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"argument --out: {path!r} is a directory, not a checkpoint file path")
    if not target.parent.is_dir():
        raise UsageError(f"argument --out: the folder {str(target.parent)!r} of {path!r} is not an existing folder")
    existed = target.exists()
    try:
        with open(target, "ab"):
            pass
    except OSError as error:
        raise UsageError(f"argument --out: cannot write {path!r} ({error.strerror})") from None
    if not existed:
        target.unlink()


def _command_train(args) -> None:
    scenario = _scenario(args)
    _check_out(args.out)
    if args.seed < 0:
        raise UsageError(f"argument --seed: must be an integer >= 0, got {args.seed}")
    hyper, flagged = dict(args.hyper), {}
    for field, option in RANGE_OPTIONS.items():
        value = getattr(args, field)
        if value is not None:
            hyper[field], flagged[field] = value, option
    solver = _make_solver(args.solver, scenario, hyper, seed=args.seed, flagged=flagged)
    if not solver.learned:
        raise UsageError(f"argument --solver: solver {args.solver!r} is not a learned solver")
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"argument --episodes: must be an integer >= 1, got {args.episodes}")
    budget = {} if args.episodes is None else {"episodes": args.episodes}
    curve = solver.fit(**budget, checkpoint=args.out)
    solver.save(args.out)
    if curve is not None and len(curve):
        print(curve.tail(1).to_string(index=False))
    print(f"saved {args.out}")


def _command_evaluate(args) -> None:
    from .evaluation import evaluate

    if args.episodes < 2:
        raise UsageError(f"argument --episodes: must be an integer >= 2 (an interval needs two episodes), "
                         f"got {args.episodes}")
    scenario = _scenario(args)
    solvers = {}
    for name, model in args.solvers:  # every checkpoint loaded before any episode runs
        solvers[name if model is None else f"{name} ({model})"] = _trained_solver(name, model, scenario)
    baseline = _make_solver(args.baseline, scenario, option="--baseline")
    if baseline.learned:
        raise UsageError(f"argument --baseline: {args.baseline!r} is a learned solver; the baseline must need "
                         f"no checkpoint")
    solvers.setdefault(args.baseline, baseline)  # built once, and checked before any episode runs
    result = evaluate(solvers, scenario, args.episodes, baseline=args.baseline)
    print(json.dumps(result.to_dict()) if args.json else result.report())


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {"solvers": _command_solvers, "run": _command_run, "train": _command_train,
                    "evaluate": _command_evaluate}
        commands[args.command](args)
    except UsageError as error:
        print(f"dtnopt: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (``| head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
