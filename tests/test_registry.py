"""Solver registry: every registered solver (including the ones added later and the ablated
variants) runs a short episode with feasible actions; names resolve or fail with the list;
entry points (built-in and third-party) load once, a broken one is skipped with a warning, a
name clash is an error; the model layer imports no solver, study or benchmark."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import numpy as np
import pytest

import dtnopt.registry as registry
from dtnopt import (ABLATIONS, Environments, Scenario, Solver, available, check_feasible, fixed_allocation, make,
                    register, run_episode)

TINY = Scenario(devices=4, sbs=2, slots=3)


@pytest.mark.parametrize("name", available())
def test_every_registered_solver_runs_a_short_episode_with_feasible_actions(name):
    solver = make(name, TINY)  # learned solvers run untrained
    assert isinstance(solver, Solver) and solver.label == name
    episode = run_episode(solver, TINY, seed=2)  # the loop checks every action against (14a)-(14e)
    assert len(episode.slots) == TINY.slots  # and every slot finite, or the loop raises NonFiniteSlot
    environments = Environments(TINY, 2)  # and a batch of two environments
    observation = environments.reset(5)
    solver.reset(5)
    action = solver.act(observation)
    check_feasible(TINY, action, observation.association, who=name)
    _, ablation = registry.resolve(name)
    assert solver.ablation is ablation
    reference = fixed_allocation(TINY, observation.association)
    for block in ablation.fixed:  # an ablated variant holds its blocks at the un-optimised values
        np.testing.assert_array_equal(getattr(action, block), getattr(reference, block))


def test_listing_has_base_names_then_both_ablations_of_each():
    names = available()
    bases = available(ablations=False)
    assert {"equal", "local", "random", "greedy"} <= set(bases)
    assert names == bases + [f"{b}-{a}" for b in bases for a in sorted(ABLATIONS)]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown solver 'nope'; known solvers: .*equal.*greedy-no-cpu") as error:
        make("nope", TINY)
    assert all(name in str(error.value) for name in available())
    with pytest.raises(ValueError, match="unknown solver 'nope-no-cpu'"):
        make("nope-no-cpu", TINY)


def test_make_defaults_to_the_default_scenario_and_forwards_the_seed():
    solver = make("random", seed=7)
    assert solver.scenario == Scenario() and solver.seed == 7


def test_register_rejects_bad_names_classes_and_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Mine(Solver):
        def decide(self, observation):
            return fixed_allocation(self.scenario, observation.association)

    for bad in ["", "x-no-cpu", "x-no-radio", 3]:
        with pytest.raises(ValueError, match="solver name must be a non-empty string without an ablation suffix"):
            register(bad, Mine)
    with pytest.raises(TypeError, match="must be a subclass of dtnopt.Solver"):
        register("not-a-solver", object)
    with pytest.raises(ValueError, match="'equal' is already registered"):
        register("equal", Mine)
    register("mine", Mine)
    assert "mine" in available() and "mine-no-radio" in available()
    assert make("mine-no-radio", TINY).ablation is ABLATIONS["no-radio"]


class Plugin(Solver):
    """A third-party solver."""

    def decide(self, observation):
        return fixed_allocation(self.scenario, observation.association)


def installed_with(monkeypatch, *extra) -> list:
    """An empty registry whose entry points are the installed ones plus ``extra``; returns the
    list of groups the registry asks ``entry_points`` for."""
    groups = []
    installed = list(entry_points(group=registry.ENTRY_POINT_GROUP))
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: groups.append(group) or installed + list(extra))
    return groups


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


def test_built_in_solvers_are_entry_points_loaded_once(monkeypatch):
    groups = installed_with(monkeypatch)
    assert {"equal", "greedy", "bcd", "reference", "a3c", "dqn"} <= set(available(ablations=False))
    make("equal-no-cpu", TINY)
    available()
    assert groups == [registry.ENTRY_POINT_GROUP]


def test_third_party_solvers_are_found_through_entry_points(monkeypatch):
    installed_with(monkeypatch, entry("plugin", f"{__name__}:Plugin"))
    assert "plugin" in available()
    solver = make("plugin-no-cpu", TINY)
    assert type(solver) is Plugin and solver.ablation is ABLATIONS["no-cpu"]
    assert len(run_episode(solver, TINY, seed=0).slots) == TINY.slots


@pytest.mark.parametrize("broken, reason", [("no_such_module:Thing", "ModuleNotFoundError"),
                                            ("numpy:ndarray", "not a subclass of dtnopt.Solver")])
def test_a_broken_entry_point_is_skipped_with_one_warning_naming_it(monkeypatch, capsys, broken, reason):
    from dtnopt.cli import main

    installed_with(monkeypatch, entry("broken", broken))
    with pytest.warns(RuntimeWarning) as caught:
        assert main(["run", "--solver", "equal", "--devices", "3", "--sbs", "1", "--slots", "4", "--json"]) == 0
    assert len(caught) == 1
    assert f"skipped solver entry point broken = {broken}" in str(caught[0].message)
    assert reason in str(caught[0].message)
    assert "broken" not in available() and capsys.readouterr().out.startswith("{")


def test_without_stable_baselines3_the_sb3_solvers_are_skipped_with_one_warning_saying_how_to_install(
        monkeypatch, capsys):
    from dtnopt.cli import main

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # its import now fails
    monkeypatch.delitem(sys.modules, "solvers.sb3", raising=False)
    installed_with(monkeypatch)
    with pytest.warns(RuntimeWarning) as caught:
        assert main(["run", "--solver", "equal", "--devices", "3", "--sbs", "1", "--slots", "4", "--json"]) == 0
    sb3 = [str(w.message) for w in caught if "solvers.sb3" in str(w.message)]
    assert len(sb3) == 1 and "pip install -e '.[sb3]'" in sb3[0]
    assert "sb3-ppo = solvers.sb3:PPOSolver" in sb3[0] and "sb3-sac" in sb3[0] and "sb3-a2c" in sb3[0]
    assert not any(name.startswith("sb3-") for name in available()) and {"equal", "a3c", "bcd"} <= set(available())
    assert capsys.readouterr().out.startswith("{")
    assert main(["solvers"]) == 0 and "equal\t" in capsys.readouterr().out


def test_two_entry_points_claiming_one_name_are_an_error_naming_both(monkeypatch):
    installed_with(monkeypatch, entry("greedy", f"{__name__}:Plugin"))
    with pytest.raises(ValueError, match=rf"solver name 'greedy' is claimed by two entry points: "
                                         rf"solvers.heuristics:GreedySolver and {__name__}:Plugin"):
        available()
    with pytest.raises(ValueError, match="claimed by two entry points"):  # on every use, not once
        make("equal", TINY)


def test_an_entry_point_and_a_class_registered_in_code_claiming_one_name_are_an_error(monkeypatch):
    installed_with(monkeypatch)
    register("equal", Plugin)
    with pytest.raises(ValueError, match=rf"solver name 'equal' is claimed by entry point "
                                         rf"solvers.heuristics:EqualSolver and by {__name__}.Plugin"):
        available()


def test_the_model_layer_imports_no_solver_study_or_benchmark():
    forbidden = {"solvers", "studies", "benchmarks"}
    root = Path(__file__).resolve().parents[1] / "dtnopt"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__"):
                names = [str(node.args[0].value)]
            else:
                continue
            offenders += [f"{path.relative_to(root.parent)}:{node.lineno} {name}" for name in names
                          if name.split(".")[0] in forbidden]
    assert offenders == []


@pytest.mark.parametrize("solver", ["a3c", "dqn"])
@pytest.mark.parametrize("budget, field", [({"episodes": 0}, "episodes"), ({"eval_every": 2.5}, "eval_every"),
                                           ({"eval_seeds": True}, "eval_seeds")])
def test_learned_solvers_reject_a_bad_training_budget_naming_it(solver, budget, field):
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1"):
        make(solver, Scenario(devices=3, sbs=1, slots=5)).fit(**{"episodes": 1, **budget}, progress=False)
