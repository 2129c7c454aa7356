"""CCA family: canonical correlations against an eigen-decomposition route, properties by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simstress import metrics
from simstress.metrics import InputError, cca, get_metric
from simstress.metrics.cca import canonical_correlations, variance_cut


def correlated(n: int, p1: int, p2: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two views of a shared 6-d latent plus private noise, with per-feature offsets and scales."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 6))
    X = Z @ rng.standard_normal((6, p1)) + 0.7 * rng.standard_normal((n, p1)) + rng.normal(0, 5, p1)
    Y = np.tanh(Z @ rng.standard_normal((6, p2))) + 0.5 * rng.standard_normal((n, p2)) - 3.0
    return X, Y


def eigen_canonical_correlations(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """√ of the top min(p1, p2) eigenvalues of Σxx⁻¹ Σxy Σyy⁻¹ Σyx, descending (the textbook route)."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
    A = np.linalg.solve(Sxx, Sxy) @ np.linalg.solve(Syy, Sxy.T)
    ev = np.sort(np.linalg.eigvals(A).real)[::-1][: min(X.shape[1], Y.shape[1])]
    return np.sqrt(np.clip(ev, 0.0, None))


def eigen_canonical_x_variates(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ρ (descending) and X's unit-norm canonical variates hᵢ = X̃aᵢ from the eigenvectors aᵢ of the same route."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
    ev, vecs = np.linalg.eig(np.linalg.solve(Sxx, Sxy) @ np.linalg.solve(Syy, Sxy.T))
    order = np.argsort(-ev.real)[: min(X.shape[1], Y.shape[1])]
    H = Xc @ vecs[:, order].real
    return np.sqrt(np.clip(ev.real[order], 0, None)), H / np.linalg.norm(H, axis=0)


def value(metric_id: str, X, Y) -> float:
    return float(get_metric(metric_id)(torch.as_tensor(X), torch.as_tensor(Y)))


@pytest.mark.parametrize("route", ["moments", "qr"])
def test_canonical_correlations_match_eigen_route(route):
    X, Y = correlated(400, 12, 7, seed=0)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    c = cca._moments_route(Xt, Yt, True) if route == "moments" else cca._qr_route(Xt, Yt, True)
    rho = canonical_correlations(c.T).numpy()
    ref = eigen_canonical_correlations(X, Y)
    np.testing.assert_allclose(rho, ref, atol=1e-8)
    assert value("cca_mean", X, Y) == pytest.approx(ref.mean(), abs=1e-8)
    assert value("cca_r2", X, Y) == pytest.approx(np.mean(ref**2), abs=1e-8)
    assert 0.2 < ref.mean() < 0.9  # the data is neither trivial nor unrelated


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "svcca[keep=1.0]", "pwcca"])
def test_invertible_linear_copy_scores_one(metric_id):
    X, _ = correlated(300, 10, 4, seed=1)
    rng = np.random.default_rng(2)
    M = rng.standard_normal((10, 10))  # generic, invertible, far from orthogonal
    Y = 3.5 * X @ M + rng.normal(0, 100, 10)
    assert value(metric_id, X, Y) == pytest.approx(1.0, abs=1e-10)


def test_unrelated_data_scores_low():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))
    assert value("cca_mean", X, Y) < 0.1  # E ρ ≈ √(p/n) scale for independent data
    assert value("cca_r2", X, Y) < 0.01


def test_svcca_keep_one_equals_cca_mean():
    X, Y = correlated(250, 9, 14, seed=4)
    assert value("svcca[keep=1.0]", X, Y) == pytest.approx(value("cca_mean", X, Y), abs=1e-12)


def svd_reduce(A: np.ndarray, keep: float) -> np.ndarray:
    """Top principal scores of A holding `keep` of the variance (numpy SVD, explicit loop on the cut)."""
    Ac = A - A.mean(0)
    U, S, _ = np.linalg.svd(Ac, full_matrices=False)
    var = S**2 / np.sum(S**2)
    d = next(i + 1 for i in range(len(var)) if var[: i + 1].sum() >= keep)
    return U[:, :d] * S[:d]


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_svcca_matches_reduce_then_eigen_route(keep):
    X, Y = correlated(500, 30, 20, seed=5)
    ref = eigen_canonical_correlations(svd_reduce(X, keep), svd_reduce(Y, keep)).mean()
    assert value(f"svcca[keep={keep}]", X, Y) == pytest.approx(ref, abs=1e-8)


def test_variance_cut_is_the_fewest_directions_reaching_keep():
    var = torch.tensor([4.0, 3.0, 2.0, 1.0, 1e-30], dtype=torch.float64)  # last one below the rank cut
    assert [variance_cut(var, 4, keep) for keep in (0.3, 0.4, 0.7, 0.71, 0.9, 1.0)] == [1, 1, 2, 3, 3, 4]
    assert variance_cut(var, 2, 1.0) == 2


def test_svcca_scores_wide_data_that_cca_refuses():
    rng = np.random.default_rng(6)
    n = 60
    Z = rng.standard_normal((n, 3))
    X = Z @ rng.standard_normal((3, 200)) + 0.05 * rng.standard_normal((n, 200))  # p > n, variance in 3 dims
    Y = Z @ rng.standard_normal((3, 150)) + 0.05 * rng.standard_normal((n, 150))
    with pytest.raises(InputError, match="svcca"):
        value("cca_mean", X, Y)
    v = value("svcca", X, Y)
    assert v == pytest.approx(eigen_canonical_correlations(svd_reduce(X, 0.99), svd_reduce(Y, 0.99)).mean(), abs=1e-8)
    assert v > 0.9


def test_pwcca_matches_eigen_route_weights():
    X, Y = correlated(400, 12, 7, seed=7)
    rho, H = eigen_canonical_x_variates(X, Y)
    Xc = X - X.mean(0)
    w = np.abs(H.T @ Xc).sum(axis=1)
    ref = np.sum(w / w.sum() * rho)
    assert value("pwcca", X, Y) == pytest.approx(ref, abs=1e-8)
    assert value("pwcca", X, Y) != pytest.approx(value("cca_mean", X, Y), abs=1e-3)  # the weighting matters


def test_pwcca_asymmetry_and_invariances_as_declared():
    X, Y = correlated(400, 12, 7, seed=8)
    spec = get_metric("pwcca").spec
    assert not spec.symmetric and "orthogonal" not in spec.invariances
    v = value("pwcca", X, Y)
    assert abs(value("pwcca", Y, X) - v) > 1e-3
    rng = np.random.default_rng(9)
    assert value("pwcca", X, Y @ rng.standard_normal((7, 7))) == pytest.approx(v, abs=1e-10)  # any map of Y
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    assert abs(value("pwcca", X @ Q, Y) - v) > 1e-4  # X's neurons define the weights: rotation changes them


def test_rank_deficient_inputs_count_the_rank():
    X, Y = correlated(300, 6, 9, seed=10)
    dead = np.zeros((300, 3))
    X_padded = np.hstack([X, dead, X[:, :2] * 2.0 - 1.0])  # dead ReLU units and duplicated features
    for metric_id in ("cca_mean", "cca_r2", "svcca[keep=1.0]"):
        assert value(metric_id, X_padded, Y) == pytest.approx(value(metric_id, X, Y), abs=1e-10), metric_id
        assert value(metric_id, Y, X_padded) == pytest.approx(value(metric_id, Y, X), abs=1e-10), metric_id
    # pwcca weighs X's neurons: dead ones add nothing, a duplicated one counts twice
    assert value("pwcca", np.hstack([X, dead]), Y) == pytest.approx(value("pwcca", X, Y), abs=1e-10)
    assert value("pwcca", Y, X_padded) == pytest.approx(value("pwcca", Y, X), abs=1e-10)
    assert value("cca_mean", X_padded, Y) == pytest.approx(eigen_canonical_correlations(X, Y).mean(), abs=1e-8)


def test_wide_but_low_rank_input_is_scored():
    rng = np.random.default_rng(11)
    Z = rng.standard_normal((80, 5))
    X = Z @ rng.standard_normal((5, 120))  # p ≥ n, rank 5
    Y = Z[:, :3] + 0.3 * rng.standard_normal((80, 3))
    assert value("cca_mean", X, Y) == pytest.approx(value("cca_mean", Z, Y), abs=1e-8)


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "pwcca"])
def test_full_rank_wide_input_raises_helpful_error(metric_id):
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((50, 60)), rng.standard_normal((50, 5))
    with pytest.raises(InputError, match=r"rank 49 .*n = 50.*svcca"):
        metrics.score(metric_id, X, Y)
    with pytest.raises(InputError, match="Y has rank 49"):
        metrics.score(metric_id, Y, X)


def test_svcca_refuses_a_cut_that_fills_the_sample_space():
    rng = np.random.default_rng(13)
    X, Y = rng.standard_normal((40, 100)), rng.standard_normal((40, 3))  # all 39 centred dims hold variance
    with pytest.raises(InputError, match="Lower keep"):
        metrics.score("svcca[keep=1.0]", X, Y)
    assert 0.0 <= metrics.score("svcca[keep=0.5]", X, Y) <= 1.0


@pytest.mark.parametrize("keep", ["0", "-0.1", "1.5"])
def test_svcca_bad_keep_raises(keep):
    with pytest.raises(ValueError, match="0 < keep <= 1"):
        get_metric(f"svcca[keep={keep}]")


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "svcca", "pwcca"])
def test_float32_agrees_and_translation_is_harmless(metric_id):
    X, Y = correlated(500, 16, 12, seed=14)
    ref = value(metric_id, X, Y)
    X32 = torch.as_tensor(X, dtype=torch.float32)
    Y32 = torch.as_tensor(Y, dtype=torch.float32)
    assert float(get_metric(metric_id)(X32, Y32)) == pytest.approx(ref, abs=1e-4)
    offset = 2e4 * torch.randn(16, generator=torch.Generator().manual_seed(0))
    assert float(get_metric(metric_id)(X32, X32 + offset)) > 0.999


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "svcca"])
def test_gradients_are_correct(metric_id):
    X, Y = correlated(20, 4, 3, seed=15)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = torch.tensor(Y, requires_grad=True)
    m = get_metric(metric_id)
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (Xt, Yt))


def test_pwcca_gradient_is_finite_with_weights_held_constant():
    X, Y = correlated(60, 5, 4, seed=16)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = torch.tensor(Y, requires_grad=True)
    get_metric("pwcca")(Xt, Yt).backward()
    assert torch.isfinite(Xt.grad).all() and torch.isfinite(Yt.grad).all()
    assert Yt.grad.abs().max() > 0


def test_width_normalised_cca_mean_counts_deleted_directions():
    """cca_mean averages over min(rank X̃, rank Ỹ): deleting principal directions of Y (pc_deletion) removes them
    from the average, so the surviving correlations still read 1. normalize=width divides Σρᵢ by min(p1, p2)."""
    X, _ = correlated(400, 10, 4, seed=20)
    Xc = X - X.mean(0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    Y = Xc - Xc @ Vt[:3].T @ Vt[:3]  # top 3 principal components deleted: rank 7 of width 10
    rho = eigen_canonical_correlations(X, Y @ Vt[3:].T)  # the 7 correlations, in full-rank coordinates
    assert value("cca_mean", X, Y) == pytest.approx(rho.mean(), abs=1e-8) == pytest.approx(1.0, abs=1e-8)
    assert value("cca_mean[normalize=width]", X, Y) == pytest.approx(rho.sum() / 10, abs=1e-8)
    assert value("cca_mean[normalize=width]", X, Y) == pytest.approx(0.7, abs=1e-8)
    X2, Y2 = correlated(300, 9, 14, seed=21)  # full rank: the conventions agree
    assert value("cca_mean[normalize=width]", X2, Y2) == pytest.approx(value("cca_mean", X2, Y2), abs=1e-12)


def test_duplicated_samples_count_once_in_the_rank_check():
    """5 distinct samples repeated to n = 60 rows: the centred span of any X has at most 4 dimensions, so a rank-4
    X fills it and every canonical correlation is 1 whatever Y is; refused like rank ≥ n − 1."""
    rng = np.random.default_rng(22)
    rows = rng.integers(0, 5, 60)
    rows[:5] = np.arange(5)
    X, Y = rng.standard_normal((5, 6))[rows], rng.standard_normal((5, 3))[rows]
    for metric_id in ("cca_mean", "cca_r2", "pwcca", "svcca[keep=1.0]"):
        with pytest.raises(InputError, match=r"5 distinct"):
            metrics.score(metric_id, X, Y)


def test_pwcca_refuses_weights_that_depend_on_an_arbitrary_basis():
    """rank X̃ + rank Ỹ ≥ n + 1: at least two canonical correlations are 1 by dimension count alone, the canonical
    variates of that tied group are any basis of it, and the projection weights (an ℓ1 sum) change with the basis."""
    rng = np.random.default_rng(23)
    X, Y = rng.standard_normal((20, 11)), rng.standard_normal((20, 10))  # 11 + 10 − 19 = 2 forced ones
    with pytest.raises(InputError, match="pwcca: .* by dimension count"):
        metrics.score("pwcca", X, Y)
    assert 0 < metrics.score("pwcca", X[:, :10], Y) <= 1  # one forced 1: its direction is unique
    assert metrics.score("pwcca", X[:, :8], X[:, :8] @ rng.standard_normal((8, 8))) == pytest.approx(1.0)


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_mean[normalize=width]", "cca_r2", "svcca", "pwcca"])
@pytest.mark.parametrize("k", [-30, -20, 20, 30])
def test_float32_at_extreme_scales(metric_id, k):
    X, Y = correlated(200, 8, 6, seed=24)
    X32, Y32 = (torch.as_tensor(A * 10.0**k, dtype=torch.float32) for A in (X, Y))
    ref = value(metric_id, X32.double(), Y32.double())
    assert float(get_metric(metric_id)(X32, Y32)) == pytest.approx(ref, abs=1e-5)


# ------------------------------------------------------------------ issue 22, item 2: the input's own precision
@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "pwcca", "svcca[keep=1.0]"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(60, 300), rank=st.integers(1, 12), extra=st.integers(1, 200), p2=st.integers(1, 8),
       offset=st.sampled_from([0.0, 3.0, -50.0]), seed=st.integers(0, 2**32 - 1))
def test_low_rank_float32_activations_score_their_exact_value(metric_id, n, rank, extra, p2, offset, seed):
    """Low-rank activations rounded to float32 (the precision real activations come in) score the value of the
    unrounded low-rank data, computed in float64 (the default) or float32: rounding noise is not signal. Before,
    the float64 computation counted the float32 rounding as p1 − rank extra directions (issue 22: cca_mean 0.78
    for 0.35 on rank-10 data of 256 features)."""
    assume(rank + 2 * p2 + 3 < n)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank))
    X64 = Z @ rng.standard_normal((rank, rank + extra)) + offset
    X32 = X64.astype(np.float32)
    Y = Z[:, : min(rank, p2)] @ rng.standard_normal((min(rank, p2), p2)) + 0.5 * rng.standard_normal((n, p2))
    exact = metrics.score(metric_id, X64, Y)
    assert metrics.score(metric_id, X32, Y) == pytest.approx(exact, abs=1e-5)
    assert metrics.score(metric_id, X32, Y, dtype=torch.float32) == pytest.approx(exact, abs=1e-4)


def test_the_issue_22_example_reads_its_exact_values():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(500, 10))
    X64 = Z @ rng.normal(size=(10, 256))
    Y = Z[:, :2] @ rng.normal(size=(2, 8)) + 0.5 * rng.normal(size=(500, 8))
    for metric_id in ("cca_mean", "cca_r2", "pwcca"):
        exact = metrics.score(metric_id, X64, Y)
        assert 0.2 < exact < 0.4
        assert metrics.score(metric_id, X64.astype(np.float32), Y) == pytest.approx(exact, abs=1e-6), metric_id


def test_a_representation_made_of_rounding_is_refused():
    """Spread far below the rounding of a large offset in float32: every centred direction is rounding noise."""
    rng = np.random.default_rng(1)
    X = (1e6 + 0.1 * rng.standard_normal((200, 4))).astype(np.float32)
    Y = rng.standard_normal((200, 3))
    assert len(np.unique(X)) > 1  # not constant: a few float32 steps apart
    with pytest.raises(InputError, match="no direction above the rounding"):
        metrics.score("cca_mean", X, Y)
    assert 0 <= metrics.score("cca_mean", X.astype(np.float64) - 1e6, Y) <= 1  # the same numbers, exact: scored


@pytest.mark.parametrize("metric_id", ["cca_mean", "svcca", "pwcca"])
def test_float32_on_the_moments_route_keeps_float32_precision(metric_id):
    """float32 data computed in float32 reads the float64 value of the same numbers to a few ε₃₂ (pwcca: 8e-7, its
    weights amplify the products' rounding). pwcca's weights come from singular vectors, which float32 rotates
    within clusters of close correlations: taken in float32 they moved the value by 3.6e-6 here (3e-5 at
    p = 300), so its decomposition stays in float64."""
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(500, 8, generator=g, dtype=torch.float64)
    X = Z @ torch.randn(8, 64, generator=g, dtype=torch.float64) + 0.5 * torch.randn(500, 64, generator=g,
                                                                                      dtype=torch.float64) + 1e3
    Y = Z @ torch.randn(8, 40, generator=g, dtype=torch.float64) + 0.5 * torch.randn(500, 40, generator=g,
                                                                                      dtype=torch.float64)
    X32, Y32 = X.float(), Y.float()
    ref = value(metric_id, X32.double(), Y32.double())
    assert float(get_metric(metric_id)(X32, Y32)) == pytest.approx(ref, abs=2e-6 if metric_id == "pwcca" else 3e-7)
