"""Small architectures for the population, at Fashion-MNIST's resolution: M1 beside three timm families.

Every network takes the suite's padded 32×32 input (`training.INPUT_SIZE`) with `in_chans` planes (1 for
Fashion-MNIST, 3 for CIFAR-10) and `classes` outputs, is created with `pretrained=False` (nothing is downloaded)
and its weights drawn from one seed. Families and sizes (`tiny`: tests and the smoke scale; `small`: the default;
`base`: the full scale, for a GPU):

- `m1`: Kornblith et al.'s tiny CNN (`networks.m1`), width 1 / 1 / 2;
- `resnet`: timm's `resnet10t` (one basic block per stage, tiered stem, average-pool downsampling) with stage
  widths (8, 16, 32, 64) / (16, 32, 64, 128) / (32, 64, 128, 256);
- `vit`: timm's `VisionTransformer` with 4×4 patches (64 tokens and a class token), embedding 32 / 48 / 96,
  depth 5 / 5 / 6, 2 / 3 / 4 heads, MLP ratio 2;
- `mobilenet`: timm's `MobileNetV3` (inverted residuals with squeeze-excitation and hard-swish, the
  MobileNetV3-Small stage plan at channel multiplier 0.35 / 0.5 / 1.0) with a head of 64 / 128 / 256 features
  instead of 1024, so that the vector the classifier reads stays below the number of compared images.

Named layers (`layer_names`), the representations the grounding tasks read: M1's `block0` … `block7`; a timm
model's feature stages `stage0` … (`model.forward_intermediates`: the stem and stages of the CNNs, the
transformer blocks of the ViT); then, for every family, `penultimate` (what the classifier reads:
`forward_head(pre_logits=True)`, M1's pooled block 7) and `logits`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable

import torch
from torch import nn

from .m1 import BLOCK_LAYERS, M1
from .pretrained import timm_module

FAMILIES = ("m1", "resnet", "vit", "mobilenet")
SIZES = ("tiny", "small", "base")
M1_WIDTH = {"tiny": 1, "small": 1, "base": 2}
RESNET_CHANNELS = {"tiny": (8, 16, 32, 64), "small": (16, 32, 64, 128), "base": (32, 64, 128, 256)}
VIT = {"tiny": (32, 5, 2), "small": (48, 5, 3), "base": (96, 6, 4)}  # embedding, depth, heads
MOBILENET = {"tiny": (0.35, 64), "small": (0.5, 128), "base": (1.0, 256)}  # channel multiplier, head features
# MobileNetV3-Small's stage plan (timm's notation), the stem's stride kept: 32 px give 16, 8, 4, 4, 2 px stages.
MOBILENET_STAGES = (("ds_r1_k3_s1_e1_c16_se0.25_nre",), ("ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"),
                    ("ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"), ("ir_r2_k5_s1_e3_c48_se0.25",),
                    ("ir_r3_k5_s2_e6_c96_se0.25",))
DESCRIPTIONS = {
    "m1": "M1 (Kornblith et al. 2019 tiny CNN)",
    "resnet": "timm resnet10t (He et al. 2016 ResNet, one basic block per stage)",
    "vit": "timm VisionTransformer (Dosovitskiy et al. 2021), 4x4 patches",
    "mobilenet": "timm MobileNetV3 (Howard et al. 2019), Small stage plan",
}


def check_family(family: str, size: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown architecture family {family!r}; choose from {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")


def _mobilenet(size: str, in_chans: int, classes: int) -> nn.Module:
    timm = timm_module()
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import decode_arch_def, round_channels

    multiplier, head = MOBILENET[size]
    se = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
    return timm.models.mobilenetv3.MobileNetV3(
        decode_arch_def([list(s) for s in MOBILENET_STAGES]), num_classes=classes, in_chans=in_chans,
        num_features=head, stem_size=16, fix_stem=True, round_chs_fn=partial(round_channels, multiplier=multiplier),
        act_layer=nn.Hardswish, se_layer=se)


def _create(family: str, size: str, in_chans: int, classes: int) -> nn.Module:
    if family == "m1":
        return M1(M1_WIDTH[size], in_chans, classes)
    if family == "mobilenet":
        return _mobilenet(size, in_chans, classes)
    timm = timm_module()
    common: dict[str, Any] = {"pretrained": False, "in_chans": in_chans, "num_classes": classes}
    if family == "resnet":
        channels = RESNET_CHANNELS[size]
        return timm.create_model("resnet10t", channels=channels, stem_width=channels[0], **common)
    embed, depth, heads = VIT[size]
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=embed, depth=depth,
                             num_heads=heads, mlp_ratio=2.0, **common)


def create(family: str, size: str, seed: int, in_chans: int, classes: int) -> nn.Module:
    """A freshly initialised network of `family` at `size`, its weights drawn from `seed` alone (eval mode)."""
    check_family(family, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _create(family, size, in_chans, classes)
    return model.eval()


def layer_names(model: nn.Module) -> list[str]:
    """The named layers of a population network, input to output (module docstring)."""
    if isinstance(model, M1):
        return [*BLOCK_LAYERS, "penultimate", "logits"]
    return [*(f"stage{i}" for i in range(len(model.feature_info))), "penultimate", "logits"]


def forward_layers(model: nn.Module, x: torch.Tensor, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """{layer: output} of `model` on the batch `x` for `names` (default: every layer), from one forward pass."""
    if isinstance(model, M1):
        m1 = model.layers(x, [*BLOCK_LAYERS, "pooled", "logits"])
        out = {**{n: m1[n] for n in BLOCK_LAYERS}, "penultimate": m1["pooled"], "logits": m1["logits"]}
    else:
        final, stages = model.forward_intermediates(x)
        pre = model.forward_head(final, pre_logits=True)
        out = {f"stage{i}": s for i, s in enumerate(stages)}
        out.update(penultimate=pre, logits=model.get_classifier()(pre))
    wanted = list(names) if names is not None else list(out)
    unknown = [n for n in wanted if n not in out]
    if unknown:
        raise ValueError(f"{type(model).__name__} has no layer {unknown}; its layers are {', '.join(out)}")
    return {n: out[n] for n in wanted}
