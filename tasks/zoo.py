"""Stress tasks on the networks the suite trains itself (the Fashion-MNIST zoo of `simstress.networks`).

Every task here reads activations of M1 networks (`simstress.networks.activations`) on a seeded, stratified sample of
the test images, and every metric of a task sees the same representations, in float64. Conv blocks are reduced by
average pooling to at most 2×2 cells (`pool2`; 4×4 at full scale, `pool4`), then flattened: block 0 flattened
is 14,400 features per image, which would make the CCA family refuse every early layer (it needs p < n) and cost
O(n·p²) per comparison (a linear probe, more). 2×2 cells keep a coarse spatial layout at ≤ 256 features for
w = 1, so p/n ≤ 0.26 on the default 1,000 images and every metric family can be scored; 4×4 cells (≤ 1,024·w
features) on 5,000 images at full scale.
The networks are artifacts (built once, cached under `results/networks/`); a record names each one's sha256.

Sources: Davari et al. 2023 (ICLR), "Reliability of CKA as a Similarity Measure in Deep Learning" (Fig. 2,
Corollaries 3 and 4, Fig. 4c); Kornblith et al. 2019 (ICML), "Similarity of Neural Network Representations
Revisited" (§6.1, layer correspondence across initialisations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from simstress.core.artifacts import Artifact, ArtifactSpec
from simstress.core.scoring import EFFECT_FLOOR, pair_matrix, resolved
from simstress.core.synthetic import generator
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.core.theory import outlier_limit, participation_ratio, rms_radius, theorem1_limit
from simstress.data import load_images
from simstress.metrics.probe import fit_probe, stratified_split
from simstress.networks.activations import activations
from simstress.networks.m1 import BLOCK_LAYERS, INPUT_SIZE
from simstress.networks.zoo import ZOO_SCALES, load_network, network_name, network_spec, partner_seeds

from .preserving import (
    Translation,
    TranslationSetup,
    TranslationTask,
    check_logits,
    head_logits,
    head_nullspace_direction,
    theory_columns,
    translate,
)
from .robustness import separability_preserving_direction


def generalized(scale: str, seed: int, offset: int = 0) -> ArtifactSpec:
    """The generalized network a task's seed uses: widths and seeds of the zoo taken in turn (offset 1: the next)."""
    z = ZOO_SCALES[scale]
    k = seed + offset
    return network_spec("generalized", z.widths[k % len(z.widths)], z.seeds[k % len(z.seeds)], scale)


def sample_test_images(scale: str, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Normalised test images (n, c, 32, 32), their labels, and what identifies the sample."""
    test = load_images(ZOO_SCALES[scale].dataset, "test")
    index = test.stratified(per_class, seed)
    sample = test.subset(index)
    return sample.tensor(INPUT_SIZE), torch.from_numpy(sample.labels), {
        "dataset": test.name, "test_sha256": test.sha256, "n": len(index), "per_class": per_class}


def layer_stack(artifact: Artifact, images: torch.Tensor, layers: tuple[str, ...], reduction: str,
                device: torch.device) -> list[torch.Tensor]:
    """The network's named layers on `images`, reduced, as float64 tensors on `device` (in `layers` order)."""
    model = load_network(artifact, device)
    acts = activations(model, images, layers, reduction=reduction, device=device, out_device=device)
    return [acts[name].to(torch.float64) for name in layers]


# ---------------------------------------------------------------------------------------------- specificity


@dataclass
class LayerSetup(Setup):
    A: list[torch.Tensor]
    B: list[torch.Tensor]


@register_task(name="layer_correspondence", category="specificity", sweep_name="layer j of network B", data="trained")
class LayerCorrespondence(Task):
    """Two networks trained alike from different seeds: each layer of one must be most similar to its own twin.

    Construction: two `generalized` M1 networks of the zoo (seeds s and s + 1; at full scale also different
    widths, 1/2/4 in turn); their eight block outputs on a stratified sample of test images (smoke 30, default
    100, full 500 per class), average-pooled to 2×2 cells (4×4 at full scale) and flattened (module docstring),
    in float64. Every (layer i of A, layer j of B) pair is compared (x = j). Class labels: the images'.
    Ground truth: networks trained the same way compute nearly the same function through the same depth, so
    layer i of A corresponds to layer i of B (Kornblith et al.'s sanity check, which linear CKA passes).
    Score: mean over layers i of A of credit(i) = [i ∈ T_i]/|T_i|, T_i = the layers j of B with the highest
    similarity to A_i (ties at 1e-9 share the credit; a non-finite similarity never wins): 1 for a metric that
    finds every twin, 1/8 for a constant one.
    Source: Kornblith et al. 2019 (ICML), §6.1; Davari et al. 2023 (ICLR), §4 (the M1 network).
    """

    sizes = {"smoke": {"zoo": "smoke", "per_class": 30, "reduction": "pool2"},
             "default": {"zoo": "default", "per_class": 100, "reduction": "pool2"},
             "full": {"zoo": "full", "per_class": 500, "reduction": "pool4"}}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return {"a": generalized(scale, seed), "b": generalized(scale, seed, 1)}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> LayerSetup:
        images, labels, sample = sample_test_images(size["zoo"], size["per_class"], seed)
        A = layer_stack(artifacts["a"], images, BLOCK_LAYERS, size["reduction"], device)
        B = layer_stack(artifacts["b"], images, BLOCK_LAYERS, size["reduction"], device)
        details = {**sample, "reduction": size["reduction"], "network_a": network_name(artifacts["a"].spec),
                   "network_b": network_name(artifacts["b"].spec), "widths": [a.shape[1] for a in A]}
        return LayerSetup(labels=labels.to(device), details=details, A=A, B=B)

    def cases(self, setup: LayerSetup) -> Iterator[Case]:
        for i, Ai in enumerate(setup.A):
            for j, Bj in enumerate(setup.B):
                yield Case(x=j, reference=Ai, other=Bj, ref_key=i, truth={"i": i, "j": j, "twin": i == j})

    def score(self, curve: pd.DataFrame, setup: LayerSetup) -> float:
        L = len(setup.A)
        sims = pair_matrix(curve, L)
        credit = []
        for i in range(L):
            best = np.flatnonzero(sims[i] == sims[i].max()) if np.isfinite(sims[i]).any() else np.array([], int)
            credit.append(float(i in best) / len(best) if len(best) else 0.0)
        return float(np.mean(credit))


# ---------------------------------------------------------------------------------------------- robustness


class OneNetworkTranslation(TranslationTask):
    """Shared by the translation tasks on one generalized network: its artifact."""

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return {"network": generalized(scale, seed)}


@register_task(name="network_class_translation", category="robustness",
               sweep_name="c / σ̄ (class translation, real features)", log_x=True, data="trained")
class NetworkClassTranslation(OneNetworkTranslation):
    """One class of a trained network's features translated along a direction its read-out ignores (Fig. 4c).

    Construction: a `generalized` M1 of the zoo on a stratified sample of test images (smoke 30, default 100,
    full 500 per class), in float64. (a) `head_nullspace`: the pooled features the linear layer reads (64w-d);
    v = a random unit vector in the null space of the network's own linear layer W (W·v = 0), so its logits do
    not change (asserted: ≤ 1e-5 relative, every prediction identical). (b) `qp_direction`, the paper's variant:
    the flattened last block (block 7, 2×2 cells, 256w-d), a linear probe (`simstress.metrics.probe.fit_probe`) fit on
    it, and the non-negative direction d of Davari et al. (min dᵀ(QQᵀ + 1e-7·I)d s.t. d ≥ 0.1, Q an orthonormal basis
    of the probe's class normals; `simstress.tasks.robustness.separability_preserving_direction`), so the translated
    activations stay ReLU-like and every probe prediction is unchanged (asserted). In each variant one class k at a time
    is translated by c·v, c/σ̄ ∈ {1, 10, 100} (full: 0.1 … 1000), σ̄ = the features' RMS radius, up to the plateau
    of Theorem 1. Class labels: the images'.
    Ground truth: the network's (or the probe's) function on these features is unchanged, so the ideal
    similarity stays 1. Linear CKA falls towards the Theorem 1 limit of the class (details: `theorem1_limits`;
    curve: `linear_cka_theory`); the paper measured a plateau near 0.17 on CIFAR-10.
    Score: mean over variants, classes and sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Corollary 4 and Fig. 4c (§4.2).
    """

    sizes = {"smoke": {"zoo": "smoke", "per_class": 30, "sweep": (1.0, 10.0, 100.0)},
             "default": {"zoo": "default", "per_class": 100, "sweep": (1.0, 10.0, 100.0)},
             "full": {"zoo": "full", "per_class": 500, "sweep": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)}}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> TranslationSetup:
        images, labels, sample = sample_test_images(size["zoo"], size["per_class"], seed)
        model = load_network(artifacts["network"], device)
        acts = activations(model, images, ("block7", "pooled"), reduction="flatten", device=device, out_device=device)
        pooled, last = acts["pooled"].to(torch.float64), acts["block7"].to(torch.float64)
        labels = labels.to(device)
        classes = sorted(set(labels.tolist()))
        groups = [labels == k for k in classes]
        sweep = list(size["sweep"])

        v = head_nullspace_direction(model.fc.weight, generator(seed, 1)).to(device)
        probe = fit_probe(last, labels)
        d, residual, _ = separability_preserving_direction(probe)
        d = d.to(device)
        before = probe.predict(last)
        parts, logit_change, probe_changed = [], 0.0, 0
        for variant, X, direction in (("head_nullspace", pooled, v), ("qp_direction", last, d)):
            sigma = rms_radius(X)
            shifts = [x * sigma for x in sweep]
            truth = []
            for k, rows in zip(classes, groups):
                truth.append(theory_columns(X, rows, direction, shifts))
                for c, row in zip(shifts, truth[-1]):
                    Y = translate(X, rows, c * direction)
                    row["class"] = k
                    if variant == "head_nullspace":
                        logit_change = max(logit_change, check_logits(model.fc, X, Y, self.name))
                    else:
                        probe_changed += int((probe.predict(Y) != before).sum())
            parts.append(Translation(X, groups, direction, sweep, shifts, truth, variant))
        if probe_changed:
            raise RuntimeError(f"{self.name}: {probe_changed} probe predictions changed under a translation "
                               f"orthogonal to every class normal; the construction is broken")
        details = {
            **sample, "network": network_name(artifacts["network"].spec),
            "network_accuracy": float((head_logits(model.fc, pooled).argmax(1) == labels).double().mean()),
            "probe_accuracy": probe.accuracy(last, labels), "logit_change_max": logit_change,
            "predictions_changed": probe_changed, "direction_min": float(d.min()), "direction_qp_residual": residual,
            "rms_radius": {p.variant: rms_radius(p.X) for p in parts},
            "dim_pr": {p.variant: participation_ratio(p.X) for p in parts},
            "theorem1_limits": {p.variant: [theorem1_limit(p.X, rows) for rows in groups] for p in parts},
        }
        return TranslationSetup(labels=labels, details=details, parts=parts)


@register_task(name="network_outlier", category="robustness", sweep_name="c / σ̄ (one image's features)",
               log_x=True, data="trained")
class NetworkOutlier(OneNetworkTranslation):
    """One test image's features moved far along the null space of the network's own linear layer (Cor. 3).

    Construction: a `generalized` M1 of the zoo; its pooled features (64w-d, what the linear layer reads) on a
    stratified sample of test images (smoke 30, default 100, full 500 per class), in float64. For each of a few
    seeded images (smoke 2, default 3, full 10), that row alone is translated by c·v, v a random unit vector in
    the null space of the linear layer, c/σ̄ ∈ {1, 3, 10, 30, 100, 300, 1000}, σ̄ = the features' RMS radius.
    The network's logits are unchanged (asserted: ≤ 1e-5 relative, every prediction identical). Class labels:
    the images'.
    Ground truth: n − 1 images are untouched and the network classifies the moved one as before, so the ideal
    similarity stays 1. Linear CKA tends to Corollary 3's limit sqrt(dim_PR)·||x_o − x̄||²/((n−1)·σ̄²) (details:
    `corollary3_limits`; curve: the exact finite-c value `linear_cka_theory`).
    Score: mean over images and sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Corollary 3 and Fig. 4c (single-point translation, §4.2).
    """

    sizes = {scale: {"zoo": scale, "per_class": per_class, "points": points,
                     "sweep": (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)}
             for scale, per_class, points in (("smoke", 30, 2), ("default", 100, 3), ("full", 500, 10))}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> TranslationSetup:
        images, labels, sample = sample_test_images(size["zoo"], size["per_class"], seed)
        model = load_network(artifacts["network"], device)
        X = activations(model, images, ("pooled",), device=device, out_device=device)["pooled"].to(torch.float64)
        n = X.shape[0]
        g = generator(seed, 2)
        points = torch.randperm(n, generator=g)[: size["points"]].tolist()
        v = head_nullspace_direction(model.fc.weight, generator(seed, 1)).to(device)
        sigma = rms_radius(X)
        sweep = list(size["sweep"])
        shifts = [x * sigma for x in sweep]
        groups, truth, logit_change = [], [], 0.0
        for index in points:
            rows = torch.zeros(n, dtype=torch.bool, device=device)
            rows[index] = True
            groups.append(rows)
            truth.append(theory_columns(X, rows, v, shifts))
            for c, row in zip(shifts, truth[-1]):
                row["image"] = index
                logit_change = max(logit_change, check_logits(model.fc, X, translate(X, rows, c * v), self.name))
        details = {**sample, "network": network_name(artifacts["network"].spec), "points": points, "rms_radius": sigma,
                   "dim_pr": participation_ratio(X), "logit_change_max": logit_change,
                   "corollary3_limits": [outlier_limit(X, i) for i in points]}
        part = Translation(X, groups, v, sweep, shifts, truth, "head_nullspace")
        return TranslationSetup(labels=labels.to(device), details=details, parts=[part])


# ---------------------------------------------------------------------------------------------- sensitivity


@dataclass
class MemorizationSetup(Setup):
    reference: list[torch.Tensor]  # generalized network A, per block
    others: dict[str, list[torch.Tensor]]  # "generalized" (network B), "memorized", "random"
    agreement: dict[str, list[float]]  # per partner, per block: how often its block's probe agrees with A's


PAIRS = ("generalized", "memorized", "random")
PROBE_MARGIN = 0.02  # block probes' agreements closer than this do not tell which partner computes more like A


def block_probe_agreement(A: list[torch.Tensor], partners: dict[str, list[torch.Tensor]], labels: torch.Tensor,
                          seed: int) -> dict[str, list[float]]:
    """Per partner and block: the fraction of held-out images on which a linear probe of the partner's block and one
    of A's block (each fitted on the other half, true labels) predict the same class."""
    train, test = stratified_split(labels, test_fraction=0.5, seed=seed)

    def predictions(X: torch.Tensor) -> torch.Tensor:
        return fit_probe(X[train], labels[train]).predict(X[test])

    own = [predictions(X) for X in A]
    return {name: [float((predictions(X) == own[i]).double().mean()) for i, X in enumerate(stack)]
            for name, stack in partners.items()}


@register_task(name="memorization", category="sensitivity", sweep_name="block", version=2, data="trained")
class Memorization(Task):
    """A generalized network must be more similar to another generalized one than to a memorizing or random one.

    Construction: from the zoo (one width: w = 1, at full scale 1/2/4 in turn), generalized network A (seed s),
    and three partners: generalized B (seed s + 1, same recipe), the seed's own `memorized` network (fit to
    permuted labels: 10,000 of them at the default scale, test accuracy near chance) and its own `random` one
    (never trained), each from its own initial weights. The eight block outputs of each on a stratified sample of
    test images (smoke 30, default 100, full 500 per class), average-pooled to 2×2 cells (4×4 at full scale) and
    flattened, in float64; each block of A is compared with the same block of every partner (x = block).
    Class labels: the images'.
    Ground truth: from the networks' behaviour, block by block, never from a metric: a linear probe
    (`simstress.metrics.probe.fit_probe`) is fitted on each block of each network on half of the sample (true
    labels), and its predictions on the other half are compared with those of A's probe on the same block
    (details: `agreement`, per partner and block). The partner whose block computes more like A's — its probe agrees
    more with A's — should be the more similar one; a block where the two partners' agreements differ by less than
    0.02 carries no evidence either way and is not scored (details: `supported`).
    Score: fraction of the supported (block, comparison) cells, comparisons (B vs memorized) and (B vs random),
    where the similarity of the more-agreeing partner exceeds the other's by ≥ 0.01
    (`simstress.core.scoring.EFFECT_FLOOR`; a non-finite similarity loses). Davari et al. found that CKA fails
    this in early layers.
    Source: Davari et al. 2023 (ICLR), §4.1 and Fig. 2; memorization by label permutation after Zhang et al.
    2017 (ICLR), "Understanding deep learning requires rethinking generalization"; block probes after Alain &
    Bengio 2017 (ICLR workshop), "Understanding intermediate layers using linear classifier probes".
    """

    sizes = {"smoke": {"zoo": "smoke", "per_class": 30, "reduction": "pool2"},
             "default": {"zoo": "default", "per_class": 100, "reduction": "pool2"},
             "full": {"zoo": "full", "per_class": 500, "reduction": "pool4"}}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        z = ZOO_SCALES[scale]
        w = z.widths[seed % len(z.widths)]
        own = z.seeds[seed % len(z.seeds)]
        return {"a": network_spec("generalized", w, own, scale),
                "generalized": network_spec("generalized", w, z.seeds[(seed + 1) % len(z.seeds)], scale),
                **{role: network_spec(role, w, partner, scale)
                   for role, partner in partner_seeds(scale, own).items()}}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> MemorizationSetup:
        images, labels, sample = sample_test_images(size["zoo"], size["per_class"], seed)
        labels = labels.to(device)
        layers = (*BLOCK_LAYERS, "logits")
        stacks = {name: layer_stack(artifacts[name], images, layers, size["reduction"], device)
                  for name in ("a", *PAIRS)}
        predicted = {name: s[-1].argmax(1) for name, s in stacks.items()}
        accuracy = {name: float((p == labels).double().mean()) for name, p in predicted.items()}
        blocks = {name: s[:-1] for name, s in stacks.items()}
        agreement = block_probe_agreement(blocks["a"], {n: blocks[n] for n in PAIRS}, labels, seed)
        supported = {other: [abs(g - o) >= PROBE_MARGIN for g, o in zip(agreement["generalized"], agreement[other])]
                     for other in ("memorized", "random")}
        details = {**sample, "reduction": size["reduction"], "agreement": agreement, "supported": supported,
                   "output_agreement": {n: float((predicted[n] == predicted["a"]).double().mean()) for n in PAIRS},
                   "accuracy": accuracy, "networks": {name: network_name(a.spec) for name, a in artifacts.items()}}
        return MemorizationSetup(labels=labels, details=details, reference=blocks["a"],
                                 others={n: blocks[n] for n in PAIRS}, agreement=agreement)

    def cases(self, setup: MemorizationSetup) -> Iterator[Case]:
        for i, A in enumerate(setup.reference):
            for pair in PAIRS:
                yield Case(x=i, reference=A, other=setup.others[pair][i], ref_key=i,
                           truth={"block": i, "pair": pair, "agreement": setup.agreement[pair][i]})

    def score(self, curve: pd.DataFrame, setup: MemorizationSetup) -> float:
        sims = curve.pivot(index="block", columns="pair", values="similarity")
        wins = []
        for other in ("memorized", "random"):
            for block in sims.index:
                g, o = setup.agreement["generalized"][block], setup.agreement[other][block]
                if abs(g - o) < PROBE_MARGIN:
                    continue
                hi, lo = ("generalized", other) if g > o else (other, "generalized")
                top, low = float(sims.at[block, hi]), float(sims.at[block, lo])
                low = low if np.isfinite(low) else -np.inf  # a refused case never wins, so it can only lose
                wins.append(bool(np.isfinite(top) and resolved(np.array([top - low]))[0] >= EFFECT_FLOOR))
        if not wins:
            raise RuntimeError(f"{self.name}: no block's probes tell the partners apart (margin {PROBE_MARGIN}); "
                               f"the networks carry no functional evidence for this task")
        return float(np.mean(wins))
