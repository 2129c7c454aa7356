"""The page's section on `map_manipulation` (Davari et al. 2023, Figs. 5–7): the attack matrix (attack × evaluated
metric: how far the metric's own map moved), the manipulated networks from their cards, their maps and the PCA
of their penultimate features.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Callable, Mapping

from simstress.core.page import (
    Figure,
    PageView,
    Section,
    UsedArtifact,
    card_cell,
    code,
    finite,
    format_duration,
    num,
    page_section,
    table,
)
from simstress.core.registry import natural_key

TASK, KIND = "map_manipulation", "manipulated"  # the task and its attacks' artifact kind
ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE = "attack_matrix.png", "manipulated_maps.png", "manipulation_pca.png"
PAPER_MAPS_FIGURE = "manipulated_paper_maps.png"  # Figs. 6 and 7: the comical maps and the width matching


def attack_matrix(view: PageView) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(attacks, metrics, {(attack, metric): mean over seeds of the metric's map change under the attack}) from
    the per-attack details of the task's records; metrics in page order."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in view.records(TASK):
        for run in r.runs:
            attacks = run.details.get("attacks")
            for attack, effect in (attacks.items() if isinstance(attacks, Mapping) else ()):
                if isinstance(effect, Mapping) and finite(effect.get("map_change")):
                    values[attack, r.metric].append(float(effect["map_change"]))
    attacks = sorted({a for a, _ in values}, key=natural_key)
    metrics = [m for m in view.metrics if any((a, m) in values for a in attacks)]
    return attacks, metrics, {k: statistics.fmean(v) for k, v in values.items()}


def attacked_through(view: PageView) -> set[str]:
    """The attackers whose accepted attacks the records scored (every seed's, every record's)."""
    return {a for r in view.records(TASK) for run in r.runs for a in run.details.get("attacked_through", ())}


def transfer_only(view: PageView, metrics: list[str]) -> list[str]:
    """The metrics no scored attack trained through (their own estimator never attacked): their score measures only
    how the other metrics' attacks transfer to them."""
    from simstress.networks.maps import estimator

    own = set()
    for attacker in attacked_through(view):
        try:
            own.add(estimator(attacker).id)
        except (LookupError, ValueError):
            continue
    out = []
    for m in metrics:
        try:
            through = estimator(m).id in own
        except (LookupError, ValueError):  # not differentiable, or no longer installed
            through = False
        if not through:
            out.append(m)
    return out


def mapped_attacks(attacks: tuple[UsedArtifact, ...]) -> list[UsedArtifact]:
    """The manipulated networks whose cards hold a target and achieved maps (the rows of MAPS_FIGURE): not an attack
    that degenerated a layer so that its own metric refused the achieved map."""
    return [a for a in attacks if a.card is not None and isinstance(a.card.get("maps"), Mapping)
            and a.card.get("target_map") is not None
            and all(isinstance(m, Mapping) and "achieved" in m for m in a.card["maps"].values())]


def _arrow(pair: Any, fmt: Callable[[float], str]) -> str:
    """"before → after" of a card's {"before", "after"} (or {"original", "achieved"}) pair; "–" when absent."""
    if not isinstance(pair, Mapping):
        return "–"
    a, b = (pair.get(k) for k in (("before", "after") if "before" in pair else ("original", "achieved")))
    return f"{card_cell(a, fmt)} → {card_cell(b, fmt)}"


# ------------------------------------------------------------------------------------------------------ figures


def attack_matrix_png(attacks: list[str], metrics: list[str], values: dict[tuple[str, str], float]) -> bytes:
    """Rows attack (attacker → target), columns evaluated metric, cell = how far the metric's own map moved."""
    import numpy as np
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import png, slanted_labels, style

    frame = pd.DataFrame([[values.get((a, m), math.nan) for m in metrics] for a in attacks], index=attacks,
                         columns=metrics)
    with style("white"):
        fig = MplFigure(figsize=(3.5 + 0.55 * len(metrics), 1.5 + 0.42 * len(attacks)))
        ax = fig.add_subplot()
        sns.heatmap(frame, ax=ax, vmin=0.0, vmax=max(0.5, float(np.nanmax(frame.to_numpy()))) if frame.size else 1.0,
                    cmap="rocket_r", annot=True, fmt=".2f", linewidths=0.5, annot_kws={"size": 7},
                    cbar_kws={"label": "mean |map change| off the diagonal"})
        slanted_labels(ax, "evaluated metric", "attack (attacker → target)")
        ax.set_title("Which metrics move when a network is manipulated against one of them")
        return png(fig)


def _shown_map(card: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The map an attack trained on: the estimator's when the card has one, else the attacker's."""
    maps = card["maps"]
    key = "estimator" if "estimator" in maps else "attacker"
    return str(maps[key].get("metric", key)), maps[key]


def manipulated_maps_png(attacks: list[UsedArtifact]) -> bytes:
    """Per attack: original map, target, achieved map (Davari et al. Figs. 5–6), accuracy before → after."""
    import numpy as np
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import png, style

    with style("white"):
        fig = MplFigure(figsize=(10.5, 3.6 * len(attacks)), layout="constrained")
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
                # imshow, not sns.heatmap: seaborn checks each panel's tick labels for overlap by drawing the whole
                # figure, so a figure of the default scale's 26 attacks took over 20 GB
                image = ax.imshow(np.asarray(M, dtype=float), vmin=0.0, vmax=1.0, cmap="magma")
                ax.set_xticks(range(len(M)))
                ax.set_yticks(range(len(M)))
                if title == "achieved":
                    fig.colorbar(image, ax=ax)
                ax.set_title(f"{a.name}\n{metric}, {accuracy}\n{title}" if title == "target" else f"\n\n{title}",
                             fontsize="small")
        return png(fig)


def pca_attack(attacks: list[UsedArtifact]) -> UsedArtifact:
    """The attack whose PCA is drawn: linear_cka towards identity when recorded (the paper's case), else the first."""
    preferred = [a for a in attacks if (a.params.get("attacker"), a.params.get("target")) == ("linear_cka", "identity")]
    return (preferred or attacks)[0]


def pca_png(view: PageView, attack: UsedArtifact) -> bytes:
    """2-D PCA of the penultimate features, original vs manipulated, coloured by class (the paper's mechanism)."""
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import png, style

    path = view.artifact_file(KIND, attack.key, "pca.npz")
    with style():
        fig = MplFigure(figsize=(11.0, 4.6))
        axes = fig.subplots(1, 2)
        if path is None:
            for ax in axes:
                ax.text(0.5, 0.5, f"no pca.npz for {attack.name}", ha="center", va="center", transform=ax.transAxes)
            return png(fig)
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
        return png(fig)


# ------------------------------------------------------------------------------------------------------ section


def _verdict(card: Mapping[str, Any], figure: bool) -> str:
    """Whether the task scores the attack, by the paper's acceptance on the whole test split (its card)."""
    from .manipulation import MAX_ACCURACY_DROP, MIN_AGREEMENT, accepted

    if figure:
        return "figure only"
    if not (isinstance(card.get("test_accuracy"), Mapping) and finite(card.get("agreement"))):
        return "–"
    acc = card["test_accuracy"]
    if accepted(card):
        return "yes"
    return (f"no: {100 * (acc['after'] - acc['before']):+.1f} pp, agreement {card['agreement']:.1%} (needs ≥ "
            f"{-100 * MAX_ACCURACY_DROP:+.0f} pp and ≥ {MIN_AGREEMENT:.0%})")


def figure_keys(view: PageView) -> set[str]:
    """The keys of the attacks the task declares for the page only (Figs. 6 and 7), from its records."""
    return {a.key for r in view.records(TASK) for a in r.artifacts if a.kind == KIND and a.name.startswith("figure:")}


def _attacks_table(view: PageView, used: tuple[UsedArtifact, ...]) -> list[str]:
    header = ["Attack", "Steps", "Test acc. before → after", "Agreement", "Map error before → after (metric)",
              "Top 1 % variance share (original → manipulated)", "Scored", "Build time", "sha256"]
    rows = []
    figures = figure_keys(view)
    for a in used:
        card = a.card or {}
        recipe = a.params.get("recipe") if isinstance(a.params.get("recipe"), Mapping) else {}
        maps = card.get("maps") if isinstance(card.get("maps"), Mapping) else {}
        errors = "; ".join(f"{_arrow(m.get('error'), '{:.3f}'.format)} ({code(str(m.get('metric', '?')))})"
                           for m in maps.values() if isinstance(m, Mapping))
        share = card.get("variance_top1pct")
        history = card.get("history") if isinstance(card.get("history"), list) else []
        skipped = sum(h.get("skipped_steps", 0) for h in history if isinstance(h, Mapping)
                      and finite(h.get("skipped_steps")))
        rows.append([code(a.name) if a.card is not None else f"{code(a.key)} (card missing)",
                     card_cell(recipe.get("steps"), "{:,.0f}".format)
                     + (f" ({skipped:,.0f} skipped: map or gradient not finite)" if skipped else ""),
                     _arrow(card.get("test_accuracy"), "{:.1%}".format),
                     card_cell(card.get("agreement"), "{:.1%}".format), errors or "–",
                     _arrow({"original": share.get("original"), "achieved": share.get("manipulated")},
                            "{:.1%}".format) if isinstance(share, Mapping) else "–",
                     _verdict(card, a.key in figures),
                     card_cell(card.get("build_seconds"), format_duration),
                     code(str(card.get("sha256", ""))[:12]) if card.get("sha256") else "–"])
    lines = ["The manipulated networks these records used, from their cards (cached under `manipulated/<key>/` in "
             "the results folder). Accuracy and agreement (the fraction of test images the manipulated network "
             "labels as the original does) are on the whole test split; map errors (mean |map − target| off the "
             "diagonal) on a stratified test sample, under the attacker and, where the attacker trains through "
             "another estimator, under that one (Davari et al. report linear CKA's maps with the unbiased minibatch "
             "estimator). The variance share is that of the 1 % of test points farthest from the mean of the "
             "penultimate features. An attack is scored only when it keeps the function as the paper judges it, on "
             "the whole test split: test accuracy within 1 pp of the original's, and ≥ 95 % of the predictions "
             "unchanged; the others are listed here with their numbers and never scored.", ""]
    return lines + table(header, [":---", "---:", "---:", "---:", ":---", "---:", ":---", "---:", ":---"], rows)


@page_section(order=30)
def map_manipulation(view: PageView) -> Section | None:
    attacks, metrics, values = attack_matrix(view)
    used = view.artifacts(KIND)
    if not (view.records(TASK) or used):
        return None
    lines = [f"Davari et al. 2023 (Figs. 5–7) fine-tuned networks so that linear CKA's layer × layer map took almost "
             f"any shape while their accuracy barely moved. `{TASK}` asks which metrics share that blind spot: each "
             f"attack fine-tunes one network against one metric (the attacker, through its minibatch estimator) "
             f"towards a target map, with distillation from the original keeping its predictions; every metric then "
             f"compares its own map of the manipulated network with its map of the original. A cell is how far the "
             f"evaluated metric's map moved: mean |change| over the off-diagonal entries of its self-normalised "
             f"similarities (0 = unmoved; mean over seeds). A metric that sees through an attack stays near 0 in its "
             f"column.", ""]
    figures = []
    if attacks:
        passive = transfer_only(view, metrics)
        lines += table(["Attack (attacker → target)", *(code(m) + (" †" if m in passive else "") for m in metrics)],
                       [":---"] + ["---:"] * len(metrics),
                       [[code(a), *(num(values.get((a, m))) for m in metrics)] for a in attacks])
        if passive:
            lines += ["", "† never attacked through itself (not differentiable, or its attack did not keep the "
                      "function): its score measures only how attacks on other metrics transfer to it, not how it "
                      "resists an attack of its own — declaring `differentiable` is what lets it be attacked."]
        lines += ["", f"![attack matrix]({view.link(ATTACK_FIGURE)})", ""]
        figures.append(Figure(ATTACK_FIGURE, lambda: attack_matrix_png(attacks, metrics, values)))
    if used:
        lines += _attacks_table(view, used)
    figure_only = figure_keys(view)
    mapped = [a for a in mapped_attacks(used) if a.key not in figure_only]
    if mapped:
        lines += ["", "Original map, target and achieved map of each attack, under the map the attacker trains on "
                  "(Davari et al. 2023, Fig. 5), and the mechanism: a 2-D PCA of the penultimate features of the "
                  "original and of the manipulated network (the paper found a few points pushed far out along one "
                  "line).", "", f"![manipulated maps]({view.link(MAPS_FIGURE)})", "",
                  f"![PCA of penultimate features]({view.link(PCA_FIGURE)})"]
        figures += [Figure(MAPS_FIGURE, lambda: manipulated_maps_png(mapped)),
                    Figure(PCA_FIGURE, lambda: pca_png(view, pca_attack(mapped)))]
    paper = [a for a in mapped_attacks(used) if a.key in figure_only]
    if paper:
        lines += ["", "Davari et al. 2023, Figs. 6 and 7: linear CKA's map of the same network drawn as comical "
                  "shapes, and a network twice as wide made to show the map of one of normal width (original map, "
                  "target, achieved map).", "", f"![comical maps and width matching]({view.link(PAPER_MAPS_FIGURE)})"]
        figures.append(Figure(PAPER_MAPS_FIGURE, lambda: manipulated_maps_png(paper)))
    return Section("Map manipulation", lines, figures)
