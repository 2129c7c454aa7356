"""The record schema (`simstress.core.record`): one writer, one reader, one validator, a versioned migration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from simstress.benchmark.plan import select_metrics, select_tasks
from simstress.benchmark.records import metric_from_filename
from simstress.core.inputs import InputError
from simstress.core.record import (
    SCHEMA,
    ArtifactUse,
    Cause,
    CellError,
    Record,
    RecordError,
    SeedRun,
    TaskInfo,
    migrate,
    problems,
)

REPO = Path(__file__).resolve().parent.parent


def record(**changes) -> Record:
    base = Record(metric="linear_cka", metric_version=2, task="noise_sweep", task_version=1,
                  task_info=TaskInfo("sensitivity", "a sweep", "ε", True), scale="smoke", seeds=(0, 1),
                  device="cpu", device_name="a CPU", packages={"torch": "2.0"}, git_commit="abc",
                  runs=(SeedRun(0, 0.5, 0.1, {"x": [1.0], "similarity": [0.5]}, {"dtype": "float64"}),
                        SeedRun(1, 0.75, 0.2, None, {})),
                  artifacts=(ArtifactUse(0, "network", "networks", "ab12", "f" * 64),))
    return replace(base, **changes)


def test_the_json_form_round_trips_and_carries_the_derived_summaries() -> None:
    rec = record()
    data = json.loads(json.dumps(rec.to_json()))
    assert data["schema"] == SCHEMA and data["score"] == 0.625 and data["seed_scores"] == [0.5, 0.75]
    assert data["runtime_s"] == pytest.approx(0.3) and data["dtype"] == "float64" and problems(data) == []
    assert Record.from_json(data) == rec
    error = CellError.from_exception(InputError("X has rank 3"), Cause.REFUSAL, seed=1)
    failed = rec.failed(error)
    data = json.loads(json.dumps(failed.to_json()))
    assert data["status"] == "error" and data["runs"] == [] and data["score"] is None
    assert data["error"]["cause"] == "refusal" and data["error"]["type"] == "simstress.core.inputs.InputError"
    assert Record.from_json(data) == failed and Record.from_json(data).error.refusal
    skipped = rec.skipped("needs labels")
    assert Record.from_json(skipped.to_json()) == skipped and skipped.score is None


def test_a_schema_1_record_migrates_its_error_cause_from_the_type_it_names() -> None:
    v1 = {**record().failed(CellError("x", "m", Cause.FAILURE)).to_json(), "schema": 1}
    for type_name, cause in (("simstress.core.inputs.InputError", "refusal"), ("TimeoutError", "timeout"),
                             ("simstress.benchmark.runner.WorkerDied", "crash"), ("ValueError", "failure")):
        old = {**v1, "error": {"type": type_name, "message": "m", "seed": None, "traceback": ""}}
        assert problems(old) != []  # schema 1 as it is: not the current schema
        assert migrate(old)["error"]["cause"] == cause and migrate(old)["schema"] == SCHEMA
        assert Record.from_json(old).error.cause == cause
    ok = {**record().to_json(), "schema": 1}
    assert Record.from_json(ok) == record()  # an ok record of schema 1 needs nothing but the number


def test_every_committed_record_loads_through_the_one_reader() -> None:
    paths = sorted((REPO / "results" / "records").rglob("*.json"))
    # the default grid is committed whole: a record for every cell of every task that has the default scale
    grid = {(t, m) for t in select_tasks("*", "default") for m in select_metrics("*")}
    assert {(p.parent.name, metric_from_filename(p.name)) for p in paths if p.parent.parent.name == "default"} >= grid
    loaded = [Record.from_json(json.loads(p.read_text())) for p in paths]
    # a refusal is the metric's InputError, never another fault (refusals themselves: tests/test_tasks.py, and above)
    assert all(r.error.type.endswith("InputError") for r in loaded if r.error is not None and r.error.refusal)


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.update(schema=SCHEMA + 1), "schema 3, expected 2"),
    (lambda d: d.update(score=1.5), "is not a finite number in [0, 1]"),
    (lambda d: d["runs"][0].update(score=None), "runs must be a list"),
    (lambda d: d.update(seed_scores=[0.5, 0.7]), "seed_scores differ"),
    (lambda d: d.update(artifacts=[{"kind": "networks"}]), "artifacts must be a list of"),
    (lambda d: d.update(status="error", score=None, runs=[], error={"type": "X", "message": "m"}),
     "needs error.type and error.message strings and a cause"),
    (lambda d: d.update(status="maybe"), "status 'maybe' is not one of"),
])
def test_the_validator_names_what_is_wrong(edit, problem: str) -> None:
    data = record().to_json()
    edit(data)
    assert any(problem in p for p in problems(data)), problems(data)
    with pytest.raises(RecordError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Record.from_json(data)
