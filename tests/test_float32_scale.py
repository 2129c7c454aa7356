"""float32 against float64 at a mid size, and the numerical helpers that keep float32 sound at scale."""

from __future__ import annotations

import pytest
import torch

from simstress import metrics
from simstress.core.linalg import center, feature_gram, frobenius

METRIC_IDS = ["linear_cka", "linear_cka_debiased", "procrustes", "procrustes_angular", "cca_mean", "cca_r2",
              "svcca", "pwcca"]


@pytest.fixture(scope="module")
def activations() -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU layers of a shared 32-d latent, with offsets and unequal widths, float64 (n = 12000)."""
    g = torch.Generator().manual_seed(0)
    f64 = {"generator": g, "dtype": torch.float64}
    n, p = 12_000, 160
    Z = torch.randn(n, 32, **f64)
    X = torch.relu(Z @ torch.randn(32, p, **f64) + torch.randn(n, p, **f64)) * 3.0 + 10.0
    Y = torch.relu(Z @ torch.randn(32, p + 40, **f64) + 2.0 * torch.randn(n, p + 40, **f64))
    return X, Y


@pytest.mark.parametrize("metric_id", METRIC_IDS)
def test_float32_matches_float64(metric_id: str, activations: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, Y = activations
    ref = metrics.score(metric_id, X, Y)
    got = metrics.score(metric_id, X.float(), Y.float(), dtype=torch.float32)
    assert abs(got - ref) < 1e-5, (ref, got)


def test_rbf_cka_float32_matches_float64_tiled_and_untiled(activations, monkeypatch: pytest.MonkeyPatch) -> None:
    from simstress.metrics import cka

    X, Y = (A[:2500] for A in activations)
    ref = metrics.score("rbf_cka", X, Y)
    assert abs(metrics.score("rbf_cka", X.float(), Y.float(), dtype=torch.float32) - ref) < 1e-5
    monkeypatch.setattr(cka, "RBF_UNTILED_MAX_BYTES", 0)
    assert abs(metrics.score("rbf_cka", X.float(), Y.float(), dtype=torch.float32) - ref) < 1e-5


def test_frobenius_keeps_float32_sums_accurate_at_scale() -> None:
    """1e7 entries: torch.linalg.vector_norm drifts by ~1e-4 in float32 on CPU (naive accumulation); the
    cascade sum behind `frobenius` must stay at float32 rounding."""
    g = torch.Generator().manual_seed(1)
    A = torch.rand(10_000, 1_000, generator=g) + 1.0
    ref = float(A.double().square().sum().sqrt())
    assert abs(float(frobenius(A)) / ref - 1.0) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [100, 700, 1030])
def test_feature_gram_equals_full_product_with_gradient(p: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(p)
    X = torch.randn(300, p, generator=g, dtype=dtype).requires_grad_(True)
    W = torch.randn(p, p, generator=g, dtype=dtype)
    G, R = feature_gram(center(X)), center(X).T @ center(X)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(G, R, rtol=tol, atol=tol * float(R.detach().abs().max()))
    (g1,) = torch.autograd.grad((G * W).sum(), X)
    (g2,) = torch.autograd.grad((R * W).sum(), X)
    torch.testing.assert_close(g1, g2, rtol=tol, atol=tol * float(g2.abs().max()))


def test_center_in_place_second_pass_keeps_autograd() -> None:
    g = torch.Generator().manual_seed(2)
    X = (torch.randn(50, 4, generator=g, dtype=torch.float64) + 1e4).requires_grad_(True)
    W = torch.randn(50, 4, generator=g, dtype=torch.float64)
    Xc = center(X)
    assert float(Xc.detach().mean(0).abs().max()) < 1e-12
    (grad,) = torch.autograd.grad((Xc * W).sum(), X)
    torch.testing.assert_close(grad, W - W.mean(0), rtol=0, atol=1e-12)  # H·W: the centring is linear


def _scaled_pair(k: int, offset: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A correlated pair (n = 120) scaled by 10^k plus a common offset, rounded to float32: what both routes see."""
    g = torch.Generator().manual_seed(5)
    f64 = {"generator": g, "dtype": torch.float64}
    Z = torch.randn(120, 4, **f64)
    X = Z @ torch.randn(4, 9, **f64) + 0.5 * torch.randn(120, 9, **f64)
    Y = torch.tanh(Z @ torch.randn(4, 7, **f64)) + 0.3 * torch.randn(120, 7, **f64)
    labels = (Z[:, 0] > 0).long() + (Z[:, 1] > 0).long()
    return (X * 10.0**k + offset).float(), (Y * 10.0**k + offset).float(), labels


@pytest.mark.parametrize("metric_id", metrics.list_metrics(calibration=""))
@pytest.mark.parametrize(("k", "offset"), [(-30, 0.0), (-20, 0.0), (20, 0.0), (30, 0.0), (0, 1e4), (18, 1e20)])
def test_every_metric_gives_the_float64_answer_in_float32_at_any_scale(metric_id: str, k: int, offset: float) -> None:
    """Item 7: scaled by 10^k, or offset by a huge constant, float32 gives the float64 value of the same data.

    Before: at 1e20 procrustes read 0.0, procrustes_angular 0.0, mutual_knn 1.0 and CKA NaN; at 1e-30 Procrustes
    failed in the SVD; with a 1e4 offset mutual_knn read 0.235 for 0.62.
    """
    X32, Y32, labels = _scaled_pair(k, offset)
    ref = metrics.score(metric_id, X32.double(), Y32.double(), labels=labels)
    got = metrics.score(metric_id, X32, Y32, labels=labels, dtype=torch.float32)
    assert abs(got - ref) < 1e-5, (got, ref)
