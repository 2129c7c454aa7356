"""Centred kernel alignment: linear CKA, its debiased (unbiased-HSIC) form, and Gaussian-kernel CKA.

HSIC(K, L) = tr(K H L H)/(n−1)², CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) (Kornblith et al. 2019,
"Similarity of Neural Network Representations Revisited", ICML).
"""

from __future__ import annotations

import math

import torch

from simstress.core.inputs import InputError
from simstress.core.linalg import center_rescaled, double_center, feature_gram, frobenius, gram, hsic1
from simstress.core.metric import register
from simstress.core.selection import (
    TILE_BYTES,
    distance_tiles,
    median_all,
    median_in_memory,
    median_sq_distance_tiled,
    squared_distances,
)

_CKA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation")


def _feature_route_cheaper(n: int, p1: int, p2: int) -> bool:
    """Feature route: n·(p1² + p2² + p1·p2) multiply-adds; Gram route: n²·(p1 + p2) + 3n²."""
    return n * (p1 * p1 + p2 * p2 + p1 * p2) <= n * n * (p1 + p2 + 3)


def cka_from_moments(cxy: torch.Tensor, cxx: torch.Tensor, cyy: torch.Tensor) -> torch.Tensor:
    """Linear CKA from the centred co-moments X̃ᵀỸ, X̃ᵀX̃, ỸᵀỸ: ||X̃ᵀỸ||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F).

    Kornblith et al. 2019's linear CKA; the full-batch feature route and the streaming moments share it.
    """
    return cxy.square().sum() / (frobenius(cxx) * frobenius(cyy))


def linear_cka_feature(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via p×p products: `cka_from_moments` of ỸᵀX̃, X̃ᵀX̃, ỸᵀỸ.

    X̃ᵀX̃ and ỸᵀỸ take the symmetric-panel route (`feature_gram`, ~56% of a GEMM's flops).
    """
    return cka_from_moments(Yc.T @ Xc, feature_gram(Xc), feature_gram(Yc))


def linear_cka_gram(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """Linear CKA of centred features via n×n Grams: <K, L>_F / (||K||_F ||L||_F), K = X̃X̃ᵀ, L = ỸỸᵀ."""
    K, L = gram(Xc), gram(Yc)
    return (K * L).sum() / (frobenius(K) * frobenius(L))


def _alignment_map(kernels: torch.Tensor) -> torch.Tensor:
    """<Kᵢ, Kⱼ>_F / (||Kᵢ||_F ||Kⱼ||_F) for every pair of a stack (L, n, n) of centred kernels: one (L, n²) product."""
    flat = kernels.flatten(1)
    G = flat @ flat.T
    norms = G.diagonal().sqrt()
    return G / (norms[:, None] * norms[None, :])


def linear_cka_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`linear_cka` between every pair of layers: one centred Gram X̃ᵢX̃ᵢᵀ per layer, all pairs from one product."""
    return _alignment_map(torch.stack([gram(A, centre=True) for A in layers])).clamp(0.0, 1.0)


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=2,
    cost="O(n·min(p², n·p))",
    reference="Kornblith et al. 2019, Similarity of Neural Network Representations Revisited (ICML)",
    layer_map=linear_cka_map,
    # On a minibatch the biased HSIC inflates every entry (Nguyen et al. 2021); Davari et al.'s loss uses HSIC₁.
    minibatch="linear_cka_debiased",
    version=2,  # 2: rounding past 1 clamped (float32 read 1 + 2e-7)
)
def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Linear CKA: ||ỸᵀX̃||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F) on column-centred X̃, Ỹ (biased HSIC).

    Takes the feature route (p×p products, O(n·p²)) or the Gram route (n×n products, O(n²·p)), whichever costs
    fewer multiply-adds; both give the same value. Features are centred before any product (float32-sound),
    then scaled by a power of two (exact; no overflow of the fourth powers at any scale), with one centred copy
    per input; memory O(n·p + p²) on the feature route. Rounding past 1 (the two routes of numerator and norms
    differ) is clamped.
    """
    Xc, Yc = center_rescaled(X), center_rescaled(Y)
    if _feature_route_cheaper(X.shape[0], X.shape[1], Y.shape[1]):
        return linear_cka_feature(Xc, Yc).clamp(0.0, 1.0)
    return linear_cka_gram(Xc, Yc).clamp(0.0, 1.0)


def _alignment(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """<X̃X̃ᵀ, ỸỸᵀ>_F = ||ỸᵀX̃||²_F by the cheaper route; a self term (Yc is Xc) uses the symmetric product."""
    if _feature_route_cheaper(Xc.shape[0], Xc.shape[1], Yc.shape[1]):
        return (feature_gram(Xc) if Yc is Xc else Yc.T @ Xc).square().sum()
    K = gram(Xc)
    return (K.square() if Yc is Xc else K * gram(Yc)).sum()


def _linear_hsic1(Xc: torch.Tensor, Yc: torch.Tensor) -> torch.Tensor:
    """`hsic1` of the linear kernels K = X̃X̃ᵀ, L = ỸỸᵀ of centred features, without forming an n×n matrix.

    With K̂ = K − diag(K) and X̃ centred (so K1 = 0, hence K̂1 = −diag K), Song et al. 2012's parts are
    tr(K̂L̂) = ||ỸᵀX̃||²_F − Σᵢ kᵢᵢlᵢᵢ, 1ᵀK̂1 = −tr K and 1ᵀK̂L̂1 = Σᵢ kᵢᵢlᵢᵢ. HSIC₁ is unchanged by
    K → K + a1ᵀ + 1aᵀ, which is what centring does to a linear kernel, so centring first is exact.
    """
    dx, dy = Xc.square().sum(1), Yc.square().sum(1)
    dd = (dx * dy).sum()
    return hsic1(_alignment(Xc, Yc) - dd, -dx.sum(), -dy.sum(), dd, Xc.shape[0])


def linear_cka_debiased_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`linear_cka_debiased` between every pair of layers from one centred Gram Kᵢ per layer.

    With centred features K̂ᵢ1 = −dᵢ (dᵢ = diag Kᵢ), so HSIC₁'s parts for every pair come from two products of the
    stack: tr(K̂ᵢK̂ⱼ) = <Kᵢ, Kⱼ> − dᵢ·dⱼ, 1ᵀK̂ᵢ1 = −tr Kᵢ, 1ᵀK̂ᵢK̂ⱼ1 = dᵢ·dⱼ (as `_linear_hsic1`, pair by pair).
    """
    K = torch.stack([gram(A, centre=True) for A in layers])
    flat, d = K.flatten(1), K.diagonal(dim1=1, dim2=2)
    dd = d @ d.T
    trace = d.sum(1)
    H = hsic1(flat @ flat.T - dd, -trace[:, None], -trace[None, :], dd, K.shape[1])
    norms = H.diagonal().sqrt()
    return (H / (norms[:, None] * norms[None, :])).clamp(-1.0, 1.0)


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=4,
    layer_map=linear_cka_debiased_map,
    value_range=(-1.0, 1.0),
    cost="O(n·min(p², n·p))",
    version=2,  # 2: rounding past ±1 clamped; a numerically zero self-HSIC₁ refused
    reference="Song et al. 2012, Feature Selection via Dependence Maximization (JMLR); "
    "Kornblith et al. 2019 (debiased=True)",
)
def linear_cka_debiased(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Debiased linear CKA: HSIC₁(K, L)/√(HSIC₁(K, K)·HSIC₁(L, L)) with the unbiased estimator HSIC₁.

    HSIC₁(K, L) = [tr(K̂L̂) + 1ᵀK̂1·1ᵀL̂1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̂L̂1] / (n(n−3)), K̂ = K with zero
    diagonal (Song et al. 2012). Near 0 for independent data even when p ≫ n; may be slightly negative, and
    is reported as is (never clipped, except rounding past ±1). Needs n ≥ 4.

    HSIC₁ is an inner product of U-centred kernels (Székely & Rizzo 2014, Partial distance correlation with
    methods for dissimilarities, Ann. Statist.), so HSIC₁(K, K) ≥ 0, with 0 when the U-centred K vanishes (a
    single distinct row, refused by every metric). A self-term within 16 rounding errors of the size of its parts,
    (tr K)²/(n(n−3)), is numerically that 0 and refused: the ratio would be rounding noise.
    """
    Xc, Yc = center_rescaled(X), center_rescaled(Y)
    n = X.shape[0]
    selves = []
    for which, A in (("X", Xc), ("Y", Yc)):
        h = _linear_hsic1(A, A)
        floor = 16.0 * torch.finfo(A.dtype).eps * A.square().sum() ** 2 / (n * (n - 3))
        if not bool(h > floor):
            raise InputError(f"linear_cka_debiased: the unbiased HSIC₁ of {which} with itself is {float(h):.3g}, "
                             f"zero to rounding ({float(floor):.3g}), so the ratio is undefined: {which} is (nearly) "
                             f"a single sample set apart from identical others; use linear_cka or more varied data")
        selves.append(h)
    return (_linear_hsic1(Xc, Yc) / torch.sqrt(selves[0] * selves[1])).clamp(-1.0, 1.0)


SIGMA_RANGE = (0.01, 100.0)
MEDIANS = ("ordinary", "lower")
# exp(−γ·D) below 2⁻²⁴ for the closest pair: beside the diagonal's 1 the kernel holds nothing float32 resolves
_IDENTITY_EXPONENT = 24.0 * math.log(2.0)


def _gamma(m: torch.Tensor, sigma: float, which: str) -> torch.Tensor:
    """γ = 1/(2σ²m) for the kernel exp(−γ·D), m the median squared distance; a zero median is refused."""
    if not bool(m > 0):
        raise InputError(f"rbf_cka: the median squared distance of {which} is 0 (at least half of the n² pairs are "
                         f"identical rows), so the median bandwidth is 0; drop duplicated samples or use linear_cka")
    return 0.5 / (sigma * sigma * m)


def _check_not_identity(gamma: torch.Tensor, closest: torch.Tensor, sigma: float, which: str) -> None:
    """Refuse exp(−γ·D_min) < 2⁻²⁴, D_min the smallest squared distance between two rows (0 for duplicates)."""
    if bool(gamma * closest > _IDENTITY_EXPONENT):
        raise InputError(f"rbf_cka[sigma={sigma:g}]: the kernel of {which} is numerically the identity (even its "
                         f"closest pair has k < 2⁻²⁴), so the value would not depend on {which}; use a larger sigma")


def rbf_kernel(X: torch.Tensor, sigma: float, median: str = "ordinary", which: str = "X") -> torch.Tensor:
    """K − 11ᵀ = expm1(−||a − b||² / (2·sigma²·m)), m = median of all n² squared distances (diagonal included).

    The constant 11ᵀ vanishes under centring (H·11ᵀ = 0), so HKH is unchanged, and expm1 keeps K − 1 to full
    relative precision where exp would keep only ε·2σ² of it (1e-3 in float32 at σ = 100). `median` picks the
    ordinary or the lower median (`median_all`). A zero median and an identity kernel are refused.
    """
    D = squared_distances(X, centre=True)
    Dd = D.detach()
    gamma = _gamma(median_all(Dd, median == "lower"), sigma, which)
    closest = Dd.topk(2, dim=1, largest=False).values[:, 1].amin()  # each row's smallest beside its own 0
    _check_not_identity(gamma, closest, sigma, which)
    return torch.expm1(D * -gamma)


def _closest_in_tile(D: torch.Tensor, b: int) -> torch.Tensor:
    """Smallest off-diagonal entry of a `distance_tiles` tile whose first b columns are the diagonal block."""
    parts = [D[:, b:].amin()] if D.shape[1] > b else []
    if b > 1:
        parts.append(D[:, :b].topk(2, dim=1, largest=False).values[:, 1].amin())
    return torch.stack(parts).amin() if parts else D.new_tensor(math.inf)


# Above this size of one n×n matrix rbf_cka switches to row tiles (the in-memory path holds two of them, which the
# tiles compute twice: once for the median, once for the kernel).
RBF_UNTILED_MAX_BYTES = 2**29
# Rows of a block of the in-memory kernels summed at once: no temporary of n×n size
_SUM_ROWS_BYTES = 2**24


class _HSICParts:
    """Float64 accumulators of <HAH, HBH> = <A, B> − (2/n)·(A1)ᵀ(B1) + (1ᵀA1)(1ᵀB1)/n² for symmetric kernels A
    (of X) and B (of Y): row sums and the three inner products, filled tile by tile (`add`), combined by
    `alignment`. The kernels come shifted by their value at the median distance (module: `_shifted_kernel`), so
    the expansion cancels little."""

    def __init__(self, n: int, device: torch.device) -> None:
        f64 = {"dtype": torch.float64, "device": device}
        self.n = n
        self.rows = {"K": torch.zeros(n, **f64), "L": torch.zeros(n, **f64)}
        self.dots = {"KL": torch.zeros((), **f64), "KK": torch.zeros((), **f64), "LL": torch.zeros((), **f64)}

    def add(self, i0: int, i1: int, K: torch.Tensor, L: torch.Tensor) -> None:
        """Row tile [i0, i1) of the upper block triangle: columns [i0, n), the first i1 − i0 the diagonal block,
        the rest standing for itself and its transpose."""
        b = i1 - i0
        tile = {"K": K, "L": L}
        for name, A in tile.items():  # in place on slices: autograd records them (CopySlices)
            self.rows[name][i0:i1] += A.sum(1).double()
            if i1 < self.n:
                self.rows[name][i1:] += A[:, b:].sum(0).double()
        for name in self.dots:
            P = tile[name[0]] * tile[name[1]]
            off = 2.0 * P[:, b:].sum().double() if i1 < self.n else 0.0
            self.dots[name] = self.dots[name] + P[:, :b].sum().double() + off

    def alignment(self) -> torch.Tensor:
        """<HKH, HLH>_F / (||HKH||_F ||HLH||_F), float64."""
        n, rows = self.n, self.rows
        sums = {name: r.sum() for name, r in rows.items()}

        def hsic(a: str, b: str) -> torch.Tensor:
            return self.dots[a + b] - 2.0 / n * (rows[a] @ rows[b]) + sums[a] * sums[b] / (n * n)

        return hsic("K", "L") / torch.sqrt(hsic("K", "K") * hsic("L", "L"))


def _shifted_kernel(D: torch.Tensor, gamma: torch.Tensor, sigma: float) -> torch.Tensor:
    """expm1(−γD) − expm1(−1/(2σ²)): the kernel exp(−γD) shifted by its value at the median distance (a constant
    that centring removes, H·11ᵀ = 0), with K − 1 to full relative precision (`rbf_kernel`). In place on D unless
    autograd records D."""
    c1 = math.expm1(-0.5 / (sigma * sigma))
    if D.requires_grad and torch.is_grad_enabled():
        return torch.expm1(D * -gamma) - c1
    return D.mul_(-gamma).expm1_().sub_(c1)


def _centred_alignment(X: torch.Tensor, Y: torch.Tensor, sigma: float, tile_bytes: int, median: str,
                       ) -> torch.Tensor:
    """<HKH, HLH>_F / (||HKH||_F ||HLH||_F) from row tiles (`_HSICParts`), float64 accumulators, no autograd.

    The identity-kernel check needs the closest pair, gathered in the same pass and checked before the value is
    returned.
    """
    n = X.shape[0]
    Xc, Yc = center_rescaled(X), center_rescaled(Y)
    gammas = [_gamma(median_sq_distance_tiled(A, tile_bytes, median == "lower"), sigma, which)
              for A, which in ((Xc, "X"), (Yc, "Y"))]
    closest = [torch.tensor(math.inf, dtype=Xc.dtype, device=X.device) for _ in gammas]
    parts = _HSICParts(n, X.device)
    for (i0, i1, K), (_, _, L) in zip(distance_tiles(Xc, tile_bytes), distance_tiles(Yc, tile_bytes)):
        closest = [torch.minimum(c, _closest_in_tile(D, i1 - i0)) for c, D in zip(closest, (K, L))]
        parts.add(i0, i1, _shifted_kernel(K, gammas[0], sigma), _shifted_kernel(L, gammas[1], sigma))
    for gamma, d, which in zip(gammas, closest, "XY"):
        _check_not_identity(gamma, d, sigma, which)
    return parts.alignment().clamp(0.0, 1.0).to(X.dtype)


def _in_memory_kernel(X: torch.Tensor, sigma: float, median: str, which: str) -> torch.Tensor:
    """The shifted kernel (`_shifted_kernel`) of X's n×n squared distances, with the checks of `rbf_kernel`; the
    median by exact selection over the matrix in memory (`median_in_memory`), autograd kept."""
    D = squared_distances(X, centre=True)
    Dd = D.detach()
    gamma = _gamma(median_in_memory(Dd, median == "lower"), sigma, which)
    _check_not_identity(gamma, Dd.topk(2, dim=1, largest=False).values[:, 1].amin(), sigma, which)
    return _shifted_kernel(D, gamma, sigma)


def _in_memory_alignment(X: torch.Tensor, Y: torch.Tensor, sigma: float, median: str) -> torch.Tensor:
    """`rbf_cka` from the two n×n shifted kernels in memory, summed into `_HSICParts` by row blocks of their upper
    block triangle (the tiled path's layout: half the products): no centred copy, no n×n temporary."""
    K, L = _in_memory_kernel(X, sigma, median, "X"), _in_memory_kernel(Y, sigma, median, "Y")
    n = X.shape[0]
    parts = _HSICParts(n, X.device)
    rows = max(1, _SUM_ROWS_BYTES // (n * K.element_size()))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        parts.add(i0, i1, K[i0:i1, i0:], L[i0:i1, i0:])
    return parts.alignment().clamp(0.0, 1.0).to(X.dtype)


@torch.no_grad()
def rbf_cka_tiled(X: torch.Tensor, Y: torch.Tensor, sigma: float = 1.0, tile_bytes: int = TILE_BYTES,
                  median: str = "ordinary") -> torch.Tensor:
    """`rbf_cka` in row tiles: memory O(n·p + tile), time O(n²·p), no autograd. rbf_cka calls it for large n."""
    if not {X.dtype, Y.dtype} <= {torch.float32, torch.float64}:
        raise TypeError(f"tiled rbf_cka runs in float32 or float64; got {X.dtype} and {Y.dtype}")
    dtype = torch.promote_types(X.dtype, Y.dtype)  # both tile sequences must share their row boundaries
    return _centred_alignment(X.to(dtype), Y.to(dtype), sigma, tile_bytes, median)


def _check_rbf(params: dict) -> None:
    lo, hi = SIGMA_RANGE
    if not lo <= params["sigma"] <= hi:
        raise ValueError(f"rbf_cka needs {lo:g} <= sigma <= {hi:g} (a multiple of the median distance); got "
                         f"{params['sigma']}. Smaller makes the kernel numerically the identity on typical data; "
                         f"larger differs from linear_cka by O(1/sigma²): use linear_cka")
    if params["median"] not in MEDIANS:
        raise ValueError(f"rbf_cka's median must be 'ordinary' or 'lower' (the bandwidth convention); got "
                         f"{params['median']!r}")


@torch.no_grad()
def rbf_kernel_offdiagonal(X: torch.Tensor, *, sigma: float = 1.0, median: str = "ordinary") -> dict[str, float]:
    """k̄ = Σ_{i≠j} exp(−γ‖xᵢ − xⱼ‖²) / (n(n − 1)): the mean off-diagonal entry of X's kernel at rbf_cka's
    bandwidth γ (`rbf_cka`). Near 0 the kernel is close to the identity, HKH is then close to H for any data, and
    rbf_cka reads ≈ 1 between unrelated representations: the value says little about the data (Davari et al. 2023's
    Fig. 4a σ = 0.2 setting on high-dimensional data). Row tiles: memory O(n·p + tile)."""
    Xc = center_rescaled(X.to(torch.promote_types(X.dtype, torch.float32)))
    n = X.shape[0]
    gamma = _gamma(median_sq_distance_tiled(Xc, TILE_BYTES, median == "lower"), sigma, "X")
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for i0, i1, D in distance_tiles(Xc, TILE_BYTES):
        K = D.mul_(-gamma).exp_()
        b = i1 - i0
        total += K[:, :b].sum().double() - K[:, :b].diagonal().sum().double() + 2.0 * K[:, b:].sum().double()
    return {"kernel_mean_offdiagonal": float(total / (n * (n - 1)))}


def rbf_cka_map(layers: list[torch.Tensor], *, sigma: float = 1.0, median: str = "ordinary") -> torch.Tensor:
    """`rbf_cka` between every pair of layers: one double-centred kernel per layer (untiled, autograd kept)."""
    kernels = [double_center(rbf_kernel(A, sigma, median, f"layer {i}")) for i, A in enumerate(layers)]
    return _alignment_map(torch.stack(kernels)).clamp(0.0, 1.0)


@register(
    invariances=_CKA_INVARIANCES,
    differentiable=True,
    min_samples=2,
    cost="O(n²·p)",
    layer_map=rbf_cka_map,
    diagnose=rbf_kernel_offdiagonal,
    # below this the kernel is numerically close to the identity on the data: HKH ≈ H for any representation, so
    # the metric reads ≈ 1 whatever the data
    degenerate_below={"kernel_mean_offdiagonal": 1e-3},
    reference="Kornblith et al. 2019 (RBF CKA, median heuristic); Davari et al. 2023, Fig. 4a (sigma 1, 0.5, 0.2; "
    "lower median)",
    variants=({"sigma": 0.5}, {"sigma": 0.2}, {"median": "lower"}, {"median": "lower", "sigma": 0.5},
              {"median": "lower", "sigma": 0.2}),
    version=2,  # 2: kernel as expm1 (float32 values move by ~1e-7), rounding past 1 clamped
    check_params=_check_rbf,
)
def rbf_cka(X: torch.Tensor, Y: torch.Tensor, *, sigma: float = 1.0, median: str = "ordinary") -> torch.Tensor:
    """Gaussian-kernel CKA: <HKH, HLH>_F / (||HKH||_F ||HLH||_F), K_ij = exp(−||xᵢ − xⱼ||² / (2·sigma²·m_X)).

    Bandwidth: m_X is a median of all n² squared pairwise distances of X, zero diagonal included, computed
    separately for X and Y; `sigma` multiplies the median distance. median="ordinary" (default) is the mean of
    the two middle values for an even count, as Kornblith et al.'s reference code (numpy's median);
    median="lower" is the lower of the two, as Davari et al. 2023's Fig. 4 code takes it (of the distances, then
    squared: the same order statistic as of the squared distances, since squaring keeps the order; torch.median
    returns it too). The variant rbf_cka[median=lower,sigma=0.2] is their Fig. 4a setting. sigma → ∞ recovers
    linear CKA; sigma must lie in [0.01, 100]. The median is treated as a constant under autograd.

    Refused at run time: a zero median (half the pairs duplicated; identical rows are at distance exactly 0) and
    a kernel that is numerically the identity (exp(−γD) < 2⁻²⁴ for the closest pair). The kernel is formed as
    K − 1 = expm1(−γD) (`rbf_kernel`), so it is never numerically all ones for sigma ≤ 100. Centred features are
    scaled by a power of two first (exact). Rounding past 1 is clamped.

    Computation: the two n×n kernels in memory (no centred copies: HSIC from row sums and inner products, the
    expansion <HKH, HLH> = <K, L> − (2/n)(K1)ᵀ(L1) + (1ᵀK1)(1ᵀL1)/n², accumulated in float64, on kernels shifted by
    their value at the median distance so that little cancels), the exact median by a selection over the matrix
    (`median_in_memory`), never a sort or kthvalue copy of its n² entries. When one n×n matrix would exceed
    RBF_UNTILED_MAX_BYTES (512 MiB: n > 11585 in float32, n > 8192 in float64) and no gradient is being recorded,
    the same sums come from `rbf_cka_tiled`: row tiles of the upper triangle, O(n·b) memory. The tiled path
    computes without autograd, so with inputs that require grad the in-memory path is always taken.
    """
    n = X.shape[0]
    needs_grad = torch.is_grad_enabled() and (X.requires_grad or Y.requires_grad)
    if not needs_grad and n * n * max(X.element_size(), Y.element_size()) > RBF_UNTILED_MAX_BYTES:
        return rbf_cka_tiled(X, Y, sigma, median=median)
    return _in_memory_alignment(X, Y, sigma, median)
