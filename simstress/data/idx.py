"""Reader of the IDX format (LeCun's MNIST files, gzip-compressed), numpy only.

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one big-endian uint32
per dimension, then the values in C order. Every file is checked against what it must hold (type, shape) and,
where known, its sha256; a file that is missing, truncated or corrupt raises `DataError` naming it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from simstress.core.files import EnvironmentFault, sha256_file


class DataError(EnvironmentFault):
    """A data file that is missing, truncated, corrupt or not the expected one; the message says what to do."""


UBYTE = 0x08


def read_idx(path: Path, shape: tuple[int, ...], *, sha256: str | None = None, remedy: str = "") -> np.ndarray:
    """The uint8 array of shape `shape` stored in the gzip-compressed IDX file `path`.

    `sha256` (of the compressed file), when given, must match; `remedy` is appended to every error message
    (e.g. the command that installs the file).
    """
    hint = f"; {remedy}" if remedy else ""
    if not path.is_file():
        raise DataError(f"missing data file {path}{hint}")
    if sha256 is not None and (found := sha256_file(path)) != sha256:
        raise DataError(f"{path} is not the expected file (sha256 {found[:16]}…, expected {sha256[:16]}…): "
                        f"truncated, corrupt or another version{hint}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}){hint}") from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != UBYTE:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4].hex()}){hint}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header{hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims != tuple(shape):
        raise DataError(f"{path} holds shape {dims}, expected {tuple(shape)}{hint}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes, expected {expected} for shape {dims}: truncated or "
                        f"corrupt{hint}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file (deterministic bytes: no name or time in the header)."""
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx stores uint8 arrays, got {array.dtype}")
    header = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(header + np.ascontiguousarray(array).tobytes())
