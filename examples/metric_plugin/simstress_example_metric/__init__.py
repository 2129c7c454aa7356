"""A simstress metric plugin: distance correlation (Székely, Rizzo & Bakirov 2007) as a representation similarity.

Installing this package is all it takes: its entry point in the group `simstress.metrics` makes simstress import
this module, and `@metrics.register` below adds the metric to the registry.
"""

import torch

from simstress.metrics import register


def _double_centered_distances(X: torch.Tensor) -> torch.Tensor:
    """A_ij = a_ij − ā_i· − ā_·j + ā_·· for the Euclidean distances a_ij = ||x_i − x_j||.

    Features are centred first (distances do not change), so the Gram route ||x||² + ||y||² − 2xᵀy does not
    cancel huge terms when the data sit far from the origin; the diagonal is set to its exact 0, since the square
    root would turn its rounding error (~1e-16·||x||²) into ~1e-8·||x|| (by selection, so gradients pass the
    off-diagonal distances only). The means are broadcast, never a dense n×n centring matrix.
    """
    Xc = X - X.mean(dim=0, keepdim=True)
    d = torch.cdist(Xc, Xc, compute_mode="use_mm_for_euclid_dist")
    a = torch.where(torch.eye(len(d), dtype=torch.bool, device=d.device), 0.0, d)  # not in place: autograd
    row = a.mean(dim=1, keepdim=True)
    return a - row - row.T + a.mean()


@register(
    invariances=("translation", "isotropic_scaling", "orthogonal", "permutation"),
    differentiable=True,  # so `simstress manipulate --attacker distance_correlation` can attack through it
    min_samples=4,
    cost="O(n²·(p1 + p2))",
    reference="Székely, Rizzo & Bakirov 2007, Measuring and testing dependence by correlation of distances "
    "(Annals of Statistics); Zhen et al. 2022, On the Versatile Uses of Partial Distance Correlation in Deep "
    "Learning (ECCV)",
)
def distance_correlation(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Distance correlation dCor = √(dCov²(X, Y) / √(dVar²(X)·dVar²(Y))), dCov²(X, Y) = mean(A ∘ B).

    A and B are the double-centred Euclidean distance matrices of the rows of X and Y. dCor lies in [0, 1], is 1
    for X = Y and depends on the representations only through their distances (so it ignores translation,
    rotation, isotropic scaling and feature order), but not only linear dependence.
    """
    A, B = _double_centered_distances(X), _double_centered_distances(Y)
    dcov2 = (A * B).mean()
    return (dcov2 / ((A * A).mean() * (B * B).mean()).sqrt()).clamp_min(0.0).sqrt()
