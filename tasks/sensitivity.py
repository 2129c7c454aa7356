"""Sensitivity tasks: changes that destroy information; the ideal similarity falls, in order of the damage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from simstress.core.linalg import center
from simstress.core.scoring import clip01, effect_weight, positive_spearman
from simstress.core.synthetic import correlated_gaussian, gaussian_mixture, generator, random_rotation
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.core.theory import rms_radius
from simstress.metrics.probe import fit_probe, stratified_split

from .robustness import N_CLASSES, SEPARATION


@dataclass
class NoiseSetup(Setup):
    X: torch.Tensor
    noise: torch.Tensor  # E, i.i.d. N(0, 1/p): rows of unit RMS norm
    sigma: float  # σ̄ of X
    sweep: list[float]  # ε


@register_task(name="noise_sweep", category="sensitivity", sweep_name="ε (noise RMS / data RMS radius)")
class NoiseSweep(Task):
    """Y = X + ε·σ̄·E: growing isotropic noise drowns the representation.

    Construction: X = ReLU'd 10-class Gaussian mixture (`simstress.core.synthetic.gaussian_mixture`, power-law
    covariance), σ̄ its RMS distance to the mean; E has i.i.d. N(0, 1/p) entries (rows of unit RMS norm, one draw shared
    by every ε, so the damage is nested); ε ∈ {0, 0.1, 0.3, 1, 3, 10}, i.e. noise RMS = ε·σ̄. Computed in float64. Class
    labels: the mixture's.
    Ground truth: information about X in Y strictly decreases with ε; the ideal similarity falls monotonically,
    from 1 at ε = 0 to near 0 at ε = 10.
    Score: max(0, Spearman(similarity, −ε)) × clip(s(0) − s(ε_max), 0, 1): the right order times the size of
    the fall.
    Source: a standard sanity check with no single paper behind it (e.g. Kornblith et al. 2019, ICML, and
    Ding et al. 2021, NeurIPS, both add noise to representations to see similarity fall).
    """

    sizes = {scale: {"n": n, "p": p, "sweep": (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)}
             for scale, n, p in (("smoke", 300, 32), ("default", 1000, 64), ("full", 10000, 256))}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> NoiseSetup:
        n, p = size["n"], size["p"]
        X, labels = gaussian_mixture(n, p, N_CLASSES, generator(seed, 0), separation=SEPARATION)
        E = torch.randn(n, p, generator=generator(seed, 1), dtype=torch.float64) / p**0.5
        sigma = rms_radius(X)
        return NoiseSetup(labels=labels.to(device), details={"n": n, "p": p, "rms_radius": sigma},
                          X=X.to(device), noise=E.to(device), sigma=sigma, sweep=list(size["sweep"]))

    def cases(self, setup: NoiseSetup) -> Iterator[Case]:
        for eps in setup.sweep:
            yield Case(x=eps, reference=setup.X, other=setup.X + (eps * setup.sigma) * setup.noise, ref_key=0,
                       truth={})

    def score(self, curve: pd.DataFrame, setup: NoiseSetup) -> float:
        s = curve["similarity"].to_numpy()
        order = positive_spearman(s, -curve["x"].to_numpy())
        return order * float(clip01([s[0] - s[-1]])[0])


@dataclass
class Deletion:
    """One variant of pc_deletion: the principal directions it removes, in order, the labels they carry, and the
    held-out probe accuracy after each step of the sweep."""

    name: str
    components: torch.Tensor  # (p, max k): the directions removed first, then the next, ...
    labels: torch.Tensor
    accuracy: list[float]
    variance_removed: list[float]


@dataclass
class DeletionSetup(Setup):
    X: torch.Tensor
    centred: torch.Tensor  # X̃
    sweep: list[int]  # k
    variants: list[Deletion]


@register_task(name="pc_deletion", category="sensitivity", sweep_name="k (principal components removed)",
               version=3)
class PCDeletion(Task):
    """Remove principal components that carry the labels, of high variance and of low; truth = a probe's accuracy.

    Construction: X = ReLU'd correlated Gaussian with a power-law spectrum
    (`simstress.core.synthetic.correlated_gaussian`); uⱼ its j-th whitened principal-component score (left singular
    vector of X̃). Two variants, each with its own labels over 4 classes: `top`, labels = argmax_c Σ_{j≤16}
    j^(−1/2)·uⱼ·Bⱼc over the 16 top components, which are removed from the top, Y_k = X − X̃·V_k·V_kᵀ (V_k: the
    top-k principal directions); `low`, the same over the 16 components of lowest variance, removed from the bottom
    (Ding et al.'s decisive case: directions that carry the labels but little variance). k ∈ {0, 1, 2, 4, 8, 16}.
    B (16×4) has orthonormal columns, so each step removes a similar share of the label signal. Computed in
    float64. Class labels: the variant's.
    Ground truth: the held-out accuracy of a linear probe (`simstress.metrics.probe.fit_probe`, l2 = 1e-3) fitted
    on Y_k (seeded 50/50 stratified split), which falls from near 1 toward chance (1/4) as k grows, in both
    variants (curve: `probe_accuracy`; details: the accuracies and the variance removed: ~0.3 of it at k = 16 on
    top, a few percent on the bottom).
    Score: mean over the two variants of max(0, Spearman(similarity to X, probe accuracy)) × min(1, range of
    similarity / 0.1): the right order, earned in full only by a metric whose similarity moves by at least a tenth
    of its self-similarity over the sweep (`simstress.core.scoring.effect_weight`): full credit only for tracking
    the probe in both. Convention: the CCA family averages over min(rank X̃, rank Ỹ) canonical correlations, and
    deleting directions from Y lowers its rank while every remaining correlation stays 1, so mean CCA stays flat
    and scores 0 by that convention; `cca_mean[normalize=width]` divides Σρ by min(p1, p2) instead.
    Source: Ding, Denain & Steinhardt 2021, Grounding Representation Similarity with Statistical Testing
    (NeurIPS), principal-component deletion (low-variance components carry function that CKA misses).
    """

    sizes = {scale: {"n": n, "p": p, "sweep": (0, 1, 2, 4, 8, 16)}
             for scale, n, p in (("smoke", 500, 32), ("default", 1000, 64), ("full", 10000, 256))}
    label_components = 16
    n_label_classes = 4
    test_fraction = 0.5

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> DeletionSetup:
        n, p, sweep = size["n"], size["p"], list(size["sweep"])
        m = self.label_components
        X = correlated_gaussian(n, p, generator(seed, 0)).clamp_min(0.0).to(device)
        Xc = center(X)
        U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
        rank = int((S > S[0] * 1e-10).sum())  # the bottom directions must be real ones, not the null space
        weights = torch.arange(1, m + 1, dtype=torch.float64, device=device).rsqrt()
        B = random_rotation(m, generator(seed, 1))[:, : self.n_label_classes].to(device)
        var = S.square()
        setup = DeletionSetup(labels=None, details={}, X=X, centred=Xc, sweep=sweep, variants=[])
        for name, order in (("top", torch.arange(m)), ("low", torch.arange(rank - 1, rank - 1 - m, -1))):
            order = order.to(device)
            labels = ((U[:, order] * weights) @ B).argmax(dim=1)
            train, test = stratified_split(labels, test_fraction=self.test_fraction, seed=seed)
            variant = Deletion(name, Vh[order[: max(sweep)]].T, labels, [], [])
            for k in sweep:
                Y = self.delete(setup, variant, k)
                variant.accuracy.append(fit_probe(Y[train], labels[train]).accuracy(Y[test], labels[test]))
                variant.variance_removed.append(float(var[order[:k]].sum() / var.sum()))
            setup.variants.append(variant)
        setup.labels = setup.variants[0].labels  # the task has classes; each case says which (`Case.labels`)
        setup.details = {
            "n": n, "p": p, "n_label_classes": self.n_label_classes, "label_components": m,
            **{f"class_sizes_{v.name}": torch.bincount(v.labels, minlength=self.n_label_classes).tolist()
               for v in setup.variants},
            "probe_accuracy": {v.name: v.accuracy for v in setup.variants},
            "variance_removed": {v.name: v.variance_removed for v in setup.variants},
        }
        return setup

    @staticmethod
    def delete(setup: DeletionSetup, variant: Deletion, k: int) -> torch.Tensor:
        """X with the variant's first k principal directions projected out (the mean kept)."""
        V = variant.components[:, :k]
        return setup.X - (setup.centred @ V) @ V.T

    def cases(self, setup: DeletionSetup) -> Iterator[Case]:
        for v in setup.variants:
            for i, k in enumerate(setup.sweep):
                yield Case(x=k, reference=setup.X, other=self.delete(setup, v, k), ref_key=v.name,
                           truth={"variant": v.name, "probe_accuracy": v.accuracy[i],
                                  "variance_removed": v.variance_removed[i]}, labels=v.labels)

    def score(self, curve: pd.DataFrame, setup: DeletionSetup) -> float:
        parts = []
        for _, part in curve.groupby("variant", sort=True):
            s = part["similarity"].to_numpy()
            parts.append(positive_spearman(s, part["probe_accuracy"].to_numpy()) * effect_weight(s))
        return float(np.mean(parts))


@dataclass
class IndependentSetup(Setup):
    X: torch.Tensor  # (n, p_max); the case with ratio r uses the first r·n columns of X and of Y
    Y: torch.Tensor
    ratios: list[float]


@register_task(name="independent_highdim", category="sensitivity", sweep_name="p / n (features per sample)",
               log_x=True, version=2)
class IndependentHighDim(Task):
    """X and Y independent Gaussian, from fewer to many more features than samples: nothing in common.

    Construction: X, Y (n, p) with i.i.d. N(0, 1) entries, drawn independently, for p/n ∈ {0.1, 0.5, 1, 2, 5, 10}
    (the first p columns of one draw of n × 10n each); n = 100 (smoke), 500 (default), 1000 (full). Computed in
    float64. No class structure, so label-based metrics are not applicable.
    Ground truth: X and Y are unrelated at every p/n; the ideal similarity is 0. Biased linear CKA reads
    ≈ p/(p + n) (0.09 at p/n = 0.1, 0.91 at 10), as <K, L> and ||K||² are dominated by the diagonals; the
    debiased estimator, built on the unbiased HSIC, reads ≈ 0 throughout. CCA refuses p ≥ n − 1 (every canonical
    correlation is 1 there): a refused case counts as the worst (similarity 1).
    Score: mean over the sweep of 1 − clip(similarity, 0, 1), a refused case counting 0.
    Source: Song et al. 2012 (JMLR), unbiased HSIC; Nguyen, Raghu & Kornblith 2021 (ICLR), its use in CKA.
    """

    sizes = {scale: {"n": n, "ratios": (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)}
             for scale, n in (("smoke", 100), ("default", 500), ("full", 1000))}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> IndependentSetup:
        n, ratios = size["n"], list(size["ratios"])
        p = int(max(ratios) * n)
        X = torch.randn(n, p, generator=generator(seed, 0), dtype=torch.float64)
        Y = torch.randn(n, p, generator=generator(seed, 1), dtype=torch.float64)
        return IndependentSetup(labels=None, details={"n": n, "p_max": p}, X=X.to(device), Y=Y.to(device),
                                ratios=ratios)

    def cases(self, setup: IndependentSetup) -> Iterator[Case]:
        n = setup.X.shape[0]
        for r in setup.ratios:
            p = round(r * n)
            yield Case(x=r, reference=setup.X[:, :p], other=setup.Y[:, :p], ref_key=p, truth={"n": n, "p": p})

    def score(self, curve: pd.DataFrame, setup: IndependentSetup) -> float:
        return 1.0 - float(clip01(curve["similarity"], nonfinite=1.0).mean())
