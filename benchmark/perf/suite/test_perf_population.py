"""The population's work: a training step of each architecture family, and the grid of pairs of a grounding task.

A training step is the population's recipe (`networks.population_training`: AdamW, clipping, channels-last) on
a batch of 128 random images of the padded Fashion-MNIST shape (1, 32, 32), at the default scale's sizes, for
each family (M1, ResNet, ViT, MobileNet). The grid is `accuracy_grounding`'s pairs at the default scale's shape
(four families; three members and four checkpoints each; 1,000 images, widths of their penultimate layers)
from representations held once in memory, as the task reads them from its activation artifacts: linear CKA
over every pair, with no forward pass inside the grid. Selected with --metrics 'networks:population'.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from simstress import get_metric
from simstress.benchmark.perf.grid import sync
from simstress.networks.population_training import AUGMENTATIONS, augment
from simstress.networks.timm_models import FAMILIES, create

from .conftest import skip_unless_runs

pytestmark = pytest.mark.perf

BATCH, IMAGES = 128, 1000
PENULTIMATE = {"m1": 64, "resnet": 128, "vit": 48, "mobilenet": 128}
PER_FAMILY = 7  # three final members and four checkpoints


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("family", FAMILIES)
def test_population_training_step(benchmark, family: str, device: str) -> None:
    skip_unless_runs("networks:population", device)
    net = create(family, "small", 0, 1, 10).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4, amsgrad=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 1, 32, 32, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), generator=g).to(device)
    fill = torch.tensor([-0.8])

    def step() -> None:
        loss = nn.functional.cross_entropy(net(augment(x, g, fill, AUGMENTATIONS[2])), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sync(device)

    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    benchmark.extra_info.update({"kind": "network", "name": f"population_train_step[{family}]", "n": BATCH,
                                 "p": 32 * 32, "dtype": "float32", "device": device, "flops": None, "value": None,
                                 "images_per_s": BATCH / benchmark.stats.stats.median})


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_population_pair_grid(benchmark, device: str) -> None:
    skip_unless_runs("networks:population", device)
    g = torch.Generator().manual_seed(0)
    reps = {(f, k): torch.randn(IMAGES, PENULTIMATE[f], generator=g, dtype=torch.float64).to(device)
            for f in FAMILIES for k in range(PER_FAMILY)}
    within = [(a, b) for a, b in itertools.combinations(reps, 2) if a[0] == b[0]]
    cross = [(a, b) for a, b in itertools.combinations(reps, 2) if a[0] != b[0] and a[1] < 5 and b[1] < 5]
    pairs = within + cross
    metric = get_metric("linear_cka")

    def grid() -> None:
        with torch.no_grad():
            for a, b in pairs:
                metric(reps[a], reps[b])
        sync(device)

    benchmark.pedantic(grid, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({"kind": "network", "name": f"population_pair_grid[linear_cka,{len(pairs)} pairs]",
                                 "n": IMAGES, "p": len(pairs), "dtype": "float64", "device": device, "flops": None,
                                 "value": None, "pairs_per_s": len(pairs) / benchmark.stats.stats.median,
                                 # the README's network table reads images per second: image rows compared
                                 "images_per_s": len(pairs) * IMAGES / benchmark.stats.stats.median})
