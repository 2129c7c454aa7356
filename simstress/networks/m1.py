"""M1, the tiny CNN of Kornblith et al. 2019 used throughout Davari et al. 2023 (its "Kornblith tiny CNN").

Eight Conv → BatchNorm → ReLU blocks with valid padding, widths 16w, 16w, 32w (stride 2), 32w, 32w, 64w (stride 2),
64w, 64w (1×1), then global average pooling and a linear layer. On a 32×32 input the blocks output 30, 28, 13,
11, 9, 4, 2, 2 pixels a side. Convolutions carry no bias (the BatchNorm after each has one); weights are
Xavier-uniform, biases zero (the papers' pre-training recipe).

Named layers (`LAYERS`): `block0` … `block7`, the post-ReLU block outputs ("layers 0–7" of the papers' maps);
`pooled`, the 64w features the linear layer reads; `logits`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

BLOCKS = ((16, 3, 1), (16, 3, 1), (32, 3, 2), (32, 3, 1), (32, 3, 1), (64, 3, 2), (64, 3, 1), (64, 1, 1))
BLOCK_LAYERS = tuple(f"block{i}" for i in range(len(BLOCKS)))
LAYERS = (*BLOCK_LAYERS, "pooled", "logits")
INPUT_SIZE = 32
SPATIAL = (30, 28, 13, 11, 9, 4, 2, 2)  # block output sizes on a 32×32 input


class M1(nn.Module):
    """M1 with width multiplier `width`, `in_channels` input planes (1 for Fashion-MNIST) and `classes` outputs."""

    def __init__(self, width: int = 1, in_channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        self.width, self.in_channels, self.classes = width, in_channels, classes
        blocks, c = [], in_channels
        for out, k, stride in BLOCKS:
            blocks.append(nn.Sequential(nn.Conv2d(c, out * width, k, stride, padding=0, bias=False),
                                        nn.BatchNorm2d(out * width), nn.ReLU()))
            c = out * width
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def layers(self, x: torch.Tensor, names: Iterable[str] = LAYERS) -> dict[str, torch.Tensor]:
        """The requested named layers' outputs on `x`; computes only as deep as the deepest one asked for."""
        wanted = list(names)
        unknown = [n for n in wanted if n not in LAYERS]
        if unknown:
            raise ValueError(f"M1 has no layer {unknown}; its layers are {', '.join(LAYERS)}")
        depth = max(LAYERS.index(n) for n in wanted) if wanted else -1
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: min(depth, len(BLOCKS) - 1) + 1]):
            x = block(x)
            out[BLOCK_LAYERS[i]] = x
        if depth >= LAYERS.index("pooled"):
            out["pooled"] = x.mean(dim=(2, 3))
        if depth >= LAYERS.index("logits"):
            out["logits"] = self.fc(out["pooled"])
        return {n: out[n] for n in wanted}
