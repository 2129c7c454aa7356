"""`simstress perf`: speed and memory of every metric, against the matrix products it cannot avoid.

The suite is tests/perf (marker `perf`, pytest-benchmark underneath): metric × (n, p) × dtype × device, inputs
X, Y (n, p) ReLU activations of a shared latent. Each case is warmed up once, then timed for 2–5 rounds
(fewer when a call takes seconds); the median is reported. Per case:

- median time; peak host memory above the inputs (exact: the kernel's VmHWM high-water mark, reset through
  /proc/self/clear_refs before the first timed round) or on CUDA `torch.cuda.max_memory_allocated`;
- FLOPs of the algorithm (leading dense linear-algebra terms, Golub & Van Loan) and the achieved GFLOP/s;
- roofline ratio = time of the bare products the metric cannot avoid, measured in the same run on already
  centred inputs, ÷ the metric's time. gram3: X̃ᵀX̃, ỸᵀỸ, ỸᵀX̃ (the faster of plain GEMMs and
  `feature_gram`'s symmetric panels); cross: ỸᵀX̃; grams: X̃X̃ᵀ, ỸỸᵀ (n×n). `floor_ratio` adds the p×p
  singular values a Procrustes or CCA algorithm needs on top of the products;
- the float32 error: |float32 value − float64 value| on the same inputs; the float64 value is computed (untimed)
  inside the float32 case, so the error is known even where the float64 timing is skipped for budget.

Two fixed-size showcases run beside the grid (not under --quick, and only when --metrics selects them):
exact streaming of 1e5 and 1e6 rows × 512 features (tests/perf/test_perf_streaming.py), and rbf_cka at
n = 20000, p = 1024 in float32, row tiles against the untiled n×n path (tests/perf/test_perf_rbf_tiling.py).

A case that cannot run is skipped with its reason recorded (no CUDA; n×n memory over the cap; a call
predicted, from the previous size and the FLOP model, to take longer than --budget seconds).

    simstress perf [--quick] [--metrics PAT] [--devices cpu,cuda] [--budget S]   # run, write results/perf/
    simstress perf --compare results/perf/cpu-....json                          # run, flag regressions
    simstress perf --report                                # README performance section + results/figures/
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results" / "perf"
FIGURES_DIR = ROOT / "results" / "figures"
README = ROOT / "README.md"
SUITE = ROOT / "tests" / "perf"
CONFIG_ENV = "SIMSTRESS_PERF_CONFIG"
SIZES = ((1000, 256), (5000, 512), (10000, 1024), (50000, 2048))
QUICK_SIZES = SIZES[:2]
DTYPES = ("float32", "float64")
STREAM_BATCH = 8192
README_START, README_END = "<!-- perf:start -->", "<!-- perf:end -->"


# ------------------------------------------------------------------------------------------ FLOP models
def _sym(n: int, p: int) -> float:
    """`feature_gram`: k symmetric panels cost (k+1)/(2k) of a GEMM's 2np²."""
    k = max(1, min(8, p // 256))
    return n * p * p * (k + 1) / k


def _qr_q(n: int, p: int) -> float:
    return 2 * (2 * n * p * p - 2 / 3 * p**3)  # geqrf + orgqr


def _svdvals(m: int, k: int) -> float:
    m, k = max(m, k), min(m, k)
    return 4 * m * k * k - 4 / 3 * k**3  # bidiagonalisation


def _cca(n: int, p1: int, p2: int) -> float:
    return _qr_q(n, p1) + _qr_q(n, p2) + 2 * n * p1 * p2 + _svdvals(p1, p2)


def _moments(n: int, p1: int, p2: int) -> float:
    return _sym(n, p1) + _sym(n, p2) + 2 * n * p1 * p2


@dataclass(frozen=True)
class Profile:
    """What the harness knows about a metric's algorithm."""

    flops: Callable[[int, int, int], float] | None  # (n, p1, p2) -> FLOPs
    baseline: str | None = None  # gram3 | cross | grams: the products it cannot avoid
    floor_svd: bool = False  # also needs the singular values of a p1×p2 matrix
    n2_memory: bool = False  # holds n×n matrices


PROFILES: dict[str, Profile] = {
    "linear_cka": Profile(_moments, "gram3"),
    "linear_cka_debiased": Profile(lambda n, a, b: 2 * n * (a * a + b * b + a * b), "gram3"),
    "procrustes": Profile(lambda n, a, b: 2 * n * a * b + _svdvals(a, b), "cross", floor_svd=True),
    "procrustes_angular": Profile(lambda n, a, b: 6 * n * a * b + 2 * n * (a * a + b * b) + 12 * a * b * min(a, b),
                                  "cross", floor_svd=True),
    "cca_mean": Profile(_cca, "gram3", floor_svd=True),
    "cca_r2": Profile(_cca, "gram3", floor_svd=True),
    "svcca": Profile(lambda n, a, b: _svdvals(n, a) + _svdvals(n, b) + 4 * n * (a * a + b * b) + 2 * n * a * b,
                     "gram3", floor_svd=True),
    "pwcca": Profile(lambda n, a, b: _cca(n, a, b) + 2 * n * a * a, "gram3", floor_svd=True),
    "rbf_cka": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams"),
    "rsa": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams", n2_memory=True),
    "mutual_knn": Profile(lambda n, a, b: 2 * n * n * (a + b), "grams", n2_memory=True),
    "probe_accuracy": Profile(None),
    "probe_agreement": Profile(None),
    # exact streaming (metrics.streaming.LinearMoments over row batches): the moments / Cholesky route
    "streaming:linear_cka": Profile(_moments, "gram3"),
    "streaming:procrustes": Profile(lambda n, a, b: _moments(n, a, b) + _svdvals(a, b), "gram3", floor_svd=True),
    "streaming:cca_mean": Profile(lambda n, a, b: _moments(n, a, b) + (a**3 + b**3) + _svdvals(a, b), "gram3",
                                  floor_svd=True),
}
BASELINES = ("gram3_gemm", "gram3_sym", "cross", "svd_pp", "grams")


# --------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    kind: str  # metric | streaming | baseline
    name: str
    n: int
    p: int
    dtype: str
    device: str

    @property
    def id(self) -> str:
        return f"{self.device}-{self.dtype}-{self.n}x{self.p}-{self.name}"


@dataclass(frozen=True)
class Config:
    sizes: tuple[tuple[int, int], ...] = SIZES
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    metrics: str = "*"
    budget_s: float = 40.0
    memory_cap_gb: float = 8.0
    skips_path: str | None = None

    @staticmethod
    def from_env() -> Config:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            return Config()
        d = json.loads(raw)
        d["sizes"] = tuple(tuple(s) for s in d["sizes"])
        d["dtypes"], d["devices"] = tuple(d["dtypes"]), tuple(d["devices"])
        return Config(**d)


def metric_names(pattern: str) -> list[str]:
    from simstress import metrics

    names = metrics.REGISTRY.names() + [k for k in PROFILES if k.startswith("streaming:")]
    pats = [p.strip() for p in pattern.split(",")]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]


def large_case_skip(cfg: Config, name: str) -> str | None:
    """Why a fixed-size showcase case (the 1e6-row stream, the n = 20000 tiled RBF) is not run, or None."""
    if cfg.sizes != SIZES:
        return "--quick: small sizes only"
    if not any(fnmatch.fnmatchcase(name, p.strip()) for p in cfg.metrics.split(",")):
        return f"{name} is not selected by --metrics {cfg.metrics}"
    return None


def build_cases(cfg: Config) -> list[Case]:
    """Ordered device → size → dtype, baselines first, so each size's timings exist before the next size."""
    names = metric_names(cfg.metrics)
    cases = []
    for device in cfg.devices:
        for n, p in cfg.sizes:
            for dtype in cfg.dtypes:
                cases += [Case("baseline", b, n, p, dtype, device) for b in BASELINES]
                cases += [Case("streaming" if m.startswith("streaming:") else "metric", m, n, p, dtype, device)
                          for m in names]
    return cases


def make_inputs(n: int, p: int, dtype: str, device: str) -> dict[str, torch.Tensor]:
    """ReLU activations of a shared 64-d latent (seeded), plus 10-class labels from the latent."""
    g = torch.Generator(device=device).manual_seed(0)
    kw = dict(generator=g, device=device)
    Z = torch.randn(n, 64, **kw)
    X = torch.relu(Z @ torch.randn(64, p, **kw) / 8.0 + 0.5 * torch.randn(n, p, **kw))
    Y = torch.relu(Z @ torch.randn(64, p, **kw) / 8.0 + torch.randn(n, p, **kw))
    labels = Z[:, :10].argmax(dim=1)
    dt = getattr(torch, dtype)
    return {"X": X.to(dt), "Y": Y.to(dt), "labels": labels}


def skip_reason(case: Case, cfg: Config, previous: dict[tuple, tuple[int, int, float]]) -> str | None:
    """Why a case is not run, or None. `previous[(name, dtype, device)]` = (n, p, median s) at a smaller size."""
    if case.device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    prof = PROFILES.get(case.name)
    n2 = case.name == "grams" or (prof is not None and prof.n2_memory)
    if n2 and 2 * case.n * case.n * 8 / 2**30 > cfg.memory_cap_gb:
        return (f"holds n×n matrices: 2·n²·8 B = {2 * case.n**2 * 8 / 2**30:.0f} GiB > the "
                f"{cfg.memory_cap_gb:g} GiB memory cap")
    prev = previous.get((case.name, case.dtype, case.device))
    if prev is None:
        return None
    n0, p0, t0 = prev
    if prof is not None and prof.flops is not None:
        ratio = prof.flops(case.n, case.p, case.p) / prof.flops(n0, p0, p0)
    else:
        ratio = (case.n / n0) ** 2 * (case.p / p0)  # unknown algorithm: assume O(n²·p), pessimistic
    predicted = t0 * ratio
    if predicted > cfg.budget_s:
        return (f"predicted {predicted:.0f} s per call ({t0:.2f} s at ({n0}, {p0}) × cost ratio {ratio:.0f}) "
                f"> budget {cfg.budget_s:g} s")
    return None


def case_callable(case: Case, data: dict[str, torch.Tensor]) -> Callable[[], Any]:
    """The zero-argument call to time. Inputs are prepared outside it (baselines get centred copies)."""
    from simstress import get_metric, streaming
    from simstress.core.linalg import center, feature_gram

    X, Y = data["X"], data["Y"]
    if case.kind == "metric":
        m = get_metric(case.name)
        labels = data["labels"] if m.spec.needs_labels else None
        return lambda: m(X, Y, labels=labels)
    if case.kind == "streaming":
        metric = case.name.split(":", 1)[1]

        def stream() -> torch.Tensor:
            mom = streaming.LinearMoments()
            for i in range(0, X.shape[0], STREAM_BATCH):
                mom.update(X[i:i + STREAM_BATCH], Y[i:i + STREAM_BATCH])
            return getattr(mom, metric)()

        return stream
    Xc, Yc = center(X), center(Y)
    if case.name == "gram3_gemm":
        return lambda: (Xc.T @ Xc, Yc.T @ Yc, Yc.T @ Xc)
    if case.name == "gram3_sym":
        return lambda: (feature_gram(Xc), feature_gram(Yc), Yc.T @ Xc)
    if case.name == "cross":
        return lambda: Yc.T @ Xc
    if case.name == "svd_pp":
        C = Yc.T @ Xc
        return lambda: torch.linalg.svdvals(C)
    if case.name == "grams":
        return lambda: (Xc @ Xc.T, Yc @ Yc.T)
    raise ValueError(f"unknown baseline {case.name!r}")


def return_freed_memory_to_os() -> bool:
    """Make glibc serve every allocation ≥ 1 MiB by mmap, so that a freed block leaves the RSS and VmHWM sees
    each call's own allocations (by default blocks under 32 MiB are recycled inside the heap, invisibly)."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 2**20))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """Peak bytes above the level at entry: CUDA allocator peak, or the host's VmHWM (reset on entry)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak: int | None = None

    @staticmethod
    def _status(key: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                self.start = self._status("VmRSS")
            except OSError:
                self.start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        elif self.start is not None:
            self.peak = max(0, self._status("VmHWM") - self.start)


def run_case(benchmark: Any, case: Case, data: dict[str, torch.Tensor]) -> float:
    """Warm up, time 2–5 rounds with pytest-benchmark, record the case, its memory, FLOPs and value."""
    fn = case_callable(case, data)
    if case.device == "cuda":
        inner = fn

        def fn() -> Any:  # the harness, never the metric, waits for the device
            out = inner()
            torch.cuda.synchronize()
            return out

    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    rounds = 5 if warm < 1.0 else 3 if warm < 10.0 else 2
    probe = PeakMemory(case.device)
    calls = [0]

    def target() -> Any:
        calls[0] += 1
        if calls[0] > 1:
            return fn()
        with probe:
            return fn()

    out = benchmark.pedantic(target, rounds=rounds, iterations=1, warmup_rounds=0)
    prof = PROFILES.get(case.name)
    flops = prof.flops(case.n, case.p, case.p) if prof is not None and prof.flops is not None else None
    value = _scalar(out)
    value64 = None
    if case.dtype == "float32" and value is not None:
        data64 = {k: v.double() if v.is_floating_point() else v for k, v in data.items()}
        value64 = _scalar(case_callable(replace(case, dtype="float64"), data64)())
    benchmark.extra_info.update(asdict(case) | {"peak_bytes": probe.peak, "flops": flops, "value": value,
                                                "value_float64": value64, "warmup_s": warm})
    return benchmark.stats.stats.median


def _scalar(out: Any) -> float | None:
    return float(out) if isinstance(out, torch.Tensor) and out.ndim == 0 else None


# -------------------------------------------------------------------------------------- post-processing
def device_slug(device: str) -> str:
    if device == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda"
    else:
        model = next((line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "cpu")
        name = f"cpu {model} {os.cpu_count()}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def annotate(benchmarks: list[dict]) -> None:
    """Add gflops, roofline_ratio, floor_ratio and f32_error to each benchmark's extra_info, in place."""
    by_key = {}
    for b in benchmarks:
        e = b["extra_info"]
        by_key[(e["kind"], e["name"], e["n"], e["p"], e["dtype"], e["device"])] = b

    def median(kind: str, name: str, e: dict) -> float | None:
        b = by_key.get((kind, name, e["n"], e["p"], e["dtype"], e["device"]))
        return b["stats"]["median"] if b else None

    for b in benchmarks:
        e, t = b["extra_info"], b["stats"]["median"]
        e["gflops"] = e["flops"] / t / 1e9 if e.get("flops") else None
        prof = PROFILES.get(e["name"])
        e["roofline_ratio"] = e["floor_ratio"] = None
        e["f32_error"] = abs(e["value"] - e["value_float64"]) if e.get("value_float64") is not None else None
        if e["kind"] == "baseline" or prof is None or prof.baseline is None:
            continue
        if prof.baseline == "gram3":
            times = [x for x in (median("baseline", "gram3_gemm", e), median("baseline", "gram3_sym", e)) if x]
            base = min(times) if times else None
        else:
            base = median("baseline", prof.baseline, e)
        if base is not None:
            e["roofline_ratio"] = base / t
            svd = median("baseline", "svd_pp", e)
            if prof.floor_svd and svd is not None:
                e["floor_ratio"] = (base + svd) / t


def write_results(raw: dict, skipped: list[dict], out_dir: Path, command: str) -> list[Path]:
    """One pytest-benchmark JSON per device (so `--benchmark-compare` reads it), plus simstress's fields."""
    annotate(raw["benchmarks"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    devices = sorted({b["extra_info"]["device"] for b in raw["benchmarks"]} | {s["device"] for s in skipped})
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            continue  # only skips: nothing measured there; the reasons are in the CPU file
        doc = dict(raw)
        doc["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"]["device"] == device]
        doc["simstress"] = {
            "device": device_slug(device),
            "command": command,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
            "skipped": [s for s in skipped if s["device"] == device or device == "cpu" and s["device"] == "cuda"],
        }
        path = out_dir / f"{device_slug(device)}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------------ report
def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _rows(doc: dict) -> list[dict]:
    return [b["extra_info"] | {"median": b["stats"]["median"]} for b in doc["benchmarks"]]


def cka_untiled_limit() -> str:
    from metrics.cka import RBF_UNTILED_MAX_BYTES

    return f"{RBF_UNTILED_MAX_BYTES / 2**20:.0f} MiB per n×n matrix"


def render_table(docs: list[dict]) -> str:
    """Markdown: one row per metric × size × dtype × device; baselines shown as the reference rows."""
    lines = []
    for doc in docs:
        meta = doc["simstress"]
        lines += [f"**{meta['device']}** (torch {meta['torch']}, {meta['threads']} threads, load average at start "
                  f"{meta['load_average'][0]:.1f}; `{meta['command']}`)", "",
                  "| metric | n × p | dtype | median s | peak MiB | GFLOP/s | roofline | floor | f32 − f64 |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        rows = sorted(_rows(doc), key=lambda r: (r["kind"] == "baseline", r["name"], r["n"], r["dtype"]))
        demos = [r for r in rows if r["kind"] == "demo"]
        tilings = [r for r in rows if r["kind"] == "rbf_tiling"]
        for r in rows:
            if r["kind"] in ("demo", "rbf_tiling"):
                continue
            mem = None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20
            lines.append(
                f"| {r['name']}{' (baseline)' if r['kind'] == 'baseline' else ''} | {r['n']} × {r['p']} | "
                f"{r['dtype']} | {r['median']:.4g} | {_fmt(mem, '.0f')} | {_fmt(r.get('gflops'), '.0f')} | "
                f"{_fmt(r.get('roofline_ratio'), '.2f')} | {_fmt(r.get('floor_ratio'), '.2f')} | "
                f"{_fmt(r.get('f32_error'), '.1e')} |")
        if demos:
            lines += ["", "Exact streaming (`metrics.streaming.LinearMoments`, batches of 10000 rows made on the fly; "
                      "float64 values, and |float32 − float64| of the same batches):", "",
                      "| rows × p | time s | rows/s | peak MiB | linear_cka | procrustes | cca_mean |",
                      "|---|---:|---:|---:|---|---|---|"]
            for r in demos:
                vals = " | ".join(f"{v['float64']:.6f} (f32 err {v['float32_error']:.1e})"
                                  for v in r["values"].values())
                mem = None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20
                lines.append(f"| {r['n']} × {r['p']} | {r['median']:.1f} | {r['rows_per_s']:.3g} | "
                             f"{_fmt(mem, '.0f')} | {vals} |")
        for r in tilings:
            lines += ["", f"`rbf_cka` at n = {r['n']}, p = {r['p']}, {r['dtype']}: row tiles (the default above "
                      f"{cka_untiled_limit()}) against the untiled n×n path:", "",
                      "| route | value | time s | peak MiB above the inputs |", "|---|---|---:|---:|"]
            for route, v in r["routes"].items():
                lines.append(f"| {route} | {v['value']:.10f} | {v['seconds']:.1f} | "
                             f"{_fmt(None if v['peak_bytes'] is None else v['peak_bytes'] / 2**20, '.0f')} |")
        if meta["skipped"]:
            lines += ["", "Skipped (with reasons):", ""]
            by_reason: dict[str, list[str]] = {}
            for s in meta["skipped"]:
                by_reason.setdefault(s["reason"], []).append(s["case"])
            for reason, cases in by_reason.items():  # a reason shared by many cases (no CUDA) is one line
                lines += ([f"- {c}: {reason}" for c in cases] if len(cases) <= 3 else
                          [f"- {len(cases)} cases ({cases[0]} … {cases[-1]}): {reason}"])
        lines.append("")
    return "\n".join(lines)


def draw_figures(docs: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in docs:
        df = pd.DataFrame([r for r in _rows(doc) if r["kind"] in ("metric", "streaming")])
        if df.empty:
            continue
        grid = sns.relplot(data=df, x="n", y="median", hue="name", style="dtype", col="dtype", kind="line",
                           markers=True, height=4.5, aspect=1.1)
        grid.set(xscale="log", yscale="log", xlabel="n (p grows with n: 256 … 2048)", ylabel="median time (s)")
        grid.figure.suptitle(f"simstress perf — {doc['simstress']['device']}", y=1.02)
        path = out_dir / f"perf_{doc['simstress']['device']}.png"
        grid.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(grid.figure)
        written.append(path)
    return written


def report(results_dir: Path, readme: Path, figures_dir: Path) -> int:
    docs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    if not docs:
        print(f"no results in {results_dir}; run `simstress perf` first", file=sys.stderr)
        return 2
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        print(f"{readme} lacks the markers {README_START} / {README_END}; add them where the table goes",
              file=sys.stderr)
        return 2
    figs = draw_figures(docs, figures_dir)
    links = "".join(f"\n![perf]({f.relative_to(readme.parent)})\n" for f in figs)
    body = (f"{README_START}\nMeasured by `simstress perf` (regenerate this section with `simstress perf --report`)."
            f" roofline = time of the unavoidable products (X̃ᵀX̃, ỸᵀỸ, ỸᵀX̃ / ỸᵀX̃ / the n×n Grams) ÷ "
            f"the metric's time; floor adds the p×p singular values. f32 − f64 = |float32 − float64 value|.\n\n"
            f"{render_table(docs)}{links}\n{README_END}")
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + body + text[end:])
    print(f"wrote the performance section of {readme} and {len(figs)} figure(s) in {figures_dir}")
    return 0


# ----------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstress perf", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small sizes only: {QUICK_SIZES}")
    p.add_argument("--metrics", default="*", help="glob(s), comma-separated, over metric names (default all; "
                   "streaming:* are the exact streaming routes)")
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
