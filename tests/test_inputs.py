"""`metrics.score` validation: every bad input gets a clear error, nothing silently wrong."""

import numpy as np
import pytest
import torch

from simstress import metrics
from simstress.core.inputs import as_tensor, coarsest, input_dtypes, input_precision
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


# ------------------------------------------------------------------ "Trust every number", item 9: clear errors
@pytest.mark.parametrize(("array", "match"), [
    (np.array([["a", "b"]] * 50), "strings"),
    (np.ones((50, 2), dtype=np.longdouble), "long double"),
    (np.array([[np.datetime64("2020-01-01")] * 2] * 50), "datetime"),
])
def test_strings_longdouble_and_other_numpy_dtypes_are_refused_clearly(array: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        metrics.score("linear_cka", array, Y)


@pytest.mark.parametrize("labels", [np.array(["cat", "dog"] * 25), ["cat", "dog"] * 25,
                                    np.arange(50, dtype=np.longdouble) % 2, np.array([object()] * 50)])
def test_string_and_odd_labels_are_refused_clearly(labels) -> None:
    with pytest.raises(InputError, match="labels must be integer class ids"):
        metrics.score("probe_accuracy", X, Y, labels=labels)


def test_unknown_or_unavailable_devices_name_the_available_ones() -> None:
    with pytest.raises(InputError, match=r"unknown device 'gpu'.*available: cpu"):
        metrics.score("linear_cka", X, Y, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"device 'cuda' is not available here.*available: cpu"):
            metrics.score("linear_cka", X, Y, device="cuda")
    with pytest.raises(InputError, match=r"device 'meta' is not available here"):
        metrics.score("linear_cka", X, Y, device="meta")
    assert metrics.score("linear_cka", X, Y, device="cpu") == metrics.score("linear_cka", X, Y)


def test_direct_calls_validate_values_like_score() -> None:
    """One validation path: a Metric called on tensors refuses what score refuses."""
    m = metrics.get_metric("linear_cka_debiased")
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    bad = Xt.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError, match="X contains 1 NaN"):
        m(bad, Yt)
    with pytest.raises(InputError, match="Y has zero variance"):
        m(Xt, torch.ones(50, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="needs class labels"):
        metrics.get_metric("probe_accuracy")(Xt, Yt)
    with pytest.raises(InputError, match="integer class ids"):
        metrics.get_metric("probe_accuracy")(Xt, Yt, labels=torch.linspace(0, 1, 50))
    with pytest.raises(InputError, match="labels must have shape \\(50,\\)"):
        metrics.get_metric("probe_accuracy")(Xt, Yt, labels=torch.zeros(49, dtype=torch.int64))


def test_a_single_distinct_row_is_refused_on_both_paths() -> None:
    """All rows but one identical: the centred representation only marks that sample (debiased CKA is 0/0, the
    RBF median distance 0); refused by every metric, through score and direct calls alike."""
    one = np.repeat(X[:1], 50, axis=0)
    one[17] = X[17]
    for metric_id in metrics.list_metrics(calibration=""):
        with pytest.raises(InputError, match="X has a single distinct row"):
            metrics.score(metric_id, one, Y, labels=np.arange(50) % 2)
        with pytest.raises(InputError, match="Y has a single distinct row"):
            metrics.get_metric(metric_id)(torch.from_numpy(Y), torch.from_numpy(one), labels=torch.arange(50) % 2)
    first = np.repeat(X[1:2], 50, axis=0)
    first[0] = X[0]  # the odd one out is the first row
    with pytest.raises(InputError, match="single distinct row"):
        metrics.score("linear_cka", first, Y)


@pytest.mark.parametrize("odd", [0, 1, 2, 3, 49])
def test_the_odd_row_is_found_wherever_it_sits(odd: int) -> None:
    """The variance checks skip their passes over the data when the first three rows differ pairwise; an odd row
    among them (or past them) must still be refused, and so must all rows identical."""
    one = np.repeat(X[5:6], 50, axis=0)
    one[odd] = X[odd]
    with pytest.raises(InputError, match=f"X has a single distinct row: all 50 rows but row {odd} are identical"):
        metrics.score("procrustes", one, Y)
    with pytest.raises(InputError, match="zero variance"):
        metrics.score("procrustes", np.repeat(X[5:6], 50, axis=0), Y)
    assert 0 < metrics.score("procrustes", np.concatenate([one[:3], X[3:]]), Y) <= 1


@pytest.mark.parametrize("metric_id", metrics.list_metrics(calibration=""))
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(metric_id: str, half: torch.dtype) -> None:
    """The precision rule: narrower floats are computed in float32, by score and by direct calls alike, and keep
    their own precision as input precision (a float32 copy of the same numbers is float32 data)."""
    Xh, Yh = torch.from_numpy(X).to(half), torch.from_numpy(Y).to(half)
    labels = torch.arange(50) % 2
    ref = metrics.score(metric_id, Xh, Yh, labels=labels, dtype=torch.float32)
    direct = metrics.get_metric(metric_id)(Xh, Yh, labels=labels)
    assert direct.dtype == torch.float32 and float(direct) == ref
    assert metrics.score(metric_id, Xh, Yh, labels=labels, dtype=half) == ref
    widened = metrics.score(metric_id, Xh.float(), Yh.float(), labels=labels, dtype=torch.float32)
    assert metrics.score(metric_id, Xh.float(), Yh.float(), labels=labels, dtype=half) == widened


def test_direct_calls_promote_a_mixed_precision_pair() -> None:
    m = metrics.get_metric("procrustes")
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    assert float(m(Xt.float(), Yt)) == float(m(Xt.float().double(), Yt))


# ------------------------------------------------- issue 22, items 2 and 7: the input's precision, casts that overflow
def test_input_precision_travels_from_score_and_direct_calls_to_the_metric() -> None:
    """The dtype the numbers came in reaches the metric (`input_dtypes`), coarsened to the dtype it is computed in;
    a metric function called directly sees each tensor's own dtype."""
    seen = []

    def spy(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """Records the input precisions it is given."""
        seen.append(input_dtypes(A, B))
        return torch.zeros((), dtype=A.dtype)

    metrics.register(name="test_precision_spy", cost="O(1)", reference="test only")(spy)
    try:
        m = metrics.get_metric("test_precision_spy")
        f32, f64 = X.astype(np.float32), torch.from_numpy(Y)
        metrics.score(m.id, f32, f64)  # default float64 computation of float32 numbers
        metrics.score(m.id, X, Y, dtype=torch.float32)  # float64 numbers rounded to float32
        metrics.score(m.id, X.astype(np.int64), Y.astype(np.float16))  # integers are exact; float16 is float16
        m(torch.from_numpy(f32), f64)  # a direct call: a mixed pair computed in float64
        m(f64.to(torch.bfloat16), f64.to(torch.bfloat16))  # widened to float32, still bfloat16 numbers
        spy(f64.float(), f64)  # the function itself, no Metric around it
    finally:
        metrics.REGISTRY.remove("test_precision_spy")
    assert seen == [(torch.float32, torch.float64), (torch.float32, torch.float32), (torch.float64, torch.float16),
                    (torch.float32, torch.float64), (torch.bfloat16, torch.bfloat16), (torch.float32, torch.float64)]


def test_input_precision_is_the_coarsest_dtype_the_numbers_passed_through() -> None:
    assert input_precision(torch.float32, torch.float64) == torch.float32
    assert input_precision(torch.float64, torch.float32) == torch.float32
    assert input_precision(torch.float16, torch.float32) == torch.float16
    assert input_precision(torch.int64, torch.float64) == torch.float64
    assert coarsest(torch.float64, torch.bfloat16, torch.float16) == torch.bfloat16


def test_a_cast_that_overflows_the_requested_dtype_says_so() -> None:
    """float64 data beyond float32's range scored in float32 used to be reported as "Inf values" in the data."""
    big = X * 1e39
    with pytest.raises(InputError, match=r"X has values up to 3.11e\+39 .* beyond the largest torch.float32 .* "
                                         r"overflow to Inf in the requested dtype. Score in torch.float64"):
        metrics.score("linear_cka", big, Y, dtype=torch.float32)
    assert metrics.score("linear_cka", big, Y) == pytest.approx(metrics.score("linear_cka", X, Y), abs=1e-12)
    bad = big.copy()
    bad[0, 0] = np.inf  # an Inf that is really in the data is still reported as such
    with pytest.raises(InputError, match="X contains 0 NaN and 1 Inf"):
        metrics.score("linear_cka", bad, Y)
