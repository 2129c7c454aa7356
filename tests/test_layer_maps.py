"""Every declared `layer_map` against the metric's own function, pair by pair: values in float64 and float32,
gradients, and the fallbacks to the pairwise route where shared products would not decide every pair as the
function does (rank-deficient or too-wide layers). Also the hand-written gradients of the shared
building blocks (centring, Gram, squared distances) against autograd's numerical check."""

import pytest
import torch

from simstress import metrics
from simstress.core import metric as core_metric
from simstress.core.inputs import InputError
from simstress.core.linalg import center_rescaled, center_with_mean, gram, power_of_two_scale
from simstress.core.metric import pairwise_map
from simstress.core.selection import squared_distances
from simstress.metrics import cca, procrustes

MAPPED = [m for m in metrics.list_metrics() if metrics.get_metric(m).spec.layer_map is not None]
# the maps that share products across layers and fall back to the pairwise route where those do not decide
SHARED = {"cca_mean", "cca_r2", "svcca", "pwcca", "procrustes", "procrustes_angular"}
WIDTHS = (16, 16, 32, 32, 32, 64, 64, 64)  # M1's pooled blocks
TOL32 = 1e-4  # gradients in float32, relative to the largest entry: two summation orders (observed ≤ 3.1e-6)


def blocks(dtype: torch.dtype, seed: int = 0, n: int = 128) -> list[torch.Tensor]:
    """Eight post-ReLU-like layers of M1's pooled widths sharing a latent, with offsets: full rank, distinct rows."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 8, generator=g, dtype=torch.float64)
    return [(torch.relu(base @ torch.randn(8, p, generator=g, dtype=torch.float64)
                        + torch.randn(n, p, generator=g, dtype=torch.float64)) + 3.0).to(dtype) for p in WIDTHS]


def pairwise(metric_id: str, layers: list[torch.Tensor]) -> torch.Tensor:
    spec, params = metrics.get_metric(metric_id).spec, metrics.get_metric(metric_id).params
    return pairwise_map(spec.fn, layers, spec.symmetric, **params)


def fast(metric_id: str, layers: list[torch.Tensor]) -> torch.Tensor:
    m = metrics.get_metric(metric_id)
    return m.spec.layer_map(layers, **m.params)


@pytest.fixture
def pairwise_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the registered metric functions that a shared map handed to `pairwise_map` (its fallback)."""
    calls: list[str] = []
    functions = {metrics.get_metric(m).spec.fn: metrics.get_metric(m).spec.name for m in MAPPED}

    def spy(fn, layers, symmetric, **params):
        if fn in functions:
            calls.append(functions[fn])
        return core_metric.pairwise_map(fn, layers, symmetric, **params)

    for module in (cca, procrustes):
        monkeypatch.setattr(module, "pairwise_map", spy)
    return calls


@pytest.mark.parametrize("metric_id", MAPPED)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_a_layer_map_equals_its_metric_pair_by_pair(metric_id: str, dtype: torch.dtype, tol: float,
                                                    pairwise_calls: list[str]) -> None:
    layers = blocks(dtype)
    got, want = fast(metric_id, layers), pairwise(metric_id, layers)
    assert got.dtype == dtype and got.shape == (8, 8)
    assert (got - want).abs().max() <= tol
    assert not pairwise_calls, f"{metric_id} fell back to the pairwise route on full-rank layers"


@pytest.mark.parametrize("metric_id", MAPPED)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, TOL32)])
def test_a_layer_maps_gradients_equal_the_pairwise_ones(metric_id: str, dtype: torch.dtype, tol: float,
                                                        pairwise_calls: list[str]) -> None:
    """float32 too: the attacks train through the maps in float32."""
    layers = [A.requires_grad_() for A in blocks(dtype, seed=1)]
    weights = torch.randn(8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    got = torch.autograd.grad((fast(metric_id, layers) * weights).sum(), layers)
    want = torch.autograd.grad((pairwise(metric_id, layers) * weights).sum(), layers)
    for a, b in zip(got, want):
        assert a.dtype == dtype and (a - b).abs().max() <= tol * b.abs().max()
    assert not pairwise_calls, f"{metric_id} fell back to the pairwise route on full-rank layers"


@pytest.mark.parametrize("metric_id", sorted(SHARED))
def test_layers_the_shared_route_cannot_decide_go_pair_by_pair(metric_id: str, pairwise_calls: list[str]) -> None:
    """A rank-deficient layer (CCA's moments route declines it) and a layer at least n wide (Procrustes' row-space
    route; CCA refuses it, SVCCA cuts it): each map is then the pairwise one, through the metric's own function."""
    layers = blocks(torch.float64)
    g = torch.Generator().manual_seed(3)
    deficient = layers[:2] + [layers[2][:, :5] @ torch.randn(5, 32, generator=g, dtype=torch.float64)] + layers[3:]
    wide = layers[:7] + [torch.randn(128, 130, generator=g, dtype=torch.float64)]
    name = metrics.get_metric(metric_id).spec.name
    if name.startswith("procrustes"):
        assert torch.equal(fast(metric_id, wide), pairwise(metric_id, wide))
        assert pairwise_calls == [name]
        return
    assert torch.equal(fast(metric_id, deficient), pairwise(metric_id, deficient))
    assert pairwise_calls == [name]
    if name == "svcca":  # its cut keeps fewer directions than the samples: a value, pair by pair
        assert torch.equal(fast(metric_id, wide), pairwise(metric_id, wide))
    else:
        with pytest.raises(InputError, match="every canonical correlation is 1"):
            fast(metric_id, wide)
    assert pairwise_calls == [name] * 2


@pytest.mark.parametrize("metric_id", ["cca_mean", "cca_r2", "svcca", "pwcca"])
def test_a_pair_refused_at_its_distinct_samples_refuses_the_map(metric_id: str, pairwise_calls: list[str]) -> None:
    """128 rows holding 40 distinct samples and a full-rank layer of width 39 = d − 1: the metric refuses that
    pair (its span fills the sample space) though every layer is well conditioned, so the map goes pair by pair
    and refuses too; svcca's cut keeps fewer directions and shares its products."""
    g = torch.Generator().manual_seed(7)
    rows = torch.randint(0, 40, (128,), generator=g)
    rows[:40] = torch.arange(40)
    layers = [torch.randn(40, p, generator=g, dtype=torch.float64)[rows] for p in (8, 39, 12)]
    name = metrics.get_metric(metric_id).spec.name
    if name == "svcca":  # its cut of the width-39 layer keeps fewer directions: no refusal, shared products
        assert (fast(metric_id, layers) - pairwise(metric_id, layers)).abs().max() <= 1e-12
        assert pairwise_calls == []
        return
    with pytest.raises(InputError, match="fill|whole"):
        fast(metric_id, layers)
    assert pairwise_calls == [name]


def test_pwcca_map_refuses_correlations_tied_by_dimension(pairwise_calls: list[str]) -> None:
    """Widths 30 and 31 of 60 distinct samples: rx + ry = d + 1, which pwcca refuses and cca_mean does not; the
    pwcca map goes pair by pair and refuses, the cca_mean map shares its products."""
    g = torch.Generator().manual_seed(8)
    layers = [torch.randn(60, p, generator=g, dtype=torch.float64) for p in (30, 31, 20)]
    with pytest.raises(InputError, match="dimension count"):
        fast("pwcca", layers)
    assert pairwise_calls == ["pwcca"]
    assert (fast("cca_mean", layers) - pairwise("cca_mean", layers)).abs().max() <= 1e-12
    assert pairwise_calls == ["pwcca"]


def test_pwcca_map_is_not_symmetric_and_equals_each_ordered_pair(pairwise_calls: list[str]) -> None:
    layers = blocks(torch.float64, seed=4)
    M = fast("pwcca", layers)
    assert not torch.allclose(M, M.T, atol=1e-6, rtol=0)
    assert (M[2, 5] - metrics.get_metric("pwcca").spec.fn(layers[2], layers[5])).abs() <= 1e-12
    assert (M[5, 2] - metrics.get_metric("pwcca").spec.fn(layers[5], layers[2])).abs() <= 1e-12
    assert not pairwise_calls


def test_hand_written_gradients_of_the_building_blocks() -> None:
    g = torch.Generator().manual_seed(5)
    X = (torch.randn(12, 5, generator=g, dtype=torch.float64) * 3 + 40).requires_grad_()
    assert torch.autograd.gradcheck(center_rescaled, (X,))
    for centre in (False, True):  # the centring's own gradient folded into the product's, or none
        assert torch.autograd.gradcheck(lambda A: gram(A, centre), (X,))
        assert torch.autograd.gradcheck(lambda A: squared_distances(A, centre), (X,))
    # the centred copy is the same bit for bit as centring then scaling by autograd's route, and the products
    # that centre their own input give the same numbers as on that copy
    Xc, _ = center_with_mean(X.detach())
    assert torch.equal(center_rescaled(X).detach(), Xc * power_of_two_scale(Xc))
    assert torch.equal(gram(X, centre=True), gram(center_rescaled(X)))
    assert torch.equal(squared_distances(X, centre=True), squared_distances(center_rescaled(X)))


def test_squared_distances_between_duplicated_or_clamped_rows_carry_no_gradient() -> None:
    """Entries set to 0 (identical rows) and entries clamped at 0 (two distinct rows whose expansion rounds below
    0) pass no gradient, as autograd's route through the in-place steps."""
    g = torch.Generator().manual_seed(6)
    half = torch.randn(6, 4, generator=g, dtype=torch.float64)
    X = torch.cat([half, half])
    g0 = torch.Generator().manual_seed(0)
    near = torch.randn(6, 4, generator=g0, dtype=torch.float64) * 10
    near[1] = near[0] + 1e-9 * torch.randn(4, generator=g0, dtype=torch.float64)
    for A in (X, near):
        A = A.clone().requires_grad_()
        weights = torch.randn(A.shape[0], A.shape[0], generator=g, dtype=torch.float64)
        got, = torch.autograd.grad((squared_distances(A) * weights).sum(), A)
        sq = A.square().sum(1)
        D = torch.addmm(sq[None, :], A, A.T, alpha=-2.0).add(sq[:, None])
        ids = torch.unique(A.detach(), dim=0, return_inverse=True)[1]
        want, = torch.autograd.grad((D.clamp_min(0.0).masked_fill(ids[:, None] == ids[None, :], 0.0)
                                     * weights).sum(), A)
        assert torch.allclose(got, want, atol=1e-12, rtol=0)
    assert bool((D.detach()[0, 1] < 0) & (squared_distances(near)[0, 1] == 0))  # the clamped pair is there
    assert torch.equal(squared_distances(X).diagonal(6), torch.zeros(6, dtype=torch.float64))
