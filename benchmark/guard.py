"""A cell under a time limit, in whatever process runs it: `guarded_execute` never raises but for a real Ctrl-C.

`cells.execute` turns what a metric or a task raises into an error record; this adds what `execute` cannot catch
itself: the cell's time limit (a SIGALRM timer, so it works in the process that computes), a cell that calls
`sys.exit`, and a `KeyboardInterrupt` the cell raises (told apart from the user's Ctrl-C). Executors run every
cell through it; `failed_record` is also how the driver records a cell that never returned (its worker died, its
artifacts failed to build, it ran past its limit).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from simstress.core.metric import get_metric
from simstress.core.record import Cause, CellError, Record
from simstress.core.task import get_task

from .cells import Cell, SetupCache, empty_record, execute


class CellTimeout(BaseException):
    """A cell ran past its time limit. A BaseException, so that no `except Exception` in a cell swallows it."""


class Guard:
    """Runs a cell under a time limit and tells a real Ctrl-C apart from a KeyboardInterrupt the cell raises.

    The limit is a SIGALRM timer: its handler raises `CellTimeout` in the cell's Python code, so a metric stuck
    in one long native call (a single huge matrix product) is cut off when that call returns. Signals exist only
    in the main thread; elsewhere cells run without a limit.
    """

    def __init__(self) -> None:
        self.sigint = False

    @contextmanager
    def limit(self, seconds: float | None) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_alarm(signum: int, frame: Any) -> None:
            raise CellTimeout(seconds)

        def on_sigint(signum: int, frame: Any) -> None:
            self.sigint = True
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, on_alarm), signal.signal(signal.SIGINT, on_sigint)
        if seconds:
            signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old[0])
            signal.signal(signal.SIGINT, old[1])


def failed_record(cell: Cell, error: CellError) -> Record:
    """The error record of a cell that did not return one (a timeout, an exit, a dead worker, a failed build)."""
    return empty_record(cell, get_metric(cell.metric).spec.version, get_task(cell.task)).failed(error)


def timeout_message(seconds: float) -> str:
    return (f"the cell ran past its time limit of {seconds:g} s; the record keeps the next run from waiting on it "
            f"again (bump the metric's version or pass --force to retry, --timeout to allow more)")


def guarded_execute(cell: Cell, setups: SetupCache, timeout_s: float | None) -> Record:
    """`execute` under a time limit; a timeout, sys.exit or a KeyboardInterrupt raised by the cell itself become
    error records, while a real Ctrl-C propagates."""
    guard = Guard()
    try:
        with guard.limit(timeout_s):
            return execute(cell, setups)
    except CellTimeout:
        error = CellError.from_exception(TimeoutError(timeout_message(timeout_s or 0.0)), Cause.TIMEOUT)
    except SystemExit as exc:
        error = CellError.from_exception(RuntimeError(
            f"the cell called sys.exit({exc.code!r}); metric and task code must raise an exception, never exit"),
            Cause.CRASH)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and guard.sigint:
            raise
        error = CellError.from_exception(RuntimeError(
            f"the cell raised {type(exc).__name__}({exc}), which stops programs, not cells; raise an Exception"),
            Cause.CRASH)
    return failed_record(cell, error)
