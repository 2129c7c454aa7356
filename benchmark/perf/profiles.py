"""What the harness knows about each metric's algorithm: FLOP model, unavoidable products, n×n memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _sym(n: int, p: int) -> float:
    """`feature_gram`: k symmetric panels cost (k+1)/(2k) of a GEMM's 2np²."""
    k = max(1, min(8, p // 256))
    return n * p * p * (k + 1) / k


def _qr_q(n: int, p: int) -> float:
    return 2 * (2 * n * p * p - 2 / 3 * p**3)  # geqrf + orgqr


def _svdvals(m: int, k: int) -> float:
    m, k = max(m, k), min(m, k)
    return 4 * m * k * k - 4 / 3 * k**3  # bidiagonalisation


def _cca(n: int, p1: int, p2: int) -> float:
    return _qr_q(n, p1) + _qr_q(n, p2) + 2 * n * p1 * p2 + _svdvals(p1, p2)


def _moments(n: int, p1: int, p2: int) -> float:
    return _sym(n, p1) + _sym(n, p2) + 2 * n * p1 * p2


@dataclass(frozen=True)
class Profile:
    """What the harness knows about a metric's algorithm."""

    flops: Callable[[int, int, int], float] | None  # (n, p1, p2) -> FLOPs
    baseline: str | None = None  # gram3 | cross | grams: the products it cannot avoid
    floor_svd: bool = False  # also needs the singular values of a p1×p2 matrix
    n2_memory: bool = False  # holds n×n matrices


PROFILES: dict[str, Profile] = {
    "linear_cka": Profile(_moments, "gram3"),
    "linear_cka_debiased": Profile(lambda n, a, b: 2 * n * (a * a + b * b + a * b), "gram3"),
    "procrustes": Profile(lambda n, a, b: 2 * n * a * b + _svdvals(a, b), "cross", floor_svd=True),
    "procrustes_angular": Profile(lambda n, a, b: 6 * n * a * b + 2 * n * (a * a + b * b) + 12 * a * b * min(a, b),
                                  "cross", floor_svd=True),
    "cca_mean": Profile(_cca, "gram3", floor_svd=True),
    "cca_r2": Profile(_cca, "gram3", floor_svd=True),
    "svcca": Profile(lambda n, a, b: _svdvals(n, a) + _svdvals(n, b) + 4 * n * (a * a + b * b) + 2 * n * a * b,
                     "gram3", floor_svd=True),
    "pwcca": Profile(lambda n, a, b: _cca(n, a, b) + 2 * n * a * a, "gram3", floor_svd=True),
    "rbf_cka": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams"),
    "rsa": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams", n2_memory=True),
    "mutual_knn": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams", n2_memory=True),
    "probe_accuracy": Profile(None),
    "probe_agreement": Profile(None),
    # exact streaming (simstress.streaming.LinearMoments over row batches): the moments / Cholesky route
    "streaming:linear_cka": Profile(_moments, "gram3"),
    "streaming:procrustes": Profile(lambda n, a, b: _moments(n, a, b) + _svdvals(a, b), "gram3", floor_svd=True),
    "streaming:cca_mean": Profile(lambda n, a, b: _moments(n, a, b) + (a**3 + b**3) + _svdvals(a, b), "gram3",
                                  floor_svd=True),
}

