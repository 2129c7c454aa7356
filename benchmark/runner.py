"""The driver of a run: plan, build the artifacts, execute the cells, write the records.

A cell is (metric id, task, scale, seeds); one record holds all seeds of a (metric id, task, scale) triple. The
driver plans (`plan.plan`: which cells are missing or stale, which artifacts they need), builds each missing
artifact once as a job on the executor (`executors`: in-process, worker processes or Ray), as soon as its inputs
exist, and commits it (card, rename); plans again now that every artifact's content is known, then hands every
cell, task by task, to the executor (`cells.execute`: plain data in, a record dict out) and alone writes the
records, each atomically, in the order they finish. An artifact that fails to build makes the cells that need it
error records naming the failure; so does a worker that dies on every retry, or a cell past its time limit; the
run goes on. Ctrl-C cancels the jobs in flight after saving every finished record; the next run resumes there.

Conformance reports (`refresh_conformance`) are a step of their own: `simstress run` calls it before the cells.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from simstress.core.artifacts import ArtifactSpec, ArtifactStore
from simstress.core.conformance import applicable_checks, check_metric
from simstress.core.metric import get_metric
from simstress.core.provenance import git_commit, package_versions
from simstress.core.task import get_task

from .cells import Cell, SetupCache, empty_record, error_fields, exception_type, execute, finish
from .executors import Executor, Job, LocalExecutor
from .plan import Plan, plan
from .records import SCHEMA, RecordError, ResultStore


def conformance_entry(metric_id: str, version: int) -> dict[str, Any]:
    """`check_metric` as a JSON-able report; a crash of the checker itself is a failed check, not an abort."""
    try:
        report = check_metric(metric_id)
        rows = [[c.name, bool(c.ok), c.detail] for c in report.checks]
        declared, observed, passed = sorted(report.declared), sorted(report.observed), bool(report.passed)
    except Exception as exc:
        declared = sorted(get_metric(metric_id).spec.invariances)
        rows, observed, passed = [["check_metric", False, f"raised {exception_type(exc)}: {exc}"]], [], False
    return {"schema": SCHEMA, "metric": metric_id, "metric_version": version, "passed": passed,
            "declared": declared, "observed": observed, "checks": rows, "packages": package_versions(),
            "git_commit": git_commit()}


def refresh_conformance(store: ResultStore, metric_ids: list[str], force: bool = False, quiet: bool = False) -> int:
    """Recompute missing or stale cached conformance reports; returns how many were computed.

    Stale: another schema or metric version, or another set of checks than apply now (the suite gained one)."""
    versions = {m: get_metric(m).spec.version for m in metric_ids}
    todo = []
    for mid, version in versions.items():
        try:
            cached = store.load_conformance(mid)
        except RecordError:
            cached = None
        checks = {c[0] for c in cached.get("checks", []) if isinstance(c, list) and c} if cached else set()
        if (force or cached is None or cached.get("schema") != SCHEMA or cached.get("metric_version") != version
                or (checks != {"check_metric"} and checks != set(applicable_checks(get_metric(mid))))):
            todo.append(mid)
    for mid in tqdm(todo, desc="conformance", unit="metric", disable=quiet or not todo, dynamic_ncols=True):
        store.save_conformance(conformance_entry(mid, versions[mid]))
    return len(todo)


class WorkerDied(RuntimeError):
    """A job's worker process (or node) died, every retry included: the cell is recorded as an error naming it."""


class CellTimeout(BaseException):
    """A cell ran past its time limit. A BaseException, so that no `except Exception` in a cell swallows it."""


class Guard:
    """Runs a cell under a time limit and tells a real Ctrl-C apart from a KeyboardInterrupt the cell raises.

    The limit is a SIGALRM timer: its handler raises `CellTimeout` in the cell's Python code, so a metric stuck
    in one long native call (a single huge matrix product) is cut off when that call returns. Signals exist only
    in the main thread; elsewhere cells run without a limit.
    """

    def __init__(self) -> None:
        self.sigint = False

    @contextmanager
    def limit(self, seconds: float | None) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_alarm(signum: int, frame: Any) -> None:
            raise CellTimeout(seconds)

        def on_sigint(signum: int, frame: Any) -> None:
            self.sigint = True
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, on_alarm), signal.signal(signal.SIGINT, on_sigint)
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old[0])
            signal.signal(signal.SIGINT, old[1])


def failed_record(cell: Cell, exc: BaseException) -> dict[str, Any]:
    """The error record of a cell that did not return one (a build failure, a timeout, an exit)."""
    task = get_task(cell.task)
    return finish({**empty_record(cell, get_metric(cell.metric).spec.version, task), **error_fields(exc, None)})


def guarded_execute(cell: Cell, setups: SetupCache, timeout_s: float | None) -> dict[str, Any]:
    """`execute` under a time limit; a timeout, sys.exit or a KeyboardInterrupt raised by the cell itself become
    error records, while a real Ctrl-C propagates."""
    guard = Guard()
    try:
        with guard.limit(timeout_s):
            return execute(cell, setups)
    except CellTimeout:
        return failed_record(cell, TimeoutError(
            f"the cell ran past its time limit of {timeout_s:g} s; the record keeps the next run from waiting on it "
            f"again (bump the metric's version or pass --force to retry, --timeout to allow more)"))
    except SystemExit as exc:
        return failed_record(cell, RuntimeError(
            f"the cell called sys.exit({exc.code!r}); metric and task code must raise an exception, never exit"))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and guard.sigint:
            raise
        return failed_record(cell, RuntimeError(
            f"the cell raised {type(exc).__name__}({exc}), which stops programs, not cells; raise an Exception"))


@dataclass
class RunSummary:
    """What a run did: cells computed by status, cells already current, error cells of the selection."""

    scale: str
    seeds: list[int]
    computed: Counter = field(default_factory=Counter)
    current: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (metric, task, "Type: message")
    artifacts: int = 0
    unsaved: str | None = None  # the cell whose record could not be written, and why (the run stopped there)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def cells(self) -> int:
        return sum(self.computed.values()) + self.current

    def lines(self) -> list[str]:
        done = ", ".join(f"{self.computed[s]} {s}" for s in ("ok", "error", "skipped") if self.computed[s])
        head = (f"{'interrupted after' if self.interrupted else 'done:'} {sum(self.computed.values())} cells "
                f"computed ({done or 'nothing new'}) in {self.elapsed_s:.1f} s, {self.current} already current, "
                f"{self.artifacts} artifact(s) built; "
                f"scale {self.scale}, seeds {self.seeds}")
        out = [head]
        if self.interrupted:
            out.append("finished records are saved; rerun the same command to resume")
        if self.unsaved:
            out.append(f"stopped: the record of {self.unsaved} could not be written; fix the results folder and "
                       f"rerun (finished records are saved)")
        refusals = [e for e in self.errors if _is_refusal(e[2])]
        if refusals:
            out.append(f"{len(refusals)} cell(s) refused their input by design (InputError, shown ✗ and counted 0):")
            out += [f"  {m} × {t}: {msg}" for m, t, msg in refusals]
        if self.failures:
            out.append(f"{len(self.failures)} cell(s) failed:")
            out += [f"  {m} × {t}: {msg}" for m, t, msg in self.failures]
        return out

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """Error cells other than a metric's deliberate refusal of its input (`InputError`)."""
        return [e for e in self.errors if not _is_refusal(e[2])]


def _is_refusal(line: str) -> bool:
    return line.split(":", 1)[0].endswith("InputError")


def _error_line(record: dict[str, Any]) -> str:
    err = record["error"]
    return f"{err['type']}: {err['message'].splitlines()[0] if err['message'] else ''}"


def _build_artifacts(results: ResultStore, p: Plan, device: str, executor: Executor, quiet: bool) -> dict[str, str]:
    """Build the plan's missing artifacts, each once, as soon as its inputs are built (independent ones at the same
    time on a parallel executor); the driver commits each (card, rename). Returns {key: "Type: message"} of those
    that failed (and of those whose inputs failed)."""
    store = ArtifactStore(results.root, device)
    failed: dict[str, str] = {}
    pending = list(p.artifacts)
    jobs: dict[int, ArtifactSpec] = {}
    ids = itertools.count()
    with tqdm(total=len(pending), desc="artifacts", unit="artifact", disable=quiet or not pending,
              dynamic_ncols=True) as bar:
        while pending or jobs:
            for spec in list(pending):
                if any(sub.key in failed for _, sub in spec.inputs):
                    failed[spec.key] = f"input of {spec.kind}/{spec.key} failed to build"
                    pending.remove(spec)
                    bar.update(1)
                elif all(store.have(sub) for _, sub in spec.inputs):
                    pending.remove(spec)
                    job = Job(next(ids), "artifact",
                              {"spec": spec.to_dict(), "root": str(results.root), "device": device}, None,
                              gpu=device.startswith("cuda"), group=spec.kind)
                    jobs[job.id] = spec
                    executor.submit(job)
            for outcome in executor.wait():
                spec = jobs.pop(outcome.job.id)
                try:
                    if outcome.error is not None:
                        raise RuntimeError(outcome.error)
                    store.commit(spec, outcome.value)
                except Exception as exc:  # a failed build fails the cells that need it, not the run
                    failed[spec.key] = outcome.error or f"{type(exc).__name__}: {exc}"
                bar.update(1)
    return failed


def _blocked_record(cell: Cell, failed: dict[str, str]) -> dict[str, Any]:
    """The error record of a cell whose artifacts could not be built."""
    task = get_task(cell.task)
    specs = (s for seed in cell.seeds for s in task.cell_artifacts(cell.scale, seed, cell.metric).values())
    reasons = sorted({msg for spec in specs if (msg := failed.get(spec.key))})
    return failed_record(cell, RuntimeError("an artifact this cell needs failed to build: "
                                            + "; ".join(reasons or ["unknown cause"])))


def worker_modules(metric_ids: list[str], task_names: list[str]) -> list[str]:
    """The modules a worker process must import to know the run's plugin metrics and tasks (built-ins load
    themselves); a metric or task defined in `__main__` cannot be run there."""
    modules = sorted({get_metric(m).spec.fn.__module__ for m in metric_ids}
                     | {type(get_task(t)).__module__ for t in task_names})
    if "__main__" in modules:
        raise ValueError("a metric or task of this run is defined in __main__, which worker processes cannot import; "
                         "move it into a module (or run with the local executor and --jobs 1)")
    return [m for m in modules if not m.startswith("simstress.")]


def _job_error(text: str) -> BaseException:
    kind, _, message = text.partition(": ")
    return {"TimeoutError": TimeoutError, "WorkerDied": WorkerDied}.get(kind, RuntimeError)(message or text)


def run(results: ResultStore, metric_ids: list[str], task_names: list[str], *, scale: str, seeds: list[int],
        device: str, force: bool = False, quiet: bool = False, timeout_s: float | None = None,
        executor: Executor | None = None) -> RunSummary:
    """Compute every missing or stale cell of metric_ids × task_names at `scale`, then return the summary.

    Jobs run on `executor` (default: in this process, one at a time). Each cell runs under `timeout_s` seconds,
    by default its task's limit for the scale (`Task.timeout_s`). A record that cannot be written stops the run
    (`RunSummary.unsaved` says which cell and why). Ctrl-C cancels the jobs in flight; finished records are kept.
    """
    start = time.perf_counter()
    summary = RunSummary(scale, list(seeds))
    executor = executor if executor is not None else LocalExecutor()
    try:
        p = plan(results, metric_ids, task_names, scale=scale, seeds=seeds, device=device, force=force)
        failed = _build_artifacts(results, p, device, executor, quiet)
        summary.artifacts = len(p.artifacts) - len(failed)
        if p.artifacts:
            p = plan(results, metric_ids, task_names, scale=scale, seeds=seeds, device=device, force=force)
        summary.current = len(p.current)
        summary.errors += [(c.metric, c.task, _error_line(r)) for c, r in p.current if r["status"] == "error"]
        work = p.blocked + p.todo
        cells: dict[int, Cell] = {}
        with tqdm(total=len(work), unit="cell", disable=quiet or not work, dynamic_ncols=True) as bar:
            outcomes: list[tuple[Cell, dict[str, Any]]] = [(c, _blocked_record(c, failed)) for c in p.blocked]
            for i, cell in enumerate(p.todo):
                limit = timeout_s if timeout_s is not None else get_task(cell.task).timeout_s.get(scale)
                cells[i] = cell
                executor.submit(Job(i, "cell", cell.to_dict(), limit, gpu=device.startswith("cuda"), group=cell.task))
            while outcomes or cells:
                for o in [] if outcomes else executor.wait():
                    cell = cells.pop(o.job.id)
                    outcomes.append((cell, o.value if o.error is None else failed_record(cell, _job_error(o.error))))
                if not outcomes:
                    continue
                cell, record = outcomes.pop(0)
                bar.set_postfix_str(f"{cell.metric} × {cell.task}", refresh=True)
                try:
                    results.save_record(record)
                except OSError as exc:
                    summary.unsaved = f"{cell.metric} × {cell.task}: {exc}"
                    executor.cancel()
                    break
                bar.update(1)
                summary.computed[record["status"]] += 1
                if record["status"] == "error":
                    summary.errors.append((cell.metric, cell.task, _error_line(record)))
                    if not quiet:
                        bar.write(f"error: {cell.metric} × {cell.task}: {_error_line(record)}")
    except KeyboardInterrupt:
        executor.cancel()
        summary.interrupted = True
    finally:
        executor.close()
    summary.elapsed_s = time.perf_counter() - start
    return summary
