"""How a population network is trained: the controlled variants (labels, shortcut, augmentation) and the loop.

- Label randomization at rate r: a seeded subset of round(r·n) training images has its labels permuted among
  themselves (class balance kept; at r = 1 the labels carry nothing about the images). Each network draws its
  own subset and permutation from its seed, so networks of one level share the rate, not the noise.
- Shortcut of reliability q: a 2×2 white square in the top padding rows of the 32×32 input (outside the 28×28
  Fashion-MNIST image, so it never covers the garment), at column 1 + 3k for class code k. In training each
  image's code is its label with probability q, otherwise a class drawn uniformly (so at q = 0 it is noise and
  at q = 1 it alone predicts the label). At test time the code is drawn uniformly (`randomised`), or left out.
- Augmentation strength 0–3 (`AUGMENTATIONS`): random crop of the image padded by 0 / 2 / 4 / 6 pixels, a
  horizontal flip from strength 1, Gaussian pixel noise (σ = 0.5 in normalised units) at strength 3. Strength 2
  is the zoo's recipe (`training.augment`: pad 4 and flip).

The loop is the zoo's (`networks.training`): AdamW (amsgrad), cosine decay per step to 0, gradient clipping,
channels-last; one seed decides the order of the batches and the augmentation, and `on_checkpoint(step, model)`
is called at the requested steps (the model in eval mode, back in training mode afterwards).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .training import train_step

SHORTCUT_SIZE = 2  # pixels a side of the shortcut's square
SHORTCUT_STRIDE = 3  # columns between two codes' squares: 10 codes fit the 32-pixel width
NOISE_STD = 0.5


@dataclass(frozen=True)
class Augmentation:
    """One augmentation strength: crop padding (pixels), horizontal flip, Gaussian pixel noise (normalised)."""

    pad: int
    flip: bool
    noise: float


AUGMENTATIONS = (Augmentation(0, False, 0.0), Augmentation(2, True, 0.0), Augmentation(4, True, 0.0),
                 Augmentation(6, True, NOISE_STD))


@dataclass(frozen=True)
class PopulationRecipe:
    """How many steps a population network trains and with what optimiser; part of every network's key."""

    train_images: int  # a stratified subset of the training split (all networks see the same images)
    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    clip: float = 1.0

    @property
    def steps(self) -> int:
        return self.epochs * math.ceil(self.train_images / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def randomize_labels(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """A copy of `labels` with a seeded subset of round(rate·n) of them permuted among themselves."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a label randomization rate is a fraction in [0, 1], got {rate!r}")
    rng = np.random.default_rng([seed, 11])
    out = np.array(labels, copy=True)
    chosen = rng.choice(len(out), round(rate * len(out)), replace=False)
    out[chosen] = out[rng.permutation(chosen)]
    return out


def shortcut_codes(labels: np.ndarray, reliability: float | None, rng: np.random.Generator,
                   classes: int) -> np.ndarray:
    """Each image's shortcut code: its label with probability `reliability`, else a uniform class (None: all
    uniform, the `randomised` test condition)."""
    random = rng.integers(0, classes, len(labels))
    if reliability is None:
        return random
    if not 0.0 <= reliability <= 1.0:
        raise ValueError(f"a shortcut's reliability is a probability in [0, 1], got {reliability!r}")
    keep = rng.random(len(labels)) < reliability
    return np.where(keep, labels, random)


def add_shortcut(x: torch.Tensor, codes: np.ndarray, white: torch.Tensor) -> torch.Tensor:
    """A copy of the normalised images x (n, c, 32, 32) with each image's code drawn as a white square in the
    top rows; `white` is the normalised value of a white pixel per channel."""
    out = x.clone()
    for k in np.unique(codes):
        rows = torch.from_numpy(np.flatnonzero(codes == k))
        col = 1 + SHORTCUT_STRIDE * int(k)
        if col + SHORTCUT_SIZE > x.shape[3]:
            raise ValueError(f"code {k} does not fit a {x.shape[3]}-pixel-wide image")
        out[rows, :, :SHORTCUT_SIZE, col:col + SHORTCUT_SIZE] = white.view(1, -1, 1, 1).to(out)
    return out


def augment(x: torch.Tensor, g: torch.Generator, fill: torch.Tensor, how: Augmentation) -> torch.Tensor:
    """`how` applied to the batch x (n, c, h, w) with the CPU generator g: crop, flip, noise, in that order."""
    n, c, h, w = x.shape
    if how.pad:
        fill = fill.view(1, c, 1, 1).to(x)
        padded = nn.functional.pad(x - fill, (how.pad,) * 4) + fill
        oy = torch.randint(0, 2 * how.pad + 1, (n,), generator=g).to(x.device)
        ox = torch.randint(0, 2 * how.pad + 1, (n,), generator=g).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if how.flip:
        flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if how.noise:
        x = x + how.noise * torch.randn(x.shape, generator=g).to(x)
    return x


def train(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, recipe: PopulationRecipe,
          how: Augmentation, fill: torch.Tensor, seed: int, device: torch.device, *,
          checkpoints: tuple[int, ...] = (), on_checkpoint: Callable[[int, nn.Module], None] | None = None,
          desc: str = "train") -> list[dict[str, Any]]:
    """Train `model` in place on the normalised images x_all (n, c, 32, 32) and labels y_all; the per-epoch
    history (epoch, step, mean loss and accuracy of the epoch's batches, seconds)."""
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(y_all)} labels for {len(x_all)} images")
    bad = [s for s in checkpoints if not 0 < s < recipe.steps]
    if bad:
        raise ValueError(f"checkpoints {bad} are not steps strictly inside the run's {recipe.steps}")
    x_all = x_all.to(device).contiguous(memory_format=torch.channels_last)
    y_all = y_all.to(device)
    g = torch.Generator().manual_seed(seed)
    model.to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, amsgrad=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps)
    per_epoch = math.ceil(len(x_all) / recipe.batch_size)
    history: list[dict[str, Any]] = []
    step, start = 0, time.perf_counter()
    with tqdm(total=recipe.steps, desc=desc, unit="step", dynamic_ncols=True, leave=False) as bar:
        for epoch in range(recipe.epochs):
            order = torch.randperm(len(x_all), generator=g).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            for i in range(per_epoch):
                idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
                x, y = augment(x_all[idx], g, fill, how), y_all[idx]
                loss, logits = train_step(model, opt, sched, x, y, recipe.clip)
                step += 1
                loss_sum += loss * len(idx)
                correct += (logits.argmax(1) == y).sum()
                bar.update(1)
                if step in checkpoints and on_checkpoint is not None:
                    on_checkpoint(step, model.eval())
                    model.train()
            history.append({"epoch": epoch + 1, "step": step, "train_loss": float(loss_sum) / len(x_all),
                            "train_batch_accuracy": int(correct) / len(x_all),
                            "seconds": round(time.perf_counter() - start, 2)})
    return history
