"""The conformance suite every registered metric must pass, built-in or plugin.

Used by `tests/test_conformance.py` (parametrised over the registry) and by `simstress check ID`. Each check
builds its inputs by construction (netrep style: a rotated copy must score the same), so a failure names a
property, not a number someone typed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .inputs import InputError
from .metric import INVARIANCES, Metric, get_metric, score

TOL_INVARIANCE = 1e-6
TOL_FLOAT32 = 1e-3
TRANSLATION_FLOOR = 0.999
TRANSLATION_OFFSETS = (1e3, 5e3, 1e4, 2e4)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ConformanceReport:
    metric_id: str
    checks: tuple[Check, ...]
    declared: frozenset[str]
    observed: frozenset[str] = field(default_factory=frozenset)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Data:
    """Correlated pair (X, Y) with class labels: a shared 5-d latent plus independent noise, float64."""

    X: torch.Tensor
    Y: torch.Tensor
    labels: torch.Tensor


def make_data(n: int = 300, p1: int = 20, p2: int = 15, seed: int = 0, device: str | None = None) -> Data:
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, 5, generator=g, dtype=torch.float64)
    X = Z @ torch.randn(5, p1, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, p1, generator=g,
                                                                                       dtype=torch.float64)
    Y = Z @ torch.randn(5, p2, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, p2, generator=g,
                                                                                       dtype=torch.float64)
    labels = (Z[:, :3] + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64)).argmax(1)
    return Data(X.to(device), Y.to(device), labels.to(device))


def make_relu_data(n: int = 2000, p: int = 256, seed: int = 0) -> Data:
    """ReLU-like activations with class structure (the setting of Davari et al. 2023, §3's float32 trap)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    means = 1.5 * torch.randn(4, p, generator=g, dtype=torch.float64)
    mix = torch.randn(p, p, generator=g, dtype=torch.float64) / math.sqrt(p)
    X = torch.relu(means[labels] + torch.randn(n, p, generator=g, dtype=torch.float64) @ mix)
    return Data(X, X, labels)


def _transforms(p: int, g: torch.Generator) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """One instance of each declared-invariance family for a p-feature representation."""
    f64 = {"generator": g, "dtype": torch.float64}
    Q = torch.linalg.qr(torch.randn(p, p, **f64))[0]
    M = torch.eye(p, dtype=torch.float64) + 0.5 * torch.randn(p, p, **f64) / math.sqrt(p)
    t = 5.0 * torch.randn(p, **f64)
    perm = torch.randperm(p, generator=g)
    return {
        "translation": lambda A: A + t.to(A.device),
        "isotropic_scaling": lambda A: 3.7 * A,
        "orthogonal": lambda A: A @ Q.to(A.device),
        "permutation": lambda A: A[:, perm.to(A.device)],
        "invertible_linear": lambda A: A @ M.to(A.device),
    }


def _value(m: Metric, X: torch.Tensor, Y: torch.Tensor, labels: torch.Tensor) -> float:
    return float(m(X, Y, labels=labels).detach())


def check_scalar(m: Metric, d: Data) -> Check:
    v = m(d.X, d.Y, labels=d.labels)
    ok = isinstance(v, torch.Tensor) and v.ndim == 0 and bool(torch.isfinite(v))
    return Check("finite_scalar", ok, f"value {v!r}" if not ok else f"value {float(v):.6g}")


def check_range(m: Metric, d: Data) -> Check:
    lo, hi = m.spec.value_range
    vals = [_value(m, d.X, d.Y, d.labels), _value(m, d.X, d.X, d.labels), _value(m, d.Y, d.X, d.labels)]
    ok = all(lo - 1e-9 <= v <= hi + 1e-9 for v in vals)
    return Check("in_range", ok, f"values {[round(v, 6) for v in vals]} within [{lo}, {hi}]")


def check_self_max(m: Metric, d: Data) -> Check:
    g = torch.Generator().manual_seed(1)
    self_v = _value(m, d.X, d.X, d.labels)
    noisy = d.X + 0.5 * torch.randn(d.X.shape, generator=g, dtype=d.X.dtype).to(d.X.device)
    others = [_value(m, d.X, d.Y, d.labels), _value(m, d.X, noisy, d.labels)]
    sim = m.spec.as_similarity
    ok = abs(self_v - m.spec.best) <= TOL_INVARIANCE and all(sim(o) <= sim(self_v) + 1e-9 for o in others)
    return Check("self_max", ok, f"m(X, X) = {self_v:.9g} (best {m.spec.best}); others {[round(o, 6) for o in others]}")


def check_symmetry(m: Metric, d: Data) -> Check:
    a, b = _value(m, d.X, d.Y, d.labels), _value(m, d.Y, d.X, d.labels)
    ok = abs(a - b) <= TOL_INVARIANCE
    return Check("symmetric", ok, f"m(X, Y) = {a:.9g}, m(Y, X) = {b:.9g}")


def invariance_delta(m: Metric, d: Data, name: str) -> float:
    """Largest change of the value under one transform family, applied to X and to Y separately."""
    base = _value(m, d.X, d.Y, d.labels)
    g = torch.Generator().manual_seed(2)
    tx, ty = _transforms(d.X.shape[1], g)[name], _transforms(d.Y.shape[1], g)[name]
    return max(abs(_value(m, tx(d.X), d.Y, d.labels) - base), abs(_value(m, d.X, ty(d.Y), d.labels) - base))


def check_float32(m: Metric, d: Data) -> Check:
    v64 = _value(m, d.X, d.Y, d.labels)
    v32 = _value(m, d.X.float(), d.Y.float(), d.labels)
    ok = abs(v32 - v64) <= TOL_FLOAT32
    return Check("float32", ok, f"float32 {v32:.7g} vs float64 {v64:.7g}")


def check_gradients(m: Metric, d: Data) -> Check:
    X, Y = d.X.clone().requires_grad_(True), d.Y.clone().requires_grad_(True)
    m(X, Y, labels=d.labels).backward()
    ok = all(G is not None and bool(torch.isfinite(G).all()) for G in (X.grad, Y.grad))
    return Check("gradients", ok, "finite gradients w.r.t. X and Y" if ok else "missing or non-finite gradients")


def check_layer_map(m: Metric, d: Data) -> Check:
    """A declared `layer_map` must equal the metric's function on every pair of a list of layers (float64): one
    list with a rank-deficient layer (where a map that shares products may have to go pair by pair) and one of
    full-rank layers (where it shares them)."""
    g = torch.Generator().manual_seed(4)
    mixed = d.Y + 0.3 * d.X[:, :15]
    lists = ([d.X, d.Y, d.X[:, :7] @ torch.randn(7, 9, generator=g, dtype=d.X.dtype), mixed], [d.X, d.Y, mixed])
    gap = 0.0
    for layers in lists:
        fast = m.spec.layer_map(layers, **m.params)
        pairwise = torch.stack([torch.stack([m(a, b, labels=d.labels) for b in layers]) for a in layers])
        if fast.shape != pairwise.shape:
            return Check("layer_map", False, f"layer_map's shape {tuple(fast.shape)} for {len(layers)} layers")
        gap = max(gap, float((fast - pairwise).abs().max()))
    return Check("layer_map", gap <= 1e-9, f"max |layer_map − pairwise| {gap:.2e} over a 4×4 map with a "
                 f"rank-deficient layer and a 3×3 map of full-rank layers (tolerance 1e-09)")


def check_minibatch(m: Metric, d: Data) -> Check:
    """A declared `minibatch` estimator must be a registered differentiable metric."""
    try:
        other = get_metric(m.spec.minibatch)
    except (LookupError, ValueError) as exc:
        return Check("minibatch", False, f"{m.spec.minibatch!r} does not resolve: {exc}")
    ok = other.spec.differentiable and not other.spec.needs_labels
    return Check("minibatch", ok, f"estimated on minibatches by {other.id}" + ("" if ok else
                 ", which is not a label-free differentiable metric"))


def check_bad_input(m: Metric, d: Data) -> Check:
    """score() must refuse mismatched rows, NaN and too few samples with InputError."""
    bad_nan = d.X.clone()
    bad_nan[0, 0] = float("nan")
    k = m.spec.min_samples - 1
    cases = {
        "mismatched rows": (d.X, d.Y[:-1], d.labels),
        "NaN": (bad_nan, d.Y, d.labels),
        f"{k} samples": (d.X[:k], d.Y[:k], d.labels[:k]),
    }
    missed = []
    for what, (X, Y, lab) in cases.items():
        try:
            score(m.id, X, Y, labels=lab)
            missed.append(what)
        except InputError:
            pass
    return Check("bad_input", not missed, f"accepted {missed}" if missed else "rejected " + ", ".join(cases))


def check_float32_translation(m: Metric, d: Data | None = None) -> Check:
    """Y = X + c·1vᵀ in float32 for c up to 2e4 must stay >= 0.999 (Davari et al. 2023, §3)."""
    r = make_relu_data()
    g = torch.Generator().manual_seed(3)
    v = torch.randn(r.X.shape[1], generator=g, dtype=torch.float64)
    v /= v.norm()
    X32 = r.X.float()
    worst = min(
        float(m.spec.as_similarity(_value(m, X32, (r.X + c * v).float(), r.labels))) for c in TRANSLATION_OFFSETS
    )
    return Check("float32_translation", worst >= TRANSLATION_FLOOR, f"min oriented similarity {worst:.6f} "
                 f"over c in {TRANSLATION_OFFSETS} (floor {TRANSLATION_FLOOR})")


def applicable_checks(m: Metric) -> list[str]:
    names = ["finite_scalar", "in_range", "self_max", "float32", "bad_input"]
    if m.spec.symmetric:
        names.append("symmetric")
    if m.spec.differentiable:
        names.append("gradients")
    if m.spec.layer_map is not None:
        names.append("layer_map")
    if m.spec.minibatch is not None:
        names.append("minibatch")
    names += [f"invariance:{i}" for i in sorted(m.spec.invariances)]
    if "translation" in m.spec.invariances:
        names.append("float32_translation")
    return names


_CHECKS: dict[str, Callable[[Metric, Data], Check]] = {
    "finite_scalar": check_scalar,
    "in_range": check_range,
    "self_max": check_self_max,
    "symmetric": check_symmetry,
    "float32": check_float32,
    "gradients": check_gradients,
    "layer_map": check_layer_map,
    "minibatch": check_minibatch,
    "bad_input": check_bad_input,
    "float32_translation": check_float32_translation,
}


def run_check(metric_id: str, name: str, data: Data | None = None) -> Check:
    """One named check (as listed by `applicable_checks`) for one metric id."""
    m = get_metric(metric_id)
    d = data or make_data()
    if name.startswith("invariance:"):
        delta = invariance_delta(m, d, name.split(":", 1)[1])
        return Check(name, delta <= TOL_INVARIANCE, f"max change {delta:.2e} (tolerance {TOL_INVARIANCE:g})")
    return _CHECKS[name](m, d)


def check_metric(metric_id: str) -> ConformanceReport:
    """Run every applicable check; also report which invariances are observed, declared or not."""
    m = get_metric(metric_id)
    d = make_data()
    checks = []
    observed: frozenset[str] = frozenset()
    for name in applicable_checks(m):
        try:
            if name.startswith("invariance:"):
                continue
            checks.append(run_check(metric_id, name, d))
        except Exception as exc:  # noqa: BLE001 (a crashing check is a failed check, reported with its error)
            checks.append(Check(name, False, f"raised {type(exc).__name__}: {exc}"))
    try:
        deltas = {inv: invariance_delta(m, d, inv) for inv in INVARIANCES}
        observed = frozenset(k for k, v in deltas.items() if v <= TOL_INVARIANCE)
        for inv in sorted(m.spec.invariances):
            checks.append(Check(f"invariance:{inv}", inv in observed,
                                f"max change {deltas[inv]:.2e} (tolerance {TOL_INVARIANCE:g})"))
    except Exception as exc:  # noqa: BLE001 (as above)
        checks.append(Check("invariances", False, f"raised {type(exc).__name__}: {exc}"))
    return ConformanceReport(m.id, tuple(checks), m.spec.invariances, observed)
