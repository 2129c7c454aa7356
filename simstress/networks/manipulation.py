"""Manipulated networks: a trained network fine-tuned so that its layer map approaches a target, same function.

Davari et al. 2023 (ICLR), §4.3 and Figs. 5–7. A copy of a trained network (the student) is fine-tuned on

    L = KL(softmax(z_teacher/τ) ‖ softmax(z_student/τ)) + α · mean_{i,j} logcosh(M[i, j] − T[i, j])

with τ = 0.1 and the teacher a frozen copy of the original (which also initialises the student), M the student's
8×8 map of block outputs on the current minibatch under the attacker's estimator (`maps.estimator`, through the
registry), T the target (`maps.target_map`), the mean over the whole map, diagonal included. α starts at 500;
every `check_every` steps the accuracy on a validation split carved from the training images (never the test
set, which the paper used) is measured, and α ← 0.8·α when it fell more than 1 percentage point below the
original's on that split, α ← α/0.8 otherwise. AdamW (lr 1e-3, weight decay 5e-4, amsgrad), cosine decay per
step, gradient clipping 1.0, batch 128, the pre-training augmentation. Linear CKA's map is estimated on each
minibatch by the unbiased HSIC₁ (`linear_cka_debiased`; Nguyen, Raghu & Kornblith 2021), as the paper's loss.

Block outputs are reduced before the map (`ManipulationRecipe.reduction`, default global average pooling:
16–64·w features): the CCA family needs fewer features than the 128 images of a batch, so every differentiable
metric can attack; the tasks read the same reduction.

A manipulated network is the artifact kind `manipulated` (`results/manipulated/<key>/`): `weights.pt` and
`card.json` (attacker and its version, estimator, target and its matrix, the source network's sha256, the
recipe, α and accuracy history, validation and test accuracy before and after, prediction agreement with the
original on the test set, original and achieved maps on a stratified test sample under the attacker and under its
minibatch estimator (Davari et al. report the estimator's: minibatch CKA on the test set), the variance share of
the top 1 % of points in the penultimate features) and `pca.npz` (2-D PCA of original and manipulated penultimate
features on that sample, for the mechanism figure).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.core.inputs import InputError
from simstress.core.metric import Metric, get_metric
from simstress.data import ImageSet, load_images

from .activations import activations, reduce
from .m1 import BLOCK_LAYERS, INPUT_SIZE
from .maps import MATCH_PREFIX, check_target, direct_map, estimator, layer_map, off_diagonal_error, target_map
from .training import accuracy, augment, predict
from .zoo import load_network, network_name, new_network, restore

KIND = "manipulated"
VALIDATION_SEED = 1  # the stratified validation split carved from the training images
MAP_SAMPLE_SEED = 0  # the stratified test sample the reported maps are measured on


@dataclass(frozen=True)
class ManipulationRecipe:
    """How a manipulation is trained; every field is part of the manipulated network's identity (its key)."""

    steps: int
    check_every: int = 25
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    clip: float = 1.0
    tau: float = 0.1
    alpha: float = 500.0
    alpha_factor: float = 0.8
    max_drop: float = 0.01  # validation accuracy below the original's by more than this shrinks α
    validation_per_class: int = 100
    map_per_class: int = 200  # stratified test images the reported maps are measured on
    reduction: str = "pool"
    augment: bool = True
    # "running": BatchNorm normalises with its running statistics while fine-tuning (eval mode), so the map the loss
    # shapes is the one the deployed network computes; "batch": with each minibatch's statistics (train mode).
    batchnorm: str = "running"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttackScale:
    zoo: str
    recipe: ManipulationRecipe


ATTACK_SCALES: dict[str, AttackScale] = {
    # Seconds: a few gentle steps on the smoke zoo (tests): α and the learning rate small enough that the
    # function survives without the recovery phase a real run has.
    "smoke": AttackScale("smoke", ManipulationRecipe(steps=12, check_every=4, lr=1e-4, alpha=5.0,
                                                     validation_per_class=20, map_per_class=20)),
    # ≤ 5 minutes per attack on two CPU cores.
    "default": AttackScale("default", ManipulationRecipe(steps=1000)),
    # A GPU: the paper's 20 epochs of batch 128 (≈ 7,800 steps on 50k images), maps on 500 test images per class.
    "full": AttackScale("full", ManipulationRecipe(steps=7800, check_every=100, map_per_class=500)),
}


def logcosh(x: torch.Tensor) -> torch.Tensor:
    """log(cosh x) without overflow: |x| + softplus(−2|x|) − log 2."""
    a = x.abs()
    return a + F.softplus(-2.0 * a) - math.log(2.0)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax(teacher/τ) ‖ softmax(student/τ)), averaged over the batch (torch's KLDivLoss "batchmean")."""
    return F.kl_div(F.log_softmax(student_logits / tau, 1), F.log_softmax(teacher_logits / tau, 1),
                    log_target=True, reduction="batchmean")


def split_validation(train: ImageSet, per_class: int) -> tuple[ImageSet, ImageSet]:
    """(training images without the validation split, the split): `per_class` stratified images per class."""
    held = train.stratified(per_class, VALIDATION_SEED)
    keep = np.setdiff1d(np.arange(len(train)), held)
    return train.subset(keep), train.subset(held)


def block_map(model: nn.Module, metric: Metric, images: torch.Tensor, reduction: str, device: torch.device,
              ) -> torch.Tensor:
    """The network's 8×8 map of block outputs on `images`, by validated pairwise calls in float64 (`direct_map`)."""
    acts = activations(model, images, BLOCK_LAYERS, reduction=reduction, device=device, out_device=device)
    return direct_map(metric, [acts[b].to(torch.float64) for b in BLOCK_LAYERS])


def moves_map(metric: Metric, M: torch.Tensor, reps: Sequence[torch.Tensor]) -> None:
    """Raise unless a gradient flows from the attacker's map to the layers: a metric declared differentiable that
    detaches (or returns a constant) would make a no-op attack that only looks like one."""
    grads = torch.autograd.grad(M.sum(), list(reps), retain_graph=True, allow_unused=True) if M.requires_grad else ()
    # a non-finite gradient is a gradient (such steps are skipped below); none, or zero everywhere, is not
    if not any(g is not None and bool((g != 0).any()) for g in grads):
        raise ArtifactError(f"{metric.id} is declared differentiable, but no gradient flows from its layer map to the "
                            f"layers, so it cannot attack; fix the metric (`simstress check {metric.id}` shows its "
                            f"gradient check) or register it with differentiable=False")


def manipulate(network: nn.Module, attacker: str, target: torch.Tensor, train: ImageSet, validation: ImageSet,
               recipe: ManipulationRecipe, seed: int, device: torch.device | str = "cpu", *,
               desc: str = "manipulate", progress: bool | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """A copy of `network` fine-tuned so that `attacker`'s map of its blocks approaches `target` (8×8), with its
    logits distilled from the original; the copy (eval mode) and the history of the α checks (module docstring).

    `network` is not modified. The batches, the augmentation and the initialisation come from `seed`.
    """
    metric = estimator(attacker)
    dev = torch.device(device)
    if tuple(target.shape) != (len(BLOCK_LAYERS), len(BLOCK_LAYERS)):
        raise ValueError(f"the target must be {len(BLOCK_LAYERS)}×{len(BLOCK_LAYERS)}, got {tuple(target.shape)}")
    if recipe.steps < 1 or recipe.check_every < 1:
        raise ValueError(f"steps and check_every must be ≥ 1, got {recipe.steps} and {recipe.check_every}")
    if recipe.batchnorm not in ("running", "batch"):
        raise ValueError(f"batchnorm must be 'running' or 'batch', got {recipe.batchnorm!r}")
    if len(train) < recipe.batch_size:
        raise ValueError(f"{len(train)} training images cannot fill a batch of {recipe.batch_size}")
    teacher = copy.deepcopy(network).to(dev).eval().requires_grad_(False)
    student = copy.deepcopy(network).to(dev).to(memory_format=torch.channels_last)
    T = target.to(dev, torch.float32)
    x_all = train.tensor(INPUT_SIZE).to(dev).contiguous(memory_format=torch.channels_last)
    x_val, y_val = validation.tensor(INPUT_SIZE), torch.from_numpy(validation.labels)
    fill = -torch.tensor(train.mean) / torch.tensor(train.std)
    g = torch.Generator().manual_seed(seed)
    base_accuracy = accuracy(teacher, x_val, y_val, dev)
    opt = torch.optim.AdamW(student.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, amsgrad=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.steps)
    alpha = recipe.alpha
    history: list[dict[str, Any]] = [{"step": 0, "alpha": alpha, "validation_accuracy": base_accuracy}]
    order, cursor = torch.randperm(len(train), generator=g), 0
    # loss, distillation, map error and the count of finite steps over the window
    sums = torch.zeros(4, device=dev, dtype=torch.float64)
    finite_steps = 0
    shown = {} if progress is None else {"disable": not progress}
    with tqdm(total=recipe.steps, desc=desc, unit="step", dynamic_ncols=True, leave=False, **shown) as bar:
        for step in range(1, recipe.steps + 1):
            if cursor + recipe.batch_size > len(train):
                order, cursor = torch.randperm(len(train), generator=g), 0
            idx = order[cursor:cursor + recipe.batch_size].to(dev)
            cursor += recipe.batch_size
            x = x_all[idx]
            if recipe.augment:
                x = augment(x, g, fill)
            with torch.no_grad():
                teacher_logits = teacher(x)
            student.train(recipe.batchnorm == "batch")
            out = student.layers(x, (*BLOCK_LAYERS, "logits"))
            reps = [reduce(out[b], recipe.reduction) for b in BLOCK_LAYERS]
            if step == 1:  # the attacker's own checks, once, on real activations
                for a in reps[1:]:
                    metric(reps[0].detach(), a.detach())
            try:
                M = layer_map(metric, reps)
            except InputError:
                if step == 1:
                    raise
                # the attack degenerated a layer on this batch (e.g. one output for most images): the map is
                # undefined, so the step counts as non-finite and is skipped below
                M = torch.full_like(T, math.nan)
            if step == 1:
                moves_map(metric, M, reps)
            kd = distillation(out["logits"], teacher_logits, recipe.tau)
            loss = kd + alpha * logcosh(M - T).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(student.parameters(), recipe.clip)
            # A metric's gradient can be non-finite on some batches (e.g. an SVD of rank-deficient features from dead
            # ReLU channels): such a step updates nothing instead of poisoning the weights, decided on the device.
            ok = torch.isfinite(norm) & torch.isfinite(loss.detach())
            for p in student.parameters():
                if p.grad is not None:
                    p.grad.copy_(torch.where(ok, p.grad, torch.zeros_like(p.grad)))
            opt.step()
            sched.step()
            parts = torch.stack([loss.detach(), kd.detach(), off_diagonal_error(M.detach(), T)]).double()
            sums += torch.cat([torch.where(ok, parts, torch.zeros_like(parts)), ok.double().reshape(1)])
            bar.update(1)
            if step % recipe.check_every and step != recipe.steps:
                continue
            window = step - history[-1]["step"]
            *means, finite = sums.tolist()
            sums.zero_()
            finite_steps += int(finite)
            loss_mean, kd_mean, err_mean = ([m / finite for m in means] if finite else [None] * 3)
            acc = accuracy(student, x_val, y_val, dev)
            history.append({"step": step, "alpha": alpha, "loss": loss_mean, "distillation": kd_mean,
                            "map_error": err_mean, "validation_accuracy": acc,
                            **({"skipped_steps": window - int(finite)} if finite < window else {})})
            too_much = base_accuracy - acc > recipe.max_drop
            alpha = alpha * recipe.alpha_factor if too_much else alpha / recipe.alpha_factor
            bar.set_postfix(loss="-" if loss_mean is None else f"{loss_mean:.3g}", alpha=f"{history[-1]['alpha']:.3g}",
                            map_err="-" if err_mean is None else f"{err_mean:.3f}", acc=f"{acc:.3f}")
    if not finite_steps:
        raise ArtifactError(f"the attacker {metric.id} gave a non-finite loss or gradient on every one of the "
                            f"{recipe.steps} steps, so nothing was manipulated; it cannot attack this network")
    student.eval()
    return student.to(memory_format=torch.contiguous_format), history


# ---------------------------------------------------------------------------------------------- artifact


def attack_spec(network: ArtifactSpec, attacker: str, target: str, scale: str,
                match: ArtifactSpec | None = None, reduction: str | None = None) -> ArtifactSpec:
    """The manipulated network of `network` under `attacker` towards `target` at `scale` (`match:<name>` targets
    pass the network to match as `match`), its maps on the blocks reduced by `reduction` (default: the scale's)."""
    if scale not in ATTACK_SCALES:
        raise ValueError(f"manipulations have scales {tuple(ATTACK_SCALES)}, not {scale!r}")
    check_target(target)
    metric = get_metric(attacker)
    est = estimator(metric.id)
    if target.startswith(MATCH_PREFIX) != (match is not None):
        raise ValueError(f"target {target!r} {'needs' if match is None else 'takes no'} network to match")
    recipe = ATTACK_SCALES[scale].recipe
    recipe = recipe if reduction is None else replace(recipe, reduction=reduction)
    params = {"attacker": metric.id, "attacker_version": metric.spec.version, "estimator": est.id,
              "estimator_version": est.spec.version, "target": target, "seed": 0, "recipe": recipe.to_dict()}
    inputs = (("network", network),) + ((("match", match),) if match is not None else ())
    return ArtifactSpec(KIND, params, inputs)


def attack_label(attacker: str, target: str) -> str:
    """"<attacker>→<target>": an attack's name within one source network (the task's case labels)."""
    return f"{attacker}→{target}"


def top_share(X: torch.Tensor, fraction: float = 0.01) -> float:
    """Share of the total variance Σ||xᵢ − x̄||² that the top `fraction` of points (by ||xᵢ − x̄||²) carry."""
    d = (X - X.mean(0)).square().sum(1)
    k = max(1, round(fraction * len(d)))
    return float(d.topk(k).values.sum() / d.sum())


def pca2(original: torch.Tensor, manipulated: torch.Tensor) -> np.ndarray:
    """2-D PCA coordinates (2, n, 2) of each feature set on its own top two principal axes (sign: largest |entry| of
    each axis positive, so the picture is deterministic)."""
    out = []
    for X in (original, manipulated):
        Xc = X - X.mean(0)
        _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
        V = Vh[:2].T
        V = V * torch.sign(V.gather(0, V.abs().argmax(0, keepdim=True)))
        out.append((Xc @ V).numpy())
    return np.stack(out).astype(np.float32)


@artifact_builder(KIND, version=1)
def build_manipulated(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out, device: str) -> dict[str, Any]:
    """Manipulate the input network (module docstring) and save it; the card's extras."""
    source = inputs["network"]
    recipe = ManipulationRecipe(**params["recipe"])
    dev = torch.device(device)
    dataset = source.spec.params["dataset"]
    train_all, test = load_images(dataset, "train"), load_images(dataset, "test")
    train, validation = split_validation(train_all, recipe.validation_per_class)
    original = load_network(source, dev)
    attacker = get_metric(params["attacker"])
    x_val = validation.tensor(INPUT_SIZE)
    own = other = None
    if params["target"] == "first_last":
        own = block_map(original, attacker, x_val, recipe.reduction, dev)
    elif params["target"].startswith(MATCH_PREFIX):
        other = block_map(load_network(inputs["match"], dev), attacker, x_val, recipe.reduction, dev)
    T = target_map(params["target"], own=own, other=other)
    name = f"{attack_label(params['attacker'], params['target'])}@{network_name(source.spec)}"
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        model, history = manipulate(original, params["attacker"], T, train, validation, recipe, params["seed"], dev,
                                    desc=name)
    x_test, y_test = test.tensor(INPUT_SIZE), torch.from_numpy(test.labels)
    before, after = predict(original, x_test, dev), predict(model, x_test, dev)
    sample = test.stratified(recipe.map_per_class, MAP_SAMPLE_SEED)
    x_map = x_test[torch.from_numpy(sample)]
    est = estimator(params["attacker"])
    maps = {}  # under the attacker, and under its minibatch estimator when that differs (the paper's report)
    for key, metric in (("attacker", attacker), ("estimator", est)):
        if key == "estimator" and est.id == attacker.id:
            continue
        pair = {"original": block_map(original, metric, x_map, recipe.reduction, dev)}
        refused = {}
        try:
            pair["achieved"] = block_map(model, metric, x_map, recipe.reduction, dev)
        except InputError as exc:  # the attack degenerated a layer (e.g. every image gives it one output)
            refused = {"refused": str(exc)}
        maps[key] = {"metric": metric.id, **{k: m.tolist() for k, m in pair.items()},
                     "error": {k: float(off_diagonal_error(m, T)) for k, m in pair.items()}, **refused}
    pooled = {k: activations(m, x_map, ("pooled",), device=dev)["pooled"].double()
              for k, m in (("original", original), ("manipulated", model))}
    np.savez(out / "pca.npz", coords=pca2(pooled["original"], pooled["manipulated"]), labels=test.labels[sample])
    model = model.cpu()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out / "weights.pt")
    validation_after = accuracy(model, x_val, torch.from_numpy(validation.labels), torch.device("cpu"))
    return {
        "name": name, "source": {"name": network_name(source.spec), "sha256": source.sha256},
        "in_channels": source.card["in_channels"], "classes": source.card["classes"],
        "data": {"dataset": dataset, "train_images": len(train), "validation_images": len(validation),
                 "test_images": len(test), "map_images": len(sample)},
        "target_map": T.tolist(), "maps": maps,
        "validation_accuracy": {"before": history[0]["validation_accuracy"], "after": validation_after},
        "test_accuracy": {"before": float((before == y_test).double().mean()),
                          "after": float((after == y_test).double().mean())},
        "agreement": float((before == after).double().mean()),
        "variance_top1pct": {k: top_share(v.cpu()) for k, v in pooled.items()},
        "history": history,
    }


def load_manipulated(artifact: Artifact, device: torch.device | str = "cpu") -> nn.Module:
    """The manipulated network an artifact of kind `manipulated` holds, in eval mode on `device`."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not a manipulated network")
    source = dict(artifact.spec.inputs)["network"]
    return restore(new_network(source.params, artifact.card["in_channels"], artifact.card["classes"]), artifact, device)
