"""Centred kernel alignment: linear CKA, its debiased (unbiased-HSIC) form, and Gaussian-kernel CKA.

HSIC(K, L) = tr(K H L H)/(n−1)², CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (Kornblith et al. 2019,
"Similarity of Neural Network Representations Revisited", ICML).
"""

from __future__ import annotations

import math

import torch

from simstress.core.linalg import center, double_center, feature_gram, frobenius, gram, hsic1
from simstress.core.metric import register
from simstress.core.selection import (
    TILE_BYTES,
    distance_tiles,
    median_all,
    median_sq_distance_tiled,
    squared_distances,
)

_CKA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation")


def _feature_route_cheaper(n: int, p1: int, p2: int) -> bool:
    """Feature route: n·(p1² + p2² + p1·p2) multiply-adds; Gram route: n²·(p1 + p2) + 3n²."""
    return n * (p1 * p1 + p2 * p2 + p1 * p2) <= n * n * (p1 + p2 + 3)


def cka_from_moments(cxy: torch.Tensor, cxx: torch.Tensor, cyy: torch.Tensor) -> torch.Tensor:
    """Linear CKA from the centred co-moments X̃ᵀỸ, X̃ᵀX̃, ỸᵀỸ: ||X̃ᵀỸ||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F).

    Kornblith et al. 2019's linear CKA; the full-batch feature route and the streaming moments share it.
    """
    return cxy.square().sum() / (frobenius(cxx) * frobenius(cyy))


def linear_cka_feature(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via p×p products: `cka_from_moments` of ỸᵀX̃, X̃ᵀX̃, ỸᵀỸ.

    X̃ᵀX̃ and ỸᵀỸ take the symmetric-panel route (`feature_gram`, ~56% of a GEMM's flops).
    """
    return cka_from_moments(Yc.T @ Xc, feature_gram(Xc), feature_gram(Yc))


def linear_cka_gram(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via n×n Grams: <K, L>_F / (||K||_F ||L||_F), K = X̃X̃ᵀ, L = ỸỸᵀ."""
    K, L = gram(Xc), gram(Yc)
    return (K * L).sum() / (frobenius(K) * frobenius(L))


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=2,
    cost="O(n·min(p², n·p))",
    reference="Kornblith et al. 2019, Similarity of Neural Network Representations Revisited (ICML)",
)
def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Linear CKA: ||ỸᵀX̃||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F) on column-centred X̃, Ỹ (biased HSIC).

    Takes the feature route (p×p products, O(n·p²)) or the Gram route (n×n products, O(n²·p)), whichever costs
    fewer multiply-adds; both give the same value. Features are centred before any product (float32-sound),
    with one centred copy per input; memory O(n·p + p²) on the feature route.
    """
    Xc, Yc = center(X), center(Y)
    if _feature_route_cheaper(X.shape[0], X.shape[1], Y.shape[1]):
        return linear_cka_feature(Xc, Yc)
    return linear_cka_gram(Xc, Yc)


def _alignment(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """<X̃X̃ᵀ, ỸỸᵀ>_F = ||ỸᵀX̃||²_F by the cheaper route; a self term (Yc is Xc) uses the symmetric product."""
    if _feature_route_cheaper(Xc.shape[0], Xc.shape[1], Yc.shape[1]):
        return (feature_gram(Xc) if Yc is Xc else Yc.T @ Xc).square().sum()
    K = gram(Xc)
    return (K.square() if Yc is Xc else K * gram(Yc)).sum()


def _linear_hsic1(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """`hsic1` of the linear kernels K = X̃X̃ᵀ, L = ỸỸᵀ of centred features, without forming an n×n matrix.

    With K̂ = K − diag(K) and X̃ centred (so K1 = 0, hence K̂1 = −diag K), Song et al. 2012's parts are
    tr(K̂L̂) = ||ỸᵀX̃||²_F − Σᵢ kᵢᵢlᵢᵢ, 1ᵀK̂1 = −tr K and 1ᵀK̂L̂1 = Σᵢ kᵢᵢlᵢᵢ. HSIC₁ is unchanged by
    K → K + a1ᵀ + 1aᵀ, which is what centring does to a linear kernel, so centring first is exact.
    """
    dx, dy = Xc.square().sum(1), Yc.square().sum(1)
    dd = (dx * dy).sum()
    return hsic1(_alignment(Xc, Yc) - dd, -dx.sum(), -dy.sum(), dd, Xc.shape[0])


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=4,
    value_range=(-1.0, 1.0),
    cost="O(n·min(p², n·p))",
    reference="Song et al. 2012, Feature Selection via Dependence Maximization (JMLR); "
    "Kornblith et al. 2019 (debiased=True)",
)
def linear_cka_debiased(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Debiased linear CKA: HSIC₁(K, L)/√(HSIC₁(K, K)·HSIC₁(L, L)) with the unbiased estimator HSIC₁.

    HSIC₁(K, L) = [tr(K̂L̂) + 1ᵀK̂1·1ᵀL̂1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̂L̂1] / (n(n−3)), K̂ = K with zero
    diagonal (Song et al. 2012). Near 0 for independent data even when p ≫ n; may be slightly negative, and
    is reported as is (never clipped). Needs n ≥ 4.
    """
    Xc, Yc = center(X), center(Y)
    return _linear_hsic1(Xc, Yc) / torch.sqrt(_linear_hsic1(Xc, Xc) * _linear_hsic1(Yc, Yc))


def rbf_kernel(X: torch.Tensor, sigma: float) -> torch.Tensor:
    """k(a, b) = exp(−||a − b||² / (2·sigma²·m)), m = median of all n² squared distances (diagonal included)."""
    D = squared_distances(center(X))
    return torch.exp(D / (-2.0 * sigma * sigma * median_all(D).detach()))


# Above this size of one n×n matrix rbf_cka switches to row tiles (the untiled path holds about six of them).
RBF_UNTILED_MAX_BYTES = 2**27


def _centred_alignment(X: torch.Tensor, Y: torch.Tensor, sigma: float, tile_bytes: int) -> torch.Tensor:
    """<HKH, HLH>_F / (||HKH||_F ||HLH||_F) from row tiles, float64 accumulators.

    <HAH, HBH> = <A, B> − (2/n)·(A1)ᵀ(B1) + (1ᵀA1)(1ᵀB1)/n² for symmetric A, B. The kernels are shifted by
    their value at the median distance, e^(−1/(2σ²)), first: H(K − c11ᵀ)H = HKH, and the shift leaves small
    terms, so the expansion cancels little.
    """
    n = X.shape[0]
    Xc, Yc = center(X), center(Y)
    gx = -0.5 / (sigma * sigma * median_sq_distance_tiled(Xc, tile_bytes))
    gy = -0.5 / (sigma * sigma * median_sq_distance_tiled(Yc, tile_bytes))
    c = math.exp(-0.5 / (sigma * sigma))
    f64 = dict(dtype=torch.float64, device=X.device)
    rows = {"K": torch.zeros(n, **f64), "L": torch.zeros(n, **f64)}
    dots = {"KL": torch.zeros((), **f64), "KK": torch.zeros((), **f64), "LL": torch.zeros((), **f64)}
    for (i0, i1, K), (_, _, L) in zip(distance_tiles(Xc, tile_bytes), distance_tiles(Yc, tile_bytes)):
        b = i1 - i0
        tile = {"K": K.mul_(gx).exp_().sub_(c), "L": L.mul_(gy).exp_().sub_(c)}
        for name, A in tile.items():
            rows[name][i0:i1] += A.sum(1)
            rows[name][i1:] += A[:, b:].sum(0)
        for name in dots:
            P = tile[name[0]] * tile[name[1]]
            dots[name] += 2.0 * P.sum().double() - P[:, :b].sum().double()
    sums = {name: r.sum() for name, r in rows.items()}

    def hsic(a: str, b: str) -> torch.Tensor:
        return dots[a + b] - 2.0 / n * (rows[a] @ rows[b]) + sums[a] * sums[b] / (n * n)

    return (hsic("K", "L") / torch.sqrt(hsic("K", "K") * hsic("L", "L"))).to(X.dtype)


@torch.no_grad()
def rbf_cka_tiled(X: torch.Tensor, Y: torch.Tensor, sigma: float = 1.0, tile_bytes: int = TILE_BYTES,
                  ) -> torch.Tensor:
    """`rbf_cka` in row tiles: memory O(n·p + tile), time O(n²·p), no autograd. rbf_cka calls it for large n."""
    if not {X.dtype, Y.dtype} <= {torch.float32, torch.float64}:
        raise TypeError(f"tiled rbf_cka runs in float32 or float64; got {X.dtype} and {Y.dtype}")
    dtype = torch.promote_types(X.dtype, Y.dtype)  # both tile sequences must share their row boundaries
    return _centred_alignment(X.to(dtype), Y.to(dtype), sigma, tile_bytes)


def _check_sigma(params: dict) -> None:
    if not params["sigma"] > 0:
        raise ValueError(f"rbf_cka needs sigma > 0 (a multiple of the median distance); got {params['sigma']}")


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=2,
    cost="O(n²·p)",
    reference="Kornblith et al. 2019 (RBF CKA, median heuristic); Davari et al. 2023, Fig. 4a (sigma 1, 0.5, 0.2)",
    variants=({"sigma": 0.5}, {"sigma": 0.2}),
    check_params=_check_sigma,
)
def rbf_cka(X: torch.Tensor, Y: torch.Tensor, *, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian-kernel CKA: <HKH, HLH>_F / (||HKH||_F ||HLH||_F), K_ij = exp(−||xᵢ − xⱼ||² / (2·sigma²·m_X)).

    Bandwidth convention (Kornblith et al.'s reference code; Davari et al.'s Fig. 4 notebooks): m_X is the
    ordinary median of all n² squared pairwise distances of X, zero diagonal included, computed separately for X
    and Y; `sigma` multiplies the median distance. sigma → ∞ recovers linear CKA. The median is treated as a
    constant under autograd.

    Memory: when one n×n matrix would exceed RBF_UNTILED_MAX_BYTES (128 MiB: n > 5792 in float32, n > 4096 in
    float64) and no gradient is being recorded, the value comes from `rbf_cka_tiled`: row tiles of the upper
    triangle, O(n·b) memory, the exact median by selection over tiles (`median_sq_distance_tiled`). The tiled
    path computes without autograd, so with inputs that require grad the untiled path is always taken.
    """
    n = X.shape[0]
    needs_grad = torch.is_grad_enabled() and (X.requires_grad or Y.requires_grad)
    if not needs_grad and n * n * max(X.element_size(), Y.element_size()) > RBF_UNTILED_MAX_BYTES:
        return rbf_cka_tiled(X, Y, sigma)
    K = double_center(rbf_kernel(X, sigma))
    L = double_center(rbf_kernel(Y, sigma))
    return (K * L).sum() / (frobenius(K) * frobenius(L))
