"""Aggregation of the records into a ranking, and its rendering as `leaderboard.md`.

Scoring (stated on the page as well): a task score in [0, 1] is the task's own rule (1 = ideal behaviour); a
cell's score is its mean over seeds; a category score is the mean of the metric's task scores in that category;
overall is the mean of the category scores. An error cell counts as 0 (a metric that cannot handle a case pays
for it); a skipped cell (not applicable) is left out. The spread is the standard deviation over seeds of the
overall score computed seed by seed. Ranks compare overall scores rounded as printed, so ties share a rank.

The page is a pure function of the records and the cached conformance reports: no clock, no environment, sorted
everything, fixed number formats.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from simstress.core.registry import natural_key
from simstress.core.task import CATEGORIES

from .records import RecordError

SHORT = {"robustness": "rob.", "sensitivity": "sens.", "specificity": "spec."}
DIGITS = 3
HEATMAP = "scores_heatmap.png"


def sweep_figure(task: str) -> str:
    return f"sweep_{task}.png"


@dataclass(frozen=True)
class Cell:
    """One (metric, task) record as the page sees it."""

    metric: str
    task: str
    status: str
    score: float | None                 # mean over seeds, None unless ok
    seed_scores: dict[int, float]
    runtimes: tuple[float, ...]         # seconds per finished seed
    message: str | None                 # error "Type: message" or skip reason

    @property
    def counted(self) -> float | None:
        """The value that enters the means: the score, 0 for an error, None (left out) when skipped."""
        return {"ok": self.score, "error": 0.0}.get(self.status)

    def at_seed(self, seed: int) -> float | None:
        return {"ok": self.seed_scores.get(seed), "error": 0.0}.get(self.status)


@dataclass(frozen=True)
class Task:
    name: str
    category: str
    version: int
    summary: str
    sweep_name: str
    log_x: bool


@dataclass(frozen=True)
class Row:
    metric: str
    categories: dict[str, float | None]
    overall: float | None
    spread: float | None
    rank: int | None


@dataclass(frozen=True)
class Board:
    """Everything the page and the figures show, in display order."""

    scale: str
    tasks: list[Task]                   # by category, then name
    rows: list[Row]                     # by rank, then metric id
    cells: dict[tuple[str, str], Cell]  # (metric, task)
    records: list[dict[str, Any]]
    conformance: dict[str, dict[str, Any] | None]

    @property
    def metrics(self) -> list[str]:
        return [r.metric for r in self.rows]

    def sweep_tasks(self) -> list[Task]:
        """Tasks with a sweep variable and at least one recorded curve: each gets a figure."""
        with_curves = {(r["task"], r["task_version"]) for r in self.records
                       if r["status"] == "ok" and any(run["curve"] for run in r["runs"])}
        return [t for t in self.tasks if t.sweep_name and (t.name, t.version) in with_curves]


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.{DIGITS}f}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _overall(values: dict[str, float | None], category: dict[str, str]) -> tuple[dict[str, float | None], float | None]:
    """Category means of the task values given (None = left out), and their mean."""
    cats = {c: _mean([v for t, v in values.items() if v is not None and category[t] == c]) for c in CATEGORIES}
    return cats, _mean([v for v in cats.values() if v is not None])


def _cell(rec: dict[str, Any]) -> Cell:
    message = None
    if rec["status"] == "error":
        first = (rec["error"]["message"] or "").splitlines()
        message = f"{rec['error']['type']}: {first[0] if first else ''}"
    elif rec["status"] == "skipped":
        message = rec["reason"]
    seed_scores = {r["seed"]: r["score"] for r in rec["runs"]} if rec["status"] == "ok" else {}
    return Cell(rec["metric"], rec["task"], rec["status"], rec["score"], seed_scores,
                tuple(r["runtime_s"] for r in rec["runs"]), message)


def _tasks(records: list[dict[str, Any]]) -> list[Task]:
    """One Task per name, from its records at the newest task version."""
    newest: dict[str, dict[str, Any]] = {}
    for rec in records:
        cur = newest.get(rec["task"])
        if cur is None or rec["task_version"] > cur["task_version"]:
            newest[rec["task"]] = rec
    found = []
    for name, rec in newest.items():
        info = rec["task_info"]
        if info["category"] not in CATEGORIES:
            raise RecordError(f"task {name!r} has category {info['category']!r}; expected one of {list(CATEGORIES)}")
        found.append(Task(name, info["category"], rec["task_version"], info["summary"], info["sweep_name"],
                          info["log_x"]))
    order = list(CATEGORIES)
    return sorted(found, key=lambda t: (order.index(t.category), natural_key(t.name)))


def build_board(scale: str, records: list[dict[str, Any]], conformance: dict[str, dict[str, Any] | None]) -> Board:
    """Aggregate the records of one scale: cells, category and overall scores, spread and ranks."""
    if not records:
        raise RecordError(f"no records for scale {scale!r}; run `simstress run --scale {scale}` first")
    task_list = _tasks(records)
    category = {t.name: t.category for t in task_list}
    cells = {(r["metric"], r["task"]): _cell(r) for r in records}
    by_metric: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells.values():
        by_metric[cell.metric].append(cell)

    unranked = []
    for metric, mcells in by_metric.items():
        cats, overall = _overall({c.task: c.counted for c in mcells}, category)
        ok_seeds = [set(c.seed_scores) for c in mcells if c.status == "ok"]
        seeds = sorted(set.intersection(*ok_seeds)) if ok_seeds else []
        per_seed = [_overall({c.task: c.at_seed(s) for c in mcells}, category)[1] for s in seeds]
        spread = statistics.stdev(per_seed) if len(per_seed) >= 2 else None
        unranked.append((metric, cats, overall, spread))

    def key(item: tuple) -> tuple:  # ties are judged on the printed value
        metric, _, overall, _ = item
        return (overall is None, -float(_num(overall)) if overall is not None else 0.0, natural_key(metric))

    rows: list[Row] = []
    for i, (metric, cats, overall, spread) in enumerate(sorted(unranked, key=key)):
        rank = None
        if overall is not None:
            tied = bool(rows) and _num(rows[-1].overall) == _num(overall)
            rank = rows[-1].rank if tied else i + 1
        rows.append(Row(metric, cats, overall, spread, rank))
    return Board(scale, task_list, rows, cells, records, {m: conformance.get(m) for m in by_metric})


# ---------------------------------------------------------------------------------------------------- rendering

def _md(text: str) -> str:
    """Plain text safe inside a table cell or a footnote: one line, no HTML, no column breaks."""
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def format_duration(seconds: float) -> str:
    """Coarse on purpose: the page shows typical cost, not a benchmark."""
    if seconds < 1e-3:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ranking(board: Board) -> list[str]:
    header = ["Rank", "Metric", *[c.capitalize() for c in CATEGORIES], "Overall", "± seeds"]
    rows = [[str(r.rank) if r.rank is not None else "–", f"`{r.metric}`", *[_num(r.categories[c]) for c in CATEGORIES],
             f"**{_num(r.overall)}**", _num(r.spread)] for r in board.rows]
    present = {t.category for t in board.tasks}
    lines = _table(header, ["---:", ":---", *["---:"] * len(CATEGORIES), "---:", "---:"], rows)
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
        "(e.g. the metric needs labels the task lacks): it is left out of the means. Ties share a rank.",
    ]
    return lines


def _per_task(board: Board, figures: str, footnotes: list[str]) -> list[str]:
    sweeps = {t.name for t in board.sweep_tasks()}
    header = ["Metric"] + [
        (f"[{t.name}]({figures}/{sweep_figure(t.name)})" if t.name in sweeps else t.name) + f" ({SHORT[t.category]})"
        for t in board.tasks
    ]
    rows = []
    for metric in board.metrics:
        row = [f"`{metric}`"]
        for t in board.tasks:
            cell = board.cells.get((metric, t.name))
            if cell is None:
                row.append("")
            elif cell.status == "ok":
                vals = list(cell.seed_scores.values())
                row.append(_num(cell.score) + (f" ±{statistics.stdev(vals):.{DIGITS}f}" if len(vals) >= 2 else ""))
            elif cell.status == "error":
                footnotes.append(f"`{metric}` × `{t.name}`: {_md(cell.message or '')}")
                row.append(f"✗[^{len(footnotes)}]")
            else:
                row.append("–")
        rows.append(row)
    lines = [f"![metric × task scores]({figures}/{HEATMAP})", ""]
    lines += _table(header, [":---"] + ["---:"] * len(board.tasks), rows)
    lines += ["", "± is the standard deviation over seeds; an empty cell has no record."]
    skipped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for metric in board.metrics:
        for t in board.tasks:
            cell = board.cells.get((metric, t.name))
            if cell is not None and cell.status == "skipped":
                skipped[(metric, cell.message or "")].append(t.name)
    if skipped:
        lines += ["", "Not applicable (–):", ""]
        lines += [f"- `{m}` on {', '.join(f'`{t}`' for t in ts)}: {_md(reason)}" for (m, reason), ts in skipped.items()]
    return lines


def _tasks_table(board: Board, figures: str) -> list[str]:
    sweeps = {t.name for t in board.sweep_tasks()}
    rows = []
    for t in board.tasks:
        sweep = _md(t.sweep_name) or "–"
        if t.name in sweeps:
            sweep = f"[{sweep}]({figures}/{sweep_figure(t.name)})"
        rows.append([f"`{t.name}`", t.category, str(t.version), sweep, _md(t.summary)])
    return _table(["Task", "Category", "Version", "Sweep", "What it tests"], [":---"] * 5, rows)


def _invariances(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        conf = board.conformance.get(metric)
        if conf is None:
            rows.append([f"`{metric}`", "not checked", "", "", "run `simstress run` to check"])
            continue
        declared, observed = set(conf["declared"]), set(conf["observed"])
        notes = []
        if declared - observed:
            notes.append("⚠ declared, not observed: " + ", ".join(sorted(declared - observed)))
        if observed - declared:
            notes.append("holds, not declared: " + ", ".join(sorted(observed - declared)))
        versions = {r["metric_version"] for r in board.records if r["metric"] == metric}
        if versions != {conf["metric_version"]}:
            notes.append(f"⚠ checked at version {conf['metric_version']}, records at {sorted(versions)}")
        failed = [c[0] for c in conf["checks"] if not c[1]]
        status = "pass" if conf["passed"] else "**fail**: " + ", ".join(failed)
        rows.append([f"`{metric}`", status, ", ".join(sorted(declared)) or "none",
                     ", ".join(sorted(observed)) or "none", "; ".join(notes) or "match"])
    lines = _table(["Metric", "Conformance", "Declared", "Observed", "Mismatch"], [":---"] * 5, rows)
    return lines + ["", "Observed = the invariance holds to 1e-6 on the conformance data (`simstress check ID` "
                    "shows every check)."]


def _runtime(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        times = [t for (m, _), c in board.cells.items() if m == metric for t in c.runtimes]
        rows.append([f"`{metric}`", format_duration(statistics.median(times)) if times else "–", str(len(times))])
    devices = sorted({f"{r['device']} ({r['device_name']})" for r in board.records})
    return _table(["Metric", "Median cell runtime", "Timed cells"], [":---", "---:", "---:"], rows) + [
        "", "A timed cell is one seed of one task: every case scored, plus building the task's data when the "
        "metric came first on it. Device: "
        + "; ".join(devices) + "."]


def _provenance(board: Board) -> list[str]:
    seeds = sorted({tuple(r["seeds"]) for r in board.records})
    packages: dict[str, set[str]] = defaultdict(set)
    for r in board.records:
        for name, ver in r["packages"].items():
            packages[name].add(ver)
    lines = [
        f"- Scale: `{board.scale}`; seeds: " + "; ".join(", ".join(map(str, s)) for s in seeds)
        + f"; {len(board.records)} records ({len(board.metrics)} metrics × {len(board.tasks)} tasks).",
        "- Packages: " + ", ".join(f"{n} {' / '.join(sorted(v))}" for n, v in sorted(packages.items())) + ".",
    ]
    for kind, key in (("metric", "metric_version"), ("task", "task_version")):
        versions: dict[str, set[int]] = defaultdict(set)
        for r in board.records:
            versions[r[kind]].add(r[key])
        lines += [f"- ⚠ {kind} `{n}` has records at versions {sorted(v)}: rerun `simstress run --{kind}s '{n}'`."
                  for n, v in sorted(versions.items()) if len(v) > 1]
    missing = [(m, t.name) for m in board.metrics for t in board.tasks if (m, t.name) not in board.cells]
    if missing:
        shown = ", ".join(f"`{m}` × `{t}`" for m, t in missing[:5]) + (", ..." if len(missing) > 5 else "")
        lines.append(f"- ⚠ {len(missing)} metric × task cells have no record ({shown}); those metrics are ranked "
                     f"on fewer tasks. Rerun `simstress run --scale {board.scale}`.")
    if len(seeds) > 1:
        lines.append("- ⚠ records use different seed lists; rerun with one `--seeds` to compare like with like.")
    return lines


def render(board: Board, figures: str) -> str:
    """The markdown page; `figures` is the figures folder relative to the page (POSIX separators)."""
    footnotes: list[str] = []
    per_task = _per_task(board, figures, footnotes)
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
        "## Scores per task",
        "",
        *per_task,
        "",
        "## Tasks",
        "",
        *_tasks_table(board, figures),
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
    sweeps = board.sweep_tasks()
    if sweeps:
        lines += ["## Sweeps", "", "Similarity against each task's sweep variable, one line per metric (mean over "
                  "seeds, band ± one standard deviation).", ""]
        for t in sweeps:
            lines += [f"### {t.name}", "", f"![{t.name}]({figures}/{sweep_figure(t.name)})", ""]
    lines += ["## Built from", "", *_provenance(board), ""]
    if footnotes:
        lines += [f"[^{i}]: {text}" for i, text in enumerate(footnotes, 1)] + [""]
    return "\n".join(lines)
