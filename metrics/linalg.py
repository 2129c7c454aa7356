"""Numerical building blocks shared by the metrics: centring, orthonormal bases, Gram products."""

from __future__ import annotations

import torch


def center(X: torch.Tensor) -> torch.Tensor:
    """Column-centred copy X − 1·meanᵀ (the action of H = I − 11ᵀ/n without forming H).

    Centring features before any product is what keeps float32 sound under large translations (Davari et al.
    2023, §3: Gram-side centring loses everything by c = 2e4). A second pass removes the rounding left by the
    first mean, which matters when the offset dwarfs the spread.
    """
    Xc = X - X.mean(dim=0, keepdim=True)
    return Xc - Xc.mean(dim=0, keepdim=True)


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
