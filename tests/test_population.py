"""The population (smoke scale, the committed slice): its architectures, its variants doing what their cards say,
checked on the networks themselves, and the same seed giving the same bytes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simstress.benchmark.cli import main
from simstress.core.artifacts import ArtifactError, ArtifactStore
from simstress.data import load_images
from simstress.networks.population import (
    check_bar,
    checkpoint_steps,
    load_member,
    members,
    population,
    population_scale,
    white_pixel,
)
from simstress.networks.population_activations import activations_spec, load_activations, pool_images
from simstress.networks.population_training import (
    AUGMENTATIONS,
    add_shortcut,
    augment,
    randomize_labels,
    shortcut_codes,
)
from simstress.networks.timm_models import FAMILIES, create, forward_layers, layer_names
from simstress.networks.training import INPUT_SIZE, predict
from simstress.networks.training import augment as zoo_augment
from simstress.networks.zoo import select


@pytest.fixture(scope="session")
def smoke_population(artifact_root: Path) -> dict:
    """Every member of the smoke population, trained once per test session in the shared scratch store."""
    store = ArtifactStore(artifact_root)
    return {m.name: store.ensure(m.spec) for m in members("smoke")}


@pytest.fixture(scope="module")
def test_split() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    test = load_images("fashion_mnist_slice", "test")
    return test.tensor(INPUT_SIZE), torch.from_numpy(test.labels), test.labels


def test_every_family_gives_its_named_layers_and_its_logits() -> None:
    x = torch.randn(3, 1, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    for family in FAMILIES:
        net = create(family, "tiny", 0, 1, 10)
        out = forward_layers(net, x)
        assert list(out) == layer_names(net) and len(out) >= 6
        assert list(out)[-2:] == ["penultimate", "logits"]
        assert torch.allclose(out["logits"], net(x), atol=1e-5)  # the same function as the model's own forward
        assert out["penultimate"].ndim == 2 and out["penultimate"].shape[1] <= 128
        again = create(family, "tiny", 0, 1, 10).state_dict()
        assert all(torch.equal(v, again[k]) for k, v in net.state_dict().items())  # the seed decides the weights
        assert not all(torch.equal(v, create(family, "tiny", 1, 1, 10).state_dict()[k])
                       for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="unknown architecture family"):
        create("lenet", "tiny", 0, 1, 10)


def test_the_population_holds_what_the_scales_promise() -> None:
    for scale in ("smoke", "default", "full"):
        z, ms = population_scale(scale), members(scale)
        assert len({m.name for m in ms}) == len(ms) == len(population(scale))
        base = [m for m in ms if m.variant.tag == "base"]
        assert {m.family for m in base} == set(z.families) and len(z.families) >= 3
        assert all(sum(m.family == f for m in base) == len(z.seeds) for f in z.families)
        variants = [m for m in ms if m.variant.tag != "base"]
        assert all(m.family == z.variant_family for m in variants)
        # no two members of one family start from the same weights
        for f in z.families:
            seeds = [m.seed for m in ms if m.family == f]
            assert len(seeds) == len(set(seeds))
        assert all(0 < s < z.recipe.steps for s in checkpoint_steps(scale))
    assert len(population_scale("default").seeds) >= 3 and population_scale("full").replicates >= 5


def test_randomized_labels_keep_the_classes_and_change_the_rate() -> None:
    labels = np.repeat(np.arange(10), 100)
    assert np.array_equal(randomize_labels(labels, 0.0, 0), labels)
    for rate in (0.25, 0.5, 1.0):
        out = randomize_labels(labels, rate, 3)
        assert np.array_equal(np.bincount(out), np.bincount(labels))  # a permutation: class balance kept
        changed = float((out != labels).mean())
        assert rate * 0.8 <= changed <= rate  # the permuted subset keeps its own label about 1 time in 10
        assert np.array_equal(out, randomize_labels(labels, rate, 3))
        assert not np.array_equal(out, randomize_labels(labels, rate, 4))
    with pytest.raises(ValueError, match="fraction"):
        randomize_labels(labels, 1.5, 0)


def test_the_shortcut_is_drawn_in_the_padding_only() -> None:
    test = load_images("fashion_mnist_slice", "test")
    x = test.tensor(INPUT_SIZE)[:20]
    codes = np.arange(20) % 10
    y = add_shortcut(x, codes, white_pixel(test))
    assert torch.equal(y[:, :, 2:30, 2:30], x[:, :, 2:30, 2:30])  # the 28×28 image itself is untouched
    white = white_pixel(test).item()
    for img, k in zip(y, codes):
        lit = (img[0, :2] == white).nonzero()[:, 1].unique().tolist()
        assert lit == [1 + 3 * k, 2 + 3 * k]  # the code's two columns, and only them
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 500)
    assert np.array_equal(shortcut_codes(labels, 1.0, rng, 10), labels)
    assert 0.05 < float((shortcut_codes(labels, 0.0, rng, 10) == labels).mean()) < 0.15


def test_augmentation_strength_2_is_the_zoos_crop_and_flip() -> None:
    x = torch.arange(8 * 32 * 32, dtype=torch.float32).view(8, 1, 32, 32)
    fill = torch.tensor([-1.0])
    ours = augment(x, torch.Generator().manual_seed(5), fill, AUGMENTATIONS[2])
    assert torch.equal(ours, zoo_augment(x, torch.Generator().manual_seed(5), fill))  # an independent route
    assert torch.equal(augment(x, torch.Generator().manual_seed(5), fill, AUGMENTATIONS[0]), x)
    noisy = augment(x, torch.Generator().manual_seed(5), fill, AUGMENTATIONS[3])
    assert not torch.equal(noisy, x) and noisy.shape == x.shape


def test_the_smoke_population_is_what_its_cards_say(smoke_population: dict, test_split) -> None:
    x, y, _ = test_split
    for name, artifact in smoke_population.items():
        card = artifact.card
        assert card["name"] == name and "weights.pt" in card["files"]
        net = load_member(artifact)
        accuracy = float((predict(net, x, torch.device("cpu")) == y).double().mean())
        assert accuracy == card["test_accuracy"]
        bar = card["params"]["bar"]
        value = card[bar["measure"]]
        assert value >= bar.get("min", -1) and value <= bar.get("max", 2)
        for c in card["checkpoint_accuracy"]:  # checkpoints are earlier weights of the same run
            early = load_member(artifact, c["step"])
            assert float((predict(early, x, torch.device("cpu")) == y).double().mean()) == \
                c["test_accuracy"]
            assert not torch.equal(early.state_dict()[next(iter(early.state_dict()))],
                                   net.state_dict()[next(iter(net.state_dict()))])
    with pytest.raises(ArtifactError, match="kept checkpoints"):
        load_member(smoke_population["pop-m1-base-s1"], 4)


def test_a_shortcut_model_uses_the_shortcut(smoke_population: dict, test_split) -> None:
    x, y, labels = test_split
    white = white_pixel(load_images("fashion_mnist_slice", "test"))
    random = shortcut_codes(labels, None, np.random.default_rng(1), 10)

    def acc(name: str, images: torch.Tensor) -> float:
        net = load_member(smoke_population[name])
        return float((predict(net, images, torch.device("cpu")) == y).double().mean())

    # The tiny smoke models lean on the shortcut by about 0.2 of accuracy, and the CPU's rounding in training moves
    # that by a point or two: a drop of 0.1 is seven standard errors on the 1,000 test images.
    for s in (6, 7):
        name = f"pop-resnet-shortcut100-s{s}"
        true, absent, randomised = acc(name, add_shortcut(x, labels, white)), acc(name, x), acc(
            name, add_shortcut(x, random, white))
        assert true >= 0.75 and true - absent >= 0.1 and true - randomised >= 0.1
    for s in (4, 5):  # a shortcut that says nothing in training is not used
        name = f"pop-resnet-shortcut0-s{s}"
        assert abs(acc(name, add_shortcut(x, labels, white)) - acc(name, add_shortcut(x, random, white))) < 0.1


def test_a_fully_randomized_model_is_at_chance(smoke_population: dict, test_split) -> None:
    x, y, _ = test_split
    for s in (2, 3):
        artifact = smoke_population[f"pop-resnet-labels100-s{s}"]
        assert artifact.card["data"]["labels_changed"] >= 0.85  # 100 % permuted: ~90 % of labels moved
        net = load_member(artifact)
        accuracy = float((predict(net, x, torch.device("cpu")) == y).double().mean())
        assert 0.05 <= accuracy <= 0.15
    trained = [smoke_population[f"pop-resnet-base-s{s}"].card["test_accuracy"] for s in (0, 1)]
    assert min(trained) >= 0.4


def test_a_member_is_rebuilt_bit_for_bit(smoke_population: dict, tmp_path: Path) -> None:
    artifact = smoke_population["pop-resnet-base-s0"]  # the one with checkpoints
    again = ArtifactStore(tmp_path).ensure(artifact.spec)
    assert again.card["files"] == artifact.card["files"] and len(artifact.card["files"]) == 1 + len(
        checkpoint_steps("smoke"))
    other = smoke_population["pop-resnet-base-s1"].card["files"]["weights.pt"]
    assert other != artifact.card["files"]["weights.pt"]


def test_a_member_below_its_bar_stops_its_build() -> None:
    with pytest.raises(ArtifactError, match="below its bar 0.8: it failed to train"):
        check_bar("pop-x", {"measure": "test_accuracy", "min": 0.8}, {"test_accuracy": 0.5})
    with pytest.raises(ArtifactError, match="must sit at chance"):
        check_bar("pop-x", {"measure": "test_accuracy", "max": 0.2}, {"test_accuracy": 0.6})
    check_bar("pop-x", {"measure": "test_accuracy", "min": 0.8}, {"test_accuracy": 0.81})


def test_activations_hold_every_layer_of_one_forward_pass(smoke_population: dict) -> None:
    member = smoke_population["pop-resnet-shortcut100-s6"]
    images = {"dataset": "fashion_mnist_slice", "per_class": 3, "seed": 0}
    store = ArtifactStore(member.path.parent.parent)
    clean = store.ensure(activations_spec(member.spec, images=images))
    shortcut = store.ensure(activations_spec(member.spec, images=images, condition="randomised_shortcut"))
    layers, labels = load_activations(clean)
    x, pool_labels, _, _ = pool_images(images, "clean")
    assert torch.equal(labels, torch.from_numpy(pool_labels)) and len(labels) == 30
    net = load_member(member)
    with torch.no_grad():
        direct = forward_layers(net, x)
    assert list(layers) == layer_names(net) == clean.card["layers"]
    assert torch.allclose(layers["logits"], direct["logits"], atol=1e-5)
    assert torch.allclose(layers["penultimate"], direct["penultimate"], atol=1e-5)
    changed, _ = load_activations(shortcut)
    assert not torch.allclose(changed["logits"], layers["logits"])  # the shortcut model reads the square
    assert clean.spec.key != shortcut.spec.key


def test_simstress_train_selects_population_members_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert set(select("smoke", ["pop-resnet-aug0-*"])) == {"pop-resnet-aug0-s8", "pop-resnet-aug0-s9"}
    assert "pop-" not in "".join(select("smoke"))  # the plain zoo stays what it was
    assert main(["train", "--scale", "smoke", "--dry-run", "--results", str(tmp_path), "pop-*-base-*"]) == 0
    out = capsys.readouterr().out
    assert out.count("to build") == 2 * len(FAMILIES)
    assert json.dumps(population_scale("smoke").recipe.to_dict())
