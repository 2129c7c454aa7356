"""Input validation and conversion shared by every metric entry: shapes, dtypes, values, labels, reductions.

One validation path: `metrics.score` converts (numpy or torch, device, dtype, reductions) and then calls the
`Metric`, whose `__call__` runs `validate` — so a direct call on tensors is checked exactly as `score` checks.

Precision rule (every metric, built-in or plugin): metrics compute in float32 or float64. A narrower float
(float16, bfloat16, float8), whether it is the input's dtype or the `dtype` asked of `score`, is computed in
float32: with 11 or 8 significant bits, sums of squares over n samples keep too few digits, and torch has no
half-precision QR or SVD. Inputs are widened, never refused, and the value comes back as a float32 tensor.
A pair of float32 and float64 is computed in float64. Integers are converted by `score` (its `dtype`); a
direct call, like a streaming batch, needs floats, since integers name no precision.

Input precision: the computation's dtype is not the precision of the numbers. float32 activations scored in
float64 (the default of `score`) hold only float32's 24 bits: their rounding is noise at the 1e-7 level, and a
metric that decides a rank (the CCA family) must not count it as signal. Each input's *input precision* is the
coarsest floating dtype its numbers passed through: its own dtype (narrow floats included) and the dtype it is
computed in (a cast down rounds; integers are exact, so theirs is the computed one). `score` and
`Metric.__call__` record it for the call (`recorded_precision`), and a metric reads it with `input_dtypes(X, Y)`;
a metric function called directly (a layer map, a streaming batch) sees each tensor's own dtype as its precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
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


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision a floating dtype is computed in: itself for float32 and float64, float32 for narrower floats."""
    return dtype if torch.finfo(dtype).bits >= 32 else torch.float32


def coarsest(*dtypes: torch.dtype) -> torch.dtype:
    """The floating dtype with the largest machine epsilon among `dtypes` (the least precise)."""
    return max(dtypes, key=lambda d: torch.finfo(d).eps)


def input_precision(source: torch.dtype, computed: torch.dtype) -> torch.dtype:
    """The precision of numbers of dtype `source` computed in `computed`: the coarser of the two (integers are
    exact, so only the computation's dtype counts for them)."""
    return coarsest(source, computed) if source.is_floating_point else computed


# (X, Y, precision of X, precision of Y) of the metric call in progress; see `input_dtypes`
_RECORDED: ContextVar[tuple[torch.Tensor, torch.Tensor, torch.dtype, torch.dtype] | None] = ContextVar(
    "simstress_input_precision", default=None)


@contextlib.contextmanager
def recorded_precision(X: torch.Tensor, Y: torch.Tensor, px: torch.dtype, py: torch.dtype) -> Iterator[None]:
    """Within the block, `input_dtypes(X, Y)` of these very tensors answers (px, py)."""
    token = _RECORDED.set((X, Y, px, py))
    try:
        yield
    finally:
        _RECORDED.reset(token)


def input_dtypes(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The input precision of X and of Y (module docstring): as recorded by `score` or `Metric.__call__` for these
    very tensors, otherwise (a metric function called directly) their own dtypes."""
    rec = _RECORDED.get()
    if rec is not None and rec[0] is X and rec[1] is Y:
        return rec[2], rec[3]
    return X.dtype, Y.dtype


def source_dtype(A: Any) -> torch.dtype:
    """The torch dtype of a numpy array or tensor as given, before any conversion."""
    if isinstance(A, torch.Tensor):
        return A.dtype
    return torch.from_numpy(np.empty(0, dtype=A.dtype)).dtype


def _numpy_to_torch(A: np.ndarray, which: str) -> torch.Tensor:
    """numpy → torch for the dtypes torch holds; strings, objects, dates and long doubles refused with a remedy."""
    kind = A.dtype.kind
    if kind in "USO":
        what = "strings" if kind in "US" else "Python objects"
        raise InputError(f"{which} is a numpy array of {what} (dtype {A.dtype}); pass numeric features, e.g. "
                         f"{which}.astype(np.float64) if they are numbers written as text")
    if kind in "mMV":
        what = {"m": "time deltas", "M": "datetimes", "V": "raw records"}[kind]
        raise InputError(f"{which} is a numpy array of {what} (dtype {A.dtype}); pass numeric features")
    if kind == "f" and A.dtype.itemsize > 8:
        raise InputError(f"{which} has dtype {A.dtype} (long double), which torch cannot hold; convert it with "
                         f"{which}.astype(np.float64)")
    return torch.from_numpy(np.ascontiguousarray(A))


def as_tensor(A: Any, which: str, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
              ) -> torch.Tensor:
    """numpy or torch in, floating torch tensor on `device` out; bool, complex, string and object arrays refused.

    With `dtype` (metrics.score), integers and floats are converted to `compute_dtype(dtype)`. Without (streaming
    batches), the input's own precision is the computation's: float32 and float64 pass as they are, narrower
    floats are widened to float32 (the precision rule above); integers are refused, since they name no precision.
    """
    if isinstance(A, np.ndarray):
        A = _numpy_to_torch(A, which)
    elif not isinstance(A, torch.Tensor):
        raise InputError(f"{which} must be a numpy array or a torch tensor, got {type(A).__name__}")
    if A.dtype == torch.bool:
        raise InputError(f"{which} is boolean; convert it to float explicitly if 0/1 features are meant")
    if A.is_complex():
        raise InputError(f"{which} is complex ({A.dtype}); similarity metrics need real features")
    if dtype is None:
        if not A.is_floating_point():
            raise InputError(f"{which} has dtype {A.dtype}; pass float32 or float64 activations")
        dtype = A.dtype
    elif not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating type such as torch.float64, got {dtype}")
    target = compute_dtype(dtype)
    if A.is_floating_point() and torch.finfo(A.dtype).max > torch.finfo(target).max:
        _check_fits(A, which, target)
    return A.to(device=device if device is not None else A.device, dtype=target)


def _check_fits(A: torch.Tensor, which: str, target: torch.dtype) -> None:
    """Refuse finite values beyond `target`'s range before a cast would turn them into Inf (reported then as Inf in
    the user's data, which it is not). NaN and Inf already there are left to `check_values`."""
    lo, hi = torch.aminmax(A)
    big = torch.maximum(-lo, hi)
    limit = torch.finfo(target).max
    if bool(torch.isfinite(big) & (big > limit)):
        raise InputError(f"{which} has values up to {float(big):.3g} in magnitude, beyond the largest {target} "
                         f"({limit:.3g}): they would overflow to Inf in the requested dtype. Score in "
                         f"{A.dtype} (dtype={A.dtype}) or rescale {which} first")


def available_devices() -> list[str]:
    """Devices this machine can compute on: cpu, then each CUDA device, then mps where present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(device: torch.device | str | None) -> torch.device | None:
    """`device` as a torch.device this machine has (None passes); unknown or absent devices name the available."""
    if device is None:
        return None
    available = available_devices()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; available: {', '.join(available)}") from None
    if dev.index is None:
        usable = any(name.split(":")[0] == dev.type for name in available)
    else:
        usable = dev.type == "cpu" or str(dev) in available
    if usable:
        return dev
    raise InputError(f"device {device!r} is not available here; available: {', '.join(available)}")


def check_shapes(spec: MetricSpec, X: torch.Tensor, Y: torch.Tensor) -> None:
    """Checks that need no device sync: types, shapes, dtypes, devices, sample count."""
    for which, A in (("X", X), ("Y", Y)):
        if not isinstance(A, torch.Tensor):
            raise InputError(f"{which} must be a torch tensor here; use metrics.score() for numpy input")
        if A.ndim != 2:
            raise InputError(f"{which} must be 2-D (n, p); got shape {tuple(A.shape)}. "
                             f"metrics.score(..., reduce=...) reduces conv maps and token sequences")
        if not A.dtype.is_floating_point:
            raise InputError(f"{which} has dtype {A.dtype}; metrics need float32 or float64")
        if A.shape[1] == 0:
            raise InputError(f"{which} has no features (shape {tuple(A.shape)}); pass at least one column")
    if X.device != Y.device:
        raise InputError(f"X is on {X.device} and Y on {Y.device}; move both to one device")
    if X.shape[0] != Y.shape[0]:
        raise InputError(f"X and Y must hold the same inputs row by row; got {X.shape[0]} and {Y.shape[0]} rows")
    if X.shape[0] < spec.min_samples:
        raise InputError(f"{spec.name} needs at least {spec.min_samples} samples; got {X.shape[0]}")


def check_values(X: torch.Tensor, Y: torch.Tensor) -> None:
    """Checks that read the data (one pass and a few syncs per input; more only when two of the first three rows
    are equal): finiteness, then variance.

    Refused: any NaN or Inf (counted); all rows identical (zero variance); and, for n ≥ 3, all rows but one
    identical, "a single distinct row". The centred representation is then c·(eᵢ − 1/n)vᵀ: it only marks sample
    i apart from the rest. Its linear kernel's off-diagonal part is additive, which U-centring removes, so
    debiased CKA is 0/0; most of the n² pairs are at distance 0, so the RBF median bandwidth is 0; every other
    sample's neighbours are all ties; other metrics would return a number about sample i alone.
    """
    for which, A in (("X", X), ("Y", Y)):
        lo, hi = torch.aminmax(A)  # NaN propagates, Inf shows: one pass without a mask
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            n_nan = int(torch.isnan(A).sum())
            n_inf = int(torch.isinf(A).sum())
            raise InputError(f"{which} contains {n_nan} NaN and {n_inf} Inf values; remove or impute them first")
        n = A.shape[0]
        if n >= 3 and bool((A[0] != A[1]).any() & (A[0] != A[2]).any() & (A[1] != A[2]).any()):
            continue  # both refusals need two equal rows among any three: O(p) instead of two passes over A
        differs = (A != A[:1]).any(dim=1)  # rows unlike row 0
        n_diff = int(differs.sum())
        if n_diff == 0:
            raise InputError(f"{which} has zero variance (all rows identical); similarity to it is undefined")
        if n < 3:
            continue
        if n_diff == 1:
            odd = int(differs.nonzero()[0, 0])
        elif n_diff == n - 1 and bool((A[2:] == A[1]).all()):
            odd = 0
        else:
            continue
        raise InputError(f"{which} has a single distinct row: all {n} rows but row {odd} are identical, so it only "
                         f"marks that sample apart from the rest and similarity to it is undefined (debiased CKA "
                         f"0/0, RBF median distance 0, neighbours all tied); check the features or drop the duplicates")


def as_labels(labels: Any, n: int, device: torch.device) -> torch.Tensor:
    """(n,) int64 class ids on `device` from integers (or integral floats) in numpy, torch or a list."""
    if not isinstance(labels, torch.Tensor):
        array = np.asarray(labels)
        if array.dtype.kind not in "iuf" or array.dtype.itemsize > 8:
            raise InputError(f"labels must be integer class ids; got dtype {array.dtype}. Map names to ids first, "
                             f"e.g. np.unique(labels, return_inverse=True)[1]")
        labels = torch.from_numpy(np.ascontiguousarray(array))
    if labels.is_floating_point():
        if not bool((labels == labels.round()).all()):
            raise InputError("labels must be integer class ids; got non-integer floats")
    elif labels.dtype == torch.bool or labels.is_complex():
        raise InputError(f"labels must be integer class ids; got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"labels must have shape ({n},) to match X; got {tuple(labels.shape)}")
    return labels.to(device=device, dtype=torch.int64)


def validate(spec: MetricSpec, X: torch.Tensor, Y: torch.Tensor, labels: Any,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Everything a metric may assume, for `Metric.__call__` (and so for `score`): the (X, Y, labels) to compute on.

    Torch tensors, 2-D, floating, on one device, the same rows, at least `spec.min_samples`; computed in one
    precision (the rule above: narrow floats widened to float32, a float32/float64 pair in float64, otherwise
    untouched, so autograd and tensor identity are kept); labels as (n,) int64 when given (required when the
    metric needs them); finite, with variance, and not a single distinct row (`check_values`).
    """
    check_shapes(spec, X, Y)
    dtype = compute_dtype(torch.promote_types(X.dtype, Y.dtype))
    X, Y = X.to(dtype), Y.to(dtype)
    if labels is not None:
        labels = as_labels(labels, X.shape[0], X.device)
    elif spec.needs_labels:
        raise InputError(f"{spec.name} needs class labels: pass labels= (n,) integers")
    check_values(X, Y)
    return X, Y, labels
