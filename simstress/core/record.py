"""The record of one cell (a metric id on a task at one scale, every seed inside): the schema, as dataclasses.

This module owns the record. `Record.to_json` is its one writer (the plain-JSON form stored under
`results/records/`), `Record.from_json` its one reader, `problems` its one validator; `from_json` migrates older
schemas first (`migrate`, one tested step per version). Records cross process boundaries (worker processes, Ray)
as these dataclasses, and so do errors: a `CellError` carries its exception type, message and `Cause`, so that
nothing downstream (exit codes, refusal counts, retries, the page) parses prose.

JSON form (schema 2): identity (`metric`, `metric_version`, `task`, `task_version`, `task_info`, `scale`, `seeds`),
provenance (`device`, `device_name`, `packages`, `git_commit`), `status` ("ok" | "error" | "skipped"), `runs`
(one per seed: score in [0, 1], runtime, curve as {column: values}, details), the artifacts the cell used, an
`error` ({type, message, cause, seed, traceback}) or a skip `reason`, and the summaries derived from the runs
(`score` = mean of `seed_scores`, `runtime_s`, `dtype`), written for readers of the files and checked on reading.
JSON has no NaN: non-finite floats are written as null.

Schema history: 1 → 2 added `error.cause` (before it, a refusal was told apart by its type name only).
"""

from __future__ import annotations

import math
import statistics
import traceback
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Mapping

SCHEMA = 2
STATUSES = ("ok", "error", "skipped")


class RecordError(ValueError):
    """A record that cannot be read or does not follow the schema."""


class Cause(StrEnum):
    """Why a cell is an error: what the page shows, what the exit code says, whether the next run retries it."""

    REFUSAL = "refusal"          # the metric refused its input by design (InputError): the worst outcome, by design
    FAILURE = "failure"          # the metric or the task raised: kept until a version changes (or --force)
    TIMEOUT = "timeout"          # past the cell's time limit
    CRASH = "crash"              # the cell took its process down (exit, kill) on every retry
    ENVIRONMENT = "environment"  # data, artifacts or cards missing or corrupt: not the metric's fault, retried


@dataclass(frozen=True)
class CellError:
    """An error as data: the exception's qualified type name, its message and why it happened."""

    type: str
    message: str
    cause: Cause
    seed: int | None = None
    traceback: str = ""

    @property
    def refusal(self) -> bool:
        return self.cause is Cause.REFUSAL

    @property
    def line(self) -> str:
        """"Type: first line of the message", for summaries and footnotes."""
        first = self.message.splitlines()
        return f"{self.type}: {first[0] if first else ''}"

    @classmethod
    def from_exception(cls, exc: BaseException, cause: Cause, seed: int | None = None) -> CellError:
        return cls(exception_type(exc), str(exc) or repr(exc), Cause(cause), seed,
                   "".join(traceback.format_exception(exc)))


def exception_type(exc: BaseException) -> str:
    """The exception's qualified class name ("ValueError", "simstress.core.inputs.InputError")."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class TaskInfo:
    """What the page needs of a task even when the task is no longer installed."""

    category: str
    summary: str
    sweep_name: str
    log_x: bool


@dataclass(frozen=True)
class ArtifactUse:
    """An artifact one seed of the cell used: the task's name for it, its kind and key (what determines it), and,
    for provenance, its content sha256 and fingerprint (`simstress.core.artifacts.fingerprint`: whether a rebuild
    holds the same values up to rounding)."""

    seed: int
    name: str
    kind: str
    key: str
    sha256: str
    fingerprint: Mapping[str, list[float] | None] | None = None


@dataclass(frozen=True)
class SeedRun:
    """One seed's outcome: a score in [0, 1], the metric's time on the task, the curve and the task's details."""

    seed: int
    score: float
    runtime_s: float
    curve: Mapping[str, list] | None
    details: Mapping[str, Any]


@dataclass(frozen=True)
class Record:
    """One cell's result. `runs` is empty unless the status is "ok"; `error` is set exactly when it is "error"."""

    metric: str
    metric_version: int
    task: str
    task_version: int
    task_info: TaskInfo
    scale: str
    seeds: tuple[int, ...]
    device: str
    device_name: str
    packages: Mapping[str, str]
    git_commit: str
    status: str = "ok"
    runs: tuple[SeedRun, ...] = ()
    artifacts: tuple[ArtifactUse, ...] = ()
    error: CellError | None = None
    reason: str | None = None  # why a skipped cell does not apply

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def seed_scores(self) -> list[float] | None:
        return [r.score for r in self.runs] if self.ok else None

    @property
    def score(self) -> float | None:
        """The mean over seeds, None unless ok."""
        return statistics.fmean(self.seed_scores) if self.ok else None

    @property
    def runtime_s(self) -> float:
        return sum(r.runtime_s for r in self.runs)

    @property
    def dtype(self) -> str | None:
        """The floating types the task's cases used, as its details state them (`Setup.details["dtype"]`)."""
        found = {str(r.details["dtype"]) for r in self.runs if "dtype" in r.details}
        return ", ".join(sorted(found)) or None

    def failed(self, error: CellError) -> Record:
        """This record as an error: no runs, the error set."""
        return replace(self, status="error", runs=(), error=error, reason=None)

    def skipped(self, reason: str) -> Record:
        return replace(self, status="skipped", runs=(), error=None, reason=reason)

    def to_json(self) -> dict[str, Any]:
        """The record's JSON form (the one writer)."""
        err = self.error
        return {
            "schema": SCHEMA, "metric": self.metric, "metric_version": self.metric_version, "task": self.task,
            "task_version": self.task_version,
            "task_info": {"category": self.task_info.category, "summary": self.task_info.summary,
                          "sweep_name": self.task_info.sweep_name, "log_x": self.task_info.log_x},
            "scale": self.scale, "seeds": list(self.seeds), "device": self.device, "device_name": self.device_name,
            "packages": dict(self.packages), "git_commit": self.git_commit, "status": self.status,
            "score": self.score, "seed_scores": self.seed_scores, "reason": self.reason,
            "error": None if err is None else {"type": err.type, "message": err.message, "cause": str(err.cause),
                                               "seed": err.seed, "traceback": err.traceback},
            "artifacts": [{"seed": a.seed, "name": a.name, "kind": a.kind, "key": a.key, "sha256": a.sha256,
                           **({} if a.fingerprint is None else {"fingerprint": a.fingerprint})}
                          for a in self.artifacts],
            "runs": [{"seed": r.seed, "score": r.score, "runtime_s": r.runtime_s, "curve": r.curve,
                      "details": r.details} for r in self.runs],
            "runtime_s": self.runtime_s, "dtype": self.dtype,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        """A record from its JSON form, migrated to the current schema and validated (the one reader);
        RecordError lists everything wrong with it."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a record is a JSON object, not a {type(data).__name__}")
        data = migrate(data)
        found = problems(data)
        if found:
            raise RecordError("; ".join(found))
        err, info = data.get("error"), data["task_info"]
        return cls(
            metric=data["metric"], metric_version=data["metric_version"], task=data["task"],
            task_version=data["task_version"],
            task_info=TaskInfo(info["category"], info["summary"], info["sweep_name"], bool(info["log_x"])),
            scale=data["scale"], seeds=tuple(data["seeds"]), device=str(data.get("device", "")),
            device_name=str(data.get("device_name", "")), packages=dict(data.get("packages") or {}),
            git_commit=str(data.get("git_commit", "")), status=data["status"],
            runs=tuple(SeedRun(r["seed"], float(r["score"]), float(r.get("runtime_s") or 0.0), r.get("curve"),
                               r.get("details") or {}) for r in data["runs"]),
            artifacts=tuple(ArtifactUse(a["seed"], a["name"], a["kind"], a["key"], a["sha256"], a.get("fingerprint"))
                            for a in data.get("artifacts") or []),
            error=None if err is None else CellError(err["type"], err["message"], Cause(err["cause"]),
                                                     err.get("seed"), err.get("traceback") or ""),
            reason=data.get("reason"),
        )


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had no error cause: derive it from the exception type the record names, as schema 1's readers
    did (an InputError was a refusal; the runner's own TimeoutError and WorkerDied a timeout and a crash)."""
    err = data.get("error")
    if isinstance(err, Mapping) and isinstance(err.get("type"), str):
        name = err["type"].rsplit(".", 1)[-1]
        cause = {"InputError": Cause.REFUSAL, "TimeoutError": Cause.TIMEOUT, "WorkerDied": Cause.CRASH}.get(
            name, Cause.FAILURE)
        data = {**data, "error": {**err, "cause": str(cause)}}
    return {**data, "schema": 2}


MIGRATIONS = {1: _v1_to_v2}  # schema n -> a function giving schema n + 1


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form at the current schema, whatever schema it was written at (a newer one is left for
    `problems` to name)."""
    data = dict(data)
    while isinstance(data.get("schema"), int) and data["schema"] in MIGRATIONS:
        data = MIGRATIONS[data["schema"]](data)
    return data


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_score(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0


def _artifact_problems(entries: Any) -> list[str]:
    keys = {"seed": int, "name": str, "kind": str, "key": str, "sha256": str}
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(
            isinstance(a, Mapping) and all(isinstance(a.get(k), t) for k, t in keys.items())
            and isinstance(a.get("fingerprint", {}), Mapping) for a in entries):
        return ["artifacts must be a list of {seed, name, kind, key, sha256[, fingerprint]}"]
    return []


def problems(rec: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a record's JSON form at the current schema (empty when it is valid): types, a status
    from the closed set, finite scores in [0, 1] that agree with the runs, versions, an error with its cause."""
    out = []
    if rec.get("schema") != SCHEMA:
        out.append(f"schema {rec.get('schema')!r}, expected {SCHEMA} (or an older one this version migrates)")
    for key in ("metric", "task", "scale"):
        if not isinstance(rec.get(key), str) or not rec.get(key):
            out.append(f"{key} must be a non-empty string, got {rec.get(key)!r}")
    for key in ("metric_version", "task_version"):
        if not _is_int(rec.get(key), 1):
            out.append(f"{key} must be an integer >= 1, got {rec.get(key)!r}")
    seeds = rec.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(_is_int(s) for s in seeds)):
        out.append(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    info = rec.get("task_info")
    if not (isinstance(info, Mapping) and {"category", "summary", "sweep_name", "log_x"} <= set(info)):
        out.append("task_info must hold category, summary, sweep_name and log_x")
    out += _artifact_problems(rec.get("artifacts"))
    status, runs = rec.get("status"), rec.get("runs")
    if status not in STATUSES:
        out.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if not isinstance(runs, list) or not all(isinstance(r, Mapping) and _is_score(r.get("score")) and
                                             _is_int(r.get("seed")) for r in runs):
        out.append("runs must be a list of {seed, score in [0, 1], ...}")
        runs = None
    if status == "ok":
        if not _is_score(rec.get("score")):
            out.append(f"score {rec.get('score')!r} is not a finite number in [0, 1]")
        if runs is not None and isinstance(seeds, list):
            if [r["seed"] for r in runs] != seeds:
                out.append(f"runs cover seeds {[r['seed'] for r in runs]}, the record says {seeds}")
            elif rec.get("seed_scores") != [r["score"] for r in runs]:
                out.append("seed_scores differ from the runs' scores")
            elif _is_score(rec.get("score")) and abs(rec["score"] - sum(rec["seed_scores"]) / len(runs)) > 1e-12:
                out.append(f"score {rec['score']!r} is not the mean of the seed scores")
    elif status in ("error", "skipped"):
        if rec.get("score") is not None or runs:
            out.append(f"a {status} record holds no score and no runs")
        err = rec.get("error")
        if status == "error" and not (isinstance(err, Mapping) and isinstance(err.get("type"), str)
                                      and isinstance(err.get("message"), str)
                                      and err.get("cause") in set(Cause)):
            out.append(f"an error record needs error.type and error.message strings and a cause among "
                       f"{', '.join(Cause)}")
        if status == "skipped" and not isinstance(rec.get("reason"), str):
            out.append("a skipped record needs its reason")
    return out
