"""The stress tasks on the zoo's networks (smoke scale, the committed slice): their constructions do what their
docstrings claim, checked by independent routes, and a retrained network makes exactly its cells stale."""

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from simstress import metrics, tasks
from simstress.benchmark.plan import plan
from simstress.benchmark.records import ResultStore
from simstress.benchmark.runner import run
from simstress.core.artifacts import ArtifactStore
from simstress.metrics.probe import fit_probe, stratified_split
from simstress.networks import zoo as zoo_module
from simstress.networks.activations import activations
from simstress.networks.zoo import load_network
from simstress.tasks.robustness import separability_preserving_direction
from simstress.tasks.zoo import head_nullspace_direction, sample_test_images

from .conftest import registered


def smoke(name: str, root: Path, seed: int = 0) -> tuple[tasks.Task, tasks.Setup, dict]:
    t = tasks.get_task(name)
    store = ArtifactStore(root)
    built = {k: store.ensure(s) for k, s in t.artifacts("smoke", seed).items()}
    return t, t.setup("smoke", seed, artifacts=built), built


def test_a_metric_that_knows_the_layer_finds_every_twin(artifact_root: Path) -> None:
    t, setup, _ = smoke("layer_correspondence", artifact_root)

    def layer(Z: torch.Tensor) -> int:
        return next(i for stack in (setup.A, setup.B) for i, L in enumerate(stack) if L is Z)

    def oracle(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """1 for the same layer index, 1/2 otherwise."""
        return torch.tensor(1.0 if layer(X) == layer(Y) else 0.5, dtype=X.dtype)

    def constant(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Always 0.3."""
        return torch.tensor(0.3, dtype=X.dtype)

    for name in registered("test_layer_oracle", oracle):
        assert t.evaluate(metrics.get_metric(name), setup).score == 1.0
    for name in registered("test_layer_constant", constant):
        # ties share the credit: chance
        assert t.evaluate(metrics.get_metric(name), setup).score == pytest.approx(1 / 8)
    assert setup.details["network_a"] != setup.details["network_b"]
    assert [a.shape[1] for a in setup.A] == [64, 64, 128, 128, 128, 256, 256, 256]  # pool2 cells × channels


def test_the_head_nullspace_leaves_logits_and_predictions_alone(artifact_root: Path) -> None:
    t, setup, built = smoke("network_class_translation", artifact_root)
    model = load_network(built["network"])
    fc = torch.nn.Linear(model.fc.in_features, 10).double()
    fc.load_state_dict({k: v.double() for k, v in model.fc.state_dict().items()})
    part = next(p for p in setup.parts if p.variant == "head_nullspace")
    X, v = part.X, part.direction
    assert v.norm().item() == pytest.approx(1.0) and (fc.weight @ v).abs().max() < 1e-12
    with torch.no_grad():
        before = fc(X)
        for rows in part.groups[:3]:
            for c in part.shifts:
                after = fc(X + rows[:, None] * (c * v))
                assert ((after - before).abs().max() / before.abs().max()) <= 1e-5
                assert torch.equal(after.argmax(1), before.argmax(1))
    assert setup.details["logit_change_max"] <= 1e-5 and setup.details["predictions_changed"] == 0
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, 64, dtype=torch.float64)
    assert (w @ head_nullspace_direction(w, g)).abs().max() < 1e-12
    with pytest.raises(ValueError, match="no null space"):
        head_nullspace_direction(torch.randn(10, 8), g)


def test_the_qp_direction_is_positive_and_orthogonal_to_the_probe(artifact_root: Path) -> None:
    t, setup, _ = smoke("network_class_translation", artifact_root)
    part = next(p for p in setup.parts if p.variant == "qp_direction")
    probe = fit_probe(part.X, setup.labels)
    d, residual, solution = separability_preserving_direction(probe)
    assert torch.equal(d, part.direction)
    assert solution.min() >= 0.1 - 1e-12 and d.min() > 0  # the QP's constraint, and a ReLU-like direction
    normals = probe.weight / probe.weight.norm(dim=1, keepdim=True)
    assert residual <= 1e-6 and (normals @ solution / solution.norm()).abs().max() <= 1e-6
    before = probe.predict(part.X)
    for rows in part.groups:
        assert torch.equal(probe.predict(part.X + rows[:, None] * (part.shifts[-1] * d)), before)


@pytest.mark.parametrize("name", ["network_class_translation", "network_outlier"])
def test_linear_cka_follows_theorem_1_on_real_features(name: str, artifact_root: Path) -> None:
    t, setup, _ = smoke(name, artifact_root)
    curve = t.evaluate(metrics.get_metric("linear_cka"), setup).curve
    assert np.allclose(curve["similarity"], curve["linear_cka_theory"], atol=1e-9)
    assert curve["similarity"].iloc[-1] < 0.5  # far translations do move linear CKA


def test_memorization_ground_truth_comes_from_each_blocks_function(artifact_root: Path) -> None:
    t, setup, built = smoke("memorization", artifact_root)
    agreement, supported = setup.details["agreement"], setup.details["supported"]
    assert all(len(v) == 8 for v in agreement.values())
    assert agreement["generalized"][-1] > max(agreement["memorized"][-1], agreement["random"][-1])
    # recomputed from the networks themselves: the last block's probes, by an independent fit
    images, labels, _ = sample_test_images("smoke", 30, 0)
    blocks = {name: activations(load_network(built[name]), images, ["block7"], reduction="pool2")["block7"].double()
              for name in ("a", "random")}
    train, test = stratified_split(labels, test_fraction=0.5, seed=0)
    pred = {n: fit_probe(X[train], labels[train]).predict(X[test]) for n, X in blocks.items()}
    assert float((pred["a"] == pred["random"]).double().mean()) == pytest.approx(agreement["random"][-1])
    assert supported["random"][-1] == (abs(agreement["generalized"][-1] - agreement["random"][-1]) >= 0.02)
    assert built["memorized"].spec.params["seed"] != t.artifacts("smoke", 1)["memorized"].params["seed"]


def test_a_retrained_network_makes_exactly_its_cells_stale(tmp_path: Path, artifact_root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["layer_correspondence", "network_outlier"]
    for name in names:  # the session's smoke zoo, copied: nothing is trained twice
        smoke(name, artifact_root)
    shutil.copytree(artifact_root / "networks", tmp_path / "networks")
    store = ResultStore(tmp_path)
    grid = {"scale": "smoke", "seeds": [0], "device": "cpu", "quiet": True}
    summary = run(store, ["linear_cka"], names, **grid)
    assert summary.computed["ok"] == 2 and summary.artifacts == 0
    records = {n: store.load_record("smoke", n, "linear_cka") for n in names}
    used = {n: {a.name: a.sha256 for a in r.artifacts} for n, r in records.items()}
    assert used["layer_correspondence"]["a"] == used["network_outlier"]["network"]
    # rebuild the second network of layer_correspondence (used by no network_outlier cell) with other weights: here
    # untrained, which is what a real retraining's other values look like to the records
    spec = tasks.get_task("layer_correspondence").artifacts("smoke", 0)["b"]
    artifacts = ArtifactStore(tmp_path)
    shutil.rmtree(artifacts.path(spec))
    monkeypatch.setattr(zoo_module, "train", lambda *args, **kwargs: [])
    assert artifacts.ensure(spec).sha256 != used["layer_correspondence"]["b"]
    p = plan(store, ["linear_cka"], names, scale="smoke", seeds=[0], device="cpu")
    assert [c.task for c in p.todo] == ["layer_correspondence"]
    assert [c.task for c, _ in p.current] == ["network_outlier"]


def test_memorization_counts_a_refused_case_as_a_loss_for_its_own_pair_only() -> None:
    t = tasks.get_task("memorization")
    setup = SimpleNamespace(agreement={"generalized": [0.9] * 4, "memorized": [0.1] * 4, "random": [0.1] * 4})
    rows = []
    for block, (gen, mem, rnd) in enumerate([(0.9, 0.5, 0.5), (0.9, math.nan, 0.5), (math.nan, 0.5, 0.5),
                                               (0.9, 0.895, 0.95)]):
        rows += [{"block": block, "pair": p, "similarity": v}
                 for p, v in zip(("generalized", "memorized", "random"), (gen, mem, rnd))]
    # wins: block 0 both; block 1 both (a refused weaker pair cannot win); block 2 none (the stronger pair refused);
    # block 3 neither (0.005 < the 0.01 margin; random above)
    assert t.score(pd.DataFrame(rows), setup) == pytest.approx(4 / 8)
    # a block whose probes agree alike with both partners carries no truth: it is not scored
    setup.agreement["memorized"][0] = setup.agreement["random"][0] = 0.89
    assert t.score(pd.DataFrame(rows), setup) == pytest.approx(2 / 6)
