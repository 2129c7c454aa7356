"""Centred kernel alignment: linear CKA, its debiased (unbiased-HSIC) form, and Gaussian-kernel CKA.

HSIC(K, L) = tr(K H L H)/(n−1)², CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (Kornblith et al. 2019,
"Similarity of Neural Network Representations Revisited", ICML).
"""

from __future__ import annotations

import torch

from .linalg import center, double_center, gram
from .spec import register

_CKA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation")


def _feature_route_cheaper(n: int, p1: int, p2: int) -> bool:
    """Feature route: n·(p1² + p2² + p1·p2) multiply-adds; Gram route: n²·(p1 + p2) + 3n²."""
    return n * (p1 * p1 + p2 * p2 + p1 * p2) <= n * n * (p1 + p2 + 3)


def linear_cka_feature(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via p×p products: ||Ỹᵀ X̃||²_F / (||X̃ᵀ X̃||_F ||Ỹᵀ Ỹ||_F)."""
    return (Yc.T @ Xc).square().sum() / (
        torch.linalg.matrix_norm(Xc.T @ Xc) * torch.linalg.matrix_norm(Yc.T @ Yc)
    )


def linear_cka_gram(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via n×n Grams: <K, L>_F / (||K||_F ||L||_F), K = X̃X̃ᵀ, L = ỸỸᵀ."""
    K, L = gram(Xc), gram(Yc)
    return (K * L).sum() / (torch.linalg.matrix_norm(K) * torch.linalg.matrix_norm(L))


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
    fewer multiply-adds; both give the same value. Features are centred before any product (float32-sound).
    """
    Xc, Yc = center(X), center(Y)
    if _feature_route_cheaper(X.shape[0], X.shape[1], Y.shape[1]):
        return linear_cka_feature(Xc, Yc)
    return linear_cka_gram(Xc, Yc)


def _unbiased_hsic_parts(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """n(n−3)·HSIC₁ for linear kernels of centred features, without forming an n×n matrix.

    With K = X̃X̃ᵀ, K̂ = K − diag(K) and X̃ centred (so K1 = 0), the Song et al. 2012 estimator's terms are
    tr(K̂L̂) = ||ỸᵀX̃||²_F − Σᵢ kᵢᵢlᵢᵢ, 1ᵀK̂1 = −tr K and 1ᵀK̂L̂1 = Σᵢ kᵢᵢlᵢᵢ. HSIC₁ is unchanged by
    K → K + a1ᵀ + 1aᵀ, which is what centring does to a linear kernel, so centring first is exact.
    """
    n = Xc.shape[0]
    dx, dy = Xc.square().sum(1), Yc.square().sum(1)
    dd = (dx * dy).sum()
    cross = (Yc.T @ Xc).square().sum() if _feature_route_cheaper(n, Xc.shape[1], Yc.shape[1]) else (
        (gram(Xc) * gram(Yc)).sum()
    )
    return cross - dd + dx.sum() * dy.sum() / ((n - 1) * (n - 2)) - 2.0 * dd / (n - 2)


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
    xy = _unbiased_hsic_parts(Xc, Yc)
    xx = _unbiased_hsic_parts(Xc, Xc)
    yy = _unbiased_hsic_parts(Yc, Yc)
    return xy / torch.sqrt(xx * yy)


def squared_distances(Xc: torch.Tensor) -> torch.Tensor:
    """All n² squared Euclidean distances ||xᵢ − xⱼ||², from centred rows, clamped at 0, exact 0 diagonal."""
    sq = Xc.square().sum(1)
    D = (sq[:, None] + sq[None, :] - 2.0 * (Xc @ Xc.T)).clamp_min(0.0)
    return D.fill_diagonal_(0.0)


def median_all(D: torch.Tensor) -> torch.Tensor:
    """Ordinary median of every entry (mean of the two middle values when the count is even)."""
    flat = D.reshape(-1)
    N = flat.numel()
    lo = torch.kthvalue(flat, (N + 1) // 2).values
    if N % 2:
        return lo
    return 0.5 * (lo + torch.kthvalue(flat, N // 2 + 1).values)


def rbf_kernel(X: torch.Tensor, sigma: float) -> torch.Tensor:
    """k(a, b) = exp(−||a − b||² / (2·sigma²·m)), m = median of all n² squared distances (diagonal included)."""
    D = squared_distances(center(X))
    return torch.exp(D / (-2.0 * sigma * sigma * median_all(D).detach()))


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
    """
    K = double_center(rbf_kernel(X, sigma))
    L = double_center(rbf_kernel(Y, sigma))
    return (K * L).sum() / (torch.linalg.matrix_norm(K) * torch.linalg.matrix_norm(L))
