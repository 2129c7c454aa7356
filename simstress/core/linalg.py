"""Numerical building blocks shared by the metrics: centring, sums of squares, orthonormal bases, Gram products."""

from __future__ import annotations

import torch

# Column panel width of `feature_gram`: wide enough that every panel product runs at full GEMM speed.
_PANEL = 256
_MAX_PANELS = 8


def center(X: torch.Tensor) -> torch.Tensor:
    """Column-centred copy X − 1·meanᵀ (the action of H = I − 11ᵀ/n without forming H).

    Centring features before any product is what keeps float32 sound under large translations (Davari et al.
    2023, §3: Gram-side centring loses everything by c = 2e4). A second pass removes the rounding left by the
    first mean, which matters when the offset dwarfs the spread; it runs in place, so one centred copy is all
    that is ever allocated (autograd is unaffected: the mean and the subtraction save no values).
    """
    Xc = X - X.mean(dim=0, keepdim=True)
    return Xc.sub_(Xc.mean(dim=0, keepdim=True))


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
    for a, b in zip(edges[:-1], edges[1:]):
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
