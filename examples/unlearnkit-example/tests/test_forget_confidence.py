"""forget_confidence is a well-formed metric and computes what its docstring says."""

from __future__ import annotations

import torch
import unlearnkit as uk
from unlearnkit.testing import check_metric

from unlearnkit_example import ForgetConfidence


def test_metric_contract_and_formula(tiny):
    value = check_metric(ForgetConfidence, tiny)  # finite float, deterministic, valid direction
    # check_metric evaluates an unchanged copy of the original: by hand, mean_i max_k softmax(z_i)_k
    logits = uk.predict_logits(tiny.original, tiny.splits["forget"]).double()
    assert abs(value - float(torch.softmax(logits, 1).max(1).values.mean())) < 1e-9
    assert 1 / tiny.num_classes <= value <= 1
