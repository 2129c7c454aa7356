"""Each task's construction and ground truth, and the paper's picture at smoke scale."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.linalg import center, double_center
from simstress.tasks.robustness import translate

from .conftest import evaluate


@pytest.fixture
def gram_centred_cka() -> Iterator[str]:
    """Linear CKA centred on the Gram side (H·XXᵀ·H), the float32 trap of Davari et al.'s first figure."""

    def gram_cka(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """<HKH, HLH>/(||HKH|| ||HLH||) with K = XXᵀ of the raw features."""
        K, L = double_center(X @ X.T), double_center(Y @ Y.T)
        return (K * L).sum() / ((K * K).sum().sqrt() * (L * L).sum().sqrt())

    metrics.register(name="test_gram_cka", cost="O(n²p)", reference="test only",  # invariant in exact arithmetic
                     invariances=("translation", "isotropic_scaling", "orthogonal", "permutation"))(gram_cka)
    yield "test_gram_cka"
    metrics.REGISTRY.remove("test_gram_cka")


def test_paper_picture_at_smoke_scale() -> None:
    outlier = evaluate(tasks.get_task("outlier_shift"), "linear_cka").score
    subset = tasks.get_task("subset_translation")
    assert outlier < 0.5
    assert evaluate(subset, "linear_cka").score < 0.5
    assert evaluate(subset, "cca_mean").score > 0.95
    independent = tasks.get_task("independent_highdim")
    assert (evaluate(independent, "linear_cka").score
            < evaluate(independent, "linear_cka_debiased").score)


def test_class_translation_leaves_probe_predictions_identical() -> None:
    t = tasks.get_task("class_translation")
    s = t.setup("smoke", 0)
    part = s.parts[0]
    d = part.direction
    assert float(d.min()) > 0 and float(d.norm()) == pytest.approx(1.0, abs=1e-12)
    assert float((s.probe.weight @ d).abs().max()) < 1e-12  # orthogonal to every class normal
    before = s.probe.predict(part.X)
    for rows in part.groups:
        for c in part.shifts + [1e4 * s.details["rms_radius"]]:  # the sweep, and far beyond it
            Y = translate(part.X, rows, c * d)
            assert bool((Y >= 0).all())  # activations stay non-negative
            assert torch.equal(s.probe.predict(Y), before)
    r = evaluate(t, "linear_cka")
    assert (r.curve["predictions_changed"] == 0).all()
    assert (r.curve["probe_accuracy"] == r.details["probe_accuracy_before"]).all()
    assert r.details["probe_accuracy_before"] > 0.5  # the probe reads the 10 classes (chance 0.1)
    assert sorted(r.curve["class"].unique()) == list(range(10))


def test_invertible_linear_maps_are_invertible_and_ccas_see_it() -> None:
    t = tasks.get_task("invertible_linear")
    s = t.setup("smoke", 0)
    for mu, sd, M, cond in s.maps:
        assert cond < t.max_condition
        assert cond == pytest.approx(float(torch.linalg.cond(M)), rel=1e-9)
        assert torch.allclose(torch.linalg.solve(M.T, (s.X @ M).T).T, s.X, atol=1e-8)  # X recovered from Y
    assert evaluate(t, "cca_mean").score > 0.999  # invariant to invertible linear maps
    assert evaluate(t, "linear_cka").score < 0.9  # not invariant (Fig. 4b)


def test_global_translation_is_float32_and_catches_gram_side_centring(gram_centred_cka: str) -> None:
    t = tasks.get_task("global_translation")
    s = t.setup("smoke", 0)
    assert s.X.dtype == torch.float32 and s.direction.dtype == torch.float32
    assert evaluate(t, "linear_cka").score > 0.99  # feature-side centring stays sound
    r = evaluate(t, gram_centred_cka)
    assert r.score < 0.5  # Gram-side centring in float32: ≈0.01 at c = 2e4
    assert r.curve["similarity"].iloc[0] > 0.99  # fine while c is small


def test_noise_sweep_rewards_a_falling_metric() -> None:
    r = evaluate(tasks.get_task("noise_sweep"), "linear_cka")
    s = r.curve["similarity"].to_numpy()
    assert s[0] == pytest.approx(1.0, abs=1e-12)  # ε = 0 is X itself
    assert np.all(np.diff(s) < 0) and s[-1] < 0.2
    assert r.score == pytest.approx(s[0] - s[-1], rel=1e-12)  # Spearman = 1


def test_pc_deletion_ground_truth() -> None:
    t = tasks.get_task("pc_deletion")
    s = t.setup("smoke", 0)
    for v in s.variants:
        acc = s.details["probe_accuracy"][v.name]
        assert acc[0] > 0.7 and acc[-1] < 0.35  # from well above to about chance (1/4), in both variants
        assert all(a >= b for a, b in zip(acc, acc[1:]))
        assert min(s.details[f"class_sizes_{v.name}"]) > 0.15 * s.X.shape[0]  # the argmax labels are balanced
        for k in s.sweep[1:]:
            Y = t.delete(s, v, k)
            assert float((center(Y) @ v.components[:, :k]).abs().max()) < 1e-10  # the k directions are gone
            assert torch.allclose(Y.mean(0), s.X.mean(0), atol=1e-12)
    removed = s.details["variance_removed"]
    assert removed["top"][-1] > 0.5 and removed["low"][-1] < 0.25  # the low directions carry labels, little variance
    # Ding et al.'s finding: linear CKA tracks the top deletions but barely moves while the low ones destroy the
    # labels, so it earns the top variant only; a probe-based metric tracks both
    r = evaluate(t, "linear_cka")
    low = r.curve.loc[r.curve["variant"] == "low", "similarity"]
    assert low.min() > 0.95 and 0.5 <= r.score < 0.75
    assert evaluate(t, "probe_agreement").score == pytest.approx(1.0)


def test_independent_highdim_biased_cka_reads_p_over_p_plus_n() -> None:
    r = evaluate(tasks.get_task("independent_highdim"), "linear_cka")
    n, p = r.curve["n"], r.curve["p"]
    assert list(r.curve["x"]) == [0.1, 0.5, 1.0, 2.0, 5.0, 10.0] and list(p) == [10, 50, 100, 200, 500, 1000]
    assert np.allclose(r.curve["similarity"], p / (p + n), atol=0.03)
    debiased = evaluate(tasks.get_task("independent_highdim"), "linear_cka_debiased")
    assert np.abs(debiased.curve["similarity"]).max() < 0.05


def test_matching_partners() -> None:
    t = tasks.get_task("matching")
    s = t.setup("smoke", 0)
    assert len(s.A) == len(s.B) == 8
    r = evaluate(t, "linear_cka")
    assert r.score == 1.0
    assert len(r.curve) == 64 and r.curve["partner"].sum() == 8
    # the shared component makes wrong partners far from dissimilar: the task is not trivial
    wrong = r.curve.loc[~r.curve["partner"], "similarity"]
    right = r.curve.loc[r.curve["partner"], "similarity"]
    assert wrong.mean() > 0.3 and right.min() - wrong.max() < 0.3


def test_subset_translation_records_when_the_cubes_stay_apart() -> None:
    t = tasks.get_task("subset_translation")
    for seed in (0, 3):  # seed 3's direction points back toward cube 1: overlap at c = 5
        s = t.setup("smoke", seed)
        part = s.parts[0]
        rows = part.groups[0]
        for c, truth in zip(part.shifts, part.truth[0]):
            Y = translate(part.X, rows, c * part.direction)
            lo0, hi0 = Y[~rows].min(0).values, Y[~rows].max(0).values
            lo1, hi1 = Y[rows].min(0).values, Y[rows].max(0).values
            apart = bool(((hi0 < lo1) | (hi1 < lo0)).any())  # some coordinate separates the samples
            if truth["cubes_disjoint"]:
                assert apart
        assert s.details["cubes_disjoint_at_every_c"] == (seed == 0)
