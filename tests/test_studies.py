"""The studies: a tiny study end to end, resume, --plot-only, bad arguments, parallel runs.

Uses the heuristic solvers and a tiny learned solver defined here (a linear policy fitted by
random search, following the learned-solver contract), so the studies' learned path is tested
without the real A3C/DQN budgets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dtnopt.features import action_from_unit, action_size, observation_features, observation_size
from dtnopt import Scenario, make
from dtnopt.loop import KPI_NAMES, held_out_seeds, run_episode, run_seeds, validation_seeds
from dtnopt.registry import register
from dtnopt.solver import NO_ABLATION, Solver
from studies import ablation, claims, devices, learning_rate, paper, runner, sbs, scaling, tradeoff, twin, vs_dqn

ROOT = Path(__file__).resolve().parents[1]
K = 2  # evaluation episodes per replicate in the tiny studies
TINY = ["--seeds", "2", "--episodes", "3", "--slots", "8", "--episodes-per-seed", str(K)]


@dataclass
class LinearSearchConfig:
    learning_rate: float = 0.3  # std of the random-search perturbation of the policy weights (> 5 diverges)
    default_episodes: int = 3  # training episodes when fit(episodes=None)

    def __post_init__(self):
        if not 0 < self.learning_rate < 10:
            raise ValueError(f"learning_rate must be in (0, 10), got {self.learning_rate!r}")
        if not 1 <= self.default_episodes <= 10_000:
            raise ValueError(f"default_episodes must be in [1, 10000], got {self.default_episodes!r}")


@register("linear-test")
class LinearSearchSolver(Solver):
    """A linear policy u = sigmoid(W phi(s) + b) over the shared unit action map, fitted by
    random search on the episode system cost (test-only learned solver)."""

    learned = True
    fits = 0  # fit calls in this process, to check that cached runs are not retrained

    def __init__(self, scenario, ablation=NO_ABLATION, seed=0, **hyperparameters):
        super().__init__(scenario, ablation, seed)
        self.config = LinearSearchConfig(**hyperparameters)
        self.weights = np.zeros((observation_size(scenario) + 1, action_size(scenario)))
        self.curve = None

    def decide(self, observation):
        features = observation_features(observation)
        features = np.concatenate([features, np.ones((features.shape[0], 1), np.float32)], axis=1)
        return action_from_unit(observation, 1.0 / (1.0 + np.exp(-features @ self.weights)))

    def _cost(self, weights, seed):
        self.weights = weights
        return run_episode(self, self.scenario, seed=seed).kpi["system_cost"]

    def fit(self, episodes=None, *, checkpoint=None, progress=True, eval_every=None, eval_seeds=3):
        type(self).fits += 1
        if self.config.learning_rate > 5:  # stands for a trainer whose loss became non-finite
            raise FloatingPointError("linear-test training produced non-finite weights")
        episodes = episodes or self.config.default_episodes
        eval_every = eval_every or episodes
        rng = np.random.default_rng(self.seed)
        started, rows = time.perf_counter(), []
        for episode in range(1, episodes + 1):
            seed = self.seed * 1000 + episode
            best = self.weights
            step = rng.normal(0.0, self.config.learning_rate, best.shape)
            costs = {key: self._cost(w, seed) for key, w in {0: best, 1: best + step, -1: best - step}.items()}
            self.weights = best + min(costs, key=costs.get) * step
            if episode % eval_every == 0 or episode == episodes:
                kpis = pd.DataFrame([run_episode(self, self.scenario, seed=s).kpi for s in validation_seeds(eval_seeds)])
                rows.append({"episode": episode, "slots": episode * 3 * self.scenario.slots,
                             "wall_s": time.perf_counter() - started, **kpis[list(KPI_NAMES)].mean().to_dict()})
                if checkpoint:
                    self.curve = pd.DataFrame(rows)
                    self.save(checkpoint)
        self.curve = pd.DataFrame(rows)
        return self.curve

    def save(self, path):
        import torch

        torch.save({"weights": self.weights, "scenario": self.scenario.to_dict(), "hyper": asdict(self.config),
                    "ablation": self.ablation.name, "curve": self.curve}, path)

    def load(self, path):
        import torch

        state = torch.load(path, weights_only=False)
        if (state["scenario"]["devices"], state["scenario"]["sbs"]) != (self.scenario.devices, self.scenario.sbs):
            raise ValueError("checkpoint devices/sbs differ from the solver's scenario")
        self.weights, self.curve = state["weights"], state["curve"]
        return self


@pytest.fixture
def episode_counter(monkeypatch):
    """Counts evaluation episodes run by the studies' runner (in this process)."""
    calls = []

    def counted(solver, scenario=None, seed=None, **kwargs):
        calls.append((solver.label, seed))
        return run_episode(solver, scenario, seed=seed, **kwargs)

    monkeypatch.setattr(runner, "run_episode", counted)
    LinearSearchSolver.fits = 0
    return calls


ABLATION_SOLVERS = "linear-test,linear-test-no-cpu,linear-test-no-radio,greedy,greedy-no-cpu,greedy-no-radio"


def _ablation(out, *extra):
    return ablation.STUDY.main(["--solvers", ABLATION_SOLVERS, "--devices", "4", *TINY, "--out", str(out), *extra])


def test_ablation_end_to_end(tmp_path, episode_counter):
    assert _ablation(tmp_path) == 0
    for kind in ("csv", "json", "png", "pdf", "md"):
        assert (tmp_path / f"ablation.{kind}").stat().st_size > 0, kind
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert list(table.columns) == ["study", "solver", "seed", "devices", "sbs", "phase", "episode", "evaluation_seed",
                                   "metric", "value"]
    evaluation = table[table["phase"] == "eval"]
    # one row per solver x replicate x evaluation episode x metric; learned ones also report their
    # training time and failure (repeated on each of their episodes)
    assert len(evaluation) == 6 * 2 * K * len(KPI_NAMES) + 3 * 2 * K * 2
    assert set(evaluation["metric"]) == set(KPI_NAMES) | {"training_s", "training_failed"}
    curve = table[table["phase"] == "train"]
    assert set(curve["solver"]) == {"linear-test", "linear-test-no-cpu", "linear-test-no-radio"}
    assert sorted(curve["episode"].unique()) == [3]
    assert evaluation.groupby(["solver", "metric"]).size().eq(2 * K).all()
    # replicate k is scored on its own K held-out episodes, the same for every solver
    episodes = evaluation.groupby(["solver", "seed"])["evaluation_seed"].apply(lambda s: tuple(sorted(set(s))))
    for (solver, seed), seeds in episodes.items():
        assert seeds == tuple(runner.evaluation_seeds(seed, K)), solver
    # the references' lines on the curve figure sit at their level on the curves' validation episodes
    validation = table[(table["phase"] == "validation") & (table["metric"] == "system_cost")]
    assert set(validation["solver"]) == {"greedy", "greedy-no-cpu", "greedy-no-radio"}
    resolved = json.loads((tmp_path / "ablation.json").read_text())["config"]
    greedy = make("greedy", Scenario(devices=4, sbs=resolved["sbs"], slots=resolved["slots"]))
    expected = run_seeds(greedy, greedy.scenario, validation_seeds(resolved["eval_seeds"]))["system_cost"].mean()
    assert validation.loc[validation["solver"] == "greedy", "value"].to_numpy() == pytest.approx(expected)
    # every solver faces the same held-out episodes, K per replicate, disjoint across replicates
    expected = runner.evaluation_seeds(0, K) + runner.evaluation_seeds(1, K)
    assert sorted(set(seed for _, seed in episode_counter)) == expected and len(set(expected)) == 2 * K
    assert expected[:1] == held_out_seeds(1) and max(expected) < validation_seeds(1)[0]
    assert LinearSearchSolver.fits == 3 * 2
    summary = (tmp_path / "ablation.md").read_text()
    for text in ("the full scheme beats both ablations: linear-test < linear-test-no-cpu, linear-test-no-radio", "matters more than CPU allocation: greedy-no-cpu < greedy-no-radio",
                 "system cost: **", "eta_EE (J/Mbit): **", "backlog (Mbit): **"):
        assert text in summary
    config = json.loads((tmp_path / "ablation.json").read_text())
    assert config["command"].startswith("python -m studies.ablation --solvers")
    assert config["config"]["seeds"] == 2 and config["executed"] == 12 and config["cached"] == 0


def test_resume_redoes_nothing(tmp_path, episode_counter, capsys):
    assert _ablation(tmp_path) == 0
    first = pd.read_csv(tmp_path / "ablation.csv")
    done = len(episode_counter)
    assert _ablation(tmp_path) == 0
    assert len(episode_counter) == done and LinearSearchSolver.fits == 6
    assert "0 runs executed, 12 from the cache" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ablation.csv"), first)
    # an interrupted run (its result missing, its model trained) is evaluated again, not retrained
    results = sorted((tmp_path / "runs" / "results").glob("linear-test-no-cpu_*"))
    results[0].unlink()
    assert _ablation(tmp_path) == 0
    assert len(episode_counter) == done + K and LinearSearchSolver.fits == 6
    again = pd.read_csv(tmp_path / "ablation.csv")
    timed = first["metric"] == "decision_ms"  # wall-clock time of the re-evaluated run
    pd.testing.assert_frame_equal(again[~timed], first[~timed])


def test_plot_only_redraws_from_the_table(tmp_path, episode_counter):
    assert _ablation(tmp_path) == 0
    import shutil

    shutil.rmtree(tmp_path / "runs")
    for kind in ("png", "pdf", "md"):
        (tmp_path / f"ablation.{kind}").unlink()
    table = pd.read_csv(tmp_path / "ablation.csv")
    table.loc[(table["solver"] == "greedy") & (table["metric"] == "system_cost"), "value"] = 1e9
    table.to_csv(tmp_path / "ablation.csv", index=False)
    done = len(episode_counter)
    assert _ablation(tmp_path, "--plot-only") == 0
    assert len(episode_counter) == done
    for kind in ("png", "pdf", "md"):
        assert (tmp_path / f"ablation.{kind}").stat().st_size > 0
    summary = (tmp_path / "ablation.md").read_text()
    assert "greedy 1e+09" in summary  # the summary is computed from the (edited) table


@pytest.mark.parametrize("study, argv, claims", [
    (sbs.STUDY, ["--scheme", "greedy", "--sbs-values", "1,3", "--devices-values", "4,8"],
     ["at N=8 more SBSs lower the cost (greedy)", "at N=4 the number of SBSs barely matters (greedy)"]),
    (devices.STUDY, ["--scheme", "greedy", "--devices-values", "4,8"],
     ["the cost grows with N (greedy-no-radio)", "full < no-CPU < no-bandwidth/power at N=8"]),
    (vs_dqn.STUDY, ["--solvers", "linear-test,random,equal", "--devices-values", "3,6"],
     ["the cost grows with N (linear-test)", "A3C beats DQN at N=6: linear-test < random"]),
    (learning_rate.STUDY, ["--solvers", "linear-test,greedy", "--rates", "0.5,1e-3", "--devices", "4"],
     ["learning rate 0.001 is best (linear-test)", "last learning-curve point of linear-test at lr=0.5"]),
])
def test_each_study_end_to_end(tmp_path, study, argv, claims):
    assert study.main([*argv, *TINY, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / f"{study.name}.csv")
    assert {"study", "solver", "seed", "devices", "sbs", "phase", "episode", "metric", "value"} <= set(table.columns)
    assert (table["study"] == study.name).all() and set(KPI_NAMES) <= set(table["metric"])
    assert table[table["phase"] == "eval"].groupby(["solver", "devices", "sbs", *study.label_columns, "metric"],
                                                  dropna=False).size().eq(2 * K).all()
    summary = (tmp_path / f"{study.name}.md").read_text()
    for claim in claims:
        assert claim in summary
    checked = re.search(r"(\d+) of (\d+) checked claim/metric pairs hold", summary)
    assert checked and int(checked[2]) > 0
    assert (tmp_path / f"{study.name}.png").stat().st_size > 0


def test_learning_rate_reaches_the_solver(tmp_path):
    assert learning_rate.STUDY.main(["--solvers", "linear-test", "--rates", "0.5,1e-3", "--devices", "4", *TINY,
                                     "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "learning_rate.csv")
    curve = table[(table["phase"] == "train") & (table["metric"] == "system_cost")]
    by_rate = curve.groupby("learning_rate")["value"].apply(tuple)
    assert by_rate[0.5] != by_rate[1e-3]  # different rates trained different policies


def test_diverged_training_is_an_outcome_not_a_crash(tmp_path, episode_counter):
    argv = ["--solvers", "linear-test,greedy", "--rates", "7,1e-3", "--devices", "4", *TINY, "--out", str(tmp_path)]
    assert learning_rate.STUDY.main(argv) == 0
    table = pd.read_csv(tmp_path / "learning_rate.csv")
    failed = table[(table["metric"] == "training_failed")].groupby("learning_rate")["value"].max()
    assert failed[7.0] == 1 and failed[1e-3] == 0
    diverged = table[(table["learning_rate"] == 7.0) & (table["metric"] == "system_cost")]
    assert diverged["value"].isna().all()
    summary = (tmp_path / "learning_rate.md").read_text()
    assert "Training of linear-test (N=4, M=3, seed 0) diverged" in summary
    fits = LinearSearchSolver.fits
    assert learning_rate.STUDY.main(argv) == 0 and LinearSearchSolver.fits == fits  # failures are cached too


def test_parallel_jobs_give_the_same_table(tmp_path):
    argv = ["--solvers", "linear-test,greedy,random", "--devices-values", "3,5", *TINY]
    assert vs_dqn.STUDY.main([*argv, "--out", str(tmp_path / "serial")]) == 0
    assert vs_dqn.STUDY.main([*argv, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    serial = pd.read_csv(tmp_path / "serial" / "vs_dqn.csv")
    parallel = pd.read_csv(tmp_path / "parallel" / "vs_dqn.csv")
    keep = ~serial["metric"].isin(["decision_ms", "training_s"])
    pd.testing.assert_frame_equal(serial[keep], parallel[keep])


@pytest.mark.parametrize("study, argv, flag", [
    (ablation.STUDY, ["--seeds", "0"], "--seeds"),
    (ablation.STUDY, ["--seeds", "1001"], "--seeds"),
    (ablation.STUDY, ["--episodes-per-seed", "0"], "--episodes-per-seed"),
    (ablation.STUDY, ["--episodes-per-seed", "1001"], "--episodes-per-seed"),
    (ablation.STUDY, ["--episodes-per-seed", "two"], "--episodes-per-seed"),
    (ablation.STUDY, ["--jobs", "0"], "--jobs"),
    (ablation.STUDY, ["--episodes", "0"], "--episodes"),
    (ablation.STUDY, ["--solvers", "greedy,no-such-solver"], "--solvers"),
    (ablation.STUDY, ["--devices", "0", "--solvers", "greedy"], "devices"),
    (ablation.STUDY, ["--bogus"], "--bogus"),
    (ablation.STUDY, ["--plot-only", "--solvers", "greedy"], "--plot-only"),
    (sbs.STUDY, ["--sbs-values", "a,b"], "--sbs-values"),
    (devices.STUDY, ["--scheme", "nope"], "--solvers"),
    (learning_rate.STUDY, ["--rates", "0", "--solvers", "linear-test"], "--rates"),
    (learning_rate.STUDY, ["--rates", "20", "--solvers", "linear-test"], "learning_rate must be in (0, 10)"),
    (tradeoff.STUDY, ["--V-values", "a,b"], "--V-values"),
    (tradeoff.STUDY, ["--V-values", "1,10"], "--V-values: at least 3"),
    (tradeoff.STUDY, ["--V-values", "0,1,10"], "--V-values: each V must be in (0, 1e+09]"),
    (tradeoff.STUDY, ["--V-values", "1,10,2e9"], "--V-values: each V must be in (0, 1e+09]"),
    (tradeoff.STUDY, ["--solvers", "linear-test", "--learned-V-values", ""], "--learned-V-values"),
    (tradeoff.STUDY, ["--solvers", "greedy,linear-test", "--V-values", "1,10,100", "--learned-V-values", "10,1000"],
     "--learned-V-values: each must be one of --V-values (1,10,100), got 1000"),
    (tradeoff.STUDY, ["--devices", "0"], "devices must be"),
    (twin.STUDY, ["--gain-errors", "-0.1"], "--gain-errors: each must be in [0, 10]"),
    (twin.STUDY, ["--gain-errors", "x"], "--gain-errors"),
    (twin.STUDY, ["--staleness-values", "1.5"], "--staleness-values"),
    (twin.STUDY, ["--staleness-values", "-1"], "--staleness-values: each must be an integer in [0, 10000]"),
    (twin.STUDY, ["--gain-errors", "0", "--staleness-values", "0"], "at least one deviation above 0"),
    (scaling.STUDY, ["--devices-values", "5"], "--devices-values: at least 2"),
    (scaling.STUDY, ["--devices-values", "0,5"], "--devices-values: each N must be in [1, 1000]"),
    (scaling.STUDY, ["--sbs-rule", "square"], "--sbs-rule"),
    (scaling.STUDY, ["--devices-per-sbs", "0"], "--devices-per-sbs: must be an integer in [1, 1000]"),
    (scaling.STUDY, ["--reference-slots", "0"], "--reference-slots: must be an integer in [1, 1000]"),
    (scaling.STUDY, ["--reference-max-devices", "9"], "--reference-max-devices: must be an integer in [1, 8]"),
    (scaling.STUDY, ["--solvers", "greedy,a3c"], "--optimiser: 'bcd' must be one of --solvers"),
    (scaling.STUDY, ["--solvers", "a3c,bcd", "--optimiser", "a3c"], "--optimiser: must be a non-learned solver"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, study, argv, flag):
    assert study.main([*argv, "--out", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and flag in error and error.startswith(f"python -m studies.{study.name}")


def test_module_entry_point_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "studies.vs_dqn", "--seeds", "-1", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--seeds" in done.stderr


def test_paper_runs_every_study_into_one_report(tmp_path, capsys):
    out, cache = tmp_path / "published", tmp_path / "cache"
    argv = ["--learned", "linear-test", "--benchmark", "random", "--reference", "greedy", "--scheme", "equal",
            "--any-size", "", "--seeds", "2", "--episodes", "2", "--slots", "5", "--episodes-per-seed", "2",
            "--out", str(out), "--cache", str(cache)]
    assert paper.main(argv) == 0
    assert "paper: estimated compute on 2 cores" in capsys.readouterr().out
    report = (out / "REPORT.md").read_text()
    names = paper.STUDIES
    # only the report, one PNG per figure and the (small) tables are published; the rest stays in the cache
    assert sorted(path.name for path in out.iterdir()) == sorted(
        ["REPORT.md", *(f"{paper.FIGURES[name]}.png" for name in names), *(f"{name}.csv" for name in names)])
    for name in names:
        assert f"({paper.FIGURES[name]}.png)" in report and (cache / name / f"{name}.md").is_file()
    assert "A3C beats DQN" in report and "learning rate 0.001 is best" in report
    assert f"Commit `{paper.git_commit()}`" in report and "python -m studies.paper --learned linear-test" in report
    assert re.search(r"\| vs_dqn \| \d+ min \| \d+ min \(8 models\) \| [\d.]+ s \(\d+ runs executed", report)
    assert re.search(r"system cost: \*\*(holds|does not hold|not resolved)\*\*: .* = .* \[", report)


def test_paper_scaling_scores_the_size_independent_solver_unless_left_out():
    def solvers(*argv):
        arguments = paper.study_arguments("scaling", paper.build_parser().parse_args(list(argv)))
        return arguments[arguments.index("--solvers") + 1].split(",")

    assert solvers() == ["bcd", "a3c", "a3c-any", "dqn", "greedy", "reference"]
    assert solvers("--any-size", "") == ["bcd", "a3c", "dqn", "greedy", "reference"]


def test_the_report_sums_each_models_training_time_once(tmp_path):
    rows = [{"study": "x", "solver": solver, "seed": seed, "devices": 20, "sbs": 3, "phase": "eval", "episode": 10,
             "evaluation_seed": episode, "metric": metric, "value": value}
            for solver, seed, minutes in (("a3c", 0, 7.0), ("a3c", 1, 9.0), ("bcd", 0, None))
            for episode in range(3)
            for metric, value in (("training_s", None if minutes is None else 60 * minutes), ("system_cost", 1.0))
            if value is not None]
    pd.DataFrame(rows).to_csv(tmp_path / "x.csv", index=False)
    assert paper.training_time(tmp_path / "x.csv") == "16 min (2 models)"
    shared = [{**row, "devices": 50} for row in rows if row["seed"] == 1]  # one model scored at another N
    pd.DataFrame(rows + shared).to_csv(tmp_path / "x.csv", index=False)
    assert paper.training_time(tmp_path / "x.csv") == "16 min (2 models)"
    pd.DataFrame(rows).query("metric != 'training_s'").to_csv(tmp_path / "y.csv", index=False)
    assert paper.training_time(tmp_path / "y.csv") == "no training"


@pytest.mark.parametrize("argv, flag", [(["--episodes-per-seed", "0"], "--episodes-per-seed"),
                                        (["--seeds", "0"], "--seeds"), (["--only", "fig9"], "--only")])
def test_paper_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, flag):
    assert paper.main([*argv, "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and flag in error and error.startswith("python -m studies.paper")


def test_paper_keeps_tables_over_the_limit_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paper, "CSV_LIMIT", 10)
    out, cache = tmp_path / "published", tmp_path / "cache"
    assert paper.main(["--only", "ablation", "--learned", "linear-test", "--reference", "greedy", *TINY,
                       "--out", str(out), "--cache", str(cache)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["REPORT.md", "fig4_ablation.png"]
    assert "are not published here" in (out / "REPORT.md").read_text()


def test_published_results_folder_admits_only_the_report_figures_and_tables():
    probe = ["docs/results/REPORT.md", "docs/results/fig4_ablation.png", "docs/results/ablation.csv",
             "docs/results/solvers.md", "docs/results/fig4_ablation.pdf", "docs/results/runs/x.json",
             "docs/results/ablation/ablation.md", "results/paper-cache/runs/x.json"]
    done = subprocess.run(["git", "check-ignore", *probe], cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        pytest.skip("not a git checkout")
    assert set(done.stdout.split()) == set(probe[4:])


def test_the_cache_never_reuses_a_run_of_another_model(tmp_path, monkeypatch):
    run = runner.Run("bcd", Scenario(devices=4, sbs=1, slots=5), seed=0)
    cache = runner.RunCache(tmp_path)
    current = (cache.model(run), cache.result(run))
    monkeypatch.setattr(runner, "MODEL_VERSION", runner.MODEL_VERSION + 1)
    assert cache.model(run) != current[0] and cache.result(run) != current[1]


@pytest.mark.parametrize("damage", ["empty", "truncated", "not an object"])
def test_a_damaged_result_is_reported_by_name_and_redone(tmp_path, episode_counter, capsys, damage):
    assert _ablation(tmp_path) == 0
    first = pd.read_csv(tmp_path / "ablation.csv")
    result = sorted((tmp_path / "runs" / "results").glob("greedy_*"))[0]
    text = result.read_text()
    result.write_text({"empty": "", "truncated": text[: len(text) // 2], "not an object": "[1, 2]"}[damage])
    capsys.readouterr()
    assert _ablation(tmp_path) == 0
    captured = capsys.readouterr()
    assert f"damaged cache entry {result}" in captured.err and "1 runs executed, 11 from the cache" in captured.out
    timed = first["metric"] == "decision_ms"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ablation.csv")[~timed], first[~timed])


@pytest.mark.parametrize("damaged", ["checkpoint", "record"])
def test_a_damaged_model_is_reported_by_name_and_retrained(tmp_path, episode_counter, capsys, damaged):
    assert _ablation(tmp_path) == 0
    first = pd.read_csv(tmp_path / "ablation.csv")
    model = sorted((tmp_path / "runs" / "models").glob("linear-test-no-cpu_*.pt"))[0]
    path = model if damaged == "checkpoint" else model.with_suffix(".json")
    path.write_bytes(path.read_bytes()[:40])
    for result in (tmp_path / "runs" / "results").glob("linear-test-no-cpu_*"):
        result.unlink()  # the evaluation of that model is redone, and needs the model
    fits = LinearSearchSolver.fits
    capsys.readouterr()
    assert _ablation(tmp_path) == 0
    assert f"damaged cache entry {path}" in capsys.readouterr().err
    assert LinearSearchSolver.fits == fits + 1  # the damaged model only
    curves = first["phase"] == "train"
    again = pd.read_csv(tmp_path / "ablation.csv")
    pd.testing.assert_frame_equal(again[curves & (again["metric"] != "decision_ms")].reset_index(drop=True),
                                  first[curves & (first["metric"] != "decision_ms")].reset_index(drop=True),
                                  check_dtype=False)


def test_temporary_files_of_stopped_runs_are_removed(tmp_path):
    models = tmp_path / "runs" / "models"
    models.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [models / f".x.pt.{int(dead.stdout)}.partial", models / f".x.json.{int(dead.stdout)}.tmp"]
    live = models / f".y.pt.{os.getpid()}.partial"
    for path in (*stale, live):
        path.write_text("partial")
    assert ablation.STUDY.main(["--solvers", "greedy", "--devices", "4", *TINY, "--out", str(tmp_path)]) == 0
    assert not any(path.exists() for path in stale) and live.exists()


@pytest.mark.parametrize("flag", ["--out", "--cache"])
def test_an_output_that_cannot_be_a_directory_exits_2_before_any_run(tmp_path, capsys, episode_counter, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["--solvers", "greedy", "--devices", "4", *TINY, "--out", str(tmp_path / "out")]
    for place in (blocker, blocker / "below"):
        assert ablation.STUDY.main([*argv, flag, str(place)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and flag in error and str(place) in error
    assert not episode_counter


def test_evaluation_episodes_and_default_budgets_are_part_of_the_key(tmp_path):
    cache = runner.RunCache(tmp_path)
    two, three = (runner.Run("greedy", Scenario(devices=4, sbs=1, slots=5), seed=1, evaluation_episodes=k)
                  for k in (2, 3))
    assert cache.result(two) != cache.result(three) and cache.model(two) == cache.model(three)
    assert two.evaluation_seeds == three.evaluation_seeds[:2]
    shipped = runner.Run("a3c", Scenario(devices=4, sbs=1, slots=5), seed=0)
    assert shipped.episodes is None and shipped.training_key()["default_episodes"] == make("a3c").config.episodes
    other = runner.Run("a3c", shipped.scenario, seed=0, hyper=(("episodes", 100),))
    assert other.budget == 100 and cache.model(other) != cache.model(shipped)


def test_evaluation_seeds_are_disjoint_across_replicates_and_from_validation():
    seeds = [seed for replicate in range(5) for seed in runner.evaluation_seeds(replicate, 10)]
    assert len(set(seeds)) == 50 and min(seeds) == held_out_seeds(1)[0]
    last = runner.evaluation_seeds(runner.REPLICATES_MAX - 1, runner.EPISODES_MAX)
    assert max(last) < validation_seeds(1)[0]
    with pytest.raises(ValueError):
        runner.evaluation_seeds(runner.REPLICATES_MAX, 1)


def test_the_shipped_policies_are_compared_at_the_default_point(tmp_path):
    args, runs = vs_dqn.STUDY.planned(["--out", str(tmp_path)])
    assert args.seeds == 5 and args.episodes_per_seed == 10
    learned = [run for run in runs if run.learned]
    assert {run.episodes for run in learned if run.scenario.devices == 20} == {None}
    assert {run.episodes for run in learned if run.scenario.devices != 20} == {args.episodes}
    assert all(run.evaluation_episodes == 10 for run in runs)
    # the same a3c model as Fig. 4's, so the cache trains it once
    ablation_runs = ablation.STUDY.planned(["--out", str(tmp_path)])[1]
    shipped = {run.training_key()["seed"]: run for run in ablation_runs if run.solver == "a3c"}
    assert {repr(run.training_key()) for run in learned if run.solver == "a3c" and run.scenario.devices == 20} \
        == {repr(run.training_key()) for run in shipped.values()}
    # a budget given on the command line applies everywhere; --quick has its own
    _, forced = vs_dqn.STUDY.planned(["--out", str(tmp_path), "--episodes", "7"])
    assert {run.episodes for run in forced if run.learned} == {7}
    args, quick = vs_dqn.STUDY.planned(["--out", str(tmp_path), "--quick"])
    assert {run.episodes for run in quick if run.learned} == {32} and args.episodes_per_seed == 2


# --- decisions on paired differences ------------------------------------------------------------

def test_the_bootstrap_decides_clear_differences_and_leaves_noise_unresolved():
    rng = np.random.default_rng(1)
    for shift, expected in ((+3.0, "above"), (-3.0, "below"), (0.0, "around")):
        cube = shift + rng.normal(0.0, 1.0, (5, 10))
        estimate, low, high, replicates = claims.stratified_bootstrap(cube)
        assert replicates == 5 and low <= estimate <= high
        assert {"above": low > 0, "below": high < 0, "around": low < 0 < high}[expected], (shift, low, high)
    # a fixed seed: the same data give the same interval
    assert claims.stratified_bootstrap(cube) == claims.stratified_bootstrap(cube)


def test_the_bootstrap_is_stratified_by_replicate():
    # one replicate with 1000 episodes far below 0, four with 2 episodes slightly above: each replicate
    # weighs the same, so the estimate is the mean of the replicate means and the sign is not settled
    cube = np.full((5, 1000), np.nan)
    cube[0] = -10.0 + np.linspace(-0.1, 0.1, 1000)
    cube[1:, :2] = 1.0
    estimate, low, high, _ = claims.stratified_bootstrap(cube)
    assert estimate == pytest.approx((-10.0 + 4 * 1.0) / 5)
    assert low < 0 < high
    # the replicates' spread, not the episodes', sets the interval: pooling would have been decisive
    pooled = cube[np.isfinite(cube)]
    assert pooled.mean() < -9


def _two_solver_values(a, b):
    """An ``evaluations`` frame of solvers a and b: values[replicate][episode] per solver."""
    rows = []
    for solver, values in (("a", a), ("b", b)):
        for replicate, episodes in enumerate(values):
            for index, value in enumerate(episodes):
                rows += [{"study": "t", "solver": solver, "seed": replicate, "devices": 4, "sbs": 1, "phase": "eval",
                          "episode": None, "evaluation_seed": runner.evaluation_seeds(replicate, 10)[index],
                          "metric": metric, "value": value if metric == "system_cost" else 1.0}
                         for metric in KPI_NAMES]
    table = pd.DataFrame(rows)
    table["episode"] = table["episode"].astype("Int64")
    return claims.evaluations(table)


def test_a_claim_is_decided_on_the_paired_difference_and_follows_the_table():
    b = [[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [15.0, 25.0, 35.0]]
    a = [[value - 1.0 for value in episodes] for episodes in b]  # one lower on every episode
    # the episodes' spread dwarfs the difference, yet pairing by episode resolves it
    verdict = claims.ordering(_two_solver_values(a, b), ["a", "b"])[0]
    assert verdict.state == "holds" and "a - b = -1 [-1, -1]" in verdict.evidence
    assert claims.ordering(_two_solver_values(b, a), ["a", "b"])[0].state == "does not hold"
    a[1][2] = 1000.0  # one changed number in the table
    assert claims.ordering(_two_solver_values(a, b), ["a", "b"])[0].state == "not resolved"
    # with a single replicate nothing is resolved: the training seed's variation is unknown
    assert claims.ordering(_two_solver_values(b[:1], [[v + 1 for v in b[0]]]), ["a", "b"])[0].state == "not resolved"


def test_the_budget_line_names_each_budget_and_where_it_applied():
    rows = [{"solver": "a3c", "devices": n, "sbs": 3, "phase": "eval", "episode": 12000 if n == 20 else 300}
            for n in (5, 10, 20)] + [{"solver": "bcd", "devices": 20, "sbs": 3, "phase": "eval", "episode": None},
                                     {"solver": "dqn", "devices": 20, "sbs": 3, "phase": "eval", "episode": 1600}]
    table = pd.DataFrame(rows).astype({"episode": "Int64"})
    assert claims.budget_line(table) == ("Training episodes: a3c 300 (N=5 M=3; N=10 M=3), 12000 (N=20 M=3); "
                                         "dqn 1600.")


def test_the_study_record_holds_what_was_run_and_what_ran_it(tmp_path, episode_counter, monkeypatch):
    import dtnopt

    monkeypatch.chdir(tmp_path)
    assert ablation.STUDY.main(["--solvers", "greedy", "--devices", "4", *TINY, "--out", "out"]) == 0
    record = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert [(s["devices"], s["sbs"], s["slots"]) for s in record["scenarios"]] == [(4, 3, 8)]
    made = record["provenance"]
    assert made["dtnopt"] == dtnopt.__version__ and made["model_version"] == dtnopt.MODEL_VERSION
    assert made["libraries"]["numpy"] == np.__version__ and made["commit"]
    assert record["config"]["out"] == "out" and record["config"]["cache"] == str(Path("out") / "runs")


def test_ray_executor_gives_the_same_table_as_local_processes(tmp_path):
    pytest.importorskip("ray")
    argv = ["--solvers", "bcd,bcd-no-cpu,greedy", "--devices", "4", *TINY, "--episodes-per-seed", "2"]
    assert ablation.STUDY.main([*argv, "--out", str(tmp_path / "local")]) == 0
    assert ablation.STUDY.main([*argv, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, distributed = (pd.read_csv(tmp_path / where / "ablation.csv") for where in ("local", "ray"))
    timed = local["metric"] == "decision_ms"
    pd.testing.assert_frame_equal(distributed[~timed], local[~timed])


@pytest.mark.parametrize("argv, message", [
    (["--address", "auto"], "argument --address: only with --executor ray"),
    (["--executor", "spark"], "argument --executor"),
])
def test_executor_arguments_exit_2(tmp_path, capsys, argv, message):
    assert ablation.STUDY.main(["--solvers", "greedy", *argv, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


def test_cpus_of_a_run_are_its_workers():
    scenario = Scenario(devices=4, sbs=1, slots=5)
    assert runner.cpus_of(runner.Run("bcd", scenario, 0)) == 1
    assert runner.cpus_of(runner.Run("a3c", scenario, 0, hyper=(("n_workers", 3),))) == 3


# --- the Lyapunov trade-off ---------------------------------------------------------------------

def test_tradeoff_end_to_end(tmp_path, episode_counter):
    argv = ["--solvers", "greedy,linear-test", "--devices", "4", "--V-values", "1,100,1000",
            "--learned-V-values", "100,1000", *TINY, "--slots", "20", "--out", str(tmp_path)]
    assert tradeoff.STUDY.main(argv) == 0
    table = pd.read_csv(tmp_path / "tradeoff.csv")
    assert list(table.columns) == ["study", "solver", "seed", "devices", "sbs", "V", "phase", "episode",
                                   "evaluation_seed", "metric", "value"]
    evaluation = table[(table["phase"] == "eval") & table["metric"].isin(KPI_NAMES)]
    assert evaluation.groupby(["solver", "V", "metric"]).size().eq(2 * K).all()
    assert evaluation.groupby("solver")["V"].apply(lambda v: sorted(set(v))).to_dict() == {
        "greedy": [1.0, 100.0, 1000.0], "linear-test": [100.0, 1000.0]}
    assert LinearSearchSolver.fits == 2 * 2  # a model per learned V and replicate
    record = json.loads((tmp_path / "tradeoff.json").read_text())
    assert sorted({scenario["V"] for scenario in record["scenarios"]}) == [1.0, 100.0, 1000.0]
    summary = (tmp_path / "tradeoff.md").read_text()
    for text in ("the energy gap shrinks with V (greedy)", "the backlog grows with V (greedy)",
                 "the backlog above its level at V = 1 grows like V", "Default V supported by the numbers",
                 "Stability (greedy)", "Training episodes: linear-test 3", "| greedy | 1000 |"):
        assert text in summary
    assert (tmp_path / "tradeoff.png").stat().st_size > 0 and (tmp_path / "tradeoff.pdf").stat().st_size > 0
    done = len(episode_counter)
    assert tradeoff.STUDY.main(argv) == 0 and len(episode_counter) == done  # resumed from the cache


def test_a_scenario_field_at_its_default_keeps_the_cache_key(tmp_path):
    args, runs = sbs.STUDY.planned(["--scheme", "greedy", "--out", str(tmp_path)])
    assert all(run.scenario == Scenario(devices=run.scenario.devices, sbs=run.scenario.sbs, slots=args.slots)
               for run in runs)
    args, runs = tradeoff.STUDY.planned(["--solvers", "greedy,a3c", "--out", str(tmp_path)])
    assert args.V_values == [1, 3, 10, 30, 100, 300, 1000] and args.learned_V_values == [10, 100, 1000]
    at_default = [run for run in runs if run.scenario.V == Scenario().V]
    # V = 100 is the default scenario: its a3c models are the sweeps' (Figs. 5-6) at N = 20, M = 3
    sweep = {repr(run.training_key()) for run in sbs.STUDY.planned(["--out", str(tmp_path)])[1]}
    assert {repr(run.training_key()) for run in at_default if run.learned} <= sweep
    assert len({run.training_key()["scenario"]["V"] for run in runs if run.learned}) == 3
    assert {run.episodes for run in runs if run.learned} == {300}


def _tradeoff_table(energy, backlog, replicates=3, episodes=3, noise=0.01):
    """A long-form trade-off table of solver "bcd" at N = 20, M = 3: eta_EE ``energy[V]`` and local
    backlog ``backlog[V]`` (edge backlog 0), each episode off by a fixed relative ``noise``."""
    rng = np.random.default_rng(0)
    rows = []
    for v in energy:
        for replicate in range(replicates):
            for seed in runner.evaluation_seeds(replicate, episodes):
                off = 1 + rng.normal(0, noise)
                metrics = {name: 1.0 for name in KPI_NAMES}
                metrics.update(energy_efficiency_j_per_mbit=energy[v] * off,
                               mean_local_backlog_mbit=backlog[v] * off, mean_edge_backlog_mbit=0.0)
                rows += [{"study": "tradeoff", "solver": "bcd", "seed": replicate, "devices": 20, "sbs": 3, "V": v,
                          "phase": "eval", "episode": None, "evaluation_seed": seed, "metric": metric,
                          "value": value} for metric, value in metrics.items()]
    table = pd.DataFrame(rows)
    table["episode"] = table["episode"].astype("Int64")
    return table


def _states(table) -> dict:
    found, _, notes = tradeoff.STUDY.claims(table)
    return {claim.text.rsplit(" (", 1)[0]: claim.verdicts[0].state for claim in found}, "\n".join(notes)


def test_tradeoff_findings_follow_the_table():
    settings = [1.0, 10.0, 100.0, 1000.0]
    theory = {"energy": {v: 1.0 + 1.0 / v for v in settings}, "backlog": {v: 2.0 * v for v in settings}}
    states, notes = _states(_tradeoff_table(theory["energy"], theory["backlog"]))
    assert states["the energy gap shrinks with V"] == "holds"
    assert states["the energy gap shrinks like 1/V: exponent -1"] == "holds"
    assert states["the backlog grows with V"] == "holds"
    assert states["at large V (V >= 100) the backlog grows like V: exponent +1"] == "holds"
    assert states["beyond V = 100 a tenfold V improves eta_EE by less than 5%"] == "holds"
    assert "bcd: V* = 100 " in notes  # gains per decade 45%, 8.2%, 0.9%
    # one changed number per claim flips its verdict
    energy = {**theory["energy"], 1000.0: 0.5}  # eta_EE still halves over the last decade
    states, notes = _states(_tradeoff_table(energy, theory["backlog"]))
    assert states["beyond V = 100 a tenfold V improves eta_EE by less than 5%"] == "does not hold"
    assert "bcd: none up to V = 1000" in notes
    energy = {**theory["energy"], 1000.0: 3.0}  # the largest V wastes energy: no gap to fit
    assert _states(_tradeoff_table(energy, theory["backlog"]))[0]["the energy gap shrinks with V"] == "not resolved"
    backlog = {**theory["backlog"], 1000.0: 150.0}  # the backlog stops growing at large V
    states, _ = _states(_tradeoff_table(theory["energy"], backlog))
    assert states["at large V (V >= 100) the backlog grows like V: exponent +1"] == "does not hold"
    backlog = {v: 5000.0 + 2.0 * v for v in settings}  # an offset: the level's exponent falls, the excess keeps 1
    states, notes = _states(_tradeoff_table(theory["energy"], backlog, noise=0.001))
    assert states["the backlog grows with V"] == "holds"
    assert states["at large V (V >= 100) the backlog grows like V: exponent +1"] == "does not hold"
    assert states["the backlog above its level at V = 1 grows like V: exponent +1"] == "holds"
    assert re.search(r"at V = 1 the local queues already hold 500\d Mbit, 250 Mbit per device", notes)


# --- the imperfect digital twin ------------------------------------------------------------------

TWIN_TINY = ["--devices", "4", "--gain-errors", "0.2", "--staleness-values", "2", *TINY, "--slots", "12"]


def test_twin_end_to_end(tmp_path, episode_counter):
    argv = ["--solvers", "greedy,linear-test", *TWIN_TINY, "--out", str(tmp_path)]
    assert twin.STUDY.main(argv) == 0
    table = pd.read_csv(tmp_path / "twin.csv")
    assert list(table.columns) == ["study", "solver", "seed", "devices", "sbs", "deviation", "level", "trained_on",
                                   "phase", "episode", "evaluation_seed", "metric", "value"]
    evaluation = table[(table["phase"] == "eval") & table["metric"].isin(KPI_NAMES)]
    assert evaluation.groupby(["solver", "deviation", "level", "trained_on", "metric"]).size().eq(2 * K).all()
    points = evaluation.groupby(["solver", "trained_on"])["deviation"].apply(lambda d: sorted(set(d))).to_dict()
    assert points == {("greedy", "not trained"): ["gain_error", "none", "staleness"],
                      ("linear-test", "perfect twin"): ["gain_error", "none", "staleness"],
                      ("linear-test", "this twin"): ["gain_error", "staleness"]}
    # one perfect-twin model per replicate serves every deviation; one more per deviated twin
    assert LinearSearchSolver.fits == 2 * (1 + 2)
    summary = (tmp_path / "twin.md").read_text()
    for text in ("training on the deviated twin helps at gain_error 0.2: linear-test (trained on this twin) < "
                 "linear-test (trained on a perfect twin)", "Tolerated deviation",
                 "channel-gain error (relative std), greedy: 1%:", "| staleness | 2 | linear-test (trained on a perfect twin) |"):
        assert text in summary
    assert (tmp_path / "twin.png").stat().st_size > 0 and (tmp_path / "twin.pdf").stat().st_size > 0
    done = len(episode_counter)
    assert twin.STUDY.main(argv) == 0 and len(episode_counter) == done  # resumed from the cache


def test_a_model_trained_elsewhere_is_keyed_by_its_training_scenario(tmp_path):
    args, runs = twin.STUDY.planned(["--solvers", "bcd,a3c", "--out", str(tmp_path)])
    perfect = [run for run in runs if dict(run.labels)["trained_on"] == twin.PERFECT]
    assert {repr(run.training_key()) for run in perfect} == {
        repr(run.training_key()) for run in perfect if run.scenario == Scenario(slots=args.slots)}
    assert len({repr(run.result_key()) for run in perfect}) == len(perfect)  # scored on each deviated twin
    assert all(run.training_scenario is None for run in runs if dict(run.labels)["deviation"] == "none")
    retrained = [run for run in runs if dict(run.labels)["trained_on"] == twin.THIS]
    assert len({repr(run.training_key()) for run in retrained}) == len(retrained)
    # every other study's runs, and so their cache keys, are unchanged: no training scenario, no p95
    for study in (ablation, sbs, devices, vs_dqn, learning_rate, tradeoff):
        for run in study.STUDY.planned(["--out", str(tmp_path)])[1]:
            assert run.training_scenario is None and not run.decision_p95
            assert "evaluation_scenario" not in run.result_key() and "decision_p95" not in run.result_key()
    key = runner.Run("bcd", Scenario(devices=4, slots=5), 0).result_key()
    assert set(key) == {"model", "solver", "scenario", "seed", "hyper", "evaluation_seeds"}


def _twin_table(energy, replicates=3, episodes=3, noise=0.002):
    """A long-form twin table at N = 20, M = 3: eta_EE ``energy[(solver, trained_on, deviation, level)]``,
    each episode off by a fixed relative ``noise``; the perfect-twin point has deviation "none"."""
    rng = np.random.default_rng(0)
    rows = []
    for (solver, trained_on, deviation, level), eta in energy.items():
        for replicate in range(replicates):
            for seed in runner.evaluation_seeds(replicate, episodes):
                metrics = {name: 1.0 for name in KPI_NAMES}
                metrics.update(energy_efficiency_j_per_mbit=eta * (1 + rng.normal(0, noise)),
                               mean_local_backlog_mbit=eta, mean_edge_backlog_mbit=0.0, system_cost=eta)
                rows += [{"study": "twin", "solver": solver, "seed": replicate, "devices": 20, "sbs": 3,
                          "deviation": deviation, "level": level, "trained_on": trained_on, "phase": "eval",
                          "episode": None, "evaluation_seed": seed, "metric": metric, "value": value}
                         for metric, value in metrics.items()]
    table = pd.DataFrame(rows)
    table["episode"] = table["episode"].astype("Int64")
    return table


def test_twin_findings_follow_the_table():
    energy = {("bcd", "not trained", "none", 0.0): 1.0, ("bcd", "not trained", "gain_error", 0.1): 1.003,
              ("bcd", "not trained", "gain_error", 0.4): 1.07,
              ("a3c", "perfect twin", "none", 0.0): 1.02, ("a3c", "perfect twin", "gain_error", 0.1): 1.04,
              ("a3c", "perfect twin", "gain_error", 0.4): 1.2,
              ("a3c", "this twin", "gain_error", 0.1): 1.04, ("a3c", "this twin", "gain_error", 0.4): 1.1}
    found, means, notes = twin.STUDY.claims(_twin_table(energy))
    notes = "\n".join(notes)
    assert "channel-gain error (relative std), bcd: 1%: from 0.4 on; 5%: from 0.4 on; 10%: beyond the sweep" in notes
    assert "a3c (trained on a perfect twin): 1%: from 0 on; 5%: from 0.4 on; 10%: from 0.4 on" in notes
    states = {claim.text.split(":")[0]: claim.verdicts[1].state for claim in found}
    assert states == {"training on the deviated twin helps at gain_error 0.1": "not resolved",
                      "training on the deviated twin helps at gain_error 0.4": "holds"}
    # one changed number flips a verdict each way
    energy[("bcd", "not trained", "gain_error", 0.4)] = 1.12
    assert "bcd: 1%: from 0.4 on; 5%: from 0.4 on; 10%: from 0.4 on" in "\n".join(twin.STUDY.claims(_twin_table(energy))[2])
    energy[("a3c", "this twin", "gain_error", 0.4)] = 1.3
    found = twin.STUDY.claims(_twin_table(energy))[0]
    assert found[-1].verdicts[1].state == "does not hold"


# --- learning against optimising as N grows ---------------------------------------------------------

def test_scaling_end_to_end(tmp_path, episode_counter):
    argv = ["--solvers", "linear-test,greedy,bcd,reference", "--devices-values", "3,8", "--reference-max-devices", "3",
            "--reference-slots", "2", *TINY, "--out", str(tmp_path)]
    assert scaling.STUDY.main(argv) == 0
    table = pd.read_csv(tmp_path / "scaling.csv")
    assert list(table.columns) == ["study", "solver", "seed", "devices", "sbs", "sbs_rule", "horizon", "phase",
                                   "episode", "evaluation_seed", "metric", "value"]
    evaluation = table[(table["phase"] == "eval") & table["metric"].isin([*KPI_NAMES, "decision_p95_ms"])]
    assert evaluation.groupby(["solver", "devices", "sbs_rule", "horizon", "metric"]).size().eq(2 * K).all()
    points = evaluation.groupby(["sbs_rule", "devices", "horizon"])["sbs"].first().to_dict()
    assert points == {("fixed", 3, "full"): 3, ("fixed", 3, "short"): 3, ("fixed", 8, "full"): 3,
                      ("growing", 3, "full"): 1, ("growing", 3, "short"): 1, ("growing", 8, "full"): 1}
    assert set(evaluation.loc[evaluation["solver"] == "reference", "horizon"]) == {"short"}
    assert set(evaluation.loc[evaluation["solver"] == "reference", "devices"]) == {3}
    assert LinearSearchSolver.fits == 2 * 2 * 2  # per N, rule and replicate; the short episodes reuse the model
    summary = (tmp_path / "scaling.md").read_text()
    for text in ("linear-test decides at least 10x faster than bcd while within 1% of its eta_EE (fixed M)",
                 "the decision time of bcd grows with N (growing M)", "decision ms (p95)",
                 "reference runs only at N = 3 on short episodes; it is skipped at N = 8",
                 "| fixed | short | 3 | 3 | greedy | reference |"):
        assert text in summary
    assert (tmp_path / "scaling.png").stat().st_size > 0 and (tmp_path / "scaling.pdf").stat().st_size > 0
    done = len(episode_counter)
    first = json.loads((tmp_path / "scaling.json").read_text())
    assert scaling.STUDY.main(argv) == 0 and len(episode_counter) == done  # resumed from the cache
    record = json.loads((tmp_path / "scaling.json").read_text())  # and keeps the measured time of the work
    assert record["executed"] == 0 and record["last_execution"]["wall_s"] == first["wall_s"]
    assert paper.study_timing(tmp_path / "scaling.json").endswith(
        f"the last that executed runs: {first['wall_s']:.0f} s ({first['executed']} runs executed, 0 from the cache)")


def _scaling_table(decision, eta, replicates=3, episodes=3, noise=0.01, backlog=None):
    """A long-form scaling table (rule fixed, full episodes): decision time ``decision[(solver, N)]`` ms
    and eta_EE ``eta[(solver, N)]``, each episode off by a fixed relative ``noise``."""
    rng = np.random.default_rng(0)
    rows = []
    for (solver, devices), ms in decision.items():
        for replicate in range(replicates):
            for seed in runner.evaluation_seeds(replicate, episodes):
                metrics = {name: 1.0 for name in KPI_NAMES}
                off = 1 + rng.normal(0, noise)
                metrics.update(decision_ms=ms * off, decision_p95_ms=2 * ms * off, system_cost=-100.0 * eta[solver, devices],
                               energy_efficiency_j_per_mbit=eta[solver, devices] * (1 + rng.normal(0, noise / 10)),
                               mean_local_backlog_mbit=(backlog or {}).get((solver, devices), 100.0),
                               mean_edge_backlog_mbit=0.0)
                rows += [{"study": "scaling", "solver": solver, "seed": replicate, "devices": devices, "sbs": 3,
                          "sbs_rule": "fixed", "horizon": "full", "phase": "eval", "episode": None,
                          "evaluation_seed": seed, "metric": metric, "value": value}
                         for metric, value in metrics.items()]
    table = pd.DataFrame(rows)
    table["episode"] = table["episode"].astype("Int64")
    return table


def test_scaling_findings_follow_the_table():
    sizes = (10, 20, 50, 100)
    decision = {**{("bcd", n): 0.1 * n for n in sizes}, **{("a3c", n): 0.3 for n in sizes}}
    eta = {**{("bcd", n): 1.0 for n in sizes}, **{("a3c", n): 1.0 + (0.005 if n >= 50 else 0.05) for n in sizes}}
    found = {claim.text: claim.verdicts[0] for claim in scaling.STUDY.claims(_scaling_table(decision, eta))[0]}
    assert "a3c decides at least 10x faster than bcd while within 1% of its eta_EE (fixed M): N = 50" in found
    grows = found["the decision time of bcd grows with N (fixed M)"]
    assert grows.state == "holds" and "decision time ~ N^1.00" in grows.evidence
    assert found["the decision time of a3c grows with N (fixed M)"].state == "not resolved"
    eta[("a3c", 50)] = 1.02  # within 1% only from N = 100 on
    found = [claim.text for claim in scaling.STUDY.claims(_scaling_table(decision, eta))[0]]
    assert "a3c decides at least 10x faster than bcd while within 1% of its eta_EE (fixed M): N = 100" in found
    decision[("bcd", 100)] = 2.0  # under 10x at the only N where the quality holds
    eta[("a3c", 50)] = 1.02
    found = {claim.text: claim.verdicts[0] for claim in scaling.STUDY.claims(_scaling_table(decision, eta))[0]}
    text = "a3c decides at least 10x faster than bcd while within 1% of its eta_EE (fixed M): nowhere in the sweep"
    assert found[text].state == "does not hold"
    decision[("bcd", 100)], eta[("a3c", 50)] = 0.1 * 100, 1.005  # within 1% from N = 50 on again
    crossed = "a3c decides at least 10x faster than bcd while within 1% of its eta_EE (fixed M): N = {}"
    assert crossed.format(50) in [claim.text for claim in scaling.STUDY.claims(_scaling_table(decision, eta))[0]]
    backlog = {("a3c", 50): 110.0}  # 10% more backlog than bcd's at N = 50: saving energy by serving less
    found = [claim.text for claim in scaling.STUDY.claims(_scaling_table(decision, eta, backlog=backlog))[0]]
    assert crossed.format(100) in found


def test_scaling_flags_a_baseline_cost_that_changes_sign():
    sizes = (10, 100)
    decision = {**{("bcd", n): 0.1 * n for n in sizes}, **{("a3c", n): 0.3 for n in sizes}}
    eta = {(solver, n): 1.0 for solver in ("bcd", "a3c") for n in sizes}
    table = _scaling_table(decision, eta)
    flagged = "At N = 100 (fixed M) bcd's system cost changes sign across the episodes"
    assert not any(flagged in note for note in scaling.STUDY.claims(table)[2])
    first = ((table["solver"] == "bcd") & (table["devices"] == 100) & (table["metric"] == "system_cost")).idxmax()
    table.loc[first, "value"] = 40.0  # one episode of bcd above 0, the others at -100
    notes = [note for note in scaling.STUDY.claims(table)[2] if flagged in note]
    assert len(notes) == 1 and "(-100 to 40)" in notes[0] and "for a3c there" in notes[0]


def test_an_unstable_learned_episode_is_told_apart_from_an_overloaded_network():
    def episode(solver, devices, stable, learned=True):
        return {"solver": solver, "seed": 0, "devices": devices, "sbs": 3, "evaluation_seed": 1, "stable": stable,
                "training_failed": 0.0 if learned else np.nan, "system_cost": 1.0}

    values = pd.DataFrame([episode("a3c", 20, 0), episode("bcd", 20, 1, learned=False),
                           episode("a3c", 200, 0), episode("bcd", 200, 0, learned=False), episode("a3c", 50, 1),
                           episode("bcd", 50, 1, learned=False)])
    note, = claims.unstable_note("a3c", values[values["solver"] == "a3c"], claims.stable_elsewhere(values))
    assert note.startswith("- The trained a3c let a queue pass the stability cap in 2 of 3 evaluation episodes")
    assert "in 1 of them no non-learned solver kept the queues stable on the same episode either (N=200 M=3)" in note
    assert "in the other 1, at this training budget its policy is not yet a stable one" in note
    not_overloaded = values[values["devices"] != 200]
    note, = claims.unstable_note("a3c", not_overloaded[not_overloaded["solver"] == "a3c"],
                                 claims.stable_elsewhere(not_overloaded))
    assert note == ("- The trained a3c let a queue pass the stability cap in 1 of 2 evaluation episodes: at this "
                    "training budget its policy is not yet a stable one, so its numbers say more about the budget "
                    "than about the method.")
    values.loc[1, "stable"] = 0  # bcd is unstable at N = 20 as well: both are the network's
    note, = claims.unstable_note("a3c", values[values["solver"] == "a3c"], claims.stable_elsewhere(values))
    assert "in 2 of them" in note and "(N=20 M=3, N=200 M=3)" in note and "in the other" not in note
    assert claims.unstable_note("a3c", values[values["devices"] == 50], claims.stable_elsewhere(values)) == []


def test_a_size_independent_solver_trains_once_per_replicate_and_plays_every_point(tmp_path):
    args, runs = devices.STUDY.planned(["--scheme", "a3c-any", "--out", str(tmp_path)])
    learned = [run for run in runs if run.learned]
    assert {run.scenario.devices for run in learned} == set(args.devices_values)
    models = {(run.solver, run.seed): set() for run in learned}
    for run in learned:
        models[run.solver, run.seed].add(repr(run.training_key()))
        assert (run.trained_on.devices, run.trained_on.sbs) == (20, 3) and run.trained_on.slots == args.slots
    assert all(len(keys) == 1 for keys in models.values()) and len(models) == 3 * args.seeds
    assert {run.budget for run in learned} == {make("a3c-any", Scenario()).config.episodes}  # its own default
    cache = runner.RunCache(tmp_path)
    assert {tuple(cache.model(run).name.split("_")[-4:-2]) for run in learned} == {("N20", "M3")}
    first, later = runner.waves(learned, cache)
    assert len({cache.model(run) for run in first}) == len(first) == len(models)
    assert {cache.model(run) for run in later} <= {cache.model(run) for run in first}
    # --quick and a forced budget apply to it as to any learned run
    _, quick = devices.STUDY.planned(["--scheme", "a3c-any", "--quick", "--out", str(tmp_path)])
    assert {run.budget for run in quick if run.learned} == {32}
    # a fixed-size solver keeps one model per point
    _, fixed = devices.STUDY.planned(["--out", str(tmp_path)])
    assert all(run.training_scenario is None for run in fixed)


def test_a_size_independent_solver_end_to_end(tmp_path):
    argv = ["--solvers", "a3c-any,greedy", "--devices-values", "3,5", "--sbs", "1", "--seeds", "1",
            "--episodes", "2", "--slots", "6", "--episodes-per-seed", "2", "--out", str(tmp_path), "--jobs", "2"]
    assert devices.STUDY.main(argv) == 0
    assert [path.name.split("_")[:3] for path in (tmp_path / "runs" / "models").glob("*.pt")] == [["a3c-any", "N20", "M3"]]
    table = pd.read_csv(tmp_path / "devices.csv")
    played = table[(table["phase"] == "eval") & (table["solver"] == "a3c-any") & (table["metric"] == "system_cost")]
    assert sorted(set(played["devices"])) == [3, 5]
