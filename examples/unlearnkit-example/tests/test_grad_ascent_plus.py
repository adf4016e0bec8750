"""grad_ascent_plus meets the method contract that every built-in meets (the one conformance pass)."""

from __future__ import annotations

import pytest
import unlearnkit as uk
from unlearnkit.testing import check_method

from unlearnkit_example import GradAscentPlus


def test_meets_the_method_contract(tiny):
    # deterministic under a seed, finite weights, reads only D_f and D_r, lowers forget accuracy,
    # keeps retain accuracy within GradAscentPlus.conformance.retain_tolerance (run with its
    # conformance.options on tiny data)
    report = check_method(GradAscentPlus, bench=tiny)
    assert report.touched == {"forget", "retain"}
    assert report.acc_forget[1] < report.acc_forget[0]


def test_declares_what_the_store_needs():
    assert GradAscentPlus.algorithm_version == 1  # bump it with any change that can change a number
    assert GradAscentPlus.role is None  # an unlearning method, not a reference row
    assert GradAscentPlus.conformance.claim == "acc_forget_down"


def test_options_are_validated_with_one_line_errors():
    with pytest.raises(uk.ConfigError, match="Bad value -1 for option 'ascent_weight' of method 'grad_ascent_plus'"):
        GradAscentPlus.parse_options({"ascent_weight": -1})
    with pytest.raises(uk.ConfigError, match="Unknown option 'lamda' for method 'grad_ascent_plus'"):
        GradAscentPlus.parse_options({"lamda": 0.1})
    assert all(field.description for field in GradAscentPlus.Options.model_fields.values())


def test_per_setting_defaults_sit_under_user_options():
    vit = uk.Setting("cifar10", "vit", "instance", 10)
    opts = GradAscentPlus.parse_options({"lr": "0.5"}, defaults=GradAscentPlus.default_options(vit))
    assert (opts.batch_size, opts.epochs, opts.lr) == (32, 3, 0.5)
    cls_setting = uk.Setting("cifar10", "resnet", "class", 10)
    assert GradAscentPlus.parse_options({}, defaults=GradAscentPlus.default_options(cls_setting)).ascent_weight == 0.1
