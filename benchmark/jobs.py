"""The work a job does, in whatever process runs it: a cell under its time limit, an artifact's build, a metric's
conformance check. Executors (`executors`) run `run_job`; it never raises for a cell or a check (their failures
are data), only for an artifact build, and always for a real Ctrl-C.

A cell's time limit is a `Budget`, spent only while the metric works on the task's cases (each seed's
`Task.evaluate`): importing the registries, loading artifacts and building the task's data do not count against
it, so a cold worker process gives the same verdict as a warm one. The limit is a SIGALRM timer whose handler
raises `CellTimeout` in the cell's Python code: a metric stuck in one long native call is cut off when that call
returns; one that blocks SIGALRM, or never returns from native code, is not (in a worker process the driver kills
it `executors.GRACE_S` after the limit; in this process nothing can). `failed_record` is also how the driver
records a cell that never returned (its worker died, its artifacts failed to build, it ran past its limit).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import import_module
from typing import Any, Callable

from simstress.core.artifacts import ArtifactFault, ArtifactSpec, ArtifactStore
from simstress.core.conformance import check_metric
from simstress.core.metric import get_metric
from simstress.core.provenance import git_commit, package_versions
from simstress.core.record import Cause, CellError, Record, exception_type
from simstress.core.task import get_task

from .cells import Cell, SetupCache, artifact_uses, built_artifacts, empty_record, execute
from .records import CONFORMANCE_SCHEMA


class CellTimeout(BaseException):
    """A cell ran past its time limit. A BaseException, so that no `except Exception` in a cell swallows it."""


class Budget:
    """A time limit spent only inside `working()` blocks, in the main thread (signals exist only there).

    `on_start` is called when the first block begins: the moment the work starts (a worker tells its driver).
    """

    def __init__(self, seconds: float | None, on_start: Callable[[], None] | None = None) -> None:
        self.left = seconds
        self.on_start = on_start

    @contextmanager
    def working(self) -> Iterator[None]:
        if self.on_start is not None:
            self.on_start()
            self.on_start = None
        armed = bool(self.left) and threading.current_thread() is threading.main_thread()
        start = time.monotonic()
        if armed:
            signal.setitimer(signal.ITIMER_REAL, max(self.left, 1e-3))
        try:
            yield
        finally:
            if armed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                self.left -= time.monotonic() - start


class Guard:
    """Catches a `Budget`'s alarm as `CellTimeout`, and tells a real Ctrl-C apart from a KeyboardInterrupt that
    the guarded code raises itself."""

    def __init__(self) -> None:
        self.sigint = False

    @contextmanager
    def handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_alarm(signum: int, frame: Any) -> None:
            raise CellTimeout

        def on_sigint(signum: int, frame: Any) -> None:
            self.sigint = True
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, on_alarm), signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old[0])
            signal.signal(signal.SIGINT, old[1])


def failed_record(cell: Cell, error: CellError) -> Record:
    """The error record of a cell that did not return one (a timeout, an exit, a dead worker, a failed build),
    naming the artifacts it was given when they are built (so that the record is current until they change)."""
    task = get_task(cell.task)
    record = empty_record(cell, get_metric(cell.metric).spec.version, task)
    try:
        used = artifact_uses(built_artifacts(task, cell.scale, cell.seeds, ArtifactStore(cell.results), cell.metric))
    except ArtifactFault:
        used = []
    return replace(record, artifacts=tuple(used)).failed(error)


def timeout_message(seconds: float) -> str:
    return (f"the metric's work ran past its time limit of {seconds:g} s; the record keeps the next run from "
            f"waiting on it again (bump the metric's version or pass --force to retry, --timeout to allow more)")


def guarded(run: Callable[[Budget], Any], timeout_s: float | None, on_start: Callable[[], None] | None,
            ) -> tuple[Any, CellError | None]:
    """`run(budget)` under the guard: its value, or the error that stopped it (a timeout, an exit, a
    KeyboardInterrupt raised by the code itself); a real Ctrl-C propagates."""
    guard = Guard()
    try:
        with guard.handlers():
            return run(Budget(timeout_s, on_start)), None
    except CellTimeout:
        return None, CellError.from_exception(TimeoutError(timeout_message(timeout_s or 0.0)), Cause.TIMEOUT)
    except SystemExit as exc:
        return None, CellError.from_exception(RuntimeError(
            f"the code called sys.exit({exc.code!r}); metric and task code must raise an exception, never exit"),
            Cause.CRASH)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and guard.sigint:
            raise
        return None, CellError.from_exception(RuntimeError(
            f"the code raised {type(exc).__name__}({exc}), which stops programs, not cells; raise an Exception"),
            Cause.CRASH)


def guarded_execute(cell: Cell, setups: SetupCache, timeout_s: float | None,
                    on_start: Callable[[], None] | None = None) -> Record:
    """`execute` with its metric's work under a time limit; never raises but for a real Ctrl-C."""
    record, error = guarded(lambda budget: execute(cell, setups, budget.working), timeout_s, on_start)
    return record if error is None else failed_record(cell, error)


def _report(metric_id: str, version: int, passed: bool, declared: list[str], observed: list[str],
            rows: list[list[Any]]) -> dict[str, Any]:
    return {"schema": CONFORMANCE_SCHEMA, "metric": metric_id, "metric_version": version, "passed": passed,
            "declared": declared, "observed": observed, "checks": rows, "packages": package_versions(),
            "git_commit": git_commit()}


def conformance_entry(metric_id: str, version: int) -> dict[str, Any]:
    """`check_metric` as a JSON-able report; a crash of the checker itself is a failed check, not an abort."""
    try:
        report = check_metric(metric_id)
    except Exception as exc:
        return _report(metric_id, version, False, sorted(get_metric(metric_id).spec.invariances), [],
                       [["check_metric", False, f"raised {exception_type(exc)}: {exc}"]])
    return _report(metric_id, version, bool(report.passed), sorted(report.declared), sorted(report.observed),
                   [[c.name, bool(c.ok), c.detail] for c in report.checks])


def guarded_conformance(metric_id: str, timeout_s: float | None, on_start: Callable[[], None] | None = None,
                        ) -> dict[str, Any]:
    """`conformance_entry` under a time limit: a check that hangs or exits is a failed check, named as such."""
    version = get_metric(metric_id).spec.version

    def check(budget: Budget) -> dict[str, Any]:
        with budget.working():
            return conformance_entry(metric_id, version)

    report, error = guarded(check, timeout_s, on_start)
    return report if error is None else failed_report(metric_id, version, error)


def failed_report(metric_id: str, version: int, error: CellError) -> dict[str, Any]:
    """The report of a check that did not return one (it hung, exited, or its worker died)."""
    return _report(metric_id, version, False, sorted(get_metric(metric_id).spec.invariances), [],
                   [["check_metric", False, error.line]])


def import_plugins(modules: list[str]) -> None:
    """In a worker: the registries' own plugins, then the modules that registered the run's metrics and tasks."""
    from simstress import metrics, tasks

    metrics.load_plugins()
    tasks.load_plugins()
    for name in modules:
        import_module(name)


def run_job(kind: str, payload: dict[str, Any], setups: SetupCache, timeout_s: float | None,
            on_start: Callable[[], None] | None = None) -> Any:
    """A job's plain-data result: a staged artifact, a conformance report, or a cell's record (its time limit
    applied inside, from `on_start`: when the work starts)."""
    if kind == "artifact":
        store = ArtifactStore(payload["root"], payload["device"])
        return store.build_files(ArtifactSpec.from_dict(payload["spec"]))
    if kind == "conformance":
        return guarded_conformance(payload["metric"], timeout_s, on_start)
    return guarded_execute(Cell.from_dict(payload), setups, timeout_s, on_start)
