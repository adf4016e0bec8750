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


def test_what_a_run_refuses_uk_unlearn_refuses_in_one_line(bench):
    """A class-only method on an instance forget set, labels outside the classes, an empty split and a
    mean per channel of the wrong length: a run refuses each; uk.unlearn ran the first two silently."""
    given = splits_of(bench, "forget", "retain")
    with pytest.raises(uk.ConfigError, match=r"^Method 'boundary_shrink' is defined only for forget scenarios class"):
        uk.unlearn(bench.original, method="boundary_shrink", **given)
    x_f, y_f = given["forget"]
    with pytest.raises(uk.ConfigError, match=r"^The forget split has the label -1: labels must be class ids 0\.\.3"):
        uk.unlearn(bench.original, forget=(x_f, y_f - 1), retain=given["retain"], num_classes=4)
    with pytest.raises(uk.ConfigError, match=r"^The forget split has the label 3: labels must be class ids 0\.\.2"):
        uk.unlearn(bench.original, forget=(x_f, y_f), retain=given["retain"], num_classes=3)
    with pytest.raises(uk.ConfigError, match=r"^The forget split is empty"):
        uk.unlearn(bench.original, forget=(x_f[:0], y_f[:0]), retain=given["retain"])
    with pytest.raises(uk.ConfigError, match=r"^Bad mean \(0\.5, 0\.5, 0\.5\): one value per image channel \(1\)"):
        uk.unlearn(bench.original, mean=(0.5, 0.5, 0.5), **given)
