"""Timing and memory of one case: the call to time, the peak-memory probe, pytest-benchmark's rounds."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Self

import torch

from .grid import Case
from .profiles import PROBE_EVALS, PROFILES

STREAM_BATCH = 8192
KNN_K = 10  # mutual_knn's default k


def case_callable(case: Case, data: dict[str, torch.Tensor],
                  sources: tuple[torch.dtype, torch.dtype] | None = None,
                  ) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """The call to time, on (X, Y): the harness hands it fresh copies of the inputs each round (a probe caches its
    fit per tensor). `sources`: the dtypes the data came in, when they are not the tensors' own (the float64 value
    of float32 data). Baselines work on centred copies prepared here, outside the timing."""
    from simstress import get_metric, streaming
    from simstress.core.linalg import center, feature_gram

    if case.kind == "metric":
        m = get_metric(case.name)
        labels = data["labels"] if m.spec.needs_labels else None
        return lambda X, Y: m(X, Y, labels=labels, input_dtypes=sources)
    if case.kind == "streaming":
        metric = case.name.split(":", 1)[1]

        def stream(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
            mom = streaming.LinearMoments()
            for i in range(0, X.shape[0], STREAM_BATCH):
                mom.update(X[i:i + STREAM_BATCH], Y[i:i + STREAM_BATCH])
            return getattr(mom, metric)()

        return stream
    Xc, Yc = center(data["X"]), center(data["Y"])
    work = _baseline(case.name, Xc, Yc, data["labels"], feature_gram)
    return lambda X, Y: work()


def _upper(n: int, device: torch.device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).triu_(1)


def _baseline(name: str, Xc: torch.Tensor, Yc: torch.Tensor, labels: torch.Tensor,
              feature_gram: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], Any]:
    """The zero-argument work of a baseline (profiles): products, decompositions, selections, sorts, gradient
    evaluations, and the plain reference implementations named by targets."""
    pair = (Xc, Yc)
    if name == "gram3_gemm":
        return lambda: (Xc.T @ Xc, Yc.T @ Yc, Yc.T @ Xc)
    if name == "gram3_sym":
        return lambda: (feature_gram(Xc), feature_gram(Yc), Yc.T @ Xc)
    if name == "cross":
        return lambda: Yc.T @ Xc
    if name in ("svd_pp", "svd_pp64"):
        C = Yc.T @ Xc
        C = C.double() if name == "svd_pp64" else C
        return lambda: torch.linalg.svdvals(C)
    if name in ("eigh_pp", "chol_pp"):
        G = feature_gram(Xc).double() + torch.eye(Xc.shape[1], dtype=torch.float64, device=Xc.device)
        return (lambda: torch.linalg.eigh(G)) if name == "eigh_pp" else (lambda: torch.linalg.cholesky(G))
    if name == "grams":
        return lambda: (Xc @ Xc.T, Yc @ Yc.T)
    n = Xc.shape[0]
    if name in ("rbf_rest", "rsa_rest", "knn_rest"):  # on top of the Grams: what each n×n metric cannot avoid
        grams = [A @ A.T for A in pair]
        upper = _upper(n, Xc.device)
        if name == "knn_rest":
            return lambda: [G.topk(KNN_K + 1, dim=1) for G in grams]  # each row's nearest, itself included
        if name == "rsa_rest":
            return lambda: [torch.sort(G.masked_select(upper)) for G in grams]  # the ranks of the RDM
        half = n * (n - 1) // 4 + 1
        return lambda: [(u.kthvalue(half), u.exp()) for u in (G.masked_select(upper) for G in grams)]
    if name == "rsa_reference":
        return lambda: rsa_reference(*pair)
    if name == "rbf_reference":
        return lambda: rbf_reference(*pair)
    if name == "probe_evals":
        return _probe_evals(Xc, Yc, labels)
    raise ValueError(f"unknown baseline {name!r}")


def rsa_reference(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Plain torch RSA, in the data's dtype: two 1 − Pearson RDMs, ranks by one sort each (no tie handling), the
    Pearson correlation of the ranks."""
    upper = _upper(X.shape[0], X.device)

    def ranks(A: torch.Tensor) -> torch.Tensor:
        Z = A - A.mean(dim=1, keepdim=True)
        Z = Z / Z.norm(dim=1, keepdim=True)
        d = (1.0 - Z @ Z.T).masked_select(upper)
        r = torch.empty_like(d)
        r[d.argsort()] = torch.arange(d.numel(), dtype=d.dtype, device=d.device)
        return r - r.mean()

    rx, ry = ranks(X), ranks(Y)
    return (rx @ ry) / (rx.norm() * ry.norm())


def rbf_reference(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Plain torch RBF CKA, in the data's dtype: squared distances by one GEMM, the exact median (torch.median),
    exp, centred HSIC."""
    def centred_kernel(A: torch.Tensor) -> torch.Tensor:
        sq = A.square().sum(dim=1)
        D = (sq[:, None] + sq[None, :] - 2.0 * A @ A.T).clamp_min(0.0)
        K = torch.exp(-D / (2.0 * D.median()))
        return K - K.mean(dim=0, keepdim=True) - K.mean(dim=1, keepdim=True) + K.mean()

    K, L = centred_kernel(X), centred_kernel(Y)
    return (K * L).sum() / (K.norm() * L.norm())


def _probe_evals(Xc: torch.Tensor, Yc: torch.Tensor, labels: torch.Tensor) -> Callable[[], Any]:
    """PROBE_EVALS gradient evaluations of the multinomial loss (forward and backward, float64) on 80% of the rows
    of each of X and Y: the unit of work a probe fit repeats."""
    import torch.nn.functional as F

    rows = int(0.8 * Xc.shape[0])
    y = labels[:rows]
    C = int(labels.max()) + 1
    Zs = [A[:rows].double() for A in (Xc, Yc)]

    def evals() -> None:
        for Z in Zs:
            W = torch.zeros(C, Z.shape[1], dtype=torch.float64, device=Z.device, requires_grad=True)
            for _ in range(PROBE_EVALS):
                loss = F.cross_entropy(Z @ W.T, y) + 0.5e-3 * W.square().sum()
                (grad,) = torch.autograd.grad(loss, W)
                with torch.no_grad():
                    W -= 0.1 * grad

    return evals


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
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024

    def __enter__(self) -> Self:
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
    """Warm up, time 2–5 rounds with pytest-benchmark (fresh copies of the inputs each round, made outside the
    timing), record the case, its memory, FLOPs and value."""
    fn = case_callable(case, data)
    if case.device == "cuda":
        inner = fn

        def fn(X: torch.Tensor, Y: torch.Tensor) -> Any:  # the harness, never the metric, waits for the device
            out = inner(X, Y)
            torch.cuda.synchronize()
            return out

    def fresh() -> tuple[tuple[torch.Tensor, torch.Tensor], dict]:
        return (data["X"].clone(), data["Y"].clone()), {}

    t0 = time.perf_counter()
    fn(*fresh()[0])
    warm = time.perf_counter() - t0
    rounds = 5 if warm < 1.0 else 3 if warm < 10.0 else 2
    probe = PeakMemory(case.device)
    calls = [0]

    def target(X: torch.Tensor, Y: torch.Tensor) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            return fn(X, Y)
        with probe:
            return fn(X, Y)

    out = benchmark.pedantic(target, setup=fresh, rounds=rounds, iterations=1, warmup_rounds=0)
    prof = PROFILES.get(case.name)
    flops = prof.flops(case.n, case.p, case.p) if prof is not None and prof.flops is not None else None
    value = _scalar(out)
    value64 = None
    if case.dtype == "float32" and value is not None:  # the same float32 numbers, computed in float64
        data64 = {k: v.double() if v.is_floating_point() else v for k, v in data.items()}
        sources = (data["X"].dtype, data["Y"].dtype)
        value64 = _scalar(case_callable(replace(case, dtype="float64"), data64, sources)(data64["X"], data64["Y"]))
    benchmark.extra_info.update(asdict(case) | {"peak_bytes": probe.peak, "flops": flops, "value": value,
                                                "value_float64": value64, "warmup_s": warm})
    return benchmark.stats.stats.median


def _scalar(out: Any) -> float | None:
    return float(out) if isinstance(out, torch.Tensor) and out.ndim == 0 else None
