"""Specificity tasks: among candidates that share structure, the right partner must be the most similar."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from simstress.core.scoring import EFFECT_FLOOR, pair_matrix
from simstress.core.synthetic import correlated_gaussian, gaussian_mixture, generator, random_rotation
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.core.theory import rms_radius

from .robustness import N_CLASSES, SEPARATION


@dataclass
class MatchingSetup(Setup):
    A: list[torch.Tensor]
    B: list[torch.Tensor]


@register_task(name="matching", category="specificity", sweep_name="candidate partner j", version=2)
class Matching(Task):
    """K = 8 representations with a shared component; each must pick its own rotated, rescaled, noisy copy.

    Construction: a common pre-activation C = 10-class Gaussian mixture (`simstress.core.synthetic.gaussian_mixture`, no
    ReLU) and, for each i < 8, its own correlated Gaussian Zᵢ (`simstress.core.synthetic.correlated_gaussian`), both
    with power-law spectra; Aᵢ = ReLU(sqrt(α)·C + sqrt(1 − α)·Zᵢ), α = 0.8. Its partner Bᵢ = sᵢ·(Aᵢ·Qᵢ + ε·σ̄ᵢ·Eᵢ): Qᵢ a
    random rotation, sᵢ log-uniform in [0.1, 10], Eᵢ i.i.d. N(0, 1/p) entries, ε = 1, σ̄ᵢ = RMS radius of Aᵢ. Every (Aᵢ,
    Bⱼ) pair is compared (x = j). Computed in float64. Class labels: the common mixture's (shared by all).
    Ground truth: Bᵢ is Aᵢ up to a rotation, a scale and moderate noise, while Bⱼ (j ≠ i) shares only the
    common component; the ideal metric rates Bᵢ strictly above every Bⱼ.
    Score: fraction of i with sim(Aᵢ, Bᵢ) ≥ max_{j≠i} sim(Aᵢ, Bⱼ) + 0.01 (`simstress.core.scoring.EFFECT_FLOOR`: a win
    needs a margin of 1% of the self-similarity, above the metric's noise; a non-finite similarity loses).
    Source: the sanity check of Kornblith et al. 2019 (ICML) that a layer is most similar to the corresponding
    layer of a network trained from another initialisation, and the specificity tests of Ding et al. 2021
    (NeurIPS), reduced to synthetic data with a known correspondence.
    """

    sizes = {"smoke": {"n": 200, "p": 32}, "default": {"n": 500, "p": 64}, "full": {"n": 2000, "p": 256}}
    n_representations = 8
    shared = 0.8  # α: variance share of the common component before the ReLU
    noise = 1.0  # ε

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> MatchingSetup:
        n, p, K = size["n"], size["p"], self.n_representations
        common, labels = gaussian_mixture(n, p, N_CLASSES, generator(seed, 0), separation=SEPARATION, relu=False)
        A, B, scales = [], [], []
        for i in range(K):
            g = generator(seed, 1 + i)
            Ai = (math.sqrt(self.shared) * common + math.sqrt(1 - self.shared) * correlated_gaussian(n, p, g))
            Ai = Ai.clamp_min(0.0)
            s = float(10.0 ** (2 * torch.rand((), generator=g, dtype=torch.float64) - 1))
            E = torch.randn(n, p, generator=g, dtype=torch.float64) / math.sqrt(p)
            Bi = s * (Ai @ random_rotation(p, g) + (self.noise * rms_radius(Ai)) * E)
            A.append(Ai.to(device))
            B.append(Bi.to(device))
            scales.append(s)
        details = {"n": n, "p": p, "n_representations": K, "shared": self.shared, "noise": self.noise,
                   "scales": scales}
        return MatchingSetup(labels=labels.to(device), details=details, A=A, B=B)

    def cases(self, setup: MatchingSetup) -> Iterator[Case]:
        for i, Ai in enumerate(setup.A):
            for j, Bj in enumerate(setup.B):
                yield Case(x=j, reference=Ai, other=Bj, ref_key=i, truth={"i": i, "j": j, "partner": i == j})

    def score(self, curve: pd.DataFrame, setup: MatchingSetup) -> float:
        sims = pair_matrix(curve, self.n_representations)
        own = np.diag(sims).copy()
        np.fill_diagonal(sims, -np.inf)
        wins = np.isfinite(own) & (own >= sims.max(axis=1) + EFFECT_FLOOR)
        return float(wins.mean())
