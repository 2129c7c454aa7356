"""The metric protocol: specs, parameterised ids (`rbf_cka[sigma=0.5]`), `register`, lookup, listing, `score`.

A metric is a torch function `f(X, Y, **params) -> 0-d Tensor` registered where it is defined; `score` is the one
public entry that takes numpy or torch, validates and returns a float.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

import torch

from .inputs import (
    Reduce,
    as_tensor,
    input_precision,
    recorded_precision,
    reduce_activations,
    resolve_device,
    source_dtype,
    validate,
)
from .registry import Registry, UnknownNameError, closest, glob_match, natural_key

INVARIANCES = ("translation", "isotropic_scaling", "orthogonal", "permutation", "invertible_linear")
Kind = Literal["similarity", "distance"]
MetricFn = Callable[..., torch.Tensor]
LayerMapFn = Callable[..., torch.Tensor]
DiagnoseFn = Callable[..., Mapping[str, float]]

REGISTRY: Registry[MetricSpec] = Registry("metric", "simstress.metrics", "simstress.metrics")


@dataclass(frozen=True)
class MetricSpec:
    """Everything the suite knows about a metric besides its code. Frozen: a change of values bumps `version`."""

    name: str
    fn: MetricFn = field(repr=False, compare=False)
    kind: Kind
    symmetric: bool
    invariances: frozenset[str]
    needs_labels: bool
    differentiable: bool
    min_samples: int
    cost: str
    reference: str
    version: int
    params: Mapping[str, Any]
    value_range: tuple[float, float]
    variants: tuple[Mapping[str, Any], ...]
    summary: str
    check_params: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)
    # `layer_map(layers, **params) -> (L, L)`: the metric between every pair of a list of layers at once, from
    # shared per-layer products; it must equal the pairwise values (conformance). None: computed pair by pair.
    layer_map: LayerMapFn | None = field(default=None, repr=False, compare=False)
    # The metric id a training loss evaluates on each minibatch in this metric's stead (None: the metric itself),
    # for a metric whose plain estimate is biased on small batches (linear CKA → the unbiased HSIC₁ form).
    minibatch: str | None = None
    # A reference of trivial behaviour, by role ("constant", "blind", "random"; "" for a real metric): scored on
    # every task and shown on the page for what it earns, never ranked.
    calibration: str = ""
    # `diagnose(X, **params) -> {name: value}`: what the metric's own construction makes of one representation
    # (e.g. how close its kernel is to the identity), recorded per task beside the score, so that the page can say
    # where a value comes from a degenerate construction rather than from the data.
    diagnose: DiagnoseFn | None = field(default=None, repr=False, compare=False)
    # {diagnostic name: bar}: a diagnosed value below its bar means the construction is degenerate on that data
    # (e.g. a kernel numerically close to the identity), and the page flags the score it gave there.
    degenerate_below: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def best(self) -> float:
        """The value of a perfect match: the top of the range for a similarity, the bottom for a distance."""
        return self.value_range[1] if self.kind == "similarity" else self.value_range[0]

    def as_similarity(self, value: float | torch.Tensor) -> float | torch.Tensor:
        """Orient a value as "higher = more similar", with a perfect match at 1 where the range allows.

        similarity: unchanged. distance with a finite range [lo, hi]: 1 − (v − lo)/(hi − lo).
        distance unbounded above: 1 / (1 + v − lo).
        """
        if self.kind == "similarity":
            return value
        lo, hi = self.value_range
        if math.isfinite(hi):
            return 1.0 - (value - lo) / (hi - lo)
        return 1.0 / (1.0 + (value - lo))


def pairwise_map(fn: Callable[..., torch.Tensor], layers: Sequence[Any], symmetric: bool, **params: Any,
                 ) -> torch.Tensor:
    """(L, L) map M[i, j] = fn(layers[i], layers[j], **params) pair by pair, autograd kept, no validation; a
    symmetric metric's lower triangle mirrors its upper one. The route of a metric without its own `layer_map`,
    and the fallback of one whose shared products do not decide every pair (`layers` may then be indices into
    them)."""
    L = len(layers)
    entries: dict[tuple[int, int], torch.Tensor] = {}
    for i in range(L):
        for j in range(L):
            entries[i, j] = entries[j, i] if symmetric and j < i else fn(layers[i], layers[j], **params)
    return torch.stack([torch.stack([entries[i, j] for j in range(L)]) for i in range(L)])


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def canonical_id(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """`name[k=v,...]` with only non-default parameters, sorted, so equal metrics share one id."""
    diff = {k: v for k, v in params.items() if v != defaults[k]}
    if not diff:
        return name
    return f"{name}[{','.join(f'{k}={format_value(diff[k])}' for k in sorted(diff))}]"


_ID = re.compile(r"^\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*$")


def _coerce(name: str, key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        return text
    except ValueError:
        raise ValueError(
            f"parameter {key}={text!r} of metric {name!r} must be {type(default).__name__} "
            f"(default {format_value(default)})"
        ) from None


def parse_id(metric_id: str) -> tuple[MetricSpec, dict[str, Any]]:
    """Split `name[k=v,...]` into the registered spec and the full parameter dict (defaults filled in)."""
    m = _ID.match(metric_id)
    if not m:
        raise ValueError(f"malformed metric id {metric_id!r}; expected NAME or NAME[param=value,...]")
    name, body = m.group(1), m.group(2)
    spec = REGISTRY.get(name)
    params = dict(spec.params)
    given: set[str] = set()
    if body and body.strip():
        for item in body.split(","):
            if "=" not in item:
                raise ValueError(f"malformed parameter {item.strip()!r} in {metric_id!r}; expected param=value")
            key, text = (s.strip() for s in item.split("=", 1))
            if key in given:
                raise ValueError(f"parameter {key!r} is given twice in {metric_id!r}; give each parameter once")
            given.add(key)
            if key not in spec.params:
                near = closest(key, list(spec.params)) or list(spec.params)
                hint = f"valid: {', '.join(near)}" if near else "it takes no parameters"
                raise UnknownNameError(f"metric {name!r} has no parameter {key!r}; {hint}")
            params[key] = _coerce(name, key, text, spec.params[key])
    if spec.check_params is not None:
        spec.check_params(params)
    return spec, params


class Metric:
    """A metric bound to its parameters: call it on torch tensors, get a 0-d tensor (autograd kept).

    A call validates its input (`simstress.core.inputs.validate`: the checks `score` relies on) and the metric
    function's answer (a 0-d tensor), so a direct call is as safe as `score`. It records each input's precision
    for the metric (`simstress.core.inputs.input_dtypes`): `input_dtypes` given by `score` (the dtypes the data
    came in), else the tensors' own, each coarsened to the dtype it is computed in.
    """

    def __init__(self, spec: MetricSpec, params: dict[str, Any]) -> None:
        self.spec = spec
        self.params = MappingProxyType(dict(params))
        self.id = canonical_id(spec.name, params, spec.params)

    def __repr__(self) -> str:
        return f"Metric({self.id!r})"

    def __call__(self, X: torch.Tensor, Y: torch.Tensor, labels: Any = None,
                 input_dtypes: tuple[torch.dtype, torch.dtype] | None = None) -> torch.Tensor:
        given = X, Y
        X, Y, labels = validate(self.spec, X, Y, labels)
        sources = input_dtypes or (given[0].dtype, given[1].dtype)  # a direct call: the tensors as passed
        with recorded_precision(X, Y, *(input_precision(s, X.dtype) for s in sources)):
            if self.spec.needs_labels:
                value = self.spec.fn(X, Y, labels=labels, **self.params)
            else:
                value = self.spec.fn(X, Y, **self.params)
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else (
                f"a {type(value).__name__}")
            raise TypeError(f"metric {self.spec.name!r} returned {got}; a metric function must return a 0-d torch "
                            f"tensor (reduce to one value, e.g. .mean(), or wrap a number with torch.tensor)")
        return value

    def as_similarity(self, value: float | torch.Tensor) -> float | torch.Tensor:
        return self.spec.as_similarity(value)

    def diagnose(self, X: torch.Tensor) -> Mapping[str, float]:
        """`MetricSpec.diagnose` on one representation with this metric's parameters ({} when it has none)."""
        if self.spec.diagnose is None:
            return {}
        with torch.no_grad():
            return dict(self.spec.diagnose(X, **self.params))


def get_metric(metric_id: str) -> Metric:
    """The metric for an id such as `linear_cka` or `rbf_cka[sigma=0.5]`; unknown ids list the closest ones."""
    spec, params = parse_id(metric_id)
    return Metric(spec, params)


def list_metrics(pattern: str = "*", exclude: str | None = None, **where: Any) -> list[str]:
    """Registered metric ids (base names and their declared variants) matching a glob, in natural order.

    `exclude` drops ids matching its globs; `where` keeps metrics whose spec has those values, e.g.
    `list_metrics(differentiable=True)` or `list_metrics("*cka*", needs_labels=False)`.
    """
    unknown = set(where) - {f.name for f in fields(MetricSpec)}
    if unknown:
        raise ValueError(f"metric specs have no field {sorted(unknown)}; filter on e.g. differentiable, "
                         f"needs_labels, kind, symmetric")
    ids = []
    for name in REGISTRY.names():
        spec = REGISTRY.get(name)
        if any(getattr(spec, k) != v for k, v in where.items()):
            continue
        ids.append(name)
        ids.extend(canonical_id(name, {**spec.params, **v}, spec.params) for v in spec.variants)
    return glob_match(sorted(set(ids), key=natural_key), pattern, exclude)


def register(
    *,
    kind: Kind = "similarity",
    symmetric: bool = True,
    invariances: tuple[str, ...] | frozenset[str] = (),
    needs_labels: bool = False,
    differentiable: bool = False,
    min_samples: int = 2,
    cost: str,
    reference: str,
    version: int = 1,
    value_range: tuple[float, float] = (0.0, 1.0),
    variants: tuple[Mapping[str, Any], ...] = (),
    check_params: Callable[[dict[str, Any]], None] | None = None,
    layer_map: LayerMapFn | None = None,
    minibatch: str | None = None,
    calibration: str = "",
    diagnose: DiagnoseFn | None = None,
    degenerate_below: Mapping[str, float] | None = None,
    name: str | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(X, Y, *, [labels,] **params) -> 0-d Tensor` under its function name (or `name`).

    Parameters are the keyword-only arguments of `fn` with their defaults; `variants` are extra parameter sets
    that `list_metrics` (and so the leaderboard) includes as ids of their own. The docstring's first line is the
    one-line summary shown by `simstress list metrics`. `layer_map`, `minibatch`, `calibration`, `diagnose` and
    `degenerate_below`: see `MetricSpec`.
    """
    bad = set(invariances) - set(INVARIANCES)
    if bad:
        raise ValueError(f"unknown invariances {sorted(bad)}; choose from {INVARIANCES}")
    if kind not in ("similarity", "distance"):
        raise ValueError(f"kind must be 'similarity' or 'distance', got {kind!r}")
    if degenerate_below and diagnose is None:
        raise ValueError("degenerate_below names diagnostics: register the `diagnose` that computes them too")

    def decorate(fn: MetricFn) -> MetricFn:
        sig = inspect.signature(fn)
        params = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "labels"
        }
        if any(v is inspect.Parameter.empty for v in params.values()):
            raise ValueError(f"every keyword-only parameter of {fn.__name__} needs a default")
        for v in variants:
            unknown = set(v) - set(params)
            if unknown:
                raise ValueError(f"variant {dict(v)} of {fn.__name__} names unknown parameters {sorted(unknown)}")
        doc = inspect.getdoc(fn)
        if not doc:
            raise ValueError(f"metric {fn.__name__} needs a docstring with its formula and a citation")
        spec = MetricSpec(
            name=name or fn.__name__,
            fn=fn,
            kind=kind,
            symmetric=symmetric,
            invariances=frozenset(invariances),
            needs_labels=needs_labels,
            differentiable=differentiable,
            min_samples=min_samples,
            cost=cost,
            reference=reference,
            version=version,
            params=MappingProxyType(params),
            value_range=value_range,
            variants=tuple(MappingProxyType(dict(v)) for v in variants),
            summary=doc.splitlines()[0],
            check_params=check_params,
            layer_map=layer_map,
            minibatch=minibatch,
            calibration=calibration,
            diagnose=diagnose,
            degenerate_below=MappingProxyType(dict(degenerate_below or {})),
        )
        REGISTRY.add(spec.name, spec, f"{fn.__module__}.{fn.__qualname__}")
        return fn

    return decorate


def score(
    metric_id: str,
    X: Any,
    Y: Any,
    labels: Any = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    reduce: Reduce | None = None,
) -> float:
    """Convert, validate and score: `metrics.score("linear_cka", X, Y) -> float`.

    X (n, p1) and Y (n, p2) are numpy arrays or torch tensors on any device, rows the same n inputs. Higher-rank
    activations need `reduce`. Computation runs on `device` (default: X's device) in `dtype` (default float64;
    narrower floats are computed in float32, `simstress.core.inputs`' precision rule). The dtypes X and Y came in
    travel with them as their input precision (float32 activations keep float32's rounding floor when computed in
    float64). The checks are the `Metric`'s own, so a direct call validates alike.
    """
    m = get_metric(metric_id)
    dev = resolve_device(device)
    Xt, Yt = (reduce_activations(as_tensor(A, which, dtype, dev), reduce, which) for which, A in (("X", X), ("Y", Y)))
    sources = (source_dtype(X), source_dtype(Y))
    with torch.no_grad():
        return float(m(Xt, Yt.to(Xt.device), labels=labels, input_dtypes=sources))
