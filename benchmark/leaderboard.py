"""Aggregation of the records into a ranking, and its rendering as `leaderboard.md` with its figures.

Scoring (stated on the page as well): a task score in [0, 1] is the task's own rule (1 = ideal behaviour); a
cell's score is its mean over seeds; a category score is the mean of the metric's task scores in that category;
overall is the mean of the category scores. An error cell counts as 0 (a metric that cannot handle a case pays
for it); a skipped cell (not applicable) is left out. The spread is the standard deviation over seeds of the
overall score computed seed by seed. Ranks compare the unrounded overall scores; only equal values share a rank.

Only a row that can be trusted is ranked: a metric with a current record on every task of the page — at the
installed metric and task versions, when the caller says what is installed, and on the page's seeds (the seed
list most records share) — whose conformance report passed at the version of its records, and that is still
installed. Every other row is listed apart with its reasons; a registered task without records is named on the
page (and fails `leaderboard --check`). The ranking's stability is shown beside it:
the ranks under equal task weights and with each category left out, with Kendall's τ against the headline.

This engine knows no task and no metric family by name: it renders what they all share, and the sections and
figures that tasks register (`simstress.core.page`) after the generic sweeps. The page is a pure function of the
records, the cached conformance reports and the artifact cards the records name: no clock, no environment,
sorted everything, fixed number formats.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from scipy import stats

from simstress.core.constants import CATEGORIES, DATA
from simstress.core.page import (
    CardLoader,
    Figure,
    PageTask,
    PageView,
    Section,
    code,
    format_duration,
    md,
    num,
    sections,
    sweep_maker,
    table,
    url,
)
from simstress.core.record import Record, RecordError
from simstress.core.registry import natural_key
from simstress.core.task import REGISTRY

SHORT = {"robustness": "rob.", "sensitivity": "sens.", "specificity": "spec."}
SATURATED = 0.99  # a task on which the median ranked metric scores at least this separates few metrics
SPREAD = 0.02  # ... and so does one on which the ranked metrics' interquartile range is below this
WEIGHT_DRAWS, WEIGHT_SEED = 2000, 0  # random task weightings (Dirichlet(1, ..., 1)) for the rank distribution
DIGITS = 3
HEATMAP = "scores_heatmap.png"


def sweep_figure(task: str) -> str:
    return f"sweep_{task}.png"


@dataclass(frozen=True)
class Cell:
    """One (metric, task) record as the page sees it."""

    metric: str
    task: str
    version: int                        # the task version of the record
    metric_version: int
    status: str
    score: float | None                 # mean over seeds, None unless ok
    seed_scores: dict[int, float]
    runtimes: tuple[float, ...]         # seconds per finished seed
    message: str | None                 # error "Type: message" or skip reason
    seeds: tuple[int, ...] = ()         # the record's seed list
    # (diagnostic, its smallest value over seeds and references, the metric's bar) when below the bar
    degenerate: tuple[str, float, float] | None = None

    @property
    def counted(self) -> float | None:
        """The value that enters the means: the score, 0 for an error, None (left out) when skipped."""
        return {"ok": self.score, "error": 0.0}.get(self.status)

    def at_seed(self, seed: int) -> float | None:
        return {"ok": self.seed_scores.get(seed), "error": 0.0}.get(self.status)


class Apart(StrEnum):
    """Why a row is not ranked."""

    INCOMPLETE = "incomplete"
    STALE = "stale"
    SEEDS = "other seeds"
    NOT_INSTALLED = "not installed"
    NOT_CHECKED = "not checked"
    STALE_CHECK = "stale check"
    NONCONFORMING = "does not conform"
    NOTHING_APPLIES = "nothing applies"


@dataclass(frozen=True)
class Reason:
    kind: Apart
    text: str


# The reasons a rerun of `simstress run` (or `simstress prune`) fixes: `leaderboard --check` fails on them.
FIXABLE = frozenset({Apart.INCOMPLETE, Apart.STALE, Apart.SEEDS, Apart.NOT_INSTALLED})


@dataclass(frozen=True)
class Installed:
    """What is installed: each metric id's version (None: not installed), the registered tasks' versions, and
    which metric ids are calibration rows, by role (`MetricSpec.calibration`; "" for a metric to rank), and each
    metric's bars for its diagnostics (`MetricSpec.degenerate_below`)."""

    metric_version: Callable[[str], int | None]
    tasks: Mapping[str, int]
    calibration: Callable[[str], str] = lambda metric: ""
    degenerate_below: Callable[[str], Mapping[str, float]] = lambda metric: {}


@dataclass(frozen=True)
class Row:
    metric: str
    categories: dict[str, float | None]
    overall: float | None
    spread: float | None
    rank: int | None                    # None for a row listed apart
    apart: tuple[Reason, ...] = ()      # why the row is not ranked


@dataclass(frozen=True)
class RankSpread:
    """A ranked metric's rank under random task weightings: P(first), the median and a 90 % interval."""

    first: float
    median: float
    low: int
    high: int


@dataclass(frozen=True)
class Stability:
    """Ranks of the ranked rows under alternative weightings, and Kendall's τ of each against the headline; the
    rank distribution under random task weightings."""

    ranks: dict[str, dict[str, int]]    # weighting -> metric -> rank
    tau: dict[str, float | None]        # weighting -> τ against the headline (None with fewer than two rows)
    spread: dict[str, RankSpread] = field(default_factory=dict)


@dataclass(frozen=True)
class Board:
    """Everything the page and the figures show, in display order."""

    scale: str
    tasks: list[PageTask]               # by category, then name
    rows: list[Row]                     # ranked rows by rank, then the rows listed apart
    cells: dict[tuple[str, str], Cell]  # (metric, task)
    records: list[Record]
    conformance: dict[str, dict[str, Any] | None]
    saturated: frozenset[str]           # task names
    stability: Stability
    seeds: tuple[int, ...] = ()         # the seed list the page compares on
    unrecorded: tuple[str, ...] = ()    # registered tasks without a record
    calibration: tuple[Row, ...] = ()   # rows of trivial behaviour, never ranked
    roles: Mapping[str, str] = field(default_factory=dict)  # calibration metric -> its role
    giveaways: frozenset[str] = frozenset()  # tasks on which the constant metric beats the median ranked one
    load_card: CardLoader | None = None  # the cards of the artifacts the records name, for the tasks' sections
    root: Path | None = None            # the results folder (artifact files a section's figure reads)

    @property
    def metrics(self) -> list[str]:
        return [r.metric for r in self.rows]

    @property
    def shown(self) -> list[str]:
        """The metrics of the score tables and the heatmap: the rows, then the calibration rows."""
        return self.metrics + [r.metric for r in self.calibration]

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if r.rank is not None]

    @property
    def apart(self) -> list[Row]:
        return [r for r in self.rows if r.rank is None]

    def view(self, figures: str) -> PageView:
        """What the tasks' sections read; `figures` is the figures folder relative to the page."""
        return PageView(self.scale, self.metrics, self.tasks, self.records, figures, self.load_card, self.root)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _iqr(values: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def _overall(values: dict[str, float | None], category: dict[str, str]) -> tuple[dict[str, float | None], float | None]:
    """Category means of the task values given (None = left out), and their mean."""
    cats = {c: _mean([v for t, v in values.items() if v is not None and category[t] == c]) for c in CATEGORIES}
    return cats, _mean([v for v in cats.values() if v is not None])


def _degenerate(rec: Record, bars: Mapping[str, float]) -> tuple[str, float, float] | None:
    """The first diagnostic whose smallest recorded value falls below the metric's bar for it, or None."""
    for name, bar in bars.items():
        values = [r.details["diagnostics"][name][0] for r in rec.runs if name in r.details.get("diagnostics", {})]
        if values and min(values) < bar:
            return name, min(values), bar
    return None


def _cell(rec: Record, bars: Mapping[str, float]) -> Cell:
    message = rec.error.line if rec.error is not None else rec.reason if rec.status == "skipped" else None
    seed_scores = {r.seed: r.score for r in rec.runs} if rec.ok else {}
    return Cell(rec.metric, rec.task, rec.task_version, rec.metric_version, rec.status, rec.score, seed_scores,
                tuple(r.runtime_s for r in rec.runs), message, rec.seeds, _degenerate(rec, bars))


def _tasks(records: list[Record], versions: Mapping[str, int]) -> list[PageTask]:
    """One task per name in the records, at its installed version (`versions`), or else at its newest recorded one;
    described by a record at that version when there is one."""
    chosen: dict[str, Record] = {}
    for rec in records:
        cur = chosen.get(rec.task)
        target = versions.get(rec.task)
        if cur is None or (rec.task_version == target) > (cur.task_version == target) or (
                (rec.task_version == target) == (cur.task_version == target) and rec.task_version > cur.task_version):
            chosen[rec.task] = rec
    found = []
    for name, rec in chosen.items():
        info = rec.task_info
        if info.category not in CATEGORIES:
            raise RecordError(f"task {name!r} has category {info.category!r}; expected one of {list(CATEGORIES)}")
        found.append(PageTask(name, info.category, versions.get(name, rec.task_version), info.summary,
                              info.sweep_name, info.log_x, info.data))
    order = list(CATEGORIES)
    return sorted(found, key=lambda t: (order.index(t.category), natural_key(t.name)))


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4) by descending score; only equal values tie."""
    order = sorted(scores, key=lambda m: (-scores[m], natural_key(m)))
    ranks: dict[str, int] = {}
    for i, m in enumerate(order):
        ranks[m] = ranks[order[i - 1]] if i and scores[order[i - 1]] == scores[m] else i + 1
    return ranks


def _stability(headline: dict[str, float], values: dict[str, dict[str, float | None]],
               category: dict[str, str], data: dict[str, str]) -> Stability:
    """Ranks under equal task weights, with each category left out, and on each kind of data alone; Kendall's τ of
    each against the headline; the rank distribution under random task weightings."""
    alternatives = {"equal tasks": {m: _mean([v for v in vals.values() if v is not None]) for m, vals in
                                    values.items()}}
    for left_out in CATEGORIES:
        scores = {m: _mean([c for cat, c in _overall(vals, category)[0].items() if cat != left_out and c is not None])
                  for m, vals in values.items()}
        alternatives[f"without {left_out}"] = scores
    for kind in (k for k in DATA if k in data.values()):
        alternatives[f"{kind} only"] = {m: _overall({t: v for t, v in vals.items() if data[t] == kind}, category)[1]
                                        for m, vals in values.items()}
    ranks = {"equal categories": _ranks(headline)}
    tau: dict[str, float | None] = {}
    for name, scores in alternatives.items():
        kept = {m: s for m, s in scores.items() if s is not None}
        ranks[name] = _ranks(kept)
        common = sorted(set(kept) & set(headline), key=natural_key)
        t = stats.kendalltau([headline[m] for m in common], [kept[m] for m in common]).statistic \
            if len(common) >= 2 else None
        tau[name] = None if t is None or t != t else float(t)
    return Stability(ranks, tau, _rank_spread(values))


def _rank_spread(values: dict[str, dict[str, float | None]]) -> dict[str, RankSpread]:
    """Each metric's competition rank under WEIGHT_DRAWS seeded Dirichlet(1, ..., 1) weightings of the tasks (a
    task that does not apply to a metric drops out of its weighted mean, as from the headline)."""
    metrics = sorted(values, key=natural_key)
    tasks = sorted({t for vals in values.values() for t in vals}, key=natural_key)
    if not metrics or not tasks:
        return {}
    V = np.array([[np.nan if values[m].get(t) is None else values[m][t] for t in tasks] for m in metrics])
    W = np.random.default_rng(WEIGHT_SEED).dirichlet(np.ones(len(tasks)), WEIGHT_DRAWS).T  # tasks × draws
    with np.errstate(invalid="ignore", divide="ignore"):
        S = (np.nan_to_num(V) @ W) / ((~np.isnan(V)).astype(float) @ W)  # metrics × draws
    R = 1 + (S[None, :, :] > S[:, None, :]).sum(axis=1)  # 1 + how many score strictly higher
    low, high = np.quantile(R, [0.05, 0.95], axis=1, method="inverted_cdf")
    return {m: RankSpread(float((R[i] == 1).mean()), float(np.median(R[i])), int(low[i]), int(high[i]))
            for i, m in enumerate(metrics)}


def _reasons(metric: str, mcells: list[Cell], tasks: list[PageTask], conf: dict[str, Any] | None,
             installed: Installed | None, seeds: tuple[int, ...]) -> list[Reason]:
    """Why a metric's row cannot be ranked (empty when it can)."""
    out = []
    current = {(c.task, c.version) for c in mcells}
    missing = [t.name for t in tasks if (t.name, t.version) not in current]
    if missing:
        out.append(Reason(Apart.INCOMPLETE, f"incomplete: no current record on {', '.join(missing)}"))
    version = installed.metric_version(metric) if installed is not None else None
    if installed is not None and version is None:
        out.append(Reason(Apart.NOT_INSTALLED, "not installed: no registered metric has this id (`simstress prune` "
                                               "removes its records)"))
    elif version is not None and {c.metric_version for c in mcells} != {version}:
        old = sorted({c.metric_version for c in mcells} - {version})
        out.append(Reason(Apart.STALE, f"stale: records at metric version {', '.join(map(str, old))}, installed "
                                       f"{version} (`simstress run --metrics '{metric}'` recomputes them)"))
    other = sorted({c.task for c in mcells if c.seeds != seeds})
    if other:
        out.append(Reason(Apart.SEEDS, f"other seeds: the records on {', '.join(other)} do not hold the page's "
                                       f"seeds {', '.join(map(str, seeds))}"))
    if conf is None:
        out.append(Reason(Apart.NOT_CHECKED, "not checked: no conformance report (`simstress run` makes one)"))
    elif {conf.get("metric_version")} != {c.metric_version for c in mcells}:
        out.append(Reason(Apart.STALE_CHECK, f"not checked at the version of its records (report: version "
                                             f"{conf.get('metric_version')}; `simstress run` refreshes it)"))
    elif not conf.get("passed"):
        failed = [c[0] for c in conf["checks"] if not c[1]]
        out.append(Reason(Apart.NONCONFORMING, "does not conform: fails " + ", ".join(failed)))
    if all(c.counted is None for c in mcells):
        out.append(Reason(Apart.NOTHING_APPLIES, "no task applies to it"))
    return out


def build_board(scale: str, records: list[Record], conformance: dict[str, dict[str, Any] | None],
                installed: Installed | None = None, load_card: CardLoader | None = None,
                root: Path | None = None) -> Board:
    """Aggregate the records of one scale: cells, category and overall scores, spread, ranks and stability.

    `installed` says which metric ids and tasks are installed, at which versions; without it nothing is marked
    uninstalled or stale. `load_card(kind, key)` reads the card of an artifact the records name (None when it is
    missing), for the tasks' sections; `root` is the results folder their figures may read artifact files from.
    """
    if not records:
        raise RecordError(f"no records for scale {scale!r}; run `simstress run --scale {scale}` first")
    task_list = _tasks(records, installed.tasks if installed is not None else {})
    recorded = {r.task for r in records}
    unrecorded = tuple(sorted((t for t in (installed.tasks if installed is not None else {}) if t not in recorded),
                              key=natural_key))
    seed_lists = Counter(r.seeds for r in records)
    page_seeds = max(seed_lists, key=lambda s: (seed_lists[s], s))
    category = {t.name: t.category for t in task_list}
    cells = {(r.metric, r.task): _cell(r, installed.degenerate_below(r.metric) if installed is not None else {})
             for r in records}
    by_metric: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells.values():
        by_metric[cell.metric].append(cell)

    roles = {m: role for m in by_metric if installed is not None and (role := installed.calibration(m))}
    computed = {}
    for metric, mcells in by_metric.items():
        cats, overall = _overall({c.task: c.counted for c in mcells}, category)
        ok_seeds = [set(c.seed_scores) for c in mcells if c.status == "ok"]
        seeds = sorted(set.intersection(*ok_seeds)) if ok_seeds else []
        per_seed = [_overall({c.task: c.at_seed(s) for c in mcells}, category)[1] for s in seeds]
        spread = statistics.stdev(per_seed) if len(per_seed) >= 2 else None
        computed[metric] = (cats, overall, spread,
                            _reasons(metric, mcells, task_list, conformance.get(metric), installed, page_seeds))

    calibration = tuple(Row(m, *computed.pop(m)[:3], None) for m in sorted(roles, key=lambda m: (roles[m], m)))
    headline = {m: v[1] for m, v in computed.items() if not v[3]}
    ranks = _ranks(headline)
    rows = [Row(m, computed[m][0], computed[m][1], computed[m][2], ranks[m]) for m in sorted(ranks, key=ranks.get)]
    rows += [Row(m, v[0], v[1], v[2], None, tuple(v[3])) for m, v in sorted(computed.items(),
                                                                              key=lambda kv: natural_key(kv[0]))
             if v[3]]
    ranked_cells = {m: {c.task: c.counted for c in by_metric[m]} for m in headline}
    saturated = frozenset(
        t.name for t in task_list
        if (vals := [v[t.name] for v in ranked_cells.values() if v.get(t.name) is not None])
        and (statistics.median(vals) >= SATURATED or len(vals) >= 4 and _iqr(vals) < SPREAD)
    )
    constants = [m for m, role in roles.items() if role == "constant"]
    giveaways = frozenset(
        t.name for t in task_list
        if (vals := [v[t.name] for v in ranked_cells.values() if v.get(t.name) is not None])
        and any((c := cells.get((m, t.name))) is not None and c.counted is not None
                and c.counted > statistics.median(vals) for m in constants)
    )
    return Board(scale, task_list, rows, cells, records, {m: conformance.get(m) for m in by_metric}, saturated,
                 _stability(headline, ranked_cells, category, {t.name: t.data for t in task_list}), page_seeds,
                 unrecorded, calibration, roles, giveaways, load_card, root)


# ---------------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Page:
    """The markdown, every figure it links to, and the tasks' sections it holds."""

    text: str
    figures: tuple[Figure, ...]
    sections: tuple[Section, ...] = ()


@dataclass(frozen=True)
class Sweep:
    """A task's entry under "Sweeps": text above its figure."""

    lines: tuple[str, ...]
    figure: Figure


def _sweeps(board: Board, view: PageView) -> dict[str, Sweep]:
    """Task name -> its sweep entry: the task's own panel (`simstress.core.page.sweep_panel`), or the generic plot
    of similarity against the sweep variable unless the task turns it off (`Task.sweep_plot`)."""
    out = {}
    for t in board.tasks:
        if not (t.sweep_name and view.records(t.name)):
            continue
        maker = sweep_maker(t.name)
        if maker is not None:
            panel = maker(view)
            if panel is not None:
                out[t.name] = Sweep(tuple(panel.lines), panel.figure)
        elif t.name not in REGISTRY.names() or REGISTRY.get(t.name).sweep_plot:
            out[t.name] = Sweep((), Figure(sweep_figure(t.name), _generic_sweep(view, t)))
    return out


def _generic_sweep(view: PageView, task: PageTask) -> Callable[[], bytes]:
    def draw() -> bytes:
        from .figures import sweep_png

        return sweep_png(view, task)

    return draw


def _heatmap(board: Board) -> Callable[[], bytes]:
    def draw() -> bytes:
        from .figures import heatmap_png

        return heatmap_png(board)

    return draw


def _ranking(board: Board) -> list[str]:
    header = ["Rank", "Metric", *[c.capitalize() for c in CATEGORIES], "Overall", "± seeds"]
    rows = [[str(r.rank), code(r.metric), *[num(r.categories[c]) for c in CATEGORIES], f"**{num(r.overall)}**",
             num(r.spread)] for r in board.ranked]
    present = {t.category for t in board.tasks}
    lines = table(header, ["---:", ":---", *["---:"] * len(CATEGORIES), "---:", "---:"], rows)
    if board.apart:
        lines += ["", "**Not ranked** — a row is ranked only when it is complete, conforms and is installed:", ""]
        lines += table(["Metric", "Overall (as recorded)", "Why not ranked"], [":---", "---:", ":---"],
                       [[code(r.metric), num(r.overall), md("; ".join(w.text for w in r.apart))] for r in board.apart])
    if board.calibration:
        lines += ["", "**Calibration rows** — what trivial behaviour earns on the same tasks (scored like every "
                  "metric, never ranked): a metric that scores no better than these has shown nothing:", ""]
        lines += table(["Role", "Metric", *[c.capitalize() for c in CATEGORIES], "Overall"],
                       [":---", ":---", *["---:"] * len(CATEGORIES), "---:"],
                       [[md(board.roles[r.metric]), code(r.metric), *[num(r.categories[c]) for c in CATEGORIES],
                         num(r.overall)] for r in board.calibration])
    lines += ["", "How to read it:", ""]
    for cat, text in CATEGORIES.items():
        n = sum(t.category == cat for t in board.tasks)
        lines.append(f"- **{cat.capitalize()}** ({n} task{'s' if n != 1 else ''}): {text}.")
    lines += [
        "- Each task turns a metric's similarities on cases with a known answer into a score in [0, 1] "
        "(1 = ideal behaviour; the rule is in the task's docstring). A task score is the mean over seeds; a "
        "category score is the mean of its tasks; **Overall** is the mean of the category scores"
        + ("" if present == set(CATEGORIES) else " present (a category without tasks is left out)") + ".",
        "- **± seeds** is the standard deviation over seeds of the overall score computed seed by seed.",
        "- ✗ marks a cell where the metric raised an error: it counts as 0. – marks a cell that does not apply "
        "(e.g. the metric needs labels the task lacks): it is left out of the means. Only equal unrounded "
        "scores share a rank.",
    ]
    if board.saturated:
        names = ", ".join(code(t) for t in sorted(board.saturated, key=natural_key))
        lines.append(f"- ⚠ Saturated (the median ranked metric scores ≥ {SATURATED}, or the ranked metrics' "
                     f"interquartile range is below {SPREAD}: it separates few metrics): {names}. See the rank "
                     f"stability below for what the weighting does to the order.")
    if board.giveaways:
        names = ", ".join(code(t) for t in sorted(board.giveaways, key=natural_key))
        lines.append(f"- ⚠ Gives a constant away (the constant calibration metric scores above the median ranked "
                     f"metric): {names}.")
    return lines



def _stability_table(board: Board) -> list[str]:
    st = board.stability
    names = list(st.ranks)
    rows = [[code(r.metric), *[str(st.ranks[n].get(r.metric, "–")) for n in names]] for r in board.ranked]
    lines = ["The headline ranking weighs each category equally. The same ranked metrics under other weightings, "
             "and on each kind of data alone (synthetic tasks; networks simstress trained; pretrained models), "
             "rank 1 = best:", ""]
    lines += table(["Metric", *names], [":---", *["---:"] * len(names)], rows)
    taus = "; ".join(f"{n} {'–' if t is None else f'{t:.2f}'}" for n, t in st.tau.items())
    lines += ["", f"Kendall's τ against the headline order: {taus} (1 = the same order)."]
    if st.spread:
        lines += ["", f"Under {WEIGHT_DRAWS:,} random weightings of the tasks (Dirichlet(1, …, 1), seed "
                  f"{WEIGHT_SEED}), how often each ranked metric comes first, its median rank and the interval "
                  f"that holds 90 % of its ranks:", ""]
        lines += table(["Metric", "Headline rank", "P(first)", "Median rank", "90 % interval"],
                       [":---", "---:", "---:", "---:", "---:"],
                       [[code(r.metric), str(r.rank), f"{(d := st.spread[r.metric]).first:.3f}", f"{d.median:g}",
                         f"{d.low}–{d.high}"] for r in board.ranked if r.metric in st.spread])
    return lines


def _per_task(board: Board, figures: str, links: dict[str, str], footnotes: list[str]) -> list[str]:
    header = ["Metric"] + [
        (f"[{md(t.name)}]({url(figures, links[t.name])})" if t.name in links else md(t.name))
        + f" ({SHORT[t.category]})"
        for t in board.tasks
    ]
    rows = []
    for metric in board.shown:
        row = [code(metric) + (f" ({md(board.roles[metric])})" if metric in board.roles else "")]
        for t in board.tasks:
            cell = board.cells.get((metric, t.name))
            if cell is None:
                row.append("")
            elif cell.status == "ok":
                vals = list(cell.seed_scores.values())
                row.append(num(cell.score) + (f" ±{statistics.stdev(vals):.{DIGITS}f}" if len(vals) >= 2 else ""))
                if cell.degenerate is not None:
                    name, value, bar = cell.degenerate
                    footnotes.append(f"{code(metric)} × {code(t.name)}: degenerate construction — its {code(name)} "
                                     f"on the task's data is {value:.1e} (< {bar:g}, the metric's own bar), so this "
                                     f"score says little about the data")
                    row[-1] += f" ⚠[^{len(footnotes)}]"
            elif cell.status == "error":
                footnotes.append(f"{code(metric)} × {code(t.name)}: {md(cell.message or '')}")
                row.append(f"✗[^{len(footnotes)}]")
            else:
                row.append("–")
        rows.append(row)
    lines = [f"![metric × task scores]({url(figures, HEATMAP)})", ""]
    lines += table(header, [":---"] + ["---:"] * len(board.tasks), rows)
    lines += ["", "± is the standard deviation over seeds; an empty cell has no record; ⚠ marks a score from a "
              "degenerate construction: a diagnostic below the bar the metric declares (`MetricSpec.degenerate_below`; "
              "for RBF CKA, the mean off-diagonal kernel value: a kernel nearly the identity makes the metric read ≈ 1 "
              "on any pair of representations)."]
    skipped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for metric in board.metrics:
        for t in board.tasks:
            cell = board.cells.get((metric, t.name))
            if cell is not None and cell.status == "skipped":
                skipped[(metric, cell.message or "")].append(t.name)
    if skipped:
        lines += ["", "Not applicable (–):", ""]
        lines += [f"- {code(m)} on {', '.join(code(t) for t in ts)}: {md(reason)}" for (m, reason), ts in
                  skipped.items()]
    return lines


def _tasks_table(board: Board, figures: str, links: dict[str, str]) -> list[str]:
    rows = []
    for t in board.tasks:
        sweep = md(t.sweep_name) or "–"
        if t.name in links:
            sweep = f"[{sweep}]({url(figures, links[t.name])})"
        note = f" ⚠ saturated (median ≥ {SATURATED} or IQR < {SPREAD})" if t.name in board.saturated else ""
        note += " ⚠ a constant beats the median ranked metric" if t.name in board.giveaways else ""
        rows.append([code(t.name), t.category, str(t.version), sweep, md(t.summary) + note])
    return table(["Task", "Category", "Version", "Sweep", "What it tests"], [":---"] * 5, rows)



def _invariances(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        conf = board.conformance.get(metric)
        if conf is None:
            rows.append([code(metric), "not checked", "", "", "run `simstress run` to check"])
            continue
        declared, observed = set(conf["declared"]), set(conf["observed"])
        notes = []
        if declared - observed:
            notes.append("⚠ declared, not observed: " + ", ".join(sorted(declared - observed)))
        if observed - declared:
            notes.append("holds, not declared: " + ", ".join(sorted(observed - declared)))
        versions = {r.metric_version for r in board.records if r.metric == metric}
        if versions != {conf["metric_version"]}:
            notes.append(f"⚠ checked at version {conf['metric_version']}, records at {sorted(versions)}")
        failed = [c[0] for c in conf["checks"] if not c[1]]
        status = "pass" if conf["passed"] else "**fail**: " + md(", ".join(failed))
        rows.append([code(metric), status, md(", ".join(sorted(declared)) or "none"),
                     md(", ".join(sorted(observed)) or "none"), md("; ".join(notes) or "match")])
    lines = table(["Metric", "Conformance", "Declared", "Observed", "Mismatch"], [":---"] * 5, rows)
    return lines + ["", "Observed = the invariance holds to 1e-6 on the conformance data (`simstress check ID` "
                    "shows every check)."]



def _runtime(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        times = [t for (m, _), c in board.cells.items() if m == metric for t in c.runtimes]
        rows.append([code(metric), format_duration(statistics.median(times)) if times else "–", str(len(times))])
    devices = sorted({f"{r.device} ({r.device_name})" for r in board.records})
    return table(["Metric", "Median cell runtime", "Timed cells"], [":---", "---:", "---:"], rows) + [
        "", "A timed cell is one seed of one task: every case scored, plus building the task's data when the "
        "metric came first on it. Device: "
        + "; ".join(devices) + "."]



def _provenance(board: Board) -> list[str]:
    seeds = sorted({r.seeds for r in board.records})
    packages: dict[str, set[str]] = defaultdict(set)
    for r in board.records:
        for name, ver in r.packages.items():
            packages[name].add(ver)
    lines = [
        f"- Scale: {code(board.scale)}; seeds: " + "; ".join(", ".join(map(str, s)) for s in seeds)
        + f"; {len(board.records)} records ({len(board.metrics)} metrics × {len(board.tasks)} tasks).",
        "- Packages: " + ", ".join(f"{n} {' / '.join(sorted(v))}" for n, v in sorted(packages.items())) + ".",
    ]
    for kind, key in (("metric", "metric_version"), ("task", "task_version")):
        versions: dict[str, set[int]] = defaultdict(set)
        for r in board.records:
            versions[getattr(r, kind)].add(getattr(r, key))
        lines += [f"- ⚠ {kind} {code(n)} has records at versions {sorted(v)}: rerun "
                  f"{code(f'simstress run --{kind}s {n!r}')}."
                  for n, v in sorted(versions.items()) if len(v) > 1]
    missing = [(m, t.name) for m in board.metrics for t in board.tasks if (m, t.name) not in board.cells]
    if missing:
        shown = ", ".join(f"{code(m)} × {code(t)}" for m, t in missing[:5]) + (", ..." if len(missing) > 5 else "")
        lines.append(f"- ⚠ {len(missing)} metric × task cells have no record ({shown}); those metrics are not "
                     f"ranked. Rerun `simstress run --scale {md(board.scale)}`.")
    if len(seeds) > 1:
        lines.append(f"- ⚠ records use different seed lists; the page compares on "
                     f"{', '.join(map(str, board.seeds))}: rerun with one `--seeds` to compare like with like.")
    if board.unrecorded:
        lines.append(f"- ⚠ registered task(s) without a record, left out of the ranking: "
                     f"{', '.join(code(t) for t in board.unrecorded)}; run "
                     f"{code(f'simstress run --scale {board.scale} --tasks ' + ','.join(board.unrecorded))}.")
    return lines


def render(board: Board, figures: str) -> Page:
    """The markdown page and its figures; `figures` is the figures folder relative to the page (POSIX separators)."""
    view = board.view(figures)
    sweeps = _sweeps(board, view)
    links = {name: s.figure.name for name, s in sweeps.items()}
    footnotes: list[str] = []
    per_task = _per_task(board, figures, links, footnotes)
    lines = [
        "# simstress leaderboard",
        "",
        f"<!-- Generated by `simstress leaderboard` from the `{board.scale}` records; do not edit by hand. -->",
        "",
        "Which representation-similarity metric can you trust? Each metric is scored on stress tasks with a known "
        "answer (Davari et al. 2023, *Reliability of CKA as a Similarity Measure in Deep Learning*).",
        "",
        "## Ranking",
        "",
        *_ranking(board),
        "",
        "## Rank stability",
        "",
        *_stability_table(board),
        "",
        "## Scores per task",
        "",
        *per_task,
        "",
        "## Tasks",
        "",
        *_tasks_table(board, figures, links),
        "",
        "## Declared vs observed invariances",
        "",
        *_invariances(board),
        "",
        "## Runtime",
        "",
        *_runtime(board),
        "",
    ]
    if sweeps:
        lines += ["## Sweeps", "", "Similarity against each task's sweep variable, one line per metric (mean over "
                  "seeds, band ± one standard deviation).", ""]
        for t in board.tasks:
            if t.name in sweeps:
                lines += [f"### {md(t.name)}", "", *sweeps[t.name].lines,
                          f"![{md(t.name)}]({url(figures, links[t.name])})", ""]
    extra = sections(view)
    for title in dict.fromkeys(s.title for s in extra):
        lines += [f"## {md(title)}", ""]
        for s in (s for s in extra if s.title == title):
            lines += [*s.lines, ""]
    lines += ["## Built from", "", *_provenance(board), ""]
    if footnotes:
        lines += [f"[^{i}]: {text}" for i, text in enumerate(footnotes, 1)] + [""]
    figs = [Figure(HEATMAP, _heatmap(board)), *(s.figure for s in sweeps.values()),
            *(f for s in extra for f in s.figures)]
    names = [f.name for f in figs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"two figures of the page share the file names {duplicated}; a section must name its "
                         f"figures uniquely")
    return Page("\n".join(lines), tuple(figs), tuple(extra))
