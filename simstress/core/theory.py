"""Closed forms of Davari et al. 2023 (Theorem 1, Corollary 3) for linear CKA under subset translation.

Setup (Davari et al. 2023, ICLR, Theorem 1): X (n, p), a subset T of ρn rows (0 < ρ < 1) translated by c·v,
||v|| = 1, U the other rows; X̃ the column-centred X, A = X̃ᵀX̃, u = 1_T − ρ1, s = uᵀu = nρ(1−ρ),
a = X̃ᵀu = nρ(1−ρ)(μ_T − μ_U).

    CKA_lin(X, X + c·1_T vᵀ) = N(c) / (||A||_F · sqrt(B2(c)))                                  (exact, any c)
    N(c)  = ||A||² + 2c·vᵀAa + c²·||a||²
    B2(c) = ||A||² + 4c·vᵀAa + c²·(2||a||² + 2(a·v)² + 2s·vᵀAv) + 4c³·s·(a·v) + c⁴·s²
    lim_{c→∞} = n·ρ(1−ρ)·||μ_T − μ_U||² / ||X̃ᵀX̃||_F                                           (Theorem 1, T1c)
    one point x_o (ρ = 1/n): lim = sqrt(dim_PR(X))·||x_o − x̄||² / ((n−1)·σ̄²)                   (Corollary 3)
    dim_PR(X) = ||X̃||_F⁴ / ||X̃ᵀX̃||²_F,   σ̄² = (1/n)·Σᵢ ||xᵢ − x̄||²

The exact finite-c forms follow from the definition of linear CKA (derived here); the limits are the paper's.
Every quantity is computed from the data in float64 (never hard-coded), without forming A when p > n:
||X̃ᵀX̃||_F = ||X̃X̃ᵀ||_F and vᵀAw = (X̃v)·(X̃w).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .linalg import center


def _centred64(X: torch.Tensor) -> torch.Tensor:
    return center(X.to(torch.float64))


def scatter_norm(Xc: torch.Tensor) -> torch.Tensor:
    """||X̃ᵀX̃||_F of centred Xc, through the smaller of the p×p and n×n products."""
    n, p = Xc.shape
    S = Xc.T @ Xc if p <= n else Xc @ Xc.T
    return S.square().sum().sqrt()


def rms_radius(X: torch.Tensor) -> float:
    """σ̄ = sqrt((1/n)·Σᵢ ||xᵢ − x̄||²), the RMS distance of the rows to their mean."""
    Xc = _centred64(X)
    return math.sqrt(float(Xc.square().sum()) / X.shape[0])


def participation_ratio(X: torch.Tensor) -> float:
    """dim_PR(X) = (Σλ)²/Σλ² = ||X̃||_F⁴ / ||X̃ᵀX̃||²_F (Gao et al. 2017), λ the covariance eigenvalues."""
    Xc = _centred64(X)
    return float(Xc.square().sum().square() / scatter_norm(Xc).square())


def _subset_indicator(translated: torch.Tensor, n: int) -> torch.Tensor:
    if translated.dtype != torch.bool or translated.shape != (n,):
        raise ValueError(f"`translated` must be a boolean mask of shape ({n},); got {translated.dtype} "
                         f"{tuple(translated.shape)}")
    k = int(translated.sum())
    if not 0 < k < n:
        raise ValueError(f"Theorem 1 needs a proper non-empty subset; {k} of {n} rows are translated")
    return translated.to(torch.float64)


def theorem1_limit(X: torch.Tensor, translated: torch.Tensor) -> float:
    """lim_{c→∞} CKA_lin(X, X + c·1_T vᵀ) = n·ρ(1−ρ)·||μ_T − μ_U||² / ||X̃ᵀX̃||_F (T1c), for every direction v."""
    n = X.shape[0]
    ind = _subset_indicator(translated, n)
    X64 = X.to(torch.float64)
    rho = float(ind.mean())
    mu_t = (ind @ X64) / (rho * n)
    mu_u = ((1.0 - ind) @ X64) / ((1.0 - rho) * n)
    gap = float((mu_t - mu_u).square().sum())
    return n * rho * (1.0 - rho) * gap / float(scatter_norm(_centred64(X)))


def theorem1_cka(X: torch.Tensor, translated: torch.Tensor, v: torch.Tensor, c: Sequence[float]) -> list[float]:
    """Exact CKA_lin(X, X + c·1_T v̂ᵀ) for each c, v̂ = v/||v||, from the finite-c expression above."""
    n = X.shape[0]
    ind = _subset_indicator(translated, n)
    Xc = _centred64(X)
    v64 = v.to(torch.float64)
    v64 = v64 / v64.square().sum().sqrt()
    u = ind - ind.mean()
    s = u.square().sum()
    a = Xc.T @ u
    Xv, Xa = Xc @ v64, Xc @ a
    A2 = scatter_norm(Xc).square()
    vAa, vAv, aa, av = Xv @ Xa, Xv.square().sum(), a.square().sum(), a @ v64
    cs = torch.tensor(list(c), dtype=torch.float64, device=X.device)
    N = A2 + 2 * cs * vAa + cs**2 * aa
    B2 = A2 + 4 * cs * vAa + cs**2 * (2 * aa + 2 * av**2 + 2 * s * vAv) + 4 * cs**3 * s * av + cs**4 * s**2
    return (N / (A2.sqrt() * B2.sqrt())).tolist()


def outlier_limit(X: torch.Tensor, index: int) -> float:
    """Corollary 3: lim_{c→∞} CKA_lin when only row `index` moves: sqrt(dim_PR)·||x_o − x̄||² / ((n−1)·σ̄²)."""
    n = X.shape[0]
    Xc = _centred64(X)
    sigma2 = float(Xc.square().sum()) / n
    return math.sqrt(participation_ratio(X)) * float(Xc[index].square().sum()) / ((n - 1) * sigma2)
