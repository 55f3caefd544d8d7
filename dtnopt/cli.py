"""Command line: ``python -m dtnopt solvers | run | train``.

Bad arguments exit with code 2 and a one-line message naming the argument, no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .config import Scenario


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise UsageError(message)


def _scenario(args) -> Scenario:
    try:
        return Scenario(devices=args.devices, sbs=args.sbs, slots=args.slots, seed=args.seed,
                        **({"V": args.V} if getattr(args, "V", None) is not None else {}))
    except ValueError as error:
        flag = {"devices": "--devices", "sbs": "--sbs", "slots": "--slots", "seed": "--seed", "V": "--V"}
        message = str(error)
        name = message.split(" ", 1)[0]
        raise UsageError(f"argument {flag.get(name, name)}: {message}") from None


def _add_scenario_arguments(parser) -> None:
    parser.add_argument("--devices", type=int, default=20, help="N, number of devices (default 20)")
    parser.add_argument("--sbs", type=int, default=3, help="M, number of small-cell base stations (default 3)")
    parser.add_argument("--slots", type=int, default=200, help="T, slots per episode (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--V", type=float, default=None, help="Lyapunov weight V (default: the scenario's)")


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
    _add_scenario_arguments(train)
    train.add_argument("--episodes", type=int, default=None, help="training budget in episodes (default: the solver's)")
    train.add_argument("--out", required=True, help="checkpoint path to write")
    train.add_argument("--set", dest="hyper", action="append", type=_assignment, default=[], metavar="NAME=VALUE",
                       help="a hyper-parameter of the solver, repeatable (e.g. --set counterfactual_credit=true "
                            "--set actor=station); VALUE is read as JSON, else as a string")
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


def _make_solver(name: str, scenario: Scenario, hyper: dict | None = None):
    from .registry import make, resolve

    try:
        resolve(name)
    except ValueError as error:
        raise UsageError(f"argument --solver: {error}") from None
    try:
        return make(name, scenario, **(hyper or {}))
    except (TypeError, ValueError) as error:  # an unknown hyper-parameter or a value out of range
        raise UsageError(f"argument --set: {error}") from None


def _command_solvers(args) -> None:
    from .registry import available, resolve

    for name in available():
        cls, ablation = resolve(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        summary = doc[0] if doc else ""
        if ablation.name:
            summary = f"{cls.name} with {ablation.name.replace('-', ' ')} allocation (ablation)"
        print(f"{name}\t{summary}")


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _command_run(args) -> None:
    from pathlib import Path

    from .loop import run_episode

    scenario = _scenario(args)
    solver = _make_solver(args.solver, scenario)
    if args.model is not None:
        if not Path(args.model).is_file():
            raise UsageError(f"argument --model: no checkpoint file at {args.model!r}")
        if not solver.learned:
            raise UsageError(f"argument --model: solver {args.solver!r} is not a learned solver")
        try:
            solver.load(args.model)
        except ValueError as error:  # a checkpoint of another scenario, solver or ablation
            raise UsageError(f"argument --model: {error}") from None
    kpis = run_episode(solver, scenario, seed=args.seed).kpi
    if args.json:
        print(json.dumps({key: _json_value(value) for key, value in kpis.items()}))
    else:
        width = max(map(len, kpis))
        for key, value in kpis.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")


def _command_train(args) -> None:
    scenario = _scenario(args)
    solver = _make_solver(args.solver, scenario, dict(args.hyper))
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


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"solvers": _command_solvers, "run": _command_run, "train": _command_train}[args.command](args)
    except UsageError as error:
        print(f"dtnopt: error: {error}", file=sys.stderr)
        return 2
    return 0
