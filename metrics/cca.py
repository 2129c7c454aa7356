"""Canonical correlation analysis: mean CCA, R²_CCA, SVCCA and projection-weighted CCA.

The canonical correlations of X̃ and Ỹ (column-centred) are the cosines of the principal angles between their
column spaces: the singular values of T = QxᵀQy for orthonormal bases Qx, Qy (Björck & Golub 1973). Two routes
give T, and every metric below is a function of T (and, for pwcca, of X's neurons in X's basis):

- moments (the default whenever it is accurate): the centred co-moments X̃ᵀX̃, ỸᵀỸ, X̃ᵀỸ accumulated over row
  chunks (`simstress.core.linalg.comoments`, float64 accumulators, memory O(chunk + p²)), Cholesky factors
  X̃ᵀX̃ = LxLxᵀ in float64 and T = Lx⁻¹X̃ᵀỸLy⁻ᵀ, i.e. Qx = X̃Lx⁻ᵀ: the same formulas as the exact streaming route
  (`simstress.streaming`). A float32 computation takes the singular values of this float64 T in float32 for
  the means of cca_mean and svcca, as on the QR route (an error of ~ε₃₂ in the mean), but in float64 for pwcca,
  whose weights come from the singular vectors: float32 rotated them within clusters of close correlations
  (|Δ| = 3e-5 at p = 300).
  Forming X̃ᵀX̃ squares the condition number: rounding of the products in the compute dtype (ε) moves T by up
  to ~ε·κ², κ the condition number of the column-normalised X̃ (measured here: |Δρ| ≈ 1e-3·ε·κ²). So the route
  is taken only when the estimated κ ≤ ε^(−1/4) (54 in float32, 8200 in float64: an error bound ε·κ² ≤ √ε,
  observed errors ≤ 1e-6 and 1e-10) and every direction clears the rank tolerance below;
- QR (otherwise: rank-deficient or ill-conditioned input): Householder QR of the centred data, or its thin SVD
  truncated at the rank tolerance when |diag R| shows rank deficiency (`orthonormal_basis`). Never inverse square
  roots of covariance matrices, so float32 stays sound.

Rank: with rx = rank X̃ and ry = rank Ỹ there are k = min(rx, ry) canonical correlations, and every mean below
runs over those k by default (dead ReLU units or duplicated features reduce the rank and are not counted as
zeros; cca_mean[normalize=width] divides by min(p1, p2) instead). A direction counts when its singular value
clears `simstress.core.linalg.rank_tolerance`: the rounding floor of the precision the data came in (ε‖X‖_F:
float32 activations scored in float64 keep float32's floor, `simstress.core.inputs`) plus the computation's
max(n, p)·ε·σ_max. Low-rank float32 activations therefore keep their rank instead of gaining directions made of
rounding noise, which used to count as signal (cca_mean 0.78 for 0.33). The centred space has dimension d − 1
for d distinct samples (d = n without duplicated rows of [X Y]): once rx or ry reaches it (e.g. p ≥ n) every
canonical correlation is 1 whatever the data, and such inputs are refused with an InputError that says so.
Below that, rx + ry − (d − 1) correlations are still 1 by dimension count alone when rx + ry > d − 1: the values
are inflated there, which is a real weakness of CCA that the benchmark's tasks are meant to expose, so keep n
well above p1 + p2.

Layer maps (`MetricSpec.layer_map`: every pair of a list of layers, as the attacks' loss takes it): the
co-moments of all layers from one product and one whitening per layer (`layer_cross`, `svcca_map`), instead of
two per pair; wherever the moments route would not decide every pair as the metric does, pair by pair through
the metric itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from simstress.core.inputs import InputError, input_dtypes
from simstress.core.linalg import (
    RANK_MARGIN,
    CoMoments,
    LayerMoments,
    block_slices,
    center_rescaled_with_mean,
    comoments,
    frobenius,
    layer_moments,
    orthonormal_basis,
    rank_tolerance,
    rounding_floor,
    smallest_singular_value,
)
from simstress.core.metric import pairwise_map, register

_CCA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation", "invertible_linear")
_CCA_REFERENCE = (
    "Raghu et al. 2017, SVCCA: Singular Vector Canonical Correlation Analysis for Deep Learning Dynamics and "
    "Interpretability (NeurIPS)"
)


def fills_sample_space(r: int, d: int) -> bool:
    """Whether a centred span of rank r fills the (d − 1)-dimensional space of d distinct samples."""
    return r >= d - 1


def tied_by_dimension(rx: int, ry: int, d: int) -> bool:
    """Whether at least two canonical correlations are 1 by dimension count alone (rx + ry ≥ d + 1): pwcca refuses."""
    return rx + ry >= d + 1


def check_ranks(rx: int, ry: int, n: int, name: str, advice: str) -> None:
    """Refuse a span that fills the (n − 1)-dimensional centred sample space: every correlation is 1 then."""
    for which, r in (("X", rx), ("Y", ry)):
        if fills_sample_space(r, n):
            raise InputError(
                f"{name}: {which} has rank {r} with only n = {n} samples, so its centred span is the whole "
                f"(n − 1)-dimensional sample space and every canonical correlation is 1 whatever the data. {advice}"
            )


def first_column_values(A: torch.Tensor) -> int:
    """The number of distinct values in A's first column (a lower bound on A's distinct rows)."""
    return torch.unique(A[:, 0]).numel()


def distinct_samples(X: torch.Tensor, Y: torch.Tensor, limit: int, firsts: tuple[int, int] | None = None) -> int:
    """d, the number of distinct samples (rows of [X Y]), when d ≤ limit; otherwise n (d > limit, all callers need).

    Duplicated samples add no dimension: the centred spans lie in the (d − 1)-dimensional space of centred vectors
    constant on each group of duplicates. The exact count (a sort of the rows) is skipped when one column already
    has more than `limit` distinct values (a column's distinct values are at most d), the usual case. `firsts`:
    `first_column_values` of X and Y when the caller has them.
    """
    if max(firsts or (first_column_values(X), first_column_values(Y))) > limit:
        return X.shape[0]
    return torch.unique(torch.cat([X, Y], dim=1), dim=0).shape[0]


def rank_advice(n: int, d: int, advice: str) -> str:
    """`advice`, prefixed with the duplicate count when the n rows hold only d < n distinct samples."""
    if d == n:
        return advice
    return f"The {n} rows hold only {d} distinct samples (duplicates add no dimension). {advice}"


def cholesky_whitening(G: torch.Tensor, floor: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor | None:
    """The Cholesky factor L of G = X̃ᵀX̃ (float64, from products in `dtype`) when the moments route is accurate
    and X̃ has full rank at the rank tolerance (`floor`: the input's rounding floor); None otherwise.

    Accurate: κ(X̃D⁻¹) ≤ ε^(−1/4) for the column norms D = √diag G (the route's error grows as ε·κ²; column
    scales cost nothing, since the Cholesky factor of D⁻¹GD⁻¹ is D⁻¹L). Full rank: σ_min(X̃) ≥ σ_min(X̃D⁻¹)·min D
    clears the tolerance by RANK_MARGIN (the estimate is from above). One host sync.
    """
    L, info = torch.linalg.cholesky_ex(G)
    if int(info):
        return None
    G0, L0 = G.detach(), L.detach()
    d = G0.diagonal().sqrt()
    sigma_eq = smallest_singular_value(L0 / d[:, None])
    tol = rank_tolerance(floor, G0.trace().sqrt(), (n, G.shape[0]))
    if not bool((sigma_eq >= torch.finfo(dtype).eps ** 0.25) & (sigma_eq * d.min() > RANK_MARGIN * tol)):
        return None
    return L


def whitened_cross(Lx: torch.Tensor, C: torch.Tensor, Ly: torch.Tensor) -> torch.Tensor:
    """T = Lx⁻¹·C·Ly⁻ᵀ for the cross moment C = X̃ᵀỸ: QxᵀQy with the bases Qx = X̃Lx⁻ᵀ, Qy = ỸLy⁻ᵀ."""
    T = torch.linalg.solve_triangular(Lx, C, upper=False)
    return torch.linalg.solve_triangular(Ly, T.mT, upper=False).mT


@dataclass(frozen=True)
class Canonical:
    """T = QxᵀQy (rx, ry) for orthonormal bases of the centred spans, whose singular values are the canonical
    correlations; `neurons` = QxᵀX̃ (rx, p1), X's neurons in X's basis (pwcca only, detached); d the distinct
    samples up to rx + ry (`distinct_samples`)."""

    T: torch.Tensor
    neurons: torch.Tensor | None
    rx: int
    ry: int
    d: int


def moments_cross(mom: CoMoments, px: torch.dtype, py: torch.dtype, dtype: torch.dtype,
                  ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(T, Lxᵀ) from one block of co-moments (products in `dtype`; inputs of precisions px, py) by the Cholesky
    route when it is accurate and of full rank on both sides (`cholesky_whitening`), else None. Lxᵀ = QxᵀX̃."""
    Gx, Gy = mom.xx[0], mom.yy[0]
    Lx = cholesky_whitening(Gx, rounding_floor(Gx.trace(), mom.n, mom.mean_x, px), mom.n, dtype)
    if Lx is None:
        return None
    Ly = cholesky_whitening(Gy, rounding_floor(Gy.trace(), mom.n, mom.mean_y, py), mom.n, dtype)
    if Ly is None:
        return None
    return whitened_cross(Lx, mom.xy, Ly), Lx.detach().mT


def moment_rank_cut(sigma_max: torch.Tensor, floor: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype,
                    ) -> torch.Tensor:
    """The σ = √λ above which a direction of an (n, p) X̃ counts, from the eigenvalues λ of its co-moment X̃ᵀX̃
    accumulated from products in `dtype`: the rank tolerance, and √(max(n, p)·ε)·σ_max, since the moments resolve
    λ only to ~ε·λ_max (a smaller σ cannot be told from zero there)."""
    return torch.maximum(rank_tolerance(floor, sigma_max, shape),
                         (max(shape) * torch.finfo(dtype).eps) ** 0.5 * sigma_max.double())


def eigen_whitening(G: torch.Tensor, floor: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """W = V_r·Λ_r^(−1/2) (p, r) from the eigenvectors of G = X̃ᵀX̃ whose σ clear `moment_rank_cut`: X̃W is an
    orthonormal basis of the numerical range of X̃ (the streaming route where the Cholesky route is not)."""
    lam, V = torch.linalg.eigh(G)
    sig = lam.detach().clamp_min(0.0).sqrt()  # ascending
    keep = sig > moment_rank_cut(sig[-1], floor, (n, G.shape[0]), dtype)
    return V[:, keep] / lam[keep].sqrt()


def moments_may_decide(X: torch.Tensor, Y: torch.Tensor) -> bool:
    """Whether the co-moments route can apply: it needs full column rank, impossible where a width reaches n (a
    centred X̃ has rank ≤ n − 1), and there forming and factoring the p×p moments would be wasted work."""
    return max(X.shape[1], Y.shape[1]) < X.shape[0]


def _moments_route(X: torch.Tensor, Y: torch.Tensor, neurons: bool) -> Canonical | None:
    """`Canonical` from the co-moments (module docstring), or None where the moments route is not accurate."""
    if not moments_may_decide(X, Y):
        return None
    got = moments_cross(comoments(X, Y), *input_dtypes(X, Y), X.dtype)
    if got is None:
        return None
    p1, p2 = X.shape[1], Y.shape[1]
    return Canonical(got[0], got[1] if neurons else None, p1, p2, distinct_samples(X, Y, p1 + p2))


def _qr_route(X: torch.Tensor, Y: torch.Tensor, neurons: bool) -> Canonical:
    """`Canonical` from orthonormal bases of the centred data (QR, or the SVD cut at the rank tolerance)."""
    px, py = input_dtypes(X, Y)
    n = X.shape[0]
    (Xc, mx), (Yc, my) = center_rescaled_with_mean(X), center_rescaled_with_mean(Y)
    Qx = orthonormal_basis(Xc, rounding_floor(frobenius(Xc).square(), n, mx, px))
    Qy = orthonormal_basis(Yc, rounding_floor(frobenius(Yc).square(), n, my, py))
    rx, ry = Qx.shape[1], Qy.shape[1]
    P = Qx.detach().T @ Xc.detach() if neurons else None
    return Canonical(Qx.T @ Qy, P, rx, ry, distinct_samples(X, Y, rx + ry))


def check_nonzero_ranks(rx: int, ry: int, name: str) -> None:
    """Refuse a side with no direction above its rank tolerance: its variance is all rounding of its precision."""
    for which, r in (("X", rx), ("Y", ry)):
        if r == 0:
            raise InputError(f"{name}: {which} has no direction above the rounding of the precision it came in "
                             f"(its centred spread is within rounding of its magnitude, e.g. a tiny spread on a "
                             f"large offset in float32); pass it in float64 or without the offset")


def canonical(X: torch.Tensor, Y: torch.Tensor, name: str, neurons: bool = False) -> Canonical:
    """`Canonical` of X and Y by the moments route when it is accurate, else the QR route; rank-checked against
    the distinct samples (`check_ranks`). T is float64 on the moments route: metrics return X's dtype."""
    c = _moments_route(X, Y, neurons) or _qr_route(X, Y, neurons)
    check_nonzero_ranks(c.rx, c.ry, name)
    check_ranks(c.rx, c.ry, c.d, name, rank_advice(
        X.shape[0], c.d, "Use more samples than features, or svcca (it keeps only the top principal directions)"))
    return c


def canonical_correlations(T: torch.Tensor) -> torch.Tensor:
    """The min(rx, ry) canonical correlations, descending: singular values of the cross matrix T, clamped to [0, 1].

    T = QxᵀQy for orthonormal bases of the centred spans (QR route), Lx⁻¹X̃ᵀỸLy⁻ᵀ (moments, Cholesky), or
    WxᵀX̃ᵀỸWy for whitenings W with WᵀX̃ᵀX̃W = I (streaming moments): all are the cosines of the principal angles
    (Björck & Golub 1973).
    """
    return torch.linalg.svdvals(T).clamp(0.0, 1.0)


def mean_squared_correlation(T: torch.Tensor) -> torch.Tensor:
    """R²_CCA = Σρᵢ²/k = ‖T‖²_F / min(rx, ry) for the cross matrix T, clamped to [0, 1]: no singular values needed."""
    return (T.square().sum() / min(T.shape)).clamp(0.0, 1.0)


def full_rank_pairs(layers: list[torch.Tensor], ranks: list[int], joint: bool) -> bool:
    """Whether no pair (i ≤ j) of layers with ranks `ranks` is refused at its distinct samples d, as `canonical`
    counts them (`distinct_samples`): a span filling the sample space, or (`joint`, pwcca) correlations tied by
    dimension count."""
    firsts = [first_column_values(A) for A in layers]
    for i, j in itertools.combinations_with_replacement(range(len(layers)), 2):
        rx, ry = ranks[i], ranks[j]
        d = distinct_samples(layers[i], layers[j], rx + ry, (firsts[i], firsts[j]))
        if fills_sample_space(max(rx, ry), d) or (joint and tied_by_dimension(rx, ry, d)):
            return False
    return True


def layer_cross(layers: list[torch.Tensor], joint: bool = False,
                ) -> tuple[torch.Tensor, LayerMoments, list[torch.Tensor]] | None:
    """(T, moments, [Lᵢ]): T (Σp, Σp) holds Tᵢⱼ = Lᵢ⁻¹X̃ᵢᵀX̃ⱼLⱼ⁻ᵀ in its (i, j) block, from one product of all layers
    (`layer_moments`) and one Cholesky factor per layer (`cholesky_whitening`) instead of two per pair: what
    `canonical` computes for each pair on its moments route. None where that route would not decide every pair
    (no `layer_moments`: mixed or too many columns, or a width reaching n − 1, where a rank check could refuse;
    a layer ill-conditioned or rank-deficient; a pair refused at its distinct samples, `full_rank_pairs`): the
    caller then goes pair by pair, with the same routes and refusals as the metric."""
    n = layers[0].shape[0]
    mom = layer_moments(layers, below=n - 1)
    if mom is None:
        return None
    factors = []
    for i, A in enumerate(layers):
        L = cholesky_whitening(mom.block(i, i), mom.floor(i, n, A.dtype), n, A.dtype)
        if L is None:
            return None
        factors.append(L)
    if not full_rank_pairs(layers, [A.shape[1] for A in layers], joint):
        return None
    # Tᵢⱼ = Lᵢ⁻¹MᵢⱼLⱼ⁻ᵀ: each layer's rows, then its columns, solved by its own factor (Σpᵢ²·Σp, not (Σp)³)
    rows = torch.cat([torch.linalg.solve_triangular(L, mom.M[s], upper=False) for L, s in zip(factors, mom.slices)])
    T = torch.cat([torch.linalg.solve_triangular(L, rows[:, s].mT, upper=False).mT
                   for L, s in zip(factors, mom.slices)], dim=1)
    return T, mom, factors


def mean_correlation_map(T: torch.Tensor, slices: list[slice], dtype: torch.dtype) -> torch.Tensor:
    """The mean canonical correlation of every pair of layers from the blocks Tᵢⱼ of T (singular values in
    `dtype`, as `cca_mean` and `svcca` take them)."""
    return pairwise_map(lambda i, j: canonical_correlations(T[slices[i], slices[j]].to(dtype)).mean(),
                        range(len(slices)), True).to(dtype)


def cca_mean_map(layers: list[torch.Tensor], *, normalize: str = "rank") -> torch.Tensor:
    """`cca_mean` between every pair of layers, from `layer_cross` (pair by pair where it declines). Every pair it
    decides has full rank, where both normalisations divide by min(p1, p2)."""
    got = layer_cross(layers)
    if got is None:
        return pairwise_map(cca_mean, layers, True, normalize=normalize)
    return mean_correlation_map(got[0], got[1].slices, layers[0].dtype)


def cca_r2_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`cca_r2` between every pair of layers, from `layer_cross` (pair by pair where it declines)."""
    got = layer_cross(layers)
    if got is None:
        return pairwise_map(cca_r2, layers, True)
    T, s = got[0], got[1].slices
    return pairwise_map(lambda i, j: mean_squared_correlation(T[s[i], s[j]]), range(len(layers)), True
                        ).to(layers[0].dtype)


def _check_normalize(params: dict) -> None:
    if params["normalize"] not in ("rank", "width"):
        raise ValueError(f"cca_mean's normalize must be 'rank' or 'width' (divide Σρᵢ by min(rank X̃, rank Ỹ) or by "
                         f"min(p1, p2)); got {params['normalize']!r}")


@register(
    invariances=_CCA_INVARIANCES,
    differentiable=True,
    min_samples=3,
    cost="O(n·(p1² + p2²))",
    reference=_CCA_REFERENCE,
    variants=({"normalize": "width"},),
    check_params=_check_normalize,
    layer_map=cca_mean_map,
    version=2,  # 2: ranks at the input's precision (float32 rank-10 data: 0.78 → 0.35); moments route
)
def cca_mean(X: torch.Tensor, Y: torch.Tensor, *, normalize: str = "rank") -> torch.Tensor:
    """Mean canonical correlation: (1/k)·Σᵢ ρᵢ, ρᵢ = σᵢ(QxᵀQy), k = min(rank X̃, rank Ỹ) or min(p1, p2).

    ρᵢ are the canonical correlations of the column-centred X̃, Ỹ (cosines of the principal angles between their
    spans, Raghu et al. 2017's mean CCA). Width convention: normalize="rank" (default) averages over the
    min(rank X̃, rank Ỹ) correlations that exist, so directions deleted from one side (principal-component
    deletion, dead units) drop out of the average and the rest can still read 1; normalize="width" divides the
    same sum by min(p1, p2), counting each missing direction as a zero correlation (the normalisation of
    Kornblith et al. 2019's R²_CCA by the widths; equal to the default at full rank). Refuses inputs whose rank
    reaches d − 1 for d distinct samples (all ρᵢ = 1); see svcca.
    """
    rho = canonical_correlations(canonical(X, Y, "cca_mean").T.to(X.dtype))
    value = rho.sum() / min(X.shape[1], Y.shape[1]) if normalize == "width" else rho.mean()
    return value.to(X.dtype)


@register(
    invariances=_CCA_INVARIANCES,
    differentiable=True,
    min_samples=3,
    cost="O(n·(p1² + p2²))",
    reference="Kornblith et al. 2019, Similarity of Neural Network Representations Revisited (ICML), R²_CCA",
    layer_map=cca_r2_map,
    version=2,  # 2: ranks at the input's precision (float32 rank-10 data: 0.63 → 0.26); moments route
)
def cca_r2(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared canonical correlation R²_CCA = (1/k)·Σᵢ ρᵢ² = ||QxᵀQy||²_F / k, k = min(rank X̃, rank Ỹ).

    Kornblith et al. 2019's R²_CCA (their normalisation by min(p1, p2), with ranks in place of widths so that
    dead units are not counted). Refuses inputs whose rank reaches d − 1 (all ρᵢ = 1); see svcca.
    """
    return mean_squared_correlation(canonical(X, Y, "cca_r2").T).to(X.dtype)


def variance_cut(variances: torch.Tensor, rank: int, keep: float) -> int:
    """SVCCA's cut: the fewest leading directions d ≤ rank whose variances hold `keep` of the first `rank`'s total.

    `variances` descending: σᵢ² of X̃ (SVD route) or the eigenvalues λᵢ of X̃ᵀX̃ (moments). `rank` counts the
    directions above the rank tolerance (`top_variance_basis`, `moment_rank_cut`). keep = 1 keeps all
    `rank` directions.
    """
    var = variances[:rank]
    frac = var.cumsum(0) / var.sum()
    return min(rank, int((frac < keep).sum()) + 1)


def top_variance_basis(Xc: torch.Tensor, keep: float, floor: torch.Tensor) -> torch.Tensor:
    """Left singular vectors (n, d) of centred Xc spanning the top directions that hold `keep` of its variance:
    d = `variance_cut` of σ² among the σ above the rank tolerance (`floor`: the input's rounding floor). The SVD
    runs in float64 (rank decisions do, `rank_tolerance`); the basis comes back in Xc's dtype."""
    U, S, _ = torch.linalg.svd(Xc.double(), full_matrices=False)
    S0 = S.detach()
    rank = int((S0 > rank_tolerance(floor, S0[0], Xc.shape)).sum())
    return U[:, :variance_cut(S0.square(), rank, keep)].to(Xc.dtype)


def top_variance_whitening(G: torch.Tensor, keep: float, floor: torch.Tensor, n: int, dtype: torch.dtype,
                           ) -> tuple[torch.Tensor, bool]:
    """W (p, d) with X̃W = U_d, the top principal directions holding `keep` of the variance, from the eigenvalues
    λ of G = X̃ᵀX̃ (float64, products in `dtype`): W = V_d·Λ_d^(−1/2); and whether the moments decide it exactly.

    Directions count above `moment_rank_cut`. Exact (as the SVD route would decide) when every σ clears the
    tolerance by RANK_MARGIN and
    σ_min ≥ ε^(1/4)·σ_max (the criterion of the CCA moments route): then rank = p and d is read from accurate λ.
    """
    lam, V = torch.linalg.eigh(G)
    lam, V = lam.flip(0), V.flip(1)
    sig = lam.detach().clamp_min(0.0).sqrt()
    rank = int((sig > moment_rank_cut(sig[0], floor, (n, G.shape[0]), dtype)).sum())
    tol = rank_tolerance(floor, sig[0], (n, G.shape[0]))
    exact = bool((sig[-1] >= torch.finfo(dtype).eps ** 0.25 * sig[0]) & (sig[-1] > RANK_MARGIN * tol))
    d = variance_cut(lam.detach(), rank, keep)
    return V[:, :d] / lam[:d].sqrt(), exact


def svcca_map(layers: list[torch.Tensor], *, keep: float = 0.99) -> torch.Tensor:
    """`svcca` between every pair of layers from one product of all layers (`layer_moments`) and one whitening per
    layer (`top_variance_whitening`) instead of two per pair; pair by pair where the moments do not decide every
    layer's cut exactly or a pair is refused at its distinct samples (`full_rank_pairs`)."""
    n, dtype = layers[0].shape[0], layers[0].dtype
    mom = layer_moments(layers, below=n - 1)
    if mom is not None:
        whitenings = []
        for i, A in enumerate(layers):
            W, exact = top_variance_whitening(mom.block(i, i), keep, mom.floor(i, n, A.dtype), n, A.dtype)
            if not exact:
                break
            whitenings.append(W)
        else:
            cuts = [W.shape[1] for W in whitenings]
            if full_rank_pairs(layers, cuts, joint=False):
                W = torch.block_diag(*whitenings)  # (Σp, Σd), d the cuts: a product, no solve
                return mean_correlation_map(W.T @ mom.M @ W, block_slices(cuts), dtype)
    return pairwise_map(svcca, layers, True, keep=keep)


def _check_keep(params: dict) -> None:
    if not 0.0 < params["keep"] <= 1.0:
        raise ValueError(f"svcca needs 0 < keep <= 1 (the fraction of variance kept); got {params['keep']}")


@register(
    invariances=("translation", "isotropic_scaling", "orthogonal", "permutation"),
    differentiable=True,
    min_samples=3,
    cost="O(n·p·min(n, p))",
    reference=_CCA_REFERENCE,
    check_params=_check_keep,
    layer_map=svcca_map,
    version=2,  # 2: ranks at the input's precision and offsets (keep=1 as cca_mean); moments route
)
def svcca(X: torch.Tensor, Y: torch.Tensor, *, keep: float = 0.99) -> torch.Tensor:
    """SVCCA: mean canonical correlation after reducing X̃ and Ỹ to the top singular directions holding `keep`.

    X̃ = UΣVᵀ is cut to U_d, d the fewest directions with Σᵢ≤d σᵢ² ≥ keep·Σσ² (likewise Ỹ), then
    svcca = (1/k)·Σᵢ σᵢ(U_dxᵀ U_dy), k = min(dx, dy) (Raghu et al. 2017). keep = 1 gives cca_mean. The cut is
    not invariant to invertible linear maps. Gradients pass through the eigen- or singular-value decomposition,
    finite while the singular values of each input are distinct. Refuses a cut that still spans n − 1 dimensions:
    lower `keep` then.

    Routes as the CCA family's (module docstring): the eigenvalues of the co-moments X̃ᵀX̃, ỸᵀỸ when they decide
    the cut exactly (`top_variance_whitening`), else the thin SVD of the centred data. Directions count above the
    rank tolerance of the precision the data came in.
    """
    px, py = input_dtypes(X, Y)
    n = X.shape[0]
    exact_x = exact_y = False
    if moments_may_decide(X, Y):
        mom = comoments(X, Y)
        Gx, Gy = mom.xx[0], mom.yy[0]
        Wx, exact_x = top_variance_whitening(Gx, keep, rounding_floor(Gx.trace(), n, mom.mean_x, px), n, X.dtype)
        Wy, exact_y = top_variance_whitening(Gy, keep, rounding_floor(Gy.trace(), n, mom.mean_y, py), n, Y.dtype)
    if exact_x and exact_y:
        T = Wx.T @ mom.xy @ Wy
    else:
        (Xc, mx), (Yc, my) = center_rescaled_with_mean(X), center_rescaled_with_mean(Y)
        Ux = top_variance_basis(Xc, keep, rounding_floor(frobenius(Xc).square(), n, mx, px))
        Uy = top_variance_basis(Yc, keep, rounding_floor(frobenius(Yc).square(), n, my, py))
        T = Ux.T @ Uy
    dx, dy = T.shape
    check_nonzero_ranks(dx, dy, f"svcca[keep={keep}]")
    d = distinct_samples(X, Y, dx + dy)
    check_ranks(dx, dy, d, f"svcca[keep={keep}] (ranks after the cut)",
                rank_advice(n, d, "Lower keep or use more samples"))
    return canonical_correlations(T.to(X.dtype)).mean().to(X.dtype)


def projection_weighted(T: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """PWCCA from the cross matrix T (as in `canonical_correlations`) and P, X's neurons in the X basis of T.

    With T = UΣVᵀ, ρᵢ = clamp(σᵢ, 0, 1) and ⟨hᵢ, x̃ⱼ⟩ = (UᵀP)ᵢⱼ for X's canonical variates hᵢ: PWCCA = Σᵢ wᵢρᵢ,
    wᵢ ∝ Σⱼ |(UᵀP)ᵢⱼ|, Σᵢ wᵢ = 1 (Morcos et al. 2018). P = QxᵀX̃ (QR route), Lxᵀ (Cholesky) or WxᵀX̃ᵀX̃ (streaming). U is
    held constant under autograd (see pwcca); pass P detached too.
    """
    U, S, _ = torch.linalg.svd(T, full_matrices=False)
    w = (U.detach().T @ P).abs().sum(dim=1)
    return (w / w.sum() * S.clamp(0.0, 1.0)).sum().clamp(0.0, 1.0)  # Σwᵢ = 1 up to rounding


def pwcca_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`pwcca` between every ordered pair of layers, from `layer_cross` (pair by pair where it declines); X's neurons
    in X's basis are Lᵢᵀ, as on the metric's moments route."""
    got = layer_cross(layers, joint=True)
    if got is None:
        return pairwise_map(pwcca, layers, False)
    T, s, factors = got[0], got[1].slices, got[2]
    return pairwise_map(lambda i, j: projection_weighted(T[s[i], s[j]], factors[i].detach().mT),
                        range(len(layers)), False).to(layers[0].dtype)


@register(
    symmetric=False,
    invariances=("translation", "isotropic_scaling", "permutation"),
    differentiable=True,
    min_samples=3,
    cost="O(n·(p1² + p2²))",
    layer_map=pwcca_map,
    reference="Morcos et al. 2018, Insights on representational similarity in neural networks with canonical "
    "correlation (NeurIPS)",
    version=2,  # 2: ranks at the input's precision (float32 rank-10 data: 0.89 → 0.36); moments route
)
def pwcca(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Projection-weighted CCA: Σᵢ wᵢρᵢ, wᵢ ∝ Σⱼ |⟨hᵢ, x̃ⱼ⟩| over X's centred neurons x̃ⱼ, Σᵢ wᵢ = 1.

    hᵢ = Qx·uᵢ are X's canonical variates (uᵢ, ρᵢ from the SVD of QxᵀQy), so wᵢ is how much of X's neurons
    canonical direction i accounts for (Morcos et al. 2018). Not symmetric: the weights come from X. Invariant
    to any invertible linear map of Y but only to permutations (and isotropic scaling) of X's neurons. The
    weights are held constant under autograd: their derivative has 1/(ρᵢ² − ρⱼ²) terms that blow up at repeated
    correlations (e.g. near X = Y). Refuses inputs whose rank reaches d − 1 for d distinct samples (all ρᵢ = 1),
    and rx + ry ≥ d + 1: then at least two correlations are 1 by dimension count alone, the canonical variates of
    that tied group are any basis of it, and the ℓ1 weights change with the basis (float32 and float64 picked
    different ones). The centred data are scaled by a power of two first (exact; the weights are normalised).
    Routes and ranks as the CCA family's (module docstring); on the moments route QxᵀX̃ = Lx⁻¹X̃ᵀX̃ = Lxᵀ.
    """
    c = canonical(X, Y, "pwcca", neurons=True)
    if tied_by_dimension(c.rx, c.ry, c.d):
        raise InputError(f"pwcca: rank X̃ + rank Ỹ = {c.rx + c.ry} with {c.d} samples, so {c.rx + c.ry - c.d + 1} "
                         f"canonical correlations are 1 by dimension count alone and their projection weights "
                         f"depend on an arbitrary choice of basis. "
                         + rank_advice(X.shape[0], c.d, "Use more samples than p1 + p2"))
    return projection_weighted(c.T, c.neurons).to(X.dtype)
