"""`simstress perf ARGS`: run the suite (installed with the package, `suite/`) under pytest and write the results
JSON, or render the README section from them. Paths default to the current directory (results/perf/, README.md):
no repository is needed beside the package."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from . import __doc__ as PERF_DOC
from .grid import CONFIG_ENV, DTYPES, QUICK_SIZES, SIZES, Config
from .readme import report
from .results import write_results

SUITE = Path(__file__).resolve().parent / "suite"


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'1000x256,5000x512' -> ((1000, 256), (5000, 512))."""
    try:
        sizes = tuple(tuple(int(v) for v in item.lower().split("x")) for item in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must look like 1000x256,5000x512 (n x p, comma-separated); got "
                                         f"{text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstress perf", description=PERF_DOC.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small sizes only: {QUICK_SIZES}")
    p.add_argument("--sizes", type=parse_sizes, metavar="NxP,...",
                   help=f"the grid's sizes (default {','.join(f'{n}x{q}' for n, q in SIZES)}; --quick: the first two)")
    p.add_argument("--metrics", default="*", help="glob(s), comma-separated, over metric names (default all; "
                   "streaming:* are the exact streaming routes; networks:m1 the model zoo's training step, "
                   "activation pass, layer map, and a manipulation step's map forward + backward; networks:timm "
                   "the pretrained models' feature extraction per model and resolution)")
    p.add_argument("--devices", default="cpu,cuda", help="cpu,cuda (cuda cases skip with a reason without CUDA)")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--budget", type=float, default=Config.budget_s,
                   help="skip a case whose call is predicted to take longer (seconds; default %(default)g)")
    p.add_argument("--out", type=Path, default=Path("results/perf"),
                   help="directory of the per-device JSON files (default %(default)s, from the current directory)")
    p.add_argument("--compare", type=Path, metavar="FILE",
                   help="an earlier results JSON: fail on cases whose median got slower by --threshold")
    p.add_argument("--threshold", default="25%", help="regression threshold for --compare (default 25%%)")
    p.add_argument("--report", action="store_true",
                   help="render the README performance section and the figures from --out; no run")
    p.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="the README whose performance section --report rewrites (default %(default)s)")
    p.add_argument("--figures", type=Path, default=Path("results/figures"),
                   help="where --report draws the figures (default %(default)s)")
    return p


def main(argv: list[str]) -> int:
    """`simstress perf` with its arguments; the exit code (pytest's, or 2 for a report without results)."""
    args = build_parser().parse_args(argv)
    if args.report:
        return report(args.out, args.readme, args.figures)
    import pytest

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before the run; other processes share the CPU and the timings "
              f"(roofline ratios included) will be noisy", file=sys.stderr)
    before = os.environ.get(CONFIG_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(sizes=args.sizes or (QUICK_SIZES if args.quick else SIZES), dtypes=tuple(args.dtypes.split(",")),
                     devices=tuple(args.devices.split(",")), metrics=args.metrics, budget_s=args.budget,
                     skips_path=str(Path(tmp) / "skipped.json"))
        os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
        raw_path = Path(tmp) / "benchmark.json"
        # the suite's own conftest is its configuration: no ini file of the current directory applies
        pytest_args = [str(SUITE), "-c", os.devnull, "--rootdir", str(SUITE), "-p", "no:cacheprovider",
                       "-p", "no:xdist", "-q", f"--benchmark-json={raw_path}", "--benchmark-columns=median,rounds",
                       "--benchmark-sort=fullname"]
        if args.compare is not None:
            pytest_args += [f"--benchmark-compare={args.compare.resolve()}",
                            f"--benchmark-compare-fail=median:{args.threshold}"]
        # one case at a time, never in a parallel pytest's worker: pytest-benchmark turns itself off there
        worker = os.environ.pop("PYTEST_XDIST_WORKER", None)
        try:
            code = pytest.main(pytest_args)
        finally:  # a caller in the same process runs its own tests with the suite deselected again
            if before is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = before
            if worker is not None:
                os.environ["PYTEST_XDIST_WORKER"] = worker
        if not raw_path.exists():
            print("no benchmark ran; nothing written", file=sys.stderr)
            return int(code) or 1
        skips_file = Path(cfg.skips_path)
        skipped = json.loads(skips_file.read_text()) if skips_file.exists() else []
        command = "simstress perf " + " ".join(argv)
        for path in write_results(json.loads(raw_path.read_text()), skipped, args.out, command.strip()):
            print(f"wrote {path}")
    return int(code)
