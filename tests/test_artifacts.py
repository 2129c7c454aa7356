"""The artifact store, and the runner building each artifact once and staling exactly the cells that used it."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from simstress import tasks
from simstress.benchmark import jobs, runner
from simstress.benchmark.plan import plan
from simstress.benchmark.records import ResultStore
from simstress.core.artifacts import (
    ArtifactError,
    ArtifactFault,
    ArtifactSpec,
    ArtifactStore,
    artifact_builder,
    fingerprint,
    fingerprints_match,
    upgrade_card,
)

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


@artifact_builder("test_slow")
def build_slow(params, inputs, out: Path, device: str) -> dict:
    """Counts its calls; waits up to 1 s for a second, concurrent call (which only a missing lock lets in)."""
    BUILDS.append({"kind": "test_slow"})
    deadline = time.monotonic() + 1.0
    while len(BUILDS) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    (out / "x.txt").write_text("x")
    return {}


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


def test_two_processes_ensuring_one_artifact_build_it_once(tmp_path: Path) -> None:
    # two threads hold two open files, as two processes would: the second waits on the first's lock. Without the lock
    # the second call would reach the builder within its 1 s wait (a one-sided check: load can only hide a bug)
    spec = ArtifactSpec("test_slow", {"a": 1})
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(ArtifactStore(tmp_path).ensure, spec)
        while not BUILDS:
            time.sleep(0.01)
        second = pool.submit(ArtifactStore(tmp_path).ensure, spec)
        built = first.result(), second.result()
    assert BUILDS == [{"kind": "test_slow"}] and built[0].sha256 == built[1].sha256
    assert [p.name for p in (tmp_path / "test_slow").iterdir()] == [spec.key]  # no lock file or folder left


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
    monkeypatch.setattr(jobs, "check_metric", fake_check)
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
    fp = ArtifactStore(tmp_path).get(matrix()).card["fingerprint"]
    assert rec["status"] == "ok" and rec["artifacts"] == [
        {"seed": s, "name": "matrix", "kind": "test_matrix", "key": matrix().key, "sha256": sha, "fingerprint": fp}
        for s in (0, 1)]
    assert json.loads((tmp_path / "records/smoke/plain_task/procrustes.json").read_text())["artifacts"] == []
    again = _run(tmp_path, two_tasks)
    assert sum(again.computed.values()) == 0 and again.current == 4 and len(BUILDS) == 1


def rebuild(root: Path, spec: ArtifactSpec) -> None:
    """Build `spec` again in place, as `simstress train` or a user deleting its folder would."""
    store = ArtifactStore(root)
    shutil.rmtree(store.path(spec), ignore_errors=True)
    store.ensure(spec)


def test_a_rebuilt_artifact_stales_its_cells_only_when_its_values_changed(tmp_path: Path,
                                                                         two_tasks: list[NoiseSweep]) -> None:
    _run(tmp_path, two_tasks)
    records = {p: p.read_bytes() for p in sorted((tmp_path / "records").rglob("*.json"))}
    shutil.rmtree(ArtifactStore(tmp_path).path(matrix()))
    gone = _run(tmp_path, two_tasks)  # the records already hold what it gave: nothing is built, nothing computed
    assert gone.artifacts == 0 and sum(gone.computed.values()) == 0 and gone.current == 4 and len(BUILDS) == 1
    SALT["value"] = 1e-9  # a rebuild that differs by rounding only (another CPU's arithmetic)
    rebuild(tmp_path, matrix())
    used = json.loads((tmp_path / "records/smoke/matrix_task/procrustes.json").read_text())["artifacts"][0]
    assert ArtifactStore(tmp_path).get(matrix()).sha256 != used["sha256"]  # other bytes
    same = _run(tmp_path, two_tasks)
    assert sum(same.computed.values()) == 0 and same.current == 4
    assert {p: p.read_bytes() for p in sorted((tmp_path / "records").rglob("*.json"))} == records
    SALT["value"] = 1.0  # a rebuild with other values under the same key: exactly its cells go stale
    rebuild(tmp_path, matrix())
    summary = _run(tmp_path, two_tasks)
    assert summary.computed == {"ok": 2} and summary.current == 2
    stale = {p.parent.name for p in (tmp_path / "records").rglob("*.json") if p.read_bytes() != records[p]}
    assert stale == {"matrix_task"}


def test_every_file_is_checked_against_its_card_before_use(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    built = store.ensure(matrix())
    path = built.file("matrix.pt")
    original = path.read_bytes()
    for change in (lambda M: 1.5 * M, lambda M: torch.randn_like(M)):  # scaled weights, noise for a layer
        torch.save(change(torch.load(path)), path)
        with pytest.raises(ArtifactFault, match="matrix.pt does not match its card"):
            store.get(matrix())
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactFault, match=r"git checkout -- .*or delete"):
        store.get(matrix())
    path.write_bytes(original)
    assert store.get(matrix()).sha256 == built.sha256  # restored: usable again
    card = json.loads((built.path / "card.json").read_text())
    card["files"]["matrix.pt"] = "0" * 64  # a hand edit that would hide a changed file
    (built.path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactFault, match="was edited after the artifact was built"):
        store.get(matrix())
    assert store.state(matrix())[0] == "broken"


def test_a_missing_or_truncated_card_is_refused_clearly_never_rebuilt_over(
        tmp_path: Path, two_tasks: list[NoiseSweep]) -> None:
    _run(tmp_path, two_tasks, force=True)
    store = ArtifactStore(tmp_path)
    card = store.path(matrix()) / "card.json"
    text = card.read_text()
    for damage in (lambda: card.unlink(), lambda: card.write_text(text[: len(text) // 2])):
        damage()
        summary = _run(tmp_path, two_tasks, force=True)
        assert summary.computed == {"ok": 2, "error": 2} and len(BUILDS) == 1  # no retraining over it
        rec = json.loads((tmp_path / "records/smoke/matrix_task/linear_cka.json").read_text())
        assert rec["error"]["cause"] == "environment" and "ArtifactFault" in rec["error"]["type"]
        assert str(store.path(matrix())) in rec["error"]["message"]
        assert not any(line[2].refusal for line in summary.errors) and summary.failures
        card.write_text(text)
        fixed = _run(tmp_path, two_tasks)  # an environment fault is retried once fixed
        assert fixed.computed == {"ok": 2} and fixed.current == 2


def test_a_results_folder_can_be_shared_by_a_group(tmp_path: Path) -> None:
    built = ArtifactStore(tmp_path).ensure(matrix())
    mask = os.umask(0o022)
    os.umask(mask)
    assert built.path.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (built.path / "matrix.pt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_fingerprints_tell_rounding_from_a_real_change(tmp_path: Path) -> None:
    M = torch.randn(200, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    last_bit = M * (1 + torch.randint(-1, 2, M.shape, generator=torch.Generator().manual_seed(1)) * 2.0 ** -23)
    other = M.clone()
    other[0] = torch.randn(30, generator=torch.Generator().manual_seed(2))  # one row (image) replaced
    prints = {}
    for name, X in (("m", M), ("last_bit", last_bit), ("other", other)):
        torch.save({"layer": X}, tmp_path / f"{name}.pt")
        prints[name] = {"a.pt": fingerprint(tmp_path / f"{name}.pt")}
    assert not torch.equal(M, last_bit) and prints["m"]["a.pt"][0] == 6000
    assert fingerprints_match(prints["m"], prints["last_bit"])
    assert not fingerprints_match(prints["m"], prints["other"])
    assert not fingerprints_match(prints["m"], None) and not fingerprints_match(prints["m"], {"b.pt": [1, 2, 3]})


def test_an_artifact_that_fails_to_build_fails_its_cells_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "check_metric", fake_check)
    broken, plain = MatrixNoise("broken_task", kind="test_broken"), NoiseSweep("plain_task")
    try:
        summary = _run(tmp_path, [broken, plain], metric_ids=["linear_cka"])
    finally:
        for name in ("broken_task", "plain_task"):
            tasks.REGISTRY.remove(name)
    assert summary.computed == {"ok": 1, "error": 1} and summary.artifacts == 0
    rec = json.loads((tmp_path / "records/smoke/broken_task/linear_cka.json").read_text())
    assert rec["status"] == "error" and "RuntimeError: the training diverged" in rec["error"]["message"]


def test_a_schema_1_card_is_upgraded_after_its_files_are_checked(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    built = store.ensure(matrix())
    card = json.loads((built.path / "card.json").read_text())
    old = {k: v for k, v in card.items() if k not in ("card_sha256", "fingerprint")} | {"schema": 1}
    (built.path / "card.json").write_text(json.dumps(old))
    assert store.get(matrix()).card["schema"] == 1  # still readable (its files are checked)
    assert upgrade_card(built.path) and not upgrade_card(built.path)
    assert dict(store.get(matrix()).card) == card  # the same card the current builder writes
    torch.save(torch.zeros(2), built.file("matrix.pt"))
    (built.path / "card.json").write_text(json.dumps(old))
    with pytest.raises(ArtifactFault, match="restore it before upgrading"):
        upgrade_card(built.path)
