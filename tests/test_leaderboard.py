"""The leaderboard: aggregation by hand-computed numbers, ties, errors and skips, deterministic bytes, --check.

Records are written by hand here (the runner's own tests cover how they are made), so every expected number
below is worked out from the scores in the records, not read back from the code.
"""

from __future__ import annotations

import json
import random
import re
import statistics
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from simstress import metrics
from simstress.benchmark.cli import main
from simstress.benchmark.figures import draw
from simstress.benchmark.leaderboard import HEATMAP, Installed, build_board, render, sweep_figure
from simstress.benchmark.records import ResultStore
from simstress.core.record import Record

from .conftest import CATS, as_records, conformance, grid, install_tasks, make_record, passed


def board_of(recs: list[dict], conf: dict, **kw):
    return build_board("smoke", as_records(recs), conf, **kw)


def texts(reasons) -> tuple[str, ...]:
    return tuple(w.text for w in reasons)


def test_scores_ranks_ties_errors_and_skips() -> None:
    board = board_of(grid(), conformance())
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
    assert rows["metric_d"].overall is None and texts(rows["metric_d"].apart) == ("no task applies to it",)
    # metric_a scores as metric_c does but fails its conformance check: listed apart, never ranked
    assert [(r.metric, r.rank) for r in board.rows] == [("metric_c", 1), ("metric_b", 2), ("metric_a", None),
                                                         ("metric_d", None)]
    assert texts(rows["metric_a"].apart) == ("does not conform: fails invariance:orthogonal",)
    assert [t.name for t in board.tasks] == ["r1", "r2", "s1", "p1"]


def test_page_shows_every_section() -> None:
    page = render(board_of(grid(), conformance()), "results/figures").text
    assert "| 1 | `metric_c` | 0.750 | 0.600 | 0.900 | **0.750** | 0.024 |" in page
    assert "| 2 | `metric_b` | 0.500 | – | 0.600 | **0.550** | 0.000 |" in page
    assert "| `metric_a` | 0.750 | does not conform: fails invariance:orthogonal |" in page
    assert "| `metric_d` | – | no task applies to it |" in page
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
    assert "| `metric_a` | 250 ms | 8 |" in page and "| `metric_d` | – | 0 |" in page
    assert "Scale: `smoke`; seeds: 0, 1; 16 records (4 metrics × 4 tasks)." in page
    assert "Packages: python 3.11.7, torch 2.0." in page
    assert "⚠" not in page[page.index("## Built from"):]  # a complete, consistent grid


def test_rendering_is_deterministic_whatever_the_record_order() -> None:
    recs = grid()
    first = render(board_of(recs, conformance()), "results/figures").text
    random.Random(0).shuffle(recs)
    assert render(board_of(recs, conformance()), "results/figures").text == first


def test_incomplete_or_mixed_records_are_flagged_and_never_ranked() -> None:
    recs = [r for r in grid() if (r["metric"], r["task"]) != ("metric_c", "p1")]
    recs[0] = make_record("metric_a", "r1", [1.0, 0.8], task_version=2)
    board = board_of(recs, conformance())
    page = render(board, "figs").text
    assert "⚠ 1 metric × task cells have no record (`metric_c` × `p1`)" in page
    assert "⚠ task `r1` has records at versions [1, 2]: rerun `simstress run --tasks 'r1'`." in page
    # one cell deleted (metric_c) or one stale cell (the others' r1 is at version 1): nothing ranks above a
    # complete row by losing a poor cell
    apart = {r.metric: texts(r.apart) for r in board.apart}
    assert apart["metric_c"][0] == "incomplete: no current record on r1, p1"
    assert apart["metric_b"] == ("incomplete: no current record on r1",)
    assert board.ranked == []


def test_one_cell_never_ranks_first() -> None:
    recs = grid() + [make_record("lucky", "r2", [1.0, 1.0])]
    board = board_of(recs, {**conformance(), "lucky": passed("lucky")})
    assert [r.metric for r in board.ranked] == ["metric_c", "metric_b"]
    assert {r.metric: texts(r.apart) for r in board.apart}["lucky"] == ("incomplete: no current record on r1, s1, p1",)


def test_only_equal_unrounded_scores_tie() -> None:
    recs = [make_record(m, "r1", s) for m, s in (("m1", [0.5, 0.5]), ("m2", [0.50004, 0.50004]),
                                                ("m3", [0.4, 0.4]), ("m4", [0.4, 0.4]))]
    board = board_of(recs, {m: passed(m) for m in ("m1", "m2", "m3", "m4")})
    assert [(r.metric, r.rank) for r in board.rows] == [("m2", 1), ("m1", 2), ("m3", 3), ("m4", 3)]


def test_uninstalled_unchecked_and_stale_reports_are_listed_apart() -> None:
    conf = {**conformance(), "metric_b": {**passed("metric_b"), "metric_version": 2}}
    del conf["metric_d"]
    board = board_of(grid(), conf, installed=Installed(lambda m: None if m == "metric_c" else 1, {t: 1 for t in CATS}))
    apart = {r.metric: texts(r.apart) for r in board.apart}
    assert apart["metric_c"] == ("not installed: no registered metric has this id (`simstress prune` removes its "
                                 "records)",)
    assert apart["metric_b"][0].startswith("not checked at the version of its records (report: version 2")
    assert apart["metric_d"][0].startswith("not checked: no conformance report")
    assert board.ranked == []


def test_saturation_and_rank_stability() -> None:
    scores = {"m1": {"r1": 1.0, "r2": 1.0, "s1": 0.2, "p1": 1.0}, "m2": {"r1": 0.5, "r2": 0.5, "s1": 0.9, "p1": 1.0},
              "m3": {"r1": 0.9, "r2": 0.7, "s1": 0.3, "p1": 1.0}}
    recs = [make_record(m, t, [v, v]) for m, row in scores.items() for t, v in row.items()]
    board = board_of(recs, {m: passed(m) for m in scores})
    assert board.saturated == {"p1"}  # every metric 1.0 there; r2's median is 0.7
    # headline (equal categories): m1 (1 + 0.2 + 1)/3 = 0.733, m2 (0.5 + 0.9 + 1)/3 = 0.8, m3 (0.8 + 0.3 + 1)/3 = 0.7
    assert board.stability.ranks["equal categories"] == {"m2": 1, "m1": 2, "m3": 3}
    # equal tasks: m1 3.2/4 = 0.8, m2 2.9/4 = 0.725, m3 2.9/4 = 0.725 (a tie)
    assert board.stability.ranks["equal tasks"] == {"m1": 1, "m2": 2, "m3": 2}
    assert board.stability.ranks["without sensitivity"] == {"m1": 1, "m3": 2, "m2": 3}
    assert board.stability.tau["without specificity"] == pytest.approx(1.0)  # p1 is the same for all
    assert board.stability.tau["without sensitivity"] == pytest.approx(-1 / 3)
    page = render(board, "figs").text
    assert "⚠ Saturated" in page and "⚠ saturated (median ranked score ≥ 0.99)" in page
    assert "| `m2` | 1 | 2 | 1 | 3 | 1 |" in page  # equal categories, equal tasks, without rob./sens./spec.


def test_text_from_records_cannot_break_or_inject_the_page() -> None:
    hostile = "x|y`z<script>alert(1)</script>[click](http://evil)"
    recs = [make_record(hostile, t, [0.5, 0.5]) for t in CATS]
    recs[0] = make_record(hostile, "r1", status="error", message="**bold** | `code` <img src=x> [a](b)")
    for rec in recs:
        rec["task_info"]["summary"] = "summary with | and <b>html</b> and [link](http://evil)"
    page = render(board_of(recs, {hostile: passed(hostile)}), "figs").text
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", page)  # a code span shows its text literally
    assert "<script>" not in outside_code and "<img" not in outside_code and "<b>" not in outside_code
    assert "](http" not in outside_code  # no live link
    table = [line for line in page.splitlines() if line.startswith("| ") and "x\\|y" in line]
    assert table and all(len(re.findall(r"(?<!\\)\|", line)) == len(re.findall(r"(?<!\\)\|", table[0]))
                         for line in table if line.count("0.500") == 4)
    assert "``x\\|y`z<script>alert(1)</script>[click](http://evil)``" in page  # the id, intact, in code


@pytest.fixture
def grid_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The grid's metric ids registered (as throw-away metrics) and its tasks the only ones installed, so that the
    CLI sees the grid as a complete, current leaderboard."""
    for name in ("metric_a", "metric_b", "metric_c", "metric_d"):
        metrics.register(name=name, cost="O(1)", reference="test only")(_one)
    install_tasks(monkeypatch, CATS)
    yield
    for name in ("metric_a", "metric_b", "metric_c", "metric_d"):
        metrics.REGISTRY.remove(name)


def _one(X, Y):
    """1 (test fixture)."""
    return X.new_ones(())


def _store(tmp_path: Path) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    for rec in as_records(grid()):
        store.save_record(rec)
    for entry in conformance().values():
        store.save_conformance(entry)
    return store


def test_cli_renders_page_and_figures_and_check_catches_staleness(tmp_path: Path, monkeypatch, capsys,
                                                                  grid_metrics: None) -> None:
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
    store.save_record(replace(rec, runs=(replace(rec.runs[0], score=0.9), *rec.runs[1:])))
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    out = capsys.readouterr().out
    assert "leaderboard.md is stale" in out and "+| `metric_b` |" in out
    assert Path("leaderboard.md").read_bytes() == page  # --check writes nothing

    assert main(["leaderboard", "--scale", "smoke"]) == 0
    (store.figures_dir / sweep_figure("s1")).unlink()
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "figures missing" in capsys.readouterr().out


def test_check_fails_on_rows_that_want_records_or_an_installed_metric(tmp_path: Path, monkeypatch, capsys,
                                                                      grid_metrics: None) -> None:
    store = _store(tmp_path)
    monkeypatch.chdir(tmp_path)
    store.record_path("smoke", "p1", "metric_c").unlink()
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "metric_c: incomplete: no current record on p1" in capsys.readouterr().out
    metrics.REGISTRY.remove("metric_b")  # as if its plugin were uninstalled
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "metric_b: not installed" in capsys.readouterr().out
    assert "| `metric_b` | 0.550 | not installed" in Path("leaderboard.md").read_text()


def test_prune_removes_records_of_what_is_not_installed(tmp_path: Path, capsys) -> None:
    store = ResultStore(tmp_path / "results")
    for metric in ("linear_cka", "gone_metric"):
        rec = make_record(metric, "s1", [0.5, 0.5])
        rec["task"] = "noise_sweep"
        store.save_record(Record.from_json(rec))
        store.save_conformance(passed(metric))
    rec = make_record("linear_cka", "s1", [0.5, 0.5])
    rec["task"] = "gone_task"
    store.save_record(Record.from_json(rec))
    assert main(["prune", "--results", str(store.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 3 file(s)" in out and "gone_metric.json" in out and "gone_task" in out
    assert len(list(store.root.rglob("*.json"))) == 5
    assert main(["prune", "--results", str(store.root)]) == 0
    left = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.json"))
    assert left == ["conformance/linear_cka.json", "records/smoke/noise_sweep/linear_cka.json"]


@pytest.mark.parametrize("bad", [1.7, -5, None, "abc", float("nan")])
def test_a_hand_edited_score_is_caught_not_ranked(tmp_path: Path, capsys, bad, grid_metrics: None) -> None:
    store = _store(tmp_path)
    for metric, task in (("metric_a", "r1"), ("metric_c", "s1")):
        path = store.record_path("smoke", task, metric)
        rec = json.loads(path.read_text())
        rec["score"] = bad
        path.write_text(json.dumps(rec))  # NaN is written as the non-JSON token NaN, as an editor might
    assert main(["leaderboard", "--scale", "smoke", "--results", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "2 invalid record(s)" in err and "r1/metric_a.json" in err and "s1/metric_c.json" in err
    assert "is not a finite number in [0, 1]" in err or "unreadable record" in err


def test_output_and_results_paths_are_configurable(tmp_path: Path, capsys, grid_metrics: None) -> None:
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
    page = render(board_of(grid(), conformance()), "figs")
    first = {p.name: p.read_bytes() for p in draw(page, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in draw(page, tmp_path / "b")}
    assert first == second and len(first) == 1 + len(CATS)




# ------------------------------------------------------------------------------------- records the code outgrew

INSTALLED = Installed(lambda m: 1, {t: 1 for t in CATS})


def test_a_metric_version_bump_without_a_rerun_is_stale_not_ranked() -> None:
    board = board_of(grid(), conformance(), installed=Installed(lambda m: 2 if m == "metric_c" else 1,
                                                                {t: 1 for t in CATS}))
    apart = {r.metric: texts(r.apart) for r in board.apart}
    assert apart["metric_c"][0] == ("stale: records at metric version 1, installed 2 (`simstress run --metrics "
                                    "'metric_c'` recomputes them)")
    assert [r.metric for r in board.ranked] == ["metric_b"]


def test_a_record_of_a_newer_task_version_is_the_stale_one() -> None:
    recs = grid()
    recs[0] = make_record("metric_a", "r1", [1.0, 0.8], task_version=2)  # not the installed version
    board = board_of(recs, {**conformance(), "metric_a": passed("metric_a")}, installed=INSTALLED)
    assert [t.version for t in board.tasks] == [1, 1, 1, 1]
    apart = {r.metric: texts(r.apart) for r in board.apart}
    assert apart["metric_a"] == ("incomplete: no current record on r1",)
    assert [r.metric for r in board.ranked] == ["metric_c", "metric_b"]  # the others are not made incomplete


def test_a_registered_task_without_records_is_named() -> None:
    recs = [r for r in grid() if r["task"] != "p1"]
    board = board_of(recs, conformance(), installed=INSTALLED)
    assert board.unrecorded == ("p1",) and "p1" not in [t.name for t in board.tasks]
    page = render(board, "figs").text
    assert ("⚠ registered task(s) without a record, left out of the ranking: `p1`; run "
            "`simstress run --scale smoke --tasks p1`.") in page


def test_a_record_cut_to_fewer_seeds_is_not_ranked_beside_the_others() -> None:
    recs = grid()
    cut = make_record("metric_c", "s1", [0.5, 0.7])
    cut.update(seeds=[0], seed_scores=[0.5], score=0.5, runs=cut["runs"][:1])
    recs[[i for i, r in enumerate(recs) if (r["metric"], r["task"]) == ("metric_c", "s1")][0]] = cut
    board = board_of(recs, conformance(), installed=INSTALLED)
    assert board.seeds == (0, 1)
    assert texts({r.metric: r for r in board.apart}["metric_c"].apart) == (
        "other seeds: the records on s1 do not hold the page's seeds 0, 1",)


def test_check_fails_on_stale_records_and_unrecorded_tasks(tmp_path: Path, monkeypatch, capsys,
                                                           grid_metrics: None) -> None:
    _store(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 0
    metrics.REGISTRY.remove("metric_c")
    metrics.register(name="metric_c", cost="O(1)", reference="test only", version=2)(_one)
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "metric_c: stale: records at metric version 1, installed 2" in capsys.readouterr().out
    install_tasks(monkeypatch, [*CATS, "unrun"])
    assert main(["leaderboard", "--scale", "smoke"]) == 0
    assert main(["leaderboard", "--scale", "smoke", "--check"]) == 1
    assert "task unrun: no record" in capsys.readouterr().out


def test_a_metric_id_that_looks_like_mathtext_is_drawn_as_written(tmp_path: Path) -> None:
    dollar = "cost$\\alpha$"
    recs = [make_record(dollar, t, [0.5, 0.5]) for t in CATS]
    page = render(board_of(recs, {dollar: passed(dollar)}), "figs")
    assert {p.name for p in draw(page, tmp_path)} == {HEATMAP, *(sweep_figure(t) for t in CATS)}
