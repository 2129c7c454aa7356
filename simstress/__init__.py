"""simstress: stress tests for representation-similarity metrics, and the leaderboard they feed.

    import simstress
    simstress.score("linear_cka", X, Y)          # numpy or torch in, float out
    simstress.list_metrics("*cka*", differentiable=True)
    simstress.get_metric("rbf_cka[sigma=0.5]")   # callable on torch tensors; .spec holds its properties
    simstress.list_tasks(category="robustness"); simstress.get_task("outlier_shift")

The repository's folders `metrics/`, `tasks/` and `benchmark/` are installed as `simstress.metrics`,
`simstress.tasks` and `simstress.benchmark`, so a user's own `metrics.py` cannot shadow them; `simstress.core`
holds what they build on. The API below loads on first use (torch takes seconds to import; `simstress --help`
should not wait for it).
"""

import importlib
from typing import Any

_API = {
    "InputError": "simstress.core.inputs",
    "get_metric": "simstress.core.metric", "list_metrics": "simstress.core.metric",
    "register": "simstress.core.metric", "score": "simstress.core.metric",
    "get_task": "simstress.core.task", "list_tasks": "simstress.core.task", "register_task": "simstress.core.task",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'simstress' has no attribute {name!r}")
