"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747; MIT licence): 70k 28×28 grey images, 10 classes.

The full set is read from the files of Debian's package `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist), or from the folder named by $SIMSTRESS_FASHION_MNIST holding the same four
`*-idx?-ubyte.gz` files; each file's sha256 is checked. A seeded, stratified slice (300 training and 100 test
images per class, drawn from the full set by `write_slice`) ships inside the package for tests and smoke runs.
Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .idx import DataError, read_idx, sha256_file, write_idx
from .images import ImageSet

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV = "SIMSTRESS_FASHION_MNIST"
SLICE_DIR = Path(__file__).with_name("fashion_mnist_slice")
INSTALL = (f"install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set {ENV} to a "
           f"folder holding the four Fashion-MNIST .gz files")
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
# Per-pixel statistics of the 60k training images in [0, 1] (computed from the files; the 28×28 image, no padding).
MEAN, STD = (0.2860,), (0.3530,)
SIZES = {"train": 60000, "test": 10000}
PREFIX = {"train": "train", "test": "t10k"}
# sha256 of the released files (identical in Debian's package and the upstream repository).
SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
SLICE_PER_CLASS = {"train": 300, "test": 100}
SLICE_SEED = 0
SLICE_SHA256 = {
    "train-images-idx3-ubyte.gz": "feb8d221b46db44141fc5f16a32ae2c2de17e9cae72727c47057581e43fb1061",
    "train-labels-idx1-ubyte.gz": "029c897092512c55f0ac528472e244484c29b7eed12c4276844b49afc8929039",
    "t10k-images-idx3-ubyte.gz": "6499a71a507c211f9936d76ab7aaf7f1a3adc7414bbcc85b9dca6a652359ff2a",
    "t10k-labels-idx1-ubyte.gz": "e40d581753b3d42a2355520786ad5fd67028479de6c6e761e458b051543c005b",
}


def data_dir() -> Path:
    """Where the full set is read from: $SIMSTRESS_FASHION_MNIST when set, else Debian's folder."""
    return Path(os.environ[ENV]) if os.environ.get(ENV) else DEBIAN_DIR


def _files(split: str) -> tuple[str, str]:
    if split not in SIZES:
        raise ValueError(f"Fashion-MNIST has splits {tuple(SIZES)}, not {split!r}")
    return f"{PREFIX[split]}-images-idx3-ubyte.gz", f"{PREFIX[split]}-labels-idx1-ubyte.gz"


def _identity(checksums: dict[str, str], split: str) -> str:
    return hashlib.sha256("".join(checksums[f] for f in _files(split)).encode()).hexdigest()


def _read(folder: Path, split: str, n: int, checksums: dict[str, str], name: str, remedy: str) -> ImageSet:
    images_file, labels_file = _files(split)
    images = read_idx(folder / images_file, (n, 28, 28), sha256=checksums[images_file], remedy=remedy)
    labels = read_idx(folder / labels_file, (n,), sha256=checksums[labels_file], remedy=remedy)
    if labels.max() >= len(CLASSES):
        raise DataError(f"{folder / labels_file} holds label {labels.max()}; Fashion-MNIST has 10 classes; {remedy}")
    return ImageSet(name, split, images[..., None], labels.astype(np.int64), CLASSES, _identity(checksums, split),
                    MEAN, STD)


def fashion_mnist(split: str = "train") -> ImageSet:
    """The full Fashion-MNIST split ("train": 60k, "test": 10k), verified against the released sha256."""
    _files(split)
    return _read(data_dir(), split, SIZES[split], SHA256, "fashion_mnist", INSTALL)


def fashion_mnist_slice(split: str = "train") -> ImageSet:
    """The committed slice: 300 training / 100 test images per class, drawn by `write_slice` (seed 0)."""
    _files(split)
    n = SLICE_PER_CLASS[split] * len(CLASSES)
    return _read(SLICE_DIR, split, n, SLICE_SHA256, "fashion_mnist_slice",
                 "the slice ships with simstress: reinstall it or restore simstress/data/fashion_mnist_slice/")


def write_slice(out: Path, seed: int = SLICE_SEED) -> dict[str, str]:
    """Draw the stratified slice from the full set into `out` (the committed one: seed 0); returns file sha256s."""
    out.mkdir(parents=True, exist_ok=True)
    for split, per_class in SLICE_PER_CLASS.items():
        full = fashion_mnist(split)
        index = full.stratified(per_class, seed)
        images_file, labels_file = _files(split)
        write_idx(out / images_file, full.images[index, :, :, 0])
        write_idx(out / labels_file, full.labels[index].astype(np.uint8))
    return {f: sha256_file(out / f) for f in SHA256}
