"""simstress tasks: the built-in stress tests with known answers, one module per category, registered at their
definitions; each scores similarity metrics in [0, 1].

    from simstress import get_metric, tasks
    tasks.list_tasks("*", category="robustness")   # names, natural order
    t = tasks.get_task("outlier_shift")            # t.name, t.category, t.version, t.scales, t.summary, docstring
    r = t.evaluate(get_metric("linear_cka"), t.setup("smoke", seed=0))
    r.score, r.curve, r.details                    # float in [0, 1]; DataFrame (x, similarity, ...); dict

Categories: robustness (a function-preserving change; ideal: similarity stays 1), sensitivity (a
function-destroying change; ideal: similarity falls, in order), specificity (the right partner must win).
Every module of this package registers its tasks at import (`tasks.register_task`); modules of installed packages
in the entry-point group `simstress.tasks` are imported on first use. The machinery (`Task`, the registry, scoring
rules, synthetic data, the paper's closed forms) lives in `simstress.core`.
"""

from simstress.core.constants import CATEGORIES, SCALES
from simstress.core.registry import DuplicateNameError, PluginError, UnknownNameError
from simstress.core.task import (
    REGISTRY,
    Built,
    Case,
    NonFiniteOutput,
    NotApplicable,
    Setup,
    Task,
    TaskResult,
    get_task,
    list_tasks,
    register_task,
)


def load_plugins(strict: bool = False) -> None:
    """Import in-repo task modules and installed plugins now; `strict` turns a broken plugin into an error."""
    REGISTRY.reload_plugins(strict)


__all__ = [
    "CATEGORIES", "REGISTRY", "SCALES", "Built", "Case", "DuplicateNameError", "NonFiniteOutput", "NotApplicable",
    "PluginError", "Setup", "Task", "TaskResult", "UnknownNameError", "get_task", "list_tasks", "load_plugins",
    "register_task",
]
