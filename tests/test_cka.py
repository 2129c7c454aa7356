"""Linear, debiased and RBF CKA against independent routes and the closed forms of Davari et al. 2023."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from simstress import metrics
from simstress.core.inputs import InputError
from simstress.core.linalg import center, hsic1
from simstress.core.selection import median_all, squared_distances
from simstress.metrics.cka import linear_cka_feature, linear_cka_gram

from .references import u_statistic_hsic


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

    def hsic(A: np.ndarray, B: np.ndarray) -> float:
        return np.trace(A @ H @ B @ H)

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


@pytest.mark.parametrize("sigma", ["0", "-1", "1e-200", "0.009", "100.5", "1e200", "inf", "nan"])
def test_rbf_cka_refuses_sigma_outside_the_sane_range(sigma: str) -> None:
    with pytest.raises(ValueError, match="0.01 <= sigma <= 100"):
        metrics.get_metric(f"rbf_cka[sigma={sigma}]")
    for sigma_ok in ("0.01", "100"):
        assert metrics.get_metric(f"rbf_cka[sigma={sigma_ok}]").params["sigma"] == float(sigma_ok)


def test_rbf_cka_large_sigma_is_accurate_in_float32() -> None:
    """The kernel is formed as K − 1 = expm1(−γD): exp(−γD) in float32 would keep only ε·2σ² of its informative part
    (1e-3 at σ = 100)."""
    X, Y = correlated(300, 20, 15, seed=2)
    for sigma in (10, 100):
        ref = metrics.score(f"rbf_cka[sigma={sigma}]", X.float().double(), Y.float().double())
        assert abs(metrics.score(f"rbf_cka[sigma={sigma}]", X.float(), Y.float(), dtype=torch.float32) - ref) < 1e-6


@pytest.mark.parametrize("median", ["ordinary", "lower"])
def test_rbf_cka_refuses_a_zero_median_distance(median: str) -> None:
    """More than half the n² pairs are duplicates: the median squared distance is 0 and so is the bandwidth."""
    X, Y = correlated(40, 5, 4, seed=8)
    dup = X.clone()
    dup[:30] = X[0]
    with pytest.raises(InputError, match="median squared distance of X is 0"):
        metrics.score(f"rbf_cka[median={median}]", dup, Y)
    with pytest.raises(InputError, match="median squared distance of Y is 0"):
        metrics.get_metric(f"rbf_cka[median={median}]")(Y[:, :3], dup)


def test_rbf_cka_conventions_differ_at_exactly_half_zeros() -> None:
    """n = 6 with 4 identical rows: 4² + 2 = 18 of the 36 distances are 0, so the lower median (rank 18) is 0 and
    refused, while the ordinary median (ranks 18 and 19 averaged) is positive."""
    X, Y = correlated(6, 5, 4, seed=8)
    X[:4] = X[0]
    assert 0 < metrics.score("rbf_cka", X, Y) <= 1
    with pytest.raises(InputError, match="median squared distance of X is 0"):
        metrics.score("rbf_cka[median=lower]", X, Y)


def test_rbf_cka_refuses_a_kernel_that_is_numerically_the_identity() -> None:
    """sigma = 0.01 on spread-out data: even the closest pair has k = exp(−γ·D_min) < 2⁻²⁴, so HKH is H."""
    g = torch.Generator().manual_seed(9)
    X = torch.randn(30, 50, generator=g, dtype=torch.float64)  # distances concentrate near the median
    with pytest.raises(InputError, match="kernel of X is numerically the identity"):
        metrics.score("rbf_cka[sigma=0.01]", X, X[:, :10])
    assert 0 < metrics.score("rbf_cka[sigma=0.2]", X, X[:, :10]) < 1


def test_rbf_cka_lower_median_matches_the_papers_convention() -> None:
    """Davari et al. 2023's Fig. 4 convention: bandwidth (σ·m)² with m the lower median of all n² pairwise
    distances (not squared), zero diagonal included; numpy route with np.sort, not simstress's selection."""
    X, Y = correlated(50, 6, 9, seed=4)  # n² = 2500 is even: the two conventions differ
    sigma = 0.2

    def kernel(A: np.ndarray) -> np.ndarray:
        d = np.sqrt(cdist(A, A, "sqeuclidean"))
        flat = np.sort(d.ravel())
        m = flat[(flat.size - 1) // 2]  # the lower of the two middle values
        assert m < 0.5 * (flat[flat.size // 2 - 1] + flat[flat.size // 2]) or flat[flat.size // 2 - 1] == flat[
            flat.size // 2]
        return np.exp(-(d**2) / (2 * (sigma * m) ** 2))

    H = np.eye(50) - 1 / 50
    K, L = H @ kernel(X.numpy()) @ H, H @ kernel(Y.numpy()) @ H
    expected = (K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L))
    got = metrics.score("rbf_cka[median=lower,sigma=0.2]", X, Y)
    assert abs(got - expected) < 1e-10
    assert abs(got - metrics.score("rbf_cka[sigma=0.2]", X, Y)) > 1e-6  # the convention is visible


def test_median_all_lower_is_the_lower_middle_value() -> None:
    D = torch.tensor([[0.0, 1.0], [3.0, 10.0]])
    assert float(median_all(D, lower=True)) == 1.0 and float(median_all(D)) == 2.0
    assert float(median_all(torch.tensor([[0.0, 1.0, 5.0]]), lower=True)) == 1.0  # odd count: the median


def test_debiased_refuses_a_single_distinct_row_and_never_returns_nan() -> None:
    """All rows but one identical: the U-centred kernel vanishes (its off-diagonal part is additive), HSIC₁(K, K) = 0,
    and the ratio is 0/0; today's value was rounding noise (1e-11)."""
    X, Y = correlated(60, 8, 6, seed=6)
    one = X.clone()
    one[:] = X[0]
    one[5] = X[5]
    m = metrics.get_metric("linear_cka_debiased")
    with pytest.raises(InputError, match="single distinct row"):
        m(one, Y)
    with pytest.raises(InputError, match="single distinct row"):
        metrics.score("linear_cka_debiased", Y, one)


@pytest.mark.parametrize(("spread", "dtype"), [(1e-9, torch.float64), (1e-12, torch.float64), (1e-6, torch.float32)])
def test_debiased_refuses_a_self_hsic_that_is_zero_to_rounding(spread: float, dtype: torch.dtype) -> None:
    """A single distinct row plus near-duplicates (spread 1e-9): HSIC₁(K, K) is below its rounding, so the old value
    was noise (−0.0008 in float64; NaN in float32 at 1e-6, in float64 at 1e-12)."""
    X, Y = correlated(60, 8, 6, seed=6)
    g = torch.Generator().manual_seed(1)
    near = X[0] + spread * torch.randn(60, 8, generator=g, dtype=torch.float64)
    near[5] = X[5]
    with pytest.raises(InputError, match="HSIC₁ of X with itself is .* zero to rounding"):
        metrics.score("linear_cka_debiased", near, Y, dtype=dtype)
    near = X[0] + 1e-2 * torch.randn(60, 8, generator=g, dtype=torch.float64)
    near[5] = X[5]
    assert abs(metrics.score("linear_cka_debiased", near, Y, dtype=dtype)) < 1


@pytest.mark.parametrize("metric_id", ["linear_cka", "linear_cka_debiased", "rbf_cka"])
def test_cka_self_similarity_stays_in_range_in_float32(metric_id: str) -> None:
    """Different routes for the numerator and the norms round differently; the value is clamped to the range."""
    g = torch.Generator().manual_seed(0)
    hi = metrics.get_metric(metric_id).spec.value_range[1]
    for _ in range(50):
        X = torch.randn(40, 7, generator=g)
        assert float(metrics.get_metric(metric_id)(X, X)) <= hi


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

    def H(K: torch.Tensor) -> torch.Tensor:
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()

    K, L = H(Xf @ Xf.T), H(Yf @ Yf.T)
    Kc = (K * L).sum() / ((K * K).sum().sqrt() * (L * L).sum().sqrt())
    assert float(Kc) < 0.5
