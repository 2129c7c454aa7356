"""Layer × layer similarity maps of one network, and the target maps a manipulation drives them towards.

A map is M[i, j] = s(layer i, layer j) for the eight block outputs of M1, s a registered metric oriented as a
similarity (`MetricSpec.as_similarity`: 1 = identical). `layer_map` computes it through the registry: the metric's
own `layer_map` when it has one (one kernel per layer, every pair from shared products), else pair by pair through
its function (a symmetric metric's upper triangle once). No validation per call, so no host sync: a training loop
validates its first batch through `Metric.__call__` and checks the loss's finiteness when it syncs anyway.

Targets (Davari et al. 2023, §4.3 and Figs. 5–7; entries as (row, column) = value of the lower triangle,
mirrored, diagonal 1):
- `ones`: maximise every entry; `identity`: minimise every off-diagonal entry;
- `first_last`: the network's own map with M[0, 7] = M[7, 0] = 1;
- `christmas_tree`, `goblin`, `carrot`, `sword`, `bow_arrow`: the paper's comical maps (Fig. 6);
- `match:<network>`: the map of another network of the zoo (Fig. 7, a wide network made to look thin).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from simstress.core.metric import Metric, get_metric, pairwise_map

LAYERS = 8
FIXED_TARGETS = ("ones", "identity")
OWN_TARGETS = ("first_last",)
MATCH_PREFIX = "match:"

_Entries = dict[tuple[int, int], float]


def _same(value: float, *cells: tuple[int, int]) -> _Entries:
    return {cell: value for cell in cells}


COMICAL: dict[str, tuple[float, _Entries]] = {
    "goblin": (1.0, {**_same(0.3, (3, 0), (3, 1), (3, 2), (4, 0), (5, 0)),
                             **_same(0.7, (5, 2), (5, 3), (6, 2), (6, 3)),
                             **_same(0.3, (1, 0), (2, 0), (6, 0), (7, 0), (7, 1), (6, 5), (7, 5))}),
    "sword": (0.0, {**_same(0.9, (1, 0), (2, 1), (3, 2), (4, 3)),
                            **_same(0.4, (5, 3), (5, 4), (6, 2), (6, 3)), (7, 6): 0.8}),
    "bow_arrow": (0.0, {(1, 0): 0.7, (2, 0): 0.6, (7, 1): 0.53, (6, 1): 0.53, (7, 0): 0.7, (5, 1): 0.47,
                                (4, 1): 0.63, (3, 2): 0.63, (4, 2): 0.47, (7, 2): 0.57, (7, 3): 0.41, (6, 3): 0.38,
                                (6, 4): 0.7, (5, 4): 0.54}),
    "christmas_tree": (1.0, {**_same(0.9, (5, 2), (7, 4)), **_same(0.3, *((i, 0) for i in range(1, 8))),
                                     **_same(0.3, (5, 1), (6, 1), (7, 1), (6, 2), (7, 2)),
                                     **_same(0.3, (4, 2), (6, 5), (7, 5), (7, 6))}),
    "carrot": (0.3, {**_same(0.9, *((i, i - 1) for i in range(4, 8)), *((i, i - 2) for i in range(5, 8)),
                                     (5, 2), (6, 3)),
                             **_same(0.7, (2, 0), (2, 1), (3, 1))}),
}
TARGETS = (*FIXED_TARGETS, *OWN_TARGETS, *COMICAL, f"{MATCH_PREFIX}<network>")


def check_target(name: str) -> None:
    """Refuse an unknown target name, listing the known ones."""
    if name in FIXED_TARGETS or name in OWN_TARGETS or name in COMICAL:
        return
    if name.startswith(MATCH_PREFIX) and len(name) > len(MATCH_PREFIX):
        return
    raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")


def target_map(name: str, own: torch.Tensor | None = None, other: torch.Tensor | None = None) -> torch.Tensor:
    """The 8×8 target (float64, symmetric, diagonal 1). `own`: the attacked network's map (for `first_last`);
    `other`: the map of the network to match (for `match:<network>`)."""
    check_target(name)
    if name == "ones":
        return torch.ones(LAYERS, LAYERS, dtype=torch.float64)
    if name == "identity":
        return torch.eye(LAYERS, dtype=torch.float64)
    if name == "first_last" or name.startswith(MATCH_PREFIX):
        source = own if name == "first_last" else other
        if source is None or tuple(source.shape) != (LAYERS, LAYERS):
            raise ValueError(f"target {name!r} needs a {LAYERS}×{LAYERS} map of the "
                             f"{'attacked network' if name == 'first_last' else 'network to match'}")
        T = source.detach().to("cpu", torch.float64).clone()
        if name == "first_last":
            T[0, LAYERS - 1] = T[LAYERS - 1, 0] = 1.0
        return T
    base, entries = COMICAL[name]
    T = torch.full((LAYERS, LAYERS), base, dtype=torch.float64)
    for (i, j), value in entries.items():
        T[i, j] = T[j, i] = value
    T.fill_diagonal_(1.0)
    return T


def estimator(attacker: str) -> Metric:
    """The metric a training loss evaluates on each minibatch for `attacker` (`MetricSpec.minibatch`, else itself).

    Refuses a metric that cannot be optimised: not differentiable, or needing class labels.
    """
    metric = get_metric(attacker)
    if not metric.spec.differentiable:
        raise ValueError(f"{metric.id} is not differentiable (its spec says so), so no gradient can manipulate its "
                         f"map; pick a differentiable metric (`simstress list metrics` marks them)")
    if metric.spec.needs_labels:
        raise ValueError(f"{metric.id} needs class labels; a manipulation attacks label-free metrics")
    return get_metric(metric.spec.minibatch) if metric.spec.minibatch else metric


def layer_map(metric: Metric, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """(L, L) map M[i, j] = metric.as_similarity(metric(layers[i], layers[j])), autograd kept, no validation."""
    spec, params = metric.spec, dict(metric.params)
    if spec.layer_map is not None:
        return metric.as_similarity(spec.layer_map(list(layers), **params))
    return metric.as_similarity(pairwise_map(spec.fn, layers, spec.symmetric, **params))


def direct_map(metric: Metric, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """The map from validated pairwise calls of the registered metric (`Metric.__call__`), without gradients:
    the reference route that every reported map takes."""
    with torch.no_grad():
        return torch.tensor([[float(metric.as_similarity(metric(a, b))) for b in layers] for a in layers],
                            dtype=torch.float64)


def off_diagonal_error(M: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Mean |M − T| over the off-diagonal entries (the diagonal is 1 for every self-similar metric)."""
    mask = ~torch.eye(M.shape[0], dtype=torch.bool, device=M.device)
    return (M - T.to(M)).abs()[mask].mean()
