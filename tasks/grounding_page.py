"""The leaderboard's "Grounding" section: the metrics ranked on the grounding tasks alone, what their ground truth
rests on (measured on the networks), and ReSi-style figures (Klabunde et al. 2025, Fig. 1): each task's
ground-truth matrix over its models beside every metric's similarity matrix.

It reads only records (their curves and set-up details), never networks; matplotlib is imported when a figure is
drawn.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from simstress.core.page import Figure, PageView, Section, code, num, page_section, table
from simstress.core.record import Record

TASKS = ("accuracy_grounding", "output_grounding", "label_randomization", "shortcut_affinity", "augmentation",
         "layer_monotonicity", "cross_architecture_correspondence")
MATRIX_TASKS = {"accuracy_grounding": "accuracy_difference", "output_grounding": "jsd",
                "label_randomization": "same_level", "shortcut_affinity": "same_level", "augmentation": "same_level"}
def _first_run(record: Record) -> Any:
    return min(record.runs, key=lambda r: r.seed)


def ranking(records: Mapping[str, Sequence[Record]], metrics: Sequence[str]) -> list[tuple[str, list[float | None]]]:
    """Each metric's score on every grounding task (None where it has no ok record), best mean first."""
    by = {(t, r.metric): r for t in TASKS for r in records.get(t, ()) if r.ok}
    rows = [(m, [by[(t, m)].score if (t, m) in by else None for t in TASKS]) for m in metrics]
    rows = [r for r in rows if any(s is not None for s in r[1])]
    return sorted(rows, key=lambda r: -np.mean([s if s is not None else 0.0 for s in r[1]]))


def facts(records: Mapping[str, Sequence[Record]]) -> list[str]:
    """What each task's ground truth rests on, from the set-up details of its first record's first seed."""
    out = []
    for task in TASKS:
        recs = records.get(task, ())
        if not recs:
            continue
        d = _first_run(recs[0]).details
        fn = d.get("function")
        if task in ("accuracy_grounding",) and fn:
            spans = ", ".join(f"{f} {v['accuracy_min']:.1%}–{v['accuracy_max']:.1%}"
                              + ("" if v["checkpoints_rise"] else " (checkpoints do not rise)")
                              for f, v in fn.items() if isinstance(v, dict))
            low, high = fn["disagreement_range"]
            out.append(f"- `{task}`, `output_grounding`: test accuracies per architecture {spans}; output "
                       f"disagreement between pairs {low:.1%}–{high:.1%}.")
        elif task in ("label_randomization", "shortcut_affinity", "augmentation") and fn:
            levels = "; ".join(f"{k}: " + ", ".join(f"{n.removeprefix('test_accuracy_') or 'test'} "
                                                    + (f"{v:.1%}" if isinstance(v, float) else
                                                       "/".join(f"{x:.0%}" for x in v))
                                                    for n, v in lv.items())
                               for k, lv in fn["levels"].items())
            verdict = "holds" if fn["levels_differ_in_function"] else "does NOT hold"
            out.append(f"- `{task}`: per level {levels}. Output disagreement within a level "
                       f"{fn['disagreement_within_level']:.1%}, across levels {fn['disagreement_across_levels']:.1%}: "
                       f"the design truth {verdict} in function.")
        elif task == "cross_architecture_correspondence":
            rho = ", ".join(f"{k} {v:.2f}" for k, v in d["depth_vs_probe_spearman"].items())
            out.append(f"- `{task}`: Spearman ρ of relative depth with a linear probe's accuracy per layer: {rho}.")
    return out


TIE = 0.005  # scores this close to a task's best share it


def literature(rows: Sequence[tuple[str, list[float | None]]]) -> list[str]:
    """Where the grounding scores agree with the published conclusions and where not, in numbers: ReSi's "no
    measure dominates" (Klabunde et al. 2025) and Ding et al. 2021's finding that orthogonal Procrustes tracks
    function at least as well as CKA and better than PWCCA."""
    scores = dict(rows)
    done = [i for i, t in enumerate(TASKS) if any(r[1][i] is not None for r in rows)]
    if not done:
        return []
    best = {TASKS[i]: max(r[1][i] for r in rows if r[1][i] is not None) for i in done}
    winners = {TASKS[i]: [m for m, sc in rows if sc[i] is not None and sc[i] >= best[TASKS[i]] - TIE] for i in done}
    dominant = [m for m, _ in rows if all(m in ms for ms in winners.values())]
    per_task = "; ".join(f"{code(t)} {num(best[t])}: " + ", ".join(code(m) for m in ms[:4])
                         + (f" and {len(ms) - 4} more" if len(ms) > 4 else "") for t, ms in winners.items())
    out = ["", "Against the literature, from the scores above:", "",
           "- ReSi (Klabunde et al. 2025) finds that no measure dominates its tests. Here "
           + (f"{', '.join(code(m) for m in dominant)} {'is' if len(dominant) == 1 else 'are'} best (within "
              f"{TIE}) on all {len(done)} tasks: a disagreement." if dominant else
              f"no metric is best (within {TIE}) on all {len(done)} tasks: an agreement.")
           + f" Best per task: {per_task}."]
    trio = ("procrustes", "linear_cka", "pwcca")
    shared = [i for i in done if all(m in scores and scores[m][i] is not None for m in trio)]
    if shared:
        pro, cka, pw = (float(np.mean([scores[m][i] for i in shared])) for m in trio)
        ge = sum(1 for i in shared if scores["procrustes"][i] >= scores["linear_cka"][i] - TIE)
        gp = sum(1 for i in shared if scores["procrustes"][i] > scores["pwcca"][i] + TIE)
        verdict = "agrees" if pro >= cka - TIE and pro > pw + TIE else "does not agree"
        out.append(f"- Ding et al. 2021 find orthogonal Procrustes at least as good as CKA and better than PWCCA at "
                   f"tracking function. Here it {verdict}: over the {len(shared)} tasks all three scored, mean "
                   f"{num(pro)} for {code('procrustes')}, {num(cka)} for {code('linear_cka')} and {num(pw)} for "
                   f"{code('pwcca')}; Procrustes is at least linear CKA's score (within {TIE}) on {ge} of them and "
                   f"above PWCCA's on {gp}.")
    return out


def similarity_matrix(curve: Mapping[str, list], column: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models, similarity matrix, ground-truth matrix) of a pair task's curve, symmetrised, 1 / 0 on the diagonal."""
    models = list(dict.fromkeys([*curve["model_a"], *curve["model_b"]]))
    index = {m: k for k, m in enumerate(models)}
    sim, truth = np.eye(len(models)), np.zeros((len(models), len(models)))
    for a, b, s, t in zip(curve["model_a"], curve["model_b"], curve["similarity"], curve[column]):
        i, j = index[a], index[b]
        sim[i, j] = sim[j, i] = s if s is not None else np.nan
        truth[i, j] = truth[j, i] = float(t)
    if column == "same_level":
        np.fill_diagonal(truth, 1.0)
    return models, sim, truth


def draw_matrices(task: str, records: Sequence[Record], metrics: Sequence[str]) -> bytes:
    """The task's ground-truth matrix beside each metric's similarity matrix (seed 0), one panel each."""
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import png, style

    by = {r.metric: r for r in records if r.ok}
    chosen = [m for m in metrics if m in by]
    column = MATRIX_TASKS[task]
    panels = len(chosen) + 1
    with style("white"):
        fig = MplFigure(figsize=(2.4 * panels, 2.6), layout="constrained")
        axes = fig.subplots(1, panels, squeeze=False)
        for k, ax in enumerate(axes[0]):
            if k == 0:
                models, _, truth = similarity_matrix(_first_run(by[chosen[0]]).curve, column)
                image, title = (truth if column == "same_level" else -truth), "ground truth"
            else:
                _, image, _ = similarity_matrix(_first_run(by[chosen[k - 1]]).curve, column)
                title = chosen[k - 1]
            ax.imshow(image, cmap="viridis")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{task}: {len(models)} models", fontsize=9)
        return png(fig)


@page_section(order=45)
def grounding(view: PageView) -> Section | None:
    """The metrics on the grounding tasks alone, what the ground truth rests on, the ReSi-style matrices."""
    records = {t: view.records(t) for t in TASKS}
    rows = ranking(records, view.metrics)
    if not rows:
        return None
    lines = ["Similarity against the function of a population of networks (Klabunde et al. 2025, ReSi; Ding et al. "
             "2021): scores on the grounding tasks alone, best mean first.", ""]
    lines += table(["Metric", *(code(t) for t in TASKS), "Mean"], [":---", *["---:"] * (len(TASKS) + 1)],
                   [[code(metric), *(num(s) for s in scores),
                     num(float(np.mean([s if s is not None else 0.0 for s in scores])))] for metric, scores in rows])
    lines += literature(rows)
    lines += ["", "What the ground truth rests on, measured on the networks:", "", *facts(records)]
    figures = [Figure(f"grounding_{t}.png", lambda t=t: draw_matrices(t, records[t], view.metrics))
               for t in MATRIX_TASKS if records.get(t)]
    lines += [line for f in figures for line in ("", f"![{f.name}]({view.link(f.name)})")]
    return Section("Grounding", lines, figures)
