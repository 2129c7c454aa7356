"""The same code on CUDA: every registered metric gives its CPU value, every task's smoke set-up scores as on the
CPU, and each kind of network artifact builds and loads on the GPU. Skipped without CUDA (the reference machine has
none); run where a GPU is, with `pytest -m gpu`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simstress import metrics, tasks
from simstress.core.artifacts import ArtifactStore

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

IDS = metrics.list_metrics()
# The same numbers computed by other kernels: float64 rounds at ~1e-15 relative, so 1e-9 leaves room for the
# iterative solvers (probes, the RBF median) and none for a wrong formula; float32 keeps the suite's TOL_FLOAT32.
TOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def pair(n: int = 240, p1: int = 24, p2: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A correlated ReLU pair with three classes: every metric, the CCA family included (n ≫ p), can score it."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n // 3)
    z = rng.normal(size=(n, 4)) + labels[:, None]
    X = np.maximum(z @ rng.normal(size=(4, p1)) + 0.3 * rng.normal(size=(n, p1)), 0)
    Y = np.maximum(z @ rng.normal(size=(4, p2)) + 0.3 * rng.normal(size=(n, p2)), 0)
    return X.astype(np.float32), Y.astype(np.float32), labels


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("metric_id", IDS)
def test_every_metric_gives_its_cpu_value_on_cuda(metric_id: str, dtype: torch.dtype) -> None:
    X, Y, labels = pair()
    cpu = metrics.score(metric_id, X, Y, labels=labels, device="cpu", dtype=dtype)
    gpu = metrics.score(metric_id, X, Y, labels=labels, device="cuda", dtype=dtype)
    assert np.isfinite(gpu)
    assert gpu == pytest.approx(cpu, abs=TOL[dtype], rel=TOL[dtype])


@pytest.mark.parametrize("name", tasks.list_tasks("*"))
def test_every_task_scores_as_on_the_cpu(name: str, artifact_root) -> None:
    """Linear CKA on each task's smoke set-up, built on each device from the same artifacts (activations are taken
    in full float32 on CUDA, so only the kernels' rounding differs)."""
    t, m = tasks.get_task(name), metrics.get_metric("linear_cka")
    built = {k: ArtifactStore(artifact_root, device="cuda").ensure(s) for k, s in t.artifacts("smoke", 0).items()}
    cpu = t.evaluate(m, t.setup("smoke", device="cpu", artifacts=built)).score
    gpu = t.evaluate(m, t.setup("smoke", device="cuda", artifacts=built)).score
    print(f"{name}: cpu {cpu!r} cuda {gpu!r} |diff| {abs(cpu - gpu):.3g}")
    assert gpu == pytest.approx(cpu, abs=1e-6)


def test_network_artifacts_build_and_load_on_cuda(tmp_path) -> None:
    """A zoo network, a population member and an attack on it, at the smoke scale, trained on the GPU."""
    from simstress.networks.population import load_member, population
    from simstress.networks.zoo import load_network, network_spec
    from simstress.tasks.manipulation import attacks

    store = ArtifactStore(tmp_path, device="cuda")
    network = store.ensure(network_spec("generalized", 1, 0, "smoke"))
    member = store.ensure(population("smoke")["pop-m1-base-s0"])
    attack = store.ensure(next(iter(attacks("smoke", ("linear_cka",), ("ones",)).values())))
    for artifact in (network, member, attack):
        assert artifact.card["build_device"] == "cuda"
    images = torch.rand(8, 1, 32, 32, device="cuda")
    assert load_network(network, "cuda")(images).shape == (8, 10)
    assert load_member(member, device="cuda")(images).shape == (8, 10)
    assert 0.0 <= attack.card["agreement"] <= 1.0
