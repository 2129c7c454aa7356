"""Robustness tasks: changes that preserve what a linear read-out can do; the ideal similarity stays at 1.

Davari et al. 2023 (ICLR), "Reliability of CKA as a Similarity Measure in Deep Learning": Theorem 1 (a subset
translated by c·v), Corollary 3 (one point), Corollary 4 (a translation that keeps linear separability and
margins) and Fig. 4 (two cubes; invertible linear maps; class and single-point translation of features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch
from scipy.optimize import lsq_linear

from simstress.core.linalg import frobenius, orthonormal_basis, rounding_floor
from simstress.core.metric import Metric
from simstress.core.scoring import clip01, mean_clipped
from simstress.core.synthetic import CUBE_SHIFT, gaussian_mixture, generator, two_cubes, unit_vector
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.core.theory import outlier_limit, participation_ratio, rms_radius, theorem1_limit
from simstress.metrics.probe import LinearProbe, fit_probe

from .preserving import Translation, TranslationSetup, TranslationTask, theory_columns, translate

N_CLASSES = 10
SEPARATION = 0.5  # class-mean scale of the mixtures: a held-out linear probe reaches ~0.85-0.99


@register_task(name="outlier_shift", category="robustness", sweep_name="c / σ̄ (outlier translation)", log_x=True)
class OutlierShift(TranslationTask):
    """One point translated by c·v, up to 1000× the data's RMS radius; every other point unchanged.

    Construction: X = ReLU'd 10-class Gaussian mixture whose classes share a correlated covariance with a
    power-law spectrum λ_k ∝ 1/k (`simstress.core.synthetic.gaussian_mixture`); one random row x_o is translated by c·v,
    v a random unit vector, c/σ̄ ∈ {1, 3, 10, 30, 100, 300, 1000}, σ̄ = RMS distance of the rows to their mean. Computed
    in float64. Class labels: the mixture's.
    Ground truth: n − 1 of n points are untouched, so the representation is functionally the same; the ideal
    similarity stays 1. Linear CKA instead tends to Corollary 3's limit sqrt(dim_PR(X))·||x_o − x̄||² /
    ((n−1)·σ̄²), dim_PR = ||X̃||_F⁴/||X̃ᵀX̃||²_F (details: `corollary3_limit`; curve: the exact finite-c linear
    CKA `linear_cka_theory`).
    Score: mean over the sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Corollary 3 and Fig. 4c (single-point translation).
    """

    sizes = {scale: {"n": n, "p": p, "sweep": (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)}
             for scale, n, p in (("smoke", 300, 32), ("default", 1000, 64), ("full", 10000, 256))}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> TranslationSetup:
        n, p, sweep = size["n"], size["p"], list(size["sweep"])
        X, labels = gaussian_mixture(n, p, N_CLASSES, generator(seed, 0), separation=SEPARATION)
        g = generator(seed, 1)
        index = int(torch.randint(n, (1,), generator=g))
        v = unit_vector(p, g)
        rows = torch.zeros(n, dtype=torch.bool)
        rows[index] = True
        sigma = rms_radius(X)
        shifts = [x * sigma for x in sweep]
        details = {
            "n": n, "p": p, "outlier_index": index, "rms_radius": sigma, "dim_pr": participation_ratio(X),
            "corollary3_limit": outlier_limit(X, index),
        }
        part = Translation(X.to(device), [rows.to(device)], v.to(device), sweep, shifts,
                           [theory_columns(X, rows, v, shifts)])
        return TranslationSetup(labels=labels.to(device), details=details, parts=[part])


@register_task(name="subset_translation", category="robustness", sweep_name="c (translation of cube 2)")
class SubsetTranslation(TranslationTask):
    """Two cubes, the second translated by c·v (Davari et al. Fig. 4a): Theorem 1's subset translation.

    Construction: cube 1 = U[−0.5, 0.5]^p, cube 2 = the same law shifted by 1.1 on the first coordinate
    (`simstress.core.synthetic.two_cubes`); all of cube 2 (ρ = 1/2) translated by c·v, v a random unit vector, c ∈ {1,
    5, 10, 15, …, 50}. Sizes: smoke 2×200 points, p = 200; default 2×2000, p = 200; full 2×10000, p = 1000 (the
    paper's). Computed in float64. Class labels: cube membership.
    Ground truth: each cube keeps its shape (a rigid translation), so the ideal similarity stays 1. The cubes
    stay disjoint, hence linearly separable, iff 1.1·e₁ + c·v ∉ [−1, 1]^p (curve: `cubes_disjoint`; v pointing
    back toward cube 1 can make them overlap at small c, as in the paper's set-up). Linear CKA
    tends to Theorem 1's limit n·ρ(1−ρ)·||μ_T − μ_U||²/||X̃ᵀX̃||_F, computed from the data (details:
    `theorem1_limit`; curve: the exact finite-c value `linear_cka_theory`).
    Score: mean over the sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Theorem 1 and Fig. 4a (§4.2).
    """

    sizes = {scale: {"n_per_cube": m, "p": p, "sweep": (1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)}
             for scale, m, p in (("smoke", 200, 200), ("default", 2000, 200), ("full", 10000, 1000))}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> TranslationSetup:
        m, p, sweep = size["n_per_cube"], size["p"], list(size["sweep"])
        X, labels = two_cubes(m, p, generator(seed, 0))
        v = unit_vector(p, generator(seed, 1))
        rows = labels == 1
        truth = theory_columns(X, rows, v, sweep)
        offset = torch.zeros(p, dtype=torch.float64)
        offset[0] = CUBE_SHIFT
        for c, row in zip(sweep, truth):
            row["cubes_disjoint"] = bool((offset + c * v).abs().max() > 1.0)
        details = {"n": 2 * m, "p": p, "translated_fraction": 0.5, "theorem1_limit": theorem1_limit(X, rows),
                   "dim_pr": participation_ratio(X), "rms_radius": rms_radius(X),
                   "cubes_disjoint_at_every_c": all(row["cubes_disjoint"] for row in truth)}
        part = Translation(X.to(device), [rows.to(device)], v.to(device), sweep, sweep, [truth])
        return TranslationSetup(labels=labels.to(device), details=details, parts=[part])


class QPDirection(NamedTuple):
    direction: torch.Tensor  # unit, ≥ 0, orthogonal to every class normal
    residual: float  # ||Qᵀd|| of the QP solution before the projection
    solution: torch.Tensor  # the QP solution d itself (every entry ≥ 0.1)


def separability_preserving_direction(probe: LinearProbe) -> QPDirection:
    """Unit d ≥ 0 with probe.weight·d = 0 exactly, so x → x + c·d changes no prediction (Davari et al. §4.2).

    Solves min dᵀ(QQᵀ + 1e-7·I)d s.t. d ≥ 0.1 (Q: orthonormal basis of the class normals) as the bounded least
    squares min ||[Qᵀ; sqrt(1e-7)·I]·d||² (scipy's BVLS, exact for this convex problem), then removes the
    residual QQᵀd that the ridge leaves (~1e-7) so that predictions are invariant for every c, not only small c.
    Returns the unit direction, ||Qᵀd|| before the projection, and the QP solution. Raises if no non-negative
    direction is orthogonal to the normals.
    """
    W = probe.weight.T.cpu()
    # the normals as they are (not centred): their rounding floor counts no mean
    Q = orthonormal_basis(W, rounding_floor(frobenius(W).square(), W.shape[0], W.new_zeros(()), W.dtype)).numpy()
    p = Q.shape[0]
    A = np.vstack([Q.T, np.sqrt(1e-7) * np.eye(p)])
    solution = lsq_linear(A, np.zeros(A.shape[0]), bounds=(0.1, np.inf), method="bvls").x
    residual = float(np.linalg.norm(Q.T @ solution))
    d = solution - Q @ (Q.T @ solution)
    if not d.min() > 0.0:
        raise RuntimeError(f"no non-negative direction is orthogonal to the probe's {Q.shape[1]} class normals "
                           f"(residual {residual:.3g}); use more features")
    return QPDirection(torch.from_numpy(d / np.linalg.norm(d)), residual, torch.from_numpy(solution))


@dataclass
class ClassTranslationSetup(TranslationSetup):
    probe: LinearProbe  # fitted on the untranslated X; its predictions are the function that must not change


@register_task(name="class_translation", category="robustness", sweep_name="c / σ̄ (class translation)",
               log_x=True)
class ClassTranslation(TranslationTask):
    """One class at a time translated along a direction every linear probe normal ignores (Corollary 4).

    Construction: X = ReLU'd 10-class Gaussian mixture (`simstress.core.synthetic.gaussian_mixture`, power-law
    covariance). A linear probe (`simstress.metrics.probe.fit_probe`, multinomial logistic, l2 = 1e-3) is fitted on all
    rows; d solves min dᵀ(QQᵀ + 1e-7·I)d s.t. d ≥ 0.1 elementwise (Q = orthonormal basis of the probe's class normals;
    scipy BVLS), the ridge's ~1e-7 residual is projected out and d is normalised: activations stay non-negative and
    the probe's logits all move by the same amount. Each class k in turn is translated by c·d, c/σ̄ in a sweep
    (smoke and default {1, 10, 100}; full {0.1, 0.3, 1, 3, 10, 30, 100, 1000}). Computed in float64.
    Ground truth: the probe's predictions are identical at every c (asserted by the task; details:
    `probe_accuracy_before`, `probe_accuracy_after`), so the ideal similarity stays 1. Linear CKA tends to the
    Theorem 1 limit of each class (details: `theorem1_limits`; curve: `linear_cka_theory`).
    Score: mean over classes and sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Corollary 4 and Fig. 4c (whole-class translation, §4.2).
    """

    sizes = {"smoke": {"n": 500, "p": 32, "sweep": (1.0, 10.0, 100.0)},
             "default": {"n": 1000, "p": 64, "sweep": (1.0, 10.0, 100.0)},
             "full": {"n": 10000, "p": 256, "sweep": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)}}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> ClassTranslationSetup:
        n, p, sweep = size["n"], size["p"], list(size["sweep"])
        X, labels = gaussian_mixture(n, p, N_CLASSES, generator(seed, 0), separation=SEPARATION)
        X, labels = X.to(device), labels.to(device)
        probe = fit_probe(X, labels)
        d, residual, _ = separability_preserving_direction(probe)
        d = d.to(device)
        sigma = rms_radius(X)
        shifts = [x * sigma for x in sweep]
        before = probe.predict(X)
        groups = [labels == k for k in range(N_CLASSES)]
        truth = []
        for k, rows in enumerate(groups):
            truth.append(theory_columns(X, rows, d, shifts))
            for c, row in zip(shifts, truth[-1]):
                Y = translate(X, rows, c * d)
                row.update({"class": k, "probe_accuracy": probe.accuracy(Y, labels),
                            "predictions_changed": int((probe.predict(Y) != before).sum())})
        changed = sum(row["predictions_changed"] for rows in truth for row in rows)
        if changed:
            raise RuntimeError(f"class_translation: {changed} probe predictions changed under a translation "
                               f"orthogonal to every class normal; the construction is broken")
        details = {
            "n": n, "p": p, "rms_radius": sigma, "probe_accuracy_before": probe.accuracy(X, labels),
            "probe_accuracy_after": min(row["probe_accuracy"] for rows in truth for row in rows),
            "predictions_changed": changed, "direction_min": float(d.min()), "direction_qp_residual": residual,
            "theorem1_limits": [theorem1_limit(X, rows) for rows in groups],
        }
        return ClassTranslationSetup(labels=labels, details=details, parts=[Translation(X, groups, d, sweep, shifts,
                                                                                      truth)], probe=probe)


@dataclass
class InvertibleSetup(Setup):
    X: torch.Tensor
    maps: list[tuple[float, float, torch.Tensor, float]]  # (μ, σ, M, cond M)


@register_task(name="invertible_linear", category="robustness", sweep_name="σ / μ (entries of M)", log_x=True)
class InvertibleLinear(Task):
    """Y = X·M for well-conditioned random M with i.i.d. N(μ, σ²) entries over a (μ, σ) grid (Fig. 4b).

    Construction: X = two cubes (`simstress.core.synthetic.two_cubes`, as Fig. 4a); M (p×p) has i.i.d. N(μ, σ²) entries,
    redrawn until cond(M) < 1e10 (so X = Y·M⁻¹ is recoverable to ~1e-6 in float64; the paper's bound 1/eps only ensures
    invertibility); μ, σ ∈ smoke {1, 10, 100}, default {1, 10, 100, 1000}, full {1, 5, 10, 25, 50, 100, 500,
    1e3, 5e3} (the paper's). Computed in float64. Class labels: cube membership.
    Ground truth: an invertible linear map preserves linear separability exactly (every linear read-out of X is
    one of Y and back), so the ideal similarity stays 1. Linear CKA moves over roughly [0.05, 0.72] on the
    paper's cubes.
    Score: mean over the grid of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Fig. 4b (§4.2).
    """

    sizes = {"smoke": {"n_per_cube": 150, "p": 16, "grid": (1.0, 10.0, 100.0)},
             "default": {"n_per_cube": 500, "p": 64, "grid": (1.0, 10.0, 100.0, 1000.0)},
             "full": {"n_per_cube": 10000, "p": 500,
                      "grid": (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0, 1e3, 5e3)}}
    max_condition = 1e10
    max_draws = 100

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> InvertibleSetup:
        m, p, grid = size["n_per_cube"], size["p"], size["grid"]
        X, labels = two_cubes(m, p, generator(seed, 0))
        g = generator(seed, 1)
        maps = []
        for mu in grid:
            for sd in grid:
                for _ in range(self.max_draws):
                    M = mu + sd * torch.randn(p, p, generator=g, dtype=torch.float64)
                    cond = float(torch.linalg.cond(M))
                    if cond < self.max_condition:
                        break
                else:
                    raise RuntimeError(f"invertible_linear: no M with cond < {self.max_condition:g} in "
                                       f"{self.max_draws} draws at μ = {mu}, σ = {sd}, p = {p}")
                maps.append((mu, sd, M.to(device), cond))
        details = {"n": 2 * m, "p": p, "grid": list(grid), "max_condition": max(c for *_, c in maps)}
        return InvertibleSetup(labels=labels.to(device), details=details, X=X.to(device), maps=maps)

    def cases(self, setup: InvertibleSetup) -> Iterator[Case]:
        for mu, sd, M, cond in setup.maps:
            yield Case(x=sd / mu, reference=setup.X, other=setup.X @ M, ref_key=0,
                       truth={"mu": mu, "sigma": sd, "condition": cond})

    def score(self, curve: pd.DataFrame, setup: InvertibleSetup) -> float:
        return mean_clipped(curve["similarity"])


@dataclass
class GlobalSetup(Setup):
    X: torch.Tensor  # float32
    direction: torch.Tensor  # float32 unit (p,)
    sweep: list[float]


@register_task(name="global_translation", category="robustness", sweep_name="c (translation of every point)",
               log_x=True, version=2)
class GlobalTranslation(Task):
    """Every point translated by c·v, c up to 2e4, in float32: numerical soundness of translation invariance.

    Construction: X = ReLU'd 10-class Gaussian mixture (`simstress.core.synthetic.gaussian_mixture`, unit-scale
    features), cast to float32; Y = X + c·v computed in float32, v a random unit vector, c ∈ {10, 100, 1e3, 5e3, 1e4,
    2e4}. The metric sees float32 tensors (the only task that does). Class labels: the mixture's. Only metrics that
    declare translation invariance are scored: for the others a translation is a real change (e.g. rsa, mutual_knn), and
    whether the invariance holds at all is the conformance check's job (the leaderboard's invariance table).
    Ground truth: a translation of all points changes nothing but the origin, so the ideal similarity stays 1
    for every c; a translation-invariant metric that falls here has lost precision (Gram-side centring in float32
    reads ≈0.01 at c = 2e4 where feature-side centring reads 0.9998, n = 2000, p = 256).
    Score: minimum over the sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023, the all-points translation of the workshop version's CIFAR figure and the
    authors' fix (LinCKA2: centre features before forming Grams), reproduced at n = 2000, p = 256.
    """

    sizes = {scale: {"n": n, "p": p, "sweep": (10.0, 100.0, 1e3, 5e3, 1e4, 2e4)}
             for scale, n, p in (("smoke", 500, 64), ("default", 1000, 128), ("full", 10000, 512))}

    def not_applicable(self, metric: Metric, setup: Setup) -> str | None:
        if "translation" not in metric.spec.invariances:
            return (f"{metric.id} does not declare translation invariance, so a global translation is a real "
                    f"change for it; this task tests the numerical soundness of that invariance")
        return super().not_applicable(metric, setup)

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> GlobalSetup:
        n, p = size["n"], size["p"]
        X, labels = gaussian_mixture(n, p, N_CLASSES, generator(seed, 0), separation=SEPARATION)
        v = unit_vector(p, generator(seed, 1))
        details = {"n": n, "p": p, "dtype": "float32", "rms_radius": rms_radius(X)}
        return GlobalSetup(labels=labels.to(device), details=details, X=X.to(device, torch.float32),
                           direction=v.to(device, torch.float32), sweep=list(size["sweep"]))

    def cases(self, setup: GlobalSetup) -> Iterator[Case]:
        for c in setup.sweep:
            yield Case(x=c, reference=setup.X, other=setup.X + c * setup.direction, ref_key=0, truth={})

    def score(self, curve: pd.DataFrame, setup: GlobalSetup) -> float:
        return float(clip01(curve["similarity"]).min())
