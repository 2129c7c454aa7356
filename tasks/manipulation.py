"""`map_manipulation`: networks fine-tuned so that one metric's layer map takes a target shape, same function.

The attacks are artifacts (`simstress.networks.manipulation`, cached under `results/manipulated/`), one per
(attacker, target) on one generalized network of the zoo, built once per scale and shared by every metric's
cell: a metric that cannot be differentiated costs only its evaluations. An attack counts only when it keeps the
function as the paper judges it, on the whole test split: test accuracy within 1 percentage point of the
original's and ≥ 95 % of its predictions unchanged; the others are listed, never scored.

Source: Davari et al. 2023 (ICLR), "Reliability of CKA as a Similarity Measure in Deep Learning", §4.3 and
Figs. 5–7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from simstress.core.artifacts import ArtifactSpec
from simstress.core.metric import get_metric
from simstress.core.task import Built, Case, Setup, Task, register_task
from simstress.networks.activations import activations
from simstress.networks.m1 import BLOCK_LAYERS
from simstress.networks.manipulation import ATTACK_SCALES, attack_label, attack_spec, load_manipulated
from simstress.networks.maps import estimator
from simstress.networks.zoo import load_network, network_name, network_spec

from .zoo import sample_test_images

# Every built-in metric a gradient can move, one per minibatch estimator (linear_cka_debiased is linear_cka's:
# their attacks would be the same training). tests/test_manipulation.py checks that none is missing.
ATTACKERS = ("linear_cka", "rbf_cka", "rbf_cka[sigma=0.5]", "rbf_cka[sigma=0.2]", "rbf_cka[median=lower]",
             "rbf_cka[median=lower,sigma=0.5]", "rbf_cka[median=lower,sigma=0.2]", "cca_mean",
             "cca_mean[normalize=width]", "cca_r2", "svcca", "pwcca", "procrustes", "procrustes_angular")
# The CKA family trains on the flattened blocks, as the paper's maps do (up to 14,400 features per image, taken
# through the batch's 128×128 kernels). The others train on globally pooled blocks: the CCA family needs fewer
# features than the batch's images, and Procrustes' nuclear norm of a p×p cross-covariance is the paper's
# "other measure", not its attack.
FLATTENED = frozenset({"linear_cka", "rbf_cka"})
ATTACK_PREFIX, FIGURE_PREFIX = "attack:", "figure:"
# The paper's acceptance (Davari et al. 2023, Figs. 5–7): within 1 pp of the original's test accuracy, and our
# reading of "the same function", 95 % of the predictions unchanged, both on the whole test split.
MAX_ACCURACY_DROP, MIN_AGREEMENT = 0.01, 0.95


def attack_reduction(attacker: str) -> str:
    return "flatten" if get_metric(attacker).spec.name in FLATTENED else "pool"


def attacks(scale: str, attackers: tuple[str, ...], targets: tuple[str, ...]) -> dict[str, ArtifactSpec]:
    """The attack artifacts of a scale by name ("attack:<attacker>→<target>"), on the zoo's generalized seed 0."""
    source = network_spec("generalized", 1, 0, ATTACK_SCALES[scale].zoo)
    return {ATTACK_PREFIX + attack_label(a, t): attack_spec(source, a, t, scale, reduction=attack_reduction(a))
            for a in attackers for t in targets}


def figure_attacks(scale: str) -> dict[str, ArtifactSpec]:
    """The attacks only the page shows (Davari et al.'s Figs. 5–7): linear CKA's first and last layer made alike,
    its map drawn as comical shapes, and a network twice as wide made to show the map of one of normal width."""
    zoo = ATTACK_SCALES[scale].zoo
    thin, wide = network_spec("generalized", 1, 0, zoo), network_spec("generalized", 2, 0, zoo)
    return {FIGURE_PREFIX + "first_last": attack_spec(thin, "linear_cka", "first_last", scale, reduction="flatten"),
            FIGURE_PREFIX + "christmas_tree": attack_spec(thin, "linear_cka", "christmas_tree", scale,
                                                          reduction="flatten"),
            FIGURE_PREFIX + "goblin": attack_spec(thin, "linear_cka", "goblin", scale, reduction="flatten"),
            FIGURE_PREFIX + "width": attack_spec(wide, "linear_cka", f"match:{network_name(thin)}", scale, thin,
                                                 reduction="flatten")}


def accepted(card: Mapping[str, Any]) -> bool:
    """Whether an attack kept the function by the paper's acceptance, on the whole test split (its card)."""
    acc = card["test_accuracy"]
    # accuracies are whole-image fractions: a drop of exactly 1 pp (0.617 → 0.607) must not fail by float rounding
    drop = round(acc["before"] - acc["after"], 9)
    return drop <= MAX_ACCURACY_DROP and round(card["agreement"], 9) >= MIN_AGREEMENT


@dataclass
class ManipulationSetup(Setup):
    original: list[torch.Tensor]
    manipulated: dict[str, list[torch.Tensor]]  # by attack name


@register_task(name="map_manipulation", category="robustness", sweep_name="block i (layer map entry or pair)",
               data="trained", version=3)
class MapManipulation(Task):
    """Networks fine-tuned so that a metric's layer map takes a chosen shape while their function is unchanged.

    Construction: the attacks (`simstress.networks.manipulation`): the `generalized` M1 of the zoo with seed 0,
    fine-tuned for each attacker (default and full: every built-in differentiable metric, one per minibatch
    estimator, `ATTACKERS`; smoke: linear_cka, procrustes), plus a differentiable plugin's own attack, and each
    target (`identity`: minimise every off-diagonal entry of the attacker's 8×8 block map; `ones`: maximise them;
    full adds the paper's other maps), with distillation from the original network keeping its predictions
    (Davari et al.'s loss and α schedule; default 1,000 steps, full 7,800). The CKA family trains on the flattened
    blocks as the paper does, the others on globally pooled ones (`FLATTENED` says why). An attack is scored only
    when it meets the paper's acceptance on the whole test split (test accuracy within 1 pp of the original's, ≥ 95 %
    of the predictions unchanged, from its card); the others are listed in the details (`failed`) and on the page.
    On a stratified sample of test images (smoke 30, default 50, full 500 per class; the seed draws it), the eight
    block outputs of the original and of every scored manipulated network, average-pooled to 2×2 cells (4×4 at full)
    and flattened, in float64: a view every metric can compare on these images. Cases, for each attack: the
    metric's map of the manipulated network (every ordered pair i ≠ j), and layer i of the original against layer i
    of the manipulated network; once: the original's map. Class labels: the images'.
    Ground truth: every accepted manipulated network computes the original's function (as the paper accepts it),
    so a metric that measures what the representations compute should see the same map and self-similarity across
    the two.
    Score: for each attack a, damage(a) = ½·(mean_{i≠j} |S_a[i, j] − S_0[i, j]| + mean_i (1 − S(orig_i, man_i))),
    S the self-normalised similarity clipped to [0, 1] (a refused or non-finite entry counts as the worst:
    change 1, similarity 0); score = 1 − max_a damage(a). Per-attack values: details `attacks`. A metric that no
    scored attack trained through (not differentiable: RSA, mutual k-NN, the probes) is only measured on how the
    others' attacks transfer to it: the page marks it.
    Source: Davari et al. 2023 (ICLR), §4.3 and Figs. 5–7 (loss, schedule, targets, acceptance); the attack matrix
    across metrics is this suite's extension.
    """

    sweep_plot = False  # each x holds several pairs (shown in its own section)
    # The default's 32 attacks (every built-in estimator towards `identity` and `ones`, and the four figure attacks)
    # are committed: the default grid's `make leaderboard` trains nothing on a fresh clone.
    sizes = {"smoke": {"scale": "smoke", "per_class": 30, "attackers": ("linear_cka", "procrustes"),
                       "targets": ("identity", "ones"), "reduction": "pool2", "figures": False},
             "default": {"scale": "default", "per_class": 50, "attackers": ATTACKERS,
                         "targets": ("identity", "ones"), "reduction": "pool2", "figures": True},
             "full": {"scale": "full", "per_class": 500, "attackers": ATTACKERS,
                      "targets": ("identity", "ones", "first_last", "christmas_tree", "goblin", "carrot", "sword",
                                  "bow_arrow"), "reduction": "pool4", "figures": True}}

    def artifacts(self, scale: str, seed: int) -> dict[str, ArtifactSpec]:
        size = self.sizes[scale]
        specs = attacks(size["scale"], size["attackers"], size["targets"])
        return {"network": dict(next(iter(specs.values())).inputs)["network"], **specs,
                **(figure_attacks(size["scale"]) if size["figures"] else {})}

    def metric_artifacts(self, scale: str, seed: int, metric: str) -> dict[str, ArtifactSpec]:
        """A metric from outside the suite (a plugin) that is differentiable brings its own attack, unless one of
        the built-in attackers (`ATTACKERS`) already trains with its estimator."""
        spec = get_metric(metric).spec
        if not spec.differentiable or spec.needs_labels:
            return {}
        size = self.sizes[scale]
        own = estimator(metric).id
        if own in {estimator(a).id for a in (*ATTACKERS, *size["attackers"])}:
            return {}
        return attacks(size["scale"], (get_metric(metric).id,), size["targets"])

    def build(self, size: Mapping[str, Any], seed: int, device: torch.device, artifacts: Built) -> ManipulationSetup:
        images, labels, sample = sample_test_images(ATTACK_SCALES[size["scale"]].zoo, size["per_class"], seed)
        original = load_network(artifacts["network"], device)

        def blocks(model: torch.nn.Module) -> list[torch.Tensor]:
            acts = activations(model, images, BLOCK_LAYERS, reduction=size["reduction"], device=device,
                               out_device=device)
            return [acts[b].to(torch.float64) for b in BLOCK_LAYERS]

        manipulated, summary, failed = {}, {}, {}
        for name in sorted(n for n in artifacts if n.startswith(ATTACK_PREFIX)):
            card, attack = artifacts[name].card, name.removeprefix(ATTACK_PREFIX)
            summary[attack] = {"test_accuracy": card["test_accuracy"], "agreement": card["agreement"],
                               "map_error": {k: m["error"].get("achieved") for k, m in card["maps"].items()}}
            if accepted(card):
                manipulated[attack] = blocks(load_manipulated(artifacts[name], device))
            else:  # the premise fails: the function changed, so a metric that sees a change is right
                failed[attack] = summary[attack]
        if not manipulated:
            raise RuntimeError(f"{self.name}: no attack kept the function (test accuracy within "
                               f"{MAX_ACCURACY_DROP:.0%} of the original's, agreement ≥ {MIN_AGREEMENT:.0%}): "
                               f"{sorted(failed)}; none can be scored")
        details = {**sample, "network": network_name(artifacts["network"].spec), "reduction": size["reduction"],
                   "failed": failed, "attack_cards": summary,
                   "attacked_through": sorted({a.split("→")[0] for a in manipulated})}
        return ManipulationSetup(labels=labels.to(device), details=details, original=blocks(original),
                                 manipulated=manipulated)

    def cases(self, setup: ManipulationSetup) -> Iterator[Case]:
        L = len(setup.original)
        for i in range(L):
            for j in range(L):
                if i != j:
                    yield Case(x=i, reference=setup.original[i], other=setup.original[j], ref_key=("original", i),
                               truth={"attack": "", "kind": "map", "i": i, "j": j})
        for attack, stack in setup.manipulated.items():
            for i in range(L):
                yield Case(x=i, reference=setup.original[i], other=stack[i], ref_key=("original", i),
                           truth={"attack": attack, "kind": "pair", "i": i, "j": i})
                for j in range(L):
                    if i != j:
                        yield Case(x=i, reference=stack[i], other=stack[j], ref_key=(attack, i),
                                   truth={"attack": attack, "kind": "map", "i": i, "j": j})

    def score(self, curve: pd.DataFrame, setup: ManipulationSetup) -> float:
        return 1.0 - float(attack_effects(curve)["damage"].max())

    def curve_details(self, curve: pd.DataFrame, setup: ManipulationSetup) -> dict[str, Any]:
        effects = attack_effects(curve)
        return {"attacks": {a: {k: float(v) for k, v in row.items()} for a, row in effects.iterrows()}}


def attack_effects(curve: pd.DataFrame) -> pd.DataFrame:
    """Per attack: `map_change` (mean |S_a − S_0| off the diagonal), `pair_drop` (mean 1 − S(orig_i, man_i)) and
    `damage` (their mean), from a `map_manipulation` curve; similarities clipped to [0, 1], non-finite = worst."""
    sim = curve["similarity"].to_numpy(dtype=np.float64)
    curve = curve.assign(s=np.clip(np.where(np.isfinite(sim), sim, math.nan), 0.0, 1.0))
    maps = curve[curve["kind"] == "map"]
    base = maps[maps["attack"] == ""].set_index(["i", "j"])["s"]
    rows = {}
    for attack, part in curve[curve["attack"] != ""].groupby("attack", sort=True):
        m = part[part["kind"] == "map"].set_index(["i", "j"])["s"]
        change = (m - base.reindex(m.index)).abs().fillna(1.0)
        drop = (1.0 - part[part["kind"] == "pair"]["s"]).fillna(1.0)
        rows[attack] = {"map_change": float(change.mean()), "pair_drop": float(drop.mean()),
                        "damage": 0.5 * (float(change.mean()) + float(drop.mean()))}
    return pd.DataFrame.from_dict(rows, orient="index")
