"""The runner and result store: one record per cell, incremental reruns, staleness, errors, skips, crash safety.

The tasks here are tiny real `tasks.Task` subclasses (a noise sweep on 30 × 4 data), so every record holds
numbers the real evaluation path produced; each test registers the instances it runs (cells name their task, and
the executor looks it up) and the fixture removes them afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from simstress import metrics, tasks
from simstress.benchmark import jobs
from simstress.benchmark.jobs import conformance_entry
from simstress.benchmark.plan import select_metrics
from simstress.benchmark.records import ResultStore, metric_filename, metric_from_filename
from simstress.benchmark.runner import refresh_conformance, run
from simstress.core.conformance import check_metric
from simstress.core.record import RecordError
from simstress.data import DataError
from simstress.metrics.cka import linear_cka

from .conftest import NOISE, SEEDS, NoiseSweep, fake_check, register


def _register_tmp_metric(version: int, needs_labels: bool = False) -> None:
    metrics.REGISTRY.remove("tmp_runner_metric")

    @metrics.register(name="tmp_runner_metric", version=version, needs_labels=needs_labels, cost="O(n·p²)",
                      reference="test fixture")
    def tmp_runner_metric(X: torch.Tensor, Y: torch.Tensor, **_: object) -> torch.Tensor:
        """Linear CKA under another name (test fixture)."""
        return linear_cka(X, Y)


@pytest.fixture(autouse=True)
def fast_conformance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "check_metric", fake_check)


@pytest.fixture(autouse=True)
def registered_tasks_are_removed() -> Iterator[None]:
    """The fixture tasks a test registers leave the registry with the test."""
    before = set(tasks.REGISTRY.names())
    yield
    for name in set(tasks.REGISTRY.names()) - before:
        tasks.REGISTRY.remove(name)


@pytest.fixture
def tmp_metric() -> Iterator[None]:
    _register_tmp_metric(1)
    yield
    metrics.REGISTRY.remove("tmp_runner_metric")


def _run(root: Path, metric_ids: list[str], task_list: list[NoiseSweep], conformance: bool = True, **kw):
    """The CLI's two steps: refresh the conformance reports, then compute the cells."""
    kw = {"scale": "smoke", "seeds": SEEDS, "device": "cpu", "quiet": True, **kw}
    store = ResultStore(root)
    for task in task_list:
        register(task)
    checked = refresh_conformance(store, metric_ids, force=kw.get("force", False), quiet=True) if conformance else 0
    summary = run(store, metric_ids, [t.name for t in task_list], **kw)
    summary.conformance = checked
    return summary


def _snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((root / "records").rglob("*.json"))}


def test_one_record_per_cell_with_provenance_and_real_values(tmp_path: Path) -> None:
    task = NoiseSweep()
    summary = _run(tmp_path, ["linear_cka", "rbf_cka[sigma=0.5]"], [task])
    assert summary.computed == {"ok": 2} and not summary.errors and summary.current == 0
    assert summary.conformance == 2 and (tmp_path / "conformance" / "rbf_cka[sigma=0.5].json").is_file()
    path = tmp_path / "records" / "smoke" / "noise_a" / "rbf_cka[sigma=0.5].json"
    rec = json.loads(path.read_text())
    assert rec["metric"] == "rbf_cka[sigma=0.5]" and metric_from_filename(path.name) == rec["metric"]
    assert (rec["status"], rec["scale"], rec["task"], rec["seeds"]) == ("ok", "smoke", "noise_a", SEEDS)
    assert rec["metric_version"] == metrics.get_metric("rbf_cka[sigma=0.5]").spec.version
    assert rec["task_version"] == 1 and rec["dtype"] == "float64"
    assert rec["task_info"] == {"category": "sensitivity", "summary": "Y = X + s·E for s in (0.1, 1, 10) (test "
                                "fixture).", "sweep_name": "noise s", "log_x": True, "data": "synthetic"}
    assert {"torch", "numpy", "python", "simstress"} <= set(rec["packages"]) and rec["git_commit"]
    assert rec["device"] == "cpu" and rec["device_name"]
    # The stored numbers are the evaluation's own: recompute seed 1 through the task and compare.
    fresh = NoiseSweep()
    again = fresh.evaluate(metrics.get_metric("rbf_cka[sigma=0.5]"), fresh.setup("smoke", seed=1))
    run1 = rec["runs"][1]
    assert run1["seed"] == 1 and run1["score"] == again.score and run1["curve"]["similarity"] == list(
        again.curve["similarity"])
    assert run1["curve"]["x"] == list(NOISE) and run1["details"]["n"] == 30 and run1["runtime_s"] > 0
    assert rec["seed_scores"] == [r["score"] for r in rec["runs"]]
    assert rec["score"] == pytest.approx(statistics.fmean(rec["seed_scores"]))
    assert task.calls == [("linear_cka", 0), ("linear_cka", 1), ("rbf_cka[sigma=0.5]", 0), ("rbf_cka[sigma=0.5]", 1)]


def test_second_run_computes_nothing(tmp_path: Path) -> None:
    task = NoiseSweep()
    _run(tmp_path, ["linear_cka", "procrustes"], [task])
    before, calls = _snapshot(tmp_path), len(task.calls)
    summary = _run(tmp_path, ["linear_cka", "procrustes"], [task])
    assert sum(summary.computed.values()) == 0 and summary.current == 2 and summary.conformance == 0
    assert len(task.calls) == calls and _snapshot(tmp_path) == before


def test_metric_version_bump_recomputes_only_its_cells(tmp_path: Path, tmp_metric: None) -> None:
    ta, tb = NoiseSweep("noise_a"), NoiseSweep("noise_b")
    _run(tmp_path, ["linear_cka", "tmp_runner_metric"], [ta, tb])
    before = _snapshot(tmp_path)
    ta.calls.clear(), tb.calls.clear()
    _register_tmp_metric(2)
    summary = _run(tmp_path, ["linear_cka", "tmp_runner_metric"], [ta, tb])
    assert summary.computed == {"ok": 2} and summary.current == 2 and summary.conformance == 1
    assert ta.calls == tb.calls == [("tmp_runner_metric", 0), ("tmp_runner_metric", 1)]
    after = _snapshot(tmp_path)
    changed = {p.relative_to(tmp_path).as_posix() for p in after if after[p] != before[p]}
    assert changed == {"records/smoke/noise_a/tmp_runner_metric.json", "records/smoke/noise_b/tmp_runner_metric.json"}
    assert json.loads((tmp_path / "records/smoke/noise_a/tmp_runner_metric.json").read_text())["metric_version"] == 2
    assert json.loads((tmp_path / "conformance/tmp_runner_metric.json").read_text())["metric_version"] == 2


def test_task_version_seeds_and_force_make_cells_stale(tmp_path: Path) -> None:
    _run(tmp_path, ["linear_cka"], [NoiseSweep("noise_a"), NoiseSweep("noise_b")])
    bumped = NoiseSweep("noise_b", version=2)
    assert _run(tmp_path, ["linear_cka"], [NoiseSweep("noise_a"), bumped]).computed == {"ok": 1}
    assert bumped.calls == [("linear_cka", 0), ("linear_cka", 1)]
    three = NoiseSweep("noise_a")
    assert _run(tmp_path, ["linear_cka"], [three], seeds=[0, 1, 2]).computed == {"ok": 1}
    assert json.loads((tmp_path / "records/smoke/noise_a/linear_cka.json").read_text())["seeds"] == [0, 1, 2]
    forced = NoiseSweep("noise_a")
    assert _run(tmp_path, ["linear_cka"], [forced], seeds=[0, 1, 2], force=True).computed == {"ok": 1}
    assert len(forced.calls) == 3


def test_an_erroring_cell_is_recorded_and_the_run_finishes(tmp_path: Path) -> None:
    task = NoiseSweep(fail={"linear_cka": ZeroDivisionError("the metric divided by zero")})
    summary = _run(tmp_path, ["linear_cka", "procrustes", "rsa"], [task])
    assert summary.computed == {"ok": 2, "error": 1}
    assert [(m, t, e.line, e.cause) for m, t, e in summary.errors] == [
        ("linear_cka", "noise_a", "ZeroDivisionError: the metric divided by zero", "failure")]
    assert any("1 cell(s) failed" in line for line in summary.lines())
    rec = json.loads((tmp_path / "records/smoke/noise_a/linear_cka.json").read_text())
    assert rec["status"] == "error" and rec["score"] is None and rec["runs"] == []
    assert rec["error"]["type"] == "ZeroDivisionError" and rec["error"]["seed"] == 0 and rec["schema"] == 2
    assert rec["error"]["message"] == "the metric divided by zero" and "ZeroDivisionError" in rec["error"]["traceback"]
    for ok in ("procrustes", "rsa"):
        assert json.loads((tmp_path / f"records/smoke/noise_a/{ok}.json").read_text())["status"] == "ok"
    # A rerun keeps the recorded error (same versions, same seeds) and still reports it.
    again = _run(tmp_path, ["linear_cka", "procrustes", "rsa"], [NoiseSweep()])
    assert sum(again.computed.values()) == 0 and len(again.errors) == 1


def test_a_score_outside_0_1_is_an_error(tmp_path: Path) -> None:
    class Broken(NoiseSweep):
        """A task whose score rule is broken (test fixture)."""

        def score(self, curve, setup) -> float:
            return 1.5

    _run(tmp_path, ["linear_cka"], [Broken()])
    rec = json.loads((tmp_path / "records/smoke/noise_a/linear_cka.json").read_text())
    assert rec["status"] == "error" and "outside [0, 1]" in rec["error"]["message"]


def test_not_applicable_cells_are_skipped_with_the_reason(tmp_path: Path) -> None:
    _register_tmp_metric(1, needs_labels=True)
    try:
        summary = _run(tmp_path, ["tmp_runner_metric", "linear_cka"], [NoiseSweep(labels=False)])
    finally:
        metrics.REGISTRY.remove("tmp_runner_metric")
    assert summary.computed == {"ok": 1, "skipped": 1} and not summary.errors
    rec = json.loads((tmp_path / "records/smoke/noise_a/tmp_runner_metric.json").read_text())
    assert rec["status"] == "skipped" and "needs class labels" in rec["reason"] and rec["score"] is None


def test_a_task_without_the_scale_is_skipped(tmp_path: Path) -> None:
    summary = _run(tmp_path, ["linear_cka"], [NoiseSweep()], scale="full")
    rec = json.loads((tmp_path / "records/full/noise_a/linear_cka.json").read_text())
    assert summary.computed == {"skipped": 1} and "no 'full' scale" in rec["reason"]


def test_ctrl_c_keeps_finished_records_and_the_next_run_resumes(tmp_path: Path) -> None:
    ids = ["linear_cka", "procrustes", "rsa"]
    summary = _run(tmp_path, ids, [NoiseSweep(fail={"procrustes": lambda: os.kill(os.getpid(), signal.SIGINT)})])
    assert summary.interrupted and summary.computed == {"ok": 1}
    folder = tmp_path / "records/smoke/noise_a"
    assert sorted(p.name for p in folder.iterdir()) == ["linear_cka.json"]  # no temporary file left
    json.loads((folder / "linear_cka.json").read_text())
    resumed = NoiseSweep()
    assert _run(tmp_path, ids, [resumed]).computed == {"ok": 2}
    assert [m for m, _ in resumed.calls] == ["procrustes", "procrustes", "rsa", "rsa"]


def test_a_hanging_cell_is_cut_off_recorded_and_not_waited_on_again(tmp_path: Path) -> None:
    # the limit is three orders of magnitude above the healthy cells' work (milliseconds), far below the hang
    ids = ["linear_cka", "procrustes", "rsa"]
    hang = NoiseSweep(fail={"procrustes": lambda: time.sleep(3600)})
    summary = _run(tmp_path, ids, [hang], timeout_s=5.0)
    assert summary.computed == {"ok": 2, "error": 1}
    rec = json.loads((tmp_path / "records/smoke/noise_a/procrustes.json").read_text())
    assert rec["error"]["type"] == "TimeoutError" and "time limit of 5 s" in rec["error"]["message"]
    assert rec["error"]["cause"] == "timeout"
    again = NoiseSweep(fail={"procrustes": lambda: time.sleep(3600)})
    assert sum(_run(tmp_path, ids, [again], timeout_s=5.0).computed.values()) == 0 and again.calls == []


@pytest.mark.parametrize(("failure", "message"), [
    (lambda: sys.exit(3), "called sys.exit(3)"),
    (KeyboardInterrupt("from the plugin"), "raised KeyboardInterrupt(from the plugin)"),
    (GeneratorExit(), "raised GeneratorExit"),
])
def test_a_cell_that_exits_or_raises_a_base_exception_is_an_error(tmp_path: Path, failure, message: str) -> None:
    summary = _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep(fail={"procrustes": failure})])
    assert not summary.interrupted and summary.computed == {"ok": 1, "error": 1}
    assert message in json.loads((tmp_path / "records/smoke/noise_a/procrustes.json").read_text())["error"]["message"]


def test_a_record_that_cannot_be_written_stops_the_run_and_says_which(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ResultStore, "save_record", disk_full)
    summary = _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep()])
    assert summary.unsaved == "linear_cka × noise_a: [Errno 28] No space left on device"
    assert any("could not be written" in line for line in summary.lines())


def test_invalid_records_are_recomputed(tmp_path: Path) -> None:
    _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep()])
    path = tmp_path / "records/smoke/noise_a/procrustes.json"
    rec = json.loads(path.read_text())
    rec["score"] = 1.7
    path.write_text(json.dumps(rec))
    summary = _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep()])
    assert summary.computed == {"ok": 1} and summary.current == 1
    assert json.loads(path.read_text())["score"] <= 1.0


def test_force_recomputes_every_value_to_the_last_bit(tmp_path: Path) -> None:
    ids = metrics.list_metrics()
    _run(tmp_path, ids, [NoiseSweep()], conformance=False)
    first = {p.name: json.loads(p.read_text()) for p in (tmp_path / "records/smoke/noise_a").glob("*.json")}
    _run(tmp_path, ids, [NoiseSweep()], conformance=False, force=True)
    for name, rec in first.items():
        again = json.loads((tmp_path / "records/smoke/noise_a" / name).read_text())
        assert [r["curve"] for r in again["runs"]] == [r["curve"] for r in rec["runs"]], name
        assert again["score"] == rec["score"], name


def test_a_crash_while_writing_leaves_the_old_record_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, ["linear_cka"], [NoiseSweep()])
    path = tmp_path / "records/smoke/noise_a/linear_cka.json"
    old = path.read_bytes()

    replace = os.replace

    def crash(src: str, dst: str) -> None:
        if "records" in str(dst):
            raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    summary = _run(tmp_path, ["linear_cka"], [NoiseSweep()], force=True)
    monkeypatch.undo()
    assert summary.interrupted and sum(summary.computed.values()) == 0
    assert path.read_bytes() == old and os.listdir(path.parent) == ["linear_cka.json"]


def test_torn_or_foreign_files_are_recomputed_or_ignored(tmp_path: Path) -> None:
    ids = ["linear_cka", "procrustes", "rsa"]
    _run(tmp_path, ids, [NoiseSweep()])
    folder = tmp_path / "records/smoke/noise_a"
    (folder / "procrustes.json").write_bytes((folder / "linear_cka.json").read_bytes())  # another cell's record
    (folder / "linear_cka.json").write_text('{"schema": 1, "metric": "linear')  # e.g. a disk that filled up
    (folder / ".rsa.json.x1y2.tmp").write_text("{")  # left by a kill -9 before the rename
    with pytest.raises(RecordError, match="unreadable record"):
        ResultStore(tmp_path).records("smoke")  # the leaderboard refuses to render from a torn record
    summary = _run(tmp_path, ids, [NoiseSweep()])
    assert summary.computed == {"ok": 2} and summary.current == 1
    assert [r.metric for r in ResultStore(tmp_path).records("smoke")] == ids


def test_metric_ids_map_to_reversible_file_names() -> None:
    for mid in ("linear_cka", "rbf_cka[sigma=0.5]", "odd[path=a/b c%]"):
        name = metric_filename(mid)
        assert "/" not in name and metric_from_filename(name) == mid
    assert metric_filename("rbf_cka[sigma=0.5]") == "rbf_cka[sigma=0.5].json"


def test_select_metrics_takes_exact_ids_globs_and_names_the_closest() -> None:
    assert select_metrics("rbf_cka[sigma=0.5]") == ["rbf_cka[sigma=0.5]"]
    assert select_metrics("rbf_cka[sigma=2.0]") == ["rbf_cka[sigma=2]"]  # any parameters, canonical id
    rbf = metrics.list_metrics("rbf_cka*")
    assert rbf[0] == "rbf_cka" and {"rbf_cka[sigma=0.2]", "rbf_cka[sigma=0.5]"} <= set(rbf)
    assert select_metrics("rbf_cka*,linear_cka") == [*rbf, "linear_cka"]
    # a comma inside an id's brackets separates its parameters, not two parts
    assert select_metrics("rbf_cka[median=lower,sigma=0.2], linear_cka") == ["rbf_cka[median=lower,sigma=0.2]",
                                                                             "linear_cka"]
    with pytest.raises(metrics.UnknownNameError, match="closest: linear_cka"):
        select_metrics("linear_ckaa")
    with pytest.raises(metrics.UnknownNameError, match="no metric matches"):
        select_metrics("zzz*")


def test_conformance_cache_holds_the_real_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real suite, once
    entry = conformance_entry("linear_cka", 1)
    report = check_metric("linear_cka")
    assert entry["passed"] is report.passed is True and entry["metric_version"] == 1
    assert entry["declared"] == sorted(report.declared) and entry["observed"] == sorted(report.observed)
    assert [row[:2] for row in entry["checks"]] == [[c.name, c.ok] for c in report.checks]


def test_a_crashing_checker_is_a_failed_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(metric_id: str) -> None:
        raise RuntimeError("checker crashed")

    monkeypatch.setattr(jobs, "check_metric", boom)
    entry = conformance_entry("linear_cka", 1)
    assert entry["passed"] is False
    assert entry["checks"] == [["check_metric", False, "raised RuntimeError: checker crashed"]]
    assert entry["declared"] == sorted(metrics.get_metric("linear_cka").spec.invariances) and entry["observed"] == []


def test_a_report_missing_a_check_the_suite_gained_is_refreshed(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert refresh_conformance(store, ["linear_cka"], quiet=True) == 1
    assert refresh_conformance(store, ["linear_cka"], quiet=True) == 0  # current
    report = store.load_conformance("linear_cka")
    report["checks"] = [c for c in report["checks"] if c[0] != "layer_map"]  # written before the check existed
    store.save_conformance(report)
    assert refresh_conformance(store, ["linear_cka"], quiet=True) == 1
    assert "layer_map" in {c[0] for c in store.load_conformance("linear_cka")["checks"]}


def test_a_fault_of_the_environment_is_charged_to_it_and_retried(tmp_path: Path) -> None:
    missing = DataError("missing data file /nowhere/t10k-images-idx3-ubyte.gz; set SIMSTRESS_FASHION_MNIST")
    summary = _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep(fail={"linear_cka": missing})])
    assert summary.computed == {"ok": 1, "error": 1}
    rec = json.loads((tmp_path / "records/smoke/noise_a/linear_cka.json").read_text())
    assert rec["error"]["cause"] == "environment" and rec["error"]["type"] == "simstress.data.idx.DataError"
    # the next run retries it (a metric's own failure would be kept until its version changes)
    fixed = _run(tmp_path, ["linear_cka", "procrustes"], [NoiseSweep()])
    assert fixed.computed == {"ok": 1} and fixed.current == 1 and not fixed.errors



def test_a_glob_selects_only_the_tasks_that_have_the_scale() -> None:
    from simstress.benchmark.plan import select_tasks

    task = NoiseSweep("noise_smoke_only")
    task.sizes = {"smoke": NoiseSweep.sizes["smoke"]}  # this instance only
    register(task)
    try:
        assert "noise_smoke_only" in select_tasks("noise_smoke*", "smoke")
        assert "noise_smoke_only" not in select_tasks("*", "default")
        assert select_tasks("noise_smoke_only", "default") == ["noise_smoke_only"]  # named outright: its cells skip
        with pytest.raises(metrics.UnknownNameError, match="at the default scale"):
            select_tasks("noise_smoke*", "default")
    finally:
        tasks.REGISTRY.remove("noise_smoke_only")
