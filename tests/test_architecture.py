"""The layout holds: one namespace a user's files cannot shadow, layers that only import downwards, no import
cycle between modules, and cells that are pure work units (plain data in, the same record out, in any process)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

from simstress import get_metric
from simstress.benchmark.cells import Cell, execute

REPO = Path(__file__).resolve().parent.parent
# Each layer may import only the layers below it (the standard library and third-party packages aside):
# core ← data ← networks, core ← metrics ← streaming; all of them ← tasks ← benchmark.
LAYERS = {"core": "simstress/core", "data": "simstress/data", "networks": "simstress/networks", "metrics": "metrics",
          "streaming": "simstress/streaming.py", "tasks": "tasks", "benchmark": "benchmark"}
PACKAGES = {"core": "simstress.core", "data": "simstress.data", "networks": "simstress.networks",
            "metrics": "simstress.metrics", "streaming": "simstress.streaming", "tasks": "simstress.tasks",
            "benchmark": "simstress.benchmark"}
BELOW = {"core": set(), "data": {"core"}, "networks": {"core", "data"}, "metrics": {"core"},
         "streaming": {"core", "metrics"}, "tasks": {"core", "data", "networks", "metrics"},
         "benchmark": {"core", "data", "networks", "metrics", "streaming", "tasks"}}
# Modules each layer must hold: a scan that finds none of them has scanned the wrong place.
EXPECTED = {"core": {"simstress.core.record", "simstress.core.page", "simstress.core.task", "simstress.core.metric"},
            "data": {"simstress.data.fashion_mnist"}, "networks": {"simstress.networks.zoo"},
            "metrics": {"simstress.metrics.cka", "simstress.metrics.cca"}, "streaming": {"simstress.streaming"},
            "tasks": {"simstress.tasks.robustness", "simstress.tasks.zoo_page"},
            "benchmark": {"simstress.benchmark.runner", "simstress.benchmark.executors",
                          "simstress.benchmark.perf.cli"}}


def modules(root: Path) -> dict[str, tuple[str, Path]]:
    """Every module of the product under `root`, by its installed name: (layer, path)."""
    found = {}
    for layer, rel in LAYERS.items():
        base = root / rel
        paths = [base] if base.suffix == ".py" else sorted(base.rglob("*.py"))
        for path in paths:
            parts = [] if base.suffix == ".py" else list(path.relative_to(base).with_suffix("").parts)
            if parts and parts[-1] == "__init__":
                parts.pop()
            found[".".join([PACKAGES[layer], *parts])] = (layer, path)
    return found


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of everything a module imports, at any depth of its code (relative imports resolved), but
    for imports under `if TYPE_CHECKING:`, which never run."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            stem = ".".join(p for p in (base, node.module) if p)
            names |= {stem} | {f"{stem}.{a.name}" for a in node.names}
    return names


def upward_imports(root: Path) -> list[str]:
    """Every import of a layer above (or beside) a module's own, and every import of the repository's folders by
    their bare names (which a user's own `metrics.py` would shadow)."""
    found = modules(root)
    layer_of = {name: layer for name, (layer, _) in found.items()}
    bad = []
    for name, (layer, path) in found.items():
        for imported in imported_modules(path, name):
            if imported.split(".")[0] in ("metrics", "tasks", "benchmark"):
                bad.append(f"{path.relative_to(root)} imports {imported} (import it as simstress.{imported})")
                continue
            target = next((layer_of[m] for m in (imported, imported.rsplit(".", 1)[0]) if m in layer_of), None)
            if target is not None and target != layer and target not in BELOW[layer]:
                bad.append(f"{path.relative_to(root)} ({layer}) imports {imported} ({target})")
    return bad


def test_every_layer_is_scanned_and_imports_only_downwards() -> None:
    found = modules(REPO)
    for layer, expected in EXPECTED.items():
        assert expected <= {n for n, (lay, _) in found.items() if lay == layer}, layer
    assert len(found) > 60  # every module of the product, not a few
    assert upward_imports(REPO) == []


def test_a_planted_upward_import_fails_the_layering_check(tmp_path: Path) -> None:
    for rel in LAYERS.values():
        src = REPO / rel
        if src.suffix == ".py":
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp_path / rel)
        else:
            shutil.copytree(src, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    assert upward_imports(tmp_path) == []
    (tmp_path / "simstress/core/leak.py").write_text("def f():\n    from simstress.benchmark import runner\n")
    (tmp_path / "metrics/leak.py").write_text("from ..streaming import score\n")
    (tmp_path / "tasks/leak.py").write_text("import benchmark.cli\n")
    assert sorted(upward_imports(tmp_path)) == [
        "metrics/leak.py (metrics) imports simstress.streaming (streaming)",
        "metrics/leak.py (metrics) imports simstress.streaming.score (streaming)",
        "simstress/core/leak.py (core) imports simstress.benchmark (benchmark)",
        "simstress/core/leak.py (core) imports simstress.benchmark.runner (benchmark)",
        "tasks/leak.py imports benchmark.cli (import it as simstress.benchmark.cli)",
    ]


def test_no_two_modules_import_each_other_in_a_cycle() -> None:
    found = modules(REPO)
    graph = {name: {m for imp in imported_modules(path, name) for m in (imp, imp.rsplit(".", 1)[0])
                    if m in found and m != name} for name, (_, path) in found.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of the code
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_core_loads_no_metric_task_or_runner_module() -> None:
    code = ("import sys, simstress.core.artifacts, simstress.core.conformance, simstress.core.task, "
            "simstress.core.theory, simstress.core.synthetic, simstress.core.selection, simstress.core.record, "
            "simstress.core.page; print(sorted(m for m in sys.modules if m.startswith(('simstress.metrics', "
            "'simstress.tasks', 'simstress.benchmark', 'simstress.streaming')) or m == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_users_own_metrics_and_tasks_modules_cannot_shadow_simstress(tmp_path: Path) -> None:
    for name in ("metrics", "tasks", "benchmark"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('the user\\'s own module was imported')\n")
    code = ("import numpy as np, simstress; from simstress import metrics, tasks; "
            "X = np.random.default_rng(0).normal(size=(50, 4)); "
            "print(round(simstress.score('linear_cka', X, 2 * X), 12), simstress.list_tasks('noise*'), "
            "metrics.list_metrics('linear*'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "['noise_sweep']", "['linear_cka',", "'linear_cka_debiased']"]
    cli = subprocess.run([sys.executable, "-m", "simstress.benchmark.cli", "list", "tasks", "matching"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert cli.returncode == 0 and "specificity" in cli.stdout, cli.stderr


def _comparable(record: dict) -> dict:
    """A record without the fields that time the work (they differ from run to run)."""
    return {**record, "runtime_s": None, "runs": [{**r, "runtime_s": None} for r in record["runs"]]}


def test_a_cell_executed_in_a_fresh_process_gives_the_in_process_record(tmp_path: Path) -> None:
    cell = Cell("rbf_cka[sigma=0.5]", "outlier_shift", "smoke", (0, 1), "cpu", str(tmp_path))
    local = execute(cell).to_json()
    code = ("import json, sys; from simstress.benchmark.cells import execute; "
            "print(json.dumps(execute(json.loads(sys.argv[1])).to_json()))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cell.to_dict())], capture_output=True, text=True,
                         timeout=600, cwd="/")
    assert out.returncode == 0, out.stderr
    remote = json.loads(out.stdout)
    assert local["status"] == "ok" and len(local["runs"]) == 2 and local["metric"] == get_metric(cell.metric).id
    assert _comparable(remote) == json.loads(json.dumps(_comparable(local)))
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell

