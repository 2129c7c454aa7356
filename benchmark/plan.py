"""The plan of a run: which cells are missing or stale, and which artifacts they need. Nothing is computed here.

A record is current when it answers exactly the cell's question (`is_current`): the installed metric and task
versions, the same seeds, and the same artifacts — identified by their keys, i.e. by what determines them
(weights, images, resolution, ...). An artifact's bytes are provenance: when the local copy was rebuilt with other
bytes, the record stays current only if the copy's fingerprint matches the one the record names (the same values
up to rounding, as another CPU's float32 arithmetic gives); a real change makes exactly its cells stale. A current
record needs none of its artifacts, so a fresh clone with the committed records builds nothing. An error the
environment caused (data, artifacts, cards) is never current: the next run retries it.

A cell to compute whose artifacts are not built yet waits for them: the plan lists them, in dependency order, for
the driver to build before it plans again. A broken artifact (a folder without a readable, unedited card) is never
built over: the plan names it, and its cells are recorded as environment errors that say how to fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simstress.core.artifacts import ArtifactFault, ArtifactSpec, ArtifactStore, fingerprints_match
from simstress.core.metric import get_metric, list_metrics
from simstress.core.record import Cause, Record, RecordError
from simstress.core.registry import UnknownNameError
from simstress.core.task import Task, get_task, list_tasks

from .cells import Cell
from .records import ResultStore

_GLOB = set("*?")


def select_metrics(pattern: str = "*") -> list[str]:
    """Metric ids for comma-separated parts, each an exact id (any parameters, canonicalised) or a glob. Commas
    inside an id's brackets (`rbf_cka[median=lower,sigma=0.2]`) separate its parameters, not parts."""
    chosen: list[str] = []
    for part in (p.strip() for p in re.split(r",(?![^\[]*\])", pattern)):
        if _GLOB & set(part):
            found = list_metrics(part)
            if not found:
                raise UnknownNameError(f"no metric matches {part!r}; `simstress list metrics` shows them")
        else:
            found = [get_metric(part).id]
        chosen += [m for m in found if m not in chosen]
    return chosen


def select_tasks(pattern: str = "*", scale: str | None = None) -> list[str]:
    """Task names for comma-separated names or globs, in the registry's order. With `scale`, a glob selects only
    the tasks that have that scale (a task named outright is kept, and its cells are recorded as skipped)."""
    names: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if _GLOB & set(part):
            found = [n for n in list_tasks(part) if scale is None or scale in get_task(n).scales]
        else:
            found = [get_task(part).name]
        if not found:
            at = f" at the {scale} scale" if scale else ""
            raise UnknownNameError(f"no task matches {part!r}{at}; `simstress list tasks` shows them and their scales")
        names += [n for n in found if n not in names]
    return names


@dataclass
class Plan:
    """Cells to compute, cells already current (with their records), and artifacts to build first."""

    todo: list[Cell] = field(default_factory=list)
    current: list[tuple[Cell, Record]] = field(default_factory=list)
    blocked: list[Cell] = field(default_factory=list)  # waiting for artifacts in `artifacts`, or on broken ones
    artifacts: list[ArtifactSpec] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # key -> what is wrong and how to fix it


def cell_specs(task: Task, scale: str, seeds: tuple[int, ...], metric: str) -> dict[tuple[int, str], ArtifactSpec]:
    """Every artifact the cell of `metric` needs, by (seed, the task's name for it)."""
    if scale not in task.scales:
        return {}
    return {(seed, name): spec for seed in seeds for name, spec in task.cell_artifacts(scale, seed, metric).items()}


def is_current(record: Record, metric_version: int, task_version: int, seeds: list[int],
               specs: dict[tuple[int, str], ArtifactSpec], store: ArtifactStore) -> bool:
    """True when the record answers exactly this cell's question (the module docstring says what that means)."""
    if (record.metric_version, record.task_version, record.seeds) != (metric_version, task_version, tuple(seeds)):
        return False
    if record.error is not None and record.error.cause is Cause.ENVIRONMENT:
        return False
    used = {(a.seed, a.name): a for a in record.artifacts}
    if set(used) != set(specs):
        return False
    for where, spec in specs.items():
        entry = used[where]
        if (entry.kind, entry.key) != (spec.kind, spec.key):
            return False
        state, _ = store.state(spec)
        if state == "built":
            card = store.card(spec)
            if card["sha256"] != entry.sha256 and not fingerprints_match(card.get("fingerprint"), entry.fingerprint):
                return False
    return True


def _needed_artifacts(specs: list[ArtifactSpec], store: ArtifactStore, out: Plan) -> bool:
    """Add the unbuilt artifacts among `specs` to the plan, each after its own unbuilt inputs, and the broken ones
    to `out.broken`; True when every one is built."""
    ready = True

    def visit(spec: ArtifactSpec) -> None:
        nonlocal ready
        state, why = store.state(spec)
        if state == "built":
            return
        ready = False
        if state == "broken":
            out.broken[spec.key] = why
            return
        if spec in out.artifacts:
            return
        for _, sub in spec.inputs:
            visit(sub)
        out.artifacts.append(spec)

    for spec in specs:
        visit(spec)
    return ready


def plan(results: ResultStore, metric_ids: list[str], task_names: list[str], *, scale: str, seeds: list[int],
         device: str, force: bool = False) -> Plan:
    """Sort every (task, metric) cell of the selection into current, todo or blocked; task by task, in order."""
    store = ArtifactStore(results.root)
    out = Plan()
    versions = {m: get_metric(m).spec.version for m in metric_ids}
    for name in task_names:
        task = get_task(name)
        for mid in metric_ids:
            cell = Cell(mid, name, scale, tuple(seeds), device, str(results.root))
            specs = cell_specs(task, scale, tuple(seeds), mid)
            try:
                old = None if force else results.load_record(scale, name, mid)
                current = old is not None and is_current(old, versions[mid], task.version, seeds, specs, store)
            except (RecordError, ArtifactFault):  # an unreadable record, a broken card: recompute (or report)
                current = False
            if current:
                out.current.append((cell, old))
            elif _needed_artifacts(list({s.key: s for s in specs.values()}.values()), store, out):
                out.todo.append(cell)
            else:
                out.blocked.append(cell)
    return out
