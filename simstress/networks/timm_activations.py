"""Activations of timm models on real images: staged through timm's own API, reduced, cached as artifacts.

Layers (names used by every pretrained task and card):
- `stage0` … `stage<k>`: the model's feature pyramid, `model.forward_intermediates(x, intermediates_only=True)`,
  one map per entry of `model.feature_info` (for EfficientNet: reductions 2, 4, 8, 16, 32 of the input);
- `pre_logits`: `model.forward_head(features, pre_logits=True)`, the vector the classifier reads (1280-d for the
  Lite models);
- `logits`: the classifier's output (1000 ImageNet classes).
Maps are reduced by the caller's choice (`networks.activations.reduce`: `pool`, `pool<k>` or `flatten`).

Inputs: Fashion-MNIST test images (grey copied to three channels, bicubic-resized to the resolution asked for,
normalised with the model's own data config: mean = std = 0.5 for the `tf_` models), a stratified sample fixed by
its seed; and the scikit-image photos (`photos`), through timm's own evaluation transform.

The artifact kind `activations` (`results/activations/<key>/activations.pt`) holds every layer of one model
(pretrained weights, or a seeded random initialisation) on one image sample at one resolution and reduction, in
float32; its key hashes all of that and, through its `weights` input, the weights' sha256.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.data import load_images

from .activations import full_float32, reduce
from .pretrained import data_config, load_pretrained, random_model, timm_module, weights_spec

KIND = "activations"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # colour photos in scikit-image's wheel


def stage_names(model: nn.Module) -> list[str]:
    return [f"stage{i}" for i in range(len(model.feature_info))]


def layer_names(model: nn.Module) -> list[str]:
    return [*stage_names(model), "pre_logits", "logits"]


def input_resolution(resolution: int | str, cfg: Mapping[str, Any]) -> int:
    """Pixels a side: `resolution` itself, or the model's own input size for "native"."""
    if resolution == "native":
        return int(cfg["input_size"][-1])
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16:
        raise ValueError(f"resolution must be 'native' or an int ≥ 16 pixels, got {resolution!r}")
    return resolution


def dataset_images(dataset: str, per_class: int, seed: int, resolution: int, mean: tuple[float, ...],
                   std: tuple[float, ...]) -> tuple[torch.Tensor, np.ndarray, np.ndarray, str]:
    """A stratified sample of a dataset's test split as model input (n, 3, r, r), its labels, indices and sha256."""
    test = load_images(dataset, "test")
    index = test.stratified(per_class, seed)
    x = torch.from_numpy(np.array(test.images[index])).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.contiguous(), test.labels[index], index, test.sha256


def photos(model: nn.Module, names: tuple[str, ...] = PHOTOS) -> torch.Tensor:
    """scikit-image's colour photos through timm's evaluation transform for `model` (resize, centre crop, norm)."""
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the photos ship in scikit-image: pip install scikit-image") from None
    from PIL import Image

    timm = timm_module()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    return torch.stack([transform(Image.fromarray(getattr(skimage.data, n)()).convert("RGB")) for n in names])


def extract(model: nn.Module, images: torch.Tensor, *, reduction: str = "pool", batch_size: int = 100,
            device: torch.device | str = "cpu", desc: str | None = None) -> dict[str, torch.Tensor]:
    """{layer: (n, features) float32 on the CPU} of every layer (module docstring) of `model` on `images`, batched,
    under `torch.inference_mode()`, computed on `device` in full float32."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (n, 3, h, w), got shape {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    model = model.to(device).eval()
    names = layer_names(model)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.inference_mode(), full_float32():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False, dynamic_ncols=True):
            x = images[i:i + batch_size].to(device, torch.float32)
            final, stages = model.forward_intermediates(x)
            pre = model.forward_head(final, pre_logits=True)
            for name, out in zip(names, [*stages, pre, model.get_classifier()(pre)]):
                parts[name].append(reduce(out, reduction).float().cpu())
    return {n: torch.cat(parts[n]) for n in names}  # outside inference mode: ordinary tensors for any later use


def activations_spec(model: str, *, init: str, images: Mapping[str, Any], resolution: int | str,
                     reduction: str = "pool") -> ArtifactSpec:
    """One model's layers on an image sample: `init` is "pretrained" or "random:<seed>"; `images` names the sample
    ({"dataset", "per_class", "seed"})."""
    params = {"model": model, "init": init, "images": dict(images), "resolution": resolution, "reduction": reduction}
    if init == "pretrained":
        return ArtifactSpec(KIND, params, (("weights", weights_spec(model)),))
    if init.startswith("random:") and init[7:].isdigit():
        return ArtifactSpec(KIND, params)
    raise ValueError(f"init must be 'pretrained' or 'random:<seed>', got {init!r}")


def model_for(params: Mapping[str, Any], inputs: Mapping[str, Artifact], device: str) -> nn.Module:
    """The model an activations spec names: the pretrained weights it was given, or its seeded initialisation."""
    if params["init"] == "pretrained":
        return load_pretrained(inputs["weights"], device)
    return random_model(params["model"], int(params["init"].split(":")[1]), device)


@artifact_builder(KIND, version=1)
def build_activations(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out, device: str) -> dict:
    """Every layer of one model on one image sample (float32), with what identifies them."""
    model = model_for(params, inputs, device)
    cfg = data_config(model)
    im = params["images"]
    x, labels, index, sha = dataset_images(im["dataset"], im["per_class"], im["seed"],
                                           input_resolution(params["resolution"], cfg), tuple(cfg["mean"]),
                                           tuple(cfg["std"]))
    start = time.perf_counter()
    acts = extract(model, x, reduction=params["reduction"], device=device,
                   desc=f"{params['model']} ({params['init']}) on {len(x)} images")
    seconds = time.perf_counter() - start
    bad = [n for n, a in acts.items() if not torch.isfinite(a).all()]
    if bad:
        raise ArtifactError(f"{params['model']} ({params['init']}) gave non-finite activations in {bad}")
    torch.save({"layers": acts, "labels": torch.from_numpy(labels), "index": torch.from_numpy(index)},
               out / "activations.pt")
    return {"model": params["model"], "init": params["init"], "n": len(x), "test_sha256": sha,
            "resolution": x.shape[-1],
            "widths": {n: a.shape[1] for n, a in acts.items()}, "data_config": cfg,
            "modules": [f["module"] for f in model.feature_info], "images_per_s": round(len(x) / seconds, 1)}


def load_activations(artifact: Artifact) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The layers ({name: (n, features) float32}) and labels (n,) an activations artifact holds."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not an activations artifact")
    data = torch.load(artifact.file("activations.pt"), map_location="cpu", weights_only=True)
    return data["layers"], data["labels"]
