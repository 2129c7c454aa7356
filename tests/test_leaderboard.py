"""The leaderboard: aggregation by hand-computed numbers, ties, errors and skips, deterministic bytes, --check.

Records are written by hand here (the runner's own tests cover how they are made), so every expected number
below is worked out from the scores in the records, not read back from the code.
"""

from __future__ import annotations

import random
import re
import statistics
from pathlib import Path

import pytest

from simstress.benchmark.cli import main
from simstress.benchmark.figures import draw
from simstress.benchmark.leaderboard import HEATMAP, build_board, render, sweep_figure
from simstress.benchmark.records import SCHEMA, ResultStore

CATS = {"r1": "robustness", "r2": "robustness", "s1": "sensitivity", "p1": "specificity"}


def make_record(metric: str, task: str, scores: list[float] | None = None, status: str = "ok",
                message: str = "", task_version: int = 1, runtime: float = 0.25) -> dict:
    seeds = [0, 1]
    runs = [] if status != "ok" else [
        {"seed": s, "score": v, "runtime_s": runtime, "details": {},
         "curve": {"x": [1.0, 10.0, 100.0], "similarity": [1.0, v, v / 2]}}
        for s, v in zip(seeds, scores)
    ]
    return {
        "schema": SCHEMA, "metric": metric, "metric_version": 1, "task": task, "task_version": task_version,
        "task_info": {"category": CATS[task], "summary": f"the {task} task", "sweep_name": f"{task} sweep",
                      "log_x": True},
        "scale": "smoke", "seeds": seeds, "device": "cpu", "device_name": "test CPU", "dtype": "float64",
        "packages": {"python": "3.11.7", "torch": "2.0"}, "git_commit": "abc", "status": status,
        "score": statistics.fmean(scores) if status == "ok" else None,
        "seed_scores": scores if status == "ok" else None,
        "reason": message if status == "skipped" else None,
        "error": None if status != "error" else {"type": "ValueError", "message": message, "seed": 0,
                                                  "traceback": "..."},
        "runs": runs, "runtime_s": runtime * len(runs),
    }


def grid() -> list[dict]:
    a = {"r1": [1.0, 0.8], "r2": [0.6, 0.6], "s1": [0.5, 0.7], "p1": [0.9, 0.9]}
    recs = [make_record("metric_a", t, s) for t, s in a.items()]
    recs += [make_record("metric_c", t, s) for t, s in a.items()]  # ties with metric_a
    recs += [make_record("metric_b", "r1", status="error", message="X has <2> | bad\nrows"),
             make_record("metric_b", "r2", [1.0, 1.0]),
             make_record("metric_b", "s1", status="skipped", message="needs class labels"),
             make_record("metric_b", "p1", [0.6, 0.6])]
    recs += [make_record("metric_d", t, status="skipped", message="needs class labels") for t in CATS]
    return recs


def conformance() -> dict:
    return {
        "metric_a": {"metric": "metric_a", "metric_version": 1, "passed": False,
                     "declared": ["orthogonal", "translation"], "observed": ["permutation", "translation"],
                     "checks": [["finite_scalar", True, ""], ["invariance:orthogonal", False, "max change 0.3"]]},
        "metric_c": {"metric": "metric_c", "metric_version": 1, "passed": True, "declared": ["translation"],
                     "observed": ["translation"], "checks": [["invariance:translation", True, ""]]},
    }


def test_scores_ranks_ties_errors_and_skips() -> None:
    board = build_board("smoke", grid(), conformance())
    rows = {r.metric: r for r in board.rows}
    a = rows["metric_a"]
    # robustness = mean(mean(1.0, 0.8), mean(0.6, 0.6)) = 0.75; sensitivity 0.6; specificity 0.9
    assert a.categories == pytest.approx({"robustness": 0.75, "sensitivity": 0.6, "specificity": 0.9})
    assert a.overall == pytest.approx(0.75)
    # seed 0: (0.8 + 0.5 + 0.9)/3, seed 1: (0.7 + 0.7 + 0.9)/3
    assert a.spread == pytest.approx(statistics.stdev([2.2 / 3, 2.3 / 3]))
    b = rows["metric_b"]  # the error counts 0: robustness (0 + 1)/2; the skipped sensitivity is left out
    assert b.categories == pytest.approx({"robustness": 0.5, "sensitivity": None, "specificity": 0.6})
    assert b.overall == pytest.approx(0.55) and b.spread == pytest.approx(0.0)
    assert rows["metric_d"].overall is None and rows["metric_d"].rank is None
    assert [(r.metric, r.rank) for r in board.rows] == [("metric_a", 1), ("metric_c", 1), ("metric_b", 3),
                                                         ("metric_d", None)]
    assert [t.name for t in board.tasks] == ["r1", "r2", "s1", "p1"]


def test_page_shows_every_section() -> None:
    page = render(build_board("smoke", grid(), conformance()), "results/figures")
    assert "| 1 | `metric_a` | 0.750 | 0.600 | 0.900 | **0.750** | 0.024 |" in page
    assert "| 1 | `metric_c` |" in page
    assert "| 3 | `metric_b` | 0.500 | – | 0.600 | **0.550** | 0.000 |" in page
    assert "| – | `metric_d` | – | – | – | **–** | – |" in page
    assert f"[r1](results/figures/{sweep_figure('r1')}) (rob.)" in page and f"results/figures/{HEATMAP}" in page
    assert "| `metric_a` | 0.900 ±0.141 | 0.600 ±0.000 | 0.600 ±0.141 | 0.900 ±0.000 |" in page
    assert "| `metric_b` | ✗[^1] | 1.000 ±0.000 | – | 0.600 ±0.000 |" in page
    assert "[^1]: `metric_b` × `r1`: ValueError: X has &lt;2&gt; \\| bad" in page  # first line, escaped
    assert "- `metric_b` on `s1`: needs class labels" in page
    assert "- `metric_d` on `r1`, `r2`, `s1`, `p1`: needs class labels" in page
    inv = page[page.index("## Declared vs observed"):page.index("## Runtime")]
    assert ("| `metric_a` | **fail**: invariance:orthogonal | orthogonal, translation | permutation, translation | "
            "⚠ declared, not observed: orthogonal; holds, not declared: permutation |") in inv
    assert "| `metric_c` | pass | translation | translation | match |" in inv
    assert "| `metric_b` | not checked |" in inv
    assert "| `metric_a` | 250 ms | 8 |" in page and "| `metric_d` | – | 0 |" in page
    assert "Scale: `smoke`; seeds: 0, 1; 16 records (4 metrics × 4 tasks)." in page
    assert "Packages: python 3.11.7, torch 2.0." in page
    assert "⚠" not in page[page.index("## Built from"):]  # a complete, consistent grid


def test_rendering_is_deterministic_whatever_the_record_order() -> None:
    recs = grid()
    first = render(build_board("smoke", recs, conformance()), "results/figures")
    random.Random(0).shuffle(recs)
    assert render(build_board("smoke", recs, conformance()), "results/figures") == first


def test_incomplete_or_mixed_records_are_flagged() -> None:
    recs = [r for r in grid() if (r["metric"], r["task"]) != ("metric_c", "p1")]
    recs[0] = make_record("metric_a", "r1", [1.0, 0.8], task_version=2)
    page = render(build_board("smoke", recs, conformance()), "figs")
    assert "⚠ 1 metric × task cells have no record (`metric_c` × `p1`)" in page
    assert "⚠ task `r1` has records at versions [1, 2]: rerun `simstress run --tasks 'r1'`." in page


def test_rounding_ties_share_a_rank() -> None:
    recs = [make_record("m1", "r1", [0.5, 0.5]), make_record("m2", "r1", [0.50004, 0.50004]),
            make_record("m3", "r1", [0.4, 0.4])]
    assert [(r.metric, r.rank) for r in build_board("smoke", recs, {}).rows] == [("m1", 1), ("m2", 1), ("m3", 3)]


def _store(tmp_path: Path) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    for rec in grid():
        store.save_record(rec)
    for entry in conformance().values():
        store.save_conformance(entry)
    return store


def test_cli_renders_page_and_figures_and_check_catches_staleness(tmp_path: Path, monkeypatch, capsys) -> None:
    store = _store(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1  # no page yet
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    page = Path("leaderboard.md").read_bytes()
    pngs = {p.name: p.read_bytes() for p in store.figures_dir.glob("*.png")}
    assert set(pngs) == {HEATMAP, *(sweep_figure(t) for t in CATS)}
    assert all(png.startswith(b"\x89PNG") and b"Software" not in png for png in pngs.values())
    links = re.findall(r"\]\(([^)]+\.png)\)", page.decode())
    assert links and all(Path(link).is_file() for link in links)

    assert main(["leaderboard", "--scale", "smoke"]) == 0  # same records, same bytes
    assert Path("leaderboard.md").read_bytes() == page
    assert {p.name: p.read_bytes() for p in store.figures_dir.glob("*.png")} == pngs
    capsys.readouterr()
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out

    rec = store.load_record("smoke", "r2", "metric_b")
    rec["runs"][0]["score"] = rec["seed_scores"][0] = 0.9
    rec["score"] = 0.95
    store.save_record(rec)
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    out = capsys.readouterr().out
    assert "leaderboard.md is stale" in out and "+| `metric_b` |" in out
    assert Path("leaderboard.md").read_bytes() == page  # --check writes nothing

    assert main(["leaderboard", "--scale", "smoke"]) == 0
    (store.figures_dir / sweep_figure("s1")).unlink()
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "figures missing" in capsys.readouterr().out


def test_output_and_results_paths_are_configurable(tmp_path: Path, capsys) -> None:
    store = _store(tmp_path)
    out = tmp_path / "site" / "board.md"
    assert main(["leaderboard", "--scale", "smoke", "--results", str(store.root), "--output", str(out)]) == 0
    assert f"](../results/figures/{HEATMAP})" in out.read_text()
    stale, perf_plot = store.figures_dir / "sweep_gone.png", store.figures_dir / "perf_cpu-x.png"
    stale.write_bytes(b"old")
    perf_plot.write_bytes(b"perf")
    assert main(["leaderboard", "--scale", "smoke", "--results", str(store.root), "--output", str(out)]) == 0
    assert not stale.exists()  # figures of tasks no longer in the records are removed
    assert perf_plot.read_bytes() == b"perf"  # figures the board does not own are left alone
    assert main(["leaderboard", "--scale", "default", "--results", str(store.root)]) == 2
    assert "no records for scale 'default'" in capsys.readouterr().err


def test_figures_are_byte_identical_across_draws(tmp_path: Path) -> None:
    board = build_board("smoke", grid(), conformance())
    first = {p.name: p.read_bytes() for p in draw(board, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in draw(board, tmp_path / "b")}
    assert first == second and len(first) == 1 + len(CATS)
