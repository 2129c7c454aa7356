"""Exact order statistics of all n² pairwise squared distances, in memory or in row tiles.

The RBF kernel's bandwidth is the median of all n² squared distances: the ordinary median (mean of the two
middle values for an even count; Kornblith et al. 2019's code, numpy's median) or the lower median (the lower
middle value; Davari et al. 2023's Fig. 4 code, as torch.median returns it). For large n the n×n matrix does not
fit, so the tiled route streams row tiles of its upper triangle and finds the median by an exact selection on the
floats' bit patterns (a sampled window first, Floyd & Rivest 1975; radix passes as the exact fallback).

Identical rows are at distance exactly 0 on both routes: the Gram expansion ||a||² + ||b||² − 2aᵀb would leave
rounding noise there, and a median over mostly duplicated rows would be that noise instead of 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .linalg import centre_rescale, centring_gradient


def duplicate_groups(Xc: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor | None:
    """(n,) ids equal exactly for identical rows, or None when all rows differ (the common case: nothing to mark).

    Identical rows of a row-major matrix have bit-identical row sums (or `key`, another reduction of each row of
    the row-major Xc, e.g. the squared norms a caller already has; a column-major layout reduces each row in its
    own order, and identical rows then differed): when no two rows share it (one sort of n numbers), none are
    identical and nothing more is read. Otherwise one lexicographic sort of the rows, O(n·p·log n): about 2% of
    the distances' O(n²·p) at n = 50000.
    """
    A = Xc.detach().contiguous()
    if torch.unique(A.sum(1) if key is None else key.detach()).numel() == A.shape[0]:
        return None
    _, ids, counts = torch.unique(A, dim=0, return_inverse=True, return_counts=True)
    return ids if counts.numel() < A.shape[0] else None


class _SquaredDistances(torch.autograd.Function):
    """D = clamp(s1ᵀ + 1sᵀ − 2XcXcᵀ, 0), s the rows' squared norms, with the entries between identical rows (the
    diagonal included) set to 0. Its gradient in one n×n × n×p product, −2·(S − diag(r))·Xc with S = G + Gᵀ for the
    incoming gradient G masked where D was clamped or set, r = S1, where autograd's record of the expansion took
    two products and four passes over Xc (a quarter of a flattened RBF map step of M1's blocks, measured)."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, tracked: bool, centre: bool) -> torch.Tensor:
        Xc, _, ctx.scale = centre_rescale(X) if centre else (X, None, None)
        Xc = Xc.contiguous()  # row by row in one order: identical rows get identical norms (`duplicate_groups`)
        sq = Xc.square().sum(1)
        D = torch.addmm(sq[None, :], Xc, Xc.T, alpha=-2.0).add_(sq[:, None])
        keep = D >= 0.0 if tracked else None  # no n×n mask without a gradient to take
        D.clamp_min_(0.0)
        groups = duplicate_groups(Xc, sq)
        if groups is None:
            D.fill_diagonal_(0.0)
            if keep is not None:
                keep.fill_diagonal_(False)
        else:
            same = groups[:, None] == groups[None, :]
            D.masked_fill_(same, 0.0)
            if keep is not None:
                keep &= ~same
        ctx.Xc, ctx.keep = Xc, keep  # read only by backward
        return D

    @staticmethod
    @once_differentiable  # backward reads its tensors off ctx: a second derivative would miss them
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        G = grad * ctx.keep
        S = G + G.mT
        S.diagonal().sub_(S.sum(1))  # S − diag(r): the product is the only pass over Xc
        S = S * -2.0
        return (S if ctx.scale is None else centring_gradient(S, ctx.scale)) @ ctx.Xc, None, None


def squared_distances(X: torch.Tensor, centre: bool = False) -> torch.Tensor:
    """All n² squared Euclidean distances ||xᵢ − xⱼ||², from centred rows X (with `centre`: of
    `center_rescaled(X)`, the same numbers), clamped at 0; exact 0 between identical rows (the diagonal
    included). One n×n matrix: the Gram expansion runs in place on the product; autograd through
    `_SquaredDistances`' own gradient, the centring's included (`centring_gradient`)."""
    return _SquaredDistances.apply(X, torch.is_grad_enabled() and X.requires_grad, centre)


def median_all(D: torch.Tensor, lower: bool = False) -> torch.Tensor:
    """Median of every entry: ordinary (mean of the two middle values when the count is even) or, with `lower`,
    the lower of the two (the ⌈N/2⌉-th smallest, as torch.median)."""
    flat = D.reshape(-1)
    N = flat.numel()
    lo = torch.kthvalue(flat, (N + 1) // 2).values
    if N % 2 or lower:
        return lo
    # the next order statistic: lo again if it is repeated, else the smallest value above it (no second kthvalue)
    above = torch.where(flat > lo, flat, torch.full_like(lo, torch.inf)).amin()
    return 0.5 * (lo + torch.where((flat <= lo).sum() > N // 2, lo, above))


# Bytes of one distance tile; the tiled path holds about four tiles at a time.
TILE_BYTES = 2**26
# Candidate distances gathered at once by the exact selection (int32/int64 keys: 64–128 MiB).
SELECT_CAP = 2**24
# Half-width, in binomial standard deviations, of the sampled window that brackets the median.
_WINDOW_Z = 5.0
_KEY = {torch.float32: (torch.int32, 0x7FFFFFFF, 0x7F800000), torch.float64: (torch.int64, 2**63 - 1, 0x7FF << 52)}

Tile = tuple[int, int, torch.Tensor]


def distance_tiles(Xc: torch.Tensor, tile_bytes: int = TILE_BYTES) -> Iterator[Tile]:
    """Row tiles (i0, i1, D) of the upper block triangle of `squared_distances`, O(tile) memory each.

    D[r, c] = ||x_{i0+r} − x_{i0+c}||² for rows [i0, i1) and columns [i0, n); D[:, :i1−i0] is the diagonal
    block (exact zero diagonal), D[:, i1−i0:] stands for itself and for its transpose, so each distance is
    computed once. Tiles hold about `tile_bytes`, which lets them grow as the triangle narrows. Identical rows
    are at distance exactly 0, as in `squared_distances`.
    """
    n = Xc.shape[0]
    Xc = Xc.contiguous()  # as `squared_distances`: identical rows get identical norms
    sq = Xc.square().sum(1)
    groups = duplicate_groups(Xc, sq)
    i0 = 0
    while i0 < n:
        i1 = min(n, i0 + max(1, tile_bytes // ((n - i0) * Xc.element_size())))
        D = torch.addmm(sq[None, i0:], Xc[i0:i1], Xc[i0:].T, alpha=-2.0)
        D.add_(sq[i0:i1, None]).clamp_min_(0.0)
        D.diagonal().zero_()
        if groups is not None:
            D.masked_fill_(groups[i0:i1, None] == groups[None, i0:], 0.0)
        yield i0, i1, D
        i0 = i1


def _keys(D: torch.Tensor) -> torch.Tensor:
    """Integers ordered like the non-negative floats of D: IEEE bit patterns, sign cleared (so −0.0 = 0.0)."""
    int_dtype, mask, _ = _KEY[D.dtype]
    return D.view(int_dtype) & mask


def _scan(tiles: Callable[[], Iterator[Tile]], lo: int, hi: int, shift: int | None,
          ) -> tuple[int, torch.Tensor | None]:
    """One pass: (#keys < lo, keys in [lo, hi] gathered when shift is None, else their histogram by
    (key − lo) >> shift). Off-diagonal parts count twice. Gathering gives up (None) past SELECT_CAP keys.

    Comparisons run on the floats themselves (same order as the keys, and cheaper); each pass counts for
    itself, so its answer is always consistent with the values it saw.
    """
    below = 0
    parts: list[torch.Tensor] = []
    hist = None
    gathered = 0
    for i0, i1, D in tiles():
        int_dtype = _KEY[D.dtype][0]
        flo, fhi = (torch.tensor(v, dtype=int_dtype).view(D.dtype).item() for v in (lo, hi))
        for part, weight in ((D[:, : i1 - i0], 1), (D[:, i1 - i0:], 2)):
            below += weight * int(torch.count_nonzero(part < flo))
            sel = _keys(part[(part >= flo) & (part <= fhi)])
            if shift is None:
                gathered += weight * sel.numel()
                if gathered > SELECT_CAP:
                    return below, None
                parts.extend([sel] * weight)
            else:
                h = torch.bincount((sel - lo).bitwise_right_shift(shift), minlength=((hi - lo) >> shift) + 1)
                hist = weight * h if hist is None else hist + weight * h
    return below, (torch.cat(parts) if shift is None else hist)


def _kth_key(keys: torch.Tensor, r: int) -> int:
    return int(torch.kthvalue(keys, min(max(r, 1), keys.numel())).values)


def _radix_select(tiles: Callable[[], Iterator[Tile]], k: int, max_key: int) -> int:
    """Key of the k-th smallest distance by radix passes over the bit patterns (16 bits a pass), then a
    gather pass once the bucket holding rank k is small: exact for any data, ties and all."""
    lo, hi, inside = 0, max_key, None
    while lo < hi:
        if inside is not None and inside <= SELECT_CAP:
            below, keys = _scan(tiles, lo, hi, None)
            if keys is not None and keys.numel():
                return _kth_key(keys, k - below)
        shift = max(0, (hi - lo).bit_length() - 16)
        below, hist = _scan(tiles, lo, hi, shift)
        cum = hist.cumsum(0)
        b = min(int(torch.searchsorted(cum, torch.tensor(k - below, device=cum.device))), cum.numel() - 1)
        inside = int(hist[b])
        lo, hi = lo + (b << shift), min(hi, lo + ((b + 1) << shift) - 1)
    return lo


Pairs = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _distances_of(Xc: torch.Tensor) -> Pairs:
    """Squared distances of index pairs (i, j), computed from the rows of Xc (4096 pairs at a time)."""
    def pairs(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return torch.cat([(Xc[a] - Xc[b]).square().sum(1) for a, b in zip(i.split(4096), j.split(4096))])

    return pairs


def _sample_window(pairs: Pairs, n: int, k: int, N: int, device: torch.device) -> tuple[int, int] | None:
    """Keys [lo, hi] that bracket rank k of all N = n² distances with probability ≈ 1 − 6e-7 (Floyd & Rivest
    1975): order statistics k/N ± 5 binomial sd of a seeded uniform sample of s index pairs (i = j allowed)."""
    s = int(min(2**24, max(2**16, (4 * N * _WINDOW_Z / SELECT_CAP) ** 2)))
    if s >= N // 4:
        return None
    g = torch.Generator(device=device).manual_seed(0)
    idx = torch.randint(n, (2, s), generator=g, device=device)
    keys = _keys(pairs(idx[0], idx[1]))
    q = k / N
    half = _WINDOW_Z * math.sqrt(s * q * (1 - q))
    r_lo, r_hi = max(1, math.floor(s * q - half)), min(s, math.ceil(s * q + half) + 1)
    return _kth_key(keys, r_lo), _kth_key(keys, r_hi)


def median_sq_distance_tiled(Xc: torch.Tensor, tile_bytes: int = TILE_BYTES, lower: bool = False) -> torch.Tensor:
    """`median_all(squared_distances(Xc), lower)` without the n×n matrix: exact selection over `distance_tiles`."""
    return median_sq_distance(functools.partial(distance_tiles, Xc, tile_bytes), _distances_of(Xc), Xc.shape[0],
                              Xc.dtype, Xc.device, lower)


def median_in_memory(D: torch.Tensor, lower: bool = False, tile_bytes: int = TILE_BYTES) -> torch.Tensor:
    """`median_all(D, lower)` of a symmetric n×n distance matrix with zero diagonal, by the exact selection of
    `median_sq_distance` over row tiles of D's upper block triangle (views: half the entries read, temporaries of
    one tile), sampled from D itself."""
    n = D.shape[0]
    rows = max(1, tile_bytes // (n * D.element_size()))

    def tiles() -> Iterator[Tile]:
        for i0 in range(0, n, rows):
            yield i0, min(n, i0 + rows), D[i0:i0 + rows, i0:]

    return median_sq_distance(tiles, lambda i, j: D[i, j], n, D.dtype, D.device, lower)


def median_sq_distance(tiles: Callable[[], Iterator[Tile]], pairs: Pairs, n: int, dtype: torch.dtype,
                       device: torch.device, lower: bool = False) -> torch.Tensor:
    """The median of the n×n squared distances that `tiles` yields (`distance_tiles`, or one tile (0, n, D) of a
    matrix in memory) and `pairs` samples, by an exact selection: `median_all` of it, bit for bit, without sorting
    or copying the n² values.

    The median ranks k of all n² entries are found by selection on the floats' bit patterns (order-preserving
    for non-negative floats). Pass 1 gathers the keys inside a sampled window that brackets the ranks and counts
    those below it; when the window holds them (all but ~1e-6 of the time) one kthvalue finishes. Otherwise radix
    passes (16 bits each) narrow a key interval by histograms until its bucket can be gathered. The result is
    exactly the median of the matrix the tiles define (tiles plus transposes). In memory it replaces two
    kthvalues over all n² entries (each a copy and a partition): 1.6 s of rbf_cka's 8.7 s at n = 5000.
    """
    N = n * n
    ks = [(N + 1) // 2] if N % 2 or lower else [N // 2, N // 2 + 1]
    found: dict[int, int] = {}
    window = _sample_window(pairs, n, ks[0], N, device)
    if window is not None:
        below, keys = _scan(tiles, window[0], min(window[1], _KEY[dtype][2]), None)
        if keys is not None:
            found = {k: _kth_key(keys, k - below) for k in ks if 0 < k - below <= keys.numel()}
    for k in ks:
        if k not in found:
            found[k] = _radix_select(tiles, k, _KEY[dtype][2])
    vals = torch.tensor([found[k] for k in ks], dtype=_KEY[dtype][0], device=device).view(dtype)
    return vals[0] if len(ks) == 1 else 0.5 * (vals[0] + vals[1])
