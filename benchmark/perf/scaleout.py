"""Wall time of one grid under each executor, and the scheduling overhead per cell (a benchmark, not a test).

    python -m simstress.benchmark.perf.scaleout [--tasks GLOB] [--metrics GLOB] [--scale S] [--jobs N]

Runs the selection from scratch (a fresh results folder each time, the committed networks and attacks linked in,
so trained artifacts are reused and derived ones rebuilt) serially, with `--jobs N` and on a local Ray cluster of
N CPUs; then a grid of near-instant cells (smoke `invertible_linear` × the CKA ids, three seeds) under each, whose
wall time per cell beyond the serial run's is the executor's overhead per cell. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from simstress.benchmark import runner
from simstress.benchmark.executors import make_executor
from simstress.benchmark.plan import select_metrics, select_tasks
from simstress.benchmark.records import ResultStore

COMMITTED = ("networks", "manipulated")  # built by training: linked, not rebuilt
TINY = ("invertible_linear", "*cka*")


def timed(kind: str, jobs: int, results: Path, metric_ids: list[str], task_names: list[str], scale: str,
          ) -> tuple[float, int]:
    root = Path(tempfile.mkdtemp(prefix=f"scaleout-{kind}-"))
    for name in COMMITTED:
        if (results / name).is_dir():
            os.symlink((results / name).resolve(), root / name)
    parallel = kind != "serial"
    executor = make_executor("ray" if kind == "ray" else "local", jobs=jobs if parallel else 1,
                             modules=runner.worker_modules(metric_ids, task_names) if parallel else [])
    start = time.perf_counter()
    summary = runner.run(ResultStore(root), metric_ids, task_names, scale=scale, seeds=[0, 1, 2], device="cpu",
                         quiet=True, executor=executor)
    return time.perf_counter() - start, sum(summary.computed.values())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simstress.benchmark.perf.scaleout", description=__doc__)
    p.add_argument("--tasks", default="pretrained_*")
    p.add_argument("--metrics", default="*")
    p.add_argument("--scale", default="default")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    grids = {"grid": (select_metrics(args.metrics), select_tasks(args.tasks), args.scale),
             "tiny": (select_metrics(TINY[1]), select_tasks(TINY[0]), "smoke")}
    rows = []
    for kind in ("serial", "jobs", "ray"):
        wall, cells = timed(kind, args.jobs, args.results, *grids["grid"])
        tiny, tiny_cells = timed(kind, args.jobs, args.results, *grids["tiny"])
        rows.append((kind, wall, cells, tiny / tiny_cells))
        if kind == "ray":
            import ray

            ray.shutdown()
    base = rows[0][3]
    print(f"| executor | {args.scale} grid ({args.tasks} × {args.metrics}): wall | cells | "
          f"overhead per cell beyond serial |", "|---|---:|---:|---:|", sep="\n")
    for kind, wall, cells, per_cell in rows:
        label = kind if kind == "serial" else f"{kind} ({args.jobs})"
        print(f"| {label} | {wall:.1f} s | {cells} | {per_cell - base:+.3f} s |")


if __name__ == "__main__":
    main()
