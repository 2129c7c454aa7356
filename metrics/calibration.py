"""Calibration rows: metrics of trivial behaviour, scored on every task and shown on the page, never ranked.

They tell a reader what a task gives away for nothing: a task on which the constant metric beats the median
ranked metric rewards not looking at the data (the page flags it), and a metric that scores like the identity
kernel sees nothing but which samples are which (what an RBF kernel with a tiny bandwidth degenerates to).
"""

from __future__ import annotations

import hashlib

import torch

from simstress.core.metric import register

CALIBRATION = "simstress calibration row (Davari et al. 2023 ask what a metric's value means; this is the baseline)"


@register(invariances=("translation", "isotropic_scaling", "orthogonal", "permutation", "invertible_linear"),
          cost="O(1)", reference=CALIBRATION, calibration="constant")
def constant(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """1 whatever the inputs: a metric that never looks at them."""
    return X.new_ones(())


def _groups(X: torch.Tensor) -> torch.Tensor:
    """Which rows of X are the same row: an int64 group index per row (rows compared exactly)."""
    return torch.unique(X, dim=0, return_inverse=True)[1]


@register(invariances=("translation", "isotropic_scaling", "orthogonal", "permutation", "invertible_linear"),
          cost="O(n·p)", reference=CALIBRATION, calibration="blind")
def identity_kernel(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """CKA of the kernels k(a, b) = [a = b]: blind to everything but which samples are the same one.

    ⟨HKH, HLH⟩ / (‖HKH‖_F ‖HLH‖_F) with K_ij = [xᵢ = xⱼ], L_ij = [yᵢ = yⱼ]: 1 whenever both sides have distinct rows
    (K = L = I), the limit of RBF CKA as its bandwidth goes to 0 (Kornblith et al. 2019's kernel, degenerate).
    With group sizes a_g, b_h and co-occurrence counts C_gh (K = Σ_g 1_g 1_gᵀ), ⟨HKH, HLH⟩ = Σ_gh (C_gh −
    a_g b_h / n)², computed from the counts in O(n), never an n×n matrix.
    """
    gx, gy = _groups(X), _groups(Y)
    n = len(gx)
    a, b = torch.bincount(gx).to(torch.float64), torch.bincount(gy).to(torch.float64)
    pairs, C = torch.unique(gx * len(b) + gy, return_counts=True)
    C = C.to(torch.float64)
    cross = C.square().sum() - 2.0 / n * (C * a[pairs // len(b)] * b[pairs % len(b)]).sum() \
        + a.square().sum() * b.square().sum() / n**2

    def own(s: torch.Tensor) -> torch.Tensor:
        return s.square().sum() - 2.0 / n * s.pow(3).sum() + s.square().sum().square() / n**2

    return (cross / (own(a) * own(b)).sqrt()).to(X.dtype)


@register(symmetric=False, cost="O(n·p)", reference=CALIBRATION, calibration="random")
def random_value(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """A uniform random number in [0, 1), drawn with a seed made of the inputs' bytes (so a rerun repeats it)."""
    digest = hashlib.sha256()
    for Z in (X, Y):
        digest.update(Z.detach().cpu().contiguous().numpy().tobytes())
    g = torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little"))
    return torch.rand((), generator=g, dtype=torch.float64).to(X.device, X.dtype)
