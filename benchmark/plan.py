"""The plan of a run: which cells are missing or stale, and which artifacts they need. Nothing is computed here.

A record is current when it answers exactly the cell's question: same metric and task versions, same seeds, and
the same content hashes of the artifacts it used (a rebuilt artifact whose bytes differ makes exactly the cells
that used it stale). A cell whose artifacts are not built yet cannot be judged: the plan lists those artifacts,
in dependency order, for the driver to build before it plans again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simstress.core.artifacts import ArtifactSpec, ArtifactStore
from simstress.core.metric import get_metric, list_metrics
from simstress.core.record import Record, RecordError
from simstress.core.registry import UnknownNameError
from simstress.core.task import Task, get_task, list_tasks

from .cells import Cell, artifact_uses, built_artifacts
from .records import ResultStore, is_current

_GLOB = set("*?")


def select_metrics(pattern: str = "*") -> list[str]:
    """Metric ids for comma-separated parts, each an exact id (any parameters, canonicalised) or a glob."""
    chosen: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if _GLOB & set(part):
            found = list_metrics(part)
            if not found:
                raise UnknownNameError(f"no metric matches {part!r}; `simstress list metrics` shows them")
        else:
            found = [get_metric(part).id]
        chosen += [m for m in found if m not in chosen]
    return chosen


def select_tasks(pattern: str = "*") -> list[str]:
    """Task names for comma-separated names or globs, in the registry's order."""
    names: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        found = list_tasks(part) if _GLOB & set(part) else [get_task(part).name]
        if not found:
            raise UnknownNameError(f"no task matches {part!r}; `simstress list tasks` shows them")
        names += [n for n in found if n not in names]
    return names


@dataclass
class Plan:
    """Cells to compute, cells already current (with their records), and artifacts to build first."""

    todo: list[Cell] = field(default_factory=list)
    current: list[tuple[Cell, Record]] = field(default_factory=list)
    blocked: list[Cell] = field(default_factory=list)  # waiting for artifacts in `artifacts`
    artifacts: list[ArtifactSpec] = field(default_factory=list)


def _missing_artifacts(task: Task, scale: str, seeds: tuple[int, ...], store: ArtifactStore, metric: str,
                       ) -> list[ArtifactSpec]:
    """The unbuilt artifacts of `metric`'s cell, each after its own unbuilt inputs."""
    out: list[ArtifactSpec] = []

    def visit(spec: ArtifactSpec) -> None:
        if store.have(spec) or spec in out:
            return
        for _, sub in spec.inputs:
            visit(sub)
        out.append(spec)

    if scale in task.scales:
        for seed in seeds:
            for spec in task.cell_artifacts(scale, seed, metric).values():
                visit(spec)
    return out


def plan(results: ResultStore, metric_ids: list[str], task_names: list[str], *, scale: str, seeds: list[int],
         device: str, force: bool = False) -> Plan:
    """Sort every (task, metric) cell of the selection into todo, current or blocked; task by task, in order."""
    store = ArtifactStore(results.root)
    out = Plan()
    versions = {m: get_metric(m).spec.version for m in metric_ids}
    for name in task_names:
        task = get_task(name)
        for mid in metric_ids:
            cell = Cell(mid, name, scale, tuple(seeds), device, str(results.root))
            missing = _missing_artifacts(task, scale, tuple(seeds), store, mid)
            out.artifacts += [s for s in missing if s not in out.artifacts]
            if missing:
                out.blocked.append(cell)
                continue
            used = artifact_uses(built_artifacts(task, scale, tuple(seeds), store, mid))
            try:
                old = None if force else results.load_record(scale, name, mid)
            except RecordError:
                old = None
            if old is not None and is_current(old, versions[mid], task.version, seeds, used):
                out.current.append((cell, old))
            else:
                out.todo.append(cell)
    return out
