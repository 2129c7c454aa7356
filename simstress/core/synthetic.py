"""Seeded synthetic data for the task battery: correlated Gaussians, labelled Gaussian mixtures, two cubes.

Every generator draws on the CPU in float64 from its own `torch.Generator` and is moved to the caller's device
afterwards, so a seed gives the same data on every device. The ReLU'd generators imitate post-activation network
features: non-negative, sparse, with a decaying (power-law) covariance spectrum.
"""

from __future__ import annotations

import torch


def generator(seed: int, stream: int) -> torch.Generator:
    """An independent CPU generator per (seed, stream), so adding a draw to one stream never shifts another."""
    return torch.Generator().manual_seed(1_000_003 * seed + stream)


def random_rotation(p: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random p×p orthogonal matrix (QR of a Gaussian matrix with the signs of diag R fixed)."""
    Q, R = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def unit_vector(p: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random direction on the unit sphere of R^p."""
    v = torch.randn(p, generator=gen, dtype=torch.float64)
    return v / v.square().sum().sqrt()


def decaying_spectrum(p: int, decay: float) -> torch.Tensor:
    """Variances λ_k ∝ k^(−decay), k = 1..p, scaled to mean 1 (so the total variance is p)."""
    lam = torch.arange(1, p + 1, dtype=torch.float64).pow(-decay)
    return lam * (p / lam.sum())


def correlated_gaussian(n: int, p: int, gen: torch.Generator, decay: float = 1.0) -> torch.Tensor:
    """n rows of N(0, R·diag(λ)·Rᵀ): power-law spectrum λ_k ∝ k^(−decay) in a random orthonormal basis R."""
    R = random_rotation(p, gen)
    Z = torch.randn(n, p, generator=gen, dtype=torch.float64)
    return (Z * decaying_spectrum(p, decay).sqrt()) @ R.T


def balanced_labels(n: int, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """n int64 labels, class sizes differing by at most one, in random order."""
    if n < n_classes:
        raise ValueError(f"need at least one sample per class: n = {n} < n_classes = {n_classes}")
    labels = torch.arange(n, dtype=torch.int64) % n_classes
    return labels[torch.randperm(n, generator=gen)]


def gaussian_mixture(n: int, p: int, n_classes: int, gen: torch.Generator, *, separation: float,
                     decay: float = 1.0, relu: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled mixture: x = ReLU(μ_y + z), z ~ N(0, R·diag(λ)·Rᵀ), μ_y ~ separation·N(0, R·diag(λ)·Rᵀ).

    Class means are drawn with the noise's own covariance, so every direction has the same class signal to
    noise ratio (`separation`²) and no low-variance direction separates the classes for free. Returns
    (X (n, p) float64, labels (n,) int64), classes balanced.
    """
    R = random_rotation(p, gen)
    scale = decaying_spectrum(p, decay).sqrt()
    means = separation * torch.randn(n_classes, p, generator=gen, dtype=torch.float64) * scale
    labels = balanced_labels(n, n_classes, gen)
    Z = (means[labels] + torch.randn(n, p, generator=gen, dtype=torch.float64) * scale) @ R.T
    return (Z.clamp_min(0.0) if relu else Z), labels


CUBE_SHIFT = 1.1  # Davari et al. 2023, Fig. 4a: the second cube's offset on the first coordinate


def two_cubes(n_per_cube: int, p: int, gen: torch.Generator,
              shift: float = CUBE_SHIFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Davari et al. 2023, Fig. 4a/b: cube 0 ~ U[−0.5, 0.5]^p, cube 1 the same shifted by `shift` on coordinate 0.

    Returns (X (2·n_per_cube, p) float64, labels = cube index), cube 0's rows first. The cubes are linearly
    separable (gap shift − 1 along coordinate 0).
    """
    X = torch.rand(2 * n_per_cube, p, generator=gen, dtype=torch.float64) - 0.5
    X[n_per_cube:, 0] += shift
    labels = torch.arange(2, dtype=torch.int64).repeat_interleave(n_per_cube)
    return X, labels
