"""Leaderboard figures (seaborn on the Agg backend): the metric × task score heatmap, and one plot per sweep task
of similarity against the sweep variable with one line per metric (the style of Davari et al. 2023, Fig. 4).

PNG bytes depend only on the records and the installed matplotlib/seaborn: fixed style, sizes and dpi, no
pyplot state, and no "Software" metadata. (`leaderboard --check` compares the markdown, not these bytes, since
a different matplotlib or FreeType may rasterise differently.)
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

from simstress.core.files import write_atomic  # noqa: E402

from .leaderboard import HEATMAP, RBF_FIGURE, RBF_TASK, Board, Task, rbf_variant, sweep_figure  # noqa: E402

DPI = 100


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _palette(board: Board) -> dict[str, tuple]:
    """One colour per metric, by rank, shared by every figure (tab20's strong shades first, then the pale)."""
    n = len(board.metrics)
    tab20 = sns.color_palette("tab20", 20)
    return dict(zip(board.metrics, tab20[0::2] + tab20[1::2] if n <= 20 else sns.color_palette("husl", n)))


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
    fig = Figure(figsize=(3.0 + 0.9 * len(board.tasks), 1.5 + 0.4 * len(board.metrics)))
    ax = fig.add_subplot()
    sns.heatmap(frame, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", annot=labels, fmt="", linewidths=0.5,
                cbar_kws={"label": "task score (1 = ideal)"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_title(f"simstress scores, scale {board.scale}")
    return _png(fig)


def curves(board: Board, task: Task) -> pd.DataFrame:
    """Mean similarity per (metric, seed, x) over the task's ok records at its current version.

    A task may hold several cases per sweep value (one per class, per (μ, σ) pair, ...); averaging them first
    leaves the plotted band to mean what it says, the spread over seeds.
    """
    frames = [
        pd.DataFrame({"x": run["curve"]["x"], "similarity": run["curve"]["similarity"]})
        .assign(metric=rec["metric"], seed=run["seed"])
        for rec in board.records
        if rec["task"] == task.name and rec["status"] == "ok" and rec["task_version"] == task.version
        for run in rec["runs"] if run["curve"]
    ]
    data = pd.concat(frames, ignore_index=True).astype({"similarity": float})
    return data.groupby(["metric", "seed", "x"], as_index=False, sort=True)["similarity"].mean()


def sweep_png(board: Board, task: Task, palette: dict[str, tuple]) -> bytes:
    data = curves(board, task)
    order = [m for m in board.metrics if m in set(data["metric"])]
    fig = Figure(figsize=(8.0, 4.5))
    ax = fig.add_subplot()
    sns.lineplot(data, x="x", y="similarity", hue="metric", hue_order=order, style="metric", style_order=order,
                 palette=palette, errorbar="sd", markers=True, ax=ax)
    if task.log_x:
        ax.set_xscale("log" if (data["x"] > 0).all() else "symlog")
    ax.set_xlabel(task.sweep_name)
    ax.set_ylabel("similarity (higher = more similar)")
    ax.set_title(f"{task.name} ({task.category})")
    ax.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
    return _png(fig)


def rbf_conventions_png(board: Board) -> bytes:
    """Similarity on RBF_TASK against c: colour = σ, solid = ordinary median, dashed = lower median."""
    task = next(t for t in board.tasks if t.name == RBF_TASK)
    data = curves(board, task)
    data = data[data["metric"].isin(board.rbf_conventions())]
    variants = {m: rbf_variant(m) for m in set(data["metric"])}
    data = data.assign(sigma=data["metric"].map(lambda m: f"σ = {variants[m][0]:g}"),
                       median=data["metric"].map(lambda m: f"{variants[m][1]} median"))
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    sns.lineplot(data, x="x", y="similarity", hue="sigma", style="median", style_order=["ordinary median",
                 "lower median"], errorbar="sd", markers=True, ax=ax)
    ax.set_xlabel(task.sweep_name)
    ax.set_ylabel("RBF CKA similarity")
    ax.set_title(f"{RBF_TASK}: the bandwidth convention decides the curve")
    ax.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
    return _png(fig)


def draw(board: Board, out_dir: Path) -> list[Path]:
    """Write every figure of the board into out_dir and delete sweep figures there that it no longer makes."""
    with matplotlib.style.context("default"), sns.plotting_context("notebook"):
        with sns.axes_style("white"):
            pngs = {HEATMAP: heatmap_png(board)}
        with sns.axes_style("whitegrid"):
            palette = _palette(board)
            pngs.update({sweep_figure(t.name): sweep_png(board, t, palette) for t in board.sweep_tasks()})
            if board.rbf_conventions():
                pngs[RBF_FIGURE] = rbf_conventions_png(board)
    for name, png in pngs.items():
        write_atomic(out_dir / name, png)
    for old in [*out_dir.glob(sweep_figure("*")), out_dir / RBF_FIGURE]:  # the board's own: perf plots live here too
        if old.name not in pngs and old.exists():
            old.unlink()
    return [out_dir / name for name in sorted(pngs)]
