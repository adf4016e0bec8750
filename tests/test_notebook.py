"""``uk.unlearn`` computes every metric its splits allow, and names the split a requested metric lacks."""

from __future__ import annotations

import pytest

import unlearnkit as uk

OPTIONS = {"alpha": 8.0, "lr": 1e-3, "batch_size": 16}


def splits_of(bench, *names: str) -> dict:
    return {n: (bench.splits[n].x, bench.splits[n].y) for n in names}


def test_without_test_every_metric_the_splits_allow_is_computed(bench):
    given = splits_of(bench, "forget", "retain", "unseen")
    result = uk.unlearn(bench.original, method="lotus", options=OPTIONS, mean=(0.5,), std=(0.3,), seed=0, **given)
    assert {"acc_forget", "acc_retain", "acc_unseen", "time_s"} <= set(result.metrics)
    assert "acc_test" not in result.metrics and "mia" not in result.metrics  # they read the test split


def test_a_requested_metric_names_the_split_it_lacks(bench):
    given = splits_of(bench, "forget", "retain", "unseen")
    with pytest.raises(uk.ConfigError, match=r"^Metric 'acc_test' needs the test split \(test=\): pass it"):
        uk.unlearn(bench.original, method="lotus", options=OPTIONS, metrics=["acc_forget", "acc_test"], **given)
    with pytest.raises(uk.ConfigError, match=r"^Metric 'jsd' needs the retrained model \(retrained=\)"):
        uk.unlearn(bench.original, method="lotus", options=OPTIONS, metrics=["jsd"], **given)


def test_requested_metrics_are_the_only_ones_computed(bench):
    given = splits_of(bench, "forget", "retain", "unseen", "test")
    result = uk.unlearn(
        bench.original, method="lotus", options=OPTIONS, metrics=["acc_test"], retrained=bench.retrained, **given
    )
    assert set(result.metrics) == {"acc_test"}
