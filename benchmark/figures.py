"""The engine's figures (seaborn on the Agg backend): the metric × task score heatmap and, per task with a sweep,
similarity against the sweep variable with one line per metric (the style of Davari et al. 2023, Fig. 4); and
`draw`, which writes every figure of a page (the tasks' own ones included, `simstress.core.page`).

PNG bytes depend only on the records and the installed matplotlib/seaborn (`simstress.core.plots`).
`leaderboard --check` compares the markdown, not these bytes, since a different matplotlib or FreeType may
rasterise differently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from simstress.core.files import write_atomic
from simstress.core.page import PageTask, PageView
from simstress.core.plots import mean_curves, palette, png, slanted_labels, style

if TYPE_CHECKING:  # the page calls these functions; they need only its objects
    from .leaderboard import Board, Page

# Files of the figures folder that `simstress perf --report` writes; every other PNG there is the page's.
PERF_PREFIX = "perf_"


def heatmap_png(board: Board) -> bytes:
    """Scores as entered into the means (error = 0, marked ✗); skipped or missing cells blank (–)."""
    values, labels = [], []
    for metric in board.metrics:
        row, text = [], []
        for task in board.tasks:
            cell = board.cells.get((metric, task.name))
            v = cell.counted if cell is not None else None
            row.append(math.nan if v is None else v)
            text.append("–" if v is None else "✗" if cell.status == "error" else f"{v:.2f}")
        values.append(row)
        labels.append(text)
    frame = pd.DataFrame(values, index=board.metrics, columns=[f"{t.name}\n({t.category})" for t in board.tasks])
    with style("white"):
        fig = Figure(figsize=(3.0 + 0.9 * len(board.tasks), 1.5 + 0.4 * len(board.metrics)))
        ax = fig.add_subplot()
        sns.heatmap(frame, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", annot=labels, fmt="", linewidths=0.5,
                    cbar_kws={"label": "task score (1 = ideal)"})
        slanted_labels(ax, "", "")
        ax.set_title(f"simstress scores, scale {board.scale}")
        return png(fig)


def sweep_png(view: PageView, task: PageTask) -> bytes:
    """Similarity against the task's sweep variable, one line per metric, band ± one standard deviation."""
    data = mean_curves(view.records(task.name))
    order = [m for m in view.metrics if m in set(data["metric"])]
    with style():
        fig = Figure(figsize=(8.0, 4.5))
        ax = fig.add_subplot()
        sns.lineplot(data, x="x", y="similarity", hue="metric", hue_order=order, style="metric", style_order=order,
                     palette=palette(view.metrics), errorbar="sd", markers=True, ax=ax)
        if task.log_x:
            ax.set_xscale("log" if (data["x"] > 0).all() else "symlog")
        ax.set_xlabel(task.sweep_name)
        ax.set_ylabel("similarity (higher = more similar)")
        ax.set_title(f"{task.name} ({task.category})")
        ax.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
        return png(fig)


def draw(page: Page, out_dir: Path) -> list[Path]:
    """Write every figure of the page into out_dir and delete the page's figures there that it no longer makes."""
    made = {f.name: f.draw() for f in page.figures}
    for name, data in made.items():
        write_atomic(out_dir / name, data)
    for old in out_dir.glob("*.png"):
        if old.name not in made and not old.name.startswith(PERF_PREFIX):
            old.unlink()
    return [out_dir / name for name in sorted(made)]
