"""The runner: the metric × task × seed grid of one scale, computed where a record is missing or stale.

A cell is (metric id, task, scale, seed); one record holds all seeds of a (metric id, task, scale) triple. Cells
run task by task (so a task's in-memory caches serve every metric), each seed timed on its own. A cell whose
task raises `tasks.NotApplicable` is recorded as skipped with the reason; any other exception is recorded as an
error (type, message, traceback) and the run goes on. Ctrl-C stops after saving every finished record; the next
run resumes from there. Before the cells, each selected metric's conformance report is refreshed in
`results/conformance/` so the leaderboard can render from files alone.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import torch
from tqdm import tqdm

import metrics
import tasks
from metrics.conformance import check_metric
from metrics.registry import UnknownNameError

from .environment import device_name, git_commit, package_versions
from .records import SCHEMA, RecordError, ResultStore, curve_to_json, is_current, jsonable

_GLOB = set("*?")


class TaskLike(Protocol):
    """What the runner needs of a task (see `tasks`): identity, scales and `evaluate`."""

    name: str
    category: str
    version: int
    scales: tuple[str, ...]
    summary: str
    sweep_name: str
    log_x: bool

    def evaluate(self, metric_id: str, *, scale: str, seed: int, device: str | None = None) -> Any: ...


def select_metrics(pattern: str = "*") -> list[str]:
    """Metric ids for comma-separated parts, each an exact id (any parameters, canonicalised) or a glob.

    An exact id is tried first because ids contain brackets, which fnmatch would read as a character class.
    """
    chosen: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        try:
            found = [metrics.get_metric(part).id]
        except (LookupError, ValueError):
            if not _GLOB & set(part):
                raise
            found = metrics.list_metrics(part)
            if not found:
                raise UnknownNameError(f"no metric matches {part!r}; `simstress list metrics` shows them")
        chosen += [m for m in found if m not in chosen]
    return chosen


def select_tasks(pattern: str = "*") -> list[TaskLike]:
    """Task objects for comma-separated names or globs, in the registry's order."""
    names: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        found = tasks.list_tasks(part) if _GLOB & set(part) else [tasks.get_task(part).name]
        if not found:
            raise UnknownNameError(f"no task matches {part!r}; `simstress list tasks` shows them")
        names += [n for n in found if n not in names]
    return [tasks.get_task(n) for n in names]


def _exception_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def seed_entry(seed: int, result: Any, runtime_s: float) -> dict[str, Any]:
    """One seed's outcome, validated: the score must be a finite number in [0, 1]."""
    score = float(result.score)
    if not 0.0 <= score <= 1.0:  # also refuses NaN
        raise ValueError(f"the task returned score {score!r}; task scores must lie in [0, 1]")
    return {
        "seed": seed,
        "score": score,
        "runtime_s": runtime_s,
        "curve": curve_to_json(result.curve),
        "details": jsonable(dict(result.details or {})),
    }


def run_cell(task: TaskLike, metric_id: str, metric_version: int, scale: str, seeds: list[int], device: str,
             on_seed: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Evaluate one metric on one task for every seed and return the record (nothing is raised but Ctrl-C)."""
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "metric": metric_id,
        "metric_version": metric_version,
        "task": task.name,
        "task_version": task.version,
        "task_info": {"category": task.category, "summary": task.summary, "sweep_name": task.sweep_name,
                      "log_x": bool(task.log_x)},
        "scale": scale,
        "seeds": list(seeds),
        "device": device,
        "device_name": device_name(device),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "status": "ok",
        "score": None,
        "seed_scores": None,
        "reason": None,
        "error": None,
        "runs": [],
    }
    seed = None
    try:
        if scale not in task.scales:
            raise tasks.NotApplicable(f"task {task.name!r} has no {scale!r} scale (it has {', '.join(task.scales)})")
        for seed in seeds:
            start = time.perf_counter()
            result = task.evaluate(metric_id, scale=scale, seed=seed, device=device)
            _synchronize(device)
            record["runs"].append(seed_entry(seed, result, time.perf_counter() - start))
            on_seed()
    except tasks.NotApplicable as exc:
        record.update(status="skipped", reason=str(exc) or type(exc).__name__, runs=[])
    except Exception as exc:  # a failing cell is data, not a reason to stop the run
        record.update(status="error", error={
            "type": _exception_type(exc),
            "message": str(exc) or repr(exc),
            "seed": seed,
            "traceback": "".join(traceback.format_exception(exc)),
        })
    else:
        scores = [r["score"] for r in record["runs"]]
        record.update(score=statistics.fmean(scores), seed_scores=scores)
    record["runtime_s"] = sum(r["runtime_s"] for r in record["runs"])
    # The task states the floating type its cases use in its details (`Setup.details["dtype"]`).
    dtypes = {str(r["details"]["dtype"]) for r in record["runs"] if "dtype" in r["details"]}
    record["dtype"] = ", ".join(sorted(dtypes)) or None
    return record


def conformance_entry(metric_id: str, version: int) -> dict[str, Any]:
    """`check_metric` as a JSON-able report; a crash of the checker itself is a failed check, not an abort."""
    try:
        report = check_metric(metric_id)
        rows = [[c.name, bool(c.ok), c.detail] for c in report.checks]
        declared, observed, passed = sorted(report.declared), sorted(report.observed), bool(report.passed)
    except Exception as exc:
        declared = sorted(metrics.get_metric(metric_id).spec.invariances)
        rows, observed, passed = [["check_metric", False, f"raised {_exception_type(exc)}: {exc}"]], [], False
    return {"schema": SCHEMA, "metric": metric_id, "metric_version": version, "passed": passed,
            "declared": declared, "observed": observed, "checks": rows, "packages": package_versions(),
            "git_commit": git_commit()}


def refresh_conformance(store: ResultStore, versions: dict[str, int], force: bool, quiet: bool) -> int:
    """Recompute missing or stale cached conformance reports; returns how many were computed."""
    todo = []
    for mid, version in versions.items():
        try:
            cached = store.load_conformance(mid)
        except RecordError:
            cached = None
        if force or cached is None or cached.get("schema") != SCHEMA or cached.get("metric_version") != version:
            todo.append(mid)
    for mid in tqdm(todo, desc="conformance", unit="metric", disable=quiet or not todo, dynamic_ncols=True):
        store.save_conformance(conformance_entry(mid, versions[mid]))
    return len(todo)


@dataclass
class RunSummary:
    """What a run did: cells computed by status, cells already current, error cells of the selection."""

    scale: str
    seeds: list[int]
    computed: Counter = field(default_factory=Counter)
    current: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (metric, task, "Type: message")
    conformance: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def cells(self) -> int:
        return sum(self.computed.values()) + self.current

    def lines(self) -> list[str]:
        done = ", ".join(f"{self.computed[s]} {s}" for s in ("ok", "error", "skipped") if self.computed[s])
        head = (f"{'interrupted after' if self.interrupted else 'done:'} {sum(self.computed.values())} cells "
                f"computed ({done or 'nothing new'}) in {self.elapsed_s:.1f} s, {self.current} already current; "
                f"scale {self.scale}, seeds {self.seeds}")
        out = [head]
        if self.interrupted:
            out.append("finished records are saved; rerun the same command to resume")
        if self.errors:
            out.append(f"{len(self.errors)} cell(s) failed:")
            out += [f"  {m} × {t}: {msg}" for m, t, msg in self.errors]
        return out


def _error_line(record: dict[str, Any]) -> str:
    err = record["error"]
    return f"{err['type']}: {err['message'].splitlines()[0] if err['message'] else ''}"


def run(store: ResultStore, metric_ids: Iterable[str], task_list: Iterable[TaskLike], *, scale: str,
        seeds: list[int], device: str, force: bool = False, quiet: bool = False) -> RunSummary:
    """Compute every missing or stale cell of metric_ids × task_list at `scale`, then return the summary."""
    start = time.perf_counter()
    metric_ids, task_list = list(metric_ids), list(task_list)
    versions = {m: metrics.get_metric(m).spec.version for m in metric_ids}
    summary = RunSummary(scale, list(seeds))
    try:
        summary.conformance = refresh_conformance(store, versions, force, quiet)
        todo: list[tuple[TaskLike, str]] = []
        for task in task_list:
            for mid in metric_ids:
                try:
                    old = None if force else store.load_record(scale, task.name, mid)
                except RecordError:
                    old = None
                if old is not None and is_current(old, versions[mid], task.version, seeds):
                    summary.current += 1
                    if old["status"] == "error":
                        summary.errors.append((mid, task.name, _error_line(old)))
                else:
                    todo.append((task, mid))
        with tqdm(total=len(todo) * len(seeds), unit="seed", disable=quiet or not todo, dynamic_ncols=True) as bar:
            for task, mid in todo:
                bar.set_postfix_str(f"{mid} × {task.name}", refresh=True)
                done_before = bar.n
                record = run_cell(task, mid, versions[mid], scale, seeds, device, on_seed=lambda: bar.update(1))
                bar.update(done_before + len(seeds) - bar.n)  # an error or a skip ends a cell early
                store.save_record(record)
                summary.computed[record["status"]] += 1
                if record["status"] == "error":
                    summary.errors.append((mid, task.name, _error_line(record)))
                    if not quiet:
                        bar.write(f"error: {mid} × {task.name}: {_error_line(record)}")
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.elapsed_s = time.perf_counter() - start
    return summary
