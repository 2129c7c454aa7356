"""Canonical correlation analysis: mean CCA, R²_CCA, SVCCA and projection-weighted CCA.

The canonical correlations of X̃ and Ỹ (column-centred) are the cosines of the principal angles between their
column spaces: the singular values of QxᵀQy for orthonormal bases Qx, Qy (Björck & Golub 1973). Bases come from
QR (SVD when rank deficient) of the centred data, never from inverse square roots of covariance matrices, so
float32 stays sound and autograd goes through QR and svdvals.

Rank: with rx = rank X̃ and ry = rank Ỹ there are k = min(rx, ry) canonical correlations, and every mean below
runs over those k by default (dead ReLU units or duplicated features reduce the rank and are not counted as
zeros; cca_mean[normalize=width] divides by min(p1, p2) instead). The centred space has dimension d − 1 for d
distinct samples (d = n without duplicated rows of [X Y]): once rx or ry reaches it (e.g. p ≥ n) every canonical
correlation is 1 whatever the data, and such inputs are refused with an InputError that says so. Below that,
rx + ry − (d − 1) correlations are still 1 by dimension count alone when rx + ry > d − 1: the values are inflated
there, which is a real weakness of CCA that the benchmark's tasks are meant to expose, so keep n well above
p1 + p2.
"""

from __future__ import annotations

import torch

from simstress.core.inputs import InputError
from simstress.core.linalg import center_rescaled, orthonormal_basis
from simstress.core.metric import register

_CCA_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation", "invertible_linear")
_CCA_REFERENCE = (
    "Raghu et al. 2017, SVCCA: Singular Vector Canonical Correlation Analysis for Deep Learning Dynamics and "
    "Interpretability (NeurIPS)"
)


def check_ranks(rx: int, ry: int, n: int, name: str, advice: str) -> None:
    """Refuse a span that fills the (n − 1)-dimensional centred sample space: every correlation is 1 then."""
    for which, r in (("X", rx), ("Y", ry)):
        if r >= n - 1:
            raise InputError(
                f"{name}: {which} has rank {r} with only n = {n} samples, so its centred span is the whole "
                f"(n − 1)-dimensional sample space and every canonical correlation is 1 whatever the data. {advice}"
            )


def distinct_samples(X: torch.Tensor, Y: torch.Tensor, limit: int) -> int:
    """d, the number of distinct samples (rows of [X Y]), when d ≤ limit; otherwise n (d > limit, all callers need).

    Duplicated samples add no dimension: the centred spans lie in the (d − 1)-dimensional space of centred vectors
    constant on each group of duplicates. The exact count (a sort of the rows) is skipped when one column already
    has more than `limit` distinct values (a column's distinct values are at most d), the usual case.
    """
    if max(torch.unique(X[:, 0]).numel(), torch.unique(Y[:, 0]).numel()) > limit:
        return X.shape[0]
    return torch.unique(torch.cat([X, Y], dim=1), dim=0).shape[0]


def rank_advice(n: int, d: int, advice: str) -> str:
    """`advice`, prefixed with the duplicate count when the n rows hold only d < n distinct samples."""
    if d == n:
        return advice
    return f"The {n} rows hold only {d} distinct samples (duplicates add no dimension). {advice}"


def cca_bases(X: torch.Tensor, Y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Centred X̃ (scaled by a power of two), orthonormal bases Qx (n, rx), Qy (n, ry) of the centred spans, and
    `distinct_samples` d up to rx + ry; rank-checked against d."""
    Xc = center_rescaled(X)
    Qx, Qy = orthonormal_basis(Xc), orthonormal_basis(center_rescaled(Y))
    rx, ry = Qx.shape[1], Qy.shape[1]
    n = X.shape[0]
    d = distinct_samples(X, Y, rx + ry)
    check_ranks(rx, ry, d, name, rank_advice(
        n, d, "Use more samples than features, or svcca (it keeps only the top principal directions)"))
    return Xc, Qx, Qy, d


def canonical_correlations(T: torch.Tensor) -> torch.Tensor:
    """The min(rx, ry) canonical correlations, descending: singular values of the cross matrix T, clamped to [0, 1].

    T = QxᵀQy for orthonormal bases of the centred spans (full batch), or WxᵀX̃ᵀỸWy for whitenings W with
    WᵀX̃ᵀX̃W = I (streaming moments): both are the cosines of the principal angles (Björck & Golub 1973).
    """
    return torch.linalg.svdvals(T).clamp(0.0, 1.0)


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
    _, Qx, Qy, _ = cca_bases(X, Y, "cca_mean")
    rho = canonical_correlations(Qx.T @ Qy)
    if normalize == "width":
        return rho.sum() / min(X.shape[1], Y.shape[1])
    return rho.mean()


@register(
    invariances=_CCA_INVARIANCES,
    differentiable=True,
    min_samples=3,
    cost="O(n·(p1² + p2²))",
    reference="Kornblith et al. 2019, Similarity of Neural Network Representations Revisited (ICML), R²_CCA",
)
def cca_r2(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared canonical correlation R²_CCA = (1/k)·Σᵢ ρᵢ² = ||QxᵀQy||²_F / k, k = min(rank X̃, rank Ỹ).

    Kornblith et al. 2019's R²_CCA (their normalisation by min(p1, p2), with ranks in place of widths so that
    dead units are not counted). Refuses inputs whose rank reaches d − 1 (all ρᵢ = 1); see svcca.
    """
    _, Qx, Qy, _ = cca_bases(X, Y, "cca_r2")
    return canonical_correlations(Qx.T @ Qy).square().mean()


def variance_cut(variances: torch.Tensor, rank: int, keep: float) -> int:
    """SVCCA's cut: the fewest leading directions d ≤ rank whose variances hold `keep` of the first `rank`'s total.

    `variances` descending: σᵢ² of X̃ (full batch) or the eigenvalues λᵢ of X̃ᵀX̃ (streaming moments). `rank`
    counts the numerically non-zero ones, and each route keeps its own threshold: σ > rtol·σ_max on the SVD route
    (`top_variance_basis`, as `orthonormal_basis`), λ > rtol·λ_max on the eigenvalues of the moments, whose
    rounding is ~ε·λ_max. keep = 1 keeps all `rank` directions.
    """
    var = variances[:rank]
    frac = var.cumsum(0) / var.sum()
    return min(rank, int((frac < keep).sum()) + 1)


def top_variance_basis(Xc: torch.Tensor, keep: float) -> torch.Tensor:
    """Left singular vectors (n, d) of centred Xc spanning the top directions that hold `keep` of its variance.

    d = `variance_cut` of σ², among the σ > rtol·σ_max with `orthonormal_basis`'s rtol = max(n, p)·ε.
    """
    n, p = Xc.shape
    U, S, _ = torch.linalg.svd(Xc, full_matrices=False)
    rank = int((S > max(n, p) * torch.finfo(Xc.dtype).eps * S[0]).sum())
    return U[:, :variance_cut(S.square(), rank, keep)]


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
)
def svcca(X: torch.Tensor, Y: torch.Tensor, *, keep: float = 0.99) -> torch.Tensor:
    """SVCCA: mean canonical correlation after reducing X̃ and Ỹ to the top singular directions holding `keep`.

    X̃ = UΣVᵀ is cut to U_d, d the fewest directions with Σᵢ≤d σᵢ² ≥ keep·Σσ² (likewise Ỹ), then
    svcca = (1/k)·Σᵢ σᵢ(U_dxᵀ U_dy), k = min(dx, dy) (Raghu et al. 2017). keep = 1 gives cca_mean. The cut is
    not invariant to invertible linear maps. Gradients pass through the SVD, finite while the singular values of
    each input are distinct. Refuses a cut that still spans n − 1 dimensions: lower `keep` then.
    """
    Ux, Uy = top_variance_basis(center_rescaled(X), keep), top_variance_basis(center_rescaled(Y), keep)
    dx, dy = Ux.shape[1], Uy.shape[1]
    d = distinct_samples(X, Y, dx + dy)
    check_ranks(dx, dy, d, f"svcca[keep={keep}] (ranks after the SVD cut)",
                rank_advice(X.shape[0], d, "Lower keep or use more samples"))
    return canonical_correlations(Ux.T @ Uy).mean()


def projection_weighted(T: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """PWCCA from the cross matrix T (as in `canonical_correlations`) and P, X's neurons in the X basis of T.

    With T = UΣVᵀ, ρᵢ = clamp(σᵢ, 0, 1) and ⟨hᵢ, x̃ⱼ⟩ = (UᵀP)ᵢⱼ for X's canonical variates hᵢ: PWCCA = Σᵢ wᵢρᵢ,
    wᵢ ∝ Σⱼ |(UᵀP)ᵢⱼ|, Σᵢ wᵢ = 1 (Morcos et al. 2018). P = QxᵀX̃ (full batch) or WxᵀX̃ᵀX̃ (moments). U is
    held constant under autograd (see pwcca); pass P detached too.
    """
    U, S, _ = torch.linalg.svd(T, full_matrices=False)
    w = (U.detach().T @ P).abs().sum(dim=1)
    return (w / w.sum() * S.clamp(0.0, 1.0)).sum().clamp(0.0, 1.0)  # Σwᵢ = 1 up to rounding


@register(
    symmetric=False,
    invariances=("translation", "isotropic_scaling", "permutation"),
    differentiable=True,
    min_samples=3,
    cost="O(n·(p1² + p2²))",
    reference="Morcos et al. 2018, Insights on representational similarity in neural networks with canonical "
    "correlation (NeurIPS)",
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
    """
    Xc, Qx, Qy, d = cca_bases(X, Y, "pwcca")
    rx, ry = Qx.shape[1], Qy.shape[1]
    if rx + ry >= d + 1:
        raise InputError(f"pwcca: rank X̃ + rank Ỹ = {rx + ry} with {d} samples, so {rx + ry - d + 1} canonical "
                         f"correlations are 1 by dimension count alone and their projection weights depend on an "
                         f"arbitrary choice of basis. " + rank_advice(X.shape[0], d, "Use more samples than p1 + p2"))
    return projection_weighted(Qx.T @ Qy, Qx.detach().T @ Xc.detach())
