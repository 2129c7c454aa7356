"""`simstress perf` stands alone (issue 21, item 7): the suite ships inside the package, a plain pytest run never
starts it, the README section is rendered by code with a test, and the command works from an installed copy of the
package with no repository beside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from simstress.benchmark.perf import cli
from simstress.benchmark.perf.readme import README_END, README_START, report

REPO = Path(__file__).resolve().parents[1]


def benchmark_entry(kind: str, name: str, median: float, **extra) -> dict:
    info = {"kind": kind, "name": name, "n": 1000, "p": 256, "dtype": "float32", "device": "cpu", "flops": None,
            "value": None, "value_float64": None, "peak_bytes": 2**20} | extra
    return {"stats": {"median": median}, "extra_info": info}


def results_doc() -> dict:
    """A results file as `write_results` writes it, with derived ratios already annotated."""
    rows = [benchmark_entry("metric", "procrustes", 0.5, roofline_ratio=0.4, floor_ratio=0.8, reference_ratio=None,
                            gflops=12.0, f32_error=3e-8),
            benchmark_entry("metric", "rsa", 2.0, roofline_ratio=0.1, floor_ratio=0.7, reference_ratio=1.25,
                            gflops=None, f32_error=None),
            benchmark_entry("baseline", "cross", 0.2)]
    return {"benchmarks": rows, "simstress": {"device": "cpu-test-2c", "command": "simstress perf --quick",
                                              "torch": "2.x", "threads": 2, "load_average": [0.3, 0.3, 0.3],
                                              "skipped": [{"case": "cuda-a", "device": "cuda", "reason": "no CUDA"}]}}


def test_report_rewrites_only_the_section_between_the_markers(tmp_path: Path) -> None:
    out, figures = tmp_path / "perf", tmp_path / "docs" / "figures"
    out.mkdir()
    (out / "cpu-test-2c.json").write_text(json.dumps(results_doc()))
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n\n## Next\n\nUntouched.\n"
    readme.write_text(f"{before}{README_START}\nstale table\n{README_END}{after}")
    assert report(out, readme, figures) == 0
    text = readme.read_text()
    assert text.startswith(before + README_START) and text.endswith(README_END + after)
    assert "stale table" not in text
    assert "| procrustes | 1000 × 256 | float32 | 0.5 | 1 | 12 | 0.40 | 0.80 | – | 3.0e-08 |" in text
    assert "| rsa | 1000 × 256 | float32 | 2 | 1 | – | 0.10 | 0.70 | 1.25 | – |" in text
    assert "| cross (baseline) |" in text and "- cuda-a: no CUDA" in text
    assert "load average at start 0.3; `simstress perf --quick`" in text
    assert "![perf](docs/figures/perf_cpu-test-2c.png)" in text and (figures / "perf_cpu-test-2c.png").is_file()
    assert report(out, readme, figures) == 0 and readme.read_text() == text  # idempotent


def test_report_refuses_a_readme_without_markers_or_results(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# No markers\n")
    assert report(tmp_path, readme, tmp_path / "figures") == 2
    assert "no results" in capsys.readouterr().err
    (tmp_path / "cpu.json").write_text(json.dumps(results_doc()))
    assert report(tmp_path, readme, tmp_path / "figures") == 2
    assert "lacks the markers" in capsys.readouterr().err and readme.read_text() == "# No markers\n"


def test_sizes_option() -> None:
    assert cli.parse_sizes("1000x256,50X8") == ((1000, 256), (50, 8))
    for bad in ("1000", "x", "10x0", "axb"):
        with pytest.raises(Exception, match="1000x256"):
            cli.parse_sizes(bad)


def test_a_plain_pytest_run_deselects_the_suite() -> None:
    """The collection hook, not an addopts of this repository, keeps the grid out of `pytest -m 'not slow'`."""
    env = {k: v for k, v in os.environ.items() if k != "SIMSTRESS_PERF_CONFIG"}
    run = subprocess.run([sys.executable, "-m", "pytest", str(cli.SUITE), "-m", "not slow", "-q", "--collect-only",
                          "-c", os.devnull, "-p", "no:cacheprovider"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert "deselected" in run.stdout and "test_case[" not in run.stdout, run.stdout + run.stderr


def installed_copy(tmp_path: Path) -> Path:
    """The package as a wheel installs it (the build from a copy of the sources, nothing written in the checkout),
    unpacked into a folder of its own."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("simstress", "metrics", "tasks", "benchmark"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, timeout=300)
    site = tmp_path / "site"
    with zipfile.ZipFile(next(wheels.glob("simstress-*.whl"))) as whl:
        whl.extractall(site)
    return site


@pytest.mark.slow
def test_perf_runs_from_an_installed_copy_without_the_repository(tmp_path: Path) -> None:
    site = installed_copy(tmp_path)
    assert (site / "simstress" / "benchmark" / "perf" / "suite" / "conftest.py").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SIMSTRESS_PERF_CONFIG"} | {"PYTHONPATH": str(site)}
    cmd = [sys.executable, "-c", "import sys, simstress.benchmark.perf as perf; from simstress.benchmark.cli import "
           "main; print('module', perf.__file__); sys.exit(main(sys.argv[1:]))"]
    helped = subprocess.run([*cmd, "perf", "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and "--sizes" in helped.stdout, helped.stderr
    assert f"module {site}" in helped.stdout  # the copy, not the repository's modules
    ran = subprocess.run([*cmd, "perf", "--sizes", "60x8", "--metrics", "linear_cka", "--dtypes", "float32",
                          "--devices", "cpu", "--out", "perf"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    (doc,) = [json.loads(p.read_text()) for p in (work / "perf").glob("*.json")]
    rows = {b["extra_info"]["name"]: b["extra_info"] for b in doc["benchmarks"]}
    assert {"linear_cka", "gram3_gemm", "gram3_sym"} <= set(rows)
    assert rows["linear_cka"]["roofline_ratio"] > 0 and rows["linear_cka"]["n"] == 60
    assert not (work / "README.md").exists()  # a run writes results only


def test_every_baseline_a_profile_names_runs_and_the_float64_svd_is_float64() -> None:
    """A floor counts each p×p decomposition in the precision the metric takes it in: `svd_pp64` in float64 for
    float32 data (Procrustes, pwcca), `svd_pp` in the data's dtype (cca_mean, svcca)."""
    from simstress.benchmark.perf.grid import Case, make_inputs
    from simstress.benchmark.perf.measure import case_callable
    from simstress.benchmark.perf.profiles import PROFILES, baselines_of

    data = make_inputs(64, 8, "float32", "cpu")
    names = {b for metric in PROFILES for b in baselines_of(metric)}
    out = {b: case_callable(Case("baseline", b, 64, 8, "float32", "cpu"), data)(data["X"], data["Y"])
           for b in sorted(names)}
    assert {"svd_pp", "svd_pp64", "chol_pp", "eigh_pp"} <= names
    assert out["svd_pp64"].dtype == torch.float64 and out["svd_pp"].dtype == torch.float32
    torch.testing.assert_close(out["svd_pp64"].float(), out["svd_pp"], rtol=1e-5, atol=1e-5 * float(out["svd_pp"][0]))


def test_a_floor_counts_the_singular_values_in_the_dtype_its_metric_takes_them(monkeypatch: pytest.MonkeyPatch,
                                                                               ) -> None:
    """Watched on the metrics themselves, float32 data of the grid's kind: the last SVD a metric takes (the p×p
    cross product's) is float64 where its floor names `svd_pp64`, float32 where it names `svd_pp`."""
    from simstress import get_metric, streaming
    from simstress.benchmark.perf.grid import make_inputs
    from simstress.benchmark.perf.profiles import PROFILES

    data = make_inputs(1000, 32, "float32", "cpu")
    seen: list[torch.dtype] = []
    for name in ("svd", "svdvals"):
        def watched(A: torch.Tensor, *args, _real=getattr(torch.linalg, name), **kwargs):
            seen.append(A.dtype)
            return _real(A, *args, **kwargs)

        monkeypatch.setattr(torch.linalg, name, watched)
    checked = []
    for name, prof in PROFILES.items():
        svd = {"svd_pp", "svd_pp64"} & set(prof.floor)
        if not svd:
            continue
        seen.clear()
        if name.startswith("streaming:"):
            mom = streaming.LinearMoments()
            mom.update(data["X"], data["Y"])
            getattr(mom, name.split(":", 1)[1])()
        else:
            get_metric(name)(data["X"], data["Y"])
        assert seen and seen[-1] == (torch.float64 if svd == {"svd_pp64"} else torch.float32), (name, seen)
        checked.append(name)
    assert {"procrustes", "procrustes_angular", "pwcca", "cca_mean", "svcca", "streaming:procrustes"} <= set(checked)
