"""The `Task` base class, the `register_task` decorator, the task registry, `TaskResult` and `NotApplicable`.

A task builds cases (reference X, changed copy Y, sweep value x, ground-truth columns) from seeded data and
turns a metric's similarities on them into a score in [0, 1]. `Task.evaluate` is the one entry the runner calls:

    similarity = as_similarity(m(X, Y)) / as_similarity(m(X, X))

i.e. every metric is oriented "higher = more similar" (`MetricSpec.as_similarity`) and divided by its own
self-similarity on the case's reference X (computed once per reference), so 1 means "as similar as X is to
itself". A self-similarity that is not a positive finite number cannot be normalised by (the metric does not
recognise its own reference, and dividing by ~0 would blow up): those cases get a NaN similarity, which every
score counts as the worst outcome (`tasks.scoring`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Hashable, Iterator, Mapping, TypeVar

import pandas as pd
import torch
from tqdm import tqdm

import metrics
from metrics.registry import Registry

CATEGORIES = ("robustness", "sensitivity", "specificity")
SCALES = ("smoke", "default", "full")
DOC_SECTIONS = ("Construction:", "Ground truth:", "Score:", "Source:")


class NotApplicable(Exception):
    """The task cannot score this metric at all (e.g. the metric needs class labels the task's data lack).

    The message is the reason; the runner records the cell as skipped. Errors of the metric on the task's data
    (e.g. `metrics.InputError`) are not this: they propagate and are recorded as errors.
    """


@dataclass(frozen=True)
class Case:
    """One comparison: the metric scores (reference, other); `ref_key` names the reference for self-similarity."""

    x: float
    reference: torch.Tensor
    other: torch.Tensor
    ref_key: Hashable
    truth: Mapping[str, Any]


@dataclass
class Setup:
    """A task's seeded data for one (scale, seed, device), built once and reused for every metric.

    `labels` (n,) int64 are shared by every case (all representations hold the same n inputs), None when the
    data have no class structure; `details` are JSON-serialisable facts of the construction.
    """

    labels: torch.Tensor | None
    details: dict[str, Any]


@dataclass
class TaskResult:
    """One metric on one task: `score` in [0, 1] (1 = ideal), one `curve` row per case, task-specific `details`."""

    task: str
    metric: str
    scale: str
    seed: int
    score: float
    curve: pd.DataFrame
    details: dict[str, Any]


SetupT = TypeVar("SetupT", bound=Setup)


class Task:
    """Base class of a stress task. Subclasses set `sizes` and implement `build`, `cases` and `score`.

    `sizes` maps each scale ("smoke", "default", "full") to the parameters `build` receives. The class docstring
    (first line: the summary) must state the construction, the ground truth, the score formula and its source
    under the headings of `DOC_SECTIONS`. Identity (`name`, `category`, `version`, `sweep_name`, `log_x`) is set
    by `register_task`.
    """

    name: ClassVar[str]
    category: ClassVar[str]
    version: ClassVar[int]
    sweep_name: ClassVar[str]
    log_x: ClassVar[bool]
    sizes: ClassVar[Mapping[str, Mapping[str, Any]]]

    def __init__(self) -> None:
        self._cache: tuple[tuple[str, int, str], Setup] | None = None

    def __repr__(self) -> str:
        return f"<task {self.name} ({self.category}, v{self.version})>"

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    @property
    def summary(self) -> str:
        """The docstring's first line, shown by `simstress list tasks`."""
        return inspect.getdoc(self).splitlines()[0]

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device) -> Setup:
        """Seeded data and ground truth for one scale's `size` parameters, tensors on `device`."""
        raise NotImplementedError

    def cases(self, setup: Any) -> Iterator[Case]:
        """The comparisons, in curve order (generated lazily: large scales never hold every Y at once)."""
        raise NotImplementedError

    def score(self, curve: pd.DataFrame, setup: Any) -> float:
        """The task's score in [0, 1] from the curve (column `similarity` plus the ground-truth columns)."""
        raise NotImplementedError

    def setup(self, scale: str = "default", seed: int = 0, device: torch.device | str | None = None) -> Setup:
        """The seeded data of (scale, seed) on `device`; the last one is kept so every metric reuses it."""
        if scale not in self.sizes:
            raise ValueError(f"task {self.name!r} has no scale {scale!r}; choose from {', '.join(self.scales)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        dev = torch.device(device if device is not None else "cpu")
        key = (scale, seed, str(dev))
        if self._cache is None or self._cache[0] != key:
            self._cache = None  # free the previous setup before building the next
            self._cache = (key, self.build(self.sizes[scale], seed, dev))
        return self._cache[1]

    def evaluate(self, metric_id: str, scale: str = "default", seed: int = 0,
                 device: torch.device | str | None = None, progress: bool = False) -> TaskResult:
        """Score one metric: its self-normalised, oriented similarity on every case, then the task's score.

        Raises `NotApplicable` when the metric needs labels and the task has none; any error of the metric itself
        propagates. `progress` shows a bar over the cases.
        """
        metric = metrics.get_metric(metric_id)
        setup = self.setup(scale, seed, device)
        if metric.spec.needs_labels and setup.labels is None:
            raise NotApplicable(f"{metric.id} needs class labels; task {self.name!r} has none (its data carry no "
                                f"class structure)")

        def oriented(X: torch.Tensor, Y: torch.Tensor) -> tuple[float, float]:
            raw = float(metric(X, Y, labels=setup.labels))
            return raw, float(metric.as_similarity(raw))

        self_sims: dict[Hashable, float] = {}
        rows = []
        with torch.no_grad():
            for case in tqdm(self.cases(setup), desc=f"{self.name} × {metric.id}", unit="case", leave=False,
                             disable=not progress):
                if case.ref_key not in self_sims:
                    self_sims[case.ref_key] = oriented(case.reference, case.reference)[1]
                ref = self_sims[case.ref_key]
                raw, sim = oriented(case.reference, case.other)
                norm = sim / ref if math.isfinite(ref) and ref > 0 else math.nan
                rows.append({"x": float(case.x), "similarity": norm, "raw": raw, "self_similarity": ref,
                             **case.truth})
        curve = pd.DataFrame(rows)
        score = float(self.score(curve, setup))
        if not 0.0 <= score <= 1.0:
            raise RuntimeError(f"task {self.name!r} computed score {score!r} outside [0, 1]: a bug in the task")
        n_bad = int((~curve["similarity"].map(math.isfinite)).sum())
        details = {**setup.details, "n_cases": len(curve), "n_nonfinite": n_bad}
        return TaskResult(self.name, metric.id, scale, seed, score, curve, details)


REGISTRY: Registry[Task] = Registry("task", "tasks", "simstress.tasks")

TaskT = TypeVar("TaskT", bound=type[Task])


def register_task(*, name: str, category: str, sweep_name: str, log_x: bool = False,
                  version: int = 1) -> Callable[[TaskT], TaskT]:
    """Register a `Task` subclass (one instance) under `name`; use as a class decorator.

    `sweep_name` labels the curve's x column (with `log_x` for a geometric sweep) for the leaderboard's plots;
    bump `version` whenever the task's numbers change.
    """
    if category not in CATEGORIES:
        raise ValueError(f"task category must be one of {CATEGORIES}, got {category!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"task version must be an int >= 1, got {version!r}")

    def decorate(cls: TaskT) -> TaskT:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"register_task decorates subclasses of tasks.Task, got {cls!r}")
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
        missing = [s for s in DOC_SECTIONS if s not in doc]
        if missing:
            raise ValueError(f"task {name!r} needs its own docstring: a one-line summary, then "
                             f"{', '.join(DOC_SECTIONS)}; missing: {', '.join(missing)}")
        sizes = getattr(cls, "sizes", None)
        if not sizes or "smoke" not in sizes or any(s not in SCALES for s in sizes):
            raise ValueError(f"task {name!r} needs `sizes` for scales among {SCALES}, 'smoke' included")
        cls.name, cls.category, cls.version, cls.sweep_name, cls.log_x = name, category, version, sweep_name, log_x
        REGISTRY.add(name, cls(), f"{cls.__module__}.{cls.__qualname__}")
        return cls

    return decorate


def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name lists the closest ones."""
    return REGISTRY.get(name)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a glob (or comma-separated globs), in natural order."""
    return REGISTRY.match(pattern)
