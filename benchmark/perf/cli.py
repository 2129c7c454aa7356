"""`simstress perf ARGS`: run the suite under pytest and write results/perf/, or render the README section."""

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

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results" / "perf"
FIGURES_DIR = ROOT / "results" / "figures"
README = ROOT / "README.md"
SUITE = ROOT / "tests" / "perf"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstress perf", description=PERF_DOC.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small sizes only: {QUICK_SIZES}")
    p.add_argument("--metrics", default="*", help="glob(s), comma-separated, over metric names (default all; "
                   "streaming:* are the exact streaming routes; networks:m1 the model zoo's training step, "
                   "activation pass, layer map, and a manipulation step's map forward + backward; networks:timm "
                   "the pretrained models' feature extraction per model and resolution)")
    p.add_argument("--devices", default="cpu,cuda", help="cpu,cuda (cuda cases skip with a reason without CUDA)")
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--budget", type=float, default=Config.budget_s,
                   help="skip a case whose call is predicted to take longer (seconds; default %(default)g)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the per-device JSON files")
    p.add_argument("--compare", type=Path, metavar="FILE",
                   help="an earlier results JSON: fail on cases whose median got slower by --threshold")
    p.add_argument("--threshold", default="25%", help="regression threshold for --compare (default 25%%)")
    p.add_argument("--report", action="store_true",
                   help="render the README performance section and results/figures/ from --out; no run")
    return p


def main(argv: list[str]) -> int:
    """`simstress perf` with its arguments; the exit code (pytest's, or 2 for a report without results)."""
    args = build_parser().parse_args(argv)
    if args.report:
        return report(args.out, README, FIGURES_DIR)
    import pytest

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before the run; other processes share the CPU and the timings "
              f"(roofline ratios included) will be noisy", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(sizes=QUICK_SIZES if args.quick else SIZES, dtypes=tuple(args.dtypes.split(",")),
                     devices=tuple(args.devices.split(",")), metrics=args.metrics, budget_s=args.budget,
                     skips_path=str(Path(tmp) / "skipped.json"))
        os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
        raw_path = Path(tmp) / "benchmark.json"
        pytest_args = [str(SUITE), "-m", "perf", "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT),
                       f"--benchmark-json={raw_path}", "--benchmark-columns=median,rounds",
                       "--benchmark-sort=fullname"]
        if args.compare is not None:
            pytest_args += [f"--benchmark-compare={args.compare.resolve()}",
                            f"--benchmark-compare-fail=median:{args.threshold}"]
        code = pytest.main(pytest_args)
        if not raw_path.exists():
            print("no benchmark ran; nothing written", file=sys.stderr)
            return int(code) or 1
        skips_file = Path(cfg.skips_path)
        skipped = json.loads(skips_file.read_text()) if skips_file.exists() else []
        command = "simstress perf " + " ".join(argv)
        for path in write_results(json.loads(raw_path.read_text()), skipped, args.out, command.strip()):
            print(f"wrote {path}")
    return int(code)
