"""Centred kernel alignment: linear CKA, its debiased (unbiased-HSIC) form, and Gaussian-kernel CKA.

HSIC(K, L) = tr(K H L H)/(n−1)², CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (Kornblith et al. 2019,
"Similarity of Neural Network Representations Revisited", ICML).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from .linalg import center, double_center, feature_gram, frobenius, gram
from .spec import register

_CKA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation")


def _feature_route_cheaper(n: int, p1: int, p2: int) -> bool:
    """Feature route: n·(p1² + p2² + p1·p2) multiply-adds; Gram route: n²·(p1 + p2) + 3n²."""
    return n * (p1 * p1 + p2 * p2 + p1 * p2) <= n * n * (p1 + p2 + 3)


def linear_cka_feature(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via p×p products: ||Ỹᵀ X̃||²_F / (||X̃ᵀ X̃||_F ||Ỹᵀ Ỹ||_F).

    X̃ᵀX̃ and ỸᵀỸ take the symmetric-panel route (`feature_gram`, ~56% of a GEMM's flops).
    """
    return (Yc.T @ Xc).square().sum() / (frobenius(feature_gram(Xc)) * frobenius(feature_gram(Yc)))


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


def _unbiased_hsic_parts(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """n(n−3)·HSIC₁ for linear kernels of centred features, without forming an n×n matrix.

    With K = X̃X̃ᵀ, K̂ = K − diag(K) and X̃ centred (so K1 = 0), the Song et al. 2012 estimator's terms are
    tr(K̂L̂) = ||ỸᵀX̃||²_F − Σᵢ kᵢᵢlᵢᵢ, 1ᵀK̂1 = −tr K and 1ᵀK̂L̂1 = Σᵢ kᵢᵢlᵢᵢ. HSIC₁ is unchanged by
    K → K + a1ᵀ + 1aᵀ, which is what centring does to a linear kernel, so centring first is exact.
    """
    n = Xc.shape[0]
    dx, dy = Xc.square().sum(1), Yc.square().sum(1)
    dd = (dx * dy).sum()
    return _alignment(Xc, Yc) - dd + dx.sum() * dy.sum() / ((n - 1) * (n - 2)) - 2.0 * dd / (n - 2)


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


# ---------------------------------------------------------------------------------------------- row tiles
# Above this size of one n×n matrix rbf_cka switches to row tiles (the untiled path holds about six of them).
RBF_UNTILED_MAX_BYTES = 2**27
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
    computed once. Tiles hold about `tile_bytes`, which lets them grow as the triangle narrows.
    """
    n = Xc.shape[0]
    sq = Xc.square().sum(1)
    i0 = 0
    while i0 < n:
        i1 = min(n, i0 + max(1, tile_bytes // ((n - i0) * Xc.element_size())))
        D = torch.addmm(sq[None, i0:], Xc[i0:i1], Xc[i0:].T, alpha=-2.0)
        D.add_(sq[i0:i1, None]).clamp_min_(0.0)
        D.diagonal().zero_()
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


def _sample_window(Xc: torch.Tensor, k: int, N: int) -> tuple[int, int] | None:
    """Keys [lo, hi] that bracket rank k of all N = n² distances with probability ≈ 1 − 6e-7 (Floyd & Rivest
    1975): order statistics k/N ± 5 binomial sd of a seeded uniform sample of s index pairs (i = j allowed)."""
    n = Xc.shape[0]
    s = int(min(2**24, max(2**16, (4 * N * _WINDOW_Z / SELECT_CAP) ** 2)))
    if s >= N // 4:
        return None
    g = torch.Generator(device=Xc.device).manual_seed(0)
    idx = torch.randint(n, (2, s), generator=g, device=Xc.device)
    vals = torch.cat([(Xc[i] - Xc[j]).square().sum(1) for i, j in zip(idx[0].split(4096), idx[1].split(4096))])
    keys = _keys(vals)
    q = k / N
    half = _WINDOW_Z * math.sqrt(s * q * (1 - q))
    r_lo, r_hi = max(1, math.floor(s * q - half)), min(s, math.ceil(s * q + half) + 1)
    return _kth_key(keys, r_lo), _kth_key(keys, r_hi)


def median_sq_distance_tiled(Xc: torch.Tensor, tile_bytes: int = TILE_BYTES) -> torch.Tensor:
    """`median_all(squared_distances(Xc))` without the n×n matrix: exact selection over `distance_tiles`.

    The median ranks k of all n² entries are found by selection on the floats' bit patterns (order-preserving
    for non-negative floats). Pass 1 gathers the keys inside a sampled window that brackets the ranks and counts
    those below it; when the window holds them (all but ~1e-6 of the time) one kthvalue finishes. Otherwise radix
    passes (16 bits each) narrow a key interval by histograms until its bucket can be gathered. The result is
    exactly the median of the matrix the tiles define (tiles plus transposes), bit for bit.
    """
    n = Xc.shape[0]
    N = n * n
    ks = [(N + 1) // 2] if N % 2 else [N // 2, N // 2 + 1]
    tiles = lambda: distance_tiles(Xc, tile_bytes)  # noqa: E731
    found: dict[int, int] = {}
    window = _sample_window(Xc, ks[0], N)
    if window is not None:
        below, keys = _scan(tiles, window[0], min(window[1], _KEY[Xc.dtype][2]), None)
        if keys is not None:
            found = {k: _kth_key(keys, k - below) for k in ks if 0 < k - below <= keys.numel()}
    for k in ks:
        if k not in found:
            found[k] = _radix_select(tiles, k, _KEY[Xc.dtype][2])
    vals = torch.tensor([found[k] for k in ks], dtype=_KEY[Xc.dtype][0], device=Xc.device).view(Xc.dtype)
    return vals[0] if len(ks) == 1 else 0.5 * (vals[0] + vals[1])


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
    if X.dtype not in _KEY or Y.dtype not in _KEY:
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
