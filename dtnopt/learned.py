"""The base of learned per-slot solvers (Stable-Baselines3's ``BaseAlgorithm`` in small).

A learned solver decides like any other (``decide``) and can also be trained (``fit``), saved
(``save``) and loaded (``load``). What every learned solver needs around its own training loop
lives here once: the budget checks, the evaluation schedule on ``validation_seeds`` (disjoint from
the studies' test seeds), the learning curve, the choice of the kept weights (``keep_best``), the
progress bar, the guard against non-finite losses or weights, and one checkpoint format, written
atomically and read with ``torch.load(weights_only=True)`` (tensors and plain containers only, so
a checkpoint cannot run code).

Contract of a subclass (a third-party solver, e.g. a Stable-Baselines3 wrapper, follows it too):

- ``config_class``: a dataclass of hyper-parameters, validated at construction, with an
  ``episodes`` field (the default budget) and, optionally, ``keep_best``;
- ``build_networks(config)``: create the networks (called under ``torch.manual_seed(seed)`` at
  construction, and again when a checkpoint is loaded); ``parameter_count(config)``: their size,
  estimated without allocating them (a config above ``MAX_PARAMETERS`` is refused by name);
- ``state_dict()`` / ``load_state_dict(weights)``: the networks' tensors by name (the
  checkpoint's ``weights``), loading strictly (a missing, extra or misshapen tensor raises);
- ``learn(episodes, run)``: the training loop itself. It reports progress with
  ``run.advance(episodes_done)``, lets ``run.evaluate_due(counts, weights)`` evaluate whenever
  an evaluation point is due, raises ``run.non_finite(where)`` on a non-finite loss, and
  returns the (episodes, slots) it did; ``fit`` then evaluates the final weights;
- ``decide(observation)``: the trained policy's action.

The curve has one row per evaluation: ``CURVE_COLUMNS`` (the episode count and environment slots
reached, the wall time, then ``dtnopt.loop.KPI_NAMES`` averaged over the validation episodes).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .config import MODEL_VERSION, Scenario
from .loop import KPI_NAMES, mean_kpis, validation_seeds
from .solver import NO_ABLATION, Ablation, Solver, check_fit_arguments, make_config

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by ``LearnedSolver.save``."""

CHECKPOINT_KEYS = ("format", "model", "solver", "ablation", "scenario", "hyperparameters", "seed", "weights", "curve")

CURVE_COLUMNS = ("episode", "slots", "wall_s", *KPI_NAMES)

MAX_PARAMETERS = 50_000_000
"""Largest network (parameters) a config may ask for: 200 MB of float32 weights, several times
that with gradients and Adam's moments, far beyond the paper's 3 x 128 networks."""

EVALUATIONS_PER_RUN = 10


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mlp_parameters(inputs: int, outputs: int, width: int, layers: int) -> int:
    """Parameters of an MLP with ``layers`` hidden layers of ``width`` units (weights and biases)."""
    return (inputs + 1) * width + (layers - 1) * (width + 1) * width + (width + 1) * outputs


def selection_key(row) -> tuple:
    """Order of evaluated weights for ``keep_best``: all evaluation episodes stable first, then
    the least mean system cost (P2's objective, summed over the episode)."""
    return (row["stable"] < 1.0, row["system_cost"])


class TrainingRun:
    """The evaluation schedule, learning curve and model selection of one ``fit``.

    Evaluation points are the multiples of ``eval_every`` below the budget, then the end. Every
    due point is evaluated with the weights of that moment and recorded with the episode count
    actually reached, so the points do not depend on how fast the training loop polls; a point
    reached at the episode count of the last row (several points passed within one update) is
    that row."""

    def __init__(self, solver: "LearnedSolver", budget: int, eval_every: int, eval_seeds: int, checkpoint, progress):
        self.solver, self.budget, self.eval_every = solver, budget, eval_every
        self.seeds, self.checkpoint = validation_seeds(eval_seeds), checkpoint
        self.next_point, self.rows, self.started = eval_every, [], time.perf_counter()
        self.best_key, self.best_weights = None, None
        self.episodes_done, self.bar = 0, None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=budget, desc=solver.label, unit="episode")

    def advance(self, episodes_done: int, **postfix) -> None:
        """The training loop has done ``episodes_done`` episodes (progress bar)."""
        self.episodes_done = episodes_done
        if self.bar is not None:
            self.bar.update(min(episodes_done, self.budget) - self.bar.n)
            if postfix:
                self.bar.set_postfix(**postfix)

    def evaluate_due(self, counts, weights) -> None:
        """Evaluate at every due point: ``counts()`` gives (episodes, slots) done so far and
        ``weights()`` the networks' current tensors (read anew for each point)."""
        while True:
            episodes, slots = counts()
            if not self.next_point <= episodes < self.budget:
                return
            if not self.rows or self.rows[-1]["episode"] != episodes:
                self.evaluate(episodes, slots, weights())
            self.next_point += self.eval_every

    def evaluate(self, episodes: int, slots: int, weights: dict) -> None:
        """Score ``weights`` on the validation seeds, record a row, keep the best, save."""
        snapshot = {name: value.detach().clone() for name, value in weights.items()}
        if not all(torch.isfinite(value).all() for value in snapshot.values()):
            raise self.non_finite("the weights")
        import pandas as pd

        solver = self.solver
        solver.load_state_dict(snapshot)
        scores = [mean_kpis(solver, scenario, self.seeds) for scenario in solver.validation_scenarios()]
        self.rows.append({"episode": episodes, "slots": slots, "wall_s": time.perf_counter() - self.started,
                          **{name: sum(score[name] for score in scores) / len(scores) for name in KPI_NAMES}})
        solver.curve = pd.DataFrame(self.rows)
        key = selection_key(self.rows[-1])
        if self.best_key is None or key < self.best_key:
            self.best_key, self.best_weights = key, snapshot
        if self.bar is not None:
            self.bar.set_postfix(cost=f"{self.rows[-1]['system_cost']:.0f}")
        if self.checkpoint is not None:
            solver.save(self.checkpoint)

    def non_finite(self, where: str) -> FloatingPointError:
        """The error of a training step or evaluation that met a non-finite loss or weights."""
        kept = (f"at {str(self.checkpoint)!r}" if self.checkpoint is not None and Path(self.checkpoint).is_file()
                else "(none was written yet)")
        return FloatingPointError(
            f"{self.solver.label} training produced a non-finite loss or weights in {where} after "
            f"{self.episodes_done} episodes; the last good checkpoint is kept {kept}; "
            f"try a smaller learning_rate or max_grad_norm")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LearnedSolver(Solver):
    """A per-slot solver with a trained policy: ``fit``, ``save``, ``load`` (module docstring)."""

    learned = True
    config_class: type = None

    def __init__(self, scenario: Scenario, ablation: Ablation = NO_ABLATION, seed: int = 0, **hyperparameters):
        super().__init__(scenario, ablation, seed)
        self.config = self.make_config(hyperparameters)
        torch.manual_seed(seed)
        self.build_networks(self.config)
        self.curve = None

    # --- what a subclass provides ---
    def build_networks(self, config) -> None:
        raise NotImplementedError

    def parameter_count(self, config) -> int:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, weights: dict) -> None:
        raise NotImplementedError

    def learn(self, episodes: int, run: TrainingRun) -> tuple:
        raise NotImplementedError

    @staticmethod
    def size_independent(config) -> bool:
        """Whether networks of ``config`` run at any N and M (a checkpoint then loads at any size)."""
        return False

    def validation_scenarios(self) -> list:
        """Scenarios of the evaluations during ``fit``; a curve row is the mean of their KPIs."""
        return [self.scenario]

    # --- shared ---
    def make_config(self, hyperparameters: dict):
        """The validated hyper-parameters; networks too large to allocate are refused by name."""
        config = make_config(self.config_class, hyperparameters, self.name)
        count = self.parameter_count(config)
        if count > MAX_PARAMETERS:
            sizes = ", ".join(f"{f.name}={getattr(config, f.name)}" for f in fields(config)
                              if f.name.startswith("hidden"))
            raise ValueError(f"{sizes or 'the hyper-parameters'} give networks of about {count:,} parameters, more than {MAX_PARAMETERS:,}; "
                             f"choose smaller hidden sizes or fewer layers")
        return config

    def fit(self, episodes=None, *, checkpoint=None, progress=True, eval_every=None, eval_seeds=3):
        """Train for ``episodes`` environment episodes (default ``config.episodes``), evaluating the
        deterministic policy on ``validation_seeds(eval_seeds)`` every ``eval_every`` episodes
        (default: ten times per run) and at the end, and saving ``checkpoint`` (if given) at
        every evaluation. With ``config.keep_best`` the solver (and ``checkpoint``) end with the
        evaluated weights of least validation system cost among those whose episodes were all
        stable (``selection_key``). Returns the learning curve, also kept as ``self.curve``."""
        budget = self.config.episodes if episodes is None else episodes
        check_fit_arguments(budget, eval_every, eval_seeds)
        eval_every = max(1, budget // EVALUATIONS_PER_RUN) if eval_every is None else eval_every
        run = TrainingRun(self, budget, eval_every, eval_seeds, checkpoint, progress)
        try:
            if not all(torch.isfinite(value).all() for value in self.state_dict().values()):
                raise run.non_finite("the weights it started from")
            counts = self.learn(budget, run)
        finally:
            run.close()
        run.evaluate(*counts, self.state_dict())
        if getattr(self.config, "keep_best", False) and run.best_weights is not None:
            self.load_state_dict(run.best_weights)
            if checkpoint is not None:
                self.save(checkpoint)
        return self.curve

    def save(self, path) -> None:
        """Write the checkpoint through a temporary file in the same folder and ``os.replace``, so
        a run killed during a save leaves the previous checkpoint whole."""
        path = Path(path)
        state = {
            "format": CHECKPOINT_FORMAT, "model": MODEL_VERSION, "solver": self.name, "ablation": self.ablation.name,
            "scenario": self.scenario.to_dict(), "hyperparameters": asdict(self.config), "seed": self.seed,
            "weights": self.state_dict(),
            "curve": None if self.curve is None else self.curve.to_dict(orient="list"),
        }
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; a checkpoint is not
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def load(self, path) -> "LearnedSolver":
        """Load a checkpoint of ``save``. A checkpoint of another model version, solver, ablation
        or scenario (N, M, unless the networks are ``size_independent``), or a damaged one, is a
        ``ValueError`` naming the file and what is wrong; the solver is unchanged then."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):  # the system's own message
            raise
        except Exception as error:  # empty, text, truncated, a zip of something else, a pickled class
            text = str(error).strip().splitlines()[0] if str(error).strip() else ""
            reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
            if text.startswith("Weights only load failed"):
                reason = "it holds objects other than tensors and plain containers (it could run code)"
            raise ValueError(f"{path!s} is not a readable checkpoint: {reason}") from None
        previous = dict(self.__dict__)
        try:
            self._restore(saved, path)
        except BaseException:
            self.__dict__.update(previous)
            raise
        return self

    def _restore(self, saved, path) -> None:
        import pandas as pd

        if not isinstance(saved, dict):
            raise ValueError(f"{path!s} is not a checkpoint (it holds a {type(saved).__name__})")
        missing = [key for key in CHECKPOINT_KEYS if key not in saved]
        extra = sorted(str(key) for key in saved if key not in CHECKPOINT_KEYS)
        if missing or extra:
            raise ValueError(f"{path!s} is not a checkpoint of this format: "
                             + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                         + ([f"unexpected {', '.join(extra)}"] if extra else [])))
        if saved["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"{path!s}: checkpoint format {saved['format']!r}, this version reads {CHECKPOINT_FORMAT}")
        if saved["model"] != MODEL_VERSION:
            raise ValueError(f"{path!s} was trained on model version {saved['model']!r}, this is version "
                             f"{MODEL_VERSION} (dtnopt.MODEL_VERSION): retrain it")
        if saved["solver"] != self.name:
            raise ValueError(f"{path!s} is a checkpoint of solver {saved['solver']!r}, not {self.name!r}")
        if saved["ablation"] != self.ablation.name:
            raise ValueError(f"{path!s} was trained with ablation {saved['ablation'] or 'none'!r}, "
                             f"this solver has {self.ablation.name or 'none'!r}")
        scenario = _fields(saved["scenario"], Scenario, "scenario", path)
        try:
            trained = Scenario(**scenario)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path!s}: scenario: {error}") from None
        hyperparameters = _fields(saved["hyperparameters"], self.config_class, "hyper-parameters", path)
        try:
            config = self.make_config(hyperparameters)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path!s}: {error}") from None
        for name, symbol in (("devices", "N"), ("sbs", "M")):
            if getattr(trained, name) != getattr(self.scenario, name) and not self.size_independent(config):
                raise ValueError(f"{path!s} was trained with {name} ({symbol}) = {getattr(trained, name)}, "
                                 f"this solver's scenario has {getattr(self.scenario, name)}")
        self.config = config
        weights = saved["weights"]
        if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
            raise ValueError(f"{path!s}: weights must be a mapping of names to tensors")
        bad = [name for name, value in weights.items() if not torch.isfinite(value).all()]
        if bad:
            raise ValueError(f"{path!s}: non-finite weights in {', '.join(bad)}")
        self.build_networks(self.config)
        try:
            self.load_state_dict(weights)
        except RuntimeError as error:
            detail = " ".join(str(error).split())
            raise ValueError(f"{path!s}: weights do not match the hyper-parameters: {detail}") from None
        curve = saved["curve"]
        if curve is not None:
            if not isinstance(curve, dict) or list(curve) != list(CURVE_COLUMNS):
                raise ValueError(f"{path!s}: curve must have the columns {', '.join(CURVE_COLUMNS)}")
            try:
                curve = pd.DataFrame(curve)
            except ValueError as error:
                raise ValueError(f"{path!s}: curve: {error}") from None
        self.curve = curve


def _fields(values, dataclass_type, what: str, path) -> dict:
    """``values`` as keyword arguments of ``dataclass_type``: exactly its fields, or a ``ValueError``."""
    if not isinstance(values, dict):
        raise ValueError(f"{path!s}: {what} must be a mapping, got {type(values).__name__}")
    known = [f.name for f in fields(dataclass_type)]
    missing, unknown = [n for n in known if n not in values], sorted(str(n) for n in values if n not in known)
    if missing or unknown:
        raise ValueError(f"{path!s}: {what}: " + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                                       + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    return dict(values)
