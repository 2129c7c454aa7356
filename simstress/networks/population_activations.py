"""Activations of population members on test images, extracted once per (member, checkpoint) and cached.

The artifact kind `population_activations` (`results/population_activations/<key>/activations.pt`, git-ignored:
rebuilt from the committed weights in seconds) holds every named layer (`timm_models.layer_names`) of one member,
at its final weights or one checkpoint, on a stratified pool of test images, reduced (`activations.reduce`:
`pool`, `pool<k>` or `flatten`), in float32, with the pool's labels and indices. The test condition is `clean`,
or `randomised_shortcut` (every image carries a shortcut square of a uniformly drawn class: the shortcut is
present but says nothing). The key hashes the member's key (its input), the checkpoint, the pool, the condition
and the reduction: everything that determines the bytes. The grounding tasks read the layers from here, so a
grid of pairs costs one forward pass per member, never one per metric.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.data import load_images

from .activations import full_float32, reduce
from .population import load_member, white_pixel
from .population_training import add_shortcut, shortcut_codes
from .timm_models import forward_layers, layer_names
from .training import EVAL_BATCH, INPUT_SIZE

KIND = "population_activations"
CONDITIONS = ("clean", "randomised_shortcut")


def activations_spec(member: ArtifactSpec, *, images: Mapping[str, Any], step: int | None = None,
                     condition: str = "clean", reduction: str = "pool") -> ArtifactSpec:
    """Every layer of `member` (at checkpoint `step`, or its final weights) on the test pool `images`
    ({"dataset", "per_class", "seed"}) under `condition`, reduced by `reduction`."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    params = {"step": step, "images": dict(images), "condition": condition, "reduction": reduction}
    return ArtifactSpec(KIND, params, (("member", member),))


def pool_images(images: Mapping[str, Any], condition: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray, str]:
    """The pool's normalised images (n, c, 32, 32) under `condition`, its labels, indices and the split's sha256."""
    test = load_images(images["dataset"], "test")
    index = test.stratified(images["per_class"], images["seed"])
    sample = test.subset(index)
    x = sample.tensor(INPUT_SIZE)
    if condition == "randomised_shortcut":
        codes = shortcut_codes(sample.labels, None, np.random.default_rng([images["seed"], 19]), len(test.classes))
        x = add_shortcut(x, codes, white_pixel(test))
    return x, sample.labels, index, test.sha256


@artifact_builder(KIND, version=1)
def build_activations(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out, device: str) -> dict:
    """Every layer of one member on one pool, in float32, with what identifies them."""
    member = inputs["member"]
    model = load_member(member, params["step"], device)
    x, labels, index, sha = pool_images(params["images"], params["condition"])
    names = layer_names(model)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.inference_mode(), full_float32():
        for i in range(0, len(x), EVAL_BATCH):
            for name, a in forward_layers(model, x[i:i + EVAL_BATCH].to(device)).items():
                parts[name].append(reduce(a, params["reduction"]).float().cpu())
    layers = {n: torch.cat(parts[n]).clone() for n in names}  # outside inference mode: ordinary tensors
    bad = [n for n, a in layers.items() if not torch.isfinite(a).all()]
    if bad:
        raise ArtifactError(f"{member.card['name']} gave non-finite activations in {bad}")
    torch.save({"layers": layers, "labels": torch.from_numpy(labels), "index": torch.from_numpy(index)},
               out / "activations.pt")
    accuracy = float((layers["logits"].argmax(1).numpy() == labels).mean())
    return {"member": member.card["name"], "step": params["step"], "n": len(x), "test_sha256": sha,
            "layers": names, "widths": {n: a.shape[1] for n, a in layers.items()}, "pool_accuracy": accuracy}


def load_activations(artifact: Artifact) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The layers ({name: (n, features) float32}) and labels (n,) a population activations artifact holds."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not a population activations artifact")
    data = torch.load(artifact.file("activations.pt"), map_location="cpu", weights_only=True)
    return data["layers"], data["labels"]
