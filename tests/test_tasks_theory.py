"""Closed forms of Theorem 1 / Corollary 3 against independent routes, and the translation tasks against them."""

import math

import numpy as np
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.synthetic import generator, unit_vector
from simstress.core.theory import (
    outlier_limit,
    participation_ratio,
    rms_radius,
    theorem1_cka,
    theorem1_limit,
)
from simstress.tasks.robustness import translate

from .conftest import evaluate


def direct_linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Textbook route: tr(KHLH)/sqrt(tr(KHKH)·tr(LHLH)) with a dense centring matrix H (small n only)."""
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float((K * L).sum() / math.sqrt((K * K).sum() * (L * L).sum()))


def data(n: int, p: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, p, generator=g, dtype=torch.float64) @ torch.randn(p, p, generator=g, dtype=torch.float64)
            + 2.0).clamp_min(0.0)


@pytest.mark.parametrize(("n", "p"), [(60, 7), (30, 80)])  # feature route and Gram route
def test_theorem1_limit_matches_its_other_forms(n: int, p: int) -> None:
    X = data(n, p)
    rows = torch.zeros(n, dtype=torch.bool)
    rows[: n // 3] = True
    Xn = X.numpy()
    Xc = Xn - Xn.mean(0)
    rho = rows.double().mean().item()
    mu_u = Xc[~rows.numpy()].mean(0)
    sigma2 = (Xc**2).sum() / n
    eig = np.linalg.eigvalsh(Xc.T @ Xc)
    dim_pr = eig.sum() ** 2 / (eig**2).sum()
    t1a = (1 - rho) / rho * (mu_u @ mu_u) / sigma2 * math.sqrt(dim_pr)  # centred X, untranslated mean
    K = Xc @ Xc.T
    u = rows.numpy() - rho
    t1d = (u @ K @ u) / (u @ u) / np.linalg.norm(K)  # Rayleigh quotient of the centred Gram
    limit = theorem1_limit(X, rows)
    assert limit == pytest.approx(t1a, rel=1e-12)
    assert limit == pytest.approx(t1d, rel=1e-12)
    assert participation_ratio(X) == pytest.approx(dim_pr, rel=1e-12)
    assert rms_radius(X) == pytest.approx(math.sqrt(sigma2), rel=1e-14)


@pytest.mark.parametrize(("n", "p"), [(60, 7), (30, 80)])
def test_theorem1_finite_c_matches_direct_computation(n: int, p: int) -> None:
    X = data(n, p, seed=1)
    rows = torch.arange(n) % 4 == 1
    v = torch.randn(p, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cs = [0.0, 0.3, 2.0, 17.0, 250.0]
    exact = theorem1_cka(X, rows, v, cs)
    vn = (v / v.norm()).numpy()
    for c, value in zip(cs, exact):
        Y = X.numpy() + c * rows.numpy()[:, None] * vn[None, :]
        assert value == pytest.approx(direct_linear_cka(X.numpy(), Y), abs=1e-12)
    assert exact[0] == pytest.approx(1.0, abs=1e-15)


def test_outlier_limit_is_theorem1_with_one_row() -> None:
    X = data(50, 12, seed=3)
    rows = torch.zeros(50, dtype=torch.bool)
    rows[17] = True
    assert outlier_limit(X, 17) == pytest.approx(theorem1_limit(X, rows), rel=1e-12)


def test_theory_refuses_improper_subsets() -> None:
    X = data(20, 3)
    with pytest.raises(ValueError, match="proper non-empty subset"):
        theorem1_limit(X, torch.ones(20, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean mask"):
        theorem1_limit(X, (torch.arange(20) < 5).double())


def test_subset_translation_curve_is_the_exact_finite_c_value() -> None:
    t = tasks.get_task("subset_translation")
    r = evaluate(t, "linear_cka")
    assert np.abs(r.curve["similarity"] - r.curve["linear_cka_theory"]).max() < 1e-12
    s = t.setup("smoke", 0)
    part = s.parts[0]
    X, rows = part.X.numpy(), part.groups[0].numpy()
    for c, value in zip(r.curve["c"][::5], r.curve["similarity"][::5]):  # float64 direct route at the same c
        Y = X + c * rows[:, None] * part.direction.numpy()[None, :]
        assert value == pytest.approx(direct_linear_cka(X, Y), abs=1e-12)


def test_subset_translation_reaches_theorem1_limit_for_any_direction() -> None:
    t = tasks.get_task("subset_translation")
    s = t.setup("smoke", 0)
    part = s.parts[0]
    limit = s.details["theorem1_limit"]
    # the limit recomputed from the cube data in numpy (T1b: any X, difference of subset means)
    X, rows = part.X.numpy(), part.groups[0].numpy()
    gap = X[rows].mean(0) - X[~rows].mean(0)
    Xc = X - X.mean(0)
    t1b = 0.25 * (gap @ gap) / ((Xc**2).sum() / len(X)) * math.sqrt(participation_ratio(part.X))
    assert limit == pytest.approx(t1b, rel=1e-12)
    linear_cka = metrics.get_metric("linear_cka")
    for k in range(3):
        v = unit_vector(X.shape[1], generator(123, k))
        value = float(linear_cka(part.X, translate(part.X, part.groups[0], 1e6 * v)))
        assert abs(value - limit) / limit < 1e-5


def test_outlier_shift_reaches_corollary3_limit() -> None:
    t = tasks.get_task("outlier_shift")
    r = evaluate(t, "linear_cka")
    assert np.abs(r.curve["similarity"] - r.curve["linear_cka_theory"]).max() < 1e-12
    s = t.setup("smoke", 0)
    part = s.parts[0]
    limit = r.details["corollary3_limit"]
    assert 0 < limit < 0.05  # one point of 300 drives linear CKA to ~0
    value = float(metrics.get_metric("linear_cka")(part.X, translate(part.X, part.groups[0], 1e7 * part.direction)))
    assert abs(value - limit) / limit < 1e-4


def test_class_translation_curve_follows_theorem1_per_class() -> None:
    r = evaluate("class_translation", "linear_cka")
    assert np.abs(r.curve["similarity"] - r.curve["linear_cka_theory"]).max() < 1e-12
    last = r.curve[r.curve["x"] == r.curve["x"].max()].sort_values("class")
    limits = np.array(r.details["theorem1_limits"])
    assert np.all(np.abs(last["similarity"].to_numpy() / limits - 1) < 0.05)  # c = 100·σ̄: within O(1/c)
