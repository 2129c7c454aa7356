"""The plugin path, end to end through the real CLI in subprocesses, without touching the test venv.

Plugins reach simstress only through installed distributions' entry points, so each test puts distributions on a
throw-away PYTHONPATH: the worked metric example is pip-installed into a temporary target (real packaging, real
entry_points.txt); other distributions (the worked task example with its page section, a broken plugin, two
plugins claiming one id) are written as minimal dist-info folders, which is all `importlib.metadata` reads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "metric_plugin"
EXAMPLE_TASK = REPO / "examples" / "task_plugin" / "simstress_example_task"

DUP_METRIC = '''
import torch
from simstress.metrics import register


@register(cost="O(1)", reference="test plugin", name="dup_metric")
def dup_metric(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """A metric whose id another plugin also claims (test plugin)."""
    return X.new_ones(())
'''


def fake_dist(root: Path, dist: str, group: str, entry: str, modules: dict[str, str]) -> None:
    """A minimal installed distribution: METADATA, one entry point, and its modules beside it."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    for name, source in modules.items():
        (root / name).write_text(textwrap.dedent(source))


def simstress(args: list[str], cwd: Path, path: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    return subprocess.run([sys.executable, "-m", "simstress.benchmark.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*.json"))}


@pytest.mark.slow
def test_example_plugin_conforms_runs_only_its_cells_and_joins_the_leaderboard(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source)  # pip builds in place; keep the repository clean
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    fake_dist(tmp_path / "tasks_site", "simstress-example-task", "simstress.tasks",
              "feature_dropout = simstress_example_task", {})
    shutil.copytree(EXAMPLE_TASK, tmp_path / "tasks_site" / EXAMPLE_TASK.name)
    path = [target, tmp_path / "tasks_site"]
    results = tmp_path / "results"
    common = ["--scale", "smoke", "--results", str(results)]

    check = simstress(["check", "distance_correlation"], tmp_path, path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "distance_correlation: conforms" in check.stdout and "FAIL" not in check.stdout

    base = simstress(["--quiet", "run", "--metrics", "linear_cka", "--tasks", "feature_dropout", "--seeds", "2",
                      *common], tmp_path, path)
    assert base.returncode == 0 and "1 cells computed (1 ok)" in base.stdout, base.stdout + base.stderr
    assert simstress(["leaderboard", *common, "--output", "board.md"], tmp_path, path).returncode == 0
    assert "distance_correlation" not in (tmp_path / "board.md").read_text()
    before = snapshot(results)

    added = simstress(["--quiet", "run", "--metrics", "distance_correlation", "--tasks", "feature_dropout",
                       "--seeds", "2", *common], tmp_path, path)
    assert added.returncode == 0 and "1 cells computed (1 ok)" in added.stdout, added.stdout + added.stderr
    after = snapshot(results)
    assert {k: v for k, v in after.items() if k in before} == before  # existing records untouched
    assert set(after) - set(before) == {"records/smoke/feature_dropout/distance_correlation.json",
                                        "conformance/distance_correlation.json"}

    board = simstress(["leaderboard", *common, "--output", "board.md"], tmp_path, path)
    assert board.returncode == 0, board.stderr
    page = (tmp_path / "board.md").read_text()
    ranking = page[page.index("## Ranking"):page.index("How to read it")]
    assert "`distance_correlation`" in ranking and "`linear_cka`" in ranking
    invariances = page[page.index("## Declared vs observed"):page.index("## Runtime")]
    assert "| `distance_correlation` | pass |" in invariances
    # the task plugin's own section, with its figure, from its records alone
    section = page[page.index("## Feature dropout"):page.index("## Built from")]
    assert "| `distance_correlation` |" in section and "| `linear_cka` |" in section
    assert (results / "figures" / "feature_dropout_half.png").read_bytes().startswith(b"\x89PNG")

    # differentiable, so it can attack: a manipulated network against the plugin's own layer map
    attack = simstress(["--quiet", "manipulate", "--attacker", "distance_correlation", "--target", "identity",
                        "--scale", "smoke", "--results", str(results)], tmp_path, path)
    assert attack.returncode == 0, attack.stdout + attack.stderr
    assert "distance_correlation→identity@m1-w1-generalized-s0 (built" in attack.stdout
    assert re.search(r"^distance_correlation +\d\.\d{3} +\d\.\d{3}$", attack.stdout, re.M), attack.stdout


def test_a_broken_plugin_warns_and_strict_makes_it_fatal(tmp_path: Path) -> None:
    fake_dist(tmp_path, "simstress-broken-plugin", "simstress.metrics", "broken = broken_plugin",
              {"broken_plugin.py": "import a_dependency_that_is_not_installed\n"})
    lax = simstress(["list", "metrics", "linear_cka"], tmp_path, [tmp_path])
    assert lax.returncode == 0 and "linear_cka" in lax.stdout  # the rest runs
    assert lax.stderr.count("warning:") == 1
    assert "'simstress-broken-plugin'" in lax.stderr and "a_dependency_that_is_not_installed" in lax.stderr
    strict = simstress(["--strict", "list", "metrics"], tmp_path, [tmp_path])
    assert strict.returncode == 2 and strict.stdout == ""
    assert "error:" in strict.stderr and "'simstress-broken-plugin'" in strict.stderr


def test_two_plugins_claiming_one_id_is_an_error_naming_both(tmp_path: Path) -> None:
    fake_dist(tmp_path, "simstress-dup-one", "simstress.metrics", "dup = dup_one", {"dup_one.py": DUP_METRIC})
    fake_dist(tmp_path, "simstress-dup-two", "simstress.metrics", "dup = dup_two", {"dup_two.py": DUP_METRIC})
    out = simstress(["list", "metrics"], tmp_path, [tmp_path])
    assert out.returncode == 2
    assert "'dup_metric' is registered twice" in out.stderr
    assert "dup_one.dup_metric" in out.stderr and "dup_two.dup_metric" in out.stderr
