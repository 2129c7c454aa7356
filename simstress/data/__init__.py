"""Image data on local disk, never downloaded: Fashion-MNIST (Debian's package, or a committed slice), CIFAR-10.

    from simstress.data import load_images
    test = load_images("fashion_mnist", "test")    # ImageSet: uint8 images (n, h, w, c), int64 labels, sha256
    x = test.tensor(32)                            # normalised float32 (n, c, 32, 32), zero-padded

Names: `fashion_mnist` (full set, Debian's files or $SIMSTRESS_FASHION_MNIST), `fashion_mnist_slice` (the
stratified slice that ships with simstress: tests and smoke runs), `cifar10` (the python pickle batches in a
folder the user has, named by $SIMSTRESS_CIFAR10).
"""

from __future__ import annotations

from typing import Callable

from . import cifar10, fashion_mnist
from .idx import DataError
from .images import ImageSet

DATASETS: dict[str, Callable[[str], ImageSet]] = {
    "fashion_mnist": fashion_mnist.fashion_mnist,
    "fashion_mnist_slice": fashion_mnist.fashion_mnist_slice,
    "cifar10": cifar10.cifar10,
}


def load_images(name: str, split: str) -> ImageSet:
    """One split ("train" or "test") of a dataset named in `DATASETS`; `DataError` says how to supply its files."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}") from None
    return loader(split)


__all__ = ["DATASETS", "DataError", "ImageSet", "load_images"]
