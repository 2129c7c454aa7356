"""simstress: stress tests for representation-similarity metrics, and the leaderboard they feed.

    import simstress
    simstress.score("linear_cka", X, Y)          # numpy or torch in, float out
    simstress.list_metrics("*cka*", differentiable=True)
    simstress.get_metric("rbf_cka[sigma=0.5]")   # callable on torch tensors; .spec holds its properties
    simstress.list_tasks(category="robustness"); simstress.get_task("outlier_shift")

The repository's folders `metrics/`, `tasks/` and `benchmark/` are installed as `simstress.metrics`,
`simstress.tasks` and `simstress.benchmark`, so a user's own `metrics.py` cannot shadow them; `simstress.core`
holds what they build on.
"""

from simstress.core.inputs import InputError
from simstress.core.metric import get_metric, list_metrics, register, score
from simstress.core.task import get_task, list_tasks, register_task

__all__ = ["InputError", "get_metric", "get_task", "list_metrics", "list_tasks", "register", "register_task", "score"]
