"""The layout holds: one namespace a user's files cannot shadow, layers that only import downwards, and cells
that are pure work units (plain data in, the same record out, in any process)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simstress import get_metric
from simstress.benchmark.cells import Cell, execute

REPO = Path(__file__).resolve().parent.parent
# Each layer may import only the layers below it (the standard library and third-party packages aside).
LAYERS = {"core": REPO / "simstress" / "core", "data": REPO / "simstress" / "data",
          "networks": REPO / "simstress" / "networks", "metrics": REPO / "metrics", "tasks": REPO / "tasks",
          "benchmark": REPO / "benchmark"}
FORBIDDEN = {
    "core": ("simstress.data", "simstress.networks", "simstress.metrics", "simstress.tasks", "simstress.benchmark",
             "simstress.streaming"),
    "data": ("simstress.networks", "simstress.metrics", "simstress.tasks", "simstress.benchmark",
             "simstress.streaming"),
    "networks": ("simstress.metrics", "simstress.tasks", "simstress.benchmark", "simstress.streaming"),
    "metrics": ("simstress.data", "simstress.networks", "simstress.tasks", "simstress.benchmark",
                "simstress.streaming"),
    "tasks": ("simstress.benchmark", "simstress.streaming"),
    "benchmark": (),
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of everything a module imports (relative imports resolved against its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer: str) -> None:
    bad = []
    for path in sorted(LAYERS[layer].rglob("*.py")):
        rel = path.relative_to(LAYERS[layer]).with_suffix("")
        package = ".".join(["simstress", layer, *rel.parts[:-1]])
        for name in imported_modules(path, package):
            top = name.split(".")[0]
            if top in ("metrics", "tasks", "benchmark") or name.startswith(FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_core_loads_no_metric_task_or_runner_module() -> None:
    code = ("import sys, simstress.core.artifacts, simstress.core.conformance, simstress.core.task, "
            "simstress.core.theory, simstress.core.synthetic, simstress.core.selection; "
            "print(sorted(m for m in sys.modules if m.startswith(('simstress.metrics', 'simstress.tasks', "
            "'simstress.benchmark', 'simstress.streaming'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_users_own_metrics_and_tasks_modules_cannot_shadow_simstress(tmp_path: Path) -> None:
    for name in ("metrics", "tasks", "benchmark"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('the user\\'s own module was imported')\n")
    code = ("import numpy as np, simstress; from simstress import metrics, tasks; "
            "X = np.random.default_rng(0).normal(size=(50, 4)); "
            "print(round(simstress.score('linear_cka', X, 2 * X), 12), simstress.list_tasks('noise*'), "
            "metrics.list_metrics('linear*'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "['noise_sweep']", "['linear_cka',", "'linear_cka_debiased']"]
    cli = subprocess.run([sys.executable, "-m", "simstress.benchmark.cli", "list", "tasks", "matching"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode == 0 and "specificity" in cli.stdout, cli.stderr


def _comparable(record: dict) -> dict:
    """A record without the fields that time the work (they differ from run to run)."""
    return {**record, "runtime_s": None, "runs": [{**r, "runtime_s": None} for r in record["runs"]]}


def test_a_cell_executed_in_a_fresh_process_gives_the_in_process_record(tmp_path: Path) -> None:
    cell = Cell("rbf_cka[sigma=0.5]", "pc_deletion", "smoke", (0, 1), "cpu", str(tmp_path))
    local = execute(cell)
    code = ("import json, sys; from simstress.benchmark.cells import execute; "
            "print(json.dumps(execute(json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cell.to_dict())], capture_output=True, text=True,
                         timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr
    remote = json.loads(out.stdout)
    assert local["status"] == "ok" and len(local["runs"]) == 2 and local["metric"] == get_metric(cell.metric).id
    assert _comparable(remote) == json.loads(json.dumps(_comparable(local)))
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell
