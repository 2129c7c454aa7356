"""The artifact store, and the runner building each artifact once and staling exactly the cells that used it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from simstress import tasks
from simstress.benchmark import runner
from simstress.benchmark.plan import plan
from simstress.benchmark.records import ResultStore
from simstress.core.artifacts import ArtifactError, ArtifactSpec, ArtifactStore, artifact_builder

from .conftest import NoiseSweep, fake_check

BUILDS: list[dict] = []  # every call of the test builders, in order
SALT = {"value": 0.0}  # changes what `test_matrix` writes without changing its spec: a non-reproducible rebuild


@artifact_builder("test_matrix")
def build_matrix(params, inputs, out: Path, device: str) -> dict:
    BUILDS.append({"kind": "test_matrix", **params})
    g = torch.Generator().manual_seed(params["seed"])
    M = torch.randn(params["n"], params["p"], generator=g, dtype=torch.float64) + SALT["value"]
    torch.save(M, out / "matrix.pt")
    return {"mean": float(M.mean())}


@artifact_builder("test_scaled", version=3)
def build_scaled(params, inputs, out: Path, device: str) -> dict:
    BUILDS.append({"kind": "test_scaled", **params})
    M = torch.load(inputs["base"].file("matrix.pt"))
    torch.save(params["factor"] * M, out / "scaled.pt")
    return {}


@artifact_builder("test_broken")
def build_broken(params, inputs, out: Path, device: str) -> dict:
    raise RuntimeError("the training diverged")


def matrix(seed: int = 0, n: int = 30, p: int = 4) -> ArtifactSpec:
    return ArtifactSpec("test_matrix", {"seed": seed, "n": n, "p": p})


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    BUILDS.clear()
    SALT["value"] = 0.0
    yield


def test_key_is_everything_that_determines_the_artifact() -> None:
    a = matrix()
    assert a.key == matrix().key and len(a.key) == 20
    assert len({a.key, matrix(seed=1).key, matrix(p=5).key, ArtifactSpec("test_scaled", a.params).key}) == 4
    scaled = ArtifactSpec("test_scaled", {"factor": 2.0}, (("base", a),))
    assert scaled.key != ArtifactSpec("test_scaled", {"factor": 2.0}, (("base", matrix(seed=1)),)).key
    assert ArtifactSpec.from_dict(json.loads(json.dumps(scaled.to_dict()))) == scaled  # plain data both ways
    with pytest.raises(ArtifactError, match="no builder is registered for artifact kind 'nope'"):
        ArtifactSpec("nope").key


def test_ensure_builds_once_with_its_inputs_and_writes_a_card(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    scaled = ArtifactSpec("test_scaled", {"factor": 2.0}, (("base", matrix()),))
    assert not store.have(scaled)
    with pytest.raises(ArtifactError, match="is not built"):
        store.get(scaled)
    built = store.ensure(scaled)
    assert [b["kind"] for b in BUILDS] == ["test_matrix", "test_scaled"]  # the input first
    assert store.ensure(scaled).sha256 == built.sha256 and len(BUILDS) == 2  # never twice
    base = store.get(matrix())
    assert torch.equal(torch.load(built.file("scaled.pt")), 2.0 * torch.load(base.file("matrix.pt")))
    card = json.loads((built.path / "card.json").read_text())
    assert card["kind"] == "test_scaled" and card["builder_version"] == 3 and card["key"] == scaled.key
    assert card["inputs"] == {"base": {"key": base.spec.key, "sha256": base.sha256}}
    assert set(card["files"]) == {"scaled.pt"} and card["sha256"] == built.sha256 and "torch" in card["packages"]
    assert base.card["mean"] == pytest.approx(float(torch.load(base.file("matrix.pt")).mean()))
    assert built.path == tmp_path / "test_scaled" / scaled.key
    with pytest.raises(ArtifactError, match="has no file 'x.pt'"):
        built.file("x.pt")


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    spec = ArtifactSpec("test_broken", {"a": 1})
    with pytest.raises(RuntimeError, match="diverged"):
        store.ensure(spec)
    assert not store.have(spec) and list((tmp_path / "test_broken").iterdir()) == []


# ------------------------------------------------------------------------------------------- in the runner


@dataclass
class MatrixSetup(tasks.Setup):
    X: torch.Tensor
    noise: torch.Tensor


class MatrixNoise(NoiseSweep):
    """Y = M + s·E on a stored matrix M shared by every metric and seed (test fixture).

    Construction: M is the artifact `test_matrix` (30 × 4, seed 0), E seeded. Ground truth: similarity falls as
    s grows. Score: max(0, Spearman(s, −similarity)). Source: this test (2026).
    """

    def __init__(self, name: str, kind: str = "test_matrix") -> None:
        super().__init__(name)
        self.kind = kind

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return {"matrix": ArtifactSpec(self.kind, {"seed": 0, "n": 30, "p": 4} if self.kind == "test_matrix" else {})}

    def build(self, size, seed, device, artifacts) -> MatrixSetup:
        X = torch.load(artifacts["matrix"].file("matrix.pt"))
        E = torch.randn(X.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return MatrixSetup(labels=None, details={"seed": seed, "dtype": "float64"}, X=X, noise=E)


def register(task_list: list[NoiseSweep]) -> None:
    for task in task_list:
        tasks.REGISTRY.remove(task.name)
        tasks.REGISTRY.add(task.name, task, "tests.test_artifacts")


def _run(root: Path, task_list: list[NoiseSweep], metric_ids=("linear_cka", "procrustes"), **kw):
    register(task_list)
    kw = {"scale": "smoke", "seeds": [0, 1], "device": "cpu", "quiet": True, **kw}
    return runner.run(ResultStore(root), list(metric_ids), [t.name for t in task_list], **kw)


@pytest.fixture
def two_tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[NoiseSweep]]:
    monkeypatch.setattr(runner, "check_metric", fake_check)
    made = [MatrixNoise("matrix_task"), NoiseSweep("plain_task")]
    register(made)
    yield made
    for task in made:
        tasks.REGISTRY.remove(task.name)


def test_an_artifact_needed_by_many_cells_is_built_once_and_named_in_their_records(
        tmp_path: Path, two_tasks: list[NoiseSweep]) -> None:
    first = plan(ResultStore(tmp_path), ["linear_cka", "procrustes"], ["matrix_task", "plain_task"], scale="smoke",
                 seeds=[0, 1], device="cpu")
    assert [s.key for s in first.artifacts] == [matrix().key]  # two metrics × two seeds need it: listed once
    assert {(c.task, c.metric) for c in first.blocked} == {("matrix_task", "linear_cka"), ("matrix_task", "procrustes")}
    assert not BUILDS  # planning computes nothing
    summary = _run(tmp_path, two_tasks)
    assert summary.computed == {"ok": 4} and summary.artifacts == 1 and len(BUILDS) == 1
    sha = ArtifactStore(tmp_path).get(matrix()).sha256
    rec = json.loads((tmp_path / "records/smoke/matrix_task/procrustes.json").read_text())
    assert rec["status"] == "ok" and rec["artifacts"] == [
        {"seed": s, "name": "matrix", "kind": "test_matrix", "key": matrix().key, "sha256": sha} for s in (0, 1)]
    assert json.loads((tmp_path / "records/smoke/plain_task/procrustes.json").read_text())["artifacts"] == []
    again = _run(tmp_path, two_tasks)
    assert sum(again.computed.values()) == 0 and again.current == 4 and len(BUILDS) == 1


def test_a_rebuilt_artifact_makes_exactly_its_dependent_cells_stale(tmp_path: Path,
                                                                    two_tasks: list[NoiseSweep]) -> None:
    _run(tmp_path, two_tasks)
    shutil.rmtree(ArtifactStore(tmp_path).path(matrix()))
    SALT["value"] = 1.0  # the rebuild writes other bytes under the same key
    summary = _run(tmp_path, two_tasks)
    assert summary.artifacts == 1 and summary.computed == {"ok": 2} and summary.current == 2
    stale = {p.parent.name for p in (tmp_path / "records/smoke").glob("*/*.json")
             if json.loads(p.read_text())["artifacts"]}
    assert stale == {"matrix_task"}
    shutil.rmtree(ArtifactStore(tmp_path).path(matrix()))
    SALT["value"] = 1.0  # a rebuild with the same bytes stales nothing
    rebuilt = _run(tmp_path, two_tasks)
    assert rebuilt.artifacts == 1 and sum(rebuilt.computed.values()) == 0 and rebuilt.current == 4


def test_an_artifact_that_fails_to_build_fails_its_cells_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "check_metric", fake_check)
    broken, plain = MatrixNoise("broken_task", kind="test_broken"), NoiseSweep("plain_task")
    try:
        summary = _run(tmp_path, [broken, plain], metric_ids=["linear_cka"])
    finally:
        for name in ("broken_task", "plain_task"):
            tasks.REGISTRY.remove(name)
    assert summary.computed == {"ok": 1, "error": 1} and summary.artifacts == 0
    rec = json.loads((tmp_path / "records/smoke/broken_task/linear_cka.json").read_text())
    assert rec["status"] == "error" and "RuntimeError: the training diverged" in rec["error"]["message"]
