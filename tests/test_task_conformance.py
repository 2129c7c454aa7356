"""The shared task suite, generated from the registry: every registered task (built-in or plugin) must pass it.

As tests/test_conformance.py does for metrics: a task states who it is and what it claims (docstring sections, a
dated source), builds the same data from the same seed, honours `evaluate`'s contract, and scores a constant
metric as the design requires (perfect where nothing should change, useless where something must be noticed).
"""

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.artifacts import ArtifactSpec, ArtifactStore
from simstress.core.constants import CATEGORIES, SCALES
from simstress.core.task import DOC_SECTIONS

NAMES = tasks.list_tasks()


def smoke_setup(t: tasks.Task, seed: int, root: Path) -> tasks.Setup:
    """The smoke set-up of one seed, with the artifacts the task declares built in the session's scratch store."""
    store = ArtifactStore(root)
    built = {name: store.ensure(spec) for name, spec in t.artifacts("smoke", seed).items()}
    return t.setup("smoke", seed, artifacts=built)


def resolves(dotted: str) -> bool:
    """Whether a dotted name is a module or an attribute of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def case_tensors(t: tasks.Task, setup: tasks.Setup) -> list[torch.Tensor]:
    return [tensor for case in t.cases(setup) for tensor in (case.reference, case.other)]


@pytest.fixture(scope="module")
def constant_metric() -> Iterator[metrics.Metric]:
    @metrics.register(name="test_constant_task_suite", cost="O(1)", reference="test only",
                      invariances=metrics.INVARIANCES)
    def constant(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Always 0.7, whatever the inputs (so invariant to everything)."""
        return torch.tensor(0.7, dtype=X.dtype, device=X.device)

    yield metrics.get_metric("test_constant_task_suite")
    metrics.REGISTRY.remove("test_constant_task_suite")


@pytest.mark.parametrize("name", NAMES)
def test_identity_and_docstring(name: str) -> None:
    t = tasks.get_task(name)
    assert t.name == name and t.category in CATEGORIES
    assert isinstance(t.version, int) and t.version >= 1
    assert "smoke" in t.scales and set(t.scales) <= set(SCALES)
    assert isinstance(t.sweep_name, str) and t.sweep_name and isinstance(t.log_x, bool)
    doc = type(t).__doc__
    assert t.summary == doc.strip().splitlines()[0] and len(t.summary) < 120
    for section in DOC_SECTIONS:
        assert section in doc
    assert any(ch.isdigit() for ch in doc.split("Source:")[1])  # a dated citation
    for ref in re.findall(r"`(simstress\.[\w.]+)`", doc):  # what `simstress list tasks` cites exists
        assert resolves(ref), f"{name}'s docstring cites {ref}, which does not exist"
    for scale in t.scales:
        assert all(isinstance(s, ArtifactSpec) for s in t.artifacts(scale, 0).values())


@pytest.mark.parametrize("name", NAMES)
def test_the_seed_decides_the_data(name: str, artifact_root: Path) -> None:
    t = tasks.get_task(name)
    a, again, other = (smoke_setup(t, seed, artifact_root) for seed in (0, 0, 1))
    assert again is not a and again.details == a.details
    assert all(torch.equal(x, y) for x, y in zip(case_tensors(t, a), case_tensors(t, again), strict=True))
    if a.labels is not None:
        assert torch.equal(a.labels, again.labels)
    assert not all(torch.equal(x, y) for x, y in zip(case_tensors(t, a), case_tensors(t, other)))


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_contract(name: str, artifact_root: Path) -> None:
    t = tasks.get_task(name)
    setup = smoke_setup(t, 0, artifact_root)
    m = metrics.get_metric("linear_cka_debiased")
    r = t.evaluate(m, setup)
    assert isinstance(r, tasks.TaskResult) and (r.task, r.metric) == (name, "linear_cka_debiased")
    assert 0.0 <= r.score <= 1.0
    assert isinstance(r.curve, pd.DataFrame) and len(r.curve) == r.details["n_cases"] >= 1
    assert {"x", "similarity", "raw", "self_similarity"} <= set(r.curve.columns)
    assert pd.api.types.is_numeric_dtype(r.curve["x"])
    assert np.allclose(r.curve["self_similarity"], 1.0, atol=1e-9)  # debiased CKA of X with itself
    json.dumps(r.details, allow_nan=False)  # plain JSON values only
    again = t.evaluate(m, setup)
    assert again.score == r.score and again.curve.equals(r.curve)


@pytest.mark.parametrize("name", NAMES)
def test_a_constant_metric_is_robust_and_useless_otherwise(name: str, artifact_root: Path,
                                                           constant_metric: metrics.Metric) -> None:
    t = tasks.get_task(name)
    score = t.evaluate(constant_metric, smoke_setup(t, 0, artifact_root)).score
    if t.category == "robustness":
        assert score >= 0.99
    elif t.category == "specificity":  # no better than guessing among ≥ 5 candidates (ties share the credit)
        assert score <= 1 / 5 + 1e-12
    else:
        assert score <= 0.1
