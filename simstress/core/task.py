"""The `Task` base class, the `register_task` decorator, the task registry, `TaskResult` and `NotApplicable`.

A task builds cases (reference X, changed copy Y, sweep value x, ground-truth columns) from seeded data and
turns a metric's similarities on them into a score in [0, 1]. `Task.evaluate` is the one entry the runner calls:

    similarity = as_similarity(m(X, Y)) / as_similarity(m(X, X))

i.e. every metric is oriented "higher = more similar" (`MetricSpec.as_similarity`) and divided by its own
self-similarity on the case's reference X (computed once per reference), so 1 means "as similar as X is to
itself". A self-similarity that is not a positive finite number cannot be normalised by (the metric does not
recognise its own reference, and dividing by ~0 would blow up): those cases get a NaN similarity, which every
score counts as the worst outcome (`simstress.core.scoring`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Hashable, Iterator, Mapping, TypeVar

import pandas as pd
import torch

from .artifacts import Artifact, ArtifactSpec
from .constants import CATEGORIES, DATA, SCALES
from .inputs import InputError
from .metric import Metric
from .registry import Registry

DOC_SECTIONS = ("Construction:", "Ground truth:", "Score:", "Source:")
Built = Mapping[str, Artifact]  # the built artifacts a set-up is made from, by the names `Task.artifacts` gives


class NonFiniteOutput(RuntimeError):
    """A metric returned NaN or Inf: a silent failure, recorded as an error cell, never scored."""


class NotApplicable(Exception):
    """The task cannot score this metric at all (e.g. the metric needs class labels the task's data lack).

    The message is the reason; the runner records the cell as skipped. Errors of the metric on the task's data
    (e.g. `metrics.InputError`) are not this: they propagate and are recorded as errors.
    """


@dataclass(frozen=True)
class Case:
    """One comparison: the metric scores (reference, other); `ref_key` names the reference for self-similarity.
    `labels`, when given, are this case's classes instead of the set-up's (a task whose variants define classes
    differently); cases of one `ref_key` share them."""

    x: float
    reference: torch.Tensor
    other: torch.Tensor
    ref_key: Hashable
    truth: Mapping[str, Any]
    labels: torch.Tensor | None = None


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
    score: float
    curve: pd.DataFrame
    details: dict[str, Any]


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
    data: ClassVar[str]  # what its cases are made of: a key of `constants.DATA`
    sizes: ClassVar[Mapping[str, Mapping[str, Any]]]
    # False when a curve holds several pairs at one sweep value (a layer map, a set of partners): the page's
    # generic plot of similarity against the sweep variable would average them into nothing.
    sweep_plot: ClassVar[bool] = True
    # Seconds one cell (a metric on every seed of a scale) may take before the runner records it as an error.
    timeout_s: ClassVar[Mapping[str, float]] = {"smoke": 300.0, "default": 1800.0, "full": 6 * 3600.0}

    def __repr__(self) -> str:
        return f"<task {self.name} ({self.category}, v{self.version})>"

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    @property
    def summary(self) -> str:
        """The docstring's first line, shown by `simstress list tasks`."""
        return inspect.getdoc(self).splitlines()[0]

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        """The artifacts (trained networks, activations, ...) one seed of a scale needs, by name; none by default.

        The runner builds them once, before any cell that needs them, and `build` receives them built.
        """
        return {}

    def metric_artifacts(self, scale: str, seed: int, metric: str) -> dict[str, ArtifactSpec]:
        """Artifacts that only the cell of `metric` (an id) needs besides `artifacts`, by name; none by default.

        E.g. the metric's own attack in `map_manipulation`: a plugin's cell builds it, no other cell waits for it.
        """
        return {}

    def cell_artifacts(self, scale: str, seed: int, metric: str) -> dict[str, ArtifactSpec]:
        """Every artifact one seed of `metric`'s cell needs: the shared ones and the metric's own."""
        return {**self.artifacts(scale, seed), **self.metric_artifacts(scale, seed, metric)}

    def curve_details(self, curve: pd.DataFrame, setup: Any) -> dict[str, Any]:
        """Task-specific facts of one metric's curve for the record's details (e.g. per-attack values)."""
        return {}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> Setup:
        """Seeded data and ground truth for one scale's `size` parameters, tensors on `device`."""
        raise NotImplementedError

    def cases(self, setup: Any) -> Iterator[Case]:
        """The comparisons, in curve order (generated lazily: large scales never hold every Y at once)."""
        raise NotImplementedError

    def score(self, curve: pd.DataFrame, setup: Any) -> float:
        """The task's score in [0, 1] from the curve (column `similarity` plus the ground-truth columns)."""
        raise NotImplementedError

    def not_applicable(self, metric: Metric, setup: Setup) -> str | None:
        """Why this task cannot score `metric` at all (recorded as a skip), or None; by default only a metric
        that needs class labels on data without them."""
        if metric.spec.needs_labels and setup.labels is None:
            return f"{metric.id} needs class labels; task {self.name!r} has none (its data carry no class structure)"
        return None

    def setup(self, scale: str = "default", seed: int = 0, device: torch.device | str | None = None,
              artifacts: Built | None = None) -> Setup:
        """Build the seeded data of (scale, seed) on `device`, from the built `artifacts` the task declares.

        Nothing is kept: the caller (the runner's executor) decides how long a set-up lives.
        """
        if scale not in self.sizes:
            raise ValueError(f"task {self.name!r} has no scale {scale!r}; choose from {', '.join(self.scales)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        needed = self.artifacts(scale, seed)
        given = dict(artifacts or {})
        missing = sorted(set(needed) - set(given))
        if missing:
            raise ValueError(f"task {self.name!r} needs the artifacts {missing} at scale {scale!r}, seed {seed}; "
                             f"build them with ArtifactStore(root).ensure(spec) for each spec of "
                             f"task.artifacts(scale, seed), or let `simstress run` do it")
        dev = torch.device(device if device is not None else "cpu")
        return self.build(self.sizes[scale], seed, dev, given)

    def evaluate(self, metric: Metric, setup: Setup) -> TaskResult:
        """Score one metric on one set-up: its self-normalised, oriented similarity on every case, then the score.

        A case the metric refuses with `InputError` (e.g. CCA when p ≥ n) is kept with a NaN similarity, which
        every score counts as the worst outcome, and the refusal in the curve's `refused` column; when it refuses
        every case, the error propagates (an error cell). A non-finite value is never scored: it raises
        `NonFiniteOutput` (an error cell), since a metric must return a number or refuse. Raises `NotApplicable`
        when the metric needs labels and the task has none; any other error of the metric propagates.
        """
        if not isinstance(metric, Metric):
            raise TypeError(f"evaluate takes a Metric (simstress.get_metric(id)), got {type(metric).__name__}")
        reason = self.not_applicable(metric, setup)
        if reason:
            raise NotApplicable(reason)

        def oriented(case: Case, other: torch.Tensor) -> tuple[float, float]:
            raw = float(metric(case.reference, other, labels=setup.labels if case.labels is None else case.labels))
            if not math.isfinite(raw):
                raise NonFiniteOutput(f"{metric.id} returned {raw} on case x = {case.x:g} of task {self.name!r} "
                                      f"(reference {case.ref_key!r}); a metric must return a finite value, or raise "
                                      f"InputError for input it cannot score")
            return raw, float(metric.as_similarity(raw))

        self_sims: dict[Hashable, float | InputError] = {}
        diagnostics: dict[str, list[float]] = {}  # `MetricSpec.diagnose` of each reference
        rows, refusals = [], []
        with torch.no_grad():
            for case in self.cases(setup):
                if case.ref_key not in self_sims:
                    try:
                        self_sims[case.ref_key] = oriented(case, case.reference)[1]
                    except InputError as exc:
                        self_sims[case.ref_key] = exc
                    else:  # outside the try: a diagnostic's own error is never taken for the metric's refusal
                        for key, value in metric.diagnose(case.reference).items():
                            diagnostics.setdefault(key, []).append(value)
                ref = self_sims[case.ref_key]
                try:
                    if isinstance(ref, InputError):
                        raise ref
                    raw, sim = oriented(case, case.other)
                    norm, refused = (sim / ref if math.isfinite(ref) and ref > 0 else math.nan), None
                except InputError as exc:
                    raw, norm, refused = math.nan, math.nan, str(exc)
                    refusals.append(exc)
                rows.append({"x": float(case.x), "similarity": norm, "raw": raw,
                             "self_similarity": ref if isinstance(ref, float) else math.nan, **case.truth,
                             **({"refused": refused} if refused else {})})
        if refusals and len(refusals) == len(rows):
            raise refusals[0]
        curve = pd.DataFrame(rows)
        score = float(self.score(curve, setup))
        if not 0.0 <= score <= 1.0:
            raise RuntimeError(f"task {self.name!r} computed score {score!r} outside [0, 1]: a bug in the task")
        n_bad = int((~curve["similarity"].map(math.isfinite)).sum())
        details = {**setup.details, **self.curve_details(curve, setup), "n_cases": len(curve), "n_nonfinite": n_bad,
                   **({"n_refused": len(refusals)} if refusals else {}),
                   **({"diagnostics": {k: [min(v), max(v)] for k, v in diagnostics.items()}} if diagnostics else {})}
        return TaskResult(self.name, metric.id, score, curve, details)


REGISTRY: Registry[Task] = Registry("task", "simstress.tasks", "simstress.tasks")

TaskT = TypeVar("TaskT", bound=type[Task])


def register_task(*, name: str, category: str, sweep_name: str, log_x: bool = False, version: int = 1,
                  data: str = "synthetic") -> Callable[[TaskT], TaskT]:
    """Register a `Task` subclass (one instance) under `name`; use as a class decorator.

    `sweep_name` labels the curve's x column (with `log_x` for a geometric sweep) for the leaderboard's plots;
    `data` says what the cases are made of (synthetic, trained or pretrained networks' representations: the page
    ranks on each alone too); bump `version` whenever the task's numbers change.
    """
    if category not in CATEGORIES:
        raise ValueError(f"task category must be one of {tuple(CATEGORIES)}, got {category!r}")
    if data not in DATA:
        raise ValueError(f"task data must be one of {tuple(DATA)}, got {data!r}")
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
        cls.data = data
        REGISTRY.add(name, cls(), f"{cls.__module__}.{cls.__qualname__}")
        return cls

    return decorate


def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name lists the closest ones."""
    return REGISTRY.get(name)


def list_tasks(pattern: str = "*", exclude: str | None = None, **where: Any) -> list[str]:
    """Registered task names matching a glob (comma-separated for several) and not `exclude`, in natural order.

    `where` keeps tasks with those attribute values, e.g. `list_tasks(category="robustness")`.
    """
    unknown = set(where) - {"category", "version", "log_x", "sweep_name", "data"}
    if unknown:
        raise ValueError(f"tasks cannot be filtered on {sorted(unknown)}; use category, version, log_x, sweep_name, "
                         f"data")
    return [n for n in REGISTRY.match(pattern, exclude)
            if all(getattr(REGISTRY.get(n), k) == v for k, v in where.items())]
