"""Everything in the registry meets its contract on tiny CPU data — built-ins and any installed
third-party plugin alike, without anyone listing them (timm's trick)."""

from __future__ import annotations

import pytest

from unlearnkit.discovery.host import PluginHost
from unlearnkit.errors import DataError
from unlearnkit.testing import check_dataset, check_method, check_metric, check_model, check_scenario

REGS = PluginHost().registries


@pytest.mark.parametrize("name", REGS.methods.names())
def test_method_contract(name, bench):
    """The one conformance pass per method (``check_method`` runs it twice: determinism)."""
    cls = REGS.methods.get(name).cls
    report = check_method(cls, bench=bench)
    if cls.role is None:  # a method reads every split it declares: its access level is not inflated
        assert report.touched == cls.splits(), f"{name} declares {set(cls.splits())} but read {report.touched}"


@pytest.mark.parametrize("name", REGS.metrics.names())
def test_metric_contract(name, bench):
    check_metric(REGS.metrics.get(name).cls, bench=bench)


@pytest.mark.parametrize("name", REGS.datasets.names())
def test_dataset_contract_or_a_clear_missing_data_error(name, tmp_path, monkeypatch):
    cls = REGS.datasets.get(name).cls
    if cls.embedded:
        raw = check_dataset(cls, cache_dir=tmp_path)
        assert raw.num_classes >= 2
        return
    monkeypatch.delenv("UNLEARNKIT_SHARED_DATA", raising=False)
    try:
        cls(cls.parse_options({"download": False}) if "download" in cls.Options.model_fields else None).check_available(
            tmp_path / "empty"
        )
    except DataError as err:
        assert "\n" not in str(err) and str(tmp_path / "empty") in str(err)
    else:  # e.g. fashion_mnist found in the Debian package: then it must load for real
        check_dataset(cls, data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", [n for n in REGS.models.names() if not REGS.models.get(n).cls.accepts_variant])
def test_model_contract(name):
    check_model(REGS.models.get(name).cls)


@pytest.mark.parametrize("name", REGS.scenarios.names())
def test_scenario_contract(name):
    check_scenario(REGS.scenarios.get(name).cls)
