"""M1, its training recipe, the zoo's artifacts, activations, and `simstress train` (on the committed slice)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simstress.benchmark.cli import main
from simstress.core.artifacts import ArtifactStore
from simstress.data import load_images
from simstress.networks.activations import activations, reduce
from simstress.networks.m1 import LAYERS, M1, SPATIAL
from simstress.networks.training import INPUT_SIZE, Recipe, augment, predict, train
from simstress.networks.zoo import LABEL_SEED, load_network, network_spec, select, zoo


@pytest.mark.parametrize("width", [1, 2])
def test_block_outputs_have_the_papers_shapes(width: int) -> None:
    net = M1(width).eval()
    out = net.layers(torch.zeros(3, 1, 32, 32))
    assert list(out) == list(LAYERS)
    channels = [16, 16, 32, 32, 32, 64, 64, 64]
    for i, (c, s) in enumerate(zip(channels, SPATIAL)):
        assert out[f"block{i}"].shape == (3, c * width, s, s)
    assert out["pooled"].shape == (3, 64 * width) and out["logits"].shape == (3, 10)
    assert torch.equal(out["logits"], net(torch.zeros(3, 1, 32, 32)))
    assert list(net.layers(torch.zeros(1, 1, 32, 32), ["block1"])) == ["block1"]
    with pytest.raises(ValueError, match="no layer"):
        net.layers(torch.zeros(1, 1, 32, 32), ["block8"])
    with pytest.raises(ValueError, match="width"):
        M1(0)


def test_augmentation_is_a_seeded_crop_and_flip() -> None:
    n = 40
    x = torch.arange(n * 32 * 32, dtype=torch.float32).view(n, 1, 32, 32)  # every pixel distinct
    fill = torch.tensor([-1.0])
    a = augment(x, torch.Generator().manual_seed(0), fill)
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(0), fill)) and a.shape == x.shape
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(1), fill))
    found = []
    for img, out in zip(x[:, 0], a[:, 0]):  # each output is one window of the padded image, maybe mirrored
        padded = torch.nn.functional.pad(img, (4, 4, 4, 4), value=-1.0)
        hits = [(i, j, flip) for i in range(9) for j in range(9) for flip in (False, True)
                if torch.equal(out, padded[i:i + 32, j:j + 32].flip(-1) if flip else padded[i:i + 32, j:j + 32])]
        assert len(hits) == 1
        found += hits
    assert {flip for *_, flip in found} == {False, True}  # both mirrored and plain crops occur
    assert len({(i, j) for i, j, _ in found}) > 10  # many offsets, not only the centre (4, 4)


def test_training_is_deterministic_for_a_seed() -> None:
    data = load_images("fashion_mnist_slice", "train")
    data = data.subset(data.stratified(30, 0))  # 300 images: 3 steps of 128

    torch.manual_seed(0)
    start = M1(1).state_dict()

    def weights(seed: int) -> dict[str, torch.Tensor]:
        net = M1(1)
        net.load_state_dict(start)  # the same initial weights: only the training seed differs
        train(net, data, Recipe(epochs=1), seed, torch.device("cpu"), progress=False)
        return net.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed decides the batches and the augmentation


@pytest.fixture(scope="module")
def smoke_zoo(artifact_root: Path) -> dict:
    store = ArtifactStore(artifact_root)
    return {name: store.ensure(spec) for name, spec in zoo("smoke").items()}


def test_the_smoke_zoo_is_what_its_cards_say(smoke_zoo: dict) -> None:
    test = load_images("fashion_mnist_slice", "test")
    x, y = test.tensor(INPUT_SIZE), torch.from_numpy(test.labels)
    acc = {}
    for name, artifact in smoke_zoo.items():
        card = artifact.card
        assert card["name"] == name and card["kind"] == "networks"
        assert set(card["files"]) == {"weights.pt"} and len(card["sha256"]) == 64
        assert card["data"]["test_sha256"] == test.sha256 and card["packages"]["torch"]
        acc[name] = float((predict(load_network(artifact), x, torch.device("cpu")) == y).double().mean())
        assert acc[name] == pytest.approx(card["test_accuracy"], abs=1e-12)  # the card tells the truth
    assert min(acc[f"m1-w1-generalized-s{s}"] for s in range(3)) >= 0.4  # chance is 0.1
    # each generalized seed has its own memorized and random partner, seeded after every generalized seed
    partners = [f"m1-w1-{role}-s{s}" for role, seeds in (("memorized", (3, 4, 5)), ("random", (6, 7, 8)))
                for s in seeds]
    assert set(acc) == {f"m1-w1-generalized-s{s}" for s in range(3)} | set(partners)
    assert max(acc[name] for name in partners) < 0.2


def test_the_memorized_network_fits_its_permuted_labels(smoke_zoo: dict) -> None:
    artifact = smoke_zoo["m1-w1-memorized-s3"]
    train_set = load_images("fashion_mnist_slice", "train")
    fit = train_set.subset(train_set.stratified(artifact.spec.params["train_images"] // 10, 0))
    permuted = torch.from_numpy(np.random.default_rng(LABEL_SEED).permutation(fit.labels))
    assert float((permuted == torch.from_numpy(fit.labels)).double().mean()) < 0.3  # really permuted
    pred = predict(load_network(artifact), fit.tensor(INPUT_SIZE), torch.device("cpu"))
    assert float((pred == permuted).double().mean()) >= 0.9


def test_a_network_is_rebuilt_bit_for_bit(smoke_zoo: dict, tmp_path: Path) -> None:
    spec = network_spec("generalized", 1, 0, "smoke")
    again = ArtifactStore(tmp_path).ensure(spec)
    assert again.sha256 == smoke_zoo["m1-w1-generalized-s0"].sha256


def test_reductions() -> None:
    a = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    assert torch.equal(reduce(a, "flatten"), a.flatten(1))
    assert torch.allclose(reduce(a, "pool"), a.mean(dim=(2, 3)))
    assert reduce(a, "pool2").shape == (2, 12) and reduce(a, "pool8").shape == (2, 75)  # 5×5 kept whole
    assert torch.equal(reduce(a[:, :, 0, 0], "pool4"), a[:, :, 0, 0])
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce(a, "max")


@pytest.mark.parametrize("how", ["flatten", "pool", "pool2"])
def test_a_reductions_gradient_on_channels_last_blocks_is_channels_last_and_unchanged(how: str) -> None:
    """The gradient a reduction sends back to a channels-last block is laid out channels-last (so autograd adds it
    to the next block's without a strided path) and holds the same numbers as on a contiguous copy; the values
    are those of the block without gradients."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 5, 5, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    a = x * 1.0  # a block output: not a leaf, whose stored gradient autograd would lay out like the leaf anyway
    arriving: list[torch.Tensor] = []
    a.register_hook(arriving.append)
    b = x.detach().contiguous().requires_grad_()
    w = torch.randn(reduce(b, how).shape, generator=g)
    (reduce(a, how) * w).sum().backward()
    (reduce(b, how) * w).sum().backward()
    assert arriving[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(arriving[0], b.grad)
    assert torch.equal(reduce(a, how), reduce(a.detach(), how))


def test_activations_are_batched_without_changing_them(smoke_zoo: dict) -> None:
    net = load_network(smoke_zoo["m1-w1-generalized-s0"])
    x = load_images("fashion_mnist_slice", "test").tensor(INPUT_SIZE)[:50]
    whole = activations(net, x, ["block0", "block5", "logits"], batch_size=50)
    parts = activations(net, x, ["block0", "block5", "logits"], batch_size=7)
    assert whole["block0"].shape == (50, 14400) and whole["block5"].shape == (50, 1024)
    for k in whole:
        assert whole[k].dtype == torch.float32 and torch.allclose(whole[k], parts[k], atol=1e-5)
    assert torch.allclose(whole["logits"], net(x), atol=1e-5)
    pooled = activations(net, x, ["block0"], reduction="pool4")["block0"]
    assert pooled.shape == (50, 16 * 16)


def test_simstress_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--scale", "smoke", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("to build") == 9 and "m1-w1-memorized-s3" in out
    assert main(["train", "--scale", "smoke", "--results", str(tmp_path), "--quiet", "m1-*-random-s6"]) == 0
    out = capsys.readouterr().out
    assert "m1-w1-random-s6" in out and "built" in out and "generalized" not in out
    card = json.loads(next((tmp_path / "networks").glob("*/card.json")).read_text())
    assert card["name"] == "m1-w1-random-s6" and card["build_device"] == "cpu"
    assert main(["train", "--scale", "smoke", "--results", str(tmp_path), "nothing-*"]) == 2
    assert "no network of the smoke zoo matches" in capsys.readouterr().err
    assert list(select("smoke", ["m1-w1-generalized-s1"])) == ["m1-w1-generalized-s1"]
