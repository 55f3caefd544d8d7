"""Units of work of the studies, their resumable on-disk cache, and the executor.

A ``Run`` is one unit of work: a solver on a scenario for one replicate (optionally with
hyper-parameters). Executing it trains the solver if it is learned (once per solver, scenario,
replicate, hyper-parameters and budget: the checkpoint and learning curve are cached) and scores
it on the ``evaluation_episodes`` held-out episodes of its replicate. Every finished run is written
to the cache as it finishes, through a temporary file and an atomic rename, so an interrupted
study resumes where it stopped and a rerun with the same arguments redoes nothing.

Seeds: replicate ``k`` trains a learned solver with ``seed=k`` (training episodes use seeds below
``HELD_OUT_SEED_BASE``) and scores every solver on the held-out episodes
``HELD_OUT_SEED_BASE + k * EPISODES_MAX + e``, ``e = 0 .. K-1`` (``evaluation_seeds``): all
solvers of replicate ``k`` face the same K episodes (paired), the episodes of two replicates
never coincide, and all stay below ``VALIDATION_SEED_BASE``, the learning curves' episodes.

Cache layout (``root``): ``models/STEM.pt`` (checkpoint), ``models/STEM.json`` (training record
with the learning curve, written last), ``results/STEM.json`` (the KPIs of every evaluation
episode). ``STEM`` names the solver, N, M and replicate and ends in a digest of everything that
defines the run: ``dtnopt.MODEL_VERSION``, the budget (a default budget by its value) and, for
results, the evaluation seeds. A cache file that cannot be read (truncated, empty, not a
checkpoint) is reported by name on stderr and redone, never read as data; temporary files of
runs whose process is gone are removed when a study starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from dtnopt.config import MODEL_VERSION, Scenario
from dtnopt.loop import HELD_OUT_SEED_BASE, KPI_NAMES, VALIDATION_SEED_BASE, mean_kpis, run_episode, validation_seeds
from dtnopt.registry import make, resolve

EPISODES_MAX = 1000
"""Most evaluation episodes per replicate: replicate ``k`` owns the held-out seeds
``HELD_OUT_SEED_BASE + k * EPISODES_MAX + [0, EPISODES_MAX)``."""

REPLICATES_MAX = (VALIDATION_SEED_BASE - HELD_OUT_SEED_BASE) // EPISODES_MAX
"""Most replicates: their evaluation seeds stay below the validation seeds."""


def evaluation_seeds(replicate: int, count: int) -> list:
    """The held-out episode seeds of ``replicate``: ``count`` of them, the same for every solver."""
    if not 0 <= replicate < REPLICATES_MAX or not 1 <= count <= EPISODES_MAX:
        raise ValueError(f"replicate must be in [0, {REPLICATES_MAX}) and count in [1, {EPISODES_MAX}], "
                         f"got {replicate}, {count}")
    return [HELD_OUT_SEED_BASE + replicate * EPISODES_MAX + episode for episode in range(count)]


@lru_cache(maxsize=None)
def default_episodes(solver: str, scenario: Scenario, hyper: tuple) -> int | None:
    """The training budget a learned solver uses when given none (its ``config.episodes``)."""
    config = getattr(make(solver, scenario, **dict(hyper)), "config", None)
    return getattr(config, "episodes", None)


@dataclass(frozen=True)
class Run:
    """One unit of work: ``solver`` on ``scenario`` for replicate ``seed``."""

    solver: str  # registered name, ablation suffix included
    scenario: Scenario
    seed: int  # replicate: training seed of a learned solver, evaluation episode offset
    hyper: tuple = ()  # (name, value) pairs given to the solver's constructor
    episodes: int | None = None  # training budget of a learned solver (None: its default)
    eval_every: int | None = None  # learning-curve evaluation period, episodes
    eval_seeds: int = 3  # validation episodes per learning-curve point
    labels: tuple = ()  # extra (column, value) pairs of the long-form table, e.g. the swept rate
    reference_seeds: int = 0  # non-learned runs of curve studies: also scored on this many validation episodes
    evaluation_episodes: int = 1  # K, held-out episodes the final solver is scored on
    training_scenario: Scenario | None = None  # a learned solver trained elsewhere than it is scored (None: the same)
    decision_p95: bool = False  # also record each evaluation episode's 95th-percentile decision time

    @property
    def trained_on(self) -> Scenario:
        """The scenario a learned solver is trained on: one model serves every scenario it is
        scored on (e.g. trained on a perfect digital twin, scored on deviated ones)."""
        return self.training_scenario or self.scenario

    @property
    def learned(self) -> bool:
        return bool(resolve(self.solver)[0].learned)

    @property
    def evaluation_seeds(self) -> list:
        return evaluation_seeds(self.seed, self.evaluation_episodes)

    @property
    def budget(self) -> int | None:
        """Training episodes of a learned run, the solver's default resolved to its value."""
        if not self.learned:
            return None
        return self.episodes if self.episodes is not None else default_episodes(self.solver, self.scenario, self.hyper)

    def training_key(self) -> dict:
        """Everything that defines a trained model (and its learning curve), the model version
        included: a run of another model is never reused."""
        key = {"model": MODEL_VERSION, "solver": self.solver, "scenario": self.trained_on.to_dict(), "seed": self.seed,
               "hyper": [list(pair) for pair in self.hyper]}
        if self.learned:
            key.update(episodes=self.episodes, eval_every=self.eval_every, eval_seeds=self.eval_seeds)
            if self.episodes is None:  # a changed default is another budget
                key.update(default_episodes=self.budget)
        elif self.reference_seeds:
            key.update(reference_seeds=self.reference_seeds)
        return key

    def result_key(self) -> dict:
        """The training key, the evaluation seeds and, only where set, the scenario scored on
        (when training elsewhere) and the p95 record: runs without them keep their keys."""
        key = {**self.training_key(), "evaluation_seeds": self.evaluation_seeds}
        if self.training_scenario is not None:
            key["evaluation_scenario"] = self.scenario.to_dict()
        if self.decision_p95:
            key["decision_p95"] = True
        return key

    def stem(self, key: dict, scenario: Scenario | None = None) -> str:
        """File name of ``key``'s artefact, with N and M of ``scenario`` (default: the run's)."""
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        scenario = scenario or self.scenario
        return f"{self.solver}_N{scenario.devices}_M{scenario.sbs}_s{self.seed}_{digest}"

    def describe(self) -> dict:
        training = {"episodes": self.budget} if self.learned else {}
        if self.training_scenario is not None:
            training["training_scenario"] = self.training_scenario.to_dict()
        return {"solver": self.solver, "devices": self.scenario.devices, "sbs": self.scenario.sbs,
                "seed": self.seed, **dict(self.hyper), **training, "evaluation_episodes": self.evaluation_episodes}


@dataclass
class RunCache:
    """Paths of the cached artefacts of runs under ``root``."""

    root: Path

    def __post_init__(self):
        self.root = Path(self.root)

    def model(self, run: Run) -> Path:
        return self.root / "models" / f"{run.stem(run.training_key(), run.trained_on)}.pt"

    def training(self, run: Run) -> Path:
        return self.model(run).with_suffix(".json")

    def result(self, run: Run) -> Path:
        return self.root / "results" / f"{run.stem(run.result_key())}.json"

    def finished(self, run: Run) -> bool:
        return self.result(run).is_file()

    def read_result(self, run: Run) -> dict:
        result = read_json(self.result(run))
        episodes = result.get("evaluations")
        if (not isinstance(episodes, list) or [e.get("seed") if isinstance(e, dict) else None for e in episodes]
                != run.evaluation_seeds
                or any(not isinstance(e.get("kpi"), dict) or set(e["kpi"]) != set(KPI_NAMES) for e in episodes)):
            raise DamagedEntry(self.result(run), "no KPIs of its evaluation episodes")
        return result

    def read_training(self, run: Run) -> dict:
        record = read_json(self.training(run))
        if not isinstance(record.get("curve"), list):
            raise DamagedEntry(self.training(run), "no learning curve")
        return record

    def read_curve(self, run: Run):
        """The learning curve of a trained run, from its training record (None if it has none)."""
        import pandas as pd

        rows = self.read_training(run)["curve"]
        return pd.DataFrame(rows) if rows else None

    def discard(self, damage: "DamagedEntry") -> None:
        """Remove a damaged file; a checkpoint and its training record go together."""
        paths = {damage.path}
        if damage.path.parent.name == "models":
            paths |= {damage.path.with_suffix(".pt"), damage.path.with_suffix(".json")}
        for path in paths:
            path.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove the temporary files (``.NAME.PID.partial`` / ``.tmp``) of processes that are gone."""
        removed = 0
        for path in self.root.glob("*/.*.*"):
            match = re.fullmatch(r"\..+\.(\d+)\.(partial|tmp)", path.name)
            if match and not _alive(int(match.group(1))):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class DamagedEntry(Exception):
    """A cache file that cannot be read as what it should be."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"damaged cache entry {path} ({reason})")
        self.path = Path(path)


def read_json(path: Path) -> dict:
    """A cache record; a file that is not a JSON object raises ``DamagedEntry`` naming it."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DamagedEntry(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(value, dict):
        raise DamagedEntry(path, "not a JSON object")
    return value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomically(path: Path, write) -> None:
    """``write(temporary_path)``, then rename onto ``path`` (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_json(path: Path, payload) -> None:
    write_atomically(path, lambda p: p.write_text(json.dumps(payload, indent=1, default=_plain)))


def _plain(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _finite(value):
    if value is None or isinstance(value, bool):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def train(run: Run, cache: RunCache, progress: bool):
    """The trained solver of ``run``: from the cache, or trained now and cached."""
    solver = make(run.solver, run.trained_on, seed=run.seed, **dict(run.hyper))
    record = cache.training(run)
    if record.is_file():
        info = cache.read_training(run)
        if info.get("error"):
            return None, info
        try:
            return solver.load(cache.model(run)), info
        except Exception as error:  # whatever a damaged file makes the solver's loader raise
            raise DamagedEntry(cache.model(run), f"{type(error).__name__}: {error}") from None
    model = cache.model(run)
    model.parent.mkdir(parents=True, exist_ok=True)
    partial = model.with_name(f".{model.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    try:
        curve = solver.fit(run.episodes, checkpoint=str(partial), progress=progress,
                           eval_every=run.eval_every, eval_seeds=run.eval_seeds)
        training_s = time.perf_counter() - started
        solver.save(str(partial))
        os.replace(partial, model)
    except ArithmeticError as error:  # training diverged (non-finite loss): an outcome, not a crash
        info = {"run": run.describe(), "key": run.training_key(), "training_s": time.perf_counter() - started,
                "episodes": run.budget, "error": f"{type(error).__name__}: {error}", "curve": []}
        write_json(record, info)
        return None, info
    finally:
        if partial.exists():
            partial.unlink()
    rows = [] if curve is None else [{name: _finite(value) for name, value in point.items()}
                                     for point in curve.to_dict("records")]
    episodes = run.budget
    if episodes is None and rows:  # a solver without a stated default: what its curve reached
        episodes = int(max(point["episode"] for point in rows))
    info = {"run": run.describe(), "key": run.training_key(), "training_s": training_s, "episodes": episodes,
            "curve": rows}
    write_json(record, info)
    return solver, info


def execute(run: Run, root: str, progress: bool = False) -> dict:
    """Do ``run`` unless its result is cached; return its result record. A damaged cache file
    on the way is reported on stderr, removed and redone."""
    cache = RunCache(Path(root))
    while True:
        try:
            return _execute(run, cache, progress)
        except DamagedEntry as damage:
            print(f"studies: {damage}; redoing it", file=sys.stderr)
            cache.discard(damage)


def _execute(run: Run, cache: RunCache, progress: bool) -> dict:
    if cache.finished(run):
        return cache.read_result(run)
    if run.learned:
        solver, training = train(run, cache, progress)
    else:
        solver, training = make(run.solver, run.scenario, seed=run.seed, **dict(run.hyper)), {}
    evaluations = []
    for seed in run.evaluation_seeds:
        episode = None if solver is None else run_episode(solver, run.scenario, seed=seed)
        kpi = {} if episode is None else episode.kpi
        evaluations.append({"seed": seed, "kpi": {name: _finite(kpi.get(name)) for name in KPI_NAMES}})
        if run.decision_p95:
            p95 = None if episode is None else float(np.percentile(episode.slots["decision_ms"], 95))
            evaluations[-1]["extra"] = {"decision_p95_ms": _finite(p95)}
    result = {
        "run": run.describe(),
        "key": run.result_key(),
        "evaluations": evaluations,
        "training_s": training.get("training_s"),
        "episodes": training.get("episodes"),
    }
    if run.learned:
        result["error"] = training.get("error")
    elif run.reference_seeds:
        # The level of a reference on the episodes learning curves are scored on (validation).
        levels = mean_kpis(solver, run.scenario, validation_seeds(run.reference_seeds))
        result["validation"] = {name: _finite(value) for name, value in levels.items()}
    write_json(cache.result(run), result)
    return result


def _single_threaded_torch() -> None:
    """One torch thread in every process that runs studies. The policies are small MLPs: on a
    loaded 2-core machine intra-op threads spin against other processes and were measured to
    make a 20-device a3c decision 60 ms instead of 0.3 ms (an episode 12 s instead of 0.3 s);
    parallelism comes from ``--jobs`` and from the trainers' own worker processes."""
    import torch

    torch.set_num_threads(1)


@dataclass
class Progress:
    """What an execution did: runs done now and runs found in the cache."""

    executed: int = 0
    cached: int = 0
    results: dict = field(default_factory=dict)


EXECUTORS = ("local", "ray")
"""Where a study's runs execute: ``local`` processes (``jobs`` at once) or Ray tasks
(``ray``, a local Ray or a cluster), both writing the same run cache."""


def cpus_of(run: Run) -> int:
    """CPUs a run keeps busy: a learned solver's own worker processes (``config.workers``, e.g.
    a3c's one per core), else one. Ray schedules a run's task with that many CPUs."""
    if not run.learned:
        return 1
    config = getattr(make(run.solver, run.scenario, seed=run.seed, **dict(run.hyper)), "config", None)
    return max(1, int(getattr(config, "workers", 1) or 1))


def _execute_task(run: Run, root: str) -> dict:
    """``execute`` in a Ray worker process (one torch thread, as in the local processes)."""
    _single_threaded_torch()
    return execute(run, root)


def _execute_on_ray(pending: list, root: Path, address: str | None, report: "Progress", bar) -> None:
    """Each pending run as a Ray task declaring ``cpus_of(run)`` CPUs; results as they finish.
    Connects to the cluster at ``address`` (``auto``, ``HOST:PORT``) or starts a local Ray."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        task = ray.remote(_execute_task)
        waiting = {task.options(num_cpus=cpus_of(run)).remote(run, str(root)): run for run in pending}
        remaining = list(waiting)
        while remaining:
            (finished,), remaining = ray.wait(remaining, num_returns=1)
            report.results[waiting[finished]] = ray.get(finished)
            report.executed += 1
            bar.update()
    finally:
        if started_here:
            ray.shutdown()


def waves(pending: list, cache: RunCache) -> list:
    """``pending`` in two waves for parallel execution: the first run of every model, then the
    runs that score a model another run trains (a size-independent policy at every N, a policy
    trained on a perfect twin scored on deviated ones), so no model is trained twice at once."""
    first, later, models = [], [], set()
    for run in pending:
        model = cache.model(run) if run.learned else None
        (later if model is not None and model in models else first).append(run)
        models.add(model)
    return [wave for wave in (first, later) if wave]


def execute_all(runs: list, root: Path, jobs: int = 1, label: str = "runs", executor: str = "local",
                address: str | None = None) -> Progress:
    """Execute every run (cached ones are skipped), with a progress bar over runs: ``jobs``
    local processes at once, or as Ray tasks (``executor="ray"``, on the cluster at ``address``).
    Learned runs go first: they are the long ones."""
    from tqdm import tqdm

    _single_threaded_torch()
    cache = RunCache(root)
    if cache.sweep():
        print(f"studies: removed temporary files of stopped runs from {cache.root}", file=sys.stderr)
    unique = list(dict.fromkeys(runs))
    report = Progress()
    pending = []
    for run in unique:
        try:
            report.results[run] = cache.read_result(run) if cache.finished(run) else None
        except DamagedEntry as damage:
            print(f"studies: {damage}; redoing it", file=sys.stderr)
            cache.discard(damage)
            report.results[run] = None
        if report.results[run] is None:
            pending.append(run)
        else:
            report.cached += 1
    pending.sort(key=lambda run: not run.learned)
    bar = tqdm(total=len(unique), initial=report.cached, desc=label, unit="run", dynamic_ncols=True)
    try:
        if executor == "local" and (jobs == 1 or len(pending) <= 1):
            for run in pending:
                bar.set_postfix_str(f"{run.solver} N={run.scenario.devices} M={run.scenario.sbs} seed={run.seed}")
                report.results[run] = execute(run, str(root), progress=sys.stderr.isatty())
                report.executed += 1
                bar.update()
        else:
            for wave in waves(pending, cache):
                if executor == "ray":
                    _execute_on_ray(wave, root, address, report, bar)
                    continue
                context = multiprocessing.get_context("fork")
                with ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                         initializer=_single_threaded_torch) as pool:
                    futures = {pool.submit(execute, run, str(root)): run for run in wave}
                    for future in as_completed(futures):
                        report.results[futures[future]] = future.result()
                        report.executed += 1
                        bar.update()
    finally:
        bar.close()
    return report


def long_table(study: str, runs: list, root: Path, label_columns: tuple = ()) -> "pandas.DataFrame":  # noqa: F821
    """The long-form table of finished runs: one row per solver x replicate x evaluation episode x
    setting x metric.

    Columns: ``study, solver, seed, devices, sbs, *label_columns, phase, episode,
    evaluation_seed, metric, value``. ``seed`` is the replicate. ``phase`` is ``eval`` for the
    held-out episodes of the final (trained) solver, one row per episode, its seed in
    ``evaluation_seed`` and, for a learned solver, its training budget in ``episode``; ``train``
    for the points of a learning curve (mean over its validation episodes) at training
    ``episode``; ``validation`` for a non-learned reference scored on those same validation
    episodes (``Run.reference_seeds``), the level its curve-figure line is drawn at.
    Metrics: ``dtnopt.loop.KPI_NAMES`` (``stable`` as 0/1), ``decision_p95_ms`` for runs that
    record it (``Run.decision_p95``), plus, for learned solvers, the
    properties of the trained model repeated on each of its evaluation episodes: ``training_s``
    and ``training_failed`` (1 when training diverged; its KPIs are then empty)."""
    import pandas as pd

    cache = RunCache(root)
    rows = []
    for run in dict.fromkeys(runs):
        base = {"study": study, "solver": run.solver, "seed": run.seed, "devices": run.scenario.devices,
                "sbs": run.scenario.sbs, **{column: dict(run.labels).get(column) for column in label_columns}}
        result = cache.read_result(run)
        for evaluation in result["evaluations"]:
            metrics = {**evaluation["kpi"], **evaluation.get("extra", {})}
            if run.learned:
                metrics["training_s"] = result.get("training_s")
                metrics["training_failed"] = float(bool(result.get("error")))
            for metric, value in metrics.items():
                rows.append({**base, "phase": "eval", "episode": result.get("episodes"),
                             "evaluation_seed": evaluation["seed"], "metric": metric, "value": _number(value)})
        for metric, value in (result.get("validation") or {}).items():
            rows.append({**base, "phase": "validation", "episode": None, "evaluation_seed": None, "metric": metric,
                         "value": _number(value)})
        curve = cache.read_curve(run) if run.learned else None
        if curve is not None:
            for point in curve.to_dict("records"):
                for metric in KPI_NAMES:
                    if metric in point:
                        rows.append({**base, "phase": "train", "episode": point["episode"], "evaluation_seed": None,
                                     "metric": metric, "value": _number(point[metric])})
    columns = ["study", "solver", "seed", "devices", "sbs", *label_columns, "phase", "episode", "evaluation_seed",
               "metric", "value"]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("episode", "evaluation_seed"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def _number(value) -> float:
    if value is None:
        return float("nan")
    return float(value)
