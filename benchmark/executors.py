"""Executors: where jobs (an artifact to build, a cell to compute) run, behind one seam the driver schedules through.

- `local` (default): in this process, one job at a time, exactly as before (set-ups shared across a task's
  cells, a SIGALRM time limit, Ctrl-C stops after the records already finished);
- `--jobs N`: N long-lived worker processes on this machine (spawned, so CUDA works in them), each with its own
  set-up cache; a job goes preferably to the worker that last ran a cell of the same task;
- `ray`: tasks on a Ray cluster (`--address auto` / `ray://…`), or a local one started for the run.

A job is plain data in (`Job.payload`) and plain data out: a cell's record, or a staged artifact (the builder's
files in a temporary folder of the results folder, which the driver then commits: only the driver writes records
and cards). On a cluster the results folder must be a path every node shares (NFS, a mounted bucket): artifacts
are files that outlive the run and are read by many cells, which is what a shared, content-addressed folder gives
and Ray's object store (in memory, gone with the cluster) does not.

Faults: a job whose worker dies (a killed process, a lost node) is retried up to `MAX_RETRIES` times, then fails
with the cause. A job's time limit counts from when its work starts (`jobs.Budget`: not the worker's start-up, the
imports or the task's data) and is enforced inside the process that runs it; should the work not come back (a
native call that never returns, or one that blocks the time-limit signal), the driver kills its worker process
`GRACE_S` after the limit. What each executor cannot do: `local` runs in this process, so a call that blocks
SIGALRM or never returns from native code cannot be cut off, and a metric that kills its own process ends the run
(use `--jobs`); on Ray the driver cannot see when a job's work starts, so its backstop counts from submission and
allows the task's own set-up limit (`Task.timeout_s`) on top, once for each run Ray may make of the job (it retries
a dead worker's job itself, `MAX_RETRIES`). Failures come back as data, `Outcome(error=CellError)`
with the exception's type, message and cause (never text to parse); the driver turns them into error records.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from simstress.core.record import Cause, CellError

from .cells import SetupCache, cause_of
from .jobs import import_plugins, run_job

MAX_RETRIES = 2  # a job whose worker dies is run at most 1 + MAX_RETRIES times
GRACE_S = 30.0  # after a job's time limit, how long the driver waits for the worker's own timeout record


@dataclass
class Job:
    """One unit of work: `kind` "artifact" (payload: spec dict, results root, device), "conformance" ({metric})
    or "cell" (a Cell dict). `timeout_s` bounds the work itself, from when it starts; `setup_timeout_s` bounds
    what comes before (loading artifacts, building the task's data), for the driver's backstop."""

    id: int
    kind: str
    payload: dict[str, Any]
    timeout_s: float | None
    gpu: bool = False
    group: str = ""  # jobs of one group share set-ups (a cell's task)
    attempts: int = 0
    setup_timeout_s: float | None = None


@dataclass
class Outcome:
    job: Job
    value: Any = None
    error: CellError | None = None  # set when the job did not return a value (as data: never parsed from text)


class WorkerDied(RuntimeError):
    """A job's worker process (or node) died, every retry included: the cell is recorded as an error naming it."""


class Executor(Protocol):
    capacity: int  # jobs it runs at once

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout: float | None = None) -> list[Outcome]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------------------ backstops


def job_error(exc: BaseException) -> CellError:
    """What a job that raised (an artifact build; a cell never raises) returns instead of a value."""
    return CellError.from_exception(exc, cause_of(exc))


def deadline(job: Job, dispatched: float, working_since: float | None, attempts: int = 1) -> float | None:
    """When the driver gives up on a job in flight: `GRACE_S` after its limit from when its work started, or, while
    it has not started, after its set-up limit from its dispatch (None: no limit). `attempts`: how many times the
    job may run under this one dispatch (Ray retries a dead worker's job itself, unseen by the driver)."""
    if working_since is not None:
        return working_since + job.timeout_s + GRACE_S if job.timeout_s else None
    if job.setup_timeout_s is None and not job.timeout_s:
        return None
    return dispatched + attempts * ((job.setup_timeout_s or 0.0) + (job.timeout_s or 0.0)) + GRACE_S


def wait_limit(deadlines: list[float | None], timeout: float | None) -> float | None:
    """How long to block: until the first deadline, at most `timeout`."""
    due = [d for d in deadlines if d is not None]
    limit = max(0.0, min(due) - time.monotonic()) if due else None
    return limit if timeout is None else (timeout if limit is None else min(limit, timeout))


def timed_out(job: Job, what: str, started: bool) -> Outcome:
    phase = (f"its work ran past its time limit of {job.timeout_s:g} s" if started else
             f"it ran past its set-up limit of {job.setup_timeout_s or 0:g} s plus its time limit of "
             f"{job.timeout_s or 0:g} s")
    return Outcome(job, error=CellError.from_exception(TimeoutError(f"{phase} and did not stop; {what}"),
                                                       Cause.TIMEOUT))


def died(job: Job, why: str, attempts: int) -> Outcome:
    return Outcome(job, error=CellError.from_exception(WorkerDied(f"{why}; tried {attempts} times"), Cause.CRASH))


# ------------------------------------------------------------------------------------------------ local


class LocalExecutor:
    """In this process, one job at a time (today's behaviour); a real Ctrl-C propagates from `wait`."""

    capacity = 1

    def __init__(self) -> None:
        self.setups = SetupCache()
        self.queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self.queue:
            return []
        job = self.queue.popleft()
        try:
            return [Outcome(job, run_job(job.kind, job.payload, self.setups, job.timeout_s))]
        except Exception as exc:  # an artifact build that raised
            return [Outcome(job, error=job_error(exc))]

    def cancel(self) -> None:
        self.queue.clear()

    def close(self) -> None:
        self.queue.clear()


# ------------------------------------------------------------------------------------------------ worker processes


def _worker_main(conn: Connection, modules: list[str], threads: int) -> None:
    """A worker process: jobs in, results out, until told to stop (None) or its pipe closes. It tells the driver
    when a job's work starts ("started"), so that the driver's backstop counts from there."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it cancels and kills the workers
    torch.set_num_threads(threads)
    import_plugins(modules)
    setups = SetupCache()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        kind, payload, timeout_s = message
        try:
            conn.send(("ok", run_job(kind, payload, setups, timeout_s, lambda: conn.send(("started", None)))))
        except Exception as exc:
            conn.send(("error", job_error(exc)))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Job | None = None
    dispatched: float = 0.0
    working_since: float | None = None
    last_group: str = ""


@dataclass
class ProcessExecutor:
    """`jobs` worker processes on this machine (`simstress run --jobs N`)."""

    jobs: int
    modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.capacity = self.jobs
        self.context = mp.get_context("spawn")
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)
        self.workers: list[_Worker] = []
        self.queue: deque[Job] = deque()

    def _start(self) -> _Worker:
        parent, child = self.context.Pipe()
        env = {"TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}  # bars are the driver's
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            process = self.context.Process(target=_worker_main, args=(child, self.modules, self.threads), daemon=True)
            process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def _dispatch(self) -> None:
        while self.queue:
            idle = [w for w in self.workers if w.job is None]
            if not idle and len(self.workers) < self.jobs:
                idle = [self._start()]
            if not idle:
                return
            job = self.queue.popleft()
            worker = next((w for w in idle if w.last_group == job.group), idle[0])
            worker.job, worker.dispatched, worker.working_since = job, time.monotonic(), None
            worker.last_group = job.group
            job.attempts += 1
            worker.conn.send((job.kind, job.payload, job.timeout_s))

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        self.workers.remove(worker)

    def _died(self, worker: _Worker) -> list[Outcome]:
        job = worker.job
        self._retire(worker, kill=True)
        code = worker.process.exitcode
        why = f"the worker process died ({f'killed by {signal.Signals(-code).name}' if code and code < 0 else code})"
        if job.attempts <= MAX_RETRIES:
            self.queue.appendleft(job)
            return []
        return [died(job, why, job.attempts)]

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        self._dispatch()
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return []
        limit = wait_limit([deadline(w.job, w.dispatched, w.working_since) for w in busy], timeout)
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], limit))
        out: list[Outcome] = []
        for worker in busy:
            job = worker.job
            if worker.conn in ready:
                try:
                    status, value = worker.conn.recv()
                except (EOFError, OSError):
                    out += self._died(worker)
                    continue
                if status == "started":
                    worker.working_since = time.monotonic()
                    continue
                worker.job = None
                out.append(Outcome(job, value=value) if status == "ok" else Outcome(job, error=value))
            elif worker.process.sentinel in ready:
                out += self._died(worker)
            elif (due := deadline(job, worker.dispatched, worker.working_since)) and time.monotonic() > due:
                self._retire(worker, kill=True)
                out.append(timed_out(job, "its worker was killed", worker.working_since is not None))
        self._dispatch()
        return out

    def cancel(self) -> None:
        self.queue.clear()
        for worker in list(self.workers):
            self._retire(worker, kill=True)

    def close(self) -> None:
        self.queue.clear()
        for worker in list(self.workers):
            if worker.job is None:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
            self._retire(worker, kill=worker.job is not None)


# ------------------------------------------------------------------------------------------------ Ray


_RAY_SETUPS: Any = None  # one set-up cache per Ray worker process (owned by this executor's remote function)


def _ray_job(kind: str, payload: dict[str, Any], timeout_s: float | None, modules: list[str]) -> Any:
    global _RAY_SETUPS
    if _RAY_SETUPS is None:
        from .cells import SetupCache

        import_plugins(modules)
        _RAY_SETUPS = SetupCache()
    return run_job(kind, payload, _RAY_SETUPS, timeout_s)


def reachable(address: str | None, seconds: float = 5.0) -> None:
    """Fail within seconds, naming the address, when a cluster address (host:port or ray://host:port) does not
    answer (Ray itself retries for minutes); "auto" and None are Ray's to resolve."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address!r}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise ConnectionError(f"no Ray cluster answers at {address} within {seconds:g} s ({exc}); start one there "
                              f"(`ray start --head`) or check the address") from None


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray executor needs Ray: pip install 'simstress[ray]'") from None
    return ray


class RayExecutor:
    """Tasks on a Ray cluster: `address` "auto", "ray://host:port", or None for the running or a new local one."""

    def __init__(self, address: str | None = None, modules: list[str] | None = None, jobs: int | None = None) -> None:
        ray = self.ray = ray_module()
        reachable(address)
        self.modules = list(modules or [])
        self.owned = not ray.is_initialized()
        if self.owned:
            ray.init(address=address, num_cpus=jobs if address is None else None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        # Workers import the run's plugin modules from the driver's path (on a cluster: install them on every node).
        self.runtime_env = {"env_vars": {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
                                         "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_ray_job)
        self.running: dict[Any, tuple[Job, float]] = {}
        self.queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def _dispatch(self) -> None:
        while self.queue and len(self.running) < self.capacity:
            job = self.queue.popleft()
            options = {"num_cpus": 1, "num_gpus": 1 if job.gpu else 0, "runtime_env": self.runtime_env}
            ref = self.remote.options(**options).remote(job.kind, job.payload, job.timeout_s, self.modules)
            self.running[ref] = (job, time.monotonic())

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        ray = self.ray
        self._dispatch()
        if not self.running:
            return []
        runs = 1 + MAX_RETRIES
        limit = wait_limit([deadline(job, submitted, None, runs) for job, submitted in self.running.values()], timeout)
        done, _ = ray.wait(list(self.running), num_returns=1, timeout=limit)
        out = []
        for ref in done:
            job, _ = self.running.pop(ref)
            try:
                out.append(Outcome(job, value=ray.get(ref)))
            except ray.exceptions.WorkerCrashedError as exc:
                out.append(died(job, f"the Ray worker died ({str(exc).splitlines()[0]})", 1 + MAX_RETRIES))
            except ray.exceptions.RayTaskError as exc:  # the job itself raised: report its own exception
                out.append(Outcome(job, error=job_error(exc.cause if isinstance(exc.cause, BaseException) else exc)))
            except ray.exceptions.RayError as exc:
                out.append(Outcome(job, error=job_error(exc)))
        now = time.monotonic()
        for ref, (job, submitted) in list(self.running.items()):
            if (due := deadline(job, submitted, None, 1 + MAX_RETRIES)) and now > due:
                ray.cancel(ref, force=True)
                self.running.pop(ref)
                out.append(timed_out(job, "its Ray task was cancelled", False))
        self._dispatch()
        return out

    def cancel(self) -> None:
        self.queue.clear()
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()

    def close(self) -> None:
        self.cancel()
        if self.owned:
            self.ray.shutdown()


def make_executor(kind: str, *, jobs: int = 1, address: str | None = None, modules: list[str] | None = None,
                  ) -> Executor:
    """The executor `simstress run --executor KIND [--jobs N] [--address ADDR]` asks for."""
    if kind == "ray":
        return RayExecutor(address, modules, jobs if jobs > 1 else None)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}: use local or ray")
    if address is not None:
        raise ValueError("--address names a Ray cluster: use it with --executor ray")
    return LocalExecutor() if jobs == 1 else ProcessExecutor(jobs, list(modules or []))
