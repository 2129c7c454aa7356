"""The training recipe of the zoo (Davari et al. 2023's pre-training recipe, adapted to grey 28×28 images).

AdamW (lr 1e-3, weight decay 5e-4, amsgrad), cosine decay of the learning rate at every step to 0 (one cycle, no
warm-up), batch 128, gradient-norm clipping at 1.0; augmentation: random crop of the 32×32 padded image with 4
more pixels of padding, and a horizontal flip with probability 1/2. The weights, the order of the batches and the
augmentation all come from one seed, so one machine gives the same weights for the same seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from simstress.data import ImageSet

from .m1 import INPUT_SIZE

CROP_PAD = 4
EVAL_BATCH = 1000
EVALUATIONS = 10  # test-accuracy points on a training curve (each one is a pass over the test set)


@dataclass(frozen=True)
class Recipe:
    """How a network is trained; every field is part of the network's identity (its artifact key)."""

    epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    clip: float = 1.0
    augment: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def augment(x: torch.Tensor, g: torch.Generator, fill: torch.Tensor) -> torch.Tensor:
    """Random crop (pad CROP_PAD with `fill`, per channel) and random horizontal flip, batched on x's device."""
    n, c, h, w = x.shape
    fill = fill.view(1, c, 1, 1).to(x)
    padded = nn.functional.pad(x - fill, (CROP_PAD,) * 4) + fill
    oy = torch.randint(0, 2 * CROP_PAD + 1, (n,), generator=g).to(x.device)
    ox = torch.randint(0, 2 * CROP_PAD + 1, (n,), generator=g).to(x.device)
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = EVAL_BATCH) -> torch.Tensor:
    """Predicted classes (CPU int64) of `model` in eval mode on `x` (n, c, 32, 32), batched."""
    model.eval()
    return torch.cat([model(x[i:i + batch].to(device)).argmax(1).cpu() for i in range(0, len(x), batch)])


def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    return float((predict(model, x, device) == labels.cpu()).double().mean())


def train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               x: torch.Tensor, y: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the batch (x, y): cross-entropy, gradients clipped to norm `clip`, the schedule
    advanced; the batch's loss and logits, detached (so the caller sums them on the device, without a sync)."""
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return loss.detach(), logits.detach()


def train(model: nn.Module, data: ImageSet, recipe: Recipe, seed: int, device: torch.device, *,
          labels: np.ndarray | None = None, test: ImageSet | None = None, desc: str = "train",
          progress: bool | None = None) -> list[dict[str, Any]]:
    """Train `model` in place on `data` (with `labels` instead of the true ones when given); the per-epoch history.

    History rows: epoch, step, mean training loss and accuracy of the epoch's (augmented) batches, and, about
    EVALUATIONS times over the run and at its end, the test accuracy when `test` is given.
    """
    y_all = torch.from_numpy(np.asarray(data.labels if labels is None else labels, dtype=np.int64))
    if len(y_all) != len(data):
        raise ValueError(f"{len(y_all)} labels for {len(data)} images")
    x_all = data.tensor(INPUT_SIZE).to(device).contiguous(memory_format=torch.channels_last)
    y_all = y_all.to(device)
    x_test = test.tensor(INPUT_SIZE) if test is not None else None
    y_test = torch.from_numpy(test.labels) if test is not None else None
    fill = -torch.tensor(data.mean) / torch.tensor(data.std)  # a black pixel, normalised
    g = torch.Generator().manual_seed(seed)
    model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, amsgrad=True)
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs * steps_per_epoch)
    eval_every = max(1, recipe.epochs // EVALUATIONS)
    history: list[dict[str, Any]] = []
    # progress=None leaves the bar to tqdm's defaults, so TQDM_DISABLE=1 (`simstress --quiet`) silences it.
    shown = {} if progress is None else {"disable": not progress}
    bar = tqdm(total=recipe.epochs * steps_per_epoch, desc=desc, unit="step", dynamic_ncols=True, leave=False,
               **shown)
    start = time.perf_counter()
    with bar:
        for epoch in range(recipe.epochs):
            model.train()
            order = torch.randperm(len(data), generator=g).to(device)
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            for i in range(steps_per_epoch):
                idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
                x, y = x_all[idx], y_all[idx]
                if recipe.augment:
                    x = augment(x, g, fill)
                loss, logits = train_step(model, opt, sched, x, y, recipe.clip)
                loss_sum += loss * len(idx)
                correct += (logits.argmax(1) == y).sum()
                bar.update(1)
            row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
                   "train_loss": float(loss_sum) / len(data), "train_batch_accuracy": int(correct) / len(data),
                   "seconds": round(time.perf_counter() - start, 2)}
            if x_test is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == recipe.epochs):
                row["test_accuracy"] = accuracy(model, x_test, y_test, device)
            tested = [h["test_accuracy"] for h in (*history, row) if "test_accuracy" in h]
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{tested[-1]:.3f}" if tested else "-")
            history.append(row)
    model.eval()
    return history
