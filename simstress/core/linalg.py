"""Numerical building blocks shared by the metrics: centring, sums of squares, orthonormal bases, Gram products,
the unbiased HSIC₁."""

from __future__ import annotations

import itertools

import torch

# Column panel width of `feature_gram`: wide enough that every panel product runs at full GEMM speed.
_PANEL = 256
_MAX_PANELS = 8


def center_with_mean(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred copy X − 1·μᵀ (the action of H = I − 11ᵀ/n without forming H) and the mean μ (p,), float64.

    Centring features before any product is what keeps float32 sound under large translations (Davari et al.
    2023, §3: Gram-side centring loses everything by c = 2e4). A second pass removes the rounding left by the
    first mean, which matters when the offset dwarfs the spread; it runs in place, so one centred copy is all
    that is ever allocated (autograd is unaffected: the mean and the subtraction save no values). μ is the sum of
    both passes' means, added in float64 so that a streaming merge of batch means keeps the second pass's digits.
    """
    m1 = X.mean(dim=0, keepdim=True)
    Xc = X - m1
    m2 = Xc.mean(dim=0, keepdim=True)
    Xc.sub_(m2)
    return Xc, (m1.double() + m2.double()).squeeze(0)


def center(X: torch.Tensor) -> torch.Tensor:
    """Column-centred copy of X, as `center_with_mean`."""
    return center_with_mean(X)[0]


def power_of_two_scale(A: torch.Tensor) -> torch.Tensor:
    """2^−e (0-d, A's dtype and device, no gradient) with e the binary exponent of max |A|: A·2^−e has its largest
    |entry| in [1/2, 1). 1 for an all-zero A. No host sync."""
    lo, hi = torch.aminmax(A.detach())  # max |A| without an |A| copy
    _, e = torch.frexp(torch.maximum(-lo, hi))
    return torch.ldexp(torch.ones((), dtype=A.dtype, device=A.device), -e)


def center_rescaled(X: torch.Tensor) -> torch.Tensor:
    """`center(X)` multiplied, in place, by `power_of_two_scale` of itself: largest |entry| in [1/2, 1).

    For scale-invariant metrics. Multiplying by a power of two only shifts exponents, so every later product,
    sum, square root and ratio is the same bit for bit as on the unscaled data, except that nothing overflows or
    underflows: in float32, fourth powers (||X̃ᵀX̃||²_F) overflow from |x| ≈ 1e9 and squares underflow below 1e-19;
    at 1e20 linear CKA read NaN and Procrustes 0. Scaling after centring keeps an offset from setting the scale.
    Only entries below 2⁻¹²⁶ of the largest (float32) could round, as subnormals: far below anything they add.
    """
    Xc = center(X)
    return Xc.mul_(power_of_two_scale(Xc))


def frobenius(A: torch.Tensor) -> torch.Tensor:
    """||A||_F as √(ΣA²) with torch's cascade summation.

    torch.linalg.vector_norm / matrix_norm and torch.dot accumulate float32 naively on CPU: relative errors of
    1.6e-5 at 4e6 entries (a 2048² Gram) and 1e-3 at 1e8 entries (a 50000×2048 activation), measured here.
    `sum` keeps ~1e-7 at any size.
    """
    return A.square().sum().sqrt()


def feature_gram(Xc: torch.Tensor) -> torch.Tensor:
    """XcᵀXc (p, p) by symmetric column panels: only the upper block triangle is multiplied, then mirrored.

    With k panels the products cost (k+1)/(2k) of a full GEMM (k = 8: 56%), the symmetric rank-k update
    (BLAS syrk) that torch lacks, built from GEMM calls on strided views: no copy of Xc, any device, float32 or
    float64, differentiable. Each panel product equals the matching block of Xc.T @ Xc bit for bit.
    """
    p = Xc.shape[1]
    k = max(1, min(_MAX_PANELS, p // _PANEL))
    if k == 1:
        return Xc.T @ Xc
    edges = [round(i * p / k) for i in range(k + 1)]
    out = Xc.new_empty(p, p)
    for a, b in itertools.pairwise(edges):
        row = Xc[:, a:b].T @ Xc[:, a:]  # panel (b − a, p − a): diagonal block and everything right of it
        out[a:b, a:] = row
        out[b:, a:b] = row[:, b - a:].T
    return out


def orthonormal_basis(Xc: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Orthonormal basis (n, r) of the column space of centred Xc, r = numerical rank.

    Householder QR when Xc has full column rank (the common case, cheapest); thin SVD, truncated at
    `rtol`·σ_max, when |diag R| shows rank deficiency (dead ReLU units, duplicated features), since unpivoted QR
    would return spurious directions there.
    """
    n, p = Xc.shape
    if rtol is None:
        rtol = max(n, p) * torch.finfo(Xc.dtype).eps
    Q, R = torch.linalg.qr(Xc, mode="reduced")
    d = R.diagonal().abs()
    if bool(d.min() > rtol * d.max()):
        return Q
    U, S, _ = torch.linalg.svd(Xc, full_matrices=False)
    r = int((S > rtol * S[0]).sum())
    return U[:, :r]


def gram(Xc: torch.Tensor) -> torch.Tensor:
    """Linear Gram matrix Xc·Xcᵀ (n, n) of already centred features (so it is already double-centred)."""
    return Xc @ Xc.T


def double_center(K: torch.Tensor) -> torch.Tensor:
    """H·K·H by row/column means, O(n²) and no dense centring matrix."""
    row = K.mean(dim=0, keepdim=True)
    col = K.mean(dim=1, keepdim=True)
    return K - row - col + K.mean()


def hsic1(trace_kl: torch.Tensor, sum_k: torch.Tensor, sum_l: torch.Tensor, rowsum_dot: torch.Tensor, n: int,
          ) -> torch.Tensor:
    """Unbiased HSIC₁ from its parts (Song et al. 2012, Feature Selection via Dependence Maximization, JMLR).

    HSIC₁(K, L) = [tr(K̂L̂) + 1ᵀK̂1·1ᵀL̂1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̂L̂1] / (n(n−3)), K̂ = K with zero diagonal,
    with trace_kl = tr(K̂L̂), sum_k = 1ᵀK̂1, sum_l = 1ᵀL̂1, rowsum_dot = 1ᵀK̂L̂1 = (K̂1)ᵀ(L̂1) for n ≥ 4 samples.
    Parts may be tensors of any broadcastable shapes (stacks of kernels); the callers differ only in how they get
    them: from n×n kernels, or from centred features without any n×n matrix.
    """
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rowsum_dot) / (n * (n - 3))
