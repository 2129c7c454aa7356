"""What the harness knows about each metric's algorithm: FLOP model, the products and decompositions it cannot
avoid (its roofline and its floor), a plain reference implementation where a target names one, n×n memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _sym(n: int, p: int) -> float:
    """`feature_gram`: k symmetric panels cost (k+1)/(2k) of a GEMM's 2np²."""
    k = max(1, min(8, p // 256))
    return n * p * p * (k + 1) / k


def _svdvals(m: int, k: int) -> float:
    m, k = max(m, k), min(m, k)
    return 4 * m * k * k - 4 / 3 * k**3  # bidiagonalisation


def _moments(n: int, p1: int, p2: int) -> float:
    return _sym(n, p1) + _sym(n, p2) + 2 * n * p1 * p2


def _cca(n: int, p1: int, p2: int) -> float:
    """Co-moments, two Cholesky factors, two triangular solves for T, its singular values."""
    return _moments(n, p1, p2) + (p1**3 + p2**3) / 3 + p1 * p1 * p2 + p1 * p2 * p2 + _svdvals(p1, p2)


@dataclass(frozen=True)
class Profile:
    """What the harness knows about a metric's algorithm.

    `baseline` names the products it cannot avoid (roofline = their time ÷ the metric's); `floor` the further
    baselines it cannot avoid either (decompositions, selections, sorts, gradient evaluations): floor = the time of
    `baseline` and `floor` together ÷ the metric's. `reference` is a plain torch implementation of the same metric
    (a comparison, not a floor).
    """

    flops: Callable[[int, int, int], float] | None  # (n, p1, p2) -> FLOPs
    baseline: str | None = None  # gram3 | cross | grams
    floor: tuple[str, ...] = ()
    reference: str | None = None
    n2_memory: bool = False  # holds n×n matrices


PROFILES: dict[str, Profile] = {
    "linear_cka": Profile(_moments, "gram3"),
    "linear_cka_debiased": Profile(lambda n, a, b: 2 * n * (a * a + b * b + a * b), "gram3"),
    "procrustes": Profile(lambda n, a, b: 2 * n * a * b + _svdvals(a, b), "cross", ("svd_pp64",)),
    "procrustes_angular": Profile(lambda n, a, b: 2 * n * a * b + _svdvals(a, b), "cross", ("svd_pp64",)),
    "cca_mean": Profile(_cca, "gram3", ("chol_pp", "chol_pp", "svd_pp")),
    "cca_r2": Profile(lambda n, a, b: _cca(n, a, b) - _svdvals(a, b), "gram3", ("chol_pp", "chol_pp")),
    "svcca": Profile(lambda n, a, b: _moments(n, a, b) + 9 * (a**3 + b**3) + _svdvals(a, b), "gram3",
                     ("eigh_pp", "eigh_pp", "svd_pp")),
    "pwcca": Profile(lambda n, a, b: _cca(n, a, b) + 2 * a * a * b, "gram3", ("chol_pp", "chol_pp", "svd_pp64")),
    "rbf_cka": Profile(lambda n, a, b: n * n * (a + b), "grams", ("rbf_rest",), "rbf_reference"),
    "rsa": Profile(lambda n, a, b: n * n * (a + b), "grams", ("rsa_rest",), "rsa_reference", n2_memory=True),
    "mutual_knn": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams", ("knn_rest",), n2_memory=True),
    "probe_accuracy": Profile(None, floor=("probe_evals",)),
    "probe_agreement": Profile(None, floor=("probe_evals",)),
    # exact streaming (simstress.streaming.LinearMoments over row batches): the moments / Cholesky route
    "streaming:linear_cka": Profile(_moments, "gram3"),
    "streaming:procrustes": Profile(lambda n, a, b: _moments(n, a, b) + _svdvals(a, b), "gram3", ("svd_pp64",)),
    "streaming:cca_mean": Profile(_cca, "gram3", ("chol_pp", "chol_pp", "svd_pp64")),
}

# Baselines: the bare work of a floor, timed on already centred inputs (measure.case_callable). A p×p decomposition
# runs in the precision the metric takes it in: the Cholesky factors and eigendecompositions of float64 co-moments
# in float64 (`chol_pp`, `eigh_pp`), the singular values in the input's dtype (`svd_pp`: cca_mean, svcca) or in
# float64 whatever it is (`svd_pp64`: Procrustes and pwcca, whose precision needs it, and the streaming routes, on
# the moments route that p < n takes, as on the grid). The n×n ones hold n×n matrices (memory cap); a baseline runs
# only at sizes where a selected metric's profile names it.
ROOFLINE_BASELINES = {"gram3": ("gram3_gemm", "gram3_sym"), "cross": ("cross",), "grams": ("grams",)}
N2_BASELINES = ("grams", "rbf_rest", "rsa_rest", "knn_rest", "rbf_reference", "rsa_reference")
# gradient evaluations of the multinomial loss that stand for a probe fit in `probe_evals` (per probe, two probes)
PROBE_EVALS = 100


def baselines_of(name: str) -> tuple[str, ...]:
    """Every baseline the profile of `name` needs, roofline first."""
    prof = PROFILES.get(name)
    if prof is None:
        return ()
    roof = ROOFLINE_BASELINES.get(prof.baseline, ()) if prof.baseline else ()
    return tuple(dict.fromkeys((*roof, *prof.floor, *([prof.reference] if prof.reference else []))))
