"""Orthogonal Procrustes similarity and the angular shape distance built on it.

With column-centred X̃, Ỹ, min over orthogonal Q of ||X̃/||X̃||_F − Ỹ/||Ỹ||_F·Q||²_F = 2 − 2·||X̃ᵀỸ||_* /
(||X̃||_F ||Ỹ||_F) (Schönemann 1966); the ratio is the Procrustes similarity (Ding et al. 2021) and its arccos
the angular shape metric (Williams et al. 2021).

The similarity needs only X̃ᵀỸ and the two sums of squares: accumulated over row chunks (`comoments` without the
Grams: one p1×p2 product, float64 accumulators, memory O(chunk + p1·p2)), then the p1×p2 singular values. When a
side has p ≥ n features it is first rotated into n − 1 coordinates (`row_space_coords`), where the p1×p2 product
would be larger than the data. A layer map (`similarity_map`) takes every pair's cross moment from one product
of all layers.
"""

from __future__ import annotations

import math

import torch

from simstress.core.linalg import center_rescaled, comoments, frobenius, layer_moments
from simstress.core.metric import pairwise_map, register

_PROCRUSTES_INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation")


def row_space_coords(Xc: torch.Tensor) -> torch.Tensor:
    """Centred Xc itself when p < n, else (n, n − 1) coordinates Z with Xc = Z·Qᵀ, Q orthonormal (p, n − 1).

    Singular values of X̃ᵀỸ equal those of ZxᵀZy, so wide inputs cost O(p·n²) instead of O(n·p1·p2 + p³).
    The n centred rows sum to zero, so the first n − 1 span them: QR of their transpose (full column rank for
    generic data, which keeps the QR differentiable) gives Z = [Rᵀ; −1ᵀRᵀ].
    """
    n, p = Xc.shape
    if p < n:
        return Xc
    _, R = torch.linalg.qr(Xc[:-1].T, mode="reduced")
    Z = R.T
    return torch.cat([Z, -Z.sum(dim=0, keepdim=True)])


def unit_coords(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred, compressed (`row_space_coords`) and Frobenius-normalised X̂, Ŷ.

    Centred data are scaled by a power of two before the norm (`center_rescaled`, exact): in float32 its squares
    overflowed at |x| ≈ 1e20 (procrustes read 0, the angle 0: "identical") and underflowed at 1e-30.
    """
    Zx, Zy = row_space_coords(center_rescaled(X)), row_space_coords(center_rescaled(Y))
    return Zx / frobenius(Zx), Zy / frobenius(Zy)


def nuclear_similarity(C: torch.Tensor) -> torch.Tensor:
    """||C||_* for the cross product C = X̂ᵀŶ of unit-Frobenius centred representations, clamped to ≤ 1.

    The sum of the singular values of C, not square roots of eigenvalues of CᵀC (which lose the small ones in
    float32). C comes from the data (`procrustes_similarity`) or from co-moments, X̃ᵀỸ/√(tr X̃ᵀX̃ · tr ỸᵀỸ).
    """
    return torch.linalg.svdvals(C).sum().clamp(max=1.0)


def procrustes_similarity(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """`nuclear_similarity` of X̂ᵀŶ, float64 when p1, p2 < n: from the co-moments X̃ᵀỸ/√(‖X̃‖²‖Ỹ‖²) (centred per
    row chunk, merged in float64); otherwise X̂ and Ŷ from `unit_coords` (the row-space coordinates). The singular
    values stay in float64 for float32 data too: the nuclear norm sums all of them, and float32's errors (2e-7 in
    s, 8e-7 in θ at p = 300, eight times the input's own rounding) would add up with p."""
    n = X.shape[0]
    if X.shape[1] >= n or Y.shape[1] >= n:
        Xn, Yn = unit_coords(X, Y)
        return nuclear_similarity(Xn.T @ Yn)
    mom = comoments(X, Y, grams=False)
    return nuclear_similarity(mom.xy / (mom.xx[0] * mom.yy[0]).sqrt())


def procrustes_chord(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """min over orthogonal Q of ||X̂ − ŶQ||_F (zero-padding the narrower side), as a norm of residuals.

    With X̂ᵀŶ = USVᵀ, the squared chord 2 − 2·ΣS splits into ||X̂ − X̂UUᵀ||² + ||Ŷ − ŶVVᵀ||² + ||X̂U − ŶV||²;
    each part is formed entrywise, so a chord of 1e-4 is resolved in float32 instead of being lost in 1 − ΣS.
    U, V are held constant under autograd: at the optimum that gives the exact gradient (envelope theorem).
    """
    Xn, Yn = unit_coords(X, Y)
    U, _, Vh = torch.linalg.svd((Xn.T @ Yn).detach(), full_matrices=False)
    V = Vh.T
    Px, Py = Xn @ U, Yn @ V
    parts = (Xn - Px @ U.T, Yn - Py @ V.T, Px - Py)
    return sum(r.square().sum() for r in parts).sqrt()


def similarity_map(layers: list[torch.Tensor]) -> torch.Tensor | None:
    """`procrustes_similarity` between every pair of layers narrower than n, float64: every cross moment and sum of
    squares from one product of all layers (`layer_moments`), then each pair's singular values; None where
    `layer_moments` declines (mixed layers, too many columns, a width reaching n: the pairwise route then)."""
    mom = layer_moments(layers, below=layers[0].shape[0])
    if mom is None:
        return None
    sums = [mom.block(i, i).trace() for i in range(len(layers))]
    return pairwise_map(lambda i, j: nuclear_similarity(mom.block(i, j) / (sums[i] * sums[j]).sqrt()),
                        range(len(layers)), True)


def procrustes_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`procrustes` between every pair of layers (`similarity_map`, else pair by pair)."""
    S = similarity_map(layers)
    return pairwise_map(procrustes, layers, True) if S is None else S.to(layers[0].dtype)


@register(
    invariances=_PROCRUSTES_INVARIANCES,
    differentiable=True,
    min_samples=2,
    cost="O(n·p·min(n, p))",
    reference="Ding, Denain & Steinhardt 2021, Grounding Representation Similarity with Statistical Testing "
    "(NeurIPS); Schönemann 1966",
    layer_map=procrustes_map,
)
def procrustes(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Orthogonal Procrustes similarity ||X̃ᵀỸ||_* / (||X̃||_F ||Ỹ||_F) on column-centred X̃, Ỹ, in [0, 1].

    Equals 1 − ½·min_Q ||X̃/||X̃||_F − Ỹ/||Ỹ||_F·Q||²_F over orthogonal Q (Ding et al. 2021's Procrustes
    distance is 2 − 2× this). The nuclear norm is the sum of the singular values of the p1×p2 cross product
    (not square roots of eigenvalues, which lose the small ones in float32); when p ≥ n each side is first
    rotated into n − 1 coordinates, which leaves the value unchanged. Memory O(n·p) only then: otherwise the
    products run over row chunks (module docstring).
    """
    return procrustes_similarity(X, Y).to(X.dtype)


def right_angle(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The largest value of `dtype` not above π/2 (float32 rounds π/2 up, to 1.5707964)."""
    half_pi = torch.tensor(math.pi / 2, dtype=dtype, device=device)
    return half_pi if float(half_pi) <= math.pi / 2 else torch.nextafter(half_pi, torch.zeros_like(half_pi))


def angle(s: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """θ from the Procrustes similarity s of X and Y: arccos(s) while 1 − s ≥ √ε, else from the chord of X and Y
    (`procrustes_angular`), at most π/2 in X's dtype."""
    if bool(1.0 - s.detach() >= torch.finfo(X.dtype).eps ** 0.5):
        theta = torch.arccos(s.clamp(0.0, 1.0)).to(X.dtype)
    else:
        theta = 2.0 * torch.arcsin((0.5 * procrustes_chord(X, Y)).clamp(max=1.0))
    return torch.minimum(theta, right_angle(theta.dtype, theta.device))


def procrustes_angular_map(layers: list[torch.Tensor]) -> torch.Tensor:
    """`procrustes_angular` between every pair of layers: the similarities from `similarity_map` (else pair by
    pair), each pair's angle as `angle` takes it (the chord, near θ = 0, from the pair's own data)."""
    S = similarity_map(layers)
    if S is None:
        return pairwise_map(procrustes_angular, layers, True)
    return pairwise_map(lambda i, j: angle(S[i, j], layers[i], layers[j]), range(len(layers)), True)


@register(
    kind="distance",
    invariances=_PROCRUSTES_INVARIANCES,
    differentiable=True,
    min_samples=2,
    value_range=(0.0, torch.pi / 2),
    cost="O(n·p·min(n, p))",
    reference="Williams, Kunz, Kornblith & Linderman 2021, Generalized Shape Metrics on Neural Representations "
    "(NeurIPS)",
    layer_map=procrustes_angular_map,
)
def procrustes_angular(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Angular shape distance θ = arccos(||X̃ᵀỸ||_* / (||X̃||_F ||Ỹ||_F)) in [0, π/2], a metric on shapes.

    Williams et al. 2021's angular Procrustes distance between column-centred, Frobenius-normalised
    representations modulo rotations. θ = arccos(s) of the Procrustes similarity s (`procrustes_similarity`,
    float64 from the co-moments) while 1 − s ≥ √ε of the compute dtype: there s's rounding (~ε) moves θ by
    ~ε/sin θ ≤ ε^(3/4). Nearer 0, arccos would turn that rounding into an angle of √(2ε) (3e-4 in float32 for
    identical inputs), so θ = 2·arcsin(c/2) from the chord c = min_Q ||X̂ − ŶQ||_F (`procrustes_chord`, formed
    entrywise: it resolves θ to ~ε, at 3–4 times the similarity's cost). The value never exceeds π/2: it is
    clamped, by construction, to the largest number of its dtype not above π/2 (`right_angle`; float32's π/2
    itself is above). The derivative is bounded away from θ = 0, where it has a kink.
    """
    return angle(procrustes_similarity(X, Y), X, Y)
