"""Command line: listings, JSON KPIs, and bad arguments (exit code 2, one line on stderr naming
the argument, no traceback), the latter through ``python -m dtnopt`` in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dtnopt import KPI_NAMES, Scenario, available, make, run_episode
from dtnopt.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Rejected before any solver module is imported: cheap to run as real subprocesses.
BAD_ARGUMENTS = {
    "no command": ([], "command"),
    "unknown command": (["bogus"], "invalid choice: 'bogus'"),
    "missing solver": (["run"], "--solver"),
    "devices out of range": (["run", "--solver", "equal", "--devices", "0"],
                             "argument --devices: devices must be in [1, 100000], got 0"),
    "devices not an integer": (["run", "--solver", "equal", "--devices", "abc"], "argument --devices"),
    "sbs out of range": (["run", "--solver", "equal", "--sbs", "-1"], "argument --sbs: sbs must be in [0, 1000]"),
    "slots out of range": (["run", "--solver", "equal", "--slots", "0"], "argument --slots: slots must be in"),
    "seed out of range": (["run", "--solver", "equal", "--seed", "-3"], "argument --seed: seed must be in"),
    "V not finite": (["run", "--solver", "equal", "--V", "nan"], "argument --V: V must be a finite number"),
    "extra argument": (["run", "--solver", "equal", "--fast"], "unrecognized arguments: --fast"),
    "train without output": (["train", "--solver", "equal"], "--out"),
    "unknown solver": (["run", "--solver", "nope"], "argument --solver: unknown solver 'nope'; known solvers: "),
    "set without a value": (["train", "--solver", "a3c", "--out", "x.pt", "--set", "actor"],
                            "argument --set: expected NAME=VALUE, got 'actor'"),
}
# Rejected after the registry is loaded (every solver module imported, seconds per process): run
# in this process, where it is loaded once.
BAD_ARGUMENTS_IN_PROCESS = {
    "missing checkpoint": (["run", "--solver", "equal", "--model", "/nonexistent/model.pt"],
                           "argument --model: no checkpoint file at '/nonexistent/model.pt'"),
    "train a heuristic": (["train", "--solver", "equal", "--out", "/tmp/never-written.pt"],
                          "argument --solver: solver 'equal' is not a learned solver"),
    "unknown hyper-parameter": (["train", "--solver", "a3c", "--out", "/tmp/never-written.pt", "--set", "gamma=0.9"],
                                "argument --set: unknown a3c hyper-parameter(s) gamma; known: "),
    "hyper-parameter out of range": (["train", "--solver", "a3c", "--out", "/tmp/never-written.pt",
                                      "--set", "learning_rate=-1"], "argument --set: learning_rate must be a number in"),
    "unknown ablated solver": (["run", "--solver", "nope-no-cpu"], "argument --solver: unknown solver 'nope-no-cpu'"),
    "solver too small for the scenario": (["run", "--solver", "reference", "--devices", "20"],
                                          "argument --devices: reference solves small instances only: devices must"),
    "ablated solver too small": (["run", "--solver", "reference-no-cpu", "--devices", "9", "--sbs", "1"],
                                 "argument --devices: reference solves small instances only"),
    "learned solver without a checkpoint": (["run", "--solver", "a3c", "--devices", "4", "--sbs", "1"],
                                            "argument --model: solver 'a3c' is learned and needs --model CHECKPOINT "
                                            "(untrained weights would be scored)"),
    "heuristic with a checkpoint": (["run", "--solver", "equal", "--model", __file__],
                                    "argument --model: solver 'equal' is not a learned solver"),
}

# ``train --out`` is checked before any solver is built or trained.
BAD_OUT = {
    "folder missing": ("/nonexistent/folder/model.pt", "argument --out: the folder '/nonexistent/folder' of "
                                                       "'/nonexistent/folder/model.pt' is not an existing folder"),
    "a directory": ("/tmp", "argument --out: '/tmp' is a directory, not a checkpoint file path"),
    "folder is a file": (f"{__file__}/model.pt", "argument --out: the folder"),
    "not writable": ("/proc/model.pt", "argument --out: cannot write '/proc/model.pt'"),
}


@pytest.fixture(scope="module")
def bad_runs():
    """All bad-argument runs at once, in parallel subprocesses (each pays the import time)."""
    processes = {case: subprocess.Popen([sys.executable, "-m", "dtnopt", *argv], cwd=ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for case, (argv, _) in BAD_ARGUMENTS.items()}
    return {case: (p.wait(timeout=300), *p.communicate()) for case, p in processes.items()}


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtnopt: error: ") and expected in lines[0], stderr


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line_naming_the_argument(bad_runs, case):
    code, stdout, stderr = bad_runs[case]
    assert code == 2, stderr
    assert stdout == ""
    assert_one_line_error(stderr, BAD_ARGUMENTS[case][1])


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS_IN_PROCESS))
def test_bad_solver_arguments_exit_2_with_one_line(capsys, case):
    argv, expected = BAD_ARGUMENTS_IN_PROCESS[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, expected)
    assert not Path("/tmp/never-written.pt").exists()


@pytest.mark.parametrize("case", list(BAD_OUT))
def test_train_checks_out_before_building_or_training_a_solver(capsys, monkeypatch, case):
    import dtnopt.cli

    monkeypatch.setattr(dtnopt.cli, "_make_solver", lambda *args: pytest.fail("a solver was built"))
    out, expected = BAD_OUT[case]
    assert main(["train", "--solver", "a3c", "--devices", "4", "--sbs", "1", "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, expected)


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "foreign"])
def test_run_of_a_damaged_checkpoint_exits_2_naming_the_file(capsys, tmp_path, kind):
    good = tmp_path / "good.pt"
    make("a3c", Scenario(devices=4, sbs=1)).save(good)
    path = tmp_path / f"{kind}.pt"
    if kind == "foreign":
        make("dqn", Scenario(devices=4, sbs=1)).save(path)
    else:
        path.write_bytes({"empty": b"", "text": b"not a checkpoint\n", "truncated": good.read_bytes()[:300]}[kind])
    assert main(["run", "--solver", "a3c", "--devices", "4", "--sbs", "1", "--slots", "3", "--model", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, "argument --model: ")
    assert str(path) in captured.err


def test_run_of_a_checkpoint_scores_the_loaded_weights(capsys, tmp_path):
    path = tmp_path / "a3c.pt"
    make("a3c", Scenario(devices=4, sbs=1), seed=3).save(path)
    assert main(["run", "--solver", "a3c", "--devices", "4", "--sbs", "1", "--slots", "5", "--model", str(path),
                 "--json"]) == 0
    scenario = Scenario(devices=4, sbs=1, slots=5)
    expected = run_episode(make("a3c", scenario).load(path), scenario, seed=0).kpi
    assert json.loads(capsys.readouterr().out)["system_cost"] == pytest.approx(expected["system_cost"])


def test_solvers_lists_every_registered_name_one_per_line_name_first(capsys):
    assert main(["solvers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == available()
    assert all(line.split("\t")[1] for line in lines)  # each with a one-line summary


def test_run_json_prints_the_episode_kpis_on_the_last_line(capsys):
    argv = ["run", "--solver", "greedy", "--devices", "5", "--sbs", "2", "--slots", "8", "--seed", "3", "--json"]
    assert main(argv) == 0
    kpis = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(kpis) == list(KPI_NAMES)
    scenario = Scenario(devices=5, sbs=2, slots=8, seed=3)
    expected = run_episode(make("greedy", scenario), scenario, seed=3).kpi
    for key in KPI_NAMES:
        if key != "decision_ms":
            assert kpis[key] == pytest.approx(expected[key]), key


def test_run_prints_a_readable_table(capsys):
    assert main(["run", "--solver", "equal-no-cpu", "--devices", "4", "--slots", "5", "--V", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(KPI_NAMES)


def test_train_set_passes_typed_hyper_parameters_to_the_solver():
    from dtnopt.cli import _make_solver, build_parser

    args = build_parser().parse_args(["train", "--solver", "a3c", "--out", "x.pt", "--set", "counterfactual_credit=true",
                                      "--set", "actor=station", "--set", "learning_rate=5e-4"])
    assert args.hyper == [("counterfactual_credit", True), ("actor", "station"), ("learning_rate", 5e-4)]
    config = _make_solver(args.solver, Scenario(devices=4, sbs=1), dict(args.hyper)).config
    assert (config.counterfactual_credit, config.actor, config.learning_rate) == (True, "station", 5e-4)


def test_train_seed_is_the_training_seed(tmp_path):
    import torch

    paths = {}
    for seed in (0, 5, 5):
        paths.setdefault(seed, []).append(tmp_path / f"dqn{seed}_{len(paths.get(seed, []))}.pt")
        assert main(["train", "--solver", "dqn", "--devices", "3", "--sbs", "1", "--slots", "5", "--episodes", "2",
                     "--seed", str(seed), "--set", "learning_starts=0", "--set", "batch_size=4",
                     "--out", str(paths[seed][-1])]) == 0
    saved = {path: torch.load(path, weights_only=True) for group in paths.values() for path in group}
    assert [saved[path]["seed"] for path in paths[5]] == [5, 5] and saved[paths[0][0]]["seed"] == 0
    weights = [saved[path]["weights"] for path in (paths[0][0], *paths[5])]
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])  # same seed, same training
    assert not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # another seed, another
