"""The page's section on `subset_translation` (Davari et al. 2023, Fig. 4a): RBF CKA's two median conventions.

RBF CKA's bandwidth is σ times a median of the pairwise distances; Kornblith et al. 2019's code takes the ordinary
median, Davari et al. 2023's Fig. 4 code the lower one. With two equal cubes the median sits on the boundary
between within- and between-cube distances, so the convention decides the curve: this section shows both where
the records have both.
"""

from __future__ import annotations

from simstress.core.metric import get_metric
from simstress.core.page import Figure, PageView, Section, page_section
from simstress.core.record import Record
from simstress.core.registry import natural_key

TASK, FIGURE = "subset_translation", "rbf_bandwidth_subset_translation.png"


def rbf_variant(metric_id: str) -> tuple[float, str] | None:
    """(sigma, median convention) of an installed rbf_cka id, None for any other id."""
    try:
        metric = get_metric(metric_id)
    except (LookupError, ValueError):
        return None
    return (float(metric.params["sigma"]), str(metric.params["median"])) if metric.spec.name == "rbf_cka" else None


def conventions(view: PageView) -> list[Record]:
    """The task's records of rbf_cka ids, when both median conventions are among them (else none)."""
    records = sorted((r for r in view.records(TASK) if rbf_variant(r.metric) is not None),
                     key=lambda r: natural_key(r.metric))
    return records if len({rbf_variant(r.metric)[1] for r in records}) > 1 else []


def conventions_png(view: PageView, records: list[Record]) -> bytes:
    """Similarity against c: colour = σ, solid = ordinary median, dashed = lower median."""
    import seaborn as sns
    from matplotlib.figure import Figure as MplFigure

    from simstress.core.plots import mean_curves, png, style

    data = mean_curves(records)
    variants = {m: rbf_variant(m) for m in set(data["metric"])}
    data = data.assign(sigma=data["metric"].map(lambda m: f"σ = {variants[m][0]:g}"),
                       median=data["metric"].map(lambda m: f"{variants[m][1]} median"))
    with style():
        fig = MplFigure(figsize=(7.0, 4.5))
        ax = fig.add_subplot()
        sns.lineplot(data, x="x", y="similarity", hue="sigma", style="median", style_order=["ordinary median",
                     "lower median"], errorbar="sd", markers=True, ax=ax)
        ax.set_xlabel(view.task(TASK).sweep_name)
        ax.set_ylabel("RBF CKA similarity")
        ax.set_title(f"{TASK}: the bandwidth convention decides the curve")
        ax.legend(bbox_to_anchor=(1.02, 1.0), loc="upper left", fontsize="small", frameon=False)
        return png(fig)


@page_section(order=10)
def rbf_bandwidth(view: PageView) -> Section | None:
    records = conventions(view)
    if not records:
        return None
    return Section("RBF bandwidth: ordinary or lower median", [
        f"RBF CKA's bandwidth is σ times a median of the pairwise distances. Kornblith et al. 2019's code takes the "
        f"ordinary median; Davari et al. 2023's Fig. 4 code takes the lower median. On `{TASK}` (two equal cubes) "
        f"the median sits exactly on the boundary between within-cube and between-cube distances, so the convention "
        f"alone decides the curve at small σ:", "",
        f"![RBF bandwidth conventions]({view.link(FIGURE)})"],
        [Figure(FIGURE, lambda: conventions_png(view, records))])
