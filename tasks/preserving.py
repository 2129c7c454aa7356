"""Changes that keep a read-out's function, shared by the tasks that make them: translations of row groups along a
direction the read-out ignores (Davari et al. 2023, Theorem 1 and Corollaries 3–4), and the checks that a
network's logits did not move.

A `Translation` is one representation X and the row groups translated one at a time along `direction` over a
sweep; `translation_cases` turns a task's translations into its cases, in curve order, each case carrying the
exact finite-c linear CKA of Theorem 1 (`theory_columns`) so that the page can draw it beside the metrics; a
`TranslationTask` scores them (every such task is a robustness task: the ideal similarity stays 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pandas as pd
import torch

from simstress.core.scoring import mean_clipped
from simstress.core.task import Case, Setup, Task
from simstress.core.theory import theorem1_cka

# Relative change of a network's logits that an exact function-preserving change may cause: rounding only (float32
# forward passes of real models move them by ~2e-6); a construction that is not function-preserving moves them by
# orders of magnitude more, and changes predictions, which are checked as well.
LOGIT_TOLERANCE = 1e-4


def translate(X: torch.Tensor, rows: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """A copy of X with `shift` (p,) added to the rows selected by the boolean mask `rows`."""
    return X + rows[:, None].to(X.dtype) * shift[None, :]


def theory_columns(X: torch.Tensor, rows: torch.Tensor, v: torch.Tensor, shifts: list[float]) -> list[dict[str, Any]]:
    """The exact finite-c linear CKA of Theorem 1 for each shift, as the curve's `linear_cka_theory` column."""
    return [{"linear_cka_theory": t} for t in theorem1_cka(X, rows, v, shifts)]


@dataclass
class Translation:
    """One representation X and the row groups to translate along `direction` over the sweep.

    `shifts` are the absolute c of each sweep value x; `truth[g][i]` the ground-truth columns of group g at sweep
    index i. A task with several translations names each by `variant` (a curve column, and the reference's key).
    """

    X: torch.Tensor
    groups: list[torch.Tensor]  # boolean row masks
    direction: torch.Tensor  # unit (p,)
    sweep: list[float]
    shifts: list[float]
    truth: list[list[dict[str, Any]]]
    variant: str | None = None


@dataclass
class TranslationSetup(Setup):
    parts: list[Translation]


def translation_cases(parts: list[Translation]) -> Iterator[Case]:
    for part in parts:
        tag = {} if part.variant is None else {"variant": part.variant}
        for rows, truths in zip(part.groups, part.truth):
            for x, c, truth in zip(part.sweep, part.shifts, truths):
                yield Case(x=x, reference=part.X, other=translate(part.X, rows, c * part.direction),
                           ref_key=0 if part.variant is None else part.variant, truth={**tag, "c": c, **truth})


class TranslationTask(Task):
    """A task whose set-up is a `TranslationSetup`: its cases are the translations, its score the mean over them of
    clip(similarity, 0, 1) (the ideal metric stays at 1)."""

    def cases(self, setup: TranslationSetup) -> Iterator[Case]:
        return translation_cases(setup.parts)

    def score(self, curve: pd.DataFrame, setup: TranslationSetup) -> float:
        return mean_clipped(curve["similarity"])


def head_nullspace_direction(weight: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random unit vector v (float64) with weight·v = 0: the linear head reads nothing along it."""
    W = weight.detach().cpu().to(torch.float64)
    if W.shape[1] <= W.shape[0]:
        raise ValueError(f"a {tuple(W.shape)} head has no null space: it needs more features than classes")
    Q, _ = torch.linalg.qr(W.T, mode="reduced")  # (p, C) orthonormal basis of the head's row space
    z = torch.randn(W.shape[1], generator=g, dtype=torch.float64)
    v = z - Q @ (Q.T @ z)
    v = v - Q @ (Q.T @ v)  # a second pass: orthogonal to rounding
    return v / v.norm()


def head_logits(head: torch.nn.Linear, pooled: torch.Tensor) -> torch.Tensor:
    """The network's own linear layer applied in float64 to pooled features."""
    W, b = head.weight.detach().to(pooled), head.bias.detach().to(pooled)
    return pooled @ W.T + b


def output_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """The largest change of the outputs, divided by max(1, their largest magnitude before)."""
    return float((after - before).abs().max() / before.abs().max().clamp_min(1.0))


def check_logits(head: torch.nn.Linear, X: torch.Tensor, Y: torch.Tensor, what: str) -> float:
    """`output_change` of the logits of the linear layer `head` from features X to Y; raises beyond
    LOGIT_TOLERANCE or when any prediction changes."""
    before, after = head_logits(head, X), head_logits(head, Y)
    change = output_change(before, after)
    changed = int((after.argmax(1) != before.argmax(1)).sum())
    if change > LOGIT_TOLERANCE or changed:
        raise RuntimeError(f"{what}: the network's logits moved by {change:.3g} (relative) and {changed} predictions "
                           f"changed under a null-space translation; the construction is broken")
    return change
