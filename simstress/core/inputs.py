"""Input validation and conversion shared by every metric entry: shapes, dtypes, values, labels, reductions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

if TYPE_CHECKING:  # the spec imports this module; validation needs only its fields
    from .metric import MetricSpec


Reduce = Literal["flatten", "avgpool", "mean_tokens"]


class InputError(ValueError):
    """Input a metric cannot score; the message says what is wrong and what to do."""


def reduce_activations(A: torch.Tensor, reduce: Reduce | None, which: str) -> torch.Tensor:
    """(n, p) passes through; (n, C, H, W) and (n, T, D) need an explicit reduction to (n, features)."""
    if A.ndim == 2:
        return A
    if A.ndim < 2:
        raise InputError(f"{which} must be 2-D (n samples, p features); got shape {tuple(A.shape)}. "
                         f"For a single feature use {which}.reshape(-1, 1)")
    if reduce is None:
        raise InputError(
            f"{which} has shape {tuple(A.shape)}; metrics take (n, p). Pass reduce='flatten' (all units), "
            f"reduce='avgpool' for (n, C, H, W) conv maps, or reduce='mean_tokens' for (n, T, D) sequences"
        )
    if reduce == "flatten":
        return A.reshape(A.shape[0], -1)
    if reduce == "avgpool":
        if A.ndim != 4:
            raise InputError(f"reduce='avgpool' needs (n, C, H, W); {which} has shape {tuple(A.shape)}")
        return A.mean(dim=(2, 3))
    if reduce == "mean_tokens":
        if A.ndim != 3:
            raise InputError(f"reduce='mean_tokens' needs (n, T, D); {which} has shape {tuple(A.shape)}")
        return A.mean(dim=1)
    raise InputError(f"unknown reduce={reduce!r}; use 'flatten', 'avgpool' or 'mean_tokens'")


def as_tensor(A: Any, which: str, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
              ) -> torch.Tensor:
    """numpy or torch in, floating torch tensor on `device` out; bool, complex and object arrays refused.

    With `dtype` (metrics.score), integers and floats are converted to it. Without (streaming batches), the input's
    own precision is the computation's: float32 and float64 pass as they are, float16, bfloat16 (and narrower
    floats) are widened to float32, since with 11 or 8 significant bits sums of squares over a batch would keep too
    few digits; integers are refused, since they name no precision.
    """
    if isinstance(A, np.ndarray):
        if A.dtype == object:
            raise InputError(f"{which} is a numpy array of dtype object; pass a numeric array")
        A = torch.from_numpy(np.ascontiguousarray(A))
    elif not isinstance(A, torch.Tensor):
        raise InputError(f"{which} must be a numpy array or a torch tensor, got {type(A).__name__}")
    if A.dtype == torch.bool:
        raise InputError(f"{which} is boolean; convert it to float explicitly if 0/1 features are meant")
    if A.is_complex():
        raise InputError(f"{which} is complex ({A.dtype}); similarity metrics need real features")
    if dtype is None:
        if not A.is_floating_point():
            raise InputError(f"{which} has dtype {A.dtype}; pass float32 or float64 activations")
        dtype = A.dtype if A.dtype in (torch.float32, torch.float64) else torch.float32
    elif not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating type such as torch.float64, got {dtype}")
    return A.to(device=device if device is not None else A.device, dtype=dtype)


def check_shapes(spec: MetricSpec, X: torch.Tensor, Y: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Checks that need no device sync: shapes, dtypes, sample count, labels. Run on every metric call."""
    for which, A in (("X", X), ("Y", Y)):
        if not isinstance(A, torch.Tensor):
            raise InputError(f"{which} must be a torch tensor here; use metrics.score() for numpy input")
        if A.ndim != 2:
            raise InputError(f"{which} must be 2-D (n, p); got shape {tuple(A.shape)}. "
                             f"metrics.score(..., reduce=...) reduces conv maps and token sequences")
        if not A.dtype.is_floating_point:
            raise InputError(f"{which} has dtype {A.dtype}; metrics need float32 or float64")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X and Y must hold the same inputs row by row; got {X.shape[0]} and {Y.shape[0]} rows")
    if X.shape[0] < spec.min_samples:
        raise InputError(f"{spec.name} needs at least {spec.min_samples} samples; got {X.shape[0]}")
    if spec.needs_labels:
        if labels is None:
            raise InputError(f"{spec.name} needs class labels: pass labels= (n,) integers")
        if labels.ndim != 1 or labels.shape[0] != X.shape[0]:
            raise InputError(f"labels must have shape ({X.shape[0]},) to match X; got {tuple(labels.shape)}")


def check_values(X: torch.Tensor, Y: torch.Tensor) -> None:
    """Checks that read the data (one sync each): finiteness and non-zero variance."""
    for which, A in (("X", X), ("Y", Y)):
        bad = ~torch.isfinite(A)
        if bool(bad.any()):
            n_nan = int(torch.isnan(A).sum())
            n_inf = int(bad.sum()) - n_nan
            raise InputError(f"{which} contains {n_nan} NaN and {n_inf} Inf values; remove or impute them first")
        if bool((A == A[:1]).all()):
            raise InputError(f"{which} has zero variance (all rows identical); similarity to it is undefined")


def as_labels(labels: Any, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    elif not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise InputError("labels must be integer class ids; got non-integer floats")
    elif labels.dtype == torch.bool or labels.is_complex():
        raise InputError(f"labels must be integer class ids; got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"labels must have shape ({n},) to match X; got {tuple(labels.shape)}")
    return labels.to(device=device, dtype=torch.int64)
