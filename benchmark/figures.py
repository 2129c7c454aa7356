"""Leaderboard figures (seaborn on the Agg backend): the metric × task score heatmap, one plot per sweep task of
similarity against the sweep variable with one line per metric (the style of Davari et al. 2023, Fig. 4), and, on
the trained networks, reproductions of the paper's Fig. 2 (memorization) and Fig. 4c (translated real features)
and the networks' training curves; on the pretrained models, stage × stage maps between them.

PNG bytes depend only on the records and the installed matplotlib/seaborn: fixed style, sizes and dpi, no
pyplot state, and no "Software" metadata. (`leaderboard --check` compares the markdown, not these bytes, since
a different matplotlib or FreeType may rasterise differently.)
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from simstress.core.files import write_atomic  # noqa: E402

from .leaderboard import (  # noqa: E402
    ATTACK_FIGURE,
    CLASS_TASK,
    FIG4C_FIGURE,
    FIG4C_VARIANT,
    HEATMAP,
    MANIPULATED,
    MAPS_FIGURE,
    MEMO_FIGURE,
    MEMO_PAIRS,
    OUTLIER_TASK,
    PCA_FIGURE,
    RBF_FIGURE,
    RBF_TASK,
    STAGE_FIGURE,
    STAGE_METRIC,
    ZOO_FIGURE,
    Board,
    Network,
    Task,
    finite,
    rbf_variant,
    sweep_figure,
)

DPI = 100
# besides the sweeps: the files `draw` may delete
OWN = (RBF_FIGURE, MEMO_FIGURE, FIG4C_FIGURE, ZOO_FIGURE, ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE, STAGE_FIGURE)
PAIR_COLOURS = dict(zip(MEMO_PAIRS, ("tab:green", "tab:orange", "tab:gray")))
THEORY = "Theorem 1 (linear CKA)"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _palette(board: Board) -> dict[str, tuple]:
    """One colour per metric, by rank, shared by every figure (tab20's strong shades first, then the pale)."""
    n = len(board.metrics)
    tab20 = sns.color_palette("tab20", 20)
    return dict(zip(board.metrics, tab20[0::2] + tab20[1::2] if n <= 20 else sns.color_palette("husl", n)))


def _labels(ax, x: str, y: str) -> None:
    """Axis labels of a heatmap, its column labels slanted to fit."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")


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
    _labels(ax, "", "")
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


def curve_rows(board: Board, task: Task) -> pd.DataFrame:
    """Every stored curve row (all its columns) of the task's current records, with metric and seed."""
    frames = [pd.DataFrame(run["curve"]).assign(metric=rec["metric"], seed=run["seed"])
              for rec in board.curve_records(task) for run in rec["runs"] if run["curve"]]
    return pd.concat(frames, ignore_index=True).astype({"similarity": float})


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


def memorization_png(board: Board, task: Task) -> bytes:
    """Fig. 2: similarity per block for the three pairs (colour), one panel per metric family, line style per metric
    within it; mean over seeds (the spread would hide which pair is above the other)."""
    data = curve_rows(board, task)
    data = data.assign(block=data["block"] if "block" in data else data["x"])
    data = data.groupby(["metric", "block", "pair"], as_index=False, sort=True)["similarity"].mean()
    families = sorted({board.families.get(m, m) for m in data["metric"]})
    cols = min(len(families), 4)
    rows = -(-len(families) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    fig.subplots_adjust(hspace=0.35)  # room for a row's x labels above the next row's titles
    pairs = [p for p in MEMO_PAIRS if p in set(data["pair"])]
    shared: dict[str, object] = {}  # pair -> its legend handle
    for ax, family in zip(axes, families):
        order = [m for m in board.metrics if m in set(data["metric"]) and board.families.get(m, m) == family]
        sns.lineplot(data[data["metric"].isin(order)], x="block", y="similarity", hue="pair", hue_order=pairs,
                     palette=PAIR_COLOURS, style="metric", style_order=order, markers=True, errorbar=None, ax=ax)
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        shared.update({p: handles[p] for p in pairs if p in handles})
        ax.get_legend().remove()
        if len(order) > 1:  # the colours are shared (figure legend); the line styles are this panel's own
            ax.legend([handles[m] for m in order], order, fontsize="x-small", frameon=False)
        ax.set_title(family if len(order) > 1 else f"{family} ({order[0]})")
        ax.set_xlabel("block")
        ax.set_ylabel("similarity to generalized A")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(families):]:
        ax.set_visible(False)
    shown = [p for p in pairs if p in shared]
    fig.legend([shared[p] for p in shown], [f"A vs {p}" for p in shown], loc="upper left", bbox_to_anchor=(0.91, 0.88),
               frameon=False)
    fig.suptitle(f"{task.name}: generalized A against another generalized, a memorized and a random network", y=1.02)
    return _png(fig)


def _fig4c_panel(ax, board: Board, task: Task | None, group: str, palette: dict[str, tuple]) -> None:
    data = curve_rows(board, task) if task is not None else pd.DataFrame({"variant": []})
    if task is not None and task.name == CLASS_TASK:
        data = data[data["variant"] == FIG4C_VARIANT]
    if data.empty:
        ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
        return
    order = [m for m in board.metrics if m in set(data["metric"])]
    sns.lineplot(data, x="x", y="similarity", hue="metric", hue_order=order, style="metric", style_order=order,
                 palette=palette, errorbar="sd", markers=True, ax=ax)
    if "linear_cka_theory" in data:  # a property of the case, the same for every metric: one row per case
        cases = data.drop_duplicates(["seed", group, "x"]).astype({"linear_cka_theory": float})
        theory = cases.groupby("x", sort=True)["linear_cka_theory"].mean()
        ax.plot(theory.index, theory.to_numpy(), color="black", linestyle="--", label=THEORY)
    ax.set_xscale("log")
    ax.set_xlabel("c / σ̄")
    ax.set_ylabel("similarity")


def fig4c_png(board: Board, palette: dict[str, tuple]) -> bytes:
    """Fig. 4c: a translated class (qp_direction) and a translated image against c/σ̄, one line per metric, band ±
    one standard deviation over classes (images) and seeds, and the mean Theorem 1 value of linear CKA."""
    tasks = {t.name: t for t in board.fig4c_tasks()}
    fig = Figure(figsize=(11.0, 4.2))
    left, right = fig.subplots(1, 2, sharey=True)
    _fig4c_panel(left, board, tasks.get(CLASS_TASK), "class", palette)
    _fig4c_panel(right, board, tasks.get(OUTLIER_TASK), "image", palette)
    left.set_title(f"one class translated ({FIG4C_VARIANT})")
    right.set_title("one image translated (head null space)")
    handles: dict[str, object] = {}
    for ax in (left, right):
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = [m for m in board.metrics if m in handles] + ([THEORY] if THEORY in handles else [])
    fig.legend([handles[x] for x in labels], labels, loc="upper left", bbox_to_anchor=(0.91, 0.88), fontsize="small",
               frameon=False)
    fig.suptitle("translating real features (Davari et al. 2023, Fig. 4c)", y=1.02)
    return _png(fig)


def zoo_png(board: Board) -> bytes:
    """Training loss and test accuracy per epoch, one line per network with a history."""
    nets = board.trained_networks()
    names = [n.name for n in nets]
    labels = [f"{n.name} ({n.key[:8]})" if names.count(n.name) > 1 else n.name for n in nets]
    data = pd.DataFrame([{"network": label, "epoch": float(h["epoch"]), "train loss": float(h["train_loss"]),
                          "test accuracy": float(h["test_accuracy"]) if finite(h.get("test_accuracy")) else math.nan}
                         for n, label in zip(nets, labels) for h in n.history])
    palette = dict(zip(labels, sns.color_palette("husl" if len(labels) > 10 else "tab10", len(labels))))
    fig = Figure(figsize=(11.0, 4.0))
    loss, acc = fig.subplots(1, 2)
    sns.lineplot(data, x="epoch", y="train loss", hue="network", hue_order=labels, palette=palette, markers=True,
                 style="network", style_order=labels, ax=loss, legend=False)
    tested = data.dropna(subset=["test accuracy"])
    if len(tested):
        sns.lineplot(tested, x="epoch", y="test accuracy", hue="network", hue_order=labels, palette=palette,
                     markers=True, style="network", style_order=labels, ax=acc)
        acc.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
    else:
        acc.text(0.5, 0.5, "no test accuracy in the histories", ha="center", va="center", transform=acc.transAxes)
    for ax in (loss, acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss.set_title("training loss (mean over the epoch's batches)")
    acc.set_title("test accuracy")
    return _png(fig)


def stage_maps_png(board: Board) -> bytes:
    """One panel per pair of pretrained models: STAGE_METRIC between stage i of A (rows) and stage j of B."""
    maps = board.stage_maps()
    fig = Figure(figsize=(4.2 * len(maps), 4.0), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, ((a, b), M) in zip(axes, maps.items()):
        sns.heatmap(np.asarray(M, dtype=float), ax=ax, vmin=0.0, vmax=1.0, cmap="magma", square=True, annot=True,
                    fmt=".2f", annot_kws={"size": 7}, cbar=ax is axes[-1])
        _labels(ax, f"stage of {b}", f"stage of {a}")
        ax.set_title(f"{STAGE_METRIC}: {a} vs {b}", fontsize="small")
    return _png(fig)


def attack_matrix_png(board: Board) -> bytes:
    """Rows attack (attacker → target), columns evaluated metric, cell = how far the metric's own map moved."""
    attacks, metrics, values = board.attack_matrix()
    frame = pd.DataFrame([[values.get((a, m), math.nan) for m in metrics] for a in attacks], index=attacks,
                         columns=metrics)
    fig = Figure(figsize=(3.5 + 0.55 * len(metrics), 1.5 + 0.42 * len(attacks)))
    ax = fig.add_subplot()
    sns.heatmap(frame, ax=ax, vmin=0.0, vmax=max(0.5, float(np.nanmax(frame.to_numpy()))) if frame.size else 1.0,
                cmap="rocket_r", annot=True, fmt=".2f", linewidths=0.5, annot_kws={"size": 7},
                cbar_kws={"label": "mean |map change| off the diagonal"})
    _labels(ax, "evaluated metric", "attack (attacker → target)")
    ax.set_title("Which metrics move when a network is manipulated against one of them")
    return _png(fig)


def _shown_map(card: dict) -> tuple[str, dict]:
    """The map an attack trained on: the estimator's when the card has one, else the attacker's."""
    maps = card["maps"]
    key = "estimator" if "estimator" in maps else "attacker"
    return str(maps[key].get("metric", key)), maps[key]


def manipulated_maps_png(board: Board) -> bytes:
    """Per attack: original map, target, achieved map (Davari et al. Figs. 5–6), accuracy before → after."""
    attacks = board.mapped_attacks()
    fig = Figure(figsize=(10.5, 3.6 * len(attacks)), layout="constrained")
    axes = fig.subplots(len(attacks), 3, squeeze=False)
    for row, a in zip(axes, attacks):
        card = a.card
        metric, maps = _shown_map(card)
        acc = card.get("test_accuracy", {})
        panels = (("original", maps.get("original")), ("target", card.get("target_map")),
                  ("achieved", maps.get("achieved")))
        before, after = acc.get("before"), acc.get("after")
        accuracy = f"test acc. {before:.1%} → {after:.1%}" if finite(before) and finite(after) else ""
        for ax, (title, M) in zip(row, panels):
            sns.heatmap(np.asarray(M, dtype=float), ax=ax, vmin=0.0, vmax=1.0, cmap="magma", square=True,
                        cbar=title == "achieved", annot=False)
            ax.set_title(f"{a.name}\n{metric}, {accuracy}\n{title}" if title == "target" else f"\n\n{title}",
                         fontsize="small")
    return _png(fig)


def pca_attack(board: Board) -> Network | None:
    """The attack whose PCA is drawn: linear_cka towards identity when recorded (the paper's case), else the first."""
    attacks = board.mapped_attacks()
    preferred = [a for a in attacks if (a.params.get("attacker"), a.params.get("target")) == ("linear_cka", "identity")]
    return (preferred or attacks or [None])[0]


def pca_png(board: Board, root: Path | None) -> bytes:
    """2-D PCA of the penultimate features, original vs manipulated, coloured by class (the paper's mechanism)."""
    attack = pca_attack(board)
    path = root / MANIPULATED / attack.key / "pca.npz" if root is not None else None
    fig = Figure(figsize=(11.0, 4.6))
    axes = fig.subplots(1, 2)
    if path is None or not path.is_file():
        for ax in axes:
            ax.text(0.5, 0.5, f"no pca.npz for {attack.name}", ha="center", va="center", transform=ax.transAxes)
        return _png(fig)
    with np.load(path) as data:
        coords, labels = data["coords"], data["labels"]
    share = attack.card.get("variance_top1pct", {})
    for ax, part, name in zip(axes, coords, ("original", "manipulated")):
        sns.scatterplot(x=part[:, 0], y=part[:, 1], hue=labels.astype(str), palette="tab10", s=8, linewidth=0,
                        ax=ax, legend=name == "manipulated")
        top = share.get(name)
        ax.set_title(f"{name}" + (f": top 1 % of points carry {top:.0%} of the variance" if finite(top) else ""),
                     fontsize="small")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    axes[1].legend(title="class", bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
    fig.suptitle(f"penultimate features, {attack.name}", fontsize="medium")
    return _png(fig)


def draw(board: Board, out_dir: Path, root: Path | None = None) -> list[Path]:
    """Write every figure of the board into out_dir and delete figures of its own there that it no longer makes.

    `root` is the results folder holding the manipulated networks (their PCA coordinates); None draws a placeholder.
    """
    with matplotlib.style.context("default"), sns.plotting_context("notebook"):
        with sns.axes_style("white"):
            pngs = {HEATMAP: heatmap_png(board)}
        with sns.axes_style("whitegrid"):
            palette = _palette(board)
            pngs.update({sweep_figure(t.name): sweep_png(board, t, palette) for t in board.sweep_tasks()})
            if board.rbf_conventions():
                pngs[RBF_FIGURE] = rbf_conventions_png(board)
            if (memo := board.memorization()) is not None:
                pngs[MEMO_FIGURE] = memorization_png(board, memo)
            if board.fig4c_tasks():
                pngs[FIG4C_FIGURE] = fig4c_png(board, palette)
            if board.trained_networks():
                pngs[ZOO_FIGURE] = zoo_png(board)
            if board.mapped_attacks():
                pngs[MAPS_FIGURE] = manipulated_maps_png(board)
                pngs[PCA_FIGURE] = pca_png(board, root)
        if board.stage_maps():
            with sns.axes_style("white"):
                pngs[STAGE_FIGURE] = stage_maps_png(board)
        if board.manipulation():
            with sns.axes_style("white"):
                pngs[ATTACK_FIGURE] = attack_matrix_png(board)
    for name, png in pngs.items():
        write_atomic(out_dir / name, png)
    for old in [*out_dir.glob(sweep_figure("*")), *(out_dir / n for n in OWN)]:  # perf plots live here too
        if old.name not in pngs and old.exists():
            old.unlink()
    return [out_dir / name for name in sorted(pngs)]
