"""The result store: one JSON record per (scale, task, metric id) cell, seeds inside, written atomically.

The record itself (its dataclasses, JSON form, reader, validator and migrations) is `simstress.core.record`'s;
this module puts records, conformance reports and figures in their places under a results root.

Layout under the results root (default `results/`):

    records/<scale>/<task>/<metric id>.json   one record per cell (the id percent-quoted only where a character
                                              is unsafe in a file name; the id is stored inside too)
    conformance/<metric id>.json              the cached `simstress check` report of each metric
    figures/*.png                             written by `simstress leaderboard`

Which records are current is the plan's question (`plan.is_current`); anything else (missing, unreadable,
stale) is recomputed. Files are replaced atomically (temporary file in the same folder, fsync, rename), so an
interrupted run leaves every record either old and whole or new and whole.
JSON has no NaN: non-finite floats are written as null.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, unquote

import pandas as pd

from simstress.core.files import jsonable, write_json_atomic
from simstress.core.record import Record, RecordError, problems

CONFORMANCE_SCHEMA = 1  # the cached conformance reports' own format
# Characters of metric ids kept verbatim in file names: `rbf_cka[sigma=0.5]` stays readable.
_SAFE = "[]=,.-_+"


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


class ResultStore:
    """Reads and writes records and cached conformance reports under one results root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail early, with a message saying which folder and why, when records cannot be written."""
        folder = self.root / "records"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise RecordError(f"cannot write records in {folder}: {exc.strerror or exc}; pass --results DIR with a "
                              f"folder you can write to") from None

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    def record_path(self, scale: str, task: str, metric_id: str) -> Path:
        return self.root / "records" / scale / task / metric_filename(metric_id)

    def conformance_path(self, metric_id: str) -> Path:
        return self.root / "conformance" / metric_filename(metric_id)

    @staticmethod
    def _read_record(path: Path, scale: str, task: str, metric_id: str) -> Record:
        """The record at `path`, validated; RecordError lists everything wrong with it."""
        data = read_json(path)
        try:
            rec = Record.from_json(data)
        except RecordError as exc:
            found = [str(exc)]
        else:
            where = (rec.scale, rec.task, rec.metric)
            found = [] if where == (scale, task, metric_id) else [
                f"it describes cell {where}, but its path is that of {(scale, task, metric_id)}"]
        if found:
            raise RecordError(f"{path}: " + "; ".join(found) + f". `simstress run --scale {scale}` recomputes it")
        return rec

    def load_record(self, scale: str, task: str, metric_id: str) -> Record | None:
        """The stored record, or None when there is none; RecordError when it is unreadable or misplaced."""
        path = self.record_path(scale, task, metric_id)
        return self._read_record(path, scale, task, metric_id) if path.exists() else None

    def save_record(self, record: Record) -> Path:
        data = record.to_json()
        found = problems(data)
        if found:  # a bug upstream: never write what the reader would refuse
            raise RecordError(f"refusing to write an invalid record of {record.metric} × {record.task}: "
                              + "; ".join(found))
        path = self.record_path(record.scale, record.task, record.metric)
        write_json_atomic(path, data)
        return path

    def records(self, scale: str) -> list[Record]:
        """Every record of a scale, in path order; one RecordError naming every invalid file, with its problems."""
        found, bad = [], []
        for path in sorted((self.root / "records" / scale).glob("*/*.json")):
            try:
                found.append(self._read_record(path, scale, path.parent.name, metric_from_filename(path.name)))
            except RecordError as exc:
                bad.append(str(exc))
        if bad:
            raise RecordError(f"{len(bad)} invalid record(s):\n" + "\n".join(f"  {b}" for b in bad))
        return found

    def unknown(self, metric_known: Callable[[str], bool], task_known: Callable[[str], bool]) -> list[Path]:
        """Record files (every scale) and conformance reports of metric ids or tasks that are not registered."""
        found = [p for p in sorted((self.root / "records").glob("*/*/*.json"))
                 if not (metric_known(metric_from_filename(p.name)) and task_known(p.parent.name))]
        return found + [p for p in sorted((self.root / "conformance").glob("*.json"))
                        if not metric_known(metric_from_filename(p.name))]

    def load_card(self, kind: str, key: str) -> dict[str, Any] | None:
        """The card of artifact `<kind>/<key>` (`simstress.core.artifacts`), None when it is missing; RecordError
        when it is unreadable. A key that is not an artifact key (hex digits) names nothing under the root."""
        path = self.root / kind / key / "card.json"
        if not (re.fullmatch(r"[0-9a-f]+", key) and path.is_file()):
            return None
        return read_json(path)

    def load_conformance(self, metric_id: str) -> dict[str, Any] | None:
        path = self.conformance_path(metric_id)
        return read_json(path) if path.exists() else None

    def save_conformance(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.conformance_path(report["metric"]), report)
