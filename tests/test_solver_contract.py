"""The solver contract of docs/solvers.md, as a test a plug-in author can copy.

Parametrised over every registered solver (a plug-in sets ``SOLVERS`` to its own names). Every
solver decides feasible, finite actions of the right shapes on a batch of observations, and is
reproducible: after ``reset(seed)`` the same observations give the same actions. A learned one
also trains for a tiny budget (a learning curve of ``CURVE_COLUMNS``), saves a checkpoint that
loads with ``torch.load(weights_only=True)``, and loads it to the same actions; a checkpoint for
another number of devices is refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtnopt import Environments, Scenario, available, check_feasible, fixed_allocation, is_feasible, make
from dtnopt.learned import CURVE_COLUMNS
from dtnopt.registry import resolve

# every solver of the package and of installed plug-ins, not those other test modules register for their own use;
# a plug-in: SOLVERS = ["my-solver"]
SOLVERS = [name for name in available(ablations=False)
           if not resolve(name)[0].__module__.rpartition(".")[2].startswith("test_")]
LEARNED = [name for name in SOLVERS if resolve(name)[0].learned]
SCENARIO = Scenario(devices=4, sbs=2, slots=6)
BLOCKS = ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure")

TINY_FIT = {  # hyper-parameters that make one tiny fit quick; others train with their defaults
    "a3c": {"n_workers": 1, "envs_per_worker": 2, "hidden_size": 16},
    "a3c-any": {"n_workers": 1, "envs_per_worker": 2, "hidden_size": 16, "devices_range": "3:5", "sbs_range": "1:2"},
    "dqn": {"envs": 2, "hidden": 16, "learning_starts": 4, "batch_size": 8},
    "sb3-ppo": {"envs": 2, "n_steps": 4, "batch_size": 8, "hidden": 16},
    "sb3-a2c": {"envs": 2, "n_steps": 4, "hidden": 16},
    "sb3-sac": {"envs": 2, "learning_starts": 4, "batch_size": 8, "hidden": 16},
}


def observations(count: int = 3, batch: int = 2, seed: int = 11) -> list:
    """A few consecutive observations of a batch, the network driven by the equal allocation."""
    environments = Environments(SCENARIO, batch)
    seen = [environments.reset(seed)]
    for _ in range(count - 1):
        environments.step(fixed_allocation(SCENARIO, seen[-1].association))
        seen.append(environments.observation)
    return seen


def decisions(solver, seed: int = 5) -> list:
    solver.reset(seed)
    return [solver.act(observation) for observation in observations()]


def assert_same_actions(first: list, second: list) -> None:
    for one, other in zip(first, second):
        for block in BLOCKS:
            np.testing.assert_array_equal(getattr(one, block), getattr(other, block), err_msg=block)


@pytest.mark.parametrize("name", SOLVERS)
def test_decides_feasible_finite_actions_of_the_right_shapes(name):
    solver = make(name, SCENARIO)
    solver.reset(0)
    for observation in observations():
        action = solver.act(observation)
        check_feasible(SCENARIO, action, observation.association, who=name)  # (14a)-(14e)
        batch, devices, stations = observation.batch, SCENARIO.devices, SCENARIO.stations
        for block in BLOCKS:
            values = getattr(action, block)
            assert values.shape == ((batch, stations) if block == "edge_departure" else (batch, devices)), block
            assert np.isfinite(values).all(), block


@pytest.mark.parametrize("name", SOLVERS)
def test_is_reproducible_after_reset(name):
    solver = make(name, SCENARIO, seed=3)
    first = decisions(solver)
    assert_same_actions(decisions(solver), first)  # the same solver, reset again
    assert_same_actions(decisions(make(name, SCENARIO, seed=3)), first)  # a twin built with the same seed


@pytest.mark.parametrize("name", SOLVERS)
def test_describes_itself(name):
    cls, _ = resolve(name)
    assert (cls.__doc__ or "").strip(), "the first paragraph of the docstring is what `python -m dtnopt solvers` shows"
    assert make(name, SCENARIO).label == name


@pytest.mark.parametrize("name", [name for name in SOLVERS if name not in LEARNED])
def test_a_solver_without_a_model_says_so(name):
    solver = make(name, SCENARIO)
    for call in (solver.fit, lambda: solver.save("x.pt"), lambda: solver.load("x.pt")):
        with pytest.raises(NotImplementedError):
            call()


@pytest.mark.parametrize("name", LEARNED)
def test_a_learned_solver_fits_saves_and_loads_to_the_same_actions(name, tmp_path):
    solver = make(name, SCENARIO, seed=1, **TINY_FIT.get(name, {}))
    curve = solver.fit(episodes=2, eval_every=1, eval_seeds=1, progress=False)
    assert list(curve.columns) == list(CURVE_COLUMNS) and len(curve) >= 1
    assert curve["episode"].is_monotonic_increasing and np.isfinite(curve["system_cost"]).all()
    path = tmp_path / f"{name}.pt"
    solver.save(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)  # a checkpoint cannot run code
    assert all(isinstance(value, torch.Tensor) for value in saved["weights"].values())
    loaded = make(name, SCENARIO).load(path)
    assert_same_actions(decisions(loaded), decisions(solver))
    elsewhere = SCENARIO.replace(devices=5)
    if solver.size_independent(solver.config):  # runs at any size, feasibly
        observation = Environments(elsewhere, batch=2).reset(3)
        assert is_feasible(elsewhere, make(name, elsewhere).load(path).act(observation), observation.association)
    else:
        with pytest.raises(ValueError, match=r"devices \(N\)"):
            make(name, elsewhere).load(path)
