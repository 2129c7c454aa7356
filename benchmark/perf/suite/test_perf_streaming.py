"""Exact streaming at 1e6 rows × 512 features (float32 batches generated on the fly, never stacked).

Records time, rows/s and the peak memory of the whole pass; the 1e5-row run beside it shows that the peak
does not grow with n. float32 and float64 moments of the same batches are accumulated side by side, so the
float32 streaming error at 1e6 rows is measured too.
"""

from __future__ import annotations

import pytest
import torch

from simstress import streaming
from simstress.benchmark.perf.measure import PeakMemory

from .conftest import skip_unless_runs

pytestmark = pytest.mark.perf


P, BATCH = 512, 10_000


def batches(n: int, device: str):
    g = torch.Generator(device=device).manual_seed(0)
    kw = {"generator": g, "device": device}
    Wx, Wy = torch.randn(64, P, **kw) / 8.0, torch.randn(64, P, **kw) / 8.0
    for _ in range(n // BATCH):
        Z = torch.randn(BATCH, 64, **kw)
        yield torch.relu(Z @ Wx + 0.5 * torch.randn(BATCH, P, **kw)), torch.relu(Z @ Wy + torch.randn(BATCH, P, **kw))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_streaming_demo(benchmark, n: int, device: str) -> None:
    skip_unless_runs("streaming:linear_cka", device)
    results = {}

    def one_pass() -> None:
        m32, m64 = streaming.LinearMoments(), streaming.LinearMoments()
        with PeakMemory(device) as probe:
            for X, Y in batches(n, device):
                m32.update(X, Y)
                m64.update(X.double(), Y.double())
        for name in ("linear_cka", "procrustes", "cca_mean"):
            a, b = float(getattr(m64, name)()), float(getattr(m32, name)())
            results[name] = {"float64": a, "float32_error": abs(a - b)}
        results["peak_bytes"] = probe.peak

    benchmark.pedantic(one_pass, rounds=1, iterations=1, warmup_rounds=0)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update({"kind": "demo", "name": "streaming_demo", "n": n, "p": P, "dtype": "float32+float64",
                                 "device": device, "flops": None, "value": None,
                                 "peak_bytes": results.pop("peak_bytes"), "rows_per_s": n / t, "values": results})
    assert benchmark.extra_info["peak_bytes"] is None or benchmark.extra_info["peak_bytes"] < 2**30
