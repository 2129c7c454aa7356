"""The driver of a run: plan, build the artifacts, execute the cells, write the records.

A cell is (metric id, task, scale, seeds); one record holds all seeds of a (metric id, task, scale) triple. The
driver plans (`plan.plan`: which cells are missing or stale, which artifacts they need), builds each missing
artifact once as a job on the executor (`executors`: in-process, worker processes or Ray), as soon as its inputs
exist, and commits it (card, rename); plans again now that every artifact's content is known, then hands every
cell, task by task, to the executor (`jobs.guarded_execute`: plain data in, a `Record` out)
and alone writes the records, each atomically, in the order they finish. An artifact that fails to build makes
the cells that need it error records naming the failure; so does a worker that dies on every retry, or a cell past
its time limit; the run goes on. Ctrl-C cancels the jobs in flight after saving every finished record; the next
run resumes there.

Conformance reports (`refresh_conformance`) are a step of their own, jobs on the same executor under a time limit:
`simstress run` calls it before the cells.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from simstress.core.artifacts import ArtifactFault, ArtifactSpec, ArtifactStore
from simstress.core.conformance import applicable_checks
from simstress.core.metric import get_metric
from simstress.core.record import Cause, CellError, Record, RecordError
from simstress.core.task import get_task

from .cells import Cell, cause_of
from .executors import Executor, Job, LocalExecutor
from .jobs import failed_record, failed_report
from .plan import Plan, plan
from .records import CONFORMANCE_SCHEMA, ResultStore

CONFORMANCE_TIMEOUT_S = 600.0  # a metric's conformance check: seconds on the reference machine, never minutes


def refresh_conformance(store: ResultStore, metric_ids: list[str], force: bool = False, quiet: bool = False,
                        executor: Executor | None = None, timeout_s: float | None = CONFORMANCE_TIMEOUT_S) -> int:
    """Recompute missing or stale cached conformance reports, as jobs on `executor` (default: in this process)
    under a time limit (a check that hangs is a failed check); returns how many were computed.

    Stale: another schema or metric version, or another set of checks than apply now (the suite gained one)."""
    versions = {m: get_metric(m).spec.version for m in metric_ids}
    todo = []
    for mid, version in versions.items():
        try:
            cached = store.load_conformance(mid)
        except RecordError:
            cached = None
        checks = {c[0] for c in cached.get("checks", []) if isinstance(c, list) and c} if cached else set()
        stale = cached is None or (cached.get("schema"), cached.get("metric_version")) != (CONFORMANCE_SCHEMA, version)
        if (force or stale
                or (checks != {"check_metric"} and checks != set(applicable_checks(get_metric(mid))))):
            todo.append(mid)
    executor = executor if executor is not None else LocalExecutor()
    for i, mid in enumerate(todo):
        executor.submit(Job(i, "conformance", {"metric": mid}, timeout_s, group="conformance"))
    with tqdm(total=len(todo), desc="conformance", unit="metric", disable=quiet or not todo,
              dynamic_ncols=True) as bar:
        left = len(todo)
        while left:
            for outcome in executor.wait():
                mid = todo[outcome.job.id]
                report = outcome.value if outcome.error is None else failed_report(mid, versions[mid], outcome.error)
                store.save_conformance(report)
                left -= 1
                bar.update(1)
    return len(todo)


@dataclass
class RunSummary:
    """What a run did: cells computed by status, cells already current, error cells of the selection."""

    scale: str
    seeds: list[int]
    computed: Counter = field(default_factory=Counter)
    current: int = 0
    errors: list[tuple[str, str, CellError]] = field(default_factory=list)  # (metric, task, error)
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
        refusals = [e for e in self.errors if e[2].refusal]
        if refusals:
            out.append(f"{len(refusals)} cell(s) refused their input by design (InputError, shown ✗ and counted 0):")
            out += [f"  {m} × {t}: {err.line}" for m, t, err in refusals]
        if self.failures:
            out.append(f"{len(self.failures)} cell(s) failed:")
            out += [f"  {m} × {t}: {err.line}" for m, t, err in self.failures]
        return out

    @property
    def failures(self) -> list[tuple[str, str, CellError]]:
        """Error cells other than a metric's deliberate refusal of its input (`InputError`)."""
        return [e for e in self.errors if not e[2].refusal]


def _build_artifacts(results: ResultStore, p: Plan, device: str, executor: Executor, quiet: bool,
                     ) -> dict[str, CellError]:
    """Build the plan's missing artifacts, each once, as soon as its inputs are built (independent ones at the same
    time on a parallel executor); the driver commits each (card, rename). Returns the errors of those that failed
    (and of those whose inputs failed), by key; Ctrl-C removes the half-built folders of the builds in flight."""
    store = ArtifactStore(results.root, device)
    failed: dict[str, CellError] = {}
    pending = list(p.artifacts)
    jobs: dict[int, ArtifactSpec] = {}
    ids = itertools.count()
    with tqdm(total=len(pending), desc="artifacts", unit="artifact", disable=quiet or not pending,
              dynamic_ncols=True) as bar:
        try:
            while pending or jobs:
                for spec in list(pending):
                    broken = [failed[sub.key] for _, sub in spec.inputs if sub.key in failed]
                    if broken:
                        failed[spec.key] = replace(broken[0], message=f"an input of {spec.kind}/{spec.key} failed to "
                                                                      f"build: {broken[0].message}")
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
                    if outcome.error is not None:
                        failed[spec.key] = outcome.error
                    else:
                        try:
                            store.commit(spec, outcome.value)
                        except Exception as exc:  # a failed build fails the cells that need it, not the run
                            failed[spec.key] = CellError.from_exception(exc, cause_of(exc))
                    bar.update(1)
        except KeyboardInterrupt:
            executor.cancel()
            for spec in jobs.values():
                store.discard(spec)
            raise
    return failed


def _blocked_record(cell: Cell, failed: dict[str, CellError]) -> Record:
    """The error record of a cell whose artifacts could not be built: the build errors, with the first one's type
    and cause (an environment fault stays one)."""
    task = get_task(cell.task)
    specs = (s for seed in cell.seeds for s in task.cell_artifacts(cell.scale, seed, cell.metric).values())
    errors = {err.line: err for spec in specs if (err := failed.get(spec.key))}
    if not errors:
        return failed_record(cell, CellError("RuntimeError", "an artifact this cell needs failed to build",
                                             Cause.FAILURE))
    lines = sorted(errors)
    return failed_record(cell, replace(errors[lines[0]], message="an artifact this cell needs failed to build: "
                                                                 + "; ".join(lines)))


def worker_modules(metric_ids: list[str], task_names: list[str]) -> list[str]:
    """The modules a worker process must import to know the run's plugin metrics and tasks (built-ins load
    themselves); a metric or task defined in `__main__` cannot be run there."""
    modules = sorted({get_metric(m).spec.fn.__module__ for m in metric_ids}
                     | {type(get_task(t)).__module__ for t in task_names})
    if "__main__" in modules:
        raise ValueError("a metric or task of this run is defined in __main__, which worker processes cannot import; "
                         "move it into a module (or run with the local executor and --jobs 1)")
    return [m for m in modules if not m.startswith("simstress.")]


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
        failed.update({key: CellError.from_exception(ArtifactFault(why), Cause.ENVIRONMENT)
                       for key, why in p.broken.items()})
        if p.artifacts:
            p = plan(results, metric_ids, task_names, scale=scale, seeds=seeds, device=device, force=force)
        summary.current = len(p.current)
        summary.errors += [(c.metric, c.task, r.error) for c, r in p.current if r.error is not None]
        work = p.blocked + p.todo
        cells: dict[int, Cell] = {}
        with tqdm(total=len(work), unit="cell", disable=quiet or not work, dynamic_ncols=True) as bar:
            outcomes: list[tuple[Cell, Record]] = [(c, _blocked_record(c, failed)) for c in p.blocked]
            for i, cell in enumerate(p.todo):
                own = get_task(cell.task).timeout_s.get(scale)
                cells[i] = cell
                executor.submit(Job(i, "cell", cell.to_dict(), own if timeout_s is None else timeout_s,
                                    gpu=device.startswith("cuda"), group=cell.task, setup_timeout_s=own))
            while outcomes or cells:
                for o in [] if outcomes else executor.wait():
                    cell = cells.pop(o.job.id)
                    outcomes.append((cell, o.value if o.error is None else failed_record(cell, o.error)))
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
                summary.computed[record.status] += 1
                if record.error is not None:
                    summary.errors.append((cell.metric, cell.task, record.error))
                    if not quiet:
                        bar.write(f"error: {cell.metric} × {cell.task}: {record.error.line}")
    except KeyboardInterrupt:
        executor.cancel()
        summary.interrupted = True
    finally:
        executor.close()
    summary.elapsed_s = time.perf_counter() - start
    return summary
