"""Parametrisation of the perf suite from `simstress perf`'s config (environment), its marker, the collection hook
that keeps it out of every other pytest run, and its skip log."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from simstress.benchmark.perf.grid import CONFIG_ENV, Case, Config, build_cases, large_case_skip
from simstress.benchmark.perf.measure import return_freed_memory_to_os

CONFIG = Config.from_env()
_SKIPPED: list[dict] = []
SUITE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "perf: speed benchmark, run by `simstress perf` only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the suite's items unless `simstress perf` started the run (it sets the config environment): a
    user's own `pytest -m "not slow"` over a tree that holds the suite must not start a 36-minute grid."""
    if os.environ.get(CONFIG_ENV):
        return
    ours = [item for item in items if SUITE in Path(str(item.path)).resolve().parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [item for item in items if item not in ours]


@pytest.fixture(scope="session", autouse=True)
def _visible_allocations() -> None:
    """Only perf tests request this (the suite is deselected from `make test`): see the helper's docstring."""
    return_freed_memory_to_os()


def skip_unless_runs(name: str, device: str = "cpu") -> None:
    """Skip a fixed-size showcase case that this run does not take (`large_case_skip`)."""
    reason = large_case_skip(CONFIG, name, device)
    if reason:
        pytest.skip(reason)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = build_cases(CONFIG)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and report.when in ("setup", "call"):
        params = item.callspec.params if hasattr(item, "callspec") else {}
        case = params.get("case")
        case = case if isinstance(case, Case) else None  # no grid case selected (e.g. only networks:m1): unset
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append({"case": case.id if case is not None else item.name,
                         "device": case.device if case is not None else params.get("device", "cpu"),
                         "reason": re.sub(r"^Skipped: ", "", reason)})


def pytest_sessionfinish(session: pytest.Session) -> None:
    if CONFIG.skips_path:
        Path(CONFIG.skips_path).write_text(json.dumps(_SKIPPED, indent=1))
