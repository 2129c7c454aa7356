"""Procrustes similarity and angular shape distance: independent routes and properties by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes

from simstress import metrics
from simstress.metrics import get_metric
from simstress.metrics.procrustes import right_angle


def pair(n: int, p1: int, p2: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p1)) @ rng.standard_normal((p1, p1)) + rng.normal(0, 10, p1)
    Y = X[:, :p2] @ rng.standard_normal((p2, p2)) + noise * rng.standard_normal((n, p2)) + 4.0
    return X, Y


def value(metric_id: str, X, Y) -> float:
    return float(get_metric(metric_id)(torch.as_tensor(X), torch.as_tensor(Y)))


def nuclear_formula(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return np.linalg.svd(Xc.T @ Yc, compute_uv=False).sum() / (np.linalg.norm(Xc) * np.linalg.norm(Yc))


@pytest.mark.parametrize("shape", [(200, 10, 10), (200, 12, 5), (200, 5, 12)])
def test_procrustes_equals_svd_formula(shape):
    X, Y = pair(shape[0], max(shape[1:]), shape[2], seed=0)
    X = X[:, : shape[1]]
    v = value("procrustes", X, Y)
    assert v == pytest.approx(nuclear_formula(X, Y), abs=1e-10)
    assert 0.1 < v < 0.99


def test_procrustes_equals_scipy_orthogonal_procrustes_optimum():
    X, Y = pair(150, 8, 8, seed=1)
    Xn = (X - X.mean(0)) / np.linalg.norm(X - X.mean(0))
    Yn = (Y - Y.mean(0)) / np.linalg.norm(Y - Y.mean(0))
    R, _ = orthogonal_procrustes(Yn, Xn)  # argmin_R ||Yn R − Xn||_F over orthogonal R
    residual = np.linalg.norm(Yn @ R - Xn) ** 2
    assert value("procrustes", X, Y) == pytest.approx(1.0 - residual / 2.0, abs=1e-10)
    assert value("procrustes_angular", X, Y) == pytest.approx(2 * math.asin(math.sqrt(residual) / 2), abs=1e-10)


def test_scaled_rotated_translated_copy_is_identical():
    X, _ = pair(300, 12, 12, seed=2)
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    Y = 0.03 * X @ Q + rng.normal(0, 1e3, 12)
    assert value("procrustes", X, Y) == pytest.approx(1.0, abs=1e-12)
    assert value("procrustes_angular", X, Y) == pytest.approx(0.0, abs=1e-7)
    Y_wide = np.hstack([X @ Q, np.zeros((300, 4))])  # zero-padding is an isometry too
    assert value("procrustes", X, Y_wide) == pytest.approx(1.0, abs=1e-12)


def test_not_invariant_to_general_linear_maps():
    X, _ = pair(300, 6, 6, seed=4)
    M = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, 20.0])
    assert value("procrustes", X, X @ M) < 0.99


@pytest.mark.parametrize("seed", [5, 6])
def test_angular_is_arccos_of_similarity(seed):
    X, Y = pair(250, 9, 7, seed=seed)
    assert value("procrustes_angular", X, Y) == pytest.approx(math.acos(value("procrustes", X, Y)), abs=1e-10)


def test_angular_distance_is_a_metric_on_shapes():
    rng = np.random.default_rng(7)
    A, B, C = (rng.standard_normal((100, 6)) @ rng.standard_normal((6, 6)) for _ in range(3))

    def d(U: np.ndarray, V: np.ndarray) -> float:
        return value("procrustes_angular", U, V)

    assert d(A, B) == pytest.approx(d(B, A), abs=1e-12)
    assert d(A, C) <= d(A, B) + d(B, C) + 1e-12
    assert d(A, B) <= d(A, C) + d(C, B) + 1e-12
    assert 0 < d(A, B) <= math.pi / 2


@pytest.mark.parametrize("p1,p2", [(120, 30), (30, 120), (90, 150)])
def test_wide_inputs_take_the_row_space_route_with_the_same_value(p1, p2):
    rng = np.random.default_rng(8)
    n = 60
    X = rng.standard_normal((n, p1)) + 3.0
    Y = np.tile(X, 4)[:, :p2] * 0.5 + rng.standard_normal((n, p2))
    assert value("procrustes", X, Y) == pytest.approx(nuclear_formula(X, Y), abs=1e-10)
    assert value("procrustes_angular", X, Y) == pytest.approx(math.acos(nuclear_formula(X, Y)), abs=1e-9)


def test_float32_resolves_small_angles():
    """arccos of a float32 similarity near 1 would be off by √(2·eps) ≈ 5e-4; the chord route is not."""
    rng = np.random.default_rng(9)
    X = np.maximum(rng.standard_normal((2000, 64)) @ rng.standard_normal((64, 64)), 0.0)
    X32 = torch.tensor(X, dtype=torch.float32)
    assert float(get_metric("procrustes_angular")(X32, X32)) < 1e-5
    Y32 = X32 + 1e-4 * torch.randn(X32.shape, generator=torch.Generator().manual_seed(0))
    ref = float(get_metric("procrustes_angular")(X32.double(), Y32.double()))
    assert 1e-5 < ref < 1e-3
    assert float(get_metric("procrustes_angular")(X32, Y32)) == pytest.approx(ref, rel=1e-2)
    assert float(get_metric("procrustes")(X32, X32)) == pytest.approx(1.0, abs=1e-6)


def test_float32_under_huge_translation():
    rng = np.random.default_rng(10)
    X32 = torch.tensor(np.maximum(rng.standard_normal((2000, 128)), 0.0), dtype=torch.float32)
    Y32 = X32 + 2e4 * torch.randn(128, generator=torch.Generator().manual_seed(1))
    assert float(get_metric("procrustes")(X32, Y32)) > 0.999
    assert float(get_metric("procrustes_angular")(X32, Y32)) < 2e-3  # the quantisation of Y itself is ~1e-3


@pytest.mark.parametrize("metric_id", ["procrustes", "procrustes_angular"])
@pytest.mark.parametrize("p", [4, 16])  # p = 16 > n exercises the row-space route
def test_gradients_are_correct(metric_id, p):
    X, Y = pair(12, p, 3, seed=11)
    Xt = torch.tensor(X, requires_grad=True)
    Yt = torch.tensor(Y, requires_grad=True)
    m = get_metric(metric_id)
    assert torch.autograd.gradcheck(lambda a, b: m(a, b), (Xt, Yt))


def test_specs():
    sim, dist = get_metric("procrustes").spec, get_metric("procrustes_angular").spec
    assert sim.kind == "similarity" and dist.kind == "distance"
    assert dist.value_range == (0.0, math.pi / 2) and dist.best == 0.0
    assert sim.invariances == dist.invariances == {"translation", "isotropic_scaling", "orthogonal", "permutation"}
    X, _ = pair(100, 5, 5, seed=12)
    assert float(dist.as_similarity(metrics.score("procrustes_angular", X, X))) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("metric_id", ["procrustes", "procrustes_angular"])
@pytest.mark.parametrize("k", [-30, -20, 20, 30])
def test_float32_at_extreme_scales(metric_id, k):
    """At |x| ≈ 1e20 float32 squares overflow (procrustes read 0.0, the angle 0.0: 'identical'); at 1e-30 they
    underflow (an SVD error). The centred data are rescaled by a power of two first, which is exact."""
    X, Y = pair(200, 8, 6, seed=13)
    X32, Y32 = (torch.as_tensor(A * 10.0**k, dtype=torch.float32) for A in (X, Y))
    ref = value(metric_id, X32.double(), Y32.double())
    assert float(get_metric(metric_id)(X32, Y32)) == pytest.approx(ref, abs=1e-5)
    assert 0.1 < ref < 1.4


def test_angle_never_exceeds_a_right_angle():
    """Orthogonal centred representations: nuclear norm 0, chord √2, θ = π/2 exactly (rounding kept inside)."""
    X = np.zeros((40, 2))
    X[:20, 0], X[20:, 0] = 1.0, -1.0
    Y = np.zeros((40, 2))
    Y[::2, 1], Y[1::2, 1] = 1.0, -1.0
    for dtype in (torch.float32, torch.float64):
        v = metrics.score("procrustes_angular", X, Y, dtype=dtype)
        assert v <= math.pi / 2 and v == pytest.approx(math.pi / 2, abs=1e-6)


# ------------------------------------------------------------------ issue 21, item 1: θ ∈ [0, π/2] by construction
NEAR_ZERO = {torch.float32: 1e-5, torch.float64: 1e-12}  # θ of a copy: ~ε, never arccos's √(2ε)


@st.composite
def angular_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, torch.dtype, str, float]:
    """Representations that are orthogonal, identical, scaled, rotated or padded copies, or unrelated, at scales
    10^k (|k| ≤ 30 in float32, ≤ 300 in float64) with offsets, in float32 or float64."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    kind = draw(st.sampled_from(["orthogonal", "identical", "scaled", "rotated", "padded", "unrelated"]))
    n, p1, p2 = draw(st.integers(4, 60)), draw(st.integers(1, 10)), draw(st.integers(1, 10))
    limit = 30 if dtype == torch.float32 else 300
    kx, ky = draw(st.integers(-limit, limit)), draw(st.integers(-limit, limit))
    offset = draw(st.sampled_from([0.0, 1.0, -1e3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "orthogonal":
        assume(p1 + p2 < n)
        B = np.linalg.qr(rng.standard_normal((n, p1 + p2)) - 0.0)[0]
        B = np.linalg.qr(B - B.mean(0))[0]  # centred orthonormal columns: X̃ᵀỸ = 0
        X, Y = B[:, :p1] * rng.uniform(0.5, 2, p1), B[:, p1:] * rng.uniform(0.5, 2, p2)
    else:
        X = rng.standard_normal((n, p1)) @ rng.standard_normal((p1, p1))
        Q = np.linalg.qr(rng.standard_normal((p1, p1)))[0]
        Y = {"identical": X, "scaled": X, "rotated": X @ Q, "padded": np.hstack([X @ Q, np.zeros((n, 2))]),
             "unrelated": rng.standard_normal((n, p2))}[kind]
        ky = kx if kind == "identical" else ky
    return X * 10.0**kx + offset * 10.0**kx, Y * 10.0**ky + offset * 10.0**ky, dtype, kind, offset


@settings(max_examples=150, deadline=None)
@given(case=angular_cases())
def test_angle_lies_between_zero_and_a_right_angle_for_every_input(case):
    """θ ∈ [0, π/2] as Python floats, whatever the input: the clamp to the largest float not above π/2 holds the
    bound by construction; copies read ~ε (the chord route), orthogonal representations π/2."""
    X, Y, dtype, kind, offset = case
    try:
        theta = metrics.score("procrustes_angular", X, Y, dtype=dtype)
    except metrics.InputError:  # e.g. an offset that leaves float32 rows identical
        return
    assert 0.0 <= theta <= math.pi / 2
    if kind in ("identical", "scaled", "rotated", "padded") and offset == 0.0:  # an offset's rounding is real
        assert theta <= NEAR_ZERO[dtype]
    if kind == "orthogonal":  # the rounding of an offset makes the data a little less orthogonal
        assert theta == pytest.approx(math.pi / 2, abs=50 * torch.finfo(dtype).eps * (1.0 + abs(offset)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_right_angle_is_the_largest_float_not_above_half_pi(dtype):
    bound = right_angle(dtype, torch.device("cpu"))
    assert float(bound) <= math.pi / 2 < float(torch.nextafter(bound, torch.tensor(4.0, dtype=dtype)))
