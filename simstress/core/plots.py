"""What the page's figures share (seaborn on matplotlib's Agg backend): PNG bytes, one palette, curve frames.

PNG bytes depend only on the records and the installed matplotlib/seaborn: fixed style, sizes and dpi, no pyplot
state, and no "Software" metadata. Importing this module loads matplotlib: figure functions import it when they
draw, never at a module's import.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import matplotlib
import pandas as pd

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

from .record import Record  # noqa: E402

DPI = 100


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


@contextmanager
def style(axes: str = "whitegrid") -> Iterator[None]:
    """The page's plotting style: matplotlib's defaults, seaborn's notebook context, `axes` ("white" for heatmaps,
    "whitegrid" for curves); text is drawn as written (a metric id holding `$…$` is a name, not mathtext)."""
    with matplotlib.style.context("default"), sns.plotting_context("notebook"), sns.axes_style(axes), \
            matplotlib.rc_context({"text.parse_math": False}):
        yield


def palette(metrics: Sequence[str]) -> dict[str, tuple]:
    """One colour per metric, in page order, shared by every figure (tab20's strong shades first, then the pale)."""
    n = len(metrics)
    tab20 = sns.color_palette("tab20", 20)
    return dict(zip(metrics, tab20[0::2] + tab20[1::2] if n <= 20 else sns.color_palette("husl", n)))


def slanted_labels(ax, x: str, y: str) -> None:
    """Axis labels of a heatmap, its column labels slanted to fit."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


def mean_curves(records: Iterable[Record]) -> pd.DataFrame:
    """Mean similarity per (metric, seed, x) over the records' curves.

    A task may hold several cases per sweep value (one per class, per (μ, σ) pair, ...); averaging them first
    leaves a plotted band to mean what it says, the spread over seeds.
    """
    frames = [pd.DataFrame({"x": run.curve["x"], "similarity": run.curve["similarity"]})
              .assign(metric=rec.metric, seed=run.seed) for rec in records for run in rec.runs if run.curve]
    data = pd.concat(frames, ignore_index=True).astype({"similarity": float})
    return data.groupby(["metric", "seed", "x"], as_index=False, sort=True)["similarity"].mean()


def curve_rows(records: Iterable[Record]) -> pd.DataFrame:
    """Every stored curve row (all its columns) of the records, with metric and seed."""
    frames = [pd.DataFrame(run.curve).assign(metric=rec.metric, seed=run.seed)
              for rec in records for run in rec.runs if run.curve]
    return pd.concat(frames, ignore_index=True).astype({"similarity": float})
