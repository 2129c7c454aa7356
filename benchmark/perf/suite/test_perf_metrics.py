"""Speed and memory of every metric and of the bare products it cannot avoid (`simstress perf`)."""

from __future__ import annotations

import gc

import pytest
import torch

from simstress.benchmark.perf.grid import Case, Config, make_inputs, skip_reason
from simstress.benchmark.perf.measure import run_case

pytestmark = pytest.mark.perf

CONFIG = Config.from_env()
_DATA: dict[tuple, dict[str, torch.Tensor]] = {}
_MEDIANS: dict[tuple, tuple[int, int, float]] = {}  # (name, dtype, device) -> (n, p, median s) at the last size


def inputs(case: Case) -> dict[str, torch.Tensor]:
    """One input set alive at a time: the next size frees the previous one."""
    key = (case.n, case.p, case.dtype, case.device)
    if key not in _DATA:
        _DATA.clear()
        gc.collect()
        _DATA[key] = make_inputs(*key)
    return _DATA[key]


def test_case(benchmark, case: Case) -> None:
    reason = skip_reason(case, CONFIG, _MEDIANS)
    if reason:
        pytest.skip(reason)
    median = run_case(benchmark, case, inputs(case))
    _MEDIANS[(case.name, case.dtype, case.device)] = (case.n, case.p, median)
