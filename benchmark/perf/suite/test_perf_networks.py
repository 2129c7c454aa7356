"""The model zoo's work: an M1 training step, the activation pass, a layer × layer CKA map at the full test set, and
the map forward + backward of one manipulation step.

Inputs are random images of Fashion-MNIST's padded shape (n, 1, 32, 32) and freshly initialised networks: the
time does not depend on the weights or the pixels. The training step is timed in both memory formats
(channels-last is what `networks.training` uses); the activation pass takes the whole 10,000-image test set
through every layer with the tasks' `pool4` reduction; the map is one network against itself over its eight
blocks, exact linear CKA on `pool4` features and the minibatch estimator on the flattened blocks (14,400 features
for block 0), both streamed in batches of 500 images (`simstress.streaming.cka_map`).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simstress import get_metric, streaming
from simstress.benchmark.perf.grid import sync
from simstress.benchmark.perf.measure import PeakMemory
from simstress.networks.activations import activations, reduce
from simstress.networks.m1 import BLOCK_LAYERS, LAYERS, M1
from simstress.tasks.manipulation import ATTACKERS, attack_reduction

from .conftest import skip_unless_runs

pytestmark = pytest.mark.perf

TEST_SET, BATCH = 10_000, 500


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("fmt", ["channels_last", "contiguous"])
@pytest.mark.parametrize("width", [1, 4])
def test_m1_training_step(benchmark, width: int, fmt: str, device: str) -> None:
    skip_unless_runs("networks:m1", device)
    memory = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    net = M1(width).to(device).to(memory_format=memory).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4, amsgrad=True)
    x = torch.randn(128, 1, 32, 32, device=device).contiguous(memory_format=memory)
    y = torch.randint(0, 10, (128,), device=device)

    def step() -> None:
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sync(device)

    benchmark.pedantic(step, rounds=20, iterations=1, warmup_rounds=3)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update({"kind": "network", "name": f"m1_train_step[w={width},{fmt}]", "n": 128,
                                 "p": 32 * 32, "dtype": "float32", "device": device, "flops": None, "value": None,
                                 "images_per_s": 128 / t})


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_m1_activation_pass(benchmark, device: str) -> None:
    skip_unless_runs("networks:m1", device)
    torch.manual_seed(0)
    net = M1(1).to(device).eval()
    images = torch.randn(TEST_SET, 1, 32, 32)
    widths = {}

    def one_pass() -> None:
        with PeakMemory(device) as probe:
            out = activations(net, images, LAYERS, reduction="pool4", batch_size=BATCH, device=device)
        widths.update({k: v.shape[1] for k, v in out.items()}, peak=probe.peak)

    benchmark.pedantic(one_pass, rounds=3, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.median
    peak = widths.pop("peak")
    benchmark.extra_info.update({"kind": "network", "name": "m1_activations[pool4, 10 layers]", "n": TEST_SET,
                                 "p": sum(widths.values()), "dtype": "float32", "device": device, "flops": None,
                                 "value": None, "images_per_s": TEST_SET / t, "peak_bytes": peak})


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("route", ["exact:pool4", "minibatch:flatten"])
def test_m1_layer_map(benchmark, route: str, device: str) -> None:
    skip_unless_runs("networks:m1", device)
    estimator, how = route.split(":")
    torch.manual_seed(0)
    net = M1(1).to(device).eval()
    images = torch.randn(TEST_SET, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    result = {}

    def batches():
        with torch.no_grad():
            for i in range(0, TEST_SET, BATCH):
                out = net.layers(images[i:i + BATCH].to(device), BLOCK_LAYERS)
                blocks = [reduce(out[name], how) for name in BLOCK_LAYERS]
                yield blocks, blocks

    def one_map() -> None:
        result["map"] = streaming.cka_map(batches(), estimator=estimator, device=device)

    benchmark.pedantic(one_map, rounds=1, iterations=1, warmup_rounds=0)
    m = result["map"]
    assert m.shape == (8, 8) and torch.allclose(m.diagonal(), torch.ones(8, dtype=m.dtype), atol=1e-6)
    benchmark.extra_info.update({"kind": "network", "name": f"m1_cka_map[{route}]", "n": TEST_SET, "p": 8,
                                 "dtype": "float32", "device": device, "flops": None, "value": None,
                                 "images_per_s": TEST_SET / benchmark.stats.stats.median})


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("reduction", ["pool", "flatten"])
@pytest.mark.parametrize("attacker", ATTACKERS)
def test_m1_map_forward_backward(benchmark, attacker: str, reduction: str, device: str) -> None:
    """One manipulation step's map: M1's eight blocks on a batch of 128, the attacker's 8×8 map through the
    registry (`networks.maps.layer_map`, linear CKA by its unbiased minibatch estimator), logcosh loss, backward.
    Every default attacker, on both reductions; its attacks train on the one `attack_reduction` names."""
    skip_unless_runs("networks:m1", device)
    if reduction == "flatten" and get_metric(attacker).spec.name in ("cca_mean", "cca_r2", "svcca", "pwcca"):
        pytest.skip("CCA needs fewer features than the batch's 128 images")
    from simstress.networks.manipulation import logcosh
    from simstress.networks.maps import estimator, layer_map, target_map

    torch.manual_seed(0)
    net = M1(1).to(device).to(memory_format=torch.channels_last).train()  # as the attacks train it
    metric = estimator(attacker)
    x = torch.randn(128, 1, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    T = target_map("identity").to(device, torch.float32)

    def step() -> None:
        out = net.layers(x, BLOCK_LAYERS)
        M = layer_map(metric, [reduce(out[b], reduction) for b in BLOCK_LAYERS])
        net.zero_grad(set_to_none=True)
        logcosh(M - T).mean().backward()
        sync(device)

    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    trained = attack_reduction(attacker)
    benchmark.extra_info.update({"kind": "network", "name": f"m1_map_step[{attacker},{reduction}"
                                 f"{', the attacks' if reduction == trained else ''}]", "n": 128,
                                 "p": 8, "dtype": "float32", "device": device, "flops": None, "value": None,
                                 "images_per_s": 128 / benchmark.stats.stats.median})
