"""simstress tasks: stress tests with known answers that score similarity metrics in [0, 1].

    import tasks
    tasks.list_tasks("*")                      # names, natural order
    t = tasks.get_task("outlier_shift")        # t.name, t.category, t.version, t.scales, t.summary, docstring
    r = t.evaluate("linear_cka", scale="smoke", seed=0, device=None)
    r.score, r.curve, r.details                # float in [0, 1]; DataFrame (x, similarity, ...); dict

Categories (DESIGN.md §3): robustness (a function-preserving change; ideal: similarity stays 1), sensitivity (a
function-destroying change; ideal: similarity falls, in order), specificity (the right partner must win).
Every module of this package registers its tasks at import (`tasks.register_task`); modules of installed packages
in the entry-point group `simstress.tasks` are imported on first use.
"""

from metrics.registry import DuplicateNameError, PluginError, UnknownNameError

from .spec import (
    CATEGORIES, REGISTRY, SCALES, Case, NotApplicable, Setup, Task, TaskResult, get_task, list_tasks, register_task,
)


def load_plugins(strict: bool = False) -> None:
    """Import in-repo task modules and installed plugins now; `strict` turns a broken plugin into an error."""
    REGISTRY.reload_plugins(strict)


__all__ = [
    "CATEGORIES", "REGISTRY", "SCALES", "Case", "DuplicateNameError", "NotApplicable", "PluginError", "Setup",
    "Task", "TaskResult", "UnknownNameError", "get_task", "list_tasks", "load_plugins", "register_task",
]
