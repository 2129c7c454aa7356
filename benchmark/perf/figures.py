"""Figures of the results: median time against n, per device (results/figures/perf_<device>.png)."""

from __future__ import annotations

from pathlib import Path

from .results import rows


def draw_figures(docs: list[dict], out_dir: Path) -> list[Path]:
    """One log-log plot of median time against n per results document; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in docs:
        df = pd.DataFrame([r for r in rows(doc) if r["kind"] in ("metric", "streaming")])
        if df.empty:
            continue
        grid = sns.relplot(data=df, x="n", y="median", hue="name", style="dtype", col="dtype", kind="line",
                           markers=True, height=4.5, aspect=1.1)
        grid.set(xscale="log", yscale="log", xlabel="n (p grows with n: 256 … 2048)", ylabel="median time (s)")
        grid.figure.suptitle(f"simstress perf — {doc['simstress']['device']}", y=1.02)
        path = out_dir / f"perf_{doc['simstress']['device']}.png"
        grid.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(grid.figure)
        written.append(path)
    return written
