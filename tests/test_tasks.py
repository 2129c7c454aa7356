"""The task registry and `Task.evaluate`'s contract beyond the per-task suite (tests/test_task_conformance.py)."""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.registry import natural_key

from .conftest import evaluate, registered

BATTERY = {
    "outlier_shift": "robustness", "subset_translation": "robustness", "class_translation": "robustness",
    "invertible_linear": "robustness", "global_translation": "robustness", "noise_sweep": "sensitivity",
    "pc_deletion": "sensitivity", "independent_highdim": "sensitivity", "matching": "specificity",
    "network_class_translation": "robustness", "network_outlier": "robustness", "memorization": "sensitivity",
    "layer_correspondence": "specificity", "map_manipulation": "robustness",
    "pretrained_head_nullspace": "robustness", "pretrained_reparam": "robustness",
    "pretrained_stage_correspondence": "specificity", "pretrained_vs_random": "sensitivity",
}


@pytest.fixture
def random_metric() -> Iterator[tuple[str, torch.Generator]]:
    gen = torch.Generator().manual_seed(0)

    def random(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Uniform noise in [0, 1), independent of the inputs (self-comparison included)."""
        return torch.rand((), generator=gen, dtype=torch.float64).to(X.device, X.dtype)

    for name in registered("test_random", random, invariances=metrics.INVARIANCES):  # input-independent
        yield name, gen


# ---------------------------------------------------------------------------------------------- registry


def test_battery_is_registered_in_natural_order() -> None:
    names = tasks.list_tasks("*")
    assert set(BATTERY) <= set(names) and names == sorted(names, key=natural_key)
    assert tasks.list_tasks("*translation") == ["class_translation", "global_translation",
                                                "network_class_translation", "subset_translation"]
    assert tasks.list_tasks("matching,noise*") == ["matching", "noise_sweep"]


def test_builtin_battery_is_registered_with_its_categories() -> None:
    assert {n: tasks.get_task(n).category for n in BATTERY} == BATTERY
    assert tasks.list_tasks(category="specificity") == ["augmentation", "cross_architecture_correspondence",
                                                        "label_randomization", "layer_correspondence", "matching",
                                                        "pretrained_stage_correspondence", "shortcut_affinity"]
    assert tasks.list_tasks("*", exclude="*translation,matching,pretrained_*", category="robustness") == [
        "invertible_linear", "map_manipulation", "network_outlier", "outlier_shift"]
    with pytest.raises(ValueError, match="cannot be filtered on"):
        tasks.list_tasks(colour="red")


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

    def build(self, size, seed, device, artifacts):
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
        r = evaluate(t, "linear_cka")
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


def test_setups_are_built_afresh_from_the_seed() -> None:
    t = tasks.get_task("noise_sweep")
    a = t.setup("smoke", 0)
    again = t.setup("smoke", 0)
    assert again is not a and torch.equal(again.X, a.X)  # nothing cached in the task; the seed decides the data
    assert not torch.equal(t.setup("smoke", 1).X, a.X)


def test_evaluate_refuses_bad_arguments() -> None:
    t = tasks.get_task("noise_sweep")
    with pytest.raises(ValueError, match="no scale 'huge'"):
        t.setup("huge")
    with pytest.raises(ValueError, match="seed"):
        t.setup("smoke", seed=-1)
    with pytest.raises(TypeError, match="get_metric"):
        t.evaluate("linear_cka", t.setup("smoke"))  # a task takes the metric object, never an id to parse again


def test_label_metrics_are_not_applicable_without_labels() -> None:
    t = tasks.get_task("independent_highdim")
    with pytest.raises(tasks.NotApplicable, match="needs class labels"):
        evaluate(t, "probe_accuracy")
    assert not issubclass(tasks.NotApplicable, ValueError)  # distinct from a metric's InputError


def test_a_refused_case_counts_as_the_worst_and_refusing_everything_is_an_error() -> None:
    r = evaluate("independent_highdim", "cca_mean")  # CCA refuses p >= n − 1: p/n = 1, 2, 5, 10 of the sweep
    refused = r.curve["refused"].notna()
    assert r.details["n_refused"] == 4 and list(r.curve["x"][refused]) == [1.0, 2.0, 5.0, 10.0]
    assert r.curve["refused"][refused].str.contains("every canonical correlation is 1").all()
    kept = r.curve["similarity"][~refused]
    assert r.score == pytest.approx((1 - kept.clip(0, 1)).sum() / 6) and r.score <= 2 / 6

    def refuses(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Refuses every input."""
        raise metrics.InputError("this metric refuses everything")

    for name in registered("test_refuses", refuses):
        with pytest.raises(metrics.InputError, match="refuses everything"):
            evaluate("noise_sweep", name)


def test_a_nonfinite_value_is_an_error_never_a_score(artifact_root: Path) -> None:
    def nan_metric(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """NaN whatever the inputs."""
        return torch.full((), math.nan, dtype=X.dtype)

    for name in registered("test_nan", nan_metric, invariances=metrics.INVARIANCES):
        for task in BATTERY:  # on independent_highdim a NaN clipped to 0 used to score a perfect 1 − 0
            with pytest.raises(tasks.NonFiniteOutput, match="returned nan"):
                evaluate(task, name, root=artifact_root)


def test_labels_reach_label_metrics() -> None:
    seen = []

    def label_count(X: torch.Tensor, Y: torch.Tensor, *, labels: torch.Tensor) -> torch.Tensor:
        """Records the labels it is given; returns 1."""
        seen.append(labels)
        return torch.ones((), dtype=X.dtype)

    for name in registered("test_label_count", label_count, needs_labels=True):
        r = evaluate("noise_sweep", name)
    assert len(seen) == r.details["n_cases"] + 1
    assert all(torch.equal(s, tasks.get_task("noise_sweep").setup("smoke", 0).labels) for s in seen)


def test_similarities_are_oriented_and_self_normalised() -> None:
    t = tasks.get_task("outlier_shift")
    base = evaluate(t, "linear_cka").curve["similarity"]

    def doubled(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """2 × linear CKA: self-similarity 2."""
        return 2.0 * metrics.get_metric("linear_cka")(X, Y)

    for name in registered("test_doubled", doubled, value_range=(0.0, 2.0)):
        assert np.allclose(evaluate(t, name).curve["similarity"], base, atol=1e-14)
    # a distance is turned around: the angular Procrustes distance of X to itself is 0, its similarity 1
    r = evaluate(t, "procrustes_angular")
    assert np.allclose(r.curve["self_similarity"], 1.0, atol=1e-6)
    assert np.all(r.curve["similarity"] <= 1.0 + 1e-6) and r.curve["raw"].max() > 0


def test_nonpositive_self_similarity_scores_worst() -> None:
    def zero(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Always 0: cannot tell X from anything."""
        return torch.zeros((), dtype=X.dtype)

    for name in registered("test_zero", zero):
        r = evaluate("subset_translation", name)
    assert r.score == 0.0 and r.details["n_nonfinite"] == r.details["n_cases"]
    assert r.curve["similarity"].isna().all()


# ---------------------------------------------------------------------------------------------- scoring


def test_random_metric_earns_little(random_metric: tuple[str, torch.Generator], artifact_root: Path) -> None:
    """Expected scores of uniform noise U/U' (similarity over self-similarity): robustness ≈ 0.75 per case (the
    minimum of 6 for global_translation), noise_sweep ≈ 0.1, pc_deletion ≈ 0.2, independent_highdim 0.25,
    matching 1/8. Averaged over 3 seeds the margins below are several standard deviations wide. Each (task, seed)
    draws from its own stream, so adding a task never changes another's numbers."""
    name_, gen = random_metric
    scores: dict[str, list[float]] = {name: [] for name in BATTERY}
    for seed in range(3):
        for k, name in enumerate(BATTERY):
            gen.manual_seed(100 * k + seed)
            scores[name].append(evaluate(name, name_, seed=seed, root=artifact_root).score)
    robust = [np.mean(scores[n]) for n, c in BATTERY.items() if c == "robustness"]
    others = [np.mean(scores[n]) for n, c in BATTERY.items() if c != "robustness"]
    assert max(robust) < 0.95 and np.mean(robust) < 0.85
    assert np.mean(others) < 0.35
    assert np.mean(scores["matching"]) < 0.4


def test_scoring_helpers() -> None:
    from simstress.core.scoring import clip01, mean_clipped, positive_spearman

    assert clip01([-1.0, 0.5, 2.0, math.nan]).tolist() == [0.0, 0.5, 1.0, 0.0]
    assert mean_clipped([1.0, 0.0, math.inf]) == pytest.approx(1 / 3)
    assert positive_spearman([3, 2, 1], [30, 20, 10]) == pytest.approx(1.0)
    assert positive_spearman([1, 2, 3], [30, 20, 10]) == 0.0
    assert positive_spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert positive_spearman([1.0, 1 - 1e-15, 1 + 1e-15], [3, 2, 1]) == 0.0  # rounding noise is no order
