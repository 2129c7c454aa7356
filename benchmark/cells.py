"""A cell and its execution: plain data in, a `Record` out, nothing else touched.

A cell is (metric id, task, scale, seeds, device, results root). `execute` resolves the metric once and the task by
name from the registries, fetches the built artifacts the task declares from the store under the results root,
runs every seed and returns the record. It writes nothing, shows nothing and keeps no global state, so it runs the
same in this process, in a worker process or on another machine (`Cell.to_dict` / `Cell.from_dict`); the driver
(`runner.run`) alone writes records.

A seed that raises `NotApplicable` makes the cell skipped, with the reason; any other exception makes it an error
(type, message, cause, seed, traceback); Ctrl-C propagates.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, ContextManager, Hashable, Mapping

import torch

from simstress.core.artifacts import Artifact, ArtifactStore
from simstress.core.files import EnvironmentFault, jsonable
from simstress.core.inputs import InputError
from simstress.core.metric import get_metric
from simstress.core.provenance import device_name, git_commit, package_versions
from simstress.core.record import ArtifactUse, Cause, CellError, Record, SeedRun, TaskInfo
from simstress.core.task import NotApplicable, Setup, Task, TaskResult, get_task

from .records import curve_to_json


@dataclass(frozen=True)
class Cell:
    """One unit of work: a metric id on a task at one scale, for the given seeds, on a device."""

    metric: str
    task: str
    scale: str
    seeds: tuple[int, ...]
    device: str
    results: str  # results root: where the artifacts the task needs are stored

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        return cls(**{**data, "seeds": tuple(data["seeds"])})


class SetupCache:
    """Set-ups of the task being worked on, kept so consecutive cells of one task build each seed once.

    Owned by an executor, never global: switching to another task drops the previous task's set-ups.
    """

    def __init__(self) -> None:
        self._task: str | None = None
        self._setups: dict[Hashable, Setup] = {}

    def get(self, task: Task, scale: str, seed: int, device: str, artifacts: Mapping[str, Artifact]) -> Setup:
        if task.name != self._task:
            self._task, self._setups = task.name, {}
        key = (task.version, scale, seed, device, tuple(sorted((n, a.sha256) for n, a in artifacts.items())))
        if key not in self._setups:
            self._setups[key] = task.setup(scale, seed, device, artifacts)
        return self._setups[key]


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def seed_run(seed: int, result: TaskResult, runtime_s: float) -> SeedRun:
    """One seed's outcome, validated: the score must be a finite number in [0, 1]."""
    score = float(result.score)
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise ValueError(f"the task returned score {score!r}; task scores must lie in [0, 1]")
    return SeedRun(seed, score, runtime_s, curve_to_json(result.curve), jsonable(dict(result.details or {})))


def built_artifacts(task: Task, scale: str, seeds: tuple[int, ...], store: ArtifactStore, metric: str,
                    ) -> dict[int, dict[str, Artifact]]:
    """The built artifacts each seed of `metric`'s cell uses, by name; `ArtifactError` when one is not built."""
    if scale not in task.scales:
        return {}
    return {seed: {name: store.get(spec) for name, spec in task.cell_artifacts(scale, seed, metric).items()}
            for seed in seeds}


def artifact_uses(built: Mapping[int, Mapping[str, Artifact]]) -> list[ArtifactUse]:
    """What a record names of the artifacts it used: seed, name, kind, key, content sha256 and fingerprint each."""
    return [ArtifactUse(seed, name, a.spec.kind, a.spec.key, a.sha256, a.card.get("fingerprint"))
            for seed, by_name in built.items() for name, a in sorted(by_name.items())]


def empty_record(cell: Cell, metric_version: int, task: Task) -> Record:
    """The record of a cell before any seed ran: identity, versions and provenance."""
    return Record(
        metric=cell.metric, metric_version=metric_version, task=task.name, task_version=task.version,
        task_info=TaskInfo(task.category, task.summary, task.sweep_name, bool(task.log_x)), scale=cell.scale,
        seeds=tuple(cell.seeds), device=cell.device, device_name=device_name(cell.device),
        packages=package_versions(), git_commit=git_commit(),
    )


def cause_of(exc: BaseException) -> Cause:
    """A refusal when the metric refused its input (`InputError`); the environment's fault when data or artifacts
    are missing or corrupt (`EnvironmentFault`); otherwise the metric's or the task's failure."""
    if isinstance(exc, InputError):
        return Cause.REFUSAL
    return Cause.ENVIRONMENT if isinstance(exc, EnvironmentFault) else Cause.FAILURE


def execute(cell: Cell | Mapping[str, Any], setups: SetupCache | None = None,
            working: Callable[[], ContextManager[Any]] = nullcontext) -> Record:
    """Run one cell and return its record (nothing is raised but Ctrl-C); `setups` may be shared across cells.
    Each seed's evaluation, the metric's own work, runs inside `working()` (where a time limit is spent)."""
    cell = cell if isinstance(cell, Cell) else Cell.from_dict(cell)
    setups = setups or SetupCache()
    metric = get_metric(cell.metric)
    task = get_task(cell.task)
    store = ArtifactStore(cell.results)
    record = empty_record(cell, metric.spec.version, task)
    seed = None
    runs = []
    try:
        if cell.scale not in task.scales:
            raise NotApplicable(f"task {task.name!r} has no {cell.scale!r} scale (it has {', '.join(task.scales)})")
        built = built_artifacts(task, cell.scale, cell.seeds, store, metric.id)
        record = replace(record, artifacts=tuple(artifact_uses(built)))
        for seed in cell.seeds:
            setup = setups.get(task, cell.scale, seed, cell.device, built[seed])
            start = time.perf_counter()  # the metric's work on the task, not the set-up shared by every metric
            with working():
                result = task.evaluate(metric, setup)
                _synchronize(cell.device)
            runs.append(seed_run(seed, result, time.perf_counter() - start))
    except NotApplicable as exc:
        return record.skipped(str(exc) or type(exc).__name__)
    except Exception as exc:  # a failing cell is data, not a reason to stop the run
        return record.failed(CellError.from_exception(exc, cause_of(exc), seed))
    return replace(record, runs=tuple(runs))
