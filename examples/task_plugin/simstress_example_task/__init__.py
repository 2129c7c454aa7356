"""A simstress task plugin with its own leaderboard section: feature dropout.

Installing this package is all it takes: its entry point in the group `simstress.tasks` makes simstress import
this module; `@register_task` adds the task to the registry and `@page_section` adds a section (with a figure) to
the leaderboard, after the sweeps. The section reads only the task's records (`PageView.records`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from simstress.core.page import Figure, PageView, Section, code, num, page_section, table
from simstress.core.scoring import positive_spearman
from simstress.core.synthetic import gaussian_mixture, generator
from simstress.tasks import Case, Setup, Task, register_task

NAME, FIGURE = "feature_dropout", "feature_dropout_half.png"
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class DropoutSetup(Setup):
    X: torch.Tensor
    noise: torch.Tensor
    order: torch.Tensor  # the features in the order they are replaced


@register_task(name=NAME, category="sensitivity", sweep_name="fraction of features replaced by noise")
class FeatureDropout(Task):
    """A growing fraction of the features replaced by independent noise of the same variance.

    Construction: X = ReLU'd 10-class Gaussian mixture (`simstress.core.synthetic.gaussian_mixture`, separation 0.5);
    Y = X with the first ⌈f·p⌉ features of a seeded random order replaced by independent Gaussian noise with
    each feature's own mean and standard deviation, f ∈ {0, 0.25, 0.5, 0.75, 1}. Sizes: smoke n = 300, p = 16;
    default n = 1000, p = 64. Computed in float64. Class labels: the mixture's.
    Ground truth: every replaced feature loses its information about the class, so what a linear read-out of Y can
    do falls with f (the class means of Y move towards one another); the ideal similarity falls monotonically.
    Score: max(0, Spearman(f, −similarity)): 1 for a strictly falling similarity, 0 for a constant one.
    Source: simstress's example task plugin (examples/task_plugin), after the noise-injection tests of Ding et al.
    2021 (NeurIPS), "Grounding Representation Similarity Through Statistical Testing".
    """

    sizes = {"smoke": {"n": 300, "p": 16}, "default": {"n": 1000, "p": 64}}

    def build(self, size, seed: int, device: torch.device, artifacts) -> DropoutSetup:
        X, labels = gaussian_mixture(size["n"], size["p"], 10, generator(seed, 0), separation=0.5)
        noise = torch.randn(X.shape, generator=generator(seed, 1), dtype=torch.float64) * X.std(0) + X.mean(0)
        order = torch.randperm(size["p"], generator=generator(seed, 2))
        return DropoutSetup(labels=labels.to(device), details={"n": size["n"], "p": size["p"], "dtype": "float64"},
                            X=X.to(device), noise=noise.to(device), order=order.to(device))

    def cases(self, setup: DropoutSetup) -> Iterator[Case]:
        p = setup.X.shape[1]
        for f in FRACTIONS:
            Y = setup.X.clone()
            replaced = setup.order[: int(np.ceil(f * p))]
            Y[:, replaced] = setup.noise[:, replaced]
            yield Case(x=f, reference=setup.X, other=Y, ref_key=0, truth={"replaced": len(replaced)})

    def score(self, curve: pd.DataFrame, setup: DropoutSetup) -> float:
        return positive_spearman(curve["x"], -curve["similarity"])


def at_half(view: PageView) -> dict[str, float]:
    """Metric -> its mean similarity (over seeds) with half of the features replaced, in page order."""
    found: dict[str, list[float]] = {}
    for record in view.records(NAME):
        for run in record.runs:
            found.setdefault(record.metric, []).extend(
                y for x, y in zip(run.curve["x"], run.curve["similarity"]) if x == 0.5 and y is not None)
    return {m: float(np.mean(found[m])) for m in view.metrics if found.get(m)}


def half_png(values: dict[str, float]) -> bytes:
    """One bar per metric: similarity with half of the features replaced."""
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import palette, png, style

    colours = palette(list(values))
    with style():
        fig = MplFigure(figsize=(6.0, 0.5 + 0.3 * len(values)))
        ax = fig.add_subplot()
        ax.barh(list(values), list(values.values()), color=[colours[m] for m in values])
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.05)
        ax.set_xlabel("similarity with half of the features replaced by noise")
        return png(fig)


@page_section(order=100)
def dropout_section(view: PageView) -> Section | None:
    values = at_half(view)
    if not values:
        return None
    lines = [f"`{NAME}` (an example task plugin) replaces a growing fraction of the features by noise; halfway, a "
             f"metric that tracks the lost information should read well below 1:", ""]
    lines += table(["Metric", "Similarity at f = 0.5"], [":---", "---:"],
                   [[code(m), num(v)] for m, v in values.items()])
    lines += ["", f"![similarity with half of the features replaced]({view.link(FIGURE)})"]
    return Section("Feature dropout", lines, [Figure(FIGURE, lambda: half_png(values))])
