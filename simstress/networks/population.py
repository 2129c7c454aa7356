"""The population: networks of several architectures and controlled training variants, built by simstress itself.

Grounding a similarity measure in function needs many models whose functional differences are known (Ding,
Denain & Steinhardt 2021; Klabunde et al. 2025, ReSi). The population holds, at each scale (`POPULATION_SCALES`):

- `base`: every architecture family of the scale (`timm_models`: M1, a ResNet, a ViT, a MobileNet; the default
  leaves the ViT out) from several seeds, on
  the same training images with the same recipe (augmentation strength 2, the zoo's crop and flip);
- checkpoints along training of some base runs (steps at 1/16, 1/8, 1/4 and 1/2 of the run), so that accuracy
  varies smoothly within one architecture;
- controlled variants of one family (`variant_family`), each level from its own seeds: label randomization at
  several rates, a shortcut of several reliabilities, and augmentation strengths (`population_training`).
No two members share initial weights: each (family, variant) takes its own block of seeds.

A member is the artifact kind `population` (`results/population/<key>/`): `weights.pt` (the final state dict),
`checkpoint-<step>.pt` for its checkpoints, and `card.json` with the family, size, variant, recipe, seed and
data sha256, the measured accuracies (train, test, and what its variant needs: the true labels of a randomized
run, the test split with the shortcut true or randomised, the test split under every augmentation strength),
its accuracy bar, each checkpoint's test accuracy, the history and the file sha256s. The build stops with an
error when the member misses its bar (a network that failed to train). Its key hashes everything that
determines it (family, size, variant, seed, dataset, recipe, checkpoints, bar).

    population("default")         # {name: ArtifactSpec}, e.g. "pop-resnet-labels50-s10"
    members("default")            # the same as `Member`s (family, variant, seed, checkpoints)
    load_member(artifact, step)   # the network (final weights, or a checkpoint's), eval mode
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.data import ImageSet, load_images

from .population_training import (
    AUGMENTATIONS,
    PopulationRecipe,
    add_shortcut,
    augment,
    randomize_labels,
    shortcut_codes,
    train,
)
from .timm_models import DESCRIPTIONS, FAMILIES, create
from .training import INPUT_SIZE, accuracy

KIND = "population"
PREFIX = "pop-"
DATA_SEED = 0  # the stratified training subset every member sees
BASE_AUGMENT = 2  # the zoo's crop and flip
CHECKPOINT_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
EVAL_SEED = 0  # test-time shortcut codes and augmentations of the card's measurements
CIFAR_ENV = "SIMSTRESS_CIFAR10"


@dataclass(frozen=True)
class Variant:
    """A training variant: label randomization rate, shortcut reliability (None: no shortcut), augmentation."""

    label_noise: float = 0.0
    shortcut: float | None = None
    augment: int = BASE_AUGMENT

    @property
    def tag(self) -> str:
        """The variant's part of a member's name: base, labels<%>, shortcut<%>, aug<strength>."""
        if self.label_noise:
            return f"labels{round(100 * self.label_noise)}"
        if self.shortcut is not None:
            return f"shortcut{round(100 * self.shortcut)}"
        if self.augment != BASE_AUGMENT:
            return f"aug{self.augment}"
        return "base"

    def to_dict(self) -> dict[str, Any]:
        return {"label_noise": self.label_noise, "shortcut": self.shortcut, "augment": self.augment}


@dataclass(frozen=True)
class PopulationScale:
    """What the population holds at one scale."""

    dataset: str
    size: str  # timm_models size: tiny, small, base
    families: tuple[str, ...]
    seeds: tuple[int, ...]  # base members per family
    recipe: PopulationRecipe
    checkpoint_seeds: tuple[int, ...]  # base runs that keep checkpoints
    variant_family: str
    replicates: int  # members per variant level
    label_rates: tuple[float, ...]  # 0 is the variant family's base members
    shortcut_levels: tuple[float, ...]
    augment_levels: tuple[int, ...]  # BASE_AUGMENT is the variant family's base members
    bars: Mapping[str, float] = field(default_factory=dict)  # min test accuracy of a base member, per family


def _full_dataset() -> str:
    """CIFAR-10 when its folder is named (a GPU's full scale), else Fashion-MNIST."""
    return "cifar10" if os.environ.get(CIFAR_ENV) else "fashion_mnist"


def population_scale(scale: str) -> PopulationScale:
    """The population at `scale`: smoke (seconds, the committed slice), default (two CPU cores), full (a GPU).

    The default leaves the ViT out: on two CPU cores it trains at a quarter of M1's speed and reaches under 40 %
    test accuracy in the default's 235 steps; the full scale has it.
    """
    if scale == "smoke":
        return PopulationScale("fashion_mnist_slice", "tiny", FAMILIES, (0, 1), PopulationRecipe(3000, 2, lr=3e-3),
                               (0,), "resnet", 2, (0.0, 1.0), (0.0, 1.0), (0, BASE_AUGMENT),
                               {"m1": 0.5, "resnet": 0.4, "vit": 0.2, "mobilenet": 0.25})
    if scale == "default":
        return PopulationScale("fashion_mnist", "small", ("m1", "resnet", "mobilenet"), (0, 1, 2),
                               PopulationRecipe(30000, 1, lr=2e-3), (0,), "resnet", 2, (0.0, 0.5, 1.0),
                               (0.0, 0.5, 1.0), (0, BASE_AUGMENT, 3), {"m1": 0.7, "resnet": 0.7, "mobilenet": 0.5})
    if scale == "full":
        return PopulationScale(_full_dataset(), "base", FAMILIES, (0, 1, 2, 3, 4), PopulationRecipe(50000, 20),
                               (0, 1), "resnet", 5, (0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.5, 0.8, 1.0),
                               (0, 1, BASE_AUGMENT, 3), {"m1": 0.85, "resnet": 0.85, "vit": 0.8, "mobilenet": 0.8})
    raise ValueError(f"the population has scales smoke, default and full, not {scale!r}")


@dataclass(frozen=True)
class Member:
    """One network of the population: its name, spec, family, variant, seed and checkpoint steps."""

    name: str
    spec: ArtifactSpec
    family: str
    variant: Variant
    seed: int
    checkpoints: tuple[int, ...]


def _bar(z: PopulationScale, family: str, v: Variant) -> dict[str, Any]:
    """What the member must reach to count as trained: a fully randomized one must sit near chance instead."""
    chance = 0.1
    if v.label_noise == 1.0:
        return {"measure": "test_accuracy", "max": chance + 0.1}
    if v.shortcut is not None:  # its training distribution: the shortcut carries the label
        return {"measure": "test_accuracy_true_shortcut", "min": z.bars[family]}
    # the expected accuracy of a rate-r run falls towards chance with r: a bar relative to that
    return {"measure": "test_accuracy", "min": round(z.bars[family] * (1 - v.label_noise) + chance * v.label_noise, 3)}


def _member(scale: str, family: str, v: Variant, seed: int, checkpoints: tuple[int, ...], robustness: bool) -> Member:
    z = population_scale(scale)
    params = {"family": family, "size": z.size, "variant": v.to_dict(), "seed": seed, "dataset": z.dataset,
              "data_seed": DATA_SEED, "recipe": z.recipe.to_dict(), "checkpoints": list(checkpoints),
              "robustness": robustness, "bar": _bar(z, family, v)}
    return Member(f"{PREFIX}{family}-{v.tag}-s{seed}", ArtifactSpec(KIND, params), family, v, seed, checkpoints)


def checkpoint_steps(scale: str) -> tuple[int, ...]:
    steps = population_scale(scale).recipe.steps
    return tuple(sorted({max(1, round(f * steps)) for f in CHECKPOINT_FRACTIONS}))


def members(scale: str) -> list[Member]:
    """Every member of the population at `scale`, base members first (module docstring)."""
    z = population_scale(scale)
    ckpts = checkpoint_steps(scale)
    out = [_member(scale, f, Variant(), s, ckpts if s in z.checkpoint_seeds else (), f == z.variant_family)
           for f in z.families for s in z.seeds]
    variants = ([Variant(label_noise=r) for r in z.label_rates if r]
                + [Variant(shortcut=q, augment=0) for q in z.shortcut_levels]
                + [Variant(augment=a) for a in z.augment_levels if a != BASE_AUGMENT])
    base_top = max(z.seeds) + 1
    for block, v in enumerate(variants):
        robustness = v.label_noise == 0 and v.shortcut is None
        out += [_member(scale, z.variant_family, v, base_top + block * z.replicates + r, (), robustness)
                for r in range(z.replicates)]
    return out


def population(scale: str) -> dict[str, ArtifactSpec]:
    """Every member's artifact spec at `scale`, by name."""
    return {m.name: m.spec for m in members(scale)}


def white_pixel(data: ImageSet) -> torch.Tensor:
    """The normalised value of a white pixel, per channel."""
    return (1 - torch.tensor(data.mean)) / torch.tensor(data.std)


def training_data(params: Mapping[str, Any]) -> tuple[ImageSet, torch.Tensor, np.ndarray, np.ndarray]:
    """The member's training images (normalised, shortcut drawn in), the labels it fits, and the true labels."""
    train_set = load_images(params["dataset"], "train")
    recipe = PopulationRecipe(**params["recipe"])
    per_class = recipe.train_images // len(train_set.classes)
    subset = train_set.subset(train_set.stratified(per_class, params["data_seed"]))
    v = params["variant"]
    labels = randomize_labels(subset.labels, v["label_noise"], params["seed"])
    x = subset.tensor(INPUT_SIZE)
    if v["shortcut"] is not None:
        codes = shortcut_codes(labels, v["shortcut"], np.random.default_rng([params["seed"], 13]),
                               len(train_set.classes))
        x = add_shortcut(x, codes, white_pixel(train_set))
    return subset, x, labels, subset.labels


def measurements(model: nn.Module, params: Mapping[str, Any], test: ImageSet, device: torch.device) -> dict:
    """The test accuracies the member's card states: clean, and what its variant's ground truth rests on."""
    x, y = test.tensor(INPUT_SIZE), torch.from_numpy(test.labels)
    out = {"test_accuracy": accuracy(model, x, y, device)}
    if params["variant"]["shortcut"] is not None:
        rng = np.random.default_rng([EVAL_SEED, 17])
        white = white_pixel(test)
        out["test_accuracy_true_shortcut"] = accuracy(model, add_shortcut(x, test.labels, white), y, device)
        out["test_accuracy_randomised_shortcut"] = accuracy(
            model, add_shortcut(x, shortcut_codes(test.labels, None, rng, len(test.classes)), white), y, device)
    if params["robustness"]:
        fill = -torch.tensor(test.mean) / torch.tensor(test.std)
        out["test_accuracy_by_augmentation"] = [
            accuracy(model, augment(x, torch.Generator().manual_seed(EVAL_SEED), fill, how), y, device)
            for how in AUGMENTATIONS]
    return out


def check_bar(name: str, bar: Mapping[str, Any], measured: Mapping[str, Any]) -> None:
    value = measured[bar["measure"]]
    if "min" in bar and value < bar["min"]:
        raise ArtifactError(f"population member {name} reached {bar['measure']} = {value:.3f}, below its bar "
                            f"{bar['min']}: it failed to train; give the scale's recipe more steps (or build the "
                            f"full scale on a GPU with --device cuda)")
    if "max" in bar and value > bar["max"]:
        raise ArtifactError(f"population member {name} reached {bar['measure']} = {value:.3f}, above {bar['max']}: "
                            f"with every label permuted it must sit at chance; its labels were not randomized")


@artifact_builder(KIND, version=1)
def build_member(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out, device: str) -> dict[str, Any]:
    """Train one member (keeping its checkpoints), measure it, check its bar, save its weights; card extras."""
    name = f"{PREFIX}{params['family']}-{Variant(**params['variant']).tag}-s{params['seed']}"
    subset, x, labels, true_labels = training_data(params)
    test = load_images(params["dataset"], "test")
    model = create(params["family"], params["size"], params["seed"], subset.channels, len(subset.classes))
    dev = torch.device(device)
    recipe = PopulationRecipe(**params["recipe"])
    checkpoints: list[dict[str, Any]] = []
    x_test, y_test = test.tensor(INPUT_SIZE), torch.from_numpy(test.labels)

    def keep(step: int, net: nn.Module) -> None:
        torch.save(state_of(net), out / f"checkpoint-{step:05d}.pt")
        checkpoints.append({"step": step, "fraction": round(step / recipe.steps, 4),
                            "test_accuracy": accuracy(net, x_test, y_test, dev)})

    fill = -torch.tensor(subset.mean) / torch.tensor(subset.std)
    how = AUGMENTATIONS[params["variant"]["augment"]]
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        history = train(model, x, torch.from_numpy(labels), recipe, how, fill, params["seed"], dev,
                        checkpoints=tuple(params["checkpoints"]), on_checkpoint=keep, desc=name)
    model.eval()
    measured = measurements(model, params, test, dev)
    measured["train_accuracy"] = accuracy(model, x, torch.from_numpy(labels), dev)
    if params["variant"]["label_noise"]:
        measured["train_accuracy_true_labels"] = accuracy(model, x, torch.from_numpy(true_labels), dev)
    check_bar(name, params["bar"], measured)
    torch.save(state_of(model), out / "weights.pt")
    return {
        "name": name, "architecture": DESCRIPTIONS[params["family"]], "in_channels": subset.channels,
        "classes": len(subset.classes), "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"dataset": params["dataset"], "train_sha256": subset.sha256, "test_sha256": test.sha256,
                 "train_images": len(subset), "test_images": len(test),
                 "labels_changed": float((labels != true_labels).mean())},
        **measured, "steps": recipe.steps, "checkpoint_accuracy": checkpoints, "history": history,
    }


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The CPU, contiguous state dict of `model` (the same bytes whatever memory format it trained in)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def load_member(artifact: Artifact, step: int | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """The member of a `population` artifact in eval mode on `device`: its final weights, or checkpoint `step`."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not a population member")
    p, card = artifact.spec.params, artifact.card
    if step is not None and step not in p["checkpoints"]:
        raise ArtifactError(f"{card['name']} kept checkpoints {p['checkpoints']}, not step {step}")
    model = create(p["family"], p["size"], p["seed"], card["in_channels"], card["classes"])
    file = "weights.pt" if step is None else f"checkpoint-{step:05d}.pt"
    model.load_state_dict(torch.load(artifact.file(file), map_location="cpu", weights_only=True))
    return model.to(device).eval()
