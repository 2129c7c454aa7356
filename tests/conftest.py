"""One Hypothesis profile for every test: derandomized and without an example database, so CI sees the same
generated cases on every run (a property suite must not be flaky) and nothing is written into the checkout.
One scratch artifact store for the session (`artifact_root`). The helpers several test files share live here too
(`from conftest import ...`): a tiny real task, a conformance stand-in, registration and evaluation helpers."""

import os
import signal
import statistics

os.environ["HF_HUB_OFFLINE"] = "1"  # before any test imports timm: a missing weight file fails at once, no retries

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch
from hypothesis import settings

from simstress import metrics, tasks
from simstress.core.artifacts import ArtifactStore
from simstress.core.conformance import Check, applicable_checks
from simstress.core.record import SCHEMA, Record
from simstress.core.scoring import positive_spearman

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core: a second BLAS thread per worker only spins against the other worker (the processes a
    # test starts inherit the setting through the environment)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
settings.register_profile("simstress", derandomize=True, database=None)
settings.load_profile("simstress")


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scratch artifact store for the run: the smoke zoo's networks are trained once, then shared. Parallel
    workers (`pytest -n`) share it too, through the folder above their own: the store's lock makes the first
    worker that needs an artifact build it while the others wait."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.mktemp("artifacts")
    root = tmp_path_factory.getbasetemp().parent / "artifacts"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Python's usual Ctrl-C handler, which every `simstress` process has, for a test that presses Ctrl-C on its own
    process: a pytest-xdist worker may run with Ctrl-C ignored (execnet leaves it to the controller)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.fixture(autouse=True)
def _quiet_does_not_leak() -> Iterator[None]:
    """`simstress --quiet` silences builders through TQDM_DISABLE in its own process; a test calling `main` shares
    the process, so the variable is restored after each test."""
    before = os.environ.get("TQDM_DISABLE")
    yield
    if before is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = before


# ----------------------------------------------------------------------------------------- shared test helpers
# Imported by test modules as `from conftest import ...`: one home for what several test files use.

SEEDS = [0, 1]
NOISE = (0.1, 1.0, 10.0)


@dataclass
class NoiseSetup(tasks.Setup):
    X: torch.Tensor
    noise: torch.Tensor


class NoiseSweep(tasks.Task):
    """Y = X + s·E for s in (0.1, 1, 10) (test fixture).

    Construction: X, E ~ N(0, 1)^(30×4), seeded. Ground truth: similarity falls as s grows.
    Score: max(0, Spearman(s, −similarity)). Source: this test.
    """

    sizes = {"smoke": {"n": 30, "p": 4}, "default": {"n": 30, "p": 4}}
    data = "synthetic"

    def __init__(self, name: str = "noise_a", category: str = "sensitivity", version: int = 1,
                 labels: bool = True, fail: dict[str, BaseException | Callable[[], object]] | None = None) -> None:
        self.name, self.category, self.version = name, category, version
        self.sweep_name, self.log_x = "noise s", True
        self.labels, self.fail = labels, fail or {}
        self.calls: list[tuple[str, int]] = []

    def build(self, size, seed, device, artifacts) -> NoiseSetup:
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(size["n"], size["p"], generator=g, dtype=torch.float64)
        E = torch.randn(size["n"], size["p"], generator=g, dtype=torch.float64)
        labels = torch.arange(size["n"]) % 2 if self.labels else None
        return NoiseSetup(labels=labels, details={"n": size["n"], "seed": seed, "dtype": "float64"}, X=X, noise=E)

    def cases(self, s: NoiseSetup) -> Iterator[tasks.Case]:
        for level in NOISE:
            yield tasks.Case(x=level, reference=s.X, other=s.X + level * s.noise, ref_key=0, truth={"s": level})

    def score(self, curve, setup) -> float:
        return positive_spearman(curve["x"], -curve["similarity"])

    def evaluate(self, metric, setup):
        self.calls.append((metric.id, setup.details["seed"]))
        failure = self.fail.get(metric.id)
        if isinstance(failure, BaseException):
            raise failure
        if failure is not None:
            failure()  # e.g. a real Ctrl-C, a sleep, sys.exit
        return super().evaluate(metric, setup)


def fake_check(metric_id: str) -> SimpleNamespace:
    """A stand-in for `check_metric`: the conformance suite has its own tests, runs here take milliseconds. It
    names the checks that apply, so its report is current until the suite changes."""
    m = metrics.get_metric(metric_id)
    return SimpleNamespace(passed=True, checks=tuple(Check(name, True, "not run") for name in applicable_checks(m)),
                           declared=m.spec.invariances, observed=m.spec.invariances)


def register(task: NoiseSweep) -> NoiseSweep:
    """Put a fixture task in the registry in place of any earlier one of the same name."""
    tasks.REGISTRY.remove(task.name)
    tasks.REGISTRY.add(task.name, task, "tests.conftest")
    return task


def evaluate(task: str | tasks.Task, metric_id: str, scale: str = "smoke", seed: int = 0,
             root: Path | None = None) -> tasks.TaskResult:
    """One metric on one freshly built set-up, as the runner's executor does it; the artifacts the task declares
    (networks) are built in the store at `root`."""
    t = tasks.get_task(task) if isinstance(task, str) else task
    specs = t.cell_artifacts(scale, seed, metrics.get_metric(metric_id).id)
    built = {name: ArtifactStore(root).ensure(spec) for name, spec in specs.items()} if specs else None
    return t.evaluate(metrics.get_metric(metric_id), t.setup(scale, seed, artifacts=built))


def registered(name: str, fn, **spec) -> Iterator[str]:
    """Register a throw-away metric for one test and remove it afterwards (no leak into other files)."""
    metrics.register(name=name, cost="O(1)", reference="test only", **spec)(fn)
    try:
        yield name
    finally:
        metrics.REGISTRY.remove(name)


def as_records(dicts: list[dict]) -> list[Record]:
    """Records written by hand as their JSON form, through the one reader (so every test record is valid)."""
    return [Record.from_json(d) for d in dicts]


# A hand-written grid of records (their JSON form) for the page's tests: four tasks, four metrics.
CATS = {"r1": "robustness", "r2": "robustness", "s1": "sensitivity", "p1": "specificity"}


def make_record(metric: str, task: str, scores: list[float] | None = None, status: str = "ok",
                message: str = "", task_version: int = 1, runtime: float = 0.25) -> dict:
    seeds = [0, 1]
    runs = [] if status != "ok" else [
        {"seed": s, "score": v, "runtime_s": runtime, "details": {},
         "curve": {"x": [1.0, 10.0, 100.0], "similarity": [1.0, v, v / 2]}}
        for s, v in zip(seeds, scores)
    ]
    return {
        "schema": SCHEMA, "metric": metric, "metric_version": 1, "task": task, "task_version": task_version,
        "task_info": {"category": CATS[task], "summary": f"the {task} task", "sweep_name": f"{task} sweep",
                      "log_x": True},
        "scale": "smoke", "seeds": seeds, "device": "cpu", "device_name": "test CPU", "dtype": "float64",
        "packages": {"python": "3.11.7", "torch": "2.0"}, "git_commit": "abc", "status": status,
        "score": statistics.fmean(scores) if status == "ok" else None,
        "seed_scores": scores if status == "ok" else None,
        "reason": message if status == "skipped" else None,
        "error": None if status != "error" else {"type": "ValueError", "message": message, "cause": "failure",
                                                  "seed": 0, "traceback": "..."},
        "runs": runs, "runtime_s": runtime * len(runs),
    }


def grid() -> list[dict]:
    a = {"r1": [1.0, 0.8], "r2": [0.6, 0.6], "s1": [0.5, 0.7], "p1": [0.9, 0.9]}
    recs = [make_record("metric_a", t, s) for t, s in a.items()]
    recs += [make_record("metric_c", t, s) for t, s in a.items()]  # ties with metric_a
    recs += [make_record("metric_b", "r1", status="error", message="X has <2> | bad\nrows"),
             make_record("metric_b", "r2", [1.0, 1.0]),
             make_record("metric_b", "s1", status="skipped", message="needs class labels"),
             make_record("metric_b", "p1", [0.6, 0.6])]
    recs += [make_record("metric_d", t, status="skipped", message="needs class labels") for t in CATS]
    return recs


def passed(metric: str) -> dict:
    return {"metric": metric, "metric_version": 1, "passed": True, "declared": ["translation"],
            "observed": ["translation"], "checks": [["invariance:translation", True, ""]]}


def conformance() -> dict:
    return {
        "metric_a": {"metric": "metric_a", "metric_version": 1, "passed": False,
                     "declared": ["orthogonal", "translation"], "observed": ["permutation", "translation"],
                     "checks": [["finite_scalar", True, ""], ["invariance:orthogonal", False, "max change 0.3"]]},
        "metric_b": passed("metric_b"), "metric_c": passed("metric_c"), "metric_d": passed("metric_d"),
    }


def install_tasks(monkeypatch: pytest.MonkeyPatch, names) -> None:
    """As if exactly `names` were the registered tasks (version 1, every scale), for the leaderboard command."""
    monkeypatch.setattr(tasks, "list_tasks", lambda *a, **k: list(names))
    monkeypatch.setattr(tasks, "get_task", lambda name: SimpleNamespace(version=1, scales=("smoke", "default")))
