"""``dtnopt.evaluation`` and ``python -m dtnopt evaluate``: solvers and checkpoints scored on the
same held-out episodes, intervals over episodes, differences paired by episode, the gap share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dtnopt import KPI_NAMES, Scenario, held_out_seeds, make, run_seeds
from dtnopt.cli import main
from dtnopt.evaluation import Evaluation, evaluate, mean_interval

ROOT = Path(__file__).resolve().parents[1]
TINY = Scenario(devices=4, sbs=1, slots=20)


def synthetic(costs: dict, backlog: dict) -> Evaluation:
    """An evaluation of two episodes (seeds 1, 2) with the given per-episode system costs and
    local backlogs per solver (other KPIs 0)."""
    rows = []
    for label in costs:
        for k, seed in enumerate((1, 2)):
            row = dict.fromkeys(KPI_NAMES, 0.0)
            row.update(system_cost=costs[label][k], mean_local_backlog_mbit=backlog[label][k], stable=True)
            rows.append({"solver": label, "seed": seed, **row})
    return Evaluation(scenario=TINY, seeds=[1, 2], baseline="bcd", episodes=pd.DataFrame(rows))


def test_mean_interval_is_a_student_t_interval_over_the_finite_values():
    assert mean_interval([1.0, 3.0, 2.0]) == pytest.approx((2.0, 2.4841377), rel=1e-6)  # t(0.975, 2) / sqrt(3)
    assert mean_interval([5.0, np.nan]) == (5.0, 0.0)
    assert all(np.isnan(mean_interval([np.nan])))


def test_differences_are_paired_by_episode_and_the_gap_share_is_of_mean_costs():
    evaluation = synthetic(costs={"mine": [-1000.0, -1200.0], "equal": [-100.0, -300.0], "bcd": [-1100.0, -1300.0]},
                           backlog={"mine": [461.0, 469.0], "equal": [20.0, 22.0], "bcd": [460.0, 466.0]})
    # equal -200, bcd -1200, mine -1100: 900 of the 1000 of the gap
    assert evaluation.gap_share("mine") == pytest.approx(0.9)
    assert (evaluation.gap_share("equal"), evaluation.gap_share("bcd")) == (0.0, 1.0)
    summary = evaluation.summary().set_index(["solver", "kpi"])
    backlog = summary.loc[("mine", "mean_local_backlog_mbit")]
    # paired differences +1 and +3: mean 2, half-width t(0.975, 1) * std / sqrt(2) = 12.706; unpaired
    # the spread of the episodes (461 vs 469) would enter
    assert backlog["minus_baseline"] == pytest.approx(2.0)
    assert backlog["minus_baseline_high"] - 2.0 == pytest.approx(12.7062, rel=1e-4)
    assert backlog["high"] - backlog["mean"] == pytest.approx(50.8248, rel=1e-4)
    assert summary.loc[("bcd", "system_cost"), "minus_baseline"] == 0.0
    as_json = evaluation.to_dict()
    assert as_json["solvers"]["mine"]["gap_share"] == pytest.approx(0.9)
    assert as_json["solvers"]["mine"]["kpis"]["energy_efficiency_j_per_mbit"]["mean"] == 0.0


def test_evaluate_scores_every_solver_on_the_same_held_out_episodes():
    greedy = make("greedy", TINY)
    result = evaluate({"greedy": greedy}, TINY, episodes=2, baseline="local")
    assert result.solvers == ["greedy", "equal", "local"] and result.seeds == held_out_seeds(2)
    expected = run_seeds(make("greedy", TINY), TINY, held_out_seeds(2))
    np.testing.assert_array_equal(result.kpis("greedy")["system_cost"], expected["system_cost"])
    with pytest.raises(ValueError, match="episodes must be an integer >= 2"):
        evaluate({"greedy": greedy}, TINY, episodes=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An (untrained) a3c checkpoint of ``TINY`` written by ``save``: the command's plumbing, not
    the policy's quality, is under test."""
    path = tmp_path_factory.mktemp("evaluate") / "X.pt"
    make("a3c", TINY).save(path)
    return path


def test_command_scores_a_checkpoint_and_a_heuristic_against_the_baseline(checkpoint):
    argv = ["evaluate", "--solver", "a3c", "--model", str(checkpoint), "--solver", "greedy", "--baseline", "bcd",
            "--episodes", "3", "--devices", "4", "--sbs", "1", "--slots", "20", "--json"]
    run = subprocess.run([sys.executable, "-m", "dtnopt", *argv], cwd=ROOT, text=True, capture_output=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    label = f"a3c ({checkpoint})"
    assert list(report["solvers"]) == [label, "greedy", "equal", "bcd"]
    assert report["seeds"] == held_out_seeds(3) and report["baseline"] == "bcd"
    greedy = run_seeds(make("greedy", TINY), TINY, held_out_seeds(3))
    assert report["solvers"]["greedy"]["kpis"]["system_cost"]["mean"] == pytest.approx(greedy["system_cost"].mean())
    assert report["solvers"]["equal"]["gap_share"] == 0.0 and report["solvers"]["bcd"]["gap_share"] == 1.0
    rows = [row for row in report["episodes"] if row["solver"] == "greedy"]
    assert [row["seed"] for row in rows] == held_out_seeds(3)
    assert [row["system_cost"] for row in rows] == pytest.approx(list(greedy["system_cost"]))
    for kpi in KPI_NAMES:
        low, high = (report["solvers"][label]["kpis"][kpi][end] for end in ("low", "high"))
        assert low <= report["solvers"][label]["kpis"][kpi]["mean"] <= high, kpi
        assert report["solvers"]["bcd"]["kpis"][kpi]["minus_baseline"] == {"mean": 0.0, "low": 0.0, "high": 0.0}


def test_command_prints_a_table_with_each_solvers_gap_share(checkpoint, capsys):
    argv = ["evaluate", "--solver", "a3c", "--model", str(checkpoint), "--episodes", "2", "--baseline", "greedy",
            "--devices", "4", "--sbs", "1", "--slots", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 held-out episodes (seeds 1000000..1000001), N=4 M=1 T=20")
    assert len(out) == 2 + 3 * len(KPI_NAMES) + 1
    assert out[-1].startswith("share of the equal -> greedy gap in mean system cost: a3c (")
    assert out[-1].endswith("equal 0.0%, greedy 100.0%")


def damaged(tmp_path: Path, kind: str, checkpoint: Path) -> Path:
    path = tmp_path / f"{kind}.pt"
    content = {"empty": b"", "text": b"not a checkpoint\n", "truncated": checkpoint.read_bytes()[:300]}[kind]
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case, argv, expected", [
    ("unknown solver", ["--solver", "nope"], "argument --solver: unknown solver 'nope'"),
    ("unknown baseline", ["--solver", "greedy", "--baseline", "nope"], "argument --baseline: unknown solver 'nope'"),
    ("learned baseline", ["--solver", "greedy", "--baseline", "a3c"], "argument --baseline: 'a3c' is a learned"),
    ("no episodes", ["--solver", "greedy", "--episodes", "0"], "argument --episodes: must be an integer >= 2"),
    ("model first", ["--model", "X.pt", "--solver", "a3c"], "argument --model: 'X.pt' comes before any --solver"),
    ("two models", ["--solver", "a3c", "--model", "{checkpoint}", "--model", "{checkpoint}"],
     "argument --model: solver 'a3c' already has the checkpoint"),
    ("heuristic with model", ["--solver", "greedy", "--model", "{checkpoint}"],
     "argument --model: solver 'greedy' is not a learned solver"),
    ("learned without model", ["--solver", "greedy", "--solver", "a3c"],
     "argument --model: solver 'a3c' is learned and needs --model CHECKPOINT (untrained weights would be scored)"),
    ("missing checkpoint", ["--solver", "a3c", "--model", "/nonexistent/X.pt"],
     "argument --model: no checkpoint file at '/nonexistent/X.pt'"),
    ("checkpoint of another scenario", ["--solver", "a3c", "--model", "{checkpoint}", "--devices", "5"],
     "argument --model: {checkpoint} was trained with devices (N) = 4"),
    *[(f"{kind} checkpoint", ["--solver", "a3c", "--model", f"{{{kind}}}"], "argument --model: ")
      for kind in ("empty", "text", "truncated")],
])
def test_bad_arguments_exit_2_with_one_line_before_any_episode(case, argv, expected, checkpoint, tmp_path, capsys,
                                                               monkeypatch):
    from test_cli import assert_one_line_error

    import dtnopt.evaluation

    monkeypatch.setattr(dtnopt.evaluation, "run_seeds", lambda *args: pytest.fail("an episode ran"))
    paths = {"checkpoint": checkpoint, **{kind: damaged(tmp_path, kind, checkpoint)
                                          for kind in ("empty", "text", "truncated")}}
    argv = [arg.format(**paths) for arg in ["evaluate", "--devices", "4", "--sbs", "1", *argv]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, expected.format(**paths))
    if case.split()[0] in ("empty", "text", "truncated"):
        assert str(paths[case.split()[0]]) in captured.err  # the damaged file is named
