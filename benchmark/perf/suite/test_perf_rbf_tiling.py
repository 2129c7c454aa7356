"""rbf_cka at n = 20000, p = 1024, float32: row tiles against the untiled path (value, time, peak memory).

The untiled path holds about six n×n float32 matrices (~8 GB here); the case is skipped, with the reason
recorded, on a machine with less memory available.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch

from simstress.benchmark.perf.grid import make_inputs
from simstress.benchmark.perf.measure import PeakMemory
from simstress.core.linalg import double_center, frobenius
from simstress.metrics import cka

from .conftest import skip_unless_runs

pytestmark = pytest.mark.perf


N, P = 20_000, 1024
UNTILED_NEEDS = 6 * N * N * 4 + 2**30  # bytes: six n×n float32 matrices and some slack


def available_bytes() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


def untiled(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    K, L = double_center(cka.rbf_kernel(X, 1.0)), double_center(cka.rbf_kernel(Y, 1.0))
    return (K * L).sum() / (frobenius(K) * frobenius(L))


@torch.no_grad()
def test_rbf_tiled_at_scale(benchmark) -> None:
    skip_unless_runs("rbf_cka")
    if available_bytes() < UNTILED_NEEDS:
        pytest.skip(f"the untiled reference needs {UNTILED_NEEDS / 2**30:.0f} GiB of free memory")
    data = make_inputs(N, P, "float32", "cpu")
    X, Y = data["X"], data["Y"]
    out = {}

    def both() -> None:
        for route, fn in (("tiled", cka.rbf_cka_tiled), ("untiled", untiled)):
            t0 = time.perf_counter()
            with PeakMemory("cpu") as probe:
                value = float(fn(X, Y))
            out[route] = {"value": value, "seconds": time.perf_counter() - t0, "peak_bytes": probe.peak}

    benchmark.pedantic(both, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"kind": "rbf_tiling", "name": "rbf_cka", "n": N, "p": P, "dtype": "float32",
                                 "device": "cpu", "flops": None, "value": out["tiled"]["value"],
                                 "peak_bytes": out["tiled"]["peak_bytes"], "routes": out})
    assert abs(out["tiled"]["value"] - out["untiled"]["value"]) < 1e-6
