"""Page sections that belong to tasks: how a task module adds its own part of `leaderboard.md` and its figures.

The leaderboard engine (`simstress.benchmark.leaderboard`) renders what every metric and task shares — the
ranking and its stability, the per-task scores, the task list, invariances, runtimes, one generic sweep plot per
task — and knows no task and no metric family by name. Whatever is about particular tasks (a paper's figure, the
networks a task trained, an attack matrix) is declared next to the tasks, built-in or plugin, with two decorators:

    from simstress.core.page import Figure, PageView, Section, page_section, sweep_panel

    @page_section(order=60)
    def my_section(view: PageView) -> Section | None:       # None: nothing to show (e.g. no records yet)
        records = view.records("my_task")                   # the task's ok records at its current version
        if not records:
            return None
        return Section("My task", lines=["Some **markdown**.", "", f"![my figure]({view.link('my_task.png')})"],
                       figures=[Figure("my_task.png", lambda: draw_png(records))])

    @sweep_panel("my_task")                                  # replaces the task's generic sweep plot
    def my_sweep(view: PageView) -> SweepPanel | None: ...

A section reads only what the view gives: the records of its scale (typed, `simstress.core.record.Record`) and
the cards of the artifacts those records name (`view.artifacts(kind)`), so the page stays a pure function of the
records and the cards. Sections appear after the sweeps, by `order` (built-ins use 10–50; a plugin's default 100),
and sections with the same title share one heading. A figure is a file name (unique on the page) and a function
returning PNG bytes, called only when `simstress leaderboard` writes the figures (`simstress.core.plots` has the
shared helpers; import matplotlib inside the function, so that rendering the markdown never loads it). A task
whose curves hold several pairs at one sweep value sets `sweep_plot = False` (`simstress.core.task.Task`), which
drops the generic plot that would average them.

The markdown helpers below make text from records and plugins inert (`md`, `code`) and keep number formats fixed.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from .record import Record
from .registry import natural_key

DIGITS = 3


@dataclass(frozen=True)
class Figure:
    """A figure of the page: its file name in the figures folder and the function that draws it (PNG bytes)."""

    name: str
    draw: Callable[[], bytes] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Section:
    """A `## title` section: its markdown lines and the figures they link to."""

    title: str
    lines: Sequence[str]
    figures: Sequence[Figure] = ()


@dataclass(frozen=True)
class SweepPanel:
    """A task's own entry under "Sweeps": text above its figure (the figure the per-task table links to)."""

    lines: Sequence[str]
    figure: Figure


@dataclass(frozen=True)
class PageTask:
    """A task as the page knows it: from its newest records (it need not be installed)."""

    name: str
    category: str
    version: int
    summary: str
    sweep_name: str
    log_x: bool


@dataclass(frozen=True)
class UsedArtifact:
    """An artifact the records name: its key, the content hashes they name, and its card (None: missing)."""

    kind: str
    key: str
    sha256: tuple[str, ...]
    card: Mapping[str, Any] | None

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.key)) if self.card is not None else self.key

    @property
    def params(self) -> Mapping[str, Any]:
        params = self.card.get("params") if self.card is not None else None
        return params if isinstance(params, Mapping) else {}


CardLoader = Callable[[str, str], Mapping[str, Any] | None]


class PageView:
    """What a section may read: the scale, the page's metric order and tasks, the records, the cards they name."""

    def __init__(self, scale: str, metrics: Sequence[str], tasks: Sequence[PageTask], records: Sequence[Record],
                 figures: str, load_card: CardLoader | None = None, root: Path | None = None) -> None:
        self.scale = scale
        self.metrics = tuple(metrics)
        self.tasks = tuple(tasks)
        self.all_records = tuple(records)
        self.figures = figures
        self._load_card = load_card
        self._root = root
        self._cards: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def task(self, name: str) -> PageTask | None:
        return next((t for t in self.tasks if t.name == name), None)

    def records(self, task: str) -> list[Record]:
        """The task's ok records at its current version that hold a curve, in record order."""
        t = self.task(task)
        if t is None:
            return []
        return [r for r in self.all_records if r.task == task and r.task_version == t.version and r.ok
                and any(run.curve for run in r.runs)]

    def card(self, kind: str, key: str) -> Mapping[str, Any] | None:
        """The card of an artifact the records name (None when it is missing or no loader was given)."""
        if (kind, key) not in self._cards:
            self._cards[kind, key] = self._load_card(kind, key) if self._load_card is not None else None
        return self._cards[kind, key]

    def artifacts(self, kind: str, records: Iterable[Record] | None = None) -> tuple[UsedArtifact, ...]:
        """The artifacts of `kind` that the records (default: all of the scale) name, with their cards, sorted by
        name, then key."""
        named: dict[str, set[str]] = {}
        for r in self.all_records if records is None else records:
            for a in r.artifacts:
                if a.kind == kind:
                    named.setdefault(a.key, set()).add(a.sha256)
        found = [UsedArtifact(kind, key, tuple(sorted(shas)), self.card(kind, key)) for key, shas in named.items()]
        return tuple(sorted(found, key=lambda a: (natural_key(a.name), a.key)))

    def artifact_file(self, kind: str, key: str, name: str) -> Path | None:
        """A file of an artifact under the results folder, None when there is none (or no folder was given)."""
        if self._root is None or not re.fullmatch(r"[0-9a-f]+", key):
            return None
        path = self._root / kind / key / name
        return path if path.is_file() else None

    def link(self, figure: str) -> str:
        """The page's relative link to a figure, percent-encoded so that no name can end the link."""
        return url(self.figures, figure)


SectionMaker = Callable[[PageView], Section | None]
SweepMaker = Callable[[PageView], SweepPanel | None]
_SECTIONS: dict[str, tuple[int, SectionMaker]] = {}
_SWEEPS: dict[str, SweepMaker] = {}


def page_section(order: int = 100) -> Callable[[SectionMaker], SectionMaker]:
    """Register `fn(view) -> Section | None` as a section of the page, placed by `order` after the sweeps."""

    def decorate(fn: SectionMaker) -> SectionMaker:
        _SECTIONS[f"{fn.__module__}.{fn.__qualname__}"] = (order, fn)
        return fn

    return decorate


def sweep_panel(task: str) -> Callable[[SweepMaker], SweepMaker]:
    """Register `fn(view) -> SweepPanel | None` as `task`'s entry under "Sweeps", instead of the generic plot."""

    def decorate(fn: SweepMaker) -> SweepMaker:
        source = f"{fn.__module__}.{fn.__qualname__}"
        old = _SWEEPS.get(task)
        if old is not None and f"{old.__module__}.{old.__qualname__}" != source:
            raise ValueError(f"task {task!r} has two sweep panels: {old.__module__}.{old.__qualname__} and {source}")
        _SWEEPS[task] = fn
        return fn

    return decorate


def sections(view: PageView) -> list[Section]:
    """Every registered section that has something to show, in order (then by registration name)."""
    out = []
    for _, name in sorted((order, name) for name, (order, _) in _SECTIONS.items()):
        section = _SECTIONS[name][1](view)
        if section is not None:
            out.append(section)
    return out


def sweep_maker(task: str) -> SweepMaker | None:
    return _SWEEPS.get(task)


# ---------------------------------------------------------------------------------------------------- markdown

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md(text: str) -> str:
    """Text from records or plugins, inert in markdown and HTML: one line, HTML escaped, markdown punctuation
    backslash-escaped (no emphasis, code, link, image or column break can start)."""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def url(folder: str, name: str) -> str:
    """A relative link to a figure, percent-encoded so that no name can end the link or start another."""
    return quote(f"{folder}/{name}", safe="/._-")


def code(text: str) -> str:
    """An id as inline code that nothing inside can end or break: a fence longer than any backtick run in it,
    `|` escaped (GitHub splits table cells on it even in code), HTML left inert by the code span itself."""
    one_line = " ".join(str(text).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", one_line)), default=0) + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.{DIGITS}f}"


def finite(x: Any) -> bool:
    """A real number (not a bool, not NaN or infinite): what a hand-editable file must hold to be shown."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_sd(values: list[float]) -> str:
    return num(statistics.fmean(values)) + (f" ± {num(statistics.stdev(values))}" if len(values) >= 2 else "")


def format_duration(seconds: float) -> str:
    """Coarse on purpose: the page shows typical cost, not a benchmark."""
    if seconds < 1e-3:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def card_cell(value: Any, fmt: Callable[[float], str] | None = None) -> str:
    """A card's value in a table cell: numbers through `fmt`, text made inert, anything absent "–"."""
    if fmt is not None:
        return fmt(value) if finite(value) else "–"
    return "–" if value is None or value == "" else md(str(value))
