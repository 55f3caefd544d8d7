"""``python -m benchmarks.targets``: the issue's quality targets of trained checkpoints beside
the references on the same held-out episodes."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.departures import main as departures_main
from benchmarks.targets import main, pooled, report, targets
from dtnopt import Scenario, make

TINY = Scenario(devices=4, sbs=1)


def _kpis(seeds, cost, eta, backlog, stable=True):
    return pd.DataFrame({"seed": seeds, "system_cost": cost, "energy_efficiency_j_per_mbit": eta,
                         "mean_local_backlog_mbit": backlog, "stable": stable})


REFERENCES = {
    "equal": _kpis([1, 2], [-100.0, -300.0], [0.03, 0.03], [20.0, 22.0]),
    "greedy": _kpis([1, 2], [-900.0, -1100.0], [0.0095, 0.0095], [480.0, 490.0]),
    "bcd": _kpis([1, 2], [-1100.0, -1300.0], [0.009, 0.011], [460.0, 466.0]),
}


def test_targets_are_the_issues_figures_paired_by_seed():
    figures = targets(_kpis([1, 2], [-1000.0, -1200.0], [0.0105, 0.0115], [461.0, 469.0], [True, False]), REFERENCES)
    # equal -200, bcd -1200, checkpoint -1100: 900 of the 1000 of the gap
    assert figures["gap"] == pytest.approx(0.9)
    assert figures["greedy_cost"] == -1000.0
    assert figures["eta_ratio"] == pytest.approx(0.011 / 0.010)
    assert figures["backlog"] == 465.0
    # paired differences +1 and +3: mean 2, half-width t(0.975, 1) * std / sqrt(2) = 12.706
    assert figures["backlog_minus_bcd"] == pytest.approx(2.0)
    assert figures["backlog_half_width"] == pytest.approx(12.7062, rel=1e-4)
    assert figures["stable"] == 0.5


def test_targets_refuse_references_of_other_episodes():
    with pytest.raises(ValueError, match="seeds differ"):
        targets(_kpis([2, 1], [-1.0, -1.0], [0.01, 0.01], [1.0, 1.0]), REFERENCES)


@pytest.mark.parametrize("difference, half, verdict", [
    (-0.5, 1.0, "target at most 0): met"),
    (0.5, 1.0, "MISSED (not resolved: 0 is inside the 95% interval)"),
    (2.0, 1.0, "MISSED (resolved: 0 is outside the 95% interval)"),
])
def test_backlog_verdict_says_whether_a_miss_is_resolved(difference, half, verdict):
    figures = {"gap": 0.95, "system_cost": -2.0, "greedy_cost": -1.0, "eta_ratio": 1.2, "backlog": 1.0,
               "backlog_minus_bcd": difference, "backlog_half_width": half, "stable": 1.0}
    lines = report("X.pt", figures, 1.0)
    assert verdict in lines[4]
    assert lines[1].endswith(": met") and lines[2].endswith(" met") and lines[3].endswith("MISSED")


def test_pooled_over_runs_is_a_t_interval_and_test():
    line = pooled([1.0, 3.0, 2.0])
    assert "over 3 runs" in line and "+2.00 +- 2.48" in line and "3 of 3 runs above" in line
    assert "p = 0.074" in line  # t = 2 / (1 / sqrt(3)), two degrees of freedom


def test_command_scores_checkpoints_and_pools_them(tmp_path, capsys):
    paths = []
    for seed in (0, 1):  # untrained: the command's output, not the policies' quality, is checked
        paths.append(tmp_path / f"a3c_{seed}.pt")
        make("a3c", TINY, seed=seed).save(paths[-1])
    main(["--devices", "4", "--sbs", "1", "--seeds", "2", "--model", str(paths[0]), "--model", str(paths[1])])
    out = capsys.readouterr().out
    for name in ("equal", "greedy", "bcd"):
        assert f"{name}: system cost" in out
    for path in paths:
        assert f"{path}:" in out
    assert out.count("gap closed") == 2 and out.count("\n  local backlog") == 2
    assert "over 2 runs: local backlog minus bcd's" in out
    assert np.isfinite(float(out.split("over 2 runs: local backlog minus bcd's ")[1].split(" ")[0]))


SHARED_CHECKS = [
    (["--seeds", "1"], "--seeds"),
    (["--model", "missing.pt"], "no checkpoint file"),
    (["--solver", "bcd"], "not a learned solver"),
    (["--solver", "nope"], "nope"),
    (["--devices", "0"], "devices"),
]


@pytest.mark.parametrize("command, argv, named", [
    *[(main, argv, named) for argv, named in SHARED_CHECKS],
    *[(departures_main, argv, named) for argv, named in SHARED_CHECKS],
    (departures_main, ["--episodes", "3", "--seeds", "2"], "--episodes"),
    (departures_main, ["--episodes", "-1"], "--episodes"),
])
def test_commands_reject_bad_arguments_before_any_episode(command, argv, named, capsys, tmp_path):
    """``benchmarks.targets`` and ``benchmarks.departures`` share their checks (``load_checkpoints``)."""
    checkpoint = tmp_path / "a3c.pt"
    make("a3c", TINY).save(checkpoint)
    with pytest.raises(SystemExit) as exit_:
        command(["--devices", "4", "--sbs", "1", "--model", str(checkpoint), *argv])
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_command_rejects_a_checkpoint_of_another_scenario(capsys, tmp_path):
    checkpoint = tmp_path / "a3c.pt"
    make("a3c", TINY).save(checkpoint)
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(checkpoint)])  # N=20, M=3
    assert exit_.value.code == 2 and "--model" in capsys.readouterr().err
