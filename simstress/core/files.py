"""Files that never tear: atomic writes (temporary sibling, fsync, rename) and JSON of plain types only; file
hashes; and `EnvironmentFault`, the error of a file the suite needs that is missing or corrupt."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class EnvironmentFault(RuntimeError):
    """Data, an artifact or its card is missing or corrupt: the environment's fault, not a metric's. A cell that meets
    one is recorded with the cause "environment", and the next run retries it; the message says what to fix."""


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy/torch/pandas values; non-finite floats become None (JSON null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a JSON record: {obj!r}")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a temporary sibling, fsync and rename it over `path`: readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Serialise first (a value JSON cannot hold fails before the disk is touched), then `write_atomic`."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
