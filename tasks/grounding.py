"""Grounding tasks: similarity measured against the function of a population of networks (ReSi's six tests).

Every task here reads the population (`simstress.networks.population`): M1, a ResNet, a ViT and a MobileNet
trained by simstress on Fashion-MNIST from several seeds, checkpoints along some runs, and controlled variants
of the ResNet (labels randomized at several rates, a shortcut of several reliabilities, augmentation
strengths). Representations are the members' layers on a stratified sample of real test images, read from
`population_activations` artifacts (one forward pass per member and checkpoint, never one per metric): every
seed draws its own sample from a fixed pool (smoke 15 of 20, default 100 of 120, full 500 of 600 images per
class), conv maps and token grids average-pooled (smoke: globally; default 2×2 cells; full 4×4), in float64.
Widths differ across architectures (and layers); no built-in metric needs equal widths, and a metric that
refuses a pair (`InputError`) has that case counted as its worst outcome.

The ground truth of each task is measured on the networks themselves before it ranks anything (set-up
details: accuracies, output disagreements, shortcut reliance, robustness to augmentation), and the curve
carries, per case, the pair's architectures and whether the pair is within one architecture or across two.

Sources: Klabunde, Wald, Schumacher, Strohmaier & Lemmerich 2025 (ICLR), "ReSi: A Comprehensive Benchmark for
Representational Similarity Measures"; Ding, Denain & Steinhardt 2021 (NeurIPS), "Grounding Representation
Similarity Through Statistical Testing"; Kornblith, Norouzi, Lee & Hinton 2019 (ICML), "Similarity of Neural
Network Representations Revisited".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from simstress.core.artifacts import ArtifactSpec
from simstress.core.scoring import positive_spearman, resolved
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.networks.population import Member, members, population_scale
from simstress.networks.population_activations import activations_spec, load_activations


@dataclass(frozen=True)
class GroundingScale:
    """The image sample and reduction the grounding tasks read at one scale."""

    pool_per_class: int
    per_class: int
    reduction: str


GROUNDING_SCALES = {"smoke": GroundingScale(20, 15, "pool"), "default": GroundingScale(120, 100, "pool2"),
                    "full": GroundingScale(600, 500, "pool4")}
POOL_SEED = 0
POPULATION_TASK_SIZES = {"smoke": {"scale": "smoke"}, "default": {"scale": "default"}, "full": {"scale": "full"}}


@dataclass(frozen=True)
class Entry:
    """One representation source: a member at its final weights or a checkpoint, under a test condition."""

    member: Member
    step: int | None = None
    condition: str = "clean"

    @property
    def id(self) -> str:
        suffix = "" if self.step is None else f"@{self.step}"
        return self.member.name + suffix + ("#shortcut" if self.condition != "clean" else "")

    def spec(self, scale: str) -> ArtifactSpec:
        g = population_scale(scale)
        images = {"dataset": g.dataset, "per_class": GROUNDING_SCALES[scale].pool_per_class, "seed": POOL_SEED}
        return activations_spec(self.member.spec, images=images, step=self.step, condition=self.condition,
                                 reduction=GROUNDING_SCALES[scale].reduction)


def seed_rows(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted pool rows of a stratified sample of `per_class` images per class, drawn with `seed`."""
    rng = np.random.default_rng([seed, 23])
    y = labels.numpy()
    rows = [rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(rows)))


@dataclass
class Loaded:
    """An entry's layers on the seed's sample (float64, on the task's device) and its logits (float64, CPU)."""

    entry: Entry
    layers: dict[str, torch.Tensor]
    logits: torch.Tensor


def load_entries(entries: list[Entry], artifacts: Built, names: list[str] | None, per_class: int, seed: int,
                 device: torch.device) -> tuple[dict[str, Loaded], torch.Tensor]:
    """Every entry's layers `names` (None: all) on the seed's sample, and the sample's labels; the pools must be
    the same images in every artifact."""
    out: dict[str, Loaded] = {}
    labels = rows = None
    for e in entries:
        layers, pool_labels = load_activations(artifacts[e.id])
        if rows is None:
            labels, rows = pool_labels, seed_rows(pool_labels, per_class, seed)
        elif not torch.equal(pool_labels, labels):
            raise RuntimeError(f"the activations of {e.id} were extracted on another image pool than the others; "
                               f"delete results/population_activations to rebuild them")
        wanted = list(layers) if names is None else names
        out[e.id] = Loaded(e, {n: layers[n][rows].to(device, torch.float64) for n in wanted},
                           layers["logits"][rows].double())
    return out, labels[rows]


def disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of sample images on which the two networks predict different classes."""
    return float((logits_a.argmax(1) != logits_b.argmax(1)).double().mean())


def jensen_shannon(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Mean over images of the Jensen–Shannon divergence (nats) of the two softmax outputs."""
    p, q = logits_a.log_softmax(1), logits_b.log_softmax(1)
    m = torch.logaddexp(p, q) - np.log(2.0)  # log of the mixture (P + Q)/2
    return float((0.5 * ((p.exp() * (p - m)).sum(1) + (q.exp() * (q - m)).sum(1))).mean())


def normalized_average_precision(similarity: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(max(0, (AP − π)/(1 − π)), AP): the average precision of ranking pairs by similarity, positives first.

    Similarities are read at RESOLUTION and equal ones form one threshold (scikit-learn's convention), so a
    constant metric earns AP = π, the share of positives, and the rescaled score 0; a perfect ranking earns 1. A
    non-finite similarity ranks below every finite one.
    """
    s = resolved(similarity)
    s = np.where(np.isfinite(s), s, -np.inf)
    pos = np.asarray(positive, dtype=bool)
    if not 0 < pos.sum() < len(pos):
        raise ValueError(f"average precision needs positive and negative pairs, got {pos.sum()} of {len(pos)}")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the end of each run of equal similarities
    tp = np.cumsum(pos)[last]
    precision, recall = tp / (last + 1), tp / pos.sum()
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    chance = pos.mean()
    return max(0.0, (ap - chance) / (1 - chance)), ap


def within(a: Entry, b: Entry) -> str:
    return "within" if a.member.family == b.member.family else "cross"


@dataclass
class PairSetup(Setup):
    reps: dict[str, torch.Tensor]  # entry id → the compared layer on the seed's sample
    pairs: list[tuple[str, str, float, dict[str, Any]]]  # reference id, other id, x, ground-truth columns


class PopulationPairs(Task):
    """Shared by the tasks that compare one layer of many population members pair by pair."""

    layer = "penultimate"
    sweep_plot = False  # each x holds many pairs (shown as matrices in the Grounding section)

    def entries(self, scale: str) -> list[Entry]:
        raise NotImplementedError

    def pairs(self, loaded: dict[str, Loaded], cards: Mapping[str, Mapping[str, Any]]
              ) -> tuple[list[tuple[str, str, float, dict[str, Any]]], dict[str, Any]]:
        """The compared pairs (reference, other, x, truth) and the measured ground truth for the details."""
        raise NotImplementedError

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        entries = self.entries(scale)
        specs = {e.id: e.spec(scale) for e in entries}
        specs.update({f"member:{e.member.name}": e.member.spec for e in entries})
        return specs

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> PairSetup:
        scale = size["scale"]
        entries = self.entries(scale)
        loaded, labels = load_entries(entries, artifacts, [self.layer], GROUNDING_SCALES[scale].per_class, seed,
                                      device)
        cards = {e.id: member_facts(artifacts[f"member:{e.member.name}"].card, e.step) for e in entries}
        pairs, measured = self.pairs(loaded, cards)
        details = {"n": len(labels), "layer": self.layer, "reduction": GROUNDING_SCALES[scale].reduction,
                   "models": {e.id: {"family": e.member.family, "step": e.step, **cards[e.id],
                                     "sample_accuracy": float((loaded[e.id].logits.argmax(1) == labels).double()
                                                              .mean())} for e in entries},
                   "widths": {e.id: loaded[e.id].layers[self.layer].shape[1] for e in entries}, **measured}
        return PairSetup(labels=labels.to(device), details=details,
                         reps={i: x.layers[self.layer] for i, x in loaded.items()}, pairs=pairs)

    def cases(self, setup: PairSetup) -> Iterator[Case]:
        for a, b, x, truth in setup.pairs:
            yield Case(x=x, reference=setup.reps[a], other=setup.reps[b], ref_key=a, truth=truth)


def member_facts(card: Mapping[str, Any], step: int | None) -> dict[str, Any]:
    """What a member's card says of its function, at its final weights or at checkpoint `step`."""
    v = card["params"]["variant"]
    if step is not None:
        accuracy = next(c["test_accuracy"] for c in card["checkpoint_accuracy"] if c["step"] == step)
        return {"test_accuracy": accuracy, "fraction": step / card["steps"], **v}
    extra = {k: card[k] for k in ("test_accuracy_true_shortcut", "test_accuracy_randomised_shortcut",
                                  "test_accuracy_by_augmentation") if k in card}
    return {"test_accuracy": card["test_accuracy"], "fraction": 1.0, **v, **extra}


def pair_columns(a: Entry, b: Entry) -> dict[str, Any]:
    return {"model_a": a.id, "model_b": b.id, "family_a": a.member.family, "family_b": b.member.family,
            "pair": within(a, b)}


# ---------------------------------------------------------------------------------------- grounding by prediction


def prediction_entries(scale: str) -> list[Entry]:
    """Every family's base members at their final weights, and the checkpoints of the runs that keep them."""
    out = []
    for m in members(scale):
        if m.variant.tag == "base":
            out += [Entry(m, step) for step in m.checkpoints] + [Entry(m)]
    return out


class PredictionGrounding(PopulationPairs):
    """Pairs within each architecture (all of its members and checkpoints) and across architectures (the
    checkpointed run of the first seed of each family, every checkpoint against every other family's)."""

    truth_column: str

    def entries(self, scale: str) -> list[Entry]:
        return prediction_entries(scale)

    def pairs(self, loaded, cards):
        entries = [x.entry for x in loaded.values()]
        first_run = {}
        for e in entries:  # the first member of each family that kept checkpoints
            if e.step is not None:
                first_run.setdefault(e.member.family, e.member.name)
        chosen = [(a, b) for a, b in itertools.combinations(entries, 2)
                  if a.member.family == b.member.family
                  or (a.member.name == first_run.get(a.member.family) and b.member.name == first_run.get(
                      b.member.family))]
        pairs = []
        for a, b in chosen:
            la, lb = loaded[a.id].logits, loaded[b.id].logits
            truth = {**pair_columns(a, b), "accuracy_a": cards[a.id]["test_accuracy"],
                     "accuracy_b": cards[b.id]["test_accuracy"],
                     "accuracy_difference": abs(cards[a.id]["test_accuracy"] - cards[b.id]["test_accuracy"]),
                     "jsd": jensen_shannon(la, lb), "disagreement": disagreement(la, lb)}
            pairs.append((a.id, b.id, truth[self.truth_column], truth))
        return pairs, {"function": prediction_facts(entries, cards, pairs)}

    def groups(self, curve: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Within each architecture, and across architectures: the groups whose correlations are averaged."""
        out = {f"within:{f}": part for f, part in curve[curve["pair"] == "within"].groupby("family_a", sort=False)}
        cross = curve[curve["pair"] == "cross"]
        if len(cross):
            out["cross"] = cross
        return out

    def correlations(self, curve: pd.DataFrame) -> dict[str, float]:
        return {name: positive_spearman(1.0 - part["similarity"].to_numpy(dtype=np.float64),
                                        part[self.truth_column].to_numpy(dtype=np.float64))
                for name, part in self.groups(curve).items()}

    def score(self, curve: pd.DataFrame, setup: PairSetup) -> float:
        return float(np.mean(list(self.correlations(curve).values())))

    def curve_details(self, curve: pd.DataFrame, setup: PairSetup) -> dict[str, Any]:
        return {"spearman": self.correlations(curve)}


def prediction_facts(entries: list[Entry], cards, pairs) -> dict[str, Any]:
    """The measured ground truth of the prediction tasks: accuracy ranges, checkpoints rising, output spread."""
    facts: dict[str, Any] = {}
    for f in dict.fromkeys(e.member.family for e in entries):
        acc = [cards[e.id]["test_accuracy"] for e in entries if e.member.family == f]
        runs = {}
        for e in entries:
            if e.member.family == f and e.member.checkpoints:
                runs.setdefault(e.member.name, []).append((cards[e.id]["fraction"], cards[e.id]["test_accuracy"]))
        rising = all(np.all(np.diff([a for _, a in sorted(r)]) > 0) for r in runs.values())
        facts[f] = {"accuracy_min": min(acc), "accuracy_max": max(acc), "checkpoints_rise": bool(rising)}
    jsd = [t["jsd"] for *_, t in pairs]
    dis = [t["disagreement"] for *_, t in pairs]
    facts["jsd_range"] = [min(jsd), max(jsd)]
    facts["disagreement_range"] = [min(dis), max(dis)]
    facts["spearman_accuracy_difference_vs_disagreement"] = positive_spearman(
        np.array([t["accuracy_difference"] for *_, t in pairs]), np.array(dis))
    return facts


@register_task(name="accuracy_grounding", category="sensitivity", sweep_name="|Δ test accuracy|", data="trained")
class AccuracyGrounding(PredictionGrounding):
    """Across pairs of population networks, dissimilarity must rank like the difference of their accuracies.

    Construction: the population's base networks (M1, ResNet, ViT, MobileNet; smoke 2, default 3, full 5 seeds
    each) at their final weights, and the checkpoints kept along the first seeds' runs (at 1/16, 1/8, 1/4 and
    1/2 of training), so that accuracy varies smoothly within each architecture; their penultimate layer (what
    the classifier reads) on the seed's test images (module docstring). Pairs: every pair within one
    architecture, and across architectures every pair of the first seed's checkpointed runs. Class labels: the
    images'.
    Ground truth: the absolute difference of the two networks' accuracies on the whole test split (their cards;
    details: `models`, and per family the accuracy range and whether the checkpoints' accuracies rise).
    Score: mean over groups (each architecture's within pairs, and the cross-architecture pairs) of
    max(0, Spearman ρ(1 − similarity, |Δ accuracy|)); the per-group ρ are in the record (`spearman`). A
    constant metric earns 0; a non-finite similarity makes its group's ρ 0.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 1 (correlation to accuracy difference); Ding, Denain &
    Steinhardt 2021 (NeurIPS), §3 (rank correlation with functional differences across many model pairs).
    """

    sizes = POPULATION_TASK_SIZES
    truth_column = "accuracy_difference"


@register_task(name="output_grounding", category="sensitivity", sweep_name="Jensen–Shannon divergence of outputs",
               data="trained")
class OutputGrounding(PredictionGrounding):
    """Across pairs of population networks, dissimilarity must rank like the divergence of their outputs.

    Construction: the networks and pairs of `accuracy_grounding` (base networks of four architectures, and
    checkpoints along the first seeds' runs; pairs within each architecture and across architectures), their
    penultimate layer on the seed's test images. Class labels: the images'.
    Ground truth: the mean over the same images of the Jensen–Shannon divergence between the two networks'
    softmax outputs (nats, from the logits stored with the activations); the fraction of images on which their
    predictions differ is in the curve too (`disagreement`).
    Score: mean over groups (each architecture's within pairs, and the cross-architecture pairs) of
    max(0, Spearman ρ(1 − similarity, JSD)); per-group ρ in the record. A constant metric earns 0.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 2 (correlation to output difference, JSD and disagreement);
    Ding, Denain & Steinhardt 2021 (NeurIPS), §3.
    """

    sizes = POPULATION_TASK_SIZES
    truth_column = "jsd"


# -------------------------------------------------------------------------------------------- grounding by design


class LevelGrounding(PopulationPairs):
    """Members of one family that differ only in one design level; every pair of them is compared (all within
    one architecture: the variants exist for one family, and a pair across architectures would differ by
    architecture before it differs by level)."""

    condition = "clean"

    def level(self, m: Member) -> float:
        raise NotImplementedError

    def in_group(self, m: Member) -> bool:
        raise NotImplementedError

    def entries(self, scale: str) -> list[Entry]:
        family = population_scale(scale).variant_family
        return [Entry(m, None, self.condition) for m in members(scale) if m.family == family and self.in_group(m)]

    def pairs(self, loaded, cards):
        entries = [x.entry for x in loaded.values()]
        pairs = []
        for a, b in itertools.combinations(entries, 2):
            la, lb = self.level(a.member), self.level(b.member)
            truth = {**pair_columns(a, b), "level_a": la, "level_b": lb, "same_level": la == lb,
                     "level_difference": abs(la - lb),
                     "disagreement": disagreement(loaded[a.id].logits, loaded[b.id].logits)}
            pairs.append((a.id, b.id, abs(la - lb), truth))
        return pairs, {"function": level_facts(entries, cards, pairs, self.level)}

    def score(self, curve: pd.DataFrame, setup: PairSetup) -> float:
        return normalized_average_precision(curve["similarity"].to_numpy(dtype=np.float64),
                                            curve["same_level"].to_numpy(dtype=bool))[0]

    def curve_details(self, curve: pd.DataFrame, setup: PairSetup) -> dict[str, Any]:
        s = curve["similarity"].to_numpy(dtype=np.float64)
        return {"average_precision": normalized_average_precision(s, curve["same_level"].to_numpy(dtype=bool))[1],
                "chance": float(curve["same_level"].mean()),
                "spearman_level_difference": positive_spearman(1.0 - s, curve["level_difference"].to_numpy())}


def level_facts(entries: list[Entry], cards, pairs, level) -> dict[str, Any]:
    """The measured ground truth of a design level: the members' accuracies by level, and whether members of
    one level agree more with each other than with other levels (output disagreement on the sample)."""
    by_level: dict[float, list[dict[str, Any]]] = {}
    for e in entries:
        by_level.setdefault(level(e.member), []).append(cards[e.id])
    within_dis = [t["disagreement"] for *_, t in pairs if t["same_level"]]
    across_dis = [t["disagreement"] for *_, t in pairs if not t["same_level"]]
    facts = {"levels": {str(k): {key: np.mean([c[key] for c in cs], axis=0).tolist() for key in cs[0]
                                 if key.startswith("test_accuracy")}
                        for k, cs in sorted(by_level.items())},
             "disagreement_within_level": float(np.mean(within_dis)),
             "disagreement_across_levels": float(np.mean(across_dis)),
             "spearman_level_difference_vs_disagreement": positive_spearman(
                 np.array([t["level_difference"] for *_, t in pairs]),
                 np.array([t["disagreement"] for *_, t in pairs]))}
    facts["levels_differ_in_function"] = facts["disagreement_within_level"] < facts["disagreement_across_levels"]
    return facts


LEVEL_SCORE = ("Score: max(0, (AP − π)/(1 − π)), AP the average precision of ranking all pairs by similarity "
               "with the same-level pairs as positives (ties form one threshold), π the share of same-level pairs: "
               "0 for a constant metric or chance, 1 when every same-level pair is above every other pair.")


@register_task(name="label_randomization", category="specificity", sweep_name="|Δ label randomization rate|",
               data="trained")
class LabelRandomization(LevelGrounding):
    """Networks trained on equally randomized labels must be more similar to each other than to other levels.

    Construction: ResNets of the population trained alike except for the share of their training labels
    permuted among themselves (0 %, the base ResNets, then 25, 50, 75 and 100 %; smoke 0 and 100 %), each level
    from its own seeds (smoke 2, default 3, full 5) and each network drawing its own permutation; their
    penultimate layer on the seed's clean test images. Every pair is compared (all within one architecture).
    Class labels: the images'.
    Ground truth: networks of one level share what they learned to fit, so a same-level pair should be more
    similar than a pair of different levels. Measured first (details `function`): test accuracy by level
    (falling to chance at 100 %) and the output disagreement within a level against across levels.
    Score: max(0, (AP − π)/(1 − π)), AP the average precision of ranking all pairs by similarity with the
    same-level pairs as positives (ties form one threshold), π the share of same-level pairs: 0 for a constant
    metric or chance, 1 when every same-level pair is above every other pair. Specificity: the right partners
    (same level) must be picked out of many.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 3 (label randomization, AUPRC); Zhang et al. 2017 (ICLR),
    randomized labels.
    """

    sizes = POPULATION_TASK_SIZES

    def level(self, m: Member) -> float:
        return m.variant.label_noise

    def in_group(self, m: Member) -> bool:
        return m.variant.tag == "base" or m.variant.label_noise > 0


@register_task(name="shortcut_affinity", category="specificity", sweep_name="|Δ shortcut reliability|", data="trained")
class ShortcutAffinity(LevelGrounding):
    """Networks that rely on a shortcut alike must be more similar to each other than to other reliances.

    Construction: ResNets of the population trained without augmentation on images carrying a shortcut — a
    2×2 white square in the top padding rows whose column encodes a class — that gives the label with
    reliability q (0, 50, 80, 100 %; smoke 0 and 100 %), each level from its own seeds; their penultimate layer
    on the seed's test images with the shortcut randomised (each image carries a square of a uniformly drawn
    class, so the shortcut says nothing). Every pair is compared (all within one architecture). Class labels:
    the images'.
    Ground truth: networks trained with one reliability rely on the shortcut alike, so same-level pairs should
    be more similar than others. Measured first (details `function`): per level the test accuracy with the
    shortcut true and randomised (the drop is the reliance), and the output disagreement within and across
    levels.
    Score: max(0, (AP − π)/(1 − π)) over pairs ranked by similarity, same-level pairs positive (as in
    `label_randomization`): 0 for a constant metric, 1 for a perfect ranking. Specificity, as there.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 4 (shortcut affinity); Geirhos et al. 2020 (Nature Machine
    Intelligence), "Shortcut learning in deep neural networks".
    """

    sizes = POPULATION_TASK_SIZES
    condition = "randomised_shortcut"

    def level(self, m: Member) -> float:
        return float(m.variant.shortcut)

    def in_group(self, m: Member) -> bool:
        return m.variant.shortcut is not None


@register_task(name="augmentation", category="specificity", sweep_name="|Δ augmentation strength|", data="trained")
class AugmentationGrounding(LevelGrounding):
    """Networks trained with one augmentation strength must be more similar to each other than to others.

    Construction: ResNets of the population trained alike except for the strength of their augmentation (0:
    none; 1: crop from 2 pixels of padding and flip; 2: 4 pixels and flip, the base ResNets; 3: 6 pixels, flip
    and Gaussian pixel noise; smoke 0 and 2), each level from its own seeds; their penultimate layer on the
    seed's clean test images. Every pair is compared (all within one architecture). Class labels: the images'.
    Ground truth: one strength teaches one set of invariances, so same-level pairs should be more similar than
    others. Measured first (details `function`): per level the test accuracy under every test-time augmentation
    strength (robustness grows with the training strength), and the output disagreement within and across
    levels.
    Score: max(0, (AP − π)/(1 − π)) over pairs ranked by similarity, same-level pairs positive (as in
    `label_randomization`): 0 for a constant metric, 1 for a perfect ranking. Specificity, as there.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 5 (augmentation).
    """

    sizes = POPULATION_TASK_SIZES

    def level(self, m: Member) -> float:
        return float(m.variant.augment)

    def in_group(self, m: Member) -> bool:
        return m.variant.label_noise == 0 and m.variant.shortcut is None


# --------------------------------------------------------------------------------------------------- layers


def seed_networks(scale: str, seed: int) -> list[Entry]:
    """One base network per family for a seed of a per-network task: the families' seeds taken in turn."""
    z = population_scale(scale)
    pick = z.seeds[seed % len(z.seeds)]
    return [Entry(m) for m in members(scale) if m.variant.tag == "base" and m.seed == pick]


@dataclass
class LayerSetup(Setup):
    networks: dict[str, list[torch.Tensor]]  # entry id → its layers, input to output
    names: dict[str, list[str]]


class PopulationLayers(Task):
    """Shared by the tasks that read every layer of one base network per family."""

    sweep_plot = False  # each x holds many layer pairs
    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        return {e.id: e.spec(scale) for e in seed_networks(scale, seed)}

    def load(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built
             ) -> tuple[dict[str, Loaded], torch.Tensor, dict[str, Any]]:
        scale = size["scale"]
        entries = seed_networks(scale, seed)
        loaded, labels = load_entries(entries, artifacts, None, GROUNDING_SCALES[scale].per_class, seed, device)
        details = {"n": len(labels), "reduction": GROUNDING_SCALES[scale].reduction,
                   "networks": {e.id: e.member.family for e in entries},
                   "widths": {i: {n: x.shape[1] for n, x in ld.layers.items()} for i, ld in loaded.items()}}
        return loaded, labels, details


@register_task(name="layer_monotonicity", category="sensitivity", sweep_name="layer distance |i − j|", data="trained")
class LayerMonotonicity(PopulationLayers):
    """Within one network, a layer must be more similar to nearer layers than to farther ones.

    Construction: one base network of each architecture of the population (M1, ResNet, ViT, MobileNet; seed s
    uses the families' s-th seed), every named layer (M1's eight blocks, the timm models' stages — the ViT's
    transformer blocks —, the penultimate layer and the logits) on the seed's test images. Within each network,
    every layer i is compared with every other layer j (x = |i − j|; all pairs within one network). Class
    labels: the images'.
    Ground truth: the layers form a Markov chain (each is a function of the one before), so by the data
    processing inequality a layer between i and k shares at least as much information with i as k does: for
    j strictly between i and k (or k beyond j on the same side of i), layer i is closer to j than to k.
    Score: the conformity rate: over networks, layers i and pairs (j, k) on the same side of i with
    |i − j| < |i − k|, the fraction where sim(i, j) > sim(i, k) (at 1e-9; a tie or a non-finite similarity
    fails). A constant metric earns 0. Sensitivity: the metric must register the function that each further
    layer adds, in order.
    Source: Klabunde et al. 2025 (ICLR), ReSi test 6 (layer monotonicity, conformity rate); Kornblith et al. 2019
    (ICML), §6 (similarity between layers).
    """

    sizes = POPULATION_TASK_SIZES

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> LayerSetup:
        loaded, labels, details = self.load(size, seed, device, artifacts)
        return LayerSetup(labels=labels.to(device), details=details,
                          networks={i: list(x.layers.values()) for i, x in loaded.items()},
                          names={i: list(x.layers) for i, x in loaded.items()})

    def cases(self, setup: LayerSetup) -> Iterator[Case]:
        for net, layers in setup.networks.items():
            family = setup.details["networks"][net]
            for i, j in itertools.permutations(range(len(layers)), 2):
                yield Case(x=abs(i - j), reference=layers[i], other=layers[j], ref_key=(net, i),
                           truth={"model": net, "family": family, "i": i, "j": j, "layer_i": setup.names[net][i],
                                  "layer_j": setup.names[net][j], "pair": "within"})

    def score(self, curve: pd.DataFrame, setup: LayerSetup) -> float:
        wins = []
        for _, part in curve.groupby("model", sort=False):
            L = int(part["i"].max()) + 1
            sims = np.full((L, L), -np.inf)
            s = resolved(part["similarity"].to_numpy(dtype=np.float64))
            sims[part["i"].to_numpy(), part["j"].to_numpy()] = np.where(np.isfinite(s), s, -np.inf)
            for i in range(L):
                for side in (range(i + 1, L), range(i - 1, -1, -1)):
                    order = list(side)
                    wins += [bool(np.isfinite(sims[i, j]) and sims[i, j] > sims[i, k])
                             for a, j in enumerate(order) for k in order[a + 1:]]
        return float(np.mean(wins))


@dataclass
class CorrespondenceSetup(LayerSetup):
    pairs: list[tuple[str, str]]


def nearest_depth(i: int, la: int, lb: int) -> set[int]:
    """The layers j of a network with lb layers whose relative depth j/(lb − 1) is nearest to i/(la − 1) (exact
    rational comparison, so a tie keeps both)."""
    gaps = [abs(i * (lb - 1) - j * (la - 1)) for j in range(lb)]
    return {j for j, g in enumerate(gaps) if g == min(gaps)}


@register_task(name="cross_architecture_correspondence", category="specificity",
               sweep_name="relative depth of layer j of network B", data="trained")
class CrossArchitectureCorrespondence(PopulationLayers):
    """Each layer of one architecture must best match the layer at the same relative depth of another.

    Construction: one base network of each architecture of the population (M1, ResNet, ViT, MobileNet; seed s
    uses the families' s-th seed), every named layer (10, 7, 7 and 6 of them: the blocks or stages, the
    penultimate layer, the logits) on the seed's test images. For every ordered pair (A, B) of different
    architectures (all pairs are across architectures), every layer i of A is compared with every layer j of B
    (x = j/(L_B − 1), its relative depth). Widths differ (16 to 256 features); no built-in metric needs equal
    widths. Class labels: the images'.
    Ground truth: networks trained on one task build the same hierarchy at their own pace, so layer i of A
    corresponds to the layers T_i of B nearest in relative depth, i/(L_A − 1) against j/(L_B − 1). Measured
    first (details `probe_accuracy`): a linear probe's held-out accuracy on every layer, whose rank correlation
    with relative depth (`depth_vs_probe_spearman`) says how well depth tracks function in each architecture.
    A harder version of `layer_correspondence` and `pretrained_stage_correspondence`: different families,
    widths and depths.
    Score: mean over ordered pairs and layers i of A of credit(i) = |T_i ∩ B_i|/|B_i|, B_i the layers of B with
    the highest similarity to A_i (ties at 1e-9 share the credit; a non-finite similarity never wins): 1 for a
    metric that finds every counterpart, about 1/L_B for a constant one.
    Source: Kornblith et al. 2019 (ICML), §6.1 (correspondence across architectures); Klabunde et al. 2025
    (ICLR), ReSi (grounding by design); Raghu et al. 2021 (NeurIPS), "Do Vision Transformers See Like
    Convolutional Neural Networks?" (where relative depth fails across ViT and CNN).
    """

    sizes = POPULATION_TASK_SIZES

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device,
              artifacts: Built) -> CorrespondenceSetup:
        loaded, labels, details = self.load(size, seed, device, artifacts)
        probe = {i: [layer_probe_accuracy(x, labels.to(device)) for x in ld.layers.values()] for i, ld in
                 loaded.items()}
        details["probe_accuracy"] = probe
        details["depth_vs_probe_spearman"] = {i: positive_spearman(np.arange(len(p), dtype=float), np.array(p))
                                              for i, p in probe.items()}
        return CorrespondenceSetup(labels=labels.to(device), details=details,
                                   networks={i: list(x.layers.values()) for i, x in loaded.items()},
                                   names={i: list(x.layers) for i, x in loaded.items()},
                                   pairs=list(itertools.permutations(loaded, 2)))

    def cases(self, setup: CorrespondenceSetup) -> Iterator[Case]:
        fam = setup.details["networks"]
        for a, b in setup.pairs:
            A, B = setup.networks[a], setup.networks[b]
            for i, Ai in enumerate(A):
                target = nearest_depth(i, len(A), len(B))
                for j, Bj in enumerate(B):
                    yield Case(x=j / (len(B) - 1), reference=Ai, other=Bj, ref_key=(a, i),
                               truth={"model_a": a, "model_b": b, "family_a": fam[a], "family_b": fam[b],
                                      "pair": "cross", "i": i, "j": j, "layer_i": setup.names[a][i],
                                      "layer_j": setup.names[b][j], "depth_i": i / (len(A) - 1),
                                      "target": j in target})

    def score(self, curve: pd.DataFrame, setup: CorrespondenceSetup) -> float:
        credit = []
        for _, part in curve.groupby(["model_a", "model_b", "i"], sort=False):
            s = resolved(part["similarity"].to_numpy(dtype=np.float64))
            s = np.where(np.isfinite(s), s, -np.inf)
            best = np.isfinite(s) & (s == s.max())
            credit.append(float((best & part["target"].to_numpy(dtype=bool)).sum() / best.sum()) if best.any()
                          else 0.0)
        return float(np.mean(credit))


def layer_probe_accuracy(X: torch.Tensor, labels: torch.Tensor) -> float:
    """Held-out accuracy of a linear probe on one layer (the seeded 80/20 stratified split of `metrics.probe`)."""
    from simstress.metrics.probe import held_out_prediction

    predicted, truth = held_out_prediction(X, labels)
    return float((predicted == truth).double().mean())
