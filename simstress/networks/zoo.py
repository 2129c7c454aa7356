"""The model zoo: M1 networks the suite trains itself on Fashion-MNIST, each built once and cached as an artifact.

Roles (Davari et al. 2023 §4.1, after Zhang et al. 2017's randomisation test):
- `generalized`: the recipe (`training.Recipe`) on the true labels; one network per (width, seed).
- `memorized`: the same architecture trained on a stratified subset of the training images whose labels were
  permuted with a fixed seed, without augmentation, until it fits them (train accuracy ≥ 90 %, checked at build;
  its test accuracy sits near chance, 10 %): 10,000 images at the default scale. A subset, because a small
  network memorises only so many random labels in a CPU's time.
- `random`: initialised (Xavier-uniform) and never trained.
Every seed of the generalized networks has its own memorized and random partner, with seeds after all the
generalized ones (`partner_seeds`), so no network starts from the weights of another it is compared with (a
network trained from seed s keeps a strong imprint of its initialisation, most of all in the early blocks).

A network is the artifact kind `networks` (folder `results/networks/<key>/`): `weights.pt` (the state dict,
float32, CPU) and `card.json` (name, architecture, width, role, recipe, seed, dataset and its sha256, train and
test accuracy, the per-epoch history, build time and device, package versions, file sha256s). Its key hashes
its parameters (architecture, width, role, seeds, dataset name, recipe), so a change of recipe makes a new network
and exactly its cells stale. A dataset is named, not hashed, in the key: its files are checked against fixed
sha256s when read, so changing them (a new slice) is a change of code that must bump the builder's version.

    zoo("default")                 # {name: ArtifactSpec}, e.g. "m1-w1-generalized-s0"
    load_network(artifact, device) # the M1 in eval mode
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.data import load_images

from .m1 import M1
from .training import INPUT_SIZE, Recipe, accuracy, train

KIND = "networks"
MEMORIZER_EPOCHS = 60  # 10,000 permuted labels: training loss 0.13 by epoch 38 of a 150-epoch schedule (measured)
ROLES = ("generalized", "memorized", "random")
MEMORIZED_MIN_TRAIN_ACCURACY = 0.9
LABEL_SEED = 3407  # the permutation of the memorized networks' labels (the papers' seed)


@dataclass(frozen=True)
class ZooScale:
    """What the zoo holds at one scale."""

    dataset: str
    widths: tuple[int, ...]
    seeds: tuple[int, ...]  # generalized networks per width
    recipe: Recipe  # generalized
    memorized_images: int  # stratified training subset the memorized networks fit
    memorized_recipe: Recipe


ZOO_SCALES: dict[str, ZooScale] = {
    # Seconds: the committed slice, two epochs (tests and smoke runs).
    "smoke": ZooScale("fashion_mnist_slice", (1,), (0, 1, 2), Recipe(epochs=2), 200,
                      Recipe(epochs=20, augment=False)),
    # Minutes on two CPU cores: full Fashion-MNIST, w = 1, ten epochs (≥ 90 % test accuracy); memorizers fit
    # 10,000 permuted labels (a larger learning rate and no weight decay: nothing to generalize).
    "default": ZooScale("fashion_mnist", (1,), (0, 1, 2), Recipe(epochs=10), 10000,
                        Recipe(epochs=MEMORIZER_EPOCHS, augment=False, lr=3e-3, weight_decay=0.0)),
    # A GPU: the paper's 40 epochs, widths 1/2/4, five seeds.
    "full": ZooScale("fashion_mnist", (1, 2, 4), (0, 1, 2, 3, 4), Recipe(epochs=40), 10000,
                     Recipe(epochs=2 * MEMORIZER_EPOCHS, augment=False, lr=3e-3, weight_decay=0.0)),
}


def network_spec(role: str, width: int, seed: int, scale: str) -> ArtifactSpec:
    """The artifact spec of one network of the zoo at `scale`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    z = ZOO_SCALES[scale]
    params: dict[str, Any] = {"arch": "m1", "width": width, "role": role, "seed": seed, "dataset": z.dataset}
    if role == "generalized":
        params["recipe"] = z.recipe.to_dict()
    elif role == "memorized":
        params.update(recipe=z.memorized_recipe.to_dict(), train_images=z.memorized_images, label_seed=LABEL_SEED)
    return ArtifactSpec(KIND, params)


def network_name(spec: ArtifactSpec) -> str:
    """A readable name, e.g. "m1-w1-generalized-s0" (unique within one scale's zoo)."""
    p = spec.params
    return f"{p['arch']}-w{p['width']}-{p['role']}-s{p['seed']}"


def partner_seeds(scale: str, seed: int) -> dict[str, int]:
    """The seeds of the memorized and random partners of a generalized network's seed: after every generalized seed,
    one memorizer and one random network per seed, so that no two networks of the zoo start from the same weights."""
    seeds = ZOO_SCALES[scale].seeds
    top, k = max(seeds), seeds.index(seed)
    return {"memorized": top + 1 + k, "random": top + 1 + len(seeds) + k}


def zoo(scale: str) -> dict[str, ArtifactSpec]:
    """Every network of the zoo at `scale`, by name: generalized per (width, seed), memorized and random per width."""
    if scale not in ZOO_SCALES:
        raise ValueError(f"the zoo has scales {tuple(ZOO_SCALES)}, not {scale!r}")
    z = ZOO_SCALES[scale]
    specs = [network_spec("generalized", w, s, scale) for w in z.widths for s in z.seeds]
    specs += [network_spec(role, w, partner, scale) for s in z.seeds
              for role, partner in partner_seeds(scale, s).items() for w in z.widths]
    return {network_name(s): s for s in specs}


def select(scale: str, patterns: list[str] | None = None) -> dict[str, ArtifactSpec]:
    """The zoo's networks whose names match any of the glob `patterns` (all when none; the population's members,
    `pop-*`, only by name); an unmatched one raises."""
    specs = zoo(scale)
    if not patterns:
        return specs
    from .population import population  # the population's members (`pop-*`) are selected by name only

    specs = {**specs, **population(scale)}
    chosen: dict[str, ArtifactSpec] = {}
    for pattern in patterns:
        found = {n: s for n, s in specs.items() if fnmatch.fnmatchcase(n, pattern)}
        if not found:
            raise ValueError(f"no network of the {scale} zoo matches {pattern!r}; it has {', '.join(specs)}")
        chosen.update(found)
    return chosen


def new_network(params: Mapping[str, Any], channels: int, classes: int) -> M1:
    """The initial network of `params`: its weights drawn from its seed alone."""
    if params["arch"] != "m1":
        raise ValueError(f"unknown architecture {params['arch']!r}; the zoo builds m1")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params["seed"])
        return M1(params["width"], channels, classes)


@artifact_builder(KIND, version=1)
def build_network(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out, device: str) -> dict[str, Any]:
    """Train (or only initialise) one network of the zoo and save its weights; the card's extras."""
    name = network_name(ArtifactSpec(KIND, params))
    train_set, test_set = load_images(params["dataset"], "train"), load_images(params["dataset"], "test")
    model = new_network(params, train_set.channels, len(train_set.classes))
    dev = torch.device(device)
    role, labels, history = params["role"], None, []
    fit_set = train_set
    if role == "memorized":
        fit_set = train_set.subset(train_set.stratified(params["train_images"] // len(train_set.classes), 0))
        labels = np.random.default_rng(params["label_seed"]).permutation(fit_set.labels)
    if role != "random":
        recipe = Recipe(**params["recipe"])
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            history = train(model, fit_set, recipe, params["seed"], dev, labels=labels, test=test_set,
                            desc=name)
    model.to(dev).eval()
    fit_labels = torch.from_numpy(fit_set.labels if labels is None else labels)
    train_acc = accuracy(model, fit_set.tensor(INPUT_SIZE), fit_labels, dev)
    test_acc = accuracy(model, test_set.tensor(INPUT_SIZE), torch.from_numpy(test_set.labels), dev)
    if role == "memorized" and train_acc < MEMORIZED_MIN_TRAIN_ACCURACY:
        raise ArtifactError(f"the memorized network fits only {train_acc:.1%} of its permuted labels (needs "
                            f"{MEMORIZED_MIN_TRAIN_ACCURACY:.0%}); give its recipe more epochs")
    model = model.cpu().to(memory_format=torch.contiguous_format)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.pt")
    return {
        "name": name,
        "architecture": "M1 (Kornblith et al. 2019 tiny CNN)", "in_channels": train_set.channels,
        "classes": len(train_set.classes), "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"dataset": params["dataset"], "train_sha256": train_set.sha256, "test_sha256": test_set.sha256,
                 "train_images": len(fit_set), "test_images": len(test_set)},
        "train_accuracy": train_acc, "test_accuracy": test_acc, "history": history,
    }


def load_network(artifact: Artifact, device: torch.device | str = "cpu") -> M1:
    """The network an artifact of kind `networks` holds, in eval mode on `device`, float32."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not a network")
    card = artifact.card
    return restore(new_network(artifact.spec.params, card["in_channels"], card["classes"]), artifact, device)


def restore(model: M1, artifact: Artifact, device: torch.device | str) -> M1:
    """`model` with the artifact's `weights.pt` loaded, in eval mode on `device`."""
    state = torch.load(artifact.file("weights.pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
