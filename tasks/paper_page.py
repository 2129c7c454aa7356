"""The page's "Paper" section: each figure of Davari et al. 2023 that simstress reproduces, the paper's number
beside ours, and whether they agree within a stated tolerance, from the records and the attacks' cards alone.

The paper's numbers are its CIFAR-10 ones (read off its figures, or printed on them); ours come from Fashion-MNIST,
M1 and this suite's data sizes, so a value can differ for a reason the row states (the tolerance says how far
counts as the same finding). `simstress leaderboard --section Paper` prints the section alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from simstress.core.page import PageView, Section, finite, md, page_section, table
from simstress.core.record import Record

MANIPULATED = "manipulated"


@dataclass(frozen=True)
class Finding:
    figure: str
    quantity: str
    paper: str            # as the paper states it
    ours: float | None    # None: no records
    agrees: Callable[[float], bool]
    tolerance: str        # what counts as the same finding
    fmt: str = "{:.3f}"

    def row(self) -> list[str]:
        if self.ours is None:
            return [self.figure, md(self.quantity), md(self.paper), "–", md(self.tolerance), "no records"]
        verdict = "yes" if self.agrees(self.ours) else "**no**"
        return [self.figure, md(self.quantity), md(self.paper), self.fmt.format(self.ours), md(self.tolerance),
                verdict]


def _values(records: list[Record], metric: str, keep: Callable[[Mapping[str, Any], int], bool]) -> list[float]:
    """A metric's similarities on the curve rows `keep(curve, i)` selects, every seed."""
    out = []
    for r in records:
        if r.metric != metric:
            continue
        for run in r.runs:
            c = run.curve or {}
            out += [float(c["similarity"][i]) for i in range(len(c.get("x", ()))) if keep(c, i)
                    and finite(c["similarity"][i])]
    return out


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _at_x(view: PageView, task: str, metric: str, x: float, **columns: Any) -> float | None:
    return _mean(_values(view.records(task), metric, lambda c, i: c["x"][i] == x and all(
        c.get(k, [None] * len(c["x"]))[i] == v for k, v in columns.items())))


def _at_largest_x(view: PageView, task: str, metric: str, **columns: Any) -> tuple[float | None, float | None]:
    xs = [x for r in view.records(task) if r.metric == metric for run in r.runs for x in (run.curve or {}).get("x", ())]
    return (None, None) if not xs else (max(xs), _at_x(view, task, metric, max(xs), **columns))


def _invertible(view: PageView, mu: float | None, sigma: float | None) -> float | None:
    """Linear CKA at (μ, σ), or on the diagonal μ = σ when both are None."""
    def keep(c: Mapping[str, Any], i: int) -> bool:
        m, s = c["mu"][i], c["sigma"][i]
        return m == s if mu is None else (m, s) == (mu, sigma)

    return _mean(_values(view.records("invertible_linear"), "linear_cka", keep))


def _attack(view: PageView, attacker: str, target: str) -> Mapping[str, Any] | None:
    """The card of the attack (any source network) the map_manipulation records name."""
    for a in view.artifacts(MANIPULATED):
        if a.card is not None and (a.params.get("attacker"), a.params.get("target")) == (attacker, target):
            return a.card
    return None


def _drop(card: Mapping[str, Any] | None) -> float | None:
    return None if card is None else 100 * (card["test_accuracy"]["after"] - card["test_accuracy"]["before"])


def _map_error(card: Mapping[str, Any] | None, which: str = "achieved") -> float | None:
    """Mean |M − T| off the diagonal under the attacker's estimator, of the attacked (`achieved`) or the untouched
    (`original`) network's map."""
    if card is None:
        return None
    maps = card["maps"]
    error = maps.get("estimator", maps["attacker"])["error"].get(which)
    return None if error is None else float(error)


def near(target: float, tol: float) -> Callable[[float], bool]:
    return lambda v: abs(v - target) <= tol


def findings(view: PageView) -> list[Finding]:
    cubes = "subset_translation"
    xc, at_class = _at_largest_x(view, "network_class_translation", "linear_cka", variant="qp_direction")
    xp, at_point = _at_largest_x(view, "network_outlier", "linear_cka")
    block0 = {pair: _mean(_values(view.records("memorization"), "linear_cka",
                                  lambda c, i, p=pair: c["block"][i] == 0 and c["pair"][i] == p))
              for pair in ("generalized", "memorized", "random")}
    low = min((v for v in block0.values() if v is not None), default=None)
    out = [
        Finding("2", "linear CKA of block 0, lowest of A vs the generalized, memorized and random networks",
                "high for all three", low, lambda v: v >= 0.8, "≥ 0.8"),
        Finding("4a", "linear CKA at c = 1, cube 2 translated", "≈ 1.0", _at_x(view, cubes, "linear_cka", 1.0),
                near(1.0, 0.05), "± 0.05"),
        Finding("4a", "linear CKA at c = 10", "≈ 0.22", _at_x(view, cubes, "linear_cka", 10.0), near(0.22, 0.05),
                "± 0.05"),
        Finding("4a", "linear CKA at c = 50", "≈ 0.12–0.13 (limit 0.112)", _at_x(view, cubes, "linear_cka", 50.0),
                near(0.125, 0.05), "± 0.05"),
        Finding("4a", "RBF CKA, σ = median (lower), at c = 50", "≈ 0.11",
                _at_x(view, cubes, "rbf_cka[median=lower]", 50.0), near(0.11, 0.05), "± 0.05"),
        Finding("4a", "RBF CKA, σ = 0.5·median (lower), at c = 50", "plateau ≈ 0.17",
                _at_x(view, cubes, "rbf_cka[median=lower,sigma=0.5]", 50.0), near(0.17, 0.05), "± 0.05"),
        Finding("4a", "RBF CKA, σ = 0.2·median (lower), at c = 50", "≈ 1.0 (a degenerate kernel)",
                _at_x(view, cubes, "rbf_cka[median=lower,sigma=0.2]", 50.0), near(1.0, 0.05), "± 0.05"),
        Finding("4b", "linear CKA, Y = X·M, mean over μ = σ", "0.091", _invertible(view, None, None),
                near(0.091, 0.05), "± 0.05"),
        Finding("4b", "linear CKA, μ ≫ σ (μ = 1000, σ = 1)", "→ 0.046", _invertible(view, 1000.0, 1.0),
                near(0.046, 0.05), "± 0.05"),
        Finding("4b", "linear CKA, σ ≫ μ (μ = 1, σ = 1000)", "→ 0.716", _invertible(view, 1.0, 1000.0),
                near(0.716, 0.1), "± 0.1"),
        Finding("4c", f"linear CKA, one class translated (QP direction), c/σ̄ = {xc:g}" if xc else
                "linear CKA, one class translated (QP direction), largest c", "plateau ≈ 0.17 (0.12–0.22)",
                at_class, lambda v: 0.12 <= v <= 0.22, "in 0.12–0.22"),
        Finding("4c", f"linear CKA, one image translated, c/σ̄ = {xp:g}" if xp else
                "linear CKA, one image translated, largest c", "≈ 0.03 (c = 5,000), falling to 0", at_point,
                lambda v: v <= 0.1, "≤ 0.1"),
    ]
    for figure, target, paper in (("5", "identity", "−0.5 pp"), ("5", "ones", "−0.4 pp"),
                                  ("5", "first_last", "−0.5 pp"), ("6", "christmas_tree", "−0.4 pp"),
                                  ("6", "goblin", "−0.6 pp")):
        card = _attack(view, "linear_cka", target)
        out += [Finding(figure, f"test accuracy change, linear CKA → {target}", paper, _drop(card),
                        lambda v: v >= -1.0, "within 1 pp", "{:+.2f} pp"),
                Finding(figure, f"map error (mean |M − T| off the diagonal), linear CKA → {target}",
                        "matches the target visibly", _map_error(card), lambda v: v <= 0.1, "≤ 0.1")]
    width = next((a.card for a in view.artifacts(MANIPULATED) if a.card is not None
                  and str(a.params.get("target", "")).startswith("match:")), None)
    # the premise of Fig. 7: the wide network's own map differs from the thin one's before any attack
    out += [Finding("7", "map error of the w = 2 network against the w = 1 map, before the attack",
                    "differs visibly (ResNet-34 ×2 against ×1)", _map_error(width, "original"), lambda v: v > 0.1,
                    "> 0.1"),
            Finding("7", "test accuracy change, a w = 2 network made to show a w = 1 map", "−0.6 pp (ResNet-34 ×2)",
                    _drop(width), lambda v: v >= -1.0, "within 1 pp", "{:+.2f} pp"),
            Finding("7", "map error, the w = 2 network against the w = 1 map", "matches the target visibly",
                    _map_error(width), lambda v: v <= 0.1, "≤ 0.1")]
    return out


@page_section(order=5)
def paper(view: PageView) -> Section | None:
    found = findings(view)
    if all(f.ours is None for f in found):
        return None
    lines = ["Davari et al. 2023's findings, their number beside ours. Theirs are CIFAR-10's, read off their figures "
             "or printed on them; ours are Fashion-MNIST's with M1 and this suite's sizes (mean over seeds and, where "
             "a figure averages, over its cases), so a value may differ while the finding holds: the tolerance says "
             "what counts as the same finding. Generated from the records and the attacks' cards (`simstress "
             "leaderboard --section Paper`).", ""]
    lines += table(["Fig.", "Quantity", "Paper", "simstress", "Tolerance", "Agrees"],
                   ["---:", ":---", ":---", "---:", ":---", ":---"], [f.row() for f in found])
    missing = sorted({f.figure for f in found if f.ours is None})
    if missing:
        lines += ["", f"No records yet for (rows of) Fig. {', '.join(missing)} "
                      f"(`simstress run --scale {md(view.scale)}`)."]
    return Section("Paper", lines)
