"""``dtnopt.learned.LearnedSolver``, for every built-in learned solver: the checkpoint format
(atomic save, one rule on load, every kind of damage a ``ValueError`` naming the file), the size
check, the evaluation schedule and the non-finite guard; and a minimal third-party subclass that
uses the base as its docstring says."""

import math
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from dtnopt import Environments, Scenario, fixed_allocation, make
from dtnopt import MODEL_VERSION
from dtnopt.learned import CHECKPOINT_FORMAT, CURVE_COLUMNS, LearnedSolver, mlp_parameters

SMALL = Scenario(devices=4, sbs=1, slots=20)
TINY = {"a3c": dict(n_workers=1, envs_per_worker=2, hidden_size=16),
        "dqn": dict(envs=2, learning_starts=64, batch_size=32, hidden=32, target_update_every=20)}
SIZE = {"a3c": "hidden_size", "dqn": "hidden"}


@pytest.fixture(params=["a3c", "dqn"])
def name(request):
    return request.param


@pytest.fixture
def checkpoint(name, tmp_path):
    """(path, solver) of a trained tiny checkpoint."""
    path = tmp_path / f"{name}.pt"
    solver = make(name, SMALL, **TINY[name])
    solver.fit(episodes=2, progress=False, eval_seeds=1, checkpoint=path)
    return path, solver


def rewrite(path, change):
    saved = torch.load(path, weights_only=True)
    change(saved)
    torch.save(saved, path)


def actions_equal(first, second, observation):
    a, b = first.decide(observation), second.decide(observation)
    return all(np.array_equal(getattr(a, block), getattr(b, block)) for block in
               ("bandwidth_share", "power", "local_cpu", "edge_cpu", "edge_departure"))


def test_checkpoint_holds_the_one_format(checkpoint, name):
    path, solver = checkpoint
    saved = torch.load(path, weights_only=True)
    assert list(saved) == ["format", "model", "solver", "ablation", "scenario", "hyperparameters", "seed", "weights",
                           "curve"]
    assert saved["format"] == CHECKPOINT_FORMAT and saved["model"] == MODEL_VERSION
    assert saved["solver"] == name and saved["seed"] == 0
    assert list(saved["curve"]) == list(CURVE_COLUMNS)
    restored = make(name, SMALL).load(path)
    assert restored.config == solver.config
    assert actions_equal(restored, solver, Environments(SMALL, batch=2).reset(3))


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zip_of_something_else(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


DAMAGE = {
    "empty": (lambda path: path.write_bytes(b""), "not a readable checkpoint"),
    "text": (lambda path: path.write_text("weights: none\n"), "not a readable checkpoint"),
    "truncated": (_truncated, "not a readable checkpoint"),
    "zip of something else": (_zip_of_something_else, "not a readable checkpoint"),
    "a pickled class": (lambda path: torch.save({"solver": "x", "payload": zipfile.ZipFile}, path),
                        "not a readable checkpoint"),
    "not a mapping": (lambda path: torch.save([1, 2], path), "not a checkpoint"),
    "missing key": (lambda path: rewrite(path, lambda s: s.pop("weights")), "missing weights"),
    "extra key": (lambda path: rewrite(path, lambda s: s.update(note="x")), "unexpected note"),
    "unknown format": (lambda path: rewrite(path, lambda s: s.update(format=99)), "format 99"),
    "unknown scenario field": (lambda path: rewrite(path, lambda s: s["scenario"].update(gamma=1)),
                               "scenario: unknown gamma"),
    "missing scenario field": (lambda path: rewrite(path, lambda s: s["scenario"].pop("tau")),
                               "scenario: missing tau"),
    "bad scenario value": (lambda path: rewrite(path, lambda s: s["scenario"].update(tau=-1.0)), "tau"),
    "unknown hyper-parameter": (lambda path: rewrite(path, lambda s: s["hyperparameters"].update(gamma=0.9)),
                                "hyper-parameters: unknown gamma"),
    "missing hyper-parameter": (lambda path: rewrite(path, lambda s: s["hyperparameters"].pop("discount")),
                                "hyper-parameters: missing discount"),
    "bad hyper-parameter value": (lambda path: rewrite(path, lambda s: s["hyperparameters"].update(discount=2.0)),
                                  "discount must be"),
    "weights of other sizes": (lambda path: rewrite(path, lambda s: s["hyperparameters"].update(
        {key: 8 for key in ("hidden_size", "hidden") if key in s["hyperparameters"]})),
        "weights do not match the hyper-parameters"),
    "weights not tensors": (lambda path: rewrite(path, lambda s: s.update(weights=[1.0])), "weights must be"),
    "non-finite weights": (lambda path: rewrite(path, lambda s: next(iter(s["weights"].values())).fill_(math.nan)),
                           "non-finite weights"),
    "curve of other columns": (lambda path: rewrite(path, lambda s: s.update(curve={"cost": [1.0]})),
                               "curve must have the columns"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_a_value_error_naming_the_file(checkpoint, name, damage):
    path, _ = checkpoint
    spoil, message = DAMAGE[damage]
    spoil(path)
    solver = make(name, SMALL, seed=5, **TINY[name])
    before = {key: value.clone() for key, value in solver.state_dict().items()}
    with pytest.raises(ValueError, match=message) as error:
        solver.load(path)
    assert str(path) in str(error.value)
    assert solver.config == make(name, SMALL, **TINY[name]).config  # a failed load changes nothing
    for key, value in solver.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("other, message", [
    (lambda name: make("dqn" if name == "a3c" else "a3c", SMALL), "checkpoint of solver"),
    (lambda name: make(f"{name}-no-cpu", SMALL), "ablation 'none'"),
    (lambda name: make(name, SMALL.replace(devices=5)), r"devices \(N\) = 4"),
    (lambda name: make(name, SMALL.replace(sbs=2)), r"sbs \(M\) = 1"),
])
def test_a_checkpoint_of_another_solver_ablation_or_scenario_is_refused(checkpoint, name, other, message):
    path, _ = checkpoint
    with pytest.raises(ValueError, match=message) as error:
        other(name).load(path)
    assert str(path) in str(error.value)


def test_a_checkpoint_of_another_model_version_is_refused(checkpoint, name, monkeypatch):
    import dtnopt.learned

    path, _ = checkpoint
    monkeypatch.setattr(dtnopt.learned, "MODEL_VERSION", dtnopt.learned.MODEL_VERSION + 1)
    with pytest.raises(ValueError, match="trained on model version") as error:
        make(name, SMALL, **TINY[name]).load(path)
    assert str(path) in str(error.value)


def test_a_save_interrupted_midway_keeps_the_previous_checkpoint(checkpoint, name, monkeypatch):
    path, solver = checkpoint
    good = path.read_bytes()

    def killed(state, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        solver.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    make(name, SMALL).load(path)


def test_networks_too_large_to_allocate_are_refused_by_name(name):
    huge = {"a3c": dict(hidden_size=65_536, hidden_layers=64), "dqn": dict(hidden=100_000, hidden_layers=100)}[name]
    with pytest.raises(ValueError, match=f"{SIZE[name]}={huge[SIZE[name]]}.*parameters"):
        make(name, SMALL, **huge)


def test_parameter_estimate_is_the_networks_size(name):
    solver = make(name, SMALL, **TINY[name])
    assert solver.parameter_count(solver.config) == sum(value.numel() for value in solver.state_dict().values())


def test_non_finite_weights_stop_training_and_keep_the_last_good_checkpoint(checkpoint, name):
    path, solver = checkpoint
    with torch.no_grad():
        next(iter(solver.state_dict().values())).view(-1)[0] = math.nan
    with pytest.raises(FloatingPointError, match=f"{name} training produced a non-finite.*last good checkpoint "
                                                 f"is kept at '{path}'"):
        solver.fit(episodes=4, progress=False, checkpoint=path, eval_seeds=1)
    make(name, SMALL).load(path)


@dataclass
class LinearConfig:
    episodes: int = 12  # default budget
    keep_best: bool = True  # end with the best evaluated weights


class LinearSolver(LearnedSolver):
    """A third-party learned solver in a few lines: one linear layer (the fixed allocation decides)."""

    name = "linear-test"
    config_class = LinearConfig

    def __init__(self, scenario, jump=3, **hyperparameters):
        self.jump, self.evaluated = jump, []
        super().__init__(scenario, **hyperparameters)

    def build_networks(self, config):
        self.layer = nn.Linear(1, 1)

    def parameter_count(self, config):
        return mlp_parameters(1, 1, 1, 1) - 2  # a single linear layer: no hidden layer

    def state_dict(self):
        return self.layer.state_dict()

    def load_state_dict(self, weights):
        self.layer.load_state_dict(weights)

    def decide(self, observation):
        return fixed_allocation(self.scenario, observation.association)

    def learn(self, episodes, run):
        done = 0

        def weights():
            self.evaluated.append(done)
            return self.layer.state_dict()

        while done < episodes:
            done += self.jump
            with torch.no_grad():
                self.layer.bias += 1.0
            run.advance(done)
            run.evaluate_due(lambda: (done, done * self.scenario.slots), weights)
        return done, done * self.scenario.slots


def test_every_due_evaluation_point_is_evaluated_once_with_the_count_reached():
    solver = LinearSolver(SMALL, jump=3)
    curve = solver.fit(progress=False, eval_every=2, eval_seeds=1)
    # Due points 2, 4, 6, 8, 10, then the end; 4 and 6 fall within one update (episode 6).
    assert list(curve["episode"]) == [3, 6, 9, 12]
    assert list(curve.columns) == list(CURVE_COLUMNS)
    assert solver.evaluated == [3, 6, 9]


def test_a_third_party_solver_saves_and_loads_through_the_base(tmp_path):
    solver = LinearSolver(SMALL, jump=4)
    solver.fit(progress=False, eval_every=4, eval_seeds=1, checkpoint=tmp_path / "linear.pt")
    restored = LinearSolver(SMALL).load(tmp_path / "linear.pt")
    assert torch.equal(restored.layer.bias, solver.layer.bias)
    assert list(restored.curve["episode"]) == [4, 8, 12]


def test_keep_best_ends_with_the_best_evaluated_weights_for_every_solver(name, tmp_path):
    from dtnopt import run_episode, validation_seeds
    from dtnopt.learned import selection_key

    assert make(name, SMALL).config.keep_best == (name == "a3c")  # dqn ends with its last weights by default
    solver = make(name, SMALL, seed=1, keep_best=True, **TINY[name])
    curve = solver.fit(episodes=8, progress=False, eval_every=2, eval_seeds=1, checkpoint=tmp_path / "best.pt")
    best = min(range(len(curve)), key=lambda k: selection_key(curve.iloc[k]))
    kept = run_episode(solver, SMALL, seed=validation_seeds(1)[0]).kpi["system_cost"]
    assert kept == pytest.approx(curve["system_cost"].iloc[best], rel=1e-9)
    restored = make(name, SMALL).load(tmp_path / "best.pt")
    assert run_episode(restored, SMALL, seed=validation_seeds(1)[0]).kpi["system_cost"] == pytest.approx(kept, rel=1e-9)


def test_a_checkpoint_is_as_readable_as_any_file_the_user_writes(checkpoint, tmp_path):
    path, _ = checkpoint
    plain = tmp_path / "plain"
    plain.write_text("")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
