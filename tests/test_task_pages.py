"""The sections the built-in tasks add to the page (`simstress.core.page`): the networks the records used, Davari et
al.'s Figs. 2 and 4c on the zoo, the attack matrix and the manipulated networks, from records and cards alone.

Records are written by hand (their JSON form, read through the one reader); every expected number is worked out
from them here.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from simstress.benchmark.cli import installed_version, main
from simstress.benchmark.figures import draw
from simstress.benchmark.leaderboard import HEATMAP, Installed, build_board, render, sweep_figure
from simstress.benchmark.records import ResultStore
from simstress.tasks.manipulation_page import (
    ATTACK_FIGURE,
    MAPS_FIGURE,
    PCA_FIGURE,
    attack_matrix,
    transfer_only,
)
from simstress.tasks.zoo_page import FIG4C_FIGURE, MEMO_FIGURE, ZOO_FIGURE, fig4c_numbers, metric_family

from .conftest import CATS, as_records, conformance, grid, install_tasks, make_record, passed

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
    rec["metric_version"] = installed_version(metric) or 1  # current, where installed
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


def cards(found: dict) -> callable:
    return lambda kind, key: found.get(key)


def zoo_board(metrics_: tuple[str, ...] = ("linear_cka", "procrustes")):
    return build_board("smoke", as_records(zoo_records(metrics_)), {m: passed(m) for m in metrics_},
                       load_card=cards({KEY: CARD, GONE: None}))


def figure_names(board) -> set[str]:
    return {f.name for f in render(board, "figs").figures}


def test_networks_section_lists_the_cards_the_records_name() -> None:
    board = zoo_board()
    used = board.view("figs").artifacts("networks")
    assert [(n.key, n.name) for n in used] == [(GONE, GONE), (KEY, "m1-w1-generalized-s0")]
    page = render(board, "figs").text
    section = page[page.index("## Networks"):page.index("## Built from")]
    assert ("| `m1-w1-generalized-s0` | generalized | 1 | 0 | `fashion_mnist_slice` | 3,000 | 2 | 87.5% | 80.0% | "
            "86,170 | 12.5 s | cpu | `abababababab` |") in section
    assert f"| `{GONE}` | card missing |" in section and f"⚠ `{GONE}`: no card" in section
    assert f"](figs/{ZOO_FIGURE})" in section and ZOO_FIGURE in figure_names(board)
    plain = render(build_board("smoke", as_records(grid()), conformance()), "figs")  # no network: no section
    assert "## Networks" not in plain.text and ZOO_FIGURE not in {f.name for f in plain.figures}


def test_a_card_of_another_build_is_flagged() -> None:
    board = build_board("smoke", as_records(zoo_records()), {m: passed(m) for m in ("linear_cka", "procrustes")},
                        load_card=cards({KEY: {**CARD, "sha256": "cd" * 32}}))
    assert "⚠ `m1-w1-generalized-s0`: the records used sha256 `abababababab`, the card now holds another build" \
        in render(board, "figs").text


def test_memorization_gets_its_own_figure_instead_of_a_sweep() -> None:
    recs = zoo_records() + [zoo_record("gone_metric[p=1]", "memorization")]
    board = build_board("smoke", as_records(recs), {})
    names = figure_names(board)
    assert sweep_figure("memorization") not in names and MEMO_FIGURE in names
    assert sweep_figure("network_outlier") in names and FIG4C_FIGURE in names
    # the family is the registered metric's module; an id no longer installed keeps its base name
    assert [metric_family(m) for m in ("gone_metric[p=1]", "linear_cka", "procrustes")] == [
        "gone_metric", "cka", "procrustes"]
    page = render(board, "figs").text
    assert f"[memorization](figs/{MEMO_FIGURE}) (sens.)" in page and f"[block](figs/{MEMO_FIGURE})" in page
    assert f"![memorization](figs/{MEMO_FIGURE})" in page and "sweep_memorization" not in page


def test_the_memorization_figure_draws_beside_a_calibration_row() -> None:
    """A calibration row is recorded on every task but never ranked: the figure shows the ranked metrics only (a
    family holding nothing but calibration rows once left an empty panel that could not be titled)."""
    recs = zoo_records() + [zoo_record("constant", "memorization")]
    installed = Installed(lambda m: 1, {t: 1 for t in ZOO}, lambda m: "constant" if m == "constant" else "")
    board = build_board("smoke", as_records(recs), {m: passed(m) for m in ("linear_cka", "procrustes", "constant")},
                        installed, load_card=cards({KEY: CARD, GONE: None}))
    assert "constant" not in board.metrics
    memo = next(f for f in render(board, "figs").figures if f.name == MEMO_FIGURE)
    assert memo.draw().startswith(b"\x89PNG")


def test_fig4c_sentence_reports_the_records_linear_cka() -> None:
    board = zoo_board()
    numbers = fig4c_numbers(board.view("figs"))
    at_class = [v for seed in CLASS_END for v in seed]  # qp_direction only: head_nullspace rows read 0.5
    at_point = [v for seed in POINT_END for v in seed]
    assert numbers["class"] == (100.0, pytest.approx(at_class))
    assert numbers["point"] == (1000.0, pytest.approx(at_point))
    page = render(board, "figs").text
    assert (f"here, at the largest c (c/σ̄ = 100 for a class, 1000 for a point), linear CKA reads "
            f"{statistics.fmean(at_class):.3f} ± {statistics.stdev(at_class):.3f} for a class and "
            f"{statistics.fmean(at_point):.3f} ± {statistics.stdev(at_point):.3f} for a single point "
            f"(a Fashion-MNIST slice, M1 w = 1)") in page
    assert "0.188 ± 0.085 for a class and 0.025 ± 0.013 for a single point" in page  # the same, by hand
    without = zoo_board(("procrustes",))
    assert fig4c_numbers(without.view("figs")) is None and FIG4C_FIGURE in figure_names(without)
    page = render(without, "figs").text
    assert "Davari et al. (CIFAR-10)" not in page and f"figs/{FIG4C_FIGURE}" in page


def test_zoo_figures_are_valid_deterministic_and_only_their_own_stale_files_go(tmp_path: Path) -> None:
    page = render(zoo_board(), "figs")
    first = {p.name: p.read_bytes() for p in draw(page, tmp_path / "a")}
    assert set(first) == {HEATMAP, MEMO_FIGURE, FIG4C_FIGURE, ZOO_FIGURE, sweep_figure("network_class_translation"),
                          sweep_figure("network_outlier")}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png for png in first.values())
    (tmp_path / "a" / sweep_figure("memorization")).write_bytes(b"old")  # drawn by an earlier simstress
    (tmp_path / "a" / "perf_cpu.png").write_bytes(b"perf")
    assert {p.name: p.read_bytes() for p in draw(page, tmp_path / "a")} == first
    assert not (tmp_path / "a" / sweep_figure("memorization")).exists()
    draw(render(build_board("smoke", as_records(grid()), conformance()), "figs"), tmp_path / "a")  # networks gone
    left = {p.name for p in (tmp_path / "a").iterdir()}
    assert left == {HEATMAP, "perf_cpu.png", *(sweep_figure(t) for t in CATS)}


def test_cli_reads_the_cards_from_the_results_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    install_tasks(monkeypatch, ZOO)
    store = ResultStore(tmp_path / "results")
    for rec in as_records(zoo_records()):
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
                                      for (m, a), v in MOVES.items() if m == metric},
                          "attacked_through": ["linear_cka"]}
    return rec


def manipulation_board(root: Path | None = None):
    return build_board("smoke", as_records([manipulation_record(m) for m in ("linear_cka", "rsa")]),
                       {m: passed(m) for m in ("linear_cka", "rsa")}, load_card=cards({ATTACK_KEY: ATTACK_CARD}),
                       root=root)


def test_the_attack_matrix_and_the_manipulated_networks_come_from_records_and_cards() -> None:
    board = manipulation_board()
    attacks, metrics_, values = attack_matrix(board.view("figs"))
    assert attacks == ["linear_cka→identity", "procrustes→ones"]
    assert values[("linear_cka→identity", "linear_cka")] == pytest.approx(0.45)  # mean of the two seeds
    names = figure_names(board)
    assert {ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE} <= names and sweep_figure("map_manipulation") not in names
    page = render(board, "figs").text
    section = page[page.index("## Map manipulation"):page.index("## Built from")]
    order = " | ".join(f"`{m}`" + (" †" if m == "rsa" else "") for m in metrics_)
    assert f"| Attack (attacker → target) | {order} |" in section
    row = {"linear_cka": "0.450", "rsa": "0.060"}
    assert f"| `linear_cka→identity` | {' | '.join(row[m] for m in metrics_)} |" in section
    assert ("| `linear_cka→identity@m1-w1-generalized-s0` | 1,000 | 90.0% → 89.5% | 96.0% | 0.600 → 0.100 "
            "(`linear_cka`); 0.590 → 0.080 (`linear_cka_debiased`) | 4.0% → 30.0% | yes | 3.3 min | `efefefefefef` |"
            ) in section
    assert render(manipulation_board(), "figs").text == page


def test_manipulation_figures_are_deterministic_with_or_without_the_pca_file(tmp_path: Path) -> None:
    import numpy as np

    root = tmp_path / "results"
    (root / "manipulated" / ATTACK_KEY).mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(root / "manipulated" / ATTACK_KEY / "pca.npz", coords=rng.normal(size=(2, 50, 2)).astype(np.float32),
             labels=np.arange(50) % 10)
    page = render(manipulation_board(root), "figs")
    first = {p.name: p.read_bytes() for p in draw(page, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in draw(page, tmp_path / "b")}
    assert first == second and {ATTACK_FIGURE, MAPS_FIGURE, PCA_FIGURE} <= set(first)
    placeholder = {p.name: p.read_bytes() for p in draw(render(manipulation_board(), "figs"), tmp_path / "c")}[
        PCA_FIGURE]
    assert placeholder != first[PCA_FIGURE] and placeholder.startswith(b"\x89PNG")


def test_an_attack_that_changed_the_function_is_listed_not_scored() -> None:
    failed = {**ATTACK_CARD, "test_accuracy": {"before": 0.9, "after": 0.87}, "agreement": 0.93}
    board = build_board("smoke", as_records([manipulation_record(m) for m in ("linear_cka", "rsa")]),
                        {m: passed(m) for m in ("linear_cka", "rsa")}, load_card=cards({ATTACK_KEY: failed}))
    assert ("| 4.0% → 30.0% | no: -3.0 pp, agreement 93.0% (needs ≥ -1 pp and ≥ 95%) | 3.3 min |"
            in render(board, "figs").text)


def test_metrics_no_scored_attack_trained_through_are_marked_transfer_only() -> None:
    view = manipulation_board().view("figs")
    # rsa is not differentiable; linear_cka's estimator is the one its attack trained through
    assert transfer_only(view, ["linear_cka", "rsa"]) == ["rsa"]
    recs = [manipulation_record(m) for m in ("linear_cka", "rsa")]
    for rec in recs:
        for run in rec["runs"]:
            run["details"]["attacked_through"] = []  # linear CKA's attack failed acceptance: nothing trained through
    board = build_board("smoke", as_records(recs), {m: passed(m) for m in ("linear_cka", "rsa")},
                        load_card=cards({ATTACK_KEY: ATTACK_CARD}))
    assert transfer_only(board.view("figs"), ["linear_cka", "rsa"]) == ["linear_cka", "rsa"]
    page = render(board, "figs").text
    assert "| Attack (attacker → target) | `linear_cka` † | `rsa` † |" in page and "† never attacked through" in page


# ------------------------------------------------------------------------------------------- the paper's numbers


def subset_record(metric: str, similarity: list[float]) -> dict:
    rec = make_record(metric, "r1", [0.5, 0.5])
    rec.update(task="subset_translation", task_info={"category": "robustness", "summary": "cubes",
                                                     "sweep_name": "c", "log_x": True})
    for run in rec["runs"]:
        run["curve"] = {"x": [1.0, 10.0, 50.0], "similarity": similarity}
    return rec


def paper_board(root: Path | None = None):
    recs = [subset_record("linear_cka", [1.0, 0.25, 0.3]), *(manipulation_record(m) for m in ("linear_cka", "rsa"))]
    return build_board("smoke", as_records(recs), {m: passed(m) for m in ("linear_cka", "rsa")},
                       load_card=cards({ATTACK_KEY: ATTACK_CARD}), root=root)


def test_paper_section_puts_the_records_numbers_beside_the_papers() -> None:
    page = render(paper_board(), "figs").text
    section = page[page.index("## Paper"):]
    assert "| 4a | linear CKA at c = 1, cube 2 translated | ≈ 1.0 | 1.000 | ± 0.05 | yes |" in section
    assert "| 4a | linear CKA at c = 10 | ≈ 0.22 | 0.250 | ± 0.05 | yes |" in section
    # 0.3 is farther than 0.05 from the paper's 0.125: said, not hidden
    assert "| 4a | linear CKA at c = 50 | ≈ 0.12–0.13 \\(limit 0.112\\) | 0.300 | ± 0.05 | **no** |" in section
    # the attack's card: accuracy 90.0 % → 89.5 %, and the map error under the estimator the attacker trained through
    assert "| 5 | test accuracy change, linear CKA → identity | −0.5 pp | -0.50 pp | within 1 pp | yes |" in section
    assert ("| 5 | map error \\(mean \\|M − T\\| off the diagonal\\), linear CKA → identity "
            "| matches the target visibly | 0.080 | ≤ 0.1 | yes |") in section
    assert "| 4b | linear CKA, Y = X·M, mean over μ = σ | 0.091 | – | ± 0.05 | no records |" in section
    assert "No records yet for (rows of) Fig. 2, 4a, 4b, 4c, 5, 6, 7" in section
    plain = render(build_board("smoke", as_records(grid()), conformance()), "figs").text
    assert "## Paper" not in plain  # none of the paper's tasks recorded


WIDTH_KEY = "1a2b3c4d5e"
WIDTH_CARD = {**ATTACK_CARD, "name": "linear_cka→match:m1-w1-generalized-s0@m1-w2-generalized-s0", "sha256": "ab" * 32,
              "params": {"attacker": "linear_cka", "target": "match:m1-w1-generalized-s0", "recipe": {"steps": 1000}},
              "test_accuracy": {"before": 0.927, "after": 0.922},
              "maps": {key: {**m, "error": {"original": 0.012, "achieved": 0.039}}
                       for key, m in ATTACK_CARD["maps"].items()}}


def test_paper_section_checks_fig7s_premise_not_only_its_attack() -> None:
    rec = manipulation_record("linear_cka")
    rec["artifacts"].append({"seed": 0, "name": "figure:width", "kind": "manipulated", "key": WIDTH_KEY,
                             "sha256": WIDTH_CARD["sha256"]})
    board = build_board("smoke", as_records([rec]), {"linear_cka": passed("linear_cka")},
                        load_card=cards({ATTACK_KEY: ATTACK_CARD, WIDTH_KEY: WIDTH_CARD}))
    page = render(board, "figs").text
    section = page[page.index("## Paper"):]
    # the attack keeps the function and ends near the target, but the wide map was there before it: said
    assert ("| 7 | map error of the w = 2 network against the w = 1 map, before the attack "
            "| differs visibly \\(ResNet-34 ×2 against ×1\\) | 0.012 | &gt; 0.1 | **no** |") in section
    assert ("| 7 | test accuracy change, a w = 2 network made to show a w = 1 map | −0.6 pp \\(ResNet-34 ×2\\) "
            "| -0.50 pp | within 1 pp | yes |") in section
    assert "| 7 | map error, the w = 2 network against the w = 1 map | matches the target visibly | 0.039 |" in section


def test_leaderboard_section_prints_one_section_and_writes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    install_tasks(monkeypatch, {"subset_translation": ("robustness", "c", True)})
    store = ResultStore(tmp_path / "results")
    store.save_record(as_records([subset_record("linear_cka", [1.0, 0.25, 0.3])])[0])
    store.save_conformance(passed("linear_cka"))
    out = tmp_path / "board.md"
    args = ["leaderboard", "--scale", "smoke", "--results", str(store.root), "--output", str(out)]
    capsys.readouterr()
    assert main([*args, "--section", "Paper"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## Paper") and "| 4a | linear CKA at c = 10 | ≈ 0.22 | 0.250 |" in printed
    assert "## Ranking" not in printed and not out.exists() and not store.figures_dir.exists()
    assert main([*args, "--section", "Nonsense"]) == 2
    assert "the page has no section 'Nonsense'; it has: " in capsys.readouterr().err
