"""Streaming estimators: exact moments == full batch, minibatch HSIC against its definition, layer maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from references import u_statistic_hsic
from scipy.spatial.distance import cdist
from torch.utils.data import DataLoader, TensorDataset

from simstress import metrics, streaming
from simstress.metrics import InputError

EXACT_IDS = ["linear_cka", "procrustes", "cca_mean", "cca_r2", "svcca", "svcca[keep=0.9]", "pwcca"]


def pair(n: int, p1: int, p2: int, seed: int = 0, latent: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of a shared latent, with large offsets (the merge must not cancel them) and float64."""
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
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
    assert all(a > b for a, b in zip(devs, devs[1:])), devs
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
    with pytest.raises(InputError, match="widths changed"):
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
