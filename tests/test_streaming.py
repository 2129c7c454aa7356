"""Streaming estimators: exact moments == full batch, minibatch HSIC against its definition, layer maps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from torch.utils.data import DataLoader, TensorDataset

import simstress
from simstress import metrics, streaming
from simstress.metrics import InputError

from .references import u_statistic_hsic

EXACT_IDS = ["linear_cka", "procrustes", "cca_mean", "cca_r2", "svcca", "svcca[keep=0.9]", "pwcca"]


def pair(n: int, p1: int, p2: int, seed: int = 0, latent: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of a shared latent, with large offsets (the merge must not cancel them) and float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = {"generator": g, "dtype": torch.float64}
    Z = torch.randn(n, latent, **f64)
    X = Z @ torch.randn(latent, p1, **f64) / latent**0.5 + torch.randn(n, p1, **f64) + 1e3
    Y = torch.tanh(Z @ torch.randn(latent, p2, **f64) / latent**0.5) + 0.7 * torch.randn(n, p2, **f64) - 40.0
    return X, Y


def uneven_batches(X: torch.Tensor, Y: torch.Tensor, seed: int = 0):
    """Batches of random sizes, including single rows, as a generator (nothing stacked)."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < X.shape[0]:
        m = int(rng.choice([1, 3, 17, 64, 200]))
        yield X[i:i + m], Y[i:i + m]
        i += m


@pytest.mark.parametrize("metric_id", EXACT_IDS)
def test_streaming_equals_full_batch_float64(metric_id: str) -> None:
    X, Y = pair(1500, 24, 13)
    full = metrics.score(metric_id, X, Y)
    assert abs(streaming.score(metric_id, uneven_batches(X, Y)) - full) < 1e-10
    loader = DataLoader(TensorDataset(X, Y), batch_size=256)
    assert abs(streaming.score(metric_id, loader) - full) < 1e-10


def test_streaming_accepts_numpy_and_float32_batches() -> None:
    X, Y = pair(2000, 16, 16, seed=1)
    full = metrics.score("linear_cka", X, Y)
    batches = ((X[i:i + 500].numpy(), Y[i:i + 500].numpy()) for i in range(0, 2000, 500))
    assert abs(streaming.score("linear_cka", batches) - full) < 1e-10
    batches32 = ((X[i:i + 500].float(), Y[i:i + 500].float()) for i in range(0, 2000, 500))
    assert abs(streaming.score("procrustes", batches32) - metrics.score("procrustes", X, Y)) < 1e-5


def test_half_precision_batches_are_widened_and_other_dtypes_refused() -> None:
    X, Y = pair(400, 6, 5, seed=10)
    mom = streaming.LinearMoments()
    for i in range(0, 400, 100):
        mom.update(X[i:i + 100].numpy().astype(np.float16), Y[i:i + 100].to(torch.bfloat16))
    assert mom.dtype == torch.float32 and mom.xy.dtype == torch.float64
    expected = metrics.score("linear_cka", X.half().double(), Y.to(torch.bfloat16).double())
    assert abs(float(mom.linear_cka()) - expected) < 1e-5
    with pytest.raises(InputError, match="boolean"):
        streaming.score("linear_cka", [(X > 0, Y)])
    with pytest.raises(InputError, match="complex"):
        streaming.minibatch_cka([(X.numpy().astype(np.complex128), Y)])
    with pytest.raises(InputError, match="numpy array or a torch tensor"):
        streaming.cka_map([([X.tolist()], [Y])])


def test_moments_equal_centred_products() -> None:
    X, Y = pair(700, 9, 5, seed=2)
    mom = streaming.LinearMoments()
    for Xb, Yb in uneven_batches(X, Y, seed=3):
        mom.update(Xb, Yb)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    assert mom.n == 700
    torch.testing.assert_close(mom.mean_x, X.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(mom.xx[0], Xc.T @ Xc, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mom.yy[0], Yc.T @ Yc, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(mom.xy, Xc.T @ Yc, rtol=1e-12, atol=1e-9)


def test_memory_is_independent_of_n() -> None:
    """The state after 1e3 and after 1e5 rows, streamed from a generator, has the same tensors and sizes."""

    def generated(n: int, m: int):
        g = torch.Generator().manual_seed(0)
        for _ in range(0, n, m):
            yield torch.randn(m, 32, generator=g), torch.randn(m, 20, generator=g)

    def state_bytes(mom: streaming.LinearMoments) -> list[int]:
        tensors = [mom.mean_x, mom.mean_y, mom.xy, *mom.xx, *mom.yy]
        return [t.numel() * t.element_size() for t in tensors]

    small, large = streaming.LinearMoments(), streaming.LinearMoments()
    for Xb, Yb in generated(1_000, 1_000):
        small.update(Xb, Yb)
    for Xb, Yb in generated(100_000, 5_000):
        large.update(Xb, Yb)
    assert large.n == 100 * small.n
    assert state_bytes(small) == state_bytes(large) == [32 * 8, 20 * 8, 32 * 20 * 8, 32 * 32 * 8, 20 * 20 * 8]
    assert 0.0 < float(large.linear_cka()) < 0.05  # independent streams: near-zero CKA at n = 1e5


def test_minibatch_linear_matches_definition_and_debiased_cka() -> None:
    X, Y = pair(120, 7, 9, seed=4)
    X, Y = X - 999.0, Y + 39.0  # modest offsets: the raw-kernel reference cancels badly under 1e3
    x, y = X.numpy(), Y.numpy()
    hs = [[u_statistic_hsic(A[i:i + 40] @ A[i:i + 40].T, B[i:i + 40] @ B[i:i + 40].T) for i in (0, 40, 80)]
          for A, B in ((x, y), (x, x), (y, y))]
    expected = sum(hs[0]) / np.sqrt(sum(hs[1]) * sum(hs[2]))
    batches = [(X[i:i + 40], Y[i:i + 40]) for i in (0, 40, 80)]
    assert abs(streaming.minibatch_cka(batches) - expected) < 1e-10
    assert abs(streaming.minibatch_cka([(X, Y)]) - metrics.score("linear_cka_debiased", X, Y)) < 1e-10


def test_minibatch_rbf_matches_definition() -> None:
    """RBF kernels with the first batch's median squared distance (zero diagonal included), held fixed."""
    X, Y = pair(90, 5, 6, seed=5)
    x, y, sigma = X.numpy(), Y.numpy(), 0.7
    scale = {id(a): np.median(cdist(a[:30], a[:30], "sqeuclidean")) for a in (x, y)}

    def k(a: np.ndarray, rows: slice) -> np.ndarray:
        return np.exp(-cdist(a[rows], a[rows], "sqeuclidean") / (2 * sigma**2 * scale[id(a)]))

    parts = [slice(0, 30), slice(30, 60), slice(60, 90)]
    kl = sum(u_statistic_hsic(k(x, s), k(y, s)) for s in parts)
    kk = sum(u_statistic_hsic(k(x, s), k(x, s)) for s in parts)
    ll = sum(u_statistic_hsic(k(y, s), k(y, s)) for s in parts)
    got = streaming.minibatch_cka([(X[s], Y[s]) for s in parts], kernel="rbf", sigma=sigma)
    assert abs(got - kl / np.sqrt(kk * ll)) < 1e-10


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_deviation_shrinks_with_batch_size(kernel: str) -> None:
    """Mean |CKA_mb − full-batch debiased CKA| over shuffles, m = 16 … 1024 of n = 2048; 0 at m = n."""
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(2048, 8, generator=g, dtype=torch.float64)
    X = Z @ torch.randn(8, 128, generator=g, dtype=torch.float64) / 8**0.5 + torch.randn(2048, 128, generator=g,
                                                                                          dtype=torch.float64)
    Y = torch.tanh(Z @ torch.randn(8, 128, generator=g, dtype=torch.float64) / 8**0.5) + torch.randn(
        2048, 128, generator=g, dtype=torch.float64)
    full = streaming.minibatch_cka([(X, Y)], kernel=kernel)
    if kernel == "linear":
        assert abs(full - metrics.score("linear_cka_debiased", X, Y)) < 1e-10
    devs = []
    for m in (16, 64, 256, 1024):
        d = []
        for s in range(8):
            perm = torch.randperm(2048, generator=torch.Generator().manual_seed(s))
            Xp, Yp = X[perm], Y[perm]
            d.append(abs(streaming.minibatch_cka([(Xp[i:i + m], Yp[i:i + m]) for i in range(0, 2048, m)],
                                                 kernel=kernel) - full))
        devs.append(float(np.mean(d)))
    assert all(a > b for a, b in itertools.pairwise(devs)), devs
    assert devs[0] > 5 * devs[-1], devs
    assert devs[0] < 0.05, devs  # an estimator, not noise


def test_cka_map_exact_equals_linear_cka_per_pair() -> None:
    X, Y = pair(800, 30, 12, seed=6)
    layers_a = [X[:, :10], X[:, 10:], torch.relu(X - 1e3)]
    layers_b = [Y, Y[:, :4], (Y[:, :, None] * torch.ones(1, 1, 3, dtype=torch.float64))]  # (n, 12, 3): reduced
    batches = [([a[i:i + 128] for a in layers_a], [b[i:i + 128] for b in layers_b]) for i in range(0, 800, 128)]
    got = streaming.cka_map(batches, reduce="flatten")
    flat_b = [b.reshape(800, -1) for b in layers_b]
    expected = torch.tensor([[metrics.score("linear_cka", a, b) for b in flat_b] for a in layers_a],
                            dtype=torch.float64)
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_cka_map_keeps_one_self_term_per_layer() -> None:
    X, Y = pair(300, 12, 8, seed=7)
    mom = streaming.LinearMoments(x_blocks=[5, 7], y_blocks=[8])
    mom.update(X, Y)
    assert [tuple(M.shape) for M in mom.xx] == [(5, 5), (7, 7)] and [tuple(M.shape) for M in mom.yy] == [(8, 8)]


def test_cka_map_minibatch_equals_minibatch_cka_per_pair() -> None:
    X, Y = pair(400, 10, 6, seed=8)
    layers_a, layers_b = [X, X[:, :3]], [Y, torch.tanh(Y + 40.0)]
    batches = [([a[i:i + 100] for a in layers_a], [b[i:i + 100] for b in layers_b]) for i in range(0, 400, 100)]
    for kernel in ("linear", "rbf"):
        got = streaming.cka_map(batches, estimator="minibatch", kernel=kernel)
        for i, a in enumerate(layers_a):
            for j, b in enumerate(layers_b):
                ref = streaming.minibatch_cka([(a[k:k + 100], b[k:k + 100]) for k in range(0, 400, 100)],
                                              kernel=kernel)
                assert abs(float(got[i, j]) - ref) < 1e-12


def test_clear_errors() -> None:
    X, Y = pair(50, 4, 3)
    with pytest.raises(InputError, match="minibatch_cka"):
        streaming.score("rbf_cka", [(X, Y)])
    with pytest.raises(InputError, match="same inputs"):
        streaming.score("linear_cka", [(X, Y[:40])])
    with pytest.raises(InputError, match="feature counts changed"):
        streaming.score("linear_cka", [(X[:25], Y[:25]), (X[25:, :3], Y[25:])])
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        streaming.score("linear_cka", [(bad, Y)])
    with pytest.raises(InputError, match="drop_last"):
        streaming.minibatch_cka([(X[:48], Y[:48]), (X[48:], Y[48:])])
    with pytest.raises(InputError, match="integer|dtype"):
        streaming.score("linear_cka", [(X.long(), Y)])
    with pytest.raises(InputError, match="rank"):
        streaming.score("cca_mean", [(torch.randn(20, 30, dtype=torch.float64), Y[:20])])


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "pwcca"])
def test_streaming_cca_with_rank_deficient_features(metric_id: str) -> None:
    """Dead units and duplicated features: the eigen route drops them as the full-batch SVD route does."""
    X, Y = pair(900, 10, 6, seed=9)
    X = torch.cat([X, X[:, :2], torch.zeros(900, 1, dtype=torch.float64)], dim=1)
    full = metrics.score(metric_id, X, Y)
    assert abs(streaming.score(metric_id, uneven_batches(X, Y)) - full) < 1e-9


# ------------------------------------------------------------------------------ validation like metrics.score
def row_slices(sizes: list[int]) -> list[slice]:
    return [slice(a, b) for a, b in itertools.pairwise(itertools.accumulate(sizes, initial=0))]


def split(X: torch.Tensor, Y: torch.Tensor, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(X[s], Y[s]) for s in row_slices(sizes)]


# every streaming estimator as a function of (X, Y) batches; the maps take X and Y as one layer each
ESTIMATORS: dict[str, Callable[[list], object]] = {
    **{mid: (lambda b, mid=mid: streaming.score(mid, b)) for mid in EXACT_IDS},
    "minibatch_linear": lambda b: streaming.minibatch_cka(b),
    "minibatch_rbf": lambda b: streaming.minibatch_cka(b, kernel="rbf"),
    "map_exact": lambda b: streaming.cka_map([([x], [y]) for x, y in b]),
    "map_minibatch": lambda b: streaming.cka_map([([x], [y]) for x, y in b], estimator="minibatch", kernel="rbf"),
}


def side_name(kind: str, side: str) -> str:
    """How the error names X or Y: the maps call them layer 0 of A and of B."""
    return f"layer 0 of {'AB'[side == 'Y']}" if kind.startswith("map") else side


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(1, 30), min_size=1, max_size=8),
       p1=st.integers(1, 5), p2=st.integers(1, 5), cut=st.integers(1, 4))
def test_any_batch_split_equals_full_batch(seed: int, sizes: list[int], p1: int, p2: int, cut: int) -> None:
    n = sum(sizes)
    assume(n >= max(p1, p2) + 3)  # CCA needs rank < n − 1
    X, Y = pair(n, p1, p2, seed=seed, latent=2)
    batches = split(X, Y, sizes)
    for metric_id in ("linear_cka", "procrustes", "cca_mean", "pwcca"):
        assert abs(streaming.score(metric_id, batches) - metrics.score(metric_id, X, Y)) < 1e-9, metric_id
    k = min(cut, p1 - 1) or p1  # X's columns as two layers where it has two columns
    layers = [X[:, :k], X[:, k:]] if k < p1 else [X]
    got = streaming.cka_map([([a[s] for a in layers], [Y[s]]) for s in row_slices(sizes)])
    expected = torch.tensor([[metrics.score("linear_cka", a, Y)] for a in layers], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_rows_constant_within_each_batch_but_not_overall_are_scored() -> None:
    """Exact moments see the variance between batches; the minibatch estimator sees none and says so."""
    X, Y = pair(60, 3, 2, seed=11)
    X = X[::20].repeat_interleave(20, dim=0)  # three batches, each one repeated row
    batches = split(X, Y, [20, 20, 20])
    assert abs(streaming.score("linear_cka", batches) - metrics.score("linear_cka", X, Y)) < 1e-12
    with pytest.raises(InputError, match="^X has no variance within the batches"):
        streaming.minibatch_cka(batches)


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(sorted(ESTIMATORS)), side=st.sampled_from("XY"), seed=st.integers(0, 2**32 - 1),
       sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       planted=st.lists(st.tuples(st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, 10**6),
                                  st.integers(0, 10**6)), min_size=1, max_size=2))
def test_nan_or_inf_anywhere_is_refused(kind: str, side: str, seed: int, sizes: list[int],
                                        planted: list[tuple[float, int, int]]) -> None:
    """One or two NaN/±Inf at random places (+Inf and −Inf may share a column and cancel to NaN): InputError."""
    sizes = [max(m, 4) for m in sizes] if "minibatch" in kind else sizes  # the unbiased HSIC needs m ≥ 4
    assume(sum(sizes) >= 3)  # CCA's minimum
    X, Y = pair(sum(sizes), 3, 2, seed=seed)
    A = X if side == "X" else Y
    for value, row, col in planted:
        A[row % A.shape[0], col % A.shape[1]] = value
    with pytest.raises(InputError, match=f"^{side_name(kind, side)} contains NaN or Inf"):
        ESTIMATORS[kind](split(X, Y, sizes))


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(sorted(ESTIMATORS)), side=st.sampled_from("XY"), seed=st.integers(0, 2**32 - 1),
       sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       row=st.lists(st.floats(-1e15, 1e15), min_size=3, max_size=3))
def test_constant_inputs_are_refused(kind: str, side: str, seed: int, sizes: list[int], dtype: torch.dtype,
                                     row: list[float]) -> None:
    """All rows identical on one side, whatever the value, precision and batch split, as `check_values` refuses:
    the exact moments' trace is then exactly 0, and so is the minibatch (linear) self-HSIC."""
    sizes = [max(m, 4) for m in sizes] if "minibatch" in kind else sizes
    assume(sum(sizes) >= 3)
    X, Y = (A.to(dtype) for A in pair(sum(sizes), 3, 2, seed=seed))
    A = X if side == "X" else Y
    A[:] = torch.tensor(row[:A.shape[1]], dtype=dtype)
    why = {"minibatch_linear": " has no variance within the batches", "minibatch_rbf": ": the RBF bandwidth is zero",
           "map_minibatch": ": the RBF bandwidth is zero"}.get(kind, " has zero variance")
    with pytest.raises(InputError, match=f"^{side_name(kind, side)}{why}"):
        ESTIMATORS[kind](split(X, Y, sizes))


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
def test_no_value_reaches_python_per_batch(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per batch only shapes are read (a value read is a host sync on a GPU): every check of values runs after the
    last batch."""
    reads: list[str] = []
    for method in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *args, _m=method, _f=original: (reads.append(_m), _f(self, *args))[1])
    at_end: list[int] = []

    def batches():
        yield from split(*pair(60, 3, 2, seed=15), [12, 20, 28])
        at_end.append(len(reads))

    ESTIMATORS[kind](batches())
    assert at_end == [0], reads


def test_map_names_the_bad_layer() -> None:
    X, Y = pair(40, 6, 3, seed=12)
    layers_a = [X[:, :2], X[:, 2:4].clone(), X[:, 4:]]
    layers_a[1][7, 0] = math.inf
    batches = [([a[i:i + 10] for a in layers_a], [Y[i:i + 10]]) for i in range(0, 40, 10)]
    for estimator in ("exact", "minibatch"):
        with pytest.raises(InputError, match="^layer 1 of A contains NaN or Inf"):
            streaming.cka_map(batches, estimator=estimator)
    dead = [X[:, :2], torch.zeros(40, 5, dtype=torch.float64)]
    with pytest.raises(InputError, match="^layer 1 of A has zero variance"):
        streaming.cka_map([([a[i:i + 10] for a in dead], [Y[i:i + 10]]) for i in range(0, 40, 10)])


def test_mixed_precision_pair() -> None:
    """A float32 X with a float64 Y: products in the wider type, as metrics.score computes them."""
    X, Y = pair(300, 5, 4, seed=13)
    batches = [(x.float(), y) for x, y in split(X, Y, [100, 100, 100])]
    assert abs(streaming.score("linear_cka", batches) - metrics.score("linear_cka", X.float().double(), Y)) < 1e-12


def _used_up() -> Iterable:
    gen = (b for b in [(torch.ones(4, 2), torch.ones(4, 2))])
    list(gen)
    return gen


_X, _Y = pair(50, 4, 3, seed=14)
_MAP = [([_X[:25, :2], _X[:25, 2:]], [_Y[:25]]), ([_X[25:, :2], _X[25:, 2:]], [_Y[25:]])]
SHAPE_ERRORS: dict[str, tuple[Callable[[], object], str]] = {
    "bare arrays": (lambda: streaming.score("linear_cka", [_X[:25], _X[25:]]),
                    r"batch 0 is a Tensor of shape \(25, 4\); each batch must be a pair \(X_batch, Y_batch\)"),
    "bare arrays of two rows": (lambda: streaming.score("linear_cka", [_X[:2], _X[2:4]]), "must be a pair"),
    "bare numpy arrays": (lambda: streaming.score("procrustes", [_X.numpy()]), "is a ndarray of shape"),
    "stacked X and Y": (lambda: streaming.score("linear_cka", [torch.stack([_X[:25], _X[25:]])]), "must be a pair"),
    "triple": (lambda: streaming.score("linear_cka", [(_X, _Y, _Y)]), "batch 0 is a tuple of 3 items"),
    "minibatch bare arrays": (lambda: streaming.minibatch_cka([_X[:25], _X[25:]]), "must be a pair"),
    "minibatch triple": (lambda: streaming.minibatch_cka([[_X, _Y, _Y]]), "batch 0 is a list of 3 items"),
    "map bare arrays": (lambda: streaming.cka_map([_X]), "must be a pair"),
    "map bare layers": (lambda: streaming.cka_map([(_X, _Y)]),
                        r"batch 0: the layers of A must be a list of activations, one per layer; got a Tensor"),
    "map no layers": (lambda: streaming.cka_map([([], [_Y])]), "the layers of A must be a list"),
    "map layer rows": (lambda: streaming.cka_map([([_X, _X[:40]], [_Y])]),
                       "batch 0: layer 0 of A has 50, layer 1 of A has 40, layer 0 of B has 50 rows; .*same inputs"),
    "map layer rows, minibatch": (lambda: streaming.cka_map([([_X, _X[:40]], [_Y])], estimator="minibatch"),
                                  "layer 1 of A has 40"),
    "map layer count": (lambda: streaming.cka_map([_MAP[0], ([_X[25:]], [_Y[25:]])]),
                        "batch 1 has 1 layers of A and 1 of B; the first batch had 2 and 1"),
    "map layer count, minibatch": (lambda: streaming.cka_map([_MAP[0], ([_X[25:]], [_Y[25:]])],
                                                             estimator="minibatch"), "the first batch had 2 and 1"),
    "map layer widths": (lambda: streaming.cka_map([_MAP[0], ([_X[25:, :1], _X[25:, 1:]], [_Y[25:]])]),
                         r"batch 1: feature counts changed \(layer 0 of A has 1, was 2; layer 1 of A has 3, was 2\)"),
    "map layer widths, minibatch": (lambda: streaming.cka_map([_MAP[0], ([_X[25:, :1], _X[25:, 1:]], [_Y[25:]])],
                                                              estimator="minibatch"), "feature counts changed"),
    "minibatch widths": (lambda: streaming.minibatch_cka([(_X[:25], _Y[:25]), (_X[25:, :3], _Y[25:])]),
                         r"feature counts changed \(X has 3, was 4\)"),
    "empty": (lambda: streaming.score("linear_cka", []), "no batches were given"),
    "used-up generator": (lambda: streaming.score("cca_mean", _used_up()), "no batches were given"),
    "minibatch empty": (lambda: streaming.minibatch_cka([]), "no batches were given"),
    "map empty": (lambda: streaming.cka_map(_used_up()), "no batches were given"),
    "zero rows first": (lambda: streaming.score("linear_cka", [(_X[:0], _Y[:0]), (_X, _Y)]), "batch 0 has 0 rows"),
    "zero rows later": (lambda: streaming.score("linear_cka", [(_X, _Y), (_X[:0], _Y[:0])]), "batch 1 has 0 rows"),
    "moments zero rows": (lambda: streaming.LinearMoments().update(_X[:0], _Y[:0]), "batch 0 has 0 rows"),
    "minibatch zero rows": (lambda: streaming.minibatch_cka([(_X, _Y), (_X[:0], _Y[:0])]), "batch 1 has 0 rows"),
    "map zero rows": (lambda: streaming.cka_map([([_X], [_Y]), ([_X[:0]], [_Y[:0]])]), "batch 1 has 0 rows"),
    "rows": (lambda: streaming.score("linear_cka", [(_X, _Y), (_X, _Y[:40])]),
             "batch 1: X has 50, Y has 40 rows; .*same inputs row by row"),
    "minibatch rows": (lambda: streaming.minibatch_cka([(_X, _Y[:40])]), "batch 0: X has 50, Y has 40 rows"),
    "map rows": (lambda: streaming.cka_map([([_X], [_Y[:40]])]), "layer 0 of B has 40"),
}


@pytest.mark.parametrize("case", sorted(SHAPE_ERRORS))
def test_batch_shape_errors(case: str) -> None:
    call, match = SHAPE_ERRORS[case]
    with pytest.raises(InputError, match=match):
        call()


def test_width_normalised_cca_mean_streams_exactly() -> None:
    g = torch.Generator().manual_seed(7)
    X = torch.randn(400, 12, generator=g, dtype=torch.float64)
    Y = torch.cat([X[:, :5] @ torch.randn(5, 5, generator=g, dtype=torch.float64), X[:, :3]], dim=1)  # rank 5 of 8
    for mid in ("cca_mean", "cca_mean[normalize=width]"):
        full = simstress.score(mid, X, Y)
        assert streaming.score(mid, zip(X.split(64), Y.split(64))) == pytest.approx(full, abs=1e-10), mid
    assert simstress.score("cca_mean[normalize=width]", X, Y) < simstress.score("cca_mean", X, Y)
