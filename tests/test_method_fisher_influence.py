"""Fisher forgetting and influence unlearning (plugins/methods/fisher.py, influence.py) beyond the
conformance contract: each formula against a hand or dense computation, the planted case where the
retain set does not constrain a weight, the controls (alpha = 0 leaves every weight bit-identical)
and which data each reads."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.data import Augment, Preprocess, Split
from unlearnkit.api.evaluation import predict_logits
from unlearnkit.testing import run_method
from unlearnkit_plugins.methods.fisher import Fisher, class_weighted_fisher, diagonal_fisher, golatkar_std, noise_std
from unlearnkit_plugins.methods.influence import (
    Influence,
    mean_gradient,
    unlearn_sparse_recursion,
    woodbury_inverse_product,
)


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def flat_split(name: str, x: torch.Tensor, y: torch.Tensor) -> Split:
    """A split of float feature vectors (as 1 x 1 x d images, taken as they are)."""
    pre = Preprocess.create((0.0,), (1.0,), (1, x.shape[1]), Augment(), torch.device("cpu"))
    return Split(name, x.view(len(x), 1, 1, -1), y, pre)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------------------------- Fisher
def test_noise_std_is_sqrt_alpha_over_fisher_capped():
    fisher = torch.tensor([4.0, 0.0, 100.0, 0.25])
    std = noise_std(fisher, alpha=1.0, cap=0.6)
    torch.testing.assert_close(std, torch.tensor([0.5, 0.6, 0.1, 0.6]))
    torch.testing.assert_close(noise_std(fisher, 1.0, 0.6, scale=10.0), torch.tensor([5.0, 6.0, 1.0, 6.0]))
    assert torch.equal(noise_std(fisher, 0.0, 0.6), torch.zeros(4))


def test_diagonal_fisher_is_the_mean_squared_per_sample_log_likelihood_gradient(tiny):
    """On a linear softmax model, d(-log p_y)/dW = (p - e_y) x^T in closed form."""
    torch.manual_seed(0)
    split = tiny.splits["retain"]
    model = nn.Sequential(nn.Flatten(), nn.Linear(split.x[0].numel(), 10))
    ctx = tiny.context("fisher")
    got = diagonal_fisher(model, split, ctx, chunk=7)
    x = torch.cat([xb for xb, _ in split.batches(64)]).flatten(1)
    y = torch.cat([yb for _, yb in split.batches(64)])
    with torch.no_grad():
        r = F.softmax(model(x), 1) - F.one_hot(y, 10).float()
    expected_w = (r[:, :, None] * x[:, None, :]).square().mean(0)
    expected_b = r.square().mean(0)
    torch.testing.assert_close(got, torch.cat([expected_w.flatten(), expected_b]), rtol=1e-4, atol=1e-7)


def test_a_weight_the_retain_set_never_moves_gets_the_capped_noise(tiny):
    """Planted: an input feature that is zero on every retain image has zero Fisher in its weight
    column, so it gets the cap; the columns the retain set constrains get far less."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(40, 4)
    x[:, 2] = 0.0
    split = flat_split("retain", x, torch.randint(0, 3, (40,)))
    fisher = diagonal_fisher(model, split, tiny.context("fisher"))
    std = noise_std(fisher, alpha=1e-4, cap=0.5)[:12].view(3, 4)
    assert torch.all(std[:, 2] == 0.5)
    assert float(std[:, [0, 1, 3]].max()) < 0.1


def test_fisher_alpha_zero_is_bit_identical_and_the_default_is_seeded(tiny):
    for variant in ("fisher_new", "fisher"):
        off, data = run_method(Fisher, tiny, {"alpha": 0.0, "variant": variant})
        assert same_weights(off, tiny.original)
        assert data.touched == {"retain"}
    a, _ = run_method(Fisher, tiny)
    b, _ = run_method(Fisher, tiny)
    assert same_weights(a, b) and not same_weights(a, tiny.original)


def test_fisher_defaults_are_unlearn_sparse():
    o = Fisher.parse_options({})
    assert (o.variant, o.alpha, o.std_cap, o.head_scale, o.samples, o.batch_size) == (
        "fisher_new",
        0.2,
        1e-3,
        10.0,
        None,
        32,
    )


def test_golatkar_variance_is_capped_averaged_per_unit_and_scaled_on_head_and_1d():
    f = torch.tensor([[1.0, 0.0, 4.0], [0.5, 0.25, 1e-9]])  # rows: output units
    # not the head (first dimension 2 != 3 classes): var = alpha * min(1/F, 1e3), mean over dim 1
    body = golatkar_std(f.flatten(), torch.Size([2, 3]), alpha=0.5, num_classes=3, head_scale=10.0)
    rows = torch.tensor([(1 + 1e3 + 0.25) / 3, (2 + 4 + 1e3) / 3]) * 0.5
    torch.testing.assert_close(body, rows.sqrt()[:, None].expand(2, 3), rtol=1e-5, atol=0)
    # the head (first dimension = 2 classes): cap 1e2 and times head_scale
    head = golatkar_std(f.flatten(), torch.Size([2, 3]), alpha=0.5, num_classes=2, head_scale=10.0)
    rows = torch.tensor([(1 + 1e2 + 0.25) / 3, (2 + 4 + 1e2) / 3]) * 0.5 * 10
    torch.testing.assert_close(head, rows.sqrt()[:, None].expand(2, 3), rtol=1e-5, atol=0)
    # a 1-d tensor (bias, BatchNorm): per element, times head_scale
    bias = golatkar_std(torch.tensor([2.0, 0.0]), torch.Size([2]), alpha=0.5, num_classes=3, head_scale=10.0)
    torch.testing.assert_close(bias, torch.tensor([0.25 * 10, 1e3 * 0.5 * 10]).sqrt(), rtol=1e-5, atol=0)


def test_class_weighted_fisher_is_the_probability_weighted_batch_gradient_square(tiny):
    """On a linear softmax model the batch's mean-CE gradient towards class c is mean_i (p_i - e_c) x_i^T."""
    torch.manual_seed(0)
    x = torch.randn(10, 4)
    y = torch.randint(0, 3, (10,))
    split = flat_split("retain", x, y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    got = class_weighted_fisher(model, split, tiny.context("fisher"), batch_size=4)  # batches 4, 4, 2
    expected = torch.zeros(3 * 4 + 3)
    with torch.no_grad():
        for xb in (x[:4], x[4:8], x[8:]):
            p = F.softmax(model(xb), 1)
            for c in range(3):
                r = p - F.one_hot(torch.full((len(xb),), c), 3).float()
                gw, gb = (r[:, :, None] * xb[:, None, :]).mean(0), r.mean(0)
                expected += p[:, c].mean() * len(xb) / 10 * torch.cat([gw.flatten(), gb]).square()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------------- influence
def test_woodbury_matches_a_dense_solve_and_the_sherman_morrison_recursion():
    torch.manual_seed(0)
    m, d, damping = 6, 15, 0.5
    g = torch.randn(m, d, dtype=torch.float64)
    v = torch.randn(d, dtype=torch.float64)
    h = damping * torch.eye(d, dtype=torch.float64) + g.T @ g / m
    dense = torch.linalg.solve(h, v)
    torch.testing.assert_close(woodbury_inverse_product(g, v, damping), dense, rtol=0, atol=1e-10)
    inv = torch.eye(d, dtype=torch.float64) / damping  # WoodFisher: H_n = H_{n-1} + g_n g_n^T / m
    for row in g:
        hg = inv @ row
        inv = inv - torch.outer(hg, hg) / (m + row @ hg)
    torch.testing.assert_close(inv @ v, dense, rtol=0, atol=1e-10)


def test_the_reference_recursion_is_as_written_and_is_not_the_inverse():
    g0, g1 = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 3.0, 1.0])
    v = torch.tensor([1.0, 1.0, 1.0])
    n = 2
    # by hand: o = g0; tmp = o.g1 = 2; k = v - (v.g1 / (n + tmp)) o = v - (4 / 4) g0
    torch.testing.assert_close(unlearn_sparse_recursion(iter([g0, g1]), v, n), torch.tensor([0.0, 1.0, -1.0]))
    g = torch.stack([g0, g1])
    assert not torch.allclose(unlearn_sparse_recursion(iter([g0, g1]), v, n), woodbury_inverse_product(g, v, 1.0))


def test_mean_gradient_weights_batches_by_size(tiny):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    split = flat_split("forget", x, y)
    got = mean_gradient(model, split, tiny.context("influence"), batch_size=4)  # batches of 4, 4, 2
    gw, gb = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    torch.testing.assert_close(got, torch.cat([gw.flatten(), gb]))


def test_influence_alpha_zero_is_bit_identical_and_a_step_raises_forget_loss_more_than_retain(tiny):
    off, _ = run_method(Influence, tiny, {"alpha": 0.0})
    assert same_weights(off, tiny.original)

    def ce(model: nn.Module, name: str) -> float:
        return float(F.cross_entropy(predict_logits(model, tiny.splits[name]), tiny.splits[name].y))

    model, data = run_method(Influence, tiny)
    assert data.touched == {"forget", "retain"}
    rise_forget = ce(model, "forget") - ce(tiny.original, "forget")
    rise_retain = ce(model, "retain") - ce(tiny.original, "retain")
    assert rise_forget > 0.3 and rise_forget > 3 * rise_retain, (rise_forget, rise_retain)


def test_influence_reference_recursion_runs_on_every_retain_batch(tiny):
    ctx = tiny.context("influence")
    opts = Influence.parse_options({"inverse": "unlearn_sparse", "retain_batch_size": 32})
    out = Influence(opts).unlearn(copy.deepcopy(tiny.original), tiny.data(Influence), ctx)
    assert out.info["influence_fisher_batches"] == -(-len(tiny.splits["retain"]) // 32)
