"""The result store: one JSON record per (scale, task, metric id) cell, seeds inside, written atomically.

Layout under the results root (default `results/`):

    records/<scale>/<task>/<metric id>.json   one record per cell (the id percent-quoted only where a character
                                              is unsafe in a file name; the id is stored inside too)
    conformance/<metric id>.json              the cached `simstress check` report of each metric
    figures/*.png                             written by `simstress leaderboard`

A record is *current* when its schema, metric version, task version, seed list and the content hashes of the
artifacts it used equal what a run asks for; anything else (missing, unreadable, stale) is recomputed. Files are
replaced atomically (temporary file in the same folder, fsync, rename), so an interrupted run leaves every record
either old and whole or new and whole.
JSON has no NaN: non-finite floats are written as null.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd

from simstress.core.files import jsonable, write_json_atomic

SCHEMA = 1
STATUSES = ("ok", "error", "skipped")
# Characters of metric ids kept verbatim in file names: `rbf_cka[sigma=0.5]` stays readable.
_SAFE = "[]=,.-_+"


class RecordError(ValueError):
    """A record file that cannot be read or does not follow the schema."""


def metric_filename(metric_id: str) -> str:
    return quote(metric_id, safe=_SAFE) + ".json"


def metric_from_filename(name: str) -> str:
    """Inverse of `metric_filename`."""
    return unquote(name.removesuffix(".json"))


def curve_to_json(curve: pd.DataFrame | None) -> dict[str, list] | None:
    """A task's curve as {column: values}; None when the task has no curve."""
    if curve is None:
        return None
    if not isinstance(curve, pd.DataFrame):
        raise TypeError(f"a task's curve must be a pandas DataFrame, got {type(curve).__name__}")
    missing = {"x", "similarity"} - set(curve.columns)
    if missing:
        raise ValueError(f"a task's curve needs columns 'x' and 'similarity'; missing {sorted(missing)}")
    return jsonable({str(c): curve[c].tolist() for c in curve.columns})


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"unreadable record {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"record {path} holds a {type(data).__name__}, not a JSON object")
    return data


def is_current(record: dict[str, Any], metric_version: int, task_version: int, seeds: list[int],
               artifacts: list[dict[str, Any]]) -> bool:
    """True when the record answers exactly this question: same versions, seeds and artifact contents."""
    return (
        record["metric_version"] == metric_version
        and record["task_version"] == task_version
        and record["seeds"] == list(seeds)
        and record.get("artifacts", []) == artifacts
    )


class ResultStore:
    """Reads and writes records and cached conformance reports under one results root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def record_path(self, scale: str, task: str, metric_id: str) -> Path:
        return self.root / "records" / scale / task / metric_filename(metric_id)

    def conformance_path(self, metric_id: str) -> Path:
        return self.root / "conformance" / metric_filename(metric_id)

    @staticmethod
    def _read_record(path: Path, scale: str, task: str, metric_id: str) -> dict[str, Any]:
        rec = read_json(path)
        where = (rec.get("scale"), rec.get("task"), rec.get("metric"))
        if rec.get("schema") != SCHEMA or where != (scale, task, metric_id):
            raise RecordError(f"{path} is not a schema-{SCHEMA} record of cell {(scale, task, metric_id)}; "
                              f"`simstress run --scale {scale}` replaces it")
        return rec

    def load_record(self, scale: str, task: str, metric_id: str) -> dict[str, Any] | None:
        """The stored record, or None when there is none; RecordError when it is unreadable or misplaced."""
        path = self.record_path(scale, task, metric_id)
        return self._read_record(path, scale, task, metric_id) if path.exists() else None

    def save_record(self, record: dict[str, Any]) -> Path:
        if record["status"] not in STATUSES:
            raise ValueError(f"record status must be one of {STATUSES}, got {record['status']!r}")
        path = self.record_path(record["scale"], record["task"], record["metric"])
        write_json_atomic(path, record)
        return path

    def records(self, scale: str) -> list[dict[str, Any]]:
        """Every record of a scale, in path order; RecordError names a file that does not belong."""
        return [self._read_record(path, scale, path.parent.name, metric_from_filename(path.name))
                for path in sorted((self.root / "records" / scale).glob("*/*.json"))]

    def load_conformance(self, metric_id: str) -> dict[str, Any] | None:
        path = self.conformance_path(metric_id)
        return read_json(path) if path.exists() else None

    def save_conformance(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.conformance_path(report["metric"]), report)
