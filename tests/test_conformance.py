"""The shared conformance suite, generated from the registry: every metric id (plugins included) gets every
check that applies to its spec (simstress/core/conformance.py holds the checks; `simstress check` runs the same)."""

import pytest

from simstress import metrics
from simstress.core.conformance import applicable_checks, make_data, run_check

DATA = make_data()
CASES = [(mid, name) for mid in metrics.list_metrics(calibration="")  # calibration rows: tests/test_calibration.py
         for name in applicable_checks(metrics.get_metric(mid))]


@pytest.mark.parametrize(("metric_id", "check"), CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_conformance(metric_id: str, check: str) -> None:
    result = run_check(metric_id, check, DATA)
    assert result.ok, f"{metric_id} fails {check}: {result.detail}"


def test_every_builtin_is_covered() -> None:
    builtin = {"linear_cka", "linear_cka_debiased", "rbf_cka", "cca_mean", "cca_r2", "svcca", "pwcca",
               "procrustes", "procrustes_angular", "rsa", "mutual_knn", "probe_accuracy", "probe_agreement"}
    assert builtin <= set(metrics.list_metrics())
    assert {"rbf_cka[sigma=0.5]", "rbf_cka[sigma=0.2]", "rbf_cka[median=lower,sigma=0.2]",
            "cca_mean[normalize=width]"} <= set(metrics.list_metrics())
