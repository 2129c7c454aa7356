"""Activations of a network on images: the requested layers, reduced, batched, without gradients, in float32.

Reductions (the caller says which; every metric of a task then sees the same representations):
- `flatten`: every unit (block 0 of M1 at w = 1 is 16·30·30 = 14,400 features per image);
- `pool`: global average over space (channels only);
- `pool<k>` (e.g. `pool4`): average pooling to at most k×k cells, then flattened (a layer already at most k×k is
  kept whole), which keeps coarse spatial layout at a fraction of the width.
Vectors (`pooled`, `logits`) pass through every reduction unchanged. The result lives on the CPU unless `out_device`
says otherwise, so wide layers of a large image set never pile up on an accelerator.

Memory: flattened M1 blocks of the whole 10,000-image test set are 1.6 GB in float32 (w = 1) and this function
would hold them all; the zoo's tasks therefore subsample images by scale and pool (`tasks/zoo.py`), and a map over
the full test set streams batches of `model.layers` through `simstress.streaming.cka_map` instead (as
`simstress perf` does).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

_POOL_K = re.compile(r"pool(\d+)")


class _GradInChannelsLast(torch.autograd.Function):
    """The identity, whose gradient goes back channels-last. A reduction's own gradient is broadcast (pooling) or
    laid out channels-first (flattening); autograd adds it to the next block's channels-last gradient, and the
    mixed layouts sent ReLU's and BatchNorm's backward down a strided path: 13 ms of a 56 ms map step of M1."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        return a.view_as(a)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def reduce(a: torch.Tensor, how: str) -> torch.Tensor:
    """One layer's batch (n, c, h, w) or (n, d) reduced to (n, features) by `how` (see the module docstring)."""
    if a.ndim == 2:
        return a
    if a.ndim != 4:
        raise ValueError(f"expected (n, c, h, w) or (n, d) activations, got shape {tuple(a.shape)}")
    if a.requires_grad and not a.is_contiguous() and a.is_contiguous(memory_format=torch.channels_last):
        a = _GradInChannelsLast.apply(a)
    if how == "flatten":
        return a.flatten(1)
    if how == "pool":
        return a.mean(dim=(2, 3))
    m = _POOL_K.fullmatch(how)
    if m and int(m.group(1)) >= 1:
        k = int(m.group(1))
        return F.adaptive_avg_pool2d(a, (min(k, a.shape[2]), min(k, a.shape[3]))).flatten(1)
    raise ValueError(f"unknown reduction {how!r}: use 'flatten', 'pool' or 'pool<k>' (e.g. 'pool4')")


@contextmanager
def full_float32() -> Iterator[None]:
    """Convolutions and matrix products in true float32 on CUDA: cuDNN's default TF32 keeps 10 mantissa bits
    (relative error ~1e-3), and activations must carry float32's own rounding (~6e-8), as on the CPU."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


@torch.no_grad()
def activations(model: nn.Module, images: torch.Tensor, layers: Iterable[str], *, reduction: str = "flatten",
                batch_size: int = 500, device: torch.device | str | None = None,
                out_device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """{layer: (n, features) float32} of `model.layers` on `images` (n, c, h, w), in eval mode, batched.

    Runs on `device` (default: where the model's parameters are), in full float32 (`full_float32`); each batch's
    reduced outputs move to `out_device` as they are made.
    """
    names = list(layers)
    if not names:
        raise ValueError("ask for at least one layer")
    if images.ndim != 4:
        raise ValueError(f"images must be (n, c, h, w), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(dev)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with full_float32():
        for i in range(0, len(images), batch_size):
            out = model.layers(images[i:i + batch_size].to(dev, torch.float32), names)
            for n in names:
                parts[n].append(reduce(out[n], reduction).float().to(out_device))
    return {n: torch.cat(parts[n]) for n in names}
