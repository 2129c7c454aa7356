"""The README's tables are written by hand: every built-in metric and task must appear in them (installed
plugins are not expected there)."""

import re
import textwrap
from pathlib import Path

from simstress import metrics, tasks

README_PATH = Path(__file__).resolve().parent.parent / "README.md"
README = README_PATH.read_text()


def _table_ids(heading: str) -> set[str]:
    """First-column ids (`id` or `id[params]`, backquoted) of the table under a `## heading`."""
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.split("`")[1].split("[")[0] for row in rows}


def test_every_metric_is_in_the_readme_table() -> None:
    specs = (metrics.get_metric(m).spec for m in metrics.list_metrics())
    builtin = {s.name for s in specs if s.fn.__module__.startswith("simstress.metrics.")}
    assert _table_ids("Built-in metrics") == builtin


def test_every_task_is_in_the_readme_table() -> None:
    builtin = {n for n in tasks.list_tasks() if type(tasks.get_task(n)).__module__.startswith("simstress.tasks.")}
    assert _table_ids("Stress tasks") == builtin


def test_every_python_block_runs_as_written() -> None:
    """The README's Python blocks, in order, in one namespace: what a newcomer would paste must work."""
    blocks = [textwrap.dedent(body) for _, body in re.findall(r"^( *)```python\n(.*?)^\1```", README, re.S | re.M)]
    assert len(blocks) >= 3
    before = set(metrics.REGISTRY.names())
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
        assert isinstance(namespace["simstress"].score("uncentred_cka", namespace["X"], namespace["Y"]), float)
        assert namespace["check_metric"]("uncentred_cka").passed
    finally:
        for name in set(metrics.REGISTRY.names()) - before:
            metrics.REGISTRY.remove(name)


def tree_entries() -> set[str]:
    """The paths the README's "How it is built" tree names: top-level entries, and entries indented under a folder
    (two spaces per level), joined to that folder."""
    block = README.split("## How it is built\n", 1)[1].split("```\n", 2)[1]
    found, parents = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        parents = parents[:depth]
        path = "".join(parents) + name
        found.add(path.rstrip("/"))
        if name.endswith("/"):
            parents.append(name)
    return found


def test_the_readme_tree_names_every_module_and_results_folder() -> None:
    root = README_PATH.parent
    product = ["simstress", "metrics", "tasks", "benchmark"]
    modules = {p.relative_to(root).as_posix() for top in product for p in (root / top).rglob("*.py")
               if p.name != "__init__.py" or p.parent == root / "simstress"}
    folders = {p.relative_to(root).as_posix() for p in (root / "results").iterdir() if p.is_dir()}
    listed = tree_entries()
    assert modules - listed == set(), "modules missing from the README's tree"
    assert folders - listed == set(), "results folders missing from the README's tree"
    assert {e for e in listed if e.endswith(".py")} - modules == set(), "the tree names modules that do not exist"
