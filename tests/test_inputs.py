"""`metrics.score` validation: every bad input gets a clear error, nothing silently wrong."""

import numpy as np
import pytest
import torch

from simstress import metrics
from simstress.core.inputs import as_tensor
from simstress.metrics import InputError

rng = np.random.default_rng(0)
X = rng.normal(size=(50, 6))
Y = X @ rng.normal(size=(6, 4)) + 0.1 * rng.normal(size=(50, 4))


def test_numpy_and_torch_give_the_same_float() -> None:
    a = metrics.score("linear_cka", X, Y)
    b = metrics.score("linear_cka", torch.from_numpy(X), torch.from_numpy(Y))
    assert isinstance(a, float) and a == b
    assert abs(metrics.score("linear_cka", X, Y, dtype=torch.float32) - a) < 1e-5


def test_mismatched_rows() -> None:
    with pytest.raises(InputError, match="same inputs row by row; got 50 and 49"):
        metrics.score("linear_cka", X, Y[:-1])


def test_not_2d_needs_an_explicit_reduction() -> None:
    conv = rng.normal(size=(50, 3, 4, 4))
    with pytest.raises(InputError, match="reduce='flatten'"):
        metrics.score("linear_cka", conv, Y)
    with pytest.raises(InputError, match="reshape"):
        metrics.score("linear_cka", X[:, 0], Y)
    flat = metrics.score("linear_cka", conv, Y, reduce="flatten")
    assert abs(flat - metrics.score("linear_cka", conv.reshape(50, -1), Y)) < 1e-15
    pooled = metrics.score("linear_cka", conv, Y, reduce="avgpool")
    assert abs(pooled - metrics.score("linear_cka", conv.mean(axis=(2, 3)), Y)) < 1e-15
    tokens = rng.normal(size=(50, 7, 5))
    assert abs(metrics.score("linear_cka", tokens, Y, reduce="mean_tokens")
               - metrics.score("linear_cka", tokens.mean(axis=1), Y)) < 1e-15
    with pytest.raises(InputError, match="needs \\(n, C, H, W\\)"):
        metrics.score("linear_cka", tokens, Y, reduce="avgpool")


def test_nan_and_inf_are_counted_per_input() -> None:
    bad = Y.copy()
    bad[0, 0], bad[1, 1], bad[2, 2] = np.nan, np.nan, np.inf
    with pytest.raises(InputError, match="Y contains 2 NaN and 1 Inf"):
        metrics.score("linear_cka", X, bad)


def test_too_few_samples() -> None:
    with pytest.raises(InputError, match="at least 4 samples; got 3"):
        metrics.score("linear_cka_debiased", X[:3], Y[:3])


def test_zero_variance() -> None:
    with pytest.raises(InputError, match="X has zero variance"):
        metrics.score("linear_cka", np.ones((50, 3)), Y)


def test_dtypes() -> None:
    with pytest.raises(InputError, match="boolean"):
        metrics.score("linear_cka", X > 0, Y)
    with pytest.raises(InputError, match="complex"):
        metrics.score("linear_cka", X.astype(np.complex128), Y)
    with pytest.raises(InputError, match="numpy array or a torch tensor"):
        metrics.score("linear_cka", X.tolist(), Y)
    ints = rng.integers(0, 5, size=(50, 6))
    assert abs(metrics.score("linear_cka", ints, Y) - metrics.score("linear_cka", ints.astype(float), Y)) < 1e-15


def test_as_tensor_without_dtype_keeps_precision_and_widens_half() -> None:
    t = torch.from_numpy(X)
    assert as_tensor(t, "X").dtype == torch.float64 and as_tensor(t.float(), "X").dtype == torch.float32
    for half in (torch.float16, torch.bfloat16):
        assert as_tensor(t.to(half), "X").dtype == torch.float32
    assert as_tensor(X.astype(np.float16), "X").dtype == torch.float32
    with pytest.raises(InputError, match="has dtype torch.int64; pass float32 or float64"):
        as_tensor(t.long(), "X")
    assert as_tensor(t.long(), "X", torch.float64).dtype == torch.float64


def test_labels_missing_or_wrong() -> None:
    with pytest.raises(InputError, match="needs class labels"):
        metrics.score("probe_accuracy", X, Y)
    with pytest.raises(InputError, match="labels must have shape \\(50,\\)"):
        metrics.score("probe_accuracy", X, Y, labels=np.zeros(49, dtype=int))
    with pytest.raises(InputError, match="integer class ids"):
        metrics.score("probe_accuracy", X, Y, labels=np.linspace(0, 1, 50))


def test_direct_calls_check_shapes_without_syncing() -> None:
    m = metrics.get_metric("linear_cka")
    with pytest.raises(InputError, match="2-D"):
        m(torch.zeros(5, 2, 2), torch.zeros(5, 2))
    with pytest.raises(InputError, match="dtype torch.int64"):
        m(torch.zeros(5, 2, dtype=torch.int64), torch.zeros(5, 2))
