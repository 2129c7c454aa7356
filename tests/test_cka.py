"""Linear, debiased and RBF CKA against independent routes and the closed forms of Davari et al. 2023."""

import math

import numpy as np
import pytest
import torch
from references import u_statistic_hsic
from scipy.spatial.distance import cdist

from simstress import metrics
from simstress.core.linalg import center, hsic1
from simstress.core.selection import median_all, squared_distances
from simstress.metrics.cka import linear_cka_feature, linear_cka_gram


def correlated(n: int, p1: int, p2: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, 4, generator=g, dtype=torch.float64)
    X = Z @ torch.randn(4, p1, generator=g, dtype=torch.float64) + torch.randn(n, p1, generator=g, dtype=torch.float64)
    Y = Z @ torch.randn(4, p2, generator=g, dtype=torch.float64) + torch.randn(n, p2, generator=g, dtype=torch.float64)
    return X + 3.0, Y - 1.0


@pytest.mark.parametrize(("n", "p1", "p2"), [(200, 10, 30), (50, 300, 120), (100, 100, 100)])
def test_feature_and_gram_routes_agree(n: int, p1: int, p2: int) -> None:
    X, Y = correlated(n, p1, p2)
    Xc, Yc = center(X), center(Y)
    a, b = float(linear_cka_feature(Xc, Yc)), float(linear_cka_gram(Xc, Yc))
    assert abs(a - b) < 1e-10
    assert abs(metrics.score("linear_cka", X, Y) - a) < 1e-10


def test_linear_cka_matches_hsic_with_explicit_centring_matrix() -> None:
    """The textbook route: tr(KHLH) with a dense H (fine at n = 60 in a test, never in the library)."""
    X, Y = correlated(60, 7, 9)
    K, L = (X @ X.T).numpy(), (Y @ Y.T).numpy()
    H = np.eye(60) - 1.0 / 60
    hsic = lambda A, B: np.trace(A @ H @ B @ H)  # noqa: E731
    expected = hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))
    assert abs(metrics.score("linear_cka", X, Y) - expected) < 1e-12


@pytest.mark.parametrize(("n", "p1", "p2"), [(40, 5, 8), (30, 60, 50)])
def test_debiased_matches_direct_u_statistic(n: int, p1: int, p2: int) -> None:
    X, Y = correlated(n, p1, p2, seed=3)
    K, L = (X @ X.T).numpy(), (Y @ Y.T).numpy()
    expected = u_statistic_hsic(K, L) / math.sqrt(u_statistic_hsic(K, K) * u_statistic_hsic(L, L))
    assert abs(metrics.score("linear_cka_debiased", X, Y) - expected) < 1e-10


def test_hsic1_from_kernel_parts_matches_u_statistic() -> None:
    """The one HSIC₁ formula, fed the parts of arbitrary symmetric (uncentred) kernels, against the reference."""
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(25, 3)), rng.normal(size=(25, 4))
    K, L = np.exp(-cdist(X, X, "sqeuclidean")), (Y @ Y.T + 2.0) ** 2
    Kh, Lh = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    parts = [torch.tensor(v) for v in ((Kh * Lh).sum(), Kh.sum(), Lh.sum(), Kh.sum(1) @ Lh.sum(1))]
    assert abs(float(hsic1(*parts, 25)) - u_statistic_hsic(K, L)) < 1e-12 * abs(u_statistic_hsic(K, L))


def test_debiased_is_near_zero_for_independent_highdim_where_biased_is_not() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 2000, generator=g, dtype=torch.float64)
    Y = torch.randn(100, 2000, generator=g, dtype=torch.float64)
    assert metrics.score("linear_cka", X, Y) > 0.8
    assert abs(metrics.score("linear_cka_debiased", X, Y)) < 0.05


def test_debiased_may_be_negative_and_is_not_clipped() -> None:
    g = torch.Generator().manual_seed(5)
    values = [
        metrics.score("linear_cka_debiased", torch.randn(12, 2, generator=g, dtype=torch.float64),
                      torch.randn(12, 2, generator=g, dtype=torch.float64))
        for _ in range(20)
    ]
    assert min(values) < 0.0


def test_rbf_cka_matches_numpy_reference() -> None:
    """Independent numpy route with the documented bandwidth: ordinary median of all n² squared distances."""
    X, Y = correlated(80, 6, 9, seed=4)
    sigma = 0.5

    def kernel(A: np.ndarray) -> np.ndarray:
        D = cdist(A, A, "sqeuclidean")
        return np.exp(-D / (2 * sigma**2 * np.median(D)))

    H = np.eye(80) - 1 / 80
    K, L = H @ kernel(X.numpy()) @ H, H @ kernel(Y.numpy()) @ H
    expected = (K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L))
    assert abs(metrics.score(f"rbf_cka[sigma={sigma}]", X, Y) - expected) < 1e-10


def test_median_is_the_ordinary_median_of_all_entries() -> None:
    X, _ = correlated(31, 4, 4)
    D = squared_distances(center(X))
    assert abs(float(median_all(D)) - float(np.median(cdist(X.numpy(), X.numpy(), "sqeuclidean")))) < 1e-10
    assert float(median_all(torch.tensor([[0.0, 1.0], [3.0, 10.0]]))) == 2.0


def test_rbf_cka_large_sigma_approaches_linear_cka() -> None:
    X, Y = correlated(300, 20, 15, seed=2)
    assert abs(metrics.score("rbf_cka[sigma=100]", X, Y) - metrics.score("linear_cka", X, Y)) < 1e-5


def test_rbf_cka_rejects_non_positive_sigma() -> None:
    with pytest.raises(ValueError, match="sigma > 0"):
        metrics.get_metric("rbf_cka[sigma=0]")


# Davari et al. 2023, Theorem 1 on X = {(1,0), (-1,0), (0,1), (0,-1)}: translate a subset by c·v, c = 1e7.
FOUR_POINTS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)


@pytest.mark.parametrize(("moved", "limit"), [((0,), math.sqrt(2) / 3), ((0, 2), math.sqrt(2) / 2), ((0, 1), 0.0)])
@pytest.mark.parametrize("angle", [0.0, 0.7, 2.0, 4.0])
def test_theorem1_closed_forms(moved: tuple[int, ...], limit: float, angle: float) -> None:
    v = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    Y = FOUR_POINTS.clone()
    Y[list(moved)] += 1e7 * v
    assert abs(metrics.score("linear_cka", FOUR_POINTS, Y) - limit) < 1e-6


def test_theorem1_finite_c_expression() -> None:
    """Davari et al. 2023, Theorem 1 (finite c, derived): CKA(c) = N(c) / (||A||_F √B2(c)) with A = X̃ᵀX̃,
    a = X̃ᵀu, u the centred indicator."""
    g = torch.Generator().manual_seed(7)
    X = torch.rand(120, 6, generator=g, dtype=torch.float64)
    T = torch.zeros(120, dtype=torch.float64)
    T[:30] = 1.0
    v = torch.randn(6, generator=g, dtype=torch.float64)
    v /= v.norm()
    Xc = center(X)
    A, u = Xc.T @ Xc, T - T.mean()
    a, s = Xc.T @ u, float(u @ u)
    nA = float(torch.linalg.matrix_norm(A))
    for c in (0.5, 3.0, 40.0, 1e3):
        N = nA**2 + 2 * c * float(v @ A @ a) + c**2 * float(a @ a)
        B2 = (nA**2 + 4 * c * float(v @ A @ a)
              + c**2 * (2 * float(a @ a) + 2 * float(a @ v) ** 2 + 2 * s * float(v @ A @ v))
              + 4 * c**3 * s * float(a @ v) + c**4 * s**2)
        expected = N / (nA * math.sqrt(B2))
        assert abs(metrics.score("linear_cka", X, X + c * T[:, None] * v) - expected) < 1e-12


def test_float32_global_translation_gram_trap_is_avoided() -> None:
    """Davari et al. 2023 (the LinCKA2 fix): Gram-side centring in float32 reads 0.0097 at c = 2e4; feature
    centring must stay ~1."""
    g = torch.Generator().manual_seed(0)
    X = torch.relu(torch.randn(2000, 256, generator=g, dtype=torch.float64))
    v = torch.randn(256, generator=g, dtype=torch.float64)
    v /= v.norm()
    Y = (X + 2e4 * v).float()
    assert metrics.score("linear_cka", X.float(), Y, dtype=torch.float32) > 0.999
    # The trap itself, reproduced: centre the float32 Grams instead of the features.
    Xf, Yf = X.float(), Y
    H = lambda K: K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()  # noqa: E731
    K, L = H(Xf @ Xf.T), H(Yf @ Yf.T)
    Kc = (K * L).sum() / ((K * K).sum().sqrt() * (L * L).sum().sqrt())
    assert float(Kc) < 0.5
