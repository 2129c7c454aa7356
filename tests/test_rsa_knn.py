"""RSA against scipy (pdist + spearmanr) and mutual k-NN against a brute-force set intersection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import rankdata, spearmanr

from simstress import metrics
from simstress.metrics import InputError, get_metric
from simstress.metrics.rsa import average_ranks


def pair(n: int, p1: int, p2: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 5))
    X = np.exp(Z @ rng.standard_normal((5, p1)) / 3 + 0.5 * rng.standard_normal((n, p1)))
    Y = Z @ rng.standard_normal((5, p2)) + rng.standard_normal((n, p2))
    return X, Y


def value(metric_id: str, X, Y) -> float:
    return float(get_metric(metric_id)(torch.as_tensor(X), torch.as_tensor(Y)))


def test_rsa_equals_scipy_spearman_of_correlation_distances():
    X, Y = pair(120, 20, 15, seed=0)
    ref = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation")).statistic
    assert value("rsa", X, Y) == pytest.approx(ref, abs=1e-10)
    assert 0.2 < ref < 0.95


def test_rsa_with_tied_dissimilarities_uses_average_ranks():
    """Rows are arrangements of (1, 1, −1, −1): every correlation is exactly 0 or ±1 in both routes, so the RDM of
    X holds three values only (bitwise ties); Y adds noise to X, and a second tied RDM is compared too."""
    rng = np.random.default_rng(1)
    patterns = np.array([[1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1], [-1, -1, 1, 1], [-1, 1, -1, 1]], float)
    X = patterns[rng.integers(0, 5, 40)]
    Y = X + 0.8 * rng.standard_normal(X.shape)
    W = patterns[rng.integers(0, 5, 40)]
    assert value("rsa", X, W) == pytest.approx(spearmanr(pdist(X, "correlation"), pdist(W, "correlation")).statistic,
                                               abs=1e-12)
    ref = spearmanr(pdist(X, "correlation"), pdist(Y, "correlation")).statistic
    assert value("rsa", X, Y) == pytest.approx(ref, abs=1e-10)


def test_average_ranks_equal_scipy_rankdata():
    v = torch.tensor([3.0, 1.0, 2.0, 3.0, 3.0, 0.5, 2.0, 7.0])
    np.testing.assert_array_equal(average_ranks(v).numpy(), rankdata(v.numpy(), method="average"))


def test_rsa_properties_by_construction():
    X, _ = pair(80, 10, 10, seed=2)
    assert value("rsa", X, X) == pytest.approx(1.0, abs=1e-12)
    perm = np.random.default_rng(3).permutation(10)
    assert value("rsa", X, 5.0 * X[:, perm]) == pytest.approx(1.0, abs=1e-12)
    # per-row affine maps leave each row's correlations unchanged (not a declared invariance, a check of the RDM)
    scales, shifts = np.linspace(0.5, 2.0, 80)[:, None], np.linspace(-3, 3, 80)[:, None]
    assert value("rsa", X, X * scales + shifts) == pytest.approx(1.0, abs=1e-12)
    assert get_metric("rsa").spec.invariances == {"isotropic_scaling", "permutation"}
    assert value("rsa", X, X + 10.0 * np.arange(10)) < 0.99  # a common translation of all rows does change it


def test_rsa_zero_variance_rows_raise():
    X, Y = pair(30, 5, 5, seed=4)
    Y[[3, 7]] = 2.5
    with pytest.raises(InputError, match=r"2 of the 30 rows of Y have zero variance"):
        metrics.score("rsa", X, Y)


def brute_force_mutual_knn(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """Sorted cosine similarities per sample, self dropped, first k as sets, then mean |∩|/k."""
    def neighbour_sets(A):
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        S = A @ A.T
        sets = []
        for i in range(len(A)):
            order = [j for j in np.argsort(-S[i], kind="stable") if j != i]
            sets.append(set(order[:k]))
        return sets

    return float(np.mean([len(a & b) / k for a, b in zip(neighbour_sets(X), neighbour_sets(Y))]))


@pytest.mark.parametrize("k", [1, 5, 10])
def test_mutual_knn_equals_brute_force(k):
    X, Y = pair(90, 12, 8, seed=5)
    ref = brute_force_mutual_knn(X, Y, k)
    assert value(f"mutual_knn[k={k}]", X, Y) == pytest.approx(ref, abs=1e-12)
    assert 0.05 < ref < 0.95


def test_mutual_knn_blocked_similarities_give_the_same_answer(monkeypatch):
    X, Y = pair(70, 6, 9, seed=6)
    whole = value("mutual_knn", X, Y)
    monkeypatch.setattr(metrics.neighbors, "_BLOCK_ELEMENTS", 200)  # blocks of 2 rows
    assert value("mutual_knn", X, Y) == whole


def test_mutual_knn_properties_by_construction():
    X, Y = pair(100, 10, 10, seed=7)
    Q, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((10, 10)))
    assert value("mutual_knn", X, X) == 1.0
    assert value("mutual_knn", X, 3.0 * X @ Q) == 1.0
    assert value("mutual_knn", X, Y) == value("mutual_knn", Y, X)
    rng = np.random.default_rng(9)
    assert value("mutual_knn", X, rng.standard_normal((100, 10))) < 0.3  # unrelated: near k/(n−1)


def test_mutual_knn_needs_more_samples_than_k():
    X, Y = pair(10, 4, 4, seed=10)
    with pytest.raises(InputError, match=r"more than k samples.*n = 10"):
        metrics.score("mutual_knn", X, Y)
    assert 0.0 <= metrics.score("mutual_knn[k=3]", X, Y) <= 1.0


@pytest.mark.parametrize("k", ["0", "-2"])
def test_mutual_knn_bad_k_raises(k):
    with pytest.raises(ValueError, match="k >= 1"):
        get_metric(f"mutual_knn[k={k}]")


def test_mutual_knn_zero_rows_raise():
    X, Y = pair(40, 5, 5, seed=11)
    X[0] = 0.0
    with pytest.raises(InputError, match=r"1 of the 40 rows of X are all zeros"):
        metrics.score("mutual_knn", X, Y)


@pytest.mark.parametrize("metric_id", ["rsa", "mutual_knn"])
def test_float32_matches_float64(metric_id):
    X, Y = pair(200, 16, 12, seed=12)
    ref = metrics.score(metric_id, X, Y)
    assert metrics.score(metric_id, X, Y, dtype=torch.float32) == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("metric_id", ["rsa", "mutual_knn"])
@pytest.mark.parametrize(("scale", "offset"), [(1e20, 0.0), (1e30, 0.0), (1e-30, 0.0), (1.0, 1e4), (1e-3, 30.0)])
def test_float32_equals_float64_on_the_same_data(metric_id, scale, offset):
    """Ranks and neighbour sets are discrete: float32 rounding reorders near ties (with a 1e4 offset mutual_knn read
    0.004 in float32 for 0.18 in float64). Both compute in float64 from the same (float32-representable) data."""
    X, Y = pair(200, 16, 12, seed=13)
    X32, Y32 = (torch.as_tensor(A * scale + offset, dtype=torch.float32) for A in (X, Y))
    ref = metrics.score(metric_id, X32.double(), Y32.double())
    assert metrics.score(metric_id, X32, Y32, dtype=torch.float32) == pytest.approx(ref, abs=1e-7)


def test_rsa_duplicated_samples_are_exact_ties():
    """Entries equal because samples are duplicated are exact ties, and identical rows are at distance exactly 0.
    scipy's pdist computes each pair alike, so (a, b) and (a, b') tie there too, but it leaves 1 − corr(b, b) at
    0 or 1.1e-16 by rounding (the reference sets those to 0); the Gram route used to order all of them by rounding."""
    X, Y = pair(30, 12, 9, seed=14)
    rows = np.r_[np.arange(30), np.repeat([0, 1, 2], 6)]
    same = pdist(rows[:, None], lambda a, b: float(a[0] == b[0])) == 1.0
    dx, dy = pdist(X[rows], "correlation"), pdist(Y[rows], "correlation")
    assert 0 < np.abs(dx[same]).max() < 1e-15  # scipy's rounding, which the reference removes
    dx[same], dy[same] = 0.0, 0.0
    assert value("rsa", X[rows], Y[rows]) == pytest.approx(spearmanr(dx, dy).statistic, abs=1e-12)


# ------------------------------------------------------------ issue 22, item 7: ties decided by rounding are refused
def test_rsa_refuses_two_features():
    """With two features every correlation between rows is ±1: the RDM holds 0 and 2 only, and their order was
    rounding (the value moved under a plain rescaling: 0.0151, 0.0170, 0.0114)."""
    rng = np.random.default_rng(20)
    X, Y = rng.standard_normal((50, 2)), rng.standard_normal((50, 5))
    for A, B in ((X, Y), (Y, X)):
        for scale in (1.0, 3.7):
            with pytest.raises(InputError, match="rsa: [XY] has 2 features"):
                metrics.score("rsa", A * scale, B)
    assert -1 <= metrics.score("rsa", np.hstack([X, rng.standard_normal((50, 1))]), Y) <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mutual_knn_refuses_rank_one_data(dtype):
    """Rows on one line through the origin: every cosine similarity is ±1 and the neighbours were rounding (the
    value moved under a plain rescaling: 0.212, 0.206, 0.198)."""
    rng = np.random.default_rng(21)
    line = rng.standard_normal((50, 1)) * rng.standard_normal((1, 6))
    Y = rng.standard_normal((50, 5))
    for scale in (1.0, 3.7, 1e5):
        with pytest.raises(InputError, match="mutual_knn: every row of X lies on one line"):
            metrics.score("mutual_knn", line * scale, Y, dtype=dtype)
        with pytest.raises(InputError, match="every row of Y lies on one line"):
            metrics.score("mutual_knn", Y, (line * scale).astype(np.float32), dtype=dtype)
    nearly = line + 1e-3 * rng.standard_normal(line.shape)  # a second direction well above rounding: scored
    assert 0 <= metrics.score("mutual_knn", nearly, Y, dtype=dtype) <= 1
