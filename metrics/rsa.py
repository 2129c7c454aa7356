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
    groups = duplicate_groups(A)
    if groups is not None:  # each pair of distinct rows once, then gathered: duplicates tie exactly
        first = torch.full((n,), n, device=A.device).scatter_reduce_(0, groups, torch.arange(n, device=A.device),
                                                                      "amin")[groups]
        S = (Z @ Z.T).fill_diagonal_(1.0)

        def similarities(i0: int, i1: int) -> torch.Tensor:
            return S[first[i0:i1]][:, first[i0:]]
    else:
        def similarities(i0: int, i1: int) -> torch.Tensor:
            return Z[i0:i1] @ Z[i0:].T

    out = torch.empty(n * (n - 1) // 2, dtype=torch.float64, device=A.device)
    start, i0 = 0, 0
    while i0 < n - 1:  # row blocks of the upper triangle, about _BLOCK_ELEMENTS similarities each
        i1 = min(n - 1, i0 + max(1, _BLOCK_ELEMENTS // (n - i0)))
        block = similarities(i0, i1)
        upper = block.masked_select(torch.ones(block.shape, dtype=torch.bool, device=A.device).triu_(1))
        out[start:start + upper.numel()] = upper
        start += upper.numel()
        i0 = i1
    return out.neg_().add_(1.0)


_INT_OF = {torch.float64: torch.int64, torch.float32: torch.int32}


def order_keys_(v: torch.Tensor) -> torch.Tensor:
    """v's floats, in place, as integers in the same order (bit patterns, negatives' magnitude bits flipped):
    equal exactly where the floats are, once −0.0 is +0.0. torch sorts integers by radix, 1.7 times faster than
    floats (8e6 float64 dissimilarities), to the same order. By chunks: no temporary the size of v."""
    k = v.view(_INT_OF[v.dtype])
    if bool((k < 0).any()):  # rare for dissimilarities: 1 − s below 0 by rounding
        flip = torch.iinfo(k.dtype).max
        for chunk in k.split(_BLOCK_ELEMENTS):
            chunk ^= (chunk >> (8 * k.element_size() - 1)) & flip  # all ones for a negative: every bit but the sign
    return k


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D float tensor, ties given the mean of the ranks they span (float64)."""
    return twice_ranks(order_keys_(v + 0.0)).double() / 2.0  # a copy of v, −0.0 made +0.0


def twice_ranks(keys: torch.Tensor) -> torch.Tensor:
    """2 × the average ranks of the values `order_keys_` made into `keys`, as integers (int32 while 2N + 1 fits:
    half the memory of float64 ranks, exactly), by one sort.

    Without ties (the common case: a tie needs two exactly equal dissimilarities) the ranks are the sort's
    positions, scattered by chunks; otherwise each run of equal keys gets the mean of its positions. Memory: the
    keys, their sorted copy and order (plus the sort's own buffers), then the order and the ranks.
    """
    N = keys.numel()
    device = keys.device
    dtype = torch.int32 if 2 * N + 1 <= torch.iinfo(torch.int32).max else torch.int64
    keys, order = torch.sort(keys)
    counts = torch.unique_consecutive(keys, return_counts=True)[1] if bool((keys[1:] == keys[:-1]).any()) else None
    del keys
    twice = torch.empty(N, dtype=dtype, device=device)
    if counts is None:
        for start in range(0, N, _BLOCK_ELEMENTS):
            part = order[start:start + _BLOCK_ELEMENTS]
            twice[part] = torch.arange(2 * start + 2, 2 * (start + part.numel()) + 1, 2, dtype=dtype, device=device)
    else:  # a run of c equal values ending at position e (1-based) has mean rank e − (c − 1)/2
        twice[order] = torch.repeat_interleave(2 * counts.cumsum(0) - counts + 1, counts).to(dtype)
    return twice


# Entries of one block: of the RDM's upper triangle, of a rank scatter, of a product summed (memory O(block))
_BLOCK_ELEMENTS = 1 << 20


def centred_rank_moments(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(Σ(aᵢ − c)(bᵢ − c), Σ(aᵢ − c)², Σ(bᵢ − c)²), float64, of two vectors of `twice_ranks`, by chunks: no float
    copy of either.

    Both sum to N(N + 1) whatever the ties, so with c = N + 1 (twice the mean rank) Σ(aᵢ − c)(bᵢ − c) =
    Σaᵢbᵢ − N·c². The products are exact in float64 (below 2⁵³ for N < 4.7e7), and the cancellation costs at
    most a factor 4 (the variance of ranks is a quarter of their mean square) on sums pairwise-accurate per chunk.
    """
    sums = torch.zeros(3, dtype=torch.float64, device=a.device)
    for x, y in zip(a.split(_BLOCK_ELEMENTS), b.split(_BLOCK_ELEMENTS)):
        x, y = x.double(), y.double()
        sums += torch.stack([(x * y).sum(), x.square().sum(), y.square().sum()])
    N = a.numel()
    return sums - N * float(N + 1) ** 2


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
    # the RDMs are this function's own: turned into sort keys in place (1 − s is never −0.0)
    rx = twice_ranks(order_keys_(correlation_rdm_upper(X, "X")))
    ry = twice_ranks(order_keys_(correlation_rdm_upper(Y, "Y")))
    sxy, sx, sy = centred_rank_moments(rx, ry)
    N = rx.numel()
    if not bool((sx > N * (N - 1) / 2) & (sy > N * (N - 1) / 2)):  # non-constant ranks have Σ(a − c)² ≥ N(N − 1)
        raise InputError("rsa: an RDM has all its entries equal (every pair equally dissimilar), so the rank "
                         "correlation is undefined; use more features or a different metric")
    return (sxy / torch.sqrt(sx * sy)).to(X.dtype)
