"""simstress metrics: the built-in metric families, one module each, registered at their definitions.

    from simstress import metrics
    metrics.list_metrics("*cka*")
    m = metrics.get_metric("rbf_cka[sigma=0.5]")   # m(X, Y) -> 0-d tensor; m.spec is the frozen spec
    metrics.score("linear_cka", X, Y)               # numpy or torch in, float out

Every module in this package registers its metrics at import (the decorator `metrics.register`); modules of
installed packages in the entry-point group `simstress.metrics` are imported on first use. The machinery lives in
`simstress.core`; this package re-exports its public API.
"""

from simstress.core.inputs import InputError
from simstress.core.metric import (
    INVARIANCES,
    REGISTRY,
    Metric,
    MetricSpec,
    get_metric,
    list_metrics,
    register,
    score,
)
from simstress.core.registry import DuplicateNameError, PluginError, UnknownNameError


def load_plugins(strict: bool = False) -> None:
    """Import in-repo metric modules and installed plugins now; `strict` turns a broken plugin into an error."""
    REGISTRY.reload_plugins(strict)


__all__ = [
    "INVARIANCES", "REGISTRY", "DuplicateNameError", "InputError", "Metric", "MetricSpec", "PluginError",
    "UnknownNameError", "get_metric", "list_metrics", "load_plugins", "register", "score",
]
