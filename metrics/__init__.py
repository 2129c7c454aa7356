"""simstress metrics: a registry of representation-similarity metrics.

    import metrics
    metrics.list_metrics("*cka*")
    m = metrics.get_metric("rbf_cka[sigma=0.5]")   # m(X, Y) -> 0-d tensor; m.spec is the frozen spec
    metrics.score("linear_cka", X, Y)               # numpy or torch in, float out

Every module in this package registers its metrics at import (the decorator `metrics.register`); modules of
installed packages in the entry-point group `simstress.metrics` are imported on first use.
"""

from .inputs import InputError, score
from .registry import DuplicateNameError, PluginError, UnknownNameError
from .spec import INVARIANCES, REGISTRY, Metric, MetricSpec, get_metric, list_metrics, register


def load_plugins(strict: bool = False) -> None:
    """Import in-repo metric modules and installed plugins now; `strict` turns a broken plugin into an error."""
    REGISTRY.reload_plugins(strict)


__all__ = [
    "INVARIANCES", "REGISTRY", "DuplicateNameError", "InputError", "Metric", "MetricSpec", "PluginError",
    "UnknownNameError", "get_metric", "list_metrics", "load_plugins", "register", "score",
]
