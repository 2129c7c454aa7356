"""The grounding tasks on the smoke population: their scores reward exactly the ground truth they state (oracle
metrics that know it score 1, constant ones 0), their rank statistics agree with independent routes, and the
ground truth they rest on is measured on the networks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from simstress import metrics, tasks
from simstress.core.artifacts import ArtifactStore
from simstress.tasks.grounding import jensen_shannon, nearest_depth, normalized_average_precision

from .conftest import registered

PAIR_TASKS = ("accuracy_grounding", "output_grounding", "label_randomization", "shortcut_affinity", "augmentation")
GROUNDING = (*PAIR_TASKS, "layer_monotonicity", "cross_architecture_correspondence")


@pytest.fixture(scope="module")
def setups(artifact_root: Path) -> dict:
    store = ArtifactStore(artifact_root)
    out = {}
    for name in GROUNDING:
        t = tasks.get_task(name)
        out[name] = t.setup("smoke", 0, artifacts={k: store.ensure(s) for k, s in t.artifacts("smoke", 0).items()})
    return out


def pair_oracle(setup, column: str, sign: float):
    """A metric that reads the ground truth of the pair its two representations belong to."""
    ids = {id(x): key for key, x in setup.reps.items()}
    truth = {(a, b): t[column] for a, b, _, t in setup.pairs}

    def oracle(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Similarity from the pair's ground truth (1 for a representation with itself)."""
        a, b = ids[id(X)], ids[id(Y)]
        value = 1.0 if a == b else 0.5 + sign * 0.4 * float(truth[(a, b)])
        return torch.tensor(value, dtype=X.dtype)

    return oracle


def test_average_precision_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, pos = rng.normal(size=30), rng.random(30) < 0.3
        pos[:2] = [True, False]
        order = np.argsort(-s)
        hits = np.cumsum(pos[order])
        by_definition = np.mean([hits[r] / (r + 1) for r in range(30) if pos[order][r]])  # untied scores
        rescaled, ap = normalized_average_precision(s, pos)
        assert ap == pytest.approx(by_definition)
        assert rescaled == pytest.approx(max(0.0, (ap - pos.mean()) / (1 - pos.mean())))
    pos = np.array([True, False, True, False, False])
    assert normalized_average_precision(np.array([0.9, 0.1, 0.8, 0.2, 0.3]), pos) == (1.0, 1.0)
    assert normalized_average_precision(np.full(5, 0.7), pos) == (0.0, pytest.approx(0.4))  # a constant: chance
    assert normalized_average_precision(np.array([np.nan, 0.1, 0.8, 0.2, 0.3]), pos)[0] < 1.0  # NaN ranks last
    with pytest.raises(ValueError, match="positive and negative"):
        normalized_average_precision(np.ones(3), np.ones(3, dtype=bool))


def test_jensen_shannon_agrees_with_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 10, generator=g, dtype=torch.float64), torch.randn(50, 10, generator=g, dtype=torch.float64)
    expected = np.mean(jensenshannon(a.softmax(1).numpy(), b.softmax(1).numpy(), axis=1) ** 2)  # natural log
    assert jensen_shannon(a, b) == pytest.approx(expected, rel=1e-9)
    assert jensen_shannon(a, a) == pytest.approx(0.0, abs=1e-12) and jensen_shannon(a, b) <= np.log(2)


def test_nearest_relative_depth() -> None:
    assert nearest_depth(0, 10, 7) == {0} and nearest_depth(9, 10, 7) == {6}
    assert nearest_depth(3, 7, 6) == {2, 3}  # 0.5 lies halfway between 0.4 and 0.6: both count
    assert all(len(nearest_depth(i, 10, 7)) == 1 for i in range(10))


@pytest.mark.parametrize("name", PAIR_TASKS)
def test_an_oracle_of_the_ground_truth_scores_1(name: str, setups: dict) -> None:
    t, setup = tasks.get_task(name), setups[name]
    column, sign = {"accuracy_grounding": ("accuracy_difference", -1.0), "output_grounding": ("jsd", -1.0)}.get(
        name, ("same_level", 1.0))
    for metric in registered(f"test_oracle_{name}", pair_oracle(setup, column, sign)):
        assert t.evaluate(metrics.get_metric(metric), setup).score == pytest.approx(1.0)
    for metric in registered(f"test_anti_oracle_{name}", pair_oracle(setup, column, -sign)):
        assert t.evaluate(metrics.get_metric(metric), setup).score == 0.0


def test_within_and_cross_architecture_pairs_are_named(setups: dict) -> None:
    curve = tasks.get_task("accuracy_grounding").evaluate(metrics.get_metric("linear_cka"),
                                                          setups["accuracy_grounding"]).curve
    assert set(curve["pair"]) == {"within", "cross"}
    assert (curve["pair"] == "within").eq(curve["family_a"] == curve["family_b"]).all()
    for name in ("label_randomization", "shortcut_affinity", "augmentation"):
        pairs = setups[name].pairs
        assert {t["pair"] for *_, t in pairs} == {"within"} and any(t["same_level"] for *_, t in pairs)


def test_the_ground_truth_is_measured_on_the_networks(setups: dict) -> None:
    labels = setups["label_randomization"].details["function"]
    assert labels["levels"]["1.0"]["test_accuracy"] <= 0.15 < labels["levels"]["0.0"]["test_accuracy"]
    assert labels["levels_differ_in_function"]
    shortcut = setups["shortcut_affinity"].details["function"]["levels"]
    reliance = {q: v["test_accuracy_true_shortcut"] - v["test_accuracy_randomised_shortcut"]
                for q, v in shortcut.items()}
    assert reliance["1.0"] >= 0.2 and abs(reliance["0.0"]) < 0.1
    aug = setups["augmentation"].details["function"]["levels"]
    assert len(aug["2.0"]["test_accuracy_by_augmentation"]) == 4
    facts = setups["accuracy_grounding"].details["function"]
    assert all(facts[f]["accuracy_max"] > facts[f]["accuracy_min"] for f in ("m1", "resnet", "vit", "mobilenet"))
    # accuracies recomputed from the stored logits agree with the sample accuracy the details give
    models = setups["output_grounding"].details["models"]
    assert all(0.0 <= m["sample_accuracy"] <= 1.0 for m in models.values())


def depth_oracle(setup):
    """A metric whose similarity falls with the distance of the two layers' relative depths."""
    where = {id(x): (i, len(layers)) for layers in setup.networks.values() for i, x in enumerate(layers)}

    def depth(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Similarity falls with the distance of relative depths."""
        (i, la), (j, lb) = where[id(X)], where[id(Y)]
        return torch.tensor(1.0 - abs(i / (la - 1) - j / (lb - 1)), dtype=X.dtype)

    return depth


@pytest.mark.parametrize("name", ["cross_architecture_correspondence", "layer_monotonicity"])
def test_a_metric_that_knows_the_depth_scores_1(name: str, setups: dict) -> None:
    t, setup = tasks.get_task(name), setups[name]
    for metric in registered(f"test_depth_oracle_{name}", depth_oracle(setup)):
        assert t.evaluate(metrics.get_metric(metric), setup).score == pytest.approx(1.0)
    if name == "cross_architecture_correspondence":
        assert set(setup.details["probe_accuracy"]) == set(setup.networks)


@pytest.mark.parametrize("name", GROUNDING)
def test_linear_cka_is_scored_on_every_grounding_task(name: str, setups: dict) -> None:
    r = tasks.get_task(name).evaluate(metrics.get_metric("linear_cka"), setups[name])
    assert 0.0 <= r.score <= 1.0 and r.details["n_nonfinite"] == 0
    assert r.details["n"] == 150


def test_the_grounding_section_ranks_and_draws_from_records(setups: dict) -> None:
    from simstress.benchmark.cells import seed_run
    from simstress.benchmark.leaderboard import build_board
    from simstress.core.record import Record, TaskInfo
    from simstress.tasks.grounding_page import TASKS, grounding

    chosen = ["linear_cka", "procrustes"]
    recs = []
    for name in TASKS:
        t = tasks.get_task(name)
        for m in chosen:
            run = seed_run(0, t.evaluate(metrics.get_metric(m), setups[name]), 0.0)
            recs.append(Record(m, 1, name, t.version, TaskInfo(t.category, t.summary, t.sweep_name, t.log_x, t.data),
                               "smoke", (0,), "cpu", "test", {}, "", runs=(run,)))
    section = grounding(build_board("smoke", recs, {}).view("figs"))
    assert section.title == "Grounding"
    rows = [line for line in section.lines if line.startswith("| `")]
    means = [float(row.rsplit("|", 2)[1]) for row in rows]
    assert len(rows) == 2 and means == sorted(means, reverse=True)
    first = rows[0].split("`")[1]
    expected = np.mean([r.score for r in recs if r.metric == first])
    assert means[0] == pytest.approx(expected, abs=5e-4)
    assert any("label_randomization" in line and "per level" in line for line in section.lines)
    png = next(f for f in section.figures if f.name == "grounding_label_randomization.png").draw()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert grounding(build_board("smoke", [r for r in recs if r.task == "layer_monotonicity"], {}).view("f")) \
        is not None


def test_the_comparison_with_the_literature_follows_the_scores() -> None:
    from simstress.tasks.grounding_page import TASKS, literature

    k = len(TASKS)
    split = [("procrustes", [0.9] * k), ("linear_cka", [0.8] * (k - 1) + [1.0]), ("pwcca", [0.5] * k)]
    text = "\n".join(literature(split))
    assert "no metric is best (within 0.005) on all 7 tasks: an agreement" in text
    assert f"`{TASKS[-1]}` 1.000: `linear_cka`" in text
    assert (f"Here it agrees: over the 7 tasks all three scored, mean 0.900 for `procrustes`, "
            f"{(0.8 * (k - 1) + 1.0) / k:.3f} for `linear_cka` and 0.500 for `pwcca`; Procrustes is at least linear "
            f"CKA's score (within 0.005) on 6 of them and above PWCCA's on 7.") in text
    dominant = [("procrustes", [0.5] * k), ("linear_cka", [0.8] * k), ("pwcca", [0.6] * (k - 1) + [None])]
    text = "\n".join(literature(dominant))
    assert "`linear_cka` is best (within 0.005) on all 7 tasks: a disagreement" in text
    assert "Here it does not agree: over the 6 tasks all three scored, mean 0.500" in text
    assert literature([("procrustes", [None] * k)]) == []
