"""Tiled RBF CKA: the exact median over tiles, tiled == untiled values, dispatch and autograd."""

from __future__ import annotations

import pytest
import torch

from simstress import metrics
from simstress.core import selection
from simstress.core.inputs import InputError
from simstress.core.linalg import center, double_center, frobenius
from simstress.core.selection import distance_tiles, median_all, median_sq_distance_tiled, squared_distances
from simstress.metrics import cka
from simstress.metrics.cka import rbf_cka_tiled

SMALL_TILES = 40_000  # bytes: tens of tiles even at n = 300


def data(n: int, p: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, 4, generator=g, dtype=torch.float64)
    X = Z @ torch.randn(4, p, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, p, generator=g,
                                                                                     dtype=torch.float64)
    Y = torch.relu(Z @ torch.randn(4, p + 3, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(
        n, p + 3, generator=g, dtype=torch.float64)
    return (X + 5.0).to(dtype), (Y - 2.0).to(dtype)


def assembled(Xc: torch.Tensor, tile_bytes: int) -> torch.Tensor:
    """The full matrix the tiles define: each tile, and the transpose of its off-diagonal part."""
    n = Xc.shape[0]
    full = torch.full((n, n), float("nan"), dtype=Xc.dtype)
    for i0, i1, D in distance_tiles(Xc, tile_bytes):
        full[i0:i1, i0:] = D
        full[i1:, i0:i1] = D[:, i1 - i0:].T
    return full


def untiled_rbf_cka(X: torch.Tensor, Y: torch.Tensor, sigma: float) -> float:
    K, L = double_center(cka.rbf_kernel(X, sigma)), double_center(cka.rbf_kernel(Y, sigma))
    return float((K * L).sum() / (frobenius(K) * frobenius(L)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [301, 700])  # odd and even n² (one or two middle ranks)
def test_tiles_cover_the_distance_matrix(n: int, dtype: torch.dtype) -> None:
    X, _ = data(n, 12, dtype)
    Xc = center(X)
    full = assembled(Xc, SMALL_TILES)
    assert not torch.isnan(full).any()
    tol = 1e-10 if dtype == torch.float64 else 2e-3
    torch.testing.assert_close(full, squared_distances(Xc), rtol=0, atol=tol * float(full.max()))
    assert float(full.diagonal().abs().max()) == 0.0
    sizes = [D.numel() * D.element_size() for _, _, D in distance_tiles(Xc, SMALL_TILES)]
    assert len(sizes) > 5 and max(sizes) <= max(SMALL_TILES, n * Xc.element_size())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [301, 700])
def test_tiled_median_is_exactly_kthvalue_of_the_tiled_matrix(n: int, dtype: torch.dtype) -> None:
    X, _ = data(n, 12, dtype, seed=1)
    Xc = center(X)
    got = median_sq_distance_tiled(Xc, SMALL_TILES)
    assert torch.equal(got, median_all(assembled(Xc, SMALL_TILES)))
    untiled = median_all(squared_distances(Xc))
    assert abs(float(got / untiled) - 1.0) < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("route", ["radix", "window_missed", "cap_exceeded"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_fallbacks_are_exact(route: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rare paths: no sampled window, a window that misses the median, a window too full to gather."""
    X, _ = data(700, 8, dtype, seed=2)
    Xc = center(X)
    if route == "radix":
        monkeypatch.setattr(selection, "_sample_window", lambda *a: None)
    elif route == "window_missed":
        monkeypatch.setattr(selection, "_sample_window", lambda *a: (0, 1))  # keys of 0.0 .. the smallest subnormal
    else:
        monkeypatch.setattr(selection, "SELECT_CAP", 5_000)
    assert torch.equal(median_sq_distance_tiled(Xc, 400_000), median_all(assembled(Xc, 400_000)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_with_massive_ties(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Duplicated rows: most distances are exactly 0 or one repeated value; selection must stay exact."""
    base = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], dtype=dtype)
    X = base[torch.tensor([0] * 400 + [1] * 250 + [2] * 51)]
    Xc = center(X)
    monkeypatch.setattr(selection, "SELECT_CAP", 20_000)  # forces radix passes through the tied buckets
    for Xt in (Xc, Xc[:480]):  # median 0 (ties at zero) and a tied positive value
        assert torch.equal(median_sq_distance_tiled(Xt, 400_000), median_all(assembled(Xt, 400_000)))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("sigma", [1.0, 0.3, 5.0])
def test_tiled_equals_untiled(dtype: torch.dtype, tol: float, sigma: float) -> None:
    X, Y = data(900, 20, dtype, seed=3)
    with torch.no_grad():
        tiled = float(rbf_cka_tiled(X, Y, sigma, tile_bytes=200_000))
        assert abs(tiled - untiled_rbf_cka(X, Y, sigma)) < tol
    assert 0.1 < tiled < 0.99


def test_rbf_cka_switches_to_tiles_above_the_budget_but_not_for_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    X, Y = data(400, 10, torch.float64, seed=4)
    untiled = metrics.score("rbf_cka[sigma=0.5]", X, Y)
    calls = []
    monkeypatch.setattr(cka, "RBF_UNTILED_MAX_BYTES", 1000)
    monkeypatch.setattr(cka, "rbf_cka_tiled",
                        lambda *a, **kw: calls.append(a) or rbf_cka_tiled(*a, **kw, tile_bytes=50_000))
    assert abs(metrics.score("rbf_cka[sigma=0.5]", X, Y) - untiled) < 1e-12
    assert len(calls) == 1
    Xg = X.clone().requires_grad_(True)
    value = metrics.get_metric("rbf_cka[sigma=0.5]")(Xg, Y)
    (grad,) = torch.autograd.grad(value, Xg)
    assert len(calls) == 1 and torch.isfinite(grad).all() and float(grad.abs().max()) > 0
    assert abs(float(value.detach()) - untiled) < 1e-12


def test_tiled_mixed_dtypes_and_rejects_half() -> None:
    X, Y = data(300, 6, torch.float64, seed=5)
    a = float(rbf_cka_tiled(X.float(), Y, 1.0, tile_bytes=50_000))
    assert abs(a - untiled_rbf_cka(X, Y, 1.0)) < 1e-6
    with pytest.raises(TypeError, match="float32 or float64"):
        rbf_cka_tiled(X.half(), Y.half())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [301, 700])
def test_tiled_lower_median_is_exactly_the_lower_kthvalue(n: int, dtype: torch.dtype) -> None:
    X, _ = data(n, 12, dtype, seed=6)
    Xc = center(X)
    got = median_sq_distance_tiled(Xc, SMALL_TILES, lower=True)
    assert torch.equal(got, median_all(assembled(Xc, SMALL_TILES), lower=True))
    flat = assembled(Xc, SMALL_TILES).reshape(-1)
    assert torch.equal(got, flat.sort().values[(flat.numel() - 1) // 2])


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("median", ["ordinary", "lower"])
def test_tiled_equals_untiled_for_both_median_conventions(dtype: torch.dtype, tol: float, median: str) -> None:
    X, Y = data(900, 20, dtype, seed=7)
    with torch.no_grad():
        tiled = float(rbf_cka_tiled(X, Y, 0.2, tile_bytes=200_000, median=median))
        K = double_center(cka.rbf_kernel(X, 0.2, median))
        L = double_center(cka.rbf_kernel(Y, 0.2, median))
        assert abs(tiled - float((K * L).sum() / (frobenius(K) * frobenius(L)))) < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_duplicated_rows_are_at_distance_exactly_zero_in_both_routes(dtype: torch.dtype) -> None:
    """The Gram route ||a||² + ||b||² − 2aᵀb leaves rounding noise for identical rows; pairs of identical rows get an
    exact 0, so a median over mostly-duplicate data is exactly 0 (and refused), not noise."""
    X, _ = data(300, 7, dtype, seed=8)
    X[100:250] = X[3]
    Xc = center(X)
    D = squared_distances(Xc)
    same = (X[:, None, :] == X[None, :, :]).all(-1)
    assert bool((D[same] == 0).all()) and bool((D[~same] > 0).all())
    full = assembled(Xc, SMALL_TILES)
    assert bool((full[same] == 0).all()) and bool((full[~same] > 0).all())


def test_tiled_path_refuses_zero_median_and_identity_kernel() -> None:
    X, Y = data(400, 30, torch.float64, seed=9)
    dup = X.clone()
    dup[:300] = X[0]
    with pytest.raises(InputError, match="median squared distance of X is 0"):
        rbf_cka_tiled(dup, Y, 1.0, tile_bytes=50_000)
    spread = torch.randn(400, 60, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    with pytest.raises(InputError, match="kernel of X is numerically the identity"):
        rbf_cka_tiled(spread, Y, 0.01, tile_bytes=50_000)
    assert 0 < float(rbf_cka_tiled(spread, Y, 0.2, tile_bytes=50_000)) < 1
