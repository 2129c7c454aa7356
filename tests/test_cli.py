"""The `simstress` command line, in process: list, check (id, module, file), run exit codes, perf forwarding."""

from __future__ import annotations

import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Iterator

import pytest
import torch

from simstress import metrics, tasks
from simstress.benchmark import jobs
from simstress.benchmark.cli import main
from simstress.core.conformance import applicable_checks

from .conftest import NoiseSweep, fake_check


@pytest.fixture
def cli_task() -> Iterator[NoiseSweep]:
    task = NoiseSweep("cli_noise", fail={"procrustes": ValueError("procrustes broke")})
    tasks.REGISTRY.add(task.name, task, "tests.test_cli")
    yield task
    tasks.REGISTRY.remove(task.name)


def test_list_metrics_shows_the_registry(capsys) -> None:
    assert main(["list", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "kind", "symmetric", "invariances", "labels", "differentiable", "cost",
                                "summary"]
    ids = [line.split()[0] for line in lines[2:]]
    assert ids == metrics.list_metrics()
    spec = metrics.get_metric("linear_cka").spec
    row = next(line for line in lines if line.startswith("linear_cka "))
    assert ", ".join(sorted(spec.invariances)) in row and spec.cost in row and spec.summary in row
    assert main(["list", "metrics", "rbf*", "--strict"]) == 0  # global flags also after the command
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == metrics.list_metrics("rbf*")


def test_list_tasks_shows_name_category_scales_summary(capsys, cli_task: NoiseSweep) -> None:
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[2:]] == tasks.list_tasks()
    row = next(line for line in out.splitlines() if line.startswith("cli_noise "))
    assert re.split(r"\s{2,}", row) == ["cli_noise", "sensitivity", "smoke, default",
                                        "Y = X + s·E for s in (0.1, 1, 10) (test fixture)."]
    assert main(["list", "tasks", "no_such_*"]) == 2
    assert "no tasks match 'no_such_*'" in capsys.readouterr().err


def test_check_a_conforming_metric(capsys) -> None:
    assert main(["check", "linear_cka"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("linear_cka: conforms")
    for name in applicable_checks(metrics.get_metric("linear_cka")):
        assert f"pass  {name}" in out
    assert "invariances declared: isotropic_scaling, orthogonal, permutation, translation" in out
    assert "invariances observed: isotropic_scaling, orthogonal, permutation, translation" in out


METRIC_FILE = '''
import torch
from simstress.metrics import register


@register(invariances=("orthogonal",), cost="O(n)", reference="test", variants=({"column": 1},))
def first_column_corr(X: torch.Tensor, Y: torch.Tensor, *, column: int = 0) -> torch.Tensor:
    """|Pearson correlation| of one column of X and Y: claims a rotation invariance it does not have (test)."""
    x, y = X[:, column] - X[:, column].mean(), Y[:, column] - Y[:, column].mean()
    return (x @ y).abs() / (x.norm() * y.norm())
'''


@pytest.fixture
def metric_module(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "cli_fake_metric.py"
    path.write_text(textwrap.dedent(METRIC_FILE))
    yield path
    metrics.REGISTRY.remove("first_column_corr")
    sys.modules.pop("cli_fake_metric", None)


def test_check_a_file_checks_every_metric_it_registers_and_fails(capsys, metric_module: Path) -> None:
    assert main(["check", str(metric_module)]) == 1
    out = capsys.readouterr().out
    assert "first_column_corr: DOES NOT CONFORM" in out and "first_column_corr[column=1]: DOES NOT CONFORM" in out
    assert "FAIL  invariance:orthogonal" in out
    assert "mismatch: declared but not observed: orthogonal" in out
    assert "2 metric(s) do not conform: first_column_corr, first_column_corr[column=1]" in out


def test_check_a_module_path(capsys, metric_module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(metric_module.parent))
    assert main(["check", "cli_fake_metric"]) == 1
    first = capsys.readouterr().out
    assert "first_column_corr[column=1]: DOES NOT CONFORM" in first
    assert main(["check", str(metric_module)]) == 1  # that file is imported already: reused, not re-registered
    assert capsys.readouterr().out == first


def test_check_an_unknown_name_suggests_the_closest(capsys) -> None:
    assert main(["check", "linear_ckaa"]) == 2
    assert "closest: linear_cka" in capsys.readouterr().err


def test_run_exit_codes_summary_and_progress(tmp_path: Path, capsys, cli_task: NoiseSweep,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "check_metric", fake_check)  # conformance has its own tests
    args = ["run", "--tasks", "cli_noise", "--scale", "smoke", "--seeds", "2", "--results", str(tmp_path)]
    assert main([*args, "--metrics", "linear_cka"]) == 0
    captured = capsys.readouterr()
    assert "1 cells computed (1 ok)" in captured.out and "seeds [0, 1]" in captured.out
    assert "cell/s" in captured.err or "s/cell" in captured.err  # the tqdm bar
    assert main(["--quiet", *args, "--metrics", "linear_cka,procrustes"]) == 1
    captured = capsys.readouterr()
    assert "1 cells computed (1 error)" in captured.out and "1 already current" in captured.out
    assert "procrustes × cli_noise: ValueError: procrustes broke" in captured.out
    assert "cell" not in captured.err  # no bar under --quiet
    assert (tmp_path / "records/smoke/cli_noise/procrustes.json").is_file()


def test_run_refuses_a_missing_device_and_bad_seeds(tmp_path: Path, capsys) -> None:
    if not torch.cuda.is_available():
        assert main(["run", "--device", "cuda", "--results", str(tmp_path)]) == 2
        assert "device 'cuda' is not available here; available: cpu" in capsys.readouterr().err
    assert main(["run", "--device", "gpu", "--results", str(tmp_path)]) == 2
    assert "unknown device 'gpu'; available: cpu" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--seeds", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_perf_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    fake = types.ModuleType("simstress.benchmark.perf")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "simstress.benchmark.perf", fake)
    assert main(["--quiet", "perf", "--help", "-k", "cka"]) == 7 and seen == [["--help", "-k", "cka"]]


def test_help_texts(capsys) -> None:
    for command, expected in (([], "leaderboard"), (["run"], "--force"), (["leaderboard"], "--check"),
                              (["check"], "ID|MODULE|FILE"), (["list"], "{metrics,tasks,models}")):
        with pytest.raises(SystemExit) as stop:
            main([*command, "--help"])
        assert stop.value.code == 0 and expected in capsys.readouterr().out


@pytest.mark.parametrize("attacker", ["linear_cka", "procrustes"])
def test_manipulate_names_the_attack_map_manipulation_uses(attacker: str, tmp_path: Path, capsys) -> None:
    """The CKA family attacks through flattened blocks, the others through pooled ones: `simstress manipulate`
    builds the very artifact the task reads, not one of its own."""
    from simstress.tasks.manipulation import attacks

    spec = next(iter(attacks("smoke", (attacker,), ("ones",)).values()))
    assert main(["manipulate", "--attacker", attacker, "--target", "ones", "--scale", "smoke", "--dry-run",
                 "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{spec.key}: to build")
