"""Executors: a smoke grid computed serially, in worker processes (`--jobs 2`) and on a local Ray cluster gives the
same records; an artifact several cells need is built once; a metric that kills its worker is retried, then recorded
as an error while the rest finishes; a hanging metric is cut off by the time limit and recorded."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import ray  # the dev extra installs it: the Ray executor is tested, never skipped
import torch

from simstress import metrics, tasks
from simstress.benchmark import executors, runner
from simstress.benchmark.cli import main
from simstress.benchmark.executors import MAX_RETRIES, make_executor
from simstress.benchmark.records import ResultStore

pytestmark = pytest.mark.slow

PLUGIN = '''
"""Test plugins for the executors: a task on a shared artifact, and metrics that kill or hang their worker."""
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from simstress import metrics
from simstress.core.artifacts import ArtifactSpec, artifact_builder
from simstress.core.scoring import mean_clipped
from simstress.tasks import Case, Setup, Task, register_task


@artifact_builder("scaleout_blob")
def build_blob(params, inputs, out, device):
    with open(params["counter"], "a") as f:  # one line per build, whichever process builds it
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)  # long enough that concurrent builds would overlap
    g = torch.Generator().manual_seed(params["seed"])
    torch.save(torch.randn(40, 6, generator=g, dtype=torch.float64), out / "x.pt")
    return {"rows": 40}


@dataclass
class BlobSetup(Setup):
    X: torch.Tensor


@register_task(name="scaleout_shared", category="robustness", sweep_name="scale")
class Shared(Task):
    """Every cell of this task reads one shared artifact (a test plugin of the executor tests).

    Construction: X (40 × 6) from the artifact; Y = c·X for c in {2, 3} plus a seeded perturbation.
    Ground truth: isotropic scaling preserves the geometry, so the ideal similarity stays 1.
    Score: mean clipped similarity.
    Source: Kornblith et al. 2019 (ICML), §2.
    """

    sizes = {"smoke": {}}
    timeout_s = {"smoke": 5.0}  # the driver's backstop allows this for loading the data (Ray cannot see more)
    counter = str(Path(__file__).with_name("builds.txt"))  # the same in every process

    def artifacts(self, scale, seed):
        return {"blob": ArtifactSpec("scaleout_blob", {"seed": 0, "counter": self.counter})}

    def build(self, size, seed, device, artifacts):
        X = torch.load(artifacts["blob"].file("x.pt")).to(device)
        return BlobSetup(labels=None, details={"seed": seed}, X=X)

    def cases(self, setup):
        g = torch.Generator().manual_seed(setup.details["seed"])
        for c in (2.0, 3.0):
            noise = 0.01 * torch.randn(setup.X.shape, generator=g, dtype=setup.X.dtype)
            yield Case(x=c, reference=setup.X, other=c * setup.X + noise, ref_key=0, truth={})

    def score(self, curve, setup):
        return mean_clipped(curve["similarity"])


@register_task(name="scaleout_slow_setup", category="robustness", sweep_name="scale")
class SlowSetup(Shared):
    """Like scaleout_shared, but building its data takes seconds (a test plugin of the executor tests).

    Construction: as scaleout_shared, after a 12 s pause while the set-up is built.
    Ground truth: isotropic scaling preserves the geometry, so the ideal similarity stays 1.
    Score: mean clipped similarity.
    Source: Kornblith et al. 2019 (ICML), §2.
    """

    timeout_s = {"smoke": 60.0}

    def build(self, size, seed, device, artifacts):
        time.sleep(12.0)
        return super().build(size, seed, device, artifacts)


@artifact_builder("scaleout_slow_blob")
def build_slow_blob(params, inputs, out, device):
    (out / "part.bin").write_bytes(b"half")
    Path(params["marker"]).write_text("building")  # the driver waits for this before its Ctrl-C
    time.sleep(3600)


@register_task(name="scaleout_slow_artifact", category="robustness", sweep_name="scale")
class SlowArtifact(Shared):
    """Every cell needs an artifact that takes forever to build (a test plugin of the executor tests).

    Construction: as scaleout_shared, from an artifact whose build never ends.
    Ground truth: isotropic scaling preserves the geometry, so the ideal similarity stays 1.
    Score: mean clipped similarity.
    Source: Kornblith et al. 2019 (ICML), §2.
    """

    marker = str(Path(__file__).with_name("building.txt"))

    def artifacts(self, scale, seed):
        return {"blob": ArtifactSpec("scaleout_slow_blob", {"marker": self.marker})}


@metrics.register(name="scaleout_suicide", cost="O(1)", reference="test only")
def suicide(X, Y):
    """Kills its own process (a segfaulting native extension, an OOM kill)."""
    os.kill(os.getpid(), signal.SIGKILL)


@metrics.register(name="scaleout_hang", cost="O(1)", reference="test only")
def hang(X, Y):
    """Never returns (a deadlock in Python code)."""
    time.sleep(3600)


@metrics.register(name="scaleout_native_hang", cost="O(1)", reference="test only")
def native_hang(X, Y):
    """Never returns and ignores the time-limit signal (a native call that never comes back)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(3600)
'''
VOLATILE = {"runtime_s", "device_name", "git_commit", "packages"}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "scaleout_plugins.py").write_text(textwrap.dedent(PLUGIN))
    sys.path.insert(0, str(folder))
    module = importlib.import_module("scaleout_plugins")
    yield module
    sys.path.remove(str(folder))
    for name in ("scaleout_suicide", "scaleout_hang", "scaleout_native_hang"):
        metrics.REGISTRY.remove(name)
    for name in ("scaleout_shared", "scaleout_slow_setup", "scaleout_slow_artifact"):
        tasks.REGISTRY.remove(name)
    del sys.modules["scaleout_plugins"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def builds(plugin) -> int:
    path = Path(plugin.Shared.counter)
    return len(path.read_text().splitlines()) if path.exists() else 0


def records(root: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((root / "records").rglob("*.json")):
        r = {k: v for k, v in json.loads(f.read_text()).items() if k not in VOLATILE}
        r["runs"] = [{k: v for k, v in run.items() if k != "runtime_s"} for run in r["runs"]]
        out[str(f.relative_to(root))] = r
    return out


def grid(root: Path, executor, metric_ids=("linear_cka", "procrustes"),
         task_names=("outlier_shift", "scaleout_shared", "pretrained_stage_correspondence"), timeout_s=60.0,
         seeds=(0, 1)):
    """The grid's cells on `executor`. The 60 s limit is for cells that take milliseconds: the driver's backstop
    on Ray (attempts × (set-up + limit) + grace from submission) must outlast a worker's start-up on a busy machine,
    where the task's own 5 s left 60 s for three start-ups and was not enough."""
    metric_ids, task_names = list(metric_ids), list(task_names)
    return runner.run(ResultStore(root), metric_ids, task_names, scale="smoke", seeds=list(seeds), device="cpu",
                      quiet=True, timeout_s=timeout_s, executor=executor)


def test_jobs_and_ray_give_the_serial_records_and_build_each_artifact_once(plugin, cluster, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' count: BLAS sums in a thread-count-dependent order
    try:
        serial = grid(tmp_path / "serial", make_executor("local"))
    finally:
        torch.set_num_threads(threads)
    assert builds(plugin) == 1 and serial.computed["ok"] == 6 and not serial.errors
    modules = runner.worker_modules(["linear_cka"], ["scaleout_shared"])
    assert modules == ["scaleout_plugins"]
    for name, executor in (("jobs", make_executor("local", jobs=2, modules=modules)),
                           ("ray", make_executor("ray", modules=modules))):
        before = builds(plugin)
        summary = grid(tmp_path / name, executor)
        assert summary.computed["ok"] == 6 and not summary.errors, summary.lines()
        assert builds(plugin) == before + 1  # three cells × two seeds need the blob: built once, by one job
        assert records(tmp_path / name) == records(tmp_path / "serial"), name
        cards = sorted(p.parent.name for p in (tmp_path / name).glob("*/*/card.json"))
        assert len(cards) == len(set(cards)) == summary.artifacts


@pytest.mark.parametrize("kind", ["jobs", "ray"])
def test_a_metric_that_kills_its_worker_is_retried_then_recorded(plugin, cluster, tmp_path, kind):
    executor = make_executor("local" if kind == "jobs" else "ray", jobs=2, modules=["scaleout_plugins"])
    summary = grid(tmp_path, executor, ("scaleout_suicide", "linear_cka"), ("scaleout_shared",))
    assert summary.computed == {"ok": 1, "error": 1}
    record = json.loads((tmp_path / "records/smoke/scaleout_shared/scaleout_suicide.json").read_text())
    assert record["status"] == "error" and record["error"]["type"].endswith("WorkerDied")
    assert f"{1 + MAX_RETRIES} times" in record["error"]["message"]
    if kind == "jobs":
        assert "SIGKILL" in record["error"]["message"]
    assert json.loads((tmp_path / "records/smoke/scaleout_shared/linear_cka.json").read_text())["status"] == "ok"


@pytest.mark.parametrize("kind", ["jobs", "ray"])
def test_a_hanging_metric_is_cut_off_and_recorded(plugin, cluster, tmp_path, kind, monkeypatch):
    monkeypatch.setattr(executors, "GRACE_S", 1.0)
    executor = make_executor("local" if kind == "jobs" else "ray", jobs=2, modules=["scaleout_plugins"])
    # A limit bounds only work that never ends: a healthy cell's verdict must not hang on the machine's load.
    hanging = ("scaleout_hang", "scaleout_native_hang")
    summary = grid(tmp_path, executor, hanging, ("scaleout_shared",), timeout_s=2.0)
    assert summary.computed == {"error": 2}
    for name in hanging:
        record = json.loads((tmp_path / f"records/smoke/scaleout_shared/{name}.json").read_text())
        assert record["error"]["type"] == "TimeoutError" and "time limit of 2 s" in record["error"]["message"]
        assert record["error"]["cause"] == "timeout"
    # the executor came back from the killed workers: the same kind of run goes on with the rest
    after = grid(tmp_path, make_executor("local" if kind == "jobs" else "ray", jobs=2, modules=["scaleout_plugins"]),
                 ("linear_cka", *hanging), ("scaleout_shared",))
    assert after.computed == {"ok": 1} and after.current == 2


def test_bad_executor_options_are_refused(capsys, tmp_path):
    with pytest.raises(ValueError, match="--address names a Ray cluster"):
        make_executor("local", address="auto")
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask")
    with pytest.raises(SystemExit):
        main(["run", "--executor", "dask"])
    assert "invalid choice" in capsys.readouterr().err


def test_missing_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'simstress\[ray\]'"):
        make_executor("ray")
    code = main(["--quiet", "run", "--executor", "ray", "--scale", "smoke", "--tasks", "outlier_shift",
                 "--metrics", "linear_cka", "--results", str(tmp_path)])
    assert code == 2 and "simstress[ray]" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["local", "jobs"])
def test_a_cells_limit_counts_only_its_metrics_work(plugin, tmp_path, kind):
    # the worker's start-up and a 12 s set-up of the task's data do not count against a 10 s limit on work that
    # takes milliseconds (four orders of magnitude apart, so a busy machine cannot flip it)
    executor = make_executor("local", jobs=1 if kind == "local" else 2, modules=["scaleout_plugins"])
    summary = grid(tmp_path, executor, ("linear_cka",), ("scaleout_slow_setup",), timeout_s=10.0, seeds=(0,))
    assert summary.computed == {"ok": 1} and not summary.errors, summary.lines()


@pytest.mark.parametrize("kind", ["local", "jobs"])
def test_conformance_runs_under_a_time_limit(plugin, tmp_path, kind, monkeypatch):
    monkeypatch.setattr(executors, "GRACE_S", 1.0)
    executor = make_executor("local", jobs=1 if kind == "local" else 2, modules=["scaleout_plugins"])
    hung = ["scaleout_hang"] if kind == "local" else ["scaleout_hang", "scaleout_native_hang"]
    store = ResultStore(tmp_path)
    try:
        assert runner.refresh_conformance(store, hung, quiet=True, executor=executor, timeout_s=1.0) == len(hung)
    finally:
        executor.close()
    for name in hung:
        report = store.load_conformance(name)
        assert report["passed"] is False and "time limit of 1 s" in report["checks"][0][2], report


def test_an_unreachable_cluster_fails_within_seconds(capsys, tmp_path):
    with pytest.raises(ConnectionError, match="no Ray cluster answers at ray://127.0.0.1:9"):
        make_executor("ray", address="ray://127.0.0.1:9")
    code = main(["--quiet", "run", "--executor", "ray", "--address", "127.0.0.1:9", "--scale", "smoke",
                 "--tasks", "outlier_shift", "--metrics", "linear_cka", "--results", str(tmp_path)])
    assert code == 2 and "no Ray cluster answers" in capsys.readouterr().err


def test_ctrl_c_during_a_build_in_a_worker_leaves_no_half_built_folder(plugin, tmp_path, ctrl_c):
    marker = Path(plugin.SlowArtifact.marker)
    marker.unlink(missing_ok=True)

    def interrupt_once_building() -> None:
        while not marker.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_building, daemon=True).start()
    executor = make_executor("local", jobs=2, modules=["scaleout_plugins"])
    summary = grid(tmp_path, executor, ("linear_cka",), ("scaleout_slow_artifact",))
    assert summary.interrupted
    assert list((tmp_path / "scaleout_slow_blob").iterdir()) == []  # neither the artifact nor its .tmp folder
