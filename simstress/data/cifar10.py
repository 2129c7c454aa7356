"""CIFAR-10 (Krizhevsky 2009) from a local folder of the standard python pickle batches; nothing is downloaded.

The folder (named by $SIMSTRESS_CIFAR10, usually `cifar-10-batches-py`) holds `data_batch_1` … `data_batch_5`
(train, 10k each) and `test_batch` (10k): pickled dicts with b"data" (uint8, rows of 3072 = 3 planes of 32×32)
and b"labels". The dataset's identity is the sha256 of those files.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

from .idx import DataError, sha256_file
from .images import ImageSet

ENV = "SIMSTRESS_CIFAR10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # of the 50k training images in [0, 1]
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
REMEDY = (f"set {ENV} to the folder of the CIFAR-10 python batches (`cifar-10-batches-py`, from "
          f"https://www.cs.toronto.edu/~kriz/cifar.html; simstress never downloads it)")


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch {path}; {REMEDY}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as exc:  # unpickling reports corruption with many exception types
        raise DataError(f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc}); {REMEDY}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(f"{path} holds data {data.shape} and labels {labels.shape}; expected (n, 3072) and (n,)")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path} holds labels outside 0..9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar10(split: str = "train") -> ImageSet:
    """One CIFAR-10 split ("train": the five data batches, "test": the test batch) from $SIMSTRESS_CIFAR10."""
    if split not in BATCHES:
        raise ValueError(f"CIFAR-10 has splits {tuple(BATCHES)}, not {split!r}")
    if not os.environ.get(ENV):
        raise DataError(f"CIFAR-10 is not configured; {REMEDY}")
    folder = Path(os.environ[ENV])
    parts = [_batch(folder / name) for name in BATCHES[split]]
    identity = hashlib.sha256("".join(sha256_file(folder / n) for n in BATCHES[split]).encode()).hexdigest()
    return ImageSet("cifar10", split, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                    CLASSES, identity, MEAN, STD)
