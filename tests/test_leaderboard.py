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
from pathlib import Path

import pytest

from simstress import metrics
from simstress.benchmark.cli import main
from simstress.benchmark.figures import draw
from simstress.benchmark.leaderboard import (
    ATTACK_FIGURE,
    FIG4C_FIGURE,
    HEATMAP,
    MAPS_FIGURE,
    MEMO_FIGURE,
    PCA_FIGURE,
    ZOO_FIGURE,
    build_board,
    fig4c_numbers,
    render,
    sweep_figure,
)
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


def passed(metric: str) -> dict:
    return {"metric": metric, "metric_version": 1, "passed": True, "declared": ["translation"],
            "observed": ["translation"], "checks": [["invariance:translation", True, ""]]}


def conformance() -> dict:
    return {
        "metric_a": {"metric": "metric_a", "metric_version": 1, "passed": False,
                     "declared": ["orthogonal", "translation"], "observed": ["permutation", "translation"],
                     "checks": [["finite_scalar", True, ""], ["invariance:orthogonal", False, "max change 0.3"]]},
        "metric_b": passed("metric_b"), "metric_c": passed("metric_c"), "metric_d": passed("metric_d"),
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
    assert rows["metric_d"].overall is None and rows["metric_d"].apart == ("no task applies to it",)
    # metric_a scores as metric_c does but fails its conformance check: listed apart, never ranked
    assert [(r.metric, r.rank) for r in board.rows] == [("metric_c", 1), ("metric_b", 2), ("metric_a", None),
                                                         ("metric_d", None)]
    assert rows["metric_a"].apart == ("does not conform: fails invariance:orthogonal",)
    assert [t.name for t in board.tasks] == ["r1", "r2", "s1", "p1"]


def test_page_shows_every_section() -> None:
    page = render(build_board("smoke", grid(), conformance()), "results/figures")
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
    first = render(build_board("smoke", recs, conformance()), "results/figures")
    random.Random(0).shuffle(recs)
    assert render(build_board("smoke", recs, conformance()), "results/figures") == first


def test_incomplete_or_mixed_records_are_flagged_and_never_ranked() -> None:
    recs = [r for r in grid() if (r["metric"], r["task"]) != ("metric_c", "p1")]
    recs[0] = make_record("metric_a", "r1", [1.0, 0.8], task_version=2)
    board = build_board("smoke", recs, conformance())
    page = render(board, "figs")
    assert "⚠ 1 metric × task cells have no record (`metric_c` × `p1`)" in page
    assert "⚠ task `r1` has records at versions [1, 2]: rerun `simstress run --tasks 'r1'`." in page
    # one cell deleted (metric_c) or one stale cell (the others' r1 is at version 1): nothing ranks above a
    # complete row by losing a poor cell
    apart = {r.metric: r.apart for r in board.apart}
    assert apart["metric_c"][0] == "incomplete: no current record on r1, p1"
    assert apart["metric_b"] == ("incomplete: no current record on r1",)
    assert board.ranked == []


def test_one_cell_never_ranks_first() -> None:
    recs = grid() + [make_record("lucky", "r2", [1.0, 1.0])]
    board = build_board("smoke", recs, {**conformance(), "lucky": passed("lucky")})
    assert [r.metric for r in board.ranked] == ["metric_c", "metric_b"]
    assert dict((r.metric, r.apart) for r in board.apart)["lucky"] == ("incomplete: no current record on r1, s1, p1",)


def test_only_equal_unrounded_scores_tie() -> None:
    recs = [make_record(m, "r1", s) for m, s in (("m1", [0.5, 0.5]), ("m2", [0.50004, 0.50004]),
                                                ("m3", [0.4, 0.4]), ("m4", [0.4, 0.4]))]
    board = build_board("smoke", recs, {m: passed(m) for m in ("m1", "m2", "m3", "m4")})
    assert [(r.metric, r.rank) for r in board.rows] == [("m2", 1), ("m1", 2), ("m3", 3), ("m4", 3)]


def test_uninstalled_unchecked_and_stale_reports_are_listed_apart() -> None:
    conf = {**conformance(), "metric_b": {**passed("metric_b"), "metric_version": 2}}
    del conf["metric_d"]
    board = build_board("smoke", grid(), conf, installed=lambda m: m != "metric_c")
    apart = {r.metric: r.apart for r in board.apart}
    assert apart["metric_c"] == ("not installed: no registered metric has this id (`simstress prune` removes its "
                                 "records)",)
    assert apart["metric_b"][0].startswith("not checked at the version of its records (report: version 2")
    assert apart["metric_d"][0].startswith("not checked: no conformance report")
    assert board.ranked == []


def test_saturation_and_rank_stability() -> None:
    scores = {"m1": {"r1": 1.0, "r2": 1.0, "s1": 0.2, "p1": 1.0}, "m2": {"r1": 0.5, "r2": 0.5, "s1": 0.9, "p1": 1.0},
              "m3": {"r1": 0.9, "r2": 0.7, "s1": 0.3, "p1": 1.0}}
    recs = [make_record(m, t, [v, v]) for m, row in scores.items() for t, v in row.items()]
    board = build_board("smoke", recs, {m: passed(m) for m in scores})
    assert board.saturated == {"p1"}  # every metric 1.0 there; r2's median is 0.7
    # headline (equal categories): m1 (1 + 0.2 + 1)/3 = 0.733, m2 (0.5 + 0.9 + 1)/3 = 0.8, m3 (0.8 + 0.3 + 1)/3 = 0.7
    assert board.stability.ranks["equal categories"] == {"m2": 1, "m1": 2, "m3": 3}
    # equal tasks: m1 3.2/4 = 0.8, m2 2.9/4 = 0.725, m3 2.9/4 = 0.725 (a tie)
    assert board.stability.ranks["equal tasks"] == {"m1": 1, "m2": 2, "m3": 2}
    assert board.stability.ranks["without sensitivity"] == {"m1": 1, "m3": 2, "m2": 3}
    assert board.stability.tau["without specificity"] == pytest.approx(1.0)  # p1 is the same for all
    assert board.stability.tau["without sensitivity"] == pytest.approx(-1 / 3)
    page = render(board, "figs")
    assert "⚠ Saturated" in page and "⚠ saturated (median ranked score ≥ 0.99)" in page
    assert "| `m2` | 1 | 2 | 1 | 3 | 1 |" in page  # equal categories, equal tasks, without rob./sens./spec.


def test_text_from_records_cannot_break_or_inject_the_page() -> None:
    hostile = "x|y`z<script>alert(1)</script>[click](http://evil)"
    recs = [make_record(hostile, t, [0.5, 0.5]) for t in CATS]
    recs[0] = make_record(hostile, "r1", status="error", message="**bold** | `code` <img src=x> [a](b)")
    for rec in recs:
        rec["task_info"]["summary"] = "summary with | and <b>html</b> and [link](http://evil)"
    page = render(build_board("smoke", recs, {hostile: passed(hostile)}), "figs")
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", page)  # a code span shows its text literally
    assert "<script>" not in outside_code and "<img" not in outside_code and "<b>" not in outside_code
    assert "](http" not in outside_code  # no live link
    table = [line for line in page.splitlines() if line.startswith("| ") and "x\\|y" in line]
    assert table and all(len(re.findall(r"(?<!\\)\|", line)) == len(re.findall(r"(?<!\\)\|", table[0]))
                         for line in table if line.count("0.500") == 4)
    assert "``x\\|y`z<script>alert(1)</script>[click](http://evil)``" in page  # the id, intact, in code


@pytest.fixture
def grid_metrics() -> Iterator[None]:
    """The grid's metric ids registered (as throw-away metrics), so the CLI sees them installed."""
    for name in ("metric_a", "metric_b", "metric_c", "metric_d"):
        metrics.register(name=name, cost="O(1)", reference="test only")(_one)
    yield
    for name in ("metric_a", "metric_b", "metric_c", "metric_d"):
        metrics.REGISTRY.remove(name)


def _one(X, Y):
    """1 (test fixture)."""
    return X.new_ones(())


def _store(tmp_path: Path) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    for rec in grid():
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
        store.save_record(rec)
        store.save_conformance(passed(metric))
    rec = make_record("linear_cka", "s1", [0.5, 0.5])
    rec["task"] = "gone_task"
    store.save_record(rec)
    assert main(["prune", "--results", str(store.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove 3 file(s)" in out and "gone_metric.json" in out and "gone_task" in out
    assert len(list(store.root.rglob("*.json"))) == 5
    assert main(["prune", "--results", str(store.root)]) == 0
    left = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.json"))
    assert left == ["conformance/linear_cka.json", "records/smoke/noise_sweep/linear_cka.json"]


@pytest.mark.parametrize("bad", [1.7, -5, None, "abc", float("nan")])
def test_a_hand_edited_score_is_caught_not_ranked(tmp_path: Path, capsys, bad) -> None:
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


# ------------------------------------------------------------------------------------- the trained networks

KEY, GONE = "a1b2c3d4e5", "f6e5d4c3b2"  # a network with a card; one whose card is missing
CARD = {"name": "m1-w1-generalized-s0", "sha256": "ab" * 32, "train_accuracy": 0.875, "test_accuracy": 0.8,
        "parameters": 86170, "build_seconds": 12.5, "build_device": "cpu",
        "params": {"arch": "m1", "width": 1, "role": "generalized", "seed": 0, "dataset": "fashion_mnist_slice",
                   "recipe": {"epochs": 2}},
        "data": {"dataset": "fashion_mnist_slice", "train_images": 3000, "test_images": 1000},
        "history": [{"epoch": 1, "step": 24, "train_loss": 1.5, "train_batch_accuracy": 0.5, "seconds": 5.0},
                    {"epoch": 2, "step": 48, "train_loss": 1.0, "train_batch_accuracy": 0.7, "seconds": 10.0,
                     "test_accuracy": 0.8}]}
ZOO = {"memorization": ("sensitivity", "block", False), "network_class_translation": ("robustness", "c", True),
       "network_outlier": ("robustness", "c", True)}
# linear CKA at the largest c per seed: qp_direction classes 0 and 1, and images 5 and 9
CLASS_END, POINT_END = [[0.2, 0.1], [0.15, 0.3]], [[0.01, 0.03], [0.02, 0.04]]


def zoo_curve(task: str, metric: str, seed: int) -> dict:
    base = 0.9 if metric == "linear_cka" else 0.95
    if task == "memorization":
        rows = [(b, pair, base - 0.1 * i * b / 7) for b in range(8) for i, pair in
                enumerate(("generalized", "memorized", "random"))]
        return {"x": [r[0] for r in rows], "block": [r[0] for r in rows], "pair": [r[1] for r in rows],
                "agreement": [0.9 if r[1] == "generalized" else 0.1 for r in rows], "similarity": [r[2] for r in rows]}
    if task == "network_class_translation":
        rows = [(x, variant, k, 0.5 if variant == "head_nullspace" else CLASS_END[seed][k] if x == 100.0 else base)
                for variant in ("head_nullspace", "qp_direction") for k in (0, 1) for x in (1.0, 10.0, 100.0)]
        return {"x": [r[0] for r in rows], "variant": [r[1] for r in rows], "class": [r[2] for r in rows],
                "c": [2 * r[0] for r in rows], "similarity": [r[3] for r in rows],
                "linear_cka_theory": [1 / r[0] for r in rows]}
    rows = [(x, image, POINT_END[seed][i] if x == 1000.0 else base) for i, image in enumerate((5, 9))
            for x in (1.0, 1000.0)]
    return {"x": [r[0] for r in rows], "variant": ["head_nullspace"] * len(rows), "image": [r[1] for r in rows],
            "c": [3 * r[0] for r in rows], "similarity": [r[2] for r in rows],
            "linear_cka_theory": [1 / r[0] for r in rows]}


def zoo_record(metric: str, task: str, keys: tuple[str, ...] = (KEY,)) -> dict:
    rec = make_record(metric, "r1", [0.5, 0.5])
    category, sweep, log_x = ZOO[task]
    rec.update(task=task, task_info={"category": category, "summary": f"the {task} task", "sweep_name": sweep,
                                     "log_x": log_x},
               artifacts=[{"seed": s, "name": "network", "kind": "networks", "key": k, "sha256": CARD["sha256"]}
                          for s in (0, 1) for k in keys])
    for run in rec["runs"]:
        run["curve"] = zoo_curve(task, metric, run["seed"])
        run["details"] = {"dataset": "fashion_mnist_slice"}
    return rec


def zoo_records(metrics_: tuple[str, ...] = ("linear_cka", "procrustes")) -> list[dict]:
    return [zoo_record(m, t, (KEY, GONE) if t == "memorization" else (KEY,)) for m in metrics_ for t in ZOO]


def zoo_board(metrics_: tuple[str, ...] = ("linear_cka", "procrustes")):
    return build_board("smoke", zoo_records(metrics_), {m: passed(m) for m in metrics_},
                       cards={KEY: CARD, GONE: None})


def test_networks_section_lists_the_cards_the_records_name() -> None:
    recs = zoo_records()
    recs[0]["artifacts"] += [{"kind": "networks"}, {"kind": "other", "key": "0123"}]  # hand-edited: ignored
    board = build_board("smoke", recs, {m: passed(m) for m in ("linear_cka", "procrustes")},
                        cards={KEY: CARD, GONE: None})
    assert [(n.key, n.name) for n in board.networks] == [(GONE, GONE), (KEY, "m1-w1-generalized-s0")]
    page = render(board, "figs")
    section = page[page.index("## Networks"):page.index("## Built from")]
    assert ("| `m1-w1-generalized-s0` | generalized | 1 | 0 | `fashion_mnist_slice` | 3,000 | 2 | 87.5% | 80.0% | "
            "86,170 | 12.5 s | cpu | `abababababab` |") in section
    assert f"| `{GONE}` | card missing |" in section and f"⚠ `{GONE}`: no card" in section
    assert f"](figs/{ZOO_FIGURE})" in section and ZOO_FIGURE in board.figures()
    plain = render(build_board("smoke", grid(), conformance()), "figs")  # no network in the records: no section
    assert "## Networks" not in plain and ZOO_FIGURE not in build_board("smoke", grid(), conformance()).figures()


def test_a_card_of_another_build_is_flagged() -> None:
    board = build_board("smoke", zoo_records(), {m: passed(m) for m in ("linear_cka", "procrustes")},
                        cards={KEY: {**CARD, "sha256": "cd" * 32}})
    assert "⚠ `m1-w1-generalized-s0`: the records used sha256 `abababababab`, the card now holds another build" \
        in render(board, "figs")


def test_memorization_gets_its_own_figure_instead_of_a_sweep() -> None:
    recs = zoo_records() + [zoo_record("gone_metric[p=1]", "memorization")]
    board = build_board("smoke", recs, {})
    assert "memorization" not in [t.name for t in board.sweep_tasks()]
    assert sweep_figure("memorization") not in board.figures() and MEMO_FIGURE in board.figures()
    assert sweep_figure("network_outlier") in board.figures() and FIG4C_FIGURE in board.figures()
    # the family is the registered metric's module; an id no longer installed keeps its base name
    assert board.families == {"gone_metric[p=1]": "gone_metric", "linear_cka": "cka", "procrustes": "procrustes"}
    page = render(board, "figs")
    assert f"[memorization](figs/{MEMO_FIGURE}) (sens.)" in page and f"[block](figs/{MEMO_FIGURE})" in page
    assert f"![memorization](figs/{MEMO_FIGURE})" in page and "sweep_memorization" not in page


def test_fig4c_sentence_reports_the_records_linear_cka() -> None:
    board = zoo_board()
    numbers = fig4c_numbers(board)
    at_class = [v for seed in CLASS_END for v in seed]  # qp_direction only: head_nullspace rows read 0.5
    at_point = [v for seed in POINT_END for v in seed]
    assert numbers["class"] == (100.0, pytest.approx(at_class))
    assert numbers["point"] == (1000.0, pytest.approx(at_point))
    page = render(board, "figs")
    assert (f"here, at the largest c (c/σ̄ = 100 for a class, 1000 for a point), linear CKA reads "
            f"{statistics.fmean(at_class):.3f} ± {statistics.stdev(at_class):.3f} for a class and "
            f"{statistics.fmean(at_point):.3f} ± {statistics.stdev(at_point):.3f} for a single point "
            f"(a Fashion-MNIST slice, M1 w = 1)") in page
    assert "0.188 ± 0.085 for a class and 0.025 ± 0.013 for a single point" in page  # the same, by hand
    without = zoo_board(("procrustes",))
    assert fig4c_numbers(without) is None and FIG4C_FIGURE in without.figures()
    page = render(without, "figs")
    assert "Davari et al. (CIFAR-10)" not in page and f"figs/{FIG4C_FIGURE}" in page


def test_zoo_figures_are_valid_deterministic_and_only_their_own_stale_files_go(tmp_path: Path) -> None:
    board = zoo_board()
    first = {p.name: p.read_bytes() for p in draw(board, tmp_path / "a")}
    assert set(first) == {HEATMAP, MEMO_FIGURE, FIG4C_FIGURE, ZOO_FIGURE, sweep_figure("network_class_translation"),
                          sweep_figure("network_outlier")}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png for png in first.values())
    (tmp_path / "a" / sweep_figure("memorization")).write_bytes(b"old")  # drawn by an earlier simstress
    (tmp_path / "a" / "perf_cpu.png").write_bytes(b"perf")
    assert {p.name: p.read_bytes() for p in draw(board, tmp_path / "a")} == first
    assert not (tmp_path / "a" / sweep_figure("memorization")).exists()
    draw(build_board("smoke", grid(), conformance()), tmp_path / "a")  # the networks are gone from the records
    left = {p.name for p in (tmp_path / "a").iterdir()}
    assert left == {HEATMAP, "perf_cpu.png", *(sweep_figure(t) for t in CATS)}


def test_cli_reads_the_cards_from_the_results_folder(tmp_path: Path, capsys) -> None:
    store = ResultStore(tmp_path / "results")
    for rec in zoo_records():
        store.save_record(rec)
    for m in ("linear_cka", "procrustes"):
        store.save_conformance(passed(m))
    (store.root / "networks" / KEY).mkdir(parents=True)
    (store.root / "networks" / KEY / "card.json").write_text(json.dumps(CARD))
    assert store.load_card("networks", GONE) is None and store.load_card("networks", "../networks") is None
    out = tmp_path / "board.md"
    args = ["leaderboard", "--scale", "smoke", "--results", str(store.root), "--output", str(out)]
    assert main(args) == 0
    page = out.read_text()
    assert "| 87.5% | 80.0% |" in page and f"| `{GONE}` | card missing |" in page
    assert all((store.figures_dir / name).is_file() for name in (MEMO_FIGURE, FIG4C_FIGURE, ZOO_FIGURE))
    capsys.readouterr()
    assert main([*args, "--check"]) == 0
    (store.figures_dir / ZOO_FIGURE).unlink()
    assert main([*args, "--check"]) == 1
    assert f"figures missing from {store.figures_dir}: {ZOO_FIGURE}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- the manipulated networks

ATTACK_KEY = "9f8e7d6c5b"
ATTACK_CARD = {
    "name": "linear_cka→identity@m1-w1-generalized-s0", "sha256": "ef" * 32, "build_seconds": 200.0,
    "params": {"attacker": "linear_cka", "target": "identity", "recipe": {"steps": 1000}},
    "test_accuracy": {"before": 0.9, "after": 0.895}, "agreement": 0.96,
    "target_map": [[1.0 if i == j else 0.0 for j in range(8)] for i in range(8)],
    "maps": {"attacker": {"metric": "linear_cka", "error": {"original": 0.6, "achieved": 0.1},
                          "original": [[0.5] * 8] * 8, "achieved": [[0.1] * 8] * 8},
             "estimator": {"metric": "linear_cka_debiased", "error": {"original": 0.59, "achieved": 0.08},
                           "original": [[0.5] * 8] * 8, "achieved": [[0.08] * 8] * 8}},
    "variance_top1pct": {"original": 0.04, "manipulated": 0.3},
}
# map change of each evaluated metric under each attack, per seed
MOVES = {("linear_cka", "linear_cka→identity"): (0.5, 0.4), ("linear_cka", "procrustes→ones"): (0.1, 0.2),
         ("rsa", "linear_cka→identity"): (0.05, 0.07), ("rsa", "procrustes→ones"): (0.01, 0.01)}


def manipulation_record(metric: str) -> dict:
    rec = make_record(metric, "r1", [0.5, 0.5])
    rec.update(task="map_manipulation", task_info={"category": "robustness", "summary": "the manipulation task",
                                                   "sweep_name": "block", "log_x": False},
               artifacts=[{"seed": s, "name": "attack:linear_cka→identity", "kind": "manipulated", "key": ATTACK_KEY,
                           "sha256": ATTACK_CARD["sha256"]} for s in (0, 1)])
    for run in rec["runs"]:
        run["details"] = {"attacks": {a: {"map_change": v[run["seed"]], "pair_drop": 0.0, "damage": 0.5}
                                      for (m, a), v in MOVES.items() if m == metric}}
    return rec


def manipulation_board():
    return build_board("smoke", [manipulation_record(m) for m in ("linear_cka", "rsa")],
                       {m: passed(m) for m in ("linear_cka", "rsa")}, cards={ATTACK_KEY: ATTACK_CARD})


def test_the_attack_matrix_and_the_manipulated_networks_come_from_records_and_cards() -> None:
    board = manipulation_board()
    attacks, metrics_, values = board.attack_matrix()
    assert attacks == ["linear_cka→identity", "procrustes→ones"]
    assert values[("linear_cka→identity", "linear_cka")] == pytest.approx(0.45)  # mean of the two seeds
    assert {ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE} <= set(board.figures())
    assert "map_manipulation" not in [t.name for t in board.sweep_tasks()]
    page = render(board, "figs")
    section = page[page.index("## Map manipulation"):page.index("## Built from")]
    order = " | ".join(f"`{m}`" for m in metrics_)
    assert f"| Attack (attacker → target) | {order} |" in section
    row = {"linear_cka": "0.450", "rsa": "0.060"}
    assert f"| `linear_cka→identity` | {' | '.join(row[m] for m in metrics_)} |" in section
    assert ("| `linear_cka→identity@m1-w1-generalized-s0` | 1,000 | 90.0% → 89.5% | 96.0% | 0.600 → 0.100 "
            "(`linear_cka`); 0.590 → 0.080 (`linear_cka_debiased`) | 4.0% → 30.0% | yes | 3.3 min | `efefefefefef` |"
            ) in section
    assert render(manipulation_board(), "figs") == page


def test_manipulation_figures_are_deterministic_with_or_without_the_pca_file(tmp_path: Path) -> None:
    import numpy as np

    board = manipulation_board()
    root = tmp_path / "results"
    (root / "manipulated" / ATTACK_KEY).mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(root / "manipulated" / ATTACK_KEY / "pca.npz", coords=rng.normal(size=(2, 50, 2)).astype(np.float32),
             labels=np.arange(50) % 10)
    first = {p.name: p.read_bytes() for p in draw(board, tmp_path / "a", root)}
    second = {p.name: p.read_bytes() for p in draw(board, tmp_path / "b", root)}
    assert first == second and {ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE} <= set(first)
    placeholder = {p.name: p.read_bytes() for p in draw(board, tmp_path / "c")}[PCA_FIGURE]
    assert placeholder != first[PCA_FIGURE] and placeholder.startswith(b"\x89PNG")


def test_an_excluded_attack_is_marked_not_scored() -> None:
    recs = [manipulation_record(m) for m in ("linear_cka", "rsa")]
    recs[1]["runs"][1]["details"]["excluded"] = {"linear_cka→identity": 0.85}
    board = build_board("smoke", recs, {m: passed(m) for m in ("linear_cka", "rsa")}, cards={ATTACK_KEY: ATTACK_CARD})
    assert board.excluded_attacks() == {"linear_cka→identity": 0.85}
    assert "| 4.0% → 30.0% | no: agreement 85.0% on a sample | 3.3 min |" in render(board, "figs")
