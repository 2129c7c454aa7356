"""Calibration rows: metrics of trivial behaviour, exact by construction, shown on the page and never ranked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simstress import metrics
from simstress.benchmark.leaderboard import Installed, build_board, render
from simstress.metrics import InputError

from .conftest import CATS, as_records, conformance, evaluate, grid, make_record, passed


def dense_identity_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The definition, with the n×n kernels and H formed: an independent route."""
    K = (X[:, None] == X[None]).all(-1).double()
    L = (Y[:, None] == Y[None]).all(-1).double()
    H = torch.eye(len(X), dtype=torch.float64) - 1.0 / len(X)
    A, B = H @ K @ H, H @ L @ H
    return float((A * B).sum() / (A.norm() * B.norm()))


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 40), st.integers(1, 4), st.data())
def test_the_identity_kernel_counts_only_which_samples_are_the_same(n: int, p: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    distinct_x, distinct_y = data.draw(st.integers(2, n)), data.draw(st.integers(2, n))
    X = torch.from_numpy(rng.standard_normal((distinct_x, p))[rng.integers(0, distinct_x, n)])
    Y = torch.from_numpy(rng.standard_normal((distinct_y, p + 1))[rng.integers(0, distinct_y, n)])
    try:
        value = float(metrics.get_metric("identity_kernel")(X, Y))
    except InputError:  # one distinct row, or one odd row among copies: refused by every metric's input check
        assume(False)
    assert value == pytest.approx(dense_identity_cka(X, Y), abs=1e-12)
    distinct = torch.randn(n, p, dtype=torch.float64)
    assert float(metrics.get_metric("identity_kernel")(distinct, 7 * distinct @ torch.randn(p, p + 2,
                                                                                      dtype=torch.float64))) == 1.0


def test_the_constant_and_the_random_rows() -> None:
    X, Y = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, 3, dtype=torch.float64)
    assert float(metrics.get_metric("constant")(X, Y)) == 1.0
    random = metrics.get_metric("random_value")
    values = {float(random(X, s * Y)) for s in (1.0, 2.0, 3.0)}
    assert float(random(X, Y)) == float(random(X.clone(), Y.clone()))  # a rerun repeats it
    assert len(values) == 3 and all(0.0 <= v < 1.0 for v in values)
    assert metrics.list_metrics(calibration="constant") == ["constant"]


def test_calibration_rows_are_shown_never_ranked_and_a_giveaway_is_flagged() -> None:
    recs = grid() + [make_record("constant", t, [1.0, 1.0]) for t in CATS]
    roles = {"constant": "constant"}
    installed = Installed(lambda m: 1, {t: 1 for t in CATS}, lambda m: roles.get(m, ""))
    board = build_board("smoke", as_records(recs), {**conformance(), "constant": passed("constant")}, installed)
    assert "constant" not in board.metrics and [r.metric for r in board.calibration] == ["constant"]
    assert [r.metric for r in board.ranked] == ["metric_c", "metric_b"]  # as without the calibration row
    # the constant's 1.0 beats the median ranked metric everywhere (r2: 0.6 and 1.0 give a median of 0.8)
    assert board.giveaways == frozenset(CATS)
    page = render(board, "figs").text
    assert "| constant | `constant` | 1.000 | 1.000 | 1.000 | 1.000 |" in page
    assert "⚠ Gives a constant away" in page and "| `constant` (constant) |" in page


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 40), p=st.integers(1, 30), sigma=st.sampled_from([0.2, 0.5, 1.0, 3.0]),
       median=st.sampled_from(["ordinary", "lower"]), seed=st.integers(0, 2**16))
def test_the_kernel_diagnostic_is_the_mean_off_diagonal_entry(n: int, p: int, sigma: float, median: str,
                                                               seed: int) -> None:
    X = np.random.default_rng(seed).normal(size=(n, p))
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)  # centring moves no distance
    m = np.median(D) if median == "ordinary" else np.sort(D.ravel())[(n * n - 1) // 2]
    assume(m > 0)
    K = np.exp(-D / (2 * sigma**2 * m))
    expected = (K.sum() - np.trace(K)) / (n * (n - 1))
    got = metrics.get_metric(f"rbf_cka[median={median},sigma={sigma}]").diagnose(torch.from_numpy(X))
    assert got["kernel_mean_offdiagonal"] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_a_degenerate_kernel_is_recorded_by_the_task_and_flagged_on_the_page() -> None:
    # Davari et al.'s Fig. 4a setting on the cube data: the kernel is nearly the identity, and the score 1.0 with it
    r = evaluate("subset_translation", "rbf_cka[median=lower,sigma=0.2]")
    low, high = r.details["diagnostics"]["kernel_mean_offdiagonal"]
    assert 0 < low <= high < 1e-4 and r.score > 0.99
    ordinary = evaluate("subset_translation", "rbf_cka")
    assert ordinary.details["diagnostics"]["kernel_mean_offdiagonal"][0] > 0.1
    assert "diagnostics" not in evaluate("subset_translation", "linear_cka").details  # no kernel, no diagnostic
    recs = grid()
    for rec, value in zip(recs[:2], (low, 0.5)):  # metric_a on r1: degenerate; on r2: a healthy kernel
        for run in rec["runs"]:
            run["details"] = {"diagnostics": {"kernel_mean_offdiagonal": [value, value]}}
    bars = metrics.get_metric("rbf_cka[median=lower,sigma=0.2]").spec.degenerate_below  # the metric's own bar
    installed = Installed(lambda m: 1, {t: 1 for t in CATS}, lambda m: "", lambda m: bars if m == "metric_a" else {})
    page = render(build_board("smoke", as_records(recs), conformance(), installed), "figs").text
    flagged = [line for line in page.splitlines() if line.startswith("[^") and "degenerate construction" in line]
    assert len(flagged) == 1 and "`metric_a` × `r1`" in flagged[0] and f"{low:.1e}" in flagged[0]
    assert "`kernel_mean_offdiagonal`" in flagged[0] and "< 0.001" in flagged[0]
    assert "| `metric_a` | 0.900 ±0.141 ⚠[^" in page
    # the same diagnostics on a metric that declares no bar flag nothing
    blind = Installed(lambda m: 1, {t: 1 for t in CATS}, lambda m: "")
    assert "degenerate construction —" not in render(build_board("smoke", as_records(recs), conformance(), blind),
                                                      "figs").text


def test_a_bar_needs_the_diagnostic_that_computes_it() -> None:
    with pytest.raises(ValueError, match="register the `diagnose`"):
        metrics.register(cost="O(1)", reference="test only", degenerate_below={"x": 1.0})(lambda X, Y: X.sum())
