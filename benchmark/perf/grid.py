"""The case grid: metric × (n, p) × dtype × device, its configuration, inputs and skip rules."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from simstress.core.registry import glob_match

from .profiles import N2_BASELINES, PROFILES, baselines_of

CONFIG_ENV = "SIMSTRESS_PERF_CONFIG"
SIZES = ((1000, 256), (5000, 512), (10000, 1024), (50000, 2048))
QUICK_SIZES = SIZES[:2]
DTYPES = ("float32", "float64")


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
    """Registered metrics and the streaming routes matching `pattern` (comma-separated globs)."""
    from simstress import metrics

    return glob_match(metrics.REGISTRY.names() + [k for k in PROFILES if k.startswith("streaming:")], pattern)


def large_case_skip(cfg: Config, name: str, device: str = "cpu") -> str | None:
    """Why a fixed-size showcase case (the 1e6-row stream, the n = 20000 tiled RBF, the networks' work) on `device`
    is not run, or None."""
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if cfg.sizes != SIZES:
        return "--quick or --sizes: the grid's own sizes only"
    if not glob_match([name], cfg.metrics):
        return f"{name} is not selected by --metrics {cfg.metrics}"
    return None


def sync(device: str) -> None:
    """Wait for the work queued on `device`, so that a timer around a call measures the call (a no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def build_cases(cfg: Config) -> list[Case]:
    """Ordered device → size → dtype, baselines first (those the selected metrics' profiles name), so each size's
    timings exist before the next size."""
    names = metric_names(cfg.metrics)
    baselines = list(dict.fromkeys(b for m in names for b in baselines_of(m)))
    cases = []
    for device in cfg.devices:
        for n, p in cfg.sizes:
            for dtype in cfg.dtypes:
                cases += [Case("baseline", b, n, p, dtype, device) for b in baselines]
                cases += [Case("streaming" if m.startswith("streaming:") else "metric", m, n, p, dtype, device)
                          for m in names]
    return cases


def make_inputs(n: int, p: int, dtype: str, device: str) -> dict[str, torch.Tensor]:
    """ReLU activations of a shared 64-d latent (seeded), plus 10-class labels from the latent."""
    g = torch.Generator(device=device).manual_seed(0)
    kw = {"generator": g, "device": device}
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
    n2 = case.name in N2_BASELINES or (prof is not None and prof.n2_memory)
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
