"""Feature extraction from the pretrained timm models: images per second per model and input resolution.

One pass of `networks.timm_activations.extract` (every feature stage average-pooled, the pre-logits and the
logits, under `torch.inference_mode()`) over 200 random images in batches of 100, EfficientNet-Lite0/1/2 at
random initialisation (the time does not depend on the weights or the pixels): 64 px (the pretrained tasks' default
scale) and each model's native input size (224/240/260 px, the full scale). Selected with --metrics 'networks:timm'.
"""

from __future__ import annotations

import pytest
import torch

from simstress.benchmark.perf.grid import sync
from simstress.networks.pretrained import LITE, random_model
from simstress.networks.timm_activations import extract

from .conftest import skip_unless_runs

pytestmark = pytest.mark.perf

IMAGES, BATCH = 200, 100


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("resolution", ["64", "native"])
@pytest.mark.parametrize("model", list(LITE))
def test_timm_feature_extraction(benchmark, model: str, resolution: str, device: str) -> None:
    skip_unless_runs("networks:timm", device)
    net = random_model(model, seed=0, device=device)
    size = net.pretrained_cfg["input_size"][-1] if resolution == "native" else int(resolution)
    images = torch.randn(IMAGES, 3, size, size, generator=torch.Generator().manual_seed(0))

    def one_pass() -> None:
        extract(net, images, reduction="pool", batch_size=BATCH, device=device)
        sync(device)

    benchmark.pedantic(one_pass, rounds=2, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({"kind": "network", "name": f"{model}_features[{size}px]", "n": IMAGES,
                                 "p": size, "dtype": "float32", "device": device, "flops": None, "value": None,
                                 "images_per_s": IMAGES / benchmark.stats.stats.median})
