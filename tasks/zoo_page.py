"""The page's sections on the zoo's tasks: Davari et al. 2023's Fig. 2 (`memorization`, as its sweep panel) and
Fig. 4c (`network_class_translation`, `network_outlier`), and the networks the records used, from their cards.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from simstress.core.metric import get_metric
from simstress.core.page import (
    Figure,
    PageView,
    Section,
    SweepPanel,
    UsedArtifact,
    card_cell,
    code,
    finite,
    format_duration,
    md,
    mean_sd,
    page_section,
    sweep_panel,
    table,
)
from simstress.core.record import Record

NETWORKS = "networks"  # the zoo's artifact kind (`simstress.networks.zoo.KIND`; not imported: it pulls in torch)
MEMO_TASK, MEMO_FIGURE, MEMO_PAIRS = "memorization", "memorization_layers.png", ("generalized", "memorized", "random")
PAIR_COLOURS = dict(zip(MEMO_PAIRS, ("tab:green", "tab:orange", "tab:gray")))
# Fig. 4c: a class (Cor. 4) or one image (Cor. 3) of real features translated. The class task's `qp_direction`
# variant is the paper's construction; `head_nullspace` is simstress's own and is left out here.
CLASS_TASK, OUTLIER_TASK, FIG4C_VARIANT = "network_class_translation", "network_outlier", "qp_direction"
FIG4C_FIGURE, ZOO_FIGURE = "real_feature_translation.png", "zoo_training.png"
THEORY = "Theorem 1 (linear CKA)"
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "fashion_mnist_slice": "a Fashion-MNIST slice",
                 "cifar10": "CIFAR-10"}


def metric_family(metric_id: str) -> str:
    """The last component of the registered metric's module ("simstress.metrics.cka" -> "cka"); for an id no
    longer installed, its base name (before "[")."""
    try:
        return get_metric(metric_id).spec.fn.__module__.rsplit(".", 1)[-1]
    except (LookupError, ValueError):
        return metric_id.split("[", 1)[0]


# ------------------------------------------------------------------------------------------------- memorization


def memorization_png(view: PageView, records: list[Record]) -> bytes:
    """Fig. 2: similarity per block for the three pairs (colour), one panel per metric family, line style per metric
    within it; mean over seeds (the spread would hide which pair is above the other)."""
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import MaxNLocator

    from simstress.core.plots import curve_rows, png, style

    families = {m: metric_family(m) for m in sorted({r.metric for r in view.all_records if r.task == MEMO_TASK})}
    data = curve_rows(records)
    data = data[data["metric"].isin(view.metrics)]  # the ranked metrics: the calibration rows have tables of their own
    data = data.assign(block=data["block"] if "block" in data else data["x"])
    data = data.groupby(["metric", "block", "pair"], as_index=False, sort=True)["similarity"].mean()
    names = sorted({families.get(m, m) for m in data["metric"]})
    cols = min(len(names), 4)
    rows = -(-len(names) // cols)
    with style():
        fig = MplFigure(figsize=(4.2 * cols, 3.6 * rows))
        axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
        fig.subplots_adjust(hspace=0.35)  # room for a row's x labels above the next row's titles
        pairs = [p for p in MEMO_PAIRS if p in set(data["pair"])]
        shared: dict[str, object] = {}  # pair -> its legend handle
        for ax, family in zip(axes, names):
            order = [m for m in view.metrics if m in set(data["metric"]) and families.get(m, m) == family]
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
        for ax in axes[len(names):]:
            ax.set_visible(False)
        shown = [p for p in pairs if p in shared]
        fig.legend([shared[p] for p in shown], [f"A vs {p}" for p in shown], loc="upper left",
                   bbox_to_anchor=(0.91, 0.88), frameon=False)
        fig.suptitle(f"{MEMO_TASK}: generalized A against another generalized, a memorized and a random network",
                     y=1.02)
        return png(fig)


@sweep_panel(MEMO_TASK)
def memorization_panel(view: PageView) -> SweepPanel | None:
    records = view.records(MEMO_TASK)
    return SweepPanel(
        ["Davari et al. 2023, Fig. 2: similarity of each block of a generalized network A to the same block of "
         "another generalized network, of a memorizing one and of a random one (colour = partner), one panel per "
         "metric family, one line style per metric; mean over seeds. A metric scores where the partner that "
         "agrees more with A's predictions (normally the generalized one) is the more similar one.", ""],
        Figure(MEMO_FIGURE, lambda: memorization_png(view, records)))


# ------------------------------------------------------------------------------------------------------ Fig. 4c


def _at_largest_x(view: PageView, task: str, metric: str, variant: str | None = None) -> tuple[float, list[float]]:
    """(largest x, the metric's similarities there, every case and seed) on a task's current records; (nan, []) when
    it has none. `variant` keeps only the curve rows of that variant."""
    rows = []
    for rec in view.records(task):
        if rec.metric != metric:
            continue
        for run in rec.runs:
            curve = run.curve or {"x": [], "similarity": []}
            variants = curve.get("variant") or [None] * len(curve["x"])
            rows += [(x, y) for x, y, v in zip(curve["x"], curve["similarity"], variants)
                     if finite(x) and (variant is None or v == variant)]
    if not rows:
        return math.nan, []
    top = max(x for x, _ in rows)
    return top, [y for x, y in rows if x == top and finite(y)]  # a non-finite similarity is stored as null


def fig4c_numbers(view: PageView) -> dict[str, tuple[float, list[float]]] | None:
    """Linear CKA at the largest c/σ̄ of each Fig. 4c task: {"class": (x, values), "point": (x, values)}; None
    unless both tasks have linear_cka values there."""
    found = {"class": _at_largest_x(view, CLASS_TASK, "linear_cka", FIG4C_VARIANT),
             "point": _at_largest_x(view, OUTLIER_TASK, "linear_cka")}
    return found if all(values for _, values in found.values()) else None


def _fig4c_sentence(view: PageView) -> list[str]:
    """The paper's numbers beside the measured ones (empty without linear_cka records on both tasks)."""
    found = fig4c_numbers(view)
    if found is None:
        return []
    (x_class, at_class), (x_point, at_point) = found["class"], found["point"]
    recs = [r for r in view.all_records if r.metric == "linear_cka" and r.task in (CLASS_TASK, OUTLIER_TASK)]
    # the records say which images were measured; only the cards say how wide the networks were
    used = [n.params for n in view.artifacts(NETWORKS, recs)]
    datasets = sorted({str(run.details["dataset"]) for r in recs for run in r.runs if run.details.get("dataset")})
    widths = sorted({p["width"] for p in used if finite(p.get("width"))})
    what = ", ".join([*(DATASET_NAMES.get(d, code(d)) for d in datasets),
                      "M1" + (f" w = {', '.join(f'{w:g}' for w in widths)}" if widths else "")])
    return [f"Davari et al. (CIFAR-10) saw linear CKA plateau near 0.17 for a translated class and fall towards 0 "
            f"for a single point while the classifier's accuracy never moved; here, at the largest c (c/σ̄ = "
            f"{x_class:g} for a class, {x_point:g} for a point), linear CKA reads {mean_sd(at_class)} for a class "
            f"and {mean_sd(at_point)} for a single point ({what}), with the network's own predictions unchanged where "
            f"the features move in the null space of its linear layer, and only a post-hoc linear probe's predictions "
            f"unchanged in the paper's QP variant (the network itself, reading block 7 through its pooling, may "
            f"relabel those images; asserted by the tasks).", ""]


def _fig4c_panel(ax: Any, view: PageView, task: str, group: str, palette: dict[str, tuple]) -> None:
    import pandas as pd
    import seaborn as sns

    from simstress.core.plots import curve_rows

    records = view.records(task)
    data = curve_rows(records) if records else pd.DataFrame({"variant": []})
    if task == CLASS_TASK and records:
        data = data[data["variant"] == FIG4C_VARIANT]
    if data.empty:
        ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
        return
    order = [m for m in view.metrics if m in set(data["metric"])]
    sns.lineplot(data, x="x", y="similarity", hue="metric", hue_order=order, style="metric", style_order=order,
                 palette=palette, errorbar="sd", markers=True, ax=ax)
    if "linear_cka_theory" in data:  # a property of the case, the same for every metric: one row per case
        cases = data.drop_duplicates(["seed", group, "x"]).astype({"linear_cka_theory": float})
        theory = cases.groupby("x", sort=True)["linear_cka_theory"].mean()
        ax.plot(theory.index, theory.to_numpy(), color="black", linestyle="--", label=THEORY)
    ax.set_xscale("log")
    ax.set_xlabel("c / σ̄")
    ax.set_ylabel("similarity")


def fig4c_png(view: PageView) -> bytes:
    """Fig. 4c: a translated class (qp_direction) and a translated image against c/σ̄, one line per metric, band ±
    one standard deviation over classes (images) and seeds, and the mean Theorem 1 value of linear CKA."""
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import palette, png, style

    with style():
        fig = MplFigure(figsize=(11.0, 4.2))
        left, right = fig.subplots(1, 2, sharey=True)
        colours = palette(view.metrics)
        _fig4c_panel(left, view, CLASS_TASK, "class", colours)
        _fig4c_panel(right, view, OUTLIER_TASK, "image", colours)
        left.set_title(f"one class translated ({FIG4C_VARIANT})")
        right.set_title("one image translated (head null space)")
        handles: dict[str, object] = {}
        for ax in (left, right):
            if ax.get_legend() is not None:
                ax.get_legend().remove()
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        labels = [m for m in view.metrics if m in handles] + ([THEORY] if THEORY in handles else [])
        fig.legend([handles[x] for x in labels], labels, loc="upper left", bbox_to_anchor=(0.91, 0.88),
                   fontsize="small", frameon=False)
        fig.suptitle("translating real features (Davari et al. 2023, Fig. 4c)", y=1.02)
        return png(fig)


@page_section(order=20)
def real_feature_translation(view: PageView) -> Section | None:
    if not (view.records(CLASS_TASK) or view.records(OUTLIER_TASK)):
        return None
    sentence = _fig4c_sentence(view)
    return Section("Translating real features", [
        f"Davari et al. 2023, Fig. 4c, on the features of a trained network: left, one class of the last block's "
        f"features translated along the non-negative direction that keeps a linear probe's predictions "
        f"(`{CLASS_TASK}`, variant `{FIG4C_VARIANT}`); right, one image's pooled features moved along the null "
        f"space of the network's own read-out (`{OUTLIER_TASK}`). One line per metric, band ± one standard "
        f"deviation over classes (images) and seeds; black dashed: linear CKA as Theorem 1 gives it.", "",
        f"![translating real features]({view.link(FIG4C_FIGURE)})", *([""] + sentence[:-1] if sentence else [])],
        [Figure(FIG4C_FIGURE, lambda: fig4c_png(view))])


# ----------------------------------------------------------------------------------------------------- networks


def history(network: UsedArtifact) -> list[Mapping[str, Any]]:
    """Per-epoch rows with an epoch and a training loss (a random network has none)."""
    rows = network.card.get("history") if network.card is not None else None
    if not isinstance(rows, list):
        return []
    return [h for h in rows if isinstance(h, Mapping) and finite(h.get("epoch")) and finite(h.get("train_loss"))]


def zoo_png(nets: list[UsedArtifact]) -> bytes:
    """Training loss and test accuracy per epoch, one line per network with a history."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import MaxNLocator

    from simstress.core.plots import png, style

    names = [n.name for n in nets]
    labels = [f"{n.name} ({n.key[:8]})" if names.count(n.name) > 1 else n.name for n in nets]
    data = pd.DataFrame([{"network": label, "epoch": float(h["epoch"]), "train loss": float(h["train_loss"]),
                          "test accuracy": float(h["test_accuracy"]) if finite(h.get("test_accuracy")) else math.nan}
                         for n, label in zip(nets, labels) for h in history(n)])
    palette = dict(zip(labels, sns.color_palette("husl" if len(labels) > 10 else "tab10", len(labels))))
    with style():
        fig = MplFigure(figsize=(11.0, 4.0))
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
        return png(fig)


@page_section(order=50)
def networks(view: PageView) -> Section | None:
    used = view.artifacts(NETWORKS)
    if not used:
        return None
    header = ["Network", "Role", "Width", "Seed", "Dataset", "Training images", "Epochs", "Train acc.", "Test acc.",
              "Parameters", "Build time", "Device", "sha256"]
    rows, notes = [], []
    for n in used:
        if n.card is None:
            rows.append([code(n.key), "card missing", *["–"] * 10, ", ".join(code(h[:12]) for h in n.sha256)])
            notes.append(f"- ⚠ {code(n.key)}: no card under {code(f'networks/{n.key}/')} in the results folder "
                         f"(`simstress run` rebuilds the network).")
            continue
        p, card = n.params, n.card
        recipe = p.get("recipe") if isinstance(p.get("recipe"), Mapping) else {}
        data = card.get("data") if isinstance(card.get("data"), Mapping) else {}
        trained = bool(recipe)  # a random network has no recipe: it saw no training image
        rows.append([
            code(n.name), card_cell(p.get("role")), card_cell(p.get("width"), "{:g}".format),
            card_cell(p.get("seed"), "{:g}".format), code(p["dataset"]) if p.get("dataset") else "–",
            card_cell(data.get("train_images", p.get("train_images")) if trained else None, "{:,.0f}".format),
            card_cell(recipe.get("epochs"), "{:g}".format),
            card_cell(card.get("train_accuracy") if trained else None, "{:.1%}".format),
            card_cell(card.get("test_accuracy"), "{:.1%}".format),
            card_cell(card.get("parameters"), "{:,.0f}".format),
            card_cell(card.get("build_seconds"), format_duration), card_cell(card.get("build_device")),
            code(str(card.get("sha256", ""))[:12]) if card.get("sha256") else "–",
        ])
        if card.get("sha256") not in n.sha256:
            notes.append(f"- ⚠ {code(n.name)}: the records used sha256 {', '.join(code(h[:12]) for h in n.sha256)}, "
                         f"the card now holds another build; rerun `simstress run --scale {md(view.scale)}`.")
    lines = ["The networks these records used, as their cards describe them (built once, cached under "
             "`networks/<key>/` in the results folder; a record names each one's sha256). Accuracies are on the "
             "network's own training images (a memorized network's permuted labels) and on the whole test split.", ""]
    lines += table(header, [":---", ":---", "---:", "---:", ":---", "---:", "---:", "---:", "---:", "---:", "---:",
                            ":---", ":---"], rows)
    if notes:
        lines += ["", *notes]
    trained = [n for n in used if history(n)]
    figures = []
    if trained:
        lines += ["", "Training curves from the cards' histories (a random network has none):", "",
                  f"![training curves of the networks]({view.link(ZOO_FIGURE)})"]
        figures.append(Figure(ZOO_FIGURE, lambda: zoo_png(trained)))
    return Section("Networks", lines, figures)
