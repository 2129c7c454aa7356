"""Linear probes: the split, the fit (optimality checked in numpy), the folded weights, and the two metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simstress import metrics
from simstress.metrics import InputError, get_metric
from simstress.metrics.probe import LinearProbe, fit_probe, stratified_split


def classes_data(n: int = 300, p: int = 12, C: int = 3, seed: int = 0, sep: float = 1.5):
    """Gaussian classes with overlapping means (so the probe is not trivially perfect), float64."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    means = sep * torch.randn(C, p, generator=g, dtype=torch.float64)
    mix = torch.randn(p, p, generator=g, dtype=torch.float64) / p**0.5 + torch.eye(p, dtype=torch.float64)
    X = (means[labels] + torch.randn(n, p, generator=g, dtype=torch.float64)) @ mix
    return X, labels


def test_split_is_stratified_disjoint_and_deterministic():
    labels = torch.tensor([5] * 50 + [2] * 23 + [9] * 7 + [4] * 2)
    train, test = stratified_split(labels, test_fraction=0.2, seed=3)
    assert train.dtype == test.dtype == torch.int64
    both = torch.cat([train, test]).sort().values
    assert torch.equal(both, torch.arange(len(labels)))  # disjoint and complete
    for c, n_c in [(5, 50), (2, 23), (9, 7), (4, 2)]:
        n_test = int((labels[test] == c).sum())
        assert n_test == min(max(round(0.2 * n_c), 1), n_c - 1)
        assert int((labels[train] == c).sum()) == n_c - n_test
    again = stratified_split(labels, test_fraction=0.2, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    assert not torch.equal(stratified_split(labels, test_fraction=0.2, seed=4)[1], test)


@pytest.mark.parametrize("labels,match", [
    (torch.tensor([0, 0, 0, 1, 1, 2]), r"class\(es\) \[2\]"),
    (torch.tensor([3, 3, 3, 3]), "at least two classes"),
])
def test_split_refuses_unstratifiable_labels(labels, match):
    with pytest.raises(InputError, match=match):
        stratified_split(labels)


def test_fit_reaches_the_penalised_optimum():
    """The gradient of mean CE + (l2/2)||W||², written out in numpy, vanishes at the fitted (coef, intercept)."""
    X, labels = classes_data(seed=1)
    l2 = 1e-2
    probe = fit_probe(X, labels, l2=l2)
    Xn = X.numpy()
    Z = (Xn - Xn.mean(0)) / Xn.std(0)
    W, b = probe.coef.numpy(), probe.intercept.numpy()
    logits = Z @ W.T + b
    P = np.exp(logits - logits.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    R = P - np.eye(3)[labels.numpy()]
    grad_W = R.T @ Z / len(Z) + l2 * W
    grad_b = R.mean(0)
    assert np.abs(grad_W).max() < 1e-7 and np.abs(grad_b).max() < 1e-7
    assert 0.6 < probe.accuracy(X, labels) < 1.0  # overlapping classes: a real fit, not a trivial one


def test_weight_and_bias_reproduce_predict_in_original_coordinates():
    X, labels = classes_data(seed=2)
    X = X * torch.linspace(0.1, 10, X.shape[1], dtype=torch.float64) + 50.0  # far from standardised
    labels = torch.tensor([10, 3, 7])[labels]  # non-contiguous label values
    probe = fit_probe(X, labels)
    assert isinstance(probe, LinearProbe)
    assert probe.weight.shape == (3, X.shape[1]) and probe.bias.shape == (3,)
    pred = probe.predict(X)
    assert pred.dtype == torch.int64 and set(pred.tolist()) <= {3, 7, 10}
    assert torch.equal(probe.classes, torch.tensor([3, 7, 10]))
    assert torch.equal(probe.classes[(X @ probe.weight.T + probe.bias).argmax(1)], pred)
    torch.testing.assert_close(X @ probe.weight.T + probe.bias, probe.logits(X), rtol=0, atol=1e-9)
    assert probe.accuracy(X, labels) == pytest.approx(float((pred == labels).double().mean()))


def test_probe_is_invariant_to_feature_offsets_and_scales_and_dtype():
    X, labels = classes_data(seed=3)
    base = fit_probe(X, labels).predict(X)
    X32 = (X.float() + 1e4) * 3.0  # huge offset, float32 input
    torch.testing.assert_close(fit_probe(X32, labels).predict(X32), base, rtol=0, atol=0)


@pytest.mark.parametrize("metric_id", ["probe_accuracy", "probe_agreement"])
def test_self_comparison_and_translated_copy_score_one(metric_id):
    X, labels = classes_data(seed=4)
    assert metrics.score(metric_id, X, X, labels=labels) == 1.0
    shifted = X.float() + 2e4 * torch.randn(X.shape[1], generator=torch.Generator().manual_seed(0))
    assert metrics.score(metric_id, X, shifted, labels=labels, dtype=torch.float32) == 1.0


def test_scrambling_one_class_lowers_agreement_and_accuracy():
    X, labels = classes_data(n=400, seed=5, sep=2.5)
    Y = X.clone()
    rows = (labels == 1).nonzero().flatten()
    donors = (labels == 0).nonzero().flatten()
    g = torch.Generator().manual_seed(1)
    Y[rows] = X[donors[torch.randint(len(donors), (len(rows),), generator=g)]]  # class 1 now looks like class 0
    agreement = metrics.score("probe_agreement", X, Y, labels=labels)
    accuracy = metrics.score("probe_accuracy", X, Y, labels=labels)
    assert agreement < 0.9 and accuracy < 0.95
    # the independent count: probes fitted here on the same split disagree on exactly that fraction
    train, test = stratified_split(labels, 0.2, seed=0)
    px = fit_probe(X[train], labels[train]).predict(X[test])
    py = fit_probe(Y[train], labels[train]).predict(Y[test])
    assert agreement == pytest.approx(float((px == py).double().mean()))
    acc_x = float((px == labels[test]).double().mean())
    acc_y = float((py == labels[test]).double().mean())
    assert accuracy == pytest.approx(1.0 - abs(acc_x - acc_y))


def test_probe_metrics_need_labels_and_declare_it():
    X, labels = classes_data(seed=6)
    for metric_id in ("probe_accuracy", "probe_agreement"):
        spec = get_metric(metric_id).spec
        assert spec.needs_labels and not spec.differentiable
        assert spec.invariances == {"translation", "isotropic_scaling", "permutation"}
        with pytest.raises(InputError, match="needs class labels"):
            metrics.score(metric_id, X, X)
    lonely = labels.clone()
    lonely[0] = 7  # a class with one sample cannot be stratified
    with pytest.raises(InputError, match="at least 2 samples per class"):
        metrics.score("probe_agreement", X, X, labels=lonely.numpy())


@pytest.mark.parametrize("metric_id", ["probe_accuracy", "probe_agreement"])
def test_probe_values_do_not_depend_on_the_scale_across_the_float64_range(metric_id):
    """Issue 22, item 7: at |x| ≥ 1e154 the squares of the standardisation overflowed, at 1e-160 they underflowed,
    and both probes predicted one class, a 'perfect' 1.0 (true value 0.917 here). Power-of-two scaling per
    feature keeps every digit of the standardised features, so the value is the same at any scale."""
    X, labels = classes_data(n=400, p=10, C=3, seed=7, sep=1.5)
    Y = X + 2.0 * torch.randn(X.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    base = metrics.score(metric_id, X, Y, labels=labels)
    assert 0.5 < base < 1.0
    for k in (-300, -160, 154, 200, 300):
        assert metrics.score(metric_id, X * 10.0**k, Y * 10.0**k, labels=labels) == base, k
    assert metrics.score(metric_id, X * 1e300, Y, labels=labels) == base  # each side at its own scale
