"""`ImageSet`: labelled images of one split of a dataset, with the identity and statistics models need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a dataset: uint8 images (n, h, w, c), int64 labels (n,), and what identifies them.

    `sha256` identifies the source files (a network's card names it); `mean` and `std` are the per-channel
    statistics of the training split in [0, 1], the normalisation every model of the suite uses.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    sha256: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (n, h, w, c), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels {self.labels.shape} do not match {len(self.images)} images")
        if len(self.mean) != self.images.shape[3] or len(self.std) != self.images.shape[3]:
            raise ValueError("mean and std need one value per channel")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images at `index`, same identity (the caller records which ones)."""
        return ImageSet(self.name, self.split, self.images[index], self.labels[index], self.classes, self.sha256,
                        self.mean, self.std)

    def stratified(self, per_class: int, seed: int) -> np.ndarray:
        """Sorted indices of `per_class` images of every class, drawn without replacement with `seed`."""
        rng = np.random.default_rng(seed)
        picks = []
        for k in range(len(self.classes)):
            members = np.flatnonzero(self.labels == k)
            if len(members) < per_class:
                raise ValueError(f"{self.name}/{self.split} has {len(members)} images of class {k}, "
                                 f"fewer than the {per_class} asked for")
            picks.append(rng.choice(members, per_class, replace=False))
        return np.sort(np.concatenate(picks))

    def tensor(self, size: int = 32) -> torch.Tensor:
        """Normalised float32 images (n, c, size, size): zero-padded (background) when smaller, never resized.

        Pixels are scaled to [0, 1], padded symmetrically with 0 and normalised per channel, so the padding reads
        as the background of a Fashion-MNIST image (its pixels are 0 there too).
        """
        n, h, w, c = self.images.shape
        if h > size or w > size:
            raise ValueError(f"{self.name} images are {h}×{w}, larger than the network input {size}×{size}")
        x = torch.from_numpy(np.array(self.images)).permute(0, 3, 1, 2).float() / 255.0  # a writable copy
        top, left = (size - h) // 2, (size - w) // 2
        x = torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top))
        mean = torch.tensor(self.mean).view(1, c, 1, 1)
        std = torch.tensor(self.std).view(1, c, 1, 1)
        return (x - mean) / std
