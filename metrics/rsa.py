"""Representational similarity analysis: rank correlation of representational dissimilarity matrices."""

from __future__ import annotations

import torch

from simstress.core.inputs import InputError
from simstress.core.metric import register
from simstress.core.selection import duplicate_groups


def correlation_rdm_upper(A: torch.Tensor, which: str) -> torch.Tensor:
    """Upper triangle (row-major, as scipy's pdist) of the RDM dᵢⱼ = 1 − corr(aᵢ, aⱼ) between rows of A, float64.

    Ranks are discrete, so the RDM is computed in float64 whatever A's dtype: float32 rounding would reorder
    near-tied entries, and float32 and float64 inputs holding the same numbers must give the same ranks. Each row
    is centred across features (twice), scaled by a power of two (exact, no overflow of the squares) and to unit
    norm. Entries equal because samples are duplicated are made exact ties, as scipy's pdist gives them (each
    pair computed alike; the product Z·Zᵀ rounds identical pairs differently): duplicates of a row take that
    row's first occurrence's entries, and identical rows are at distance exactly 0. A row with the same value in
    every feature has no correlation with anything: refused, with the count. So are two features: two centred
    values are always ±(1, −1)·c, every correlation is ±1, and the ranks of the RDM's two values were rounding.
    """
    n = A.shape[0]
    if A.shape[1] == 2:
        raise InputError(f"rsa: {which} has 2 features, so every correlation between two of its rows is ±1 and its RDM "
                         f"holds only the values 0 and 2 (their order would be rounding); use at least 3 features")
    flat = (A == A[:, :1]).all(dim=1)
    n_flat = int(flat.sum())
    if n_flat:
        raise InputError(
            f"rsa: {n_flat} of the {n} rows of {which} have zero variance across features, so their correlation "
            f"distances are undefined; drop those samples (from X and Y alike) or use a metric on centred features"
        )
    Ac = A.double() - A.double().mean(dim=1, keepdim=True)
    Ac = Ac - Ac.mean(dim=1, keepdim=True)
    Ac = torch.ldexp(Ac, -torch.frexp(Ac.abs().amax(dim=1, keepdim=True)).exponent)
    Z = Ac / Ac.square().sum(dim=1, keepdim=True).sqrt()
    S = (Z @ Z.T).fill_diagonal_(1.0)
    groups = duplicate_groups(A)
    if groups is not None:
        first = torch.full((n,), n, device=A.device).scatter_reduce_(0, groups, torch.arange(n, device=A.device),
                                                                      "amin")[groups]
        S = S[first][:, first]
    upper = torch.ones(n, n, dtype=torch.bool, device=A.device).triu_(diagonal=1)
    return 1.0 - S.masked_select(upper)


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, ties given the mean of the ranks they span (float64)."""
    sorted_v, order = torch.sort(v)
    _, group, counts = torch.unique_consecutive(sorted_v, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0
    ranks = torch.empty(v.shape, dtype=torch.float64, device=v.device)
    ranks[order] = mean_rank[group]
    return ranks


@register(
    invariances=("isotropic_scaling", "permutation"),
    min_samples=3,
    value_range=(-1.0, 1.0),
    cost="O(n²·p + n²·log n)",
    version=3,  # 2: RDM in float64 (0.33 → 0.80 under a 2e4 offset), duplicates tie; 3: two features refused
    reference="Kriegeskorte, Mur & Bandettini 2008, Representational similarity analysis — connecting the "
    "branches of systems neuroscience (Front. Syst. Neurosci.)",
)
def rsa(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Spearman correlation between the upper triangles of the 1 − Pearson-correlation RDMs of X and Y.

    RDM_X[i, j] = 1 − corr(xᵢ, xⱼ), correlation across features between samples i and j (Kriegeskorte et al.
    2008); rsa = Pearson correlation of the average ranks (ties share their mean rank) of the n(n−1)/2 entries
    above the diagonal. Everything is computed in float64 (`correlation_rdm_upper`), so float32 input gives the
    float64 value of the same numbers. Ties are exact floating-point ties, as in scipy's rankdata, and entries
    equal because samples are duplicated are exact ties. Rows are not centred across samples, so a translation
    of all rows or a rotation of the features changes the value.
    """
    rx = average_ranks(correlation_rdm_upper(X, "X"))
    ry = average_ranks(correlation_rdm_upper(Y, "Y"))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    sx, sy = rx.square().sum(), ry.square().sum()
    if not bool((sx > 0) & (sy > 0)):
        raise InputError("rsa: an RDM has all its entries equal (every pair equally dissimilar), so the rank "
                         "correlation is undefined; use more features or a different metric")
    return ((rx * ry).sum() / torch.sqrt(sx * sy)).to(X.dtype)
