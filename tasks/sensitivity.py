"""Sensitivity tasks: changes that destroy information; the ideal similarity falls, in order of the damage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

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
class DeletionSetup(Setup):
    X: torch.Tensor
    components: torch.Tensor  # (p, max k) top principal directions of X, by decreasing variance
    centred: torch.Tensor  # X̃
    sweep: list[int]  # k


@register_task(name="pc_deletion", category="sensitivity", sweep_name="k (top principal components removed)",
               version=2)
class PCDeletion(Task):
    """Remove the top-k principal components when the labels live in them; truth = a probe's accuracy.

    Construction: X = ReLU'd correlated Gaussian with a power-law spectrum
    (`simstress.core.synthetic.correlated_gaussian`); with uⱼ its j-th whitened principal-component score (left singular
    vector of X̃), labels = argmax_c Σ_{j≤16} j^(−1/2)·uⱼ·Bⱼc over 4 classes, B (16×4) with orthonormal columns, so each
    step of the sweep removes a similar share of the label signal. Y_k = X − X̃·V_k·V_kᵀ (V_k: top-k principal
    directions), k ∈ {0, 1, 2, 4, 8, 16}. Computed in float64. Class labels: those labels.
    Ground truth: the held-out accuracy of a linear probe (`simstress.metrics.probe.fit_probe`, l2 = 1e-3) fitted on Y_k
    (seeded 50/50 stratified split), which falls from near 1 toward chance (1/4) as k grows (curve:
    `probe_accuracy`; details: the accuracies).
    Score: max(0, Spearman(similarity to X, probe accuracy)) × min(1, range of similarity / 0.1): the right order,
    earned in full only by a metric whose similarity moves by at least a tenth of its self-similarity over the
    sweep (`simstress.core.scoring.effect_weight`; a metric that moves by 1e-3 has no effect, only rounding-level
    order).
    Convention: the CCA family averages over min(rank X̃, rank Ỹ) canonical correlations, and deleting directions
    from Y lowers its rank while every remaining correlation stays 1, so mean CCA stays flat here and scores 0 by
    that convention; `cca_mean[normalize=width]` divides Σρ by min(p1, p2) instead and sees the deletion.
    Source: Ding, Denain & Steinhardt 2021, Grounding Representation Similarity with Statistical Testing
    (NeurIPS), principal-component deletion.
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
        weights = torch.arange(1, m + 1, dtype=torch.float64, device=device).rsqrt()
        B = random_rotation(m, generator(seed, 1))[:, : self.n_label_classes].to(device)
        labels = ((U[:, :m] * weights) @ B).argmax(dim=1)
        setup = DeletionSetup(labels=labels, details={}, X=X, components=Vh[: max(sweep)].T, centred=Xc, sweep=sweep)
        train, test = stratified_split(labels, test_fraction=self.test_fraction, seed=seed)
        accuracy = []
        for k in sweep:
            Y = self.delete(setup, k)
            accuracy.append(fit_probe(Y[train], labels[train]).accuracy(Y[test], labels[test]))
        var = S.square()
        setup.details = {
            "n": n, "p": p, "n_label_classes": self.n_label_classes, "label_components": m,
            "class_sizes": torch.bincount(labels, minlength=self.n_label_classes).tolist(),
            "probe_accuracy": accuracy,
            "variance_removed": [float(var[:k].sum() / var.sum()) for k in sweep],
        }
        return setup

    @staticmethod
    def delete(setup: DeletionSetup, k: int) -> torch.Tensor:
        """X with its top-k principal components projected out (the mean kept)."""
        V = setup.components[:, :k]
        return setup.X - (setup.centred @ V) @ V.T

    def cases(self, setup: DeletionSetup) -> Iterator[Case]:
        for i, k in enumerate(setup.sweep):
            yield Case(x=k, reference=setup.X, other=self.delete(setup, k), ref_key=0,
                       truth={"probe_accuracy": setup.details["probe_accuracy"][i],
                              "variance_removed": setup.details["variance_removed"][i]})

    def score(self, curve: pd.DataFrame, setup: DeletionSetup) -> float:
        s = curve["similarity"].to_numpy()
        return positive_spearman(s, curve["probe_accuracy"].to_numpy()) * effect_weight(s)


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
