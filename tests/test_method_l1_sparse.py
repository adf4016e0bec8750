"""ℓ1-sparse (plugins/methods/l1_sparse.py) beyond the conformance contract: the penalty weight's
schedule (hand-computed, exactly 0 on the last step), weights sparser than plain fine-tuning's
with the same budget and seed, and the control: alpha = 0 is finetune, bit for bit."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.testing import run_method
from unlearnkit_plugins.methods.finetune import Finetune
from unlearnkit_plugins.methods.l1_sparse import L1Sparse, l1_norm, penalty_weights


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def test_per_step_schedule_falls_linearly_to_exactly_zero_on_the_last_step():
    o = L1Sparse.parse_options({"epochs": 2, "alpha": 0.3})
    assert penalty_weights(o, 3) == pytest.approx([0.3, 0.24, 0.18, 0.12, 0.06, 0.0], abs=1e-15)
    assert penalty_weights(o, 3)[-1] == 0.0
    assert penalty_weights(L1Sparse.parse_options({"epochs": 1, "alpha": 0.3}), 1) == [0.3]


def test_per_epoch_schedule_is_the_reference_rule():
    """alpha * (1 - e / (E - k)) for e < E - k, then 0 (Unlearn-Sparse, FT_iter)."""
    o = L1Sparse.parse_options({"epochs": 4, "alpha": 0.4, "schedule": "per_epoch"})
    assert penalty_weights(o, 2) == pytest.approx([0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1])
    o = L1Sparse.parse_options({"epochs": 4, "alpha": 0.4, "schedule": "per_epoch", "no_l1_epochs": 2})
    assert penalty_weights(o, 1) == pytest.approx([0.4, 0.2, 0.0, 0.0])


def test_the_logged_weight_reaches_zero_and_the_weights_end_sparser_than_finetunes(tiny):
    shared = {"epochs": 20, "batch_size": 32, "lr": 0.05}
    ctx = tiny.context("l1_sparse")
    opts = L1Sparse.parse_options({**shared, "alpha": 1e-3})
    import copy

    torch.manual_seed(tiny.seed)
    out = L1Sparse(opts).unlearn(copy.deepcopy(tiny.original).train(), tiny.data(L1Sparse), ctx)
    alphas = [v for name, v, _ in ctx.series if name == "l1_sparse_alpha"]
    assert len(alphas) == 20 and alphas[-1] == 0.0 and alphas == sorted(alphas, reverse=True)
    plain, _ = run_method(Finetune, tiny, shared)
    sparse_params = [p for p in out.model.parameters()]
    assert float(l1_norm(sparse_params).detach()) < 0.9 * float(l1_norm(list(plain.parameters())).detach())
    assert out.info["l1_sparse_l1"] == pytest.approx(float(l1_norm(sparse_params).detach()), rel=1e-6)

    def near_zero(params) -> float:
        flat = torch.cat([p.detach().flatten() for p in params])
        return float((flat.abs() < 1e-2).float().mean())

    assert near_zero(sparse_params) > near_zero(plain.parameters())


def test_control_alpha_zero_is_finetune_bit_for_bit(tiny):
    shared = {"epochs": 3, "batch_size": 32, "lr": 0.05}
    a, _ = run_method(L1Sparse, tiny, {**shared, "alpha": 0.0})
    b, _ = run_method(Finetune, tiny, shared)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
