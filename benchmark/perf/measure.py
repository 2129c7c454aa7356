"""Timing and memory of one case: the call to time, the peak-memory probe, pytest-benchmark's rounds."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from .grid import Case
from .profiles import PROFILES

STREAM_BATCH = 8192


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
