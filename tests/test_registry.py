"""The metric registry: ids with parameters, wildcard listing, helpful errors, duplicate refusal."""

import math
import sys

import pytest
import torch

from simstress import metrics
from simstress.core.registry import DuplicateNameError, PluginError, Registry, UnknownNameError, glob_match, natural_key


def test_list_metrics_globs_in_natural_order() -> None:
    found = metrics.list_metrics("*cka*")
    assert found[:2] == ["linear_cka", "linear_cka_debiased"]
    assert found.index("rbf_cka[sigma=0.2]") < found.index("rbf_cka[sigma=0.5]")
    assert all("cka" in f for f in found)
    assert metrics.list_metrics("linear_cka,rbf_cka") == ["linear_cka", "rbf_cka"]
    assert sorted(["x10", "x2", "x1"], key=natural_key) == ["x1", "x2", "x10"]


def test_parameterised_ids_are_parsed_and_canonical() -> None:
    m = metrics.get_metric("rbf_cka[sigma=0.50]")
    assert m.params["sigma"] == 0.5 and m.id == "rbf_cka[sigma=0.5]"
    assert metrics.get_metric("rbf_cka[sigma=1]").id == "rbf_cka"
    assert metrics.get_metric(" rbf_cka [ sigma = 2 ] ").params["sigma"] == 2.0


def test_unknown_ids_and_parameters_name_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="closest: linear_cka"):
        metrics.get_metric("linear_ckaa")
    with pytest.raises(UnknownNameError, match="valid: sigma"):
        metrics.get_metric("rbf_cka[sigm=0.5]")
    with pytest.raises(ValueError, match="must be float"):
        metrics.get_metric("rbf_cka[sigma=wide]")
    with pytest.raises(ValueError, match="malformed"):
        metrics.get_metric("rbf_cka[sigma]")


def test_spec_is_frozen_and_complete() -> None:
    spec = metrics.get_metric("linear_cka").spec
    with pytest.raises(AttributeError):
        spec.version = 2  # type: ignore[misc]
    assert spec.kind == "similarity" and spec.symmetric and spec.differentiable
    assert spec.invariances == {"translation", "isotropic_scaling", "orthogonal", "permutation"}
    assert "Kornblith" in spec.reference and spec.cost and spec.summary


def test_registering_a_taken_name_raises() -> None:
    with pytest.raises(DuplicateNameError, match="registered twice"):
        @metrics.register(cost="O(1)", reference="test", name="linear_cka")
        def impostor(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
            """Not linear CKA."""
            return X.sum() * 0


def test_register_refuses_unknown_invariances_and_missing_docstring() -> None:
    with pytest.raises(ValueError, match="unknown invariances"):
        metrics.register(cost="O(1)", reference="x", invariances=("rotation",))
    with pytest.raises(ValueError, match="docstring"):
        @metrics.register(cost="O(1)", reference="x", name="undocumented_metric")
        def undocumented(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
            return X.sum()


def test_as_similarity_orients_distances() -> None:
    @metrics.register(kind="distance", cost="O(1)", reference="test", value_range=(0.0, math.inf),
                      name="test_unbounded_distance")
    def test_unbounded_distance(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Mean absolute difference (a throw-away distance)."""
        return (X - Y).abs().mean()

    try:
        spec = metrics.get_metric("test_unbounded_distance").spec
        assert spec.as_similarity(0.0) == 1.0 and spec.as_similarity(1.0) == 0.5
        assert metrics.get_metric("linear_cka").spec.as_similarity(0.3) == 0.3
    finally:
        metrics.REGISTRY.remove("test_unbounded_distance")


def test_in_repo_modules_follow_the_plugin_rule(tmp_path, monkeypatch) -> None:
    """A module of the scanned package that fails to import warns (raises under strict), like an entry point."""
    pkg = tmp_path / "scan_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("LOADED = True\n")
    (pkg / "broken.py").write_text("raise RuntimeError('a typo in a metric module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(RuntimeWarning, match="module 'broken' of scan_pkg failed to import.*a typo"):
        Registry("metric", "scan_pkg", "simstress.test_no_group").ensure_loaded()
    assert sys.modules["scan_pkg.good"].LOADED
    with pytest.raises(PluginError, match="module 'broken' of scan_pkg"):
        Registry("metric", "scan_pkg", "simstress.test_no_group").ensure_loaded(strict=True)


def test_glob_match_takes_brackets_literally_and_excludes() -> None:
    names = ["rbf_cka", "rbf_cka[sigma=0.2]", "rbf_cka[sigma=0.5]", "linear_cka"]
    assert glob_match(names, "rbf_cka[*") == ["rbf_cka[sigma=0.2]", "rbf_cka[sigma=0.5]"]
    assert glob_match(names, "rbf_cka[sigma=0.5]") == ["rbf_cka[sigma=0.5]"]
    assert glob_match(names, "*cka*", exclude="rbf_cka[*, linear*") == ["rbf_cka"]
    assert metrics.list_metrics("*cka*", exclude="rbf*", differentiable=True) == ["linear_cka", "linear_cka_debiased"]
    with pytest.raises(ValueError, match="no field"):
        metrics.list_metrics(colour="red")


def test_a_repeated_parameter_is_named() -> None:
    with pytest.raises(ValueError, match="parameter 'sigma' is given twice in 'rbf_cka\\[sigma=0.5,sigma=2\\]'"):
        metrics.get_metric("rbf_cka[sigma=0.5,sigma=2]")


@pytest.mark.parametrize(("result", "what"), [(lambda X: 0.5, "a float"),
                                               (lambda X: X[:, 0].mean(0, keepdim=True), r"a tensor of shape \(1,\)"),
                                               (lambda X: X.mean(0), r"a tensor of shape \(3,\)")])
def test_a_metric_must_return_a_0d_tensor(result, what: str) -> None:
    @metrics.register(cost="O(1)", reference="test", name="test_bad_protocol")
    def test_bad_protocol(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Returns the wrong type (a throw-away metric)."""
        return result(X)

    try:
        X = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        for call in (lambda: metrics.score("test_bad_protocol", X, X), lambda: metrics.get_metric(
                "test_bad_protocol")(X, X)):
            with pytest.raises(TypeError, match=f"returned {what}.*must return a 0-d torch tensor"):
                call()
    finally:
        metrics.REGISTRY.remove("test_bad_protocol")


def test_convention_variants_are_listed_and_checked() -> None:
    ids = metrics.list_metrics()
    assert {"rbf_cka[median=lower,sigma=0.2]", "cca_mean[normalize=width]"} <= set(ids)
    assert metrics.get_metric("rbf_cka[sigma=0.2,median=lower]").id == "rbf_cka[median=lower,sigma=0.2]"
    with pytest.raises(ValueError, match="median must be 'ordinary' or 'lower'"):
        metrics.get_metric("rbf_cka[median=upper]")
    with pytest.raises(ValueError, match="normalize must be 'rank' or 'width'"):
        metrics.get_metric("cca_mean[normalize=p]")
