"""The task registry, `Task.evaluate`'s contract, and the scoring proved with a constant and a random metric."""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.registry import natural_key
from simstress.core.task import DOC_SECTIONS

BATTERY = {
    "outlier_shift": "robustness", "subset_translation": "robustness", "class_translation": "robustness",
    "invertible_linear": "robustness", "global_translation": "robustness", "noise_sweep": "sensitivity",
    "pc_deletion": "sensitivity", "independent_highdim": "sensitivity", "matching": "specificity",
}


def registered(name: str, fn, **spec) -> Iterator[str]:
    """Register a throw-away metric for one test and remove it afterwards (no leak into other files)."""
    metrics.register(name=name, cost="O(1)", reference="test only", **spec)(fn)
    try:
        yield name
    finally:
        metrics.REGISTRY.remove(name)


@pytest.fixture
def constant_metric() -> Iterator[str]:
    def constant(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Always 0.7, whatever the inputs."""
        return torch.tensor(0.7, dtype=X.dtype, device=X.device)

    yield from registered("test_constant", constant)


@pytest.fixture
def random_metric() -> Iterator[str]:
    gen = torch.Generator().manual_seed(0)

    def random(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Uniform noise in [0, 1), independent of the inputs (self-comparison included)."""
        return torch.rand((), generator=gen, dtype=torch.float64).to(X.device, X.dtype)

    yield from registered("test_random", random)


# ---------------------------------------------------------------------------------------------- registry


def test_battery_is_registered_in_natural_order() -> None:
    names = tasks.list_tasks("*")
    assert set(BATTERY) <= set(names) and names == sorted(names, key=natural_key)
    assert tasks.list_tasks("*translation") == ["class_translation", "global_translation", "subset_translation"]
    assert tasks.list_tasks("matching,noise*") == ["matching", "noise_sweep"]


@pytest.mark.parametrize("name", sorted(BATTERY))
def test_task_identity_and_docstring(name: str) -> None:
    t = tasks.get_task(name)
    assert (t.name, t.category) == (name, BATTERY[name])
    assert isinstance(t.version, int) and t.version >= 1
    assert t.scales == ("smoke", "default", "full")
    assert isinstance(t.sweep_name, str) and t.sweep_name and isinstance(t.log_x, bool)
    doc = type(t).__doc__
    assert t.summary == doc.strip().splitlines()[0] and len(t.summary) < 120
    for section in DOC_SECTIONS:
        assert section in doc
    assert "Source:" in doc and any(ch.isdigit() for ch in doc.split("Source:")[1])  # a dated citation


def test_unknown_task_names_the_closest() -> None:
    with pytest.raises(tasks.UnknownNameError, match="outlier_shift"):
        tasks.get_task("outlier_shfit")


@dataclass
class ToySetup(tasks.Setup):
    X: torch.Tensor


class Toy(tasks.Task):
    """A plugin-style toy task: Y = 2·X.

    Construction: X = 20 seeded Gaussian rows; Y = 2·X.
    Ground truth: isotropic scaling changes nothing.
    Score: mean of clip(similarity, 0, 1).
    Source: this test (2024).
    """

    sizes = {"smoke": {"n": 20}}

    def build(self, size, seed, device):
        X = torch.randn(size["n"], 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return ToySetup(labels=None, details={"n": size["n"]}, X=X.to(device))

    def cases(self, setup):
        yield tasks.Case(x=2.0, reference=setup.X, other=2 * setup.X, ref_key=0, truth={})

    def score(self, curve, setup):
        return float(curve["similarity"].clip(0, 1).mean())


def test_register_task_plugin_round_trip() -> None:
    tasks.register_task(name="test_toy", category="robustness", sweep_name="scale")(Toy)
    try:
        t = tasks.get_task("test_toy")
        assert "test_toy" in tasks.list_tasks("*") and t.scales == ("smoke",)
        r = t.evaluate("linear_cka", scale="smoke")
        assert r.score == pytest.approx(1.0, abs=1e-12)
        with pytest.raises(tasks.DuplicateNameError):
            class Other(Toy):
                """Another toy.

                Construction: -. Ground truth: -. Score: -. Source: -.
                """

            tasks.register_task(name="test_toy", category="robustness", sweep_name="s")(Other)
    finally:
        tasks.REGISTRY.remove("test_toy")
    assert "test_toy" not in tasks.list_tasks("*")


def test_register_task_refuses_incomplete_definitions() -> None:
    class Undocumented(tasks.Task):
        sizes = {"smoke": {}}

    with pytest.raises(ValueError, match="Construction:"):
        tasks.register_task(name="test_bad", category="robustness", sweep_name="x")(Undocumented)
    with pytest.raises(ValueError, match="category"):
        tasks.register_task(name="test_bad", category="robust", sweep_name="x")
    with pytest.raises(ValueError, match="version"):
        tasks.register_task(name="test_bad", category="robustness", sweep_name="x", version=0)
    with pytest.raises(TypeError, match="subclasses of tasks.Task"):
        tasks.register_task(name="test_bad", category="robustness", sweep_name="x")(object)
    assert "test_bad" not in tasks.list_tasks("*")


# ---------------------------------------------------------------------------------------------- evaluate


def test_evaluate_contract_on_every_task() -> None:
    for name in BATTERY:
        t = tasks.get_task(name)
        r = t.evaluate("linear_cka_debiased", scale="smoke", seed=0)
        assert isinstance(r, tasks.TaskResult) and (r.task, r.metric, r.scale, r.seed) == (name, "linear_cka_debiased",
                                                                                            "smoke", 0)
        assert 0.0 <= r.score <= 1.0
        assert isinstance(r.curve, pd.DataFrame) and len(r.curve) == r.details["n_cases"] >= 1
        assert {"x", "similarity", "raw", "self_similarity"} <= set(r.curve.columns)
        assert pd.api.types.is_numeric_dtype(r.curve["x"])
        assert np.allclose(r.curve["self_similarity"], 1.0, atol=1e-9)  # debiased CKA of X with itself
        json.dumps(r.details, allow_nan=False)  # plain JSON values only
        again = t.evaluate("linear_cka_debiased", scale="smoke", seed=0)
        assert again.score == r.score and again.curve.equals(r.curve)


def test_seeds_change_the_data_and_setups_are_reused() -> None:
    t = tasks.get_task("noise_sweep")
    a = t.setup("smoke", 0)
    assert t.setup("smoke", 0) is a
    b = t.setup("smoke", 1)
    assert b is not a and not torch.equal(a.X, b.X)
    assert torch.equal(t.setup("smoke", 0).X, a.X)  # rebuilt identically from the seed


def test_evaluate_refuses_bad_arguments() -> None:
    t = tasks.get_task("noise_sweep")
    with pytest.raises(ValueError, match="no scale 'huge'"):
        t.evaluate("linear_cka", scale="huge")
    with pytest.raises(ValueError, match="seed"):
        t.evaluate("linear_cka", scale="smoke", seed=-1)
    with pytest.raises(metrics.UnknownNameError, match="linear_cka"):
        t.evaluate("linear_ckaa", scale="smoke")


def test_label_metrics_are_not_applicable_without_labels() -> None:
    t = tasks.get_task("independent_highdim")
    with pytest.raises(tasks.NotApplicable, match="needs class labels"):
        t.evaluate("probe_accuracy", scale="smoke")
    assert not issubclass(tasks.NotApplicable, ValueError)  # distinct from a metric's InputError
    # a metric failing on the data is an error cell, not a skip: CCA refuses p >= n
    with pytest.raises(metrics.InputError):
        t.evaluate("cca_mean", scale="smoke")


def test_labels_reach_label_metrics() -> None:
    seen = []

    def label_count(X: torch.Tensor, Y: torch.Tensor, *, labels: torch.Tensor) -> torch.Tensor:
        """Records the labels it is given; returns 1."""
        seen.append(labels)
        return torch.ones((), dtype=X.dtype)

    for name in registered("test_label_count", label_count, needs_labels=True):
        r = tasks.get_task("noise_sweep").evaluate(name, scale="smoke")
    assert len(seen) == r.details["n_cases"] + 1
    assert all(torch.equal(s, tasks.get_task("noise_sweep").setup("smoke", 0).labels) for s in seen)


def test_similarities_are_oriented_and_self_normalised() -> None:
    t = tasks.get_task("outlier_shift")
    base = t.evaluate("linear_cka", scale="smoke").curve["similarity"]

    def doubled(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """2 × linear CKA: self-similarity 2."""
        return 2.0 * metrics.get_metric("linear_cka")(X, Y)

    for name in registered("test_doubled", doubled, value_range=(0.0, 2.0)):
        assert np.allclose(t.evaluate(name, scale="smoke").curve["similarity"], base, atol=1e-14)
    # a distance is turned around: the angular Procrustes distance of X to itself is 0, its similarity 1
    r = t.evaluate("procrustes_angular", scale="smoke")
    assert np.allclose(r.curve["self_similarity"], 1.0, atol=1e-6)
    assert np.all(r.curve["similarity"] <= 1.0 + 1e-6) and r.curve["raw"].max() > 0


def test_nonpositive_self_similarity_scores_worst() -> None:
    def zero(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Always 0: cannot tell X from anything."""
        return torch.zeros((), dtype=X.dtype)

    for name in registered("test_zero", zero):
        r = tasks.get_task("subset_translation").evaluate(name, scale="smoke")
    assert r.score == 0.0 and r.details["n_nonfinite"] == r.details["n_cases"]
    assert r.curve["similarity"].isna().all()


# ---------------------------------------------------------------------------------------------- scoring


def test_constant_metric_is_perfectly_robust_and_useless_otherwise(constant_metric: str) -> None:
    for name, category in BATTERY.items():
        score = tasks.get_task(name).evaluate(constant_metric, scale="smoke", seed=0).score
        if category == "robustness":
            assert score >= 0.99, name
        else:
            assert score <= 0.1, name


def test_random_metric_earns_little(random_metric: str) -> None:
    """Expected scores of uniform noise U/U' (similarity over self-similarity): robustness ≈ 0.75 per case (the
    minimum of 6 for global_translation), noise_sweep ≈ 0.1, pc_deletion ≈ 0.2, independent_highdim 0.25,
    matching 1/8. Averaged over 3 seeds the margins below are several standard deviations wide."""
    scores: dict[str, list[float]] = {name: [] for name in BATTERY}
    for seed in range(3):
        for name in BATTERY:
            scores[name].append(tasks.get_task(name).evaluate(random_metric, scale="smoke", seed=seed).score)
    robust = [np.mean(scores[n]) for n, c in BATTERY.items() if c == "robustness"]
    others = [np.mean(scores[n]) for n, c in BATTERY.items() if c != "robustness"]
    assert max(robust) < 0.95 and np.mean(robust) < 0.85
    assert np.mean(others) < 0.35
    assert np.mean(scores["matching"]) < 0.4


def test_scoring_helpers() -> None:
    from tasks.scoring import clip01, mean_clipped, positive_spearman

    assert clip01([-1.0, 0.5, 2.0, math.nan]).tolist() == [0.0, 0.5, 1.0, 0.0]
    assert mean_clipped([1.0, 0.0, math.inf]) == pytest.approx(1 / 3)
    assert positive_spearman([3, 2, 1], [30, 20, 10]) == pytest.approx(1.0)
    assert positive_spearman([1, 2, 3], [30, 20, 10]) == 0.0
    assert positive_spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert positive_spearman([1.0, 1 - 1e-15, 1 + 1e-15], [3, 2, 1]) == 0.0  # rounding noise is no order
