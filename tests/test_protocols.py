"""The two evaluation protocols (docs/protocols.md): ``clean`` evaluates every model in eval mode on
clean images; ``paper`` reproduces the official LoTUS evaluation, whose batch-1 membership pass
rewrites the BatchNorm statistics of a model returned in train mode before anything else."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.api.evaluation import Evaluation
from unlearnkit.api.protocols import CLEAN, MEMBERSHIP_SPLITS, PAPER, get_protocol, rounded
from unlearnkit.errors import ConfigError


def bn_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def evaluation(bench, model: torch.nn.Module, protocol) -> Evaluation:
    ctx = bench.context("probe")
    ctx.protocol = protocol
    models = {"unlearned": model, "original": bench.original, "retrained": bench.retrained}
    return Evaluation(models, bench.splits, ctx)


def test_paper_membership_pass_moves_batchnorm_exactly_as_a_batch1_train_mode_loop(bench):
    returned = copy.deepcopy(bench.original).train()  # as Finetune & co. return it in the official code
    by_hand = copy.deepcopy(returned)
    ev = evaluation(bench, returned, PAPER)
    ev.prepare()
    with torch.no_grad():  # the official collect_prob: one image at a time, no eval(), this order
        for split in MEMBERSHIP_SPLITS:
            data = bench.splits[split]
            x_all = data.pre(data.x)  # the tiny data has no augmentation: clean and augmented agree
            for i in range(len(data)):
                by_hand(x_all[i : i + 1])
    assert not returned.training  # everything after the membership pass sees eval mode
    moved, expected, before = bn_state(returned), bn_state(by_hand), bn_state(bench.original)
    assert moved.keys() == expected.keys() and moved
    for key in moved:
        torch.testing.assert_close(moved[key], expected[key], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(moved[k], before[k]) for k in moved if "running_mean" in k)
    assert int(moved[next(k for k in moved if "num_batches" in k)]) > 0


def test_paper_protocol_leaves_an_eval_mode_model_untouched(bench):
    returned = copy.deepcopy(bench.original).eval()  # as LoTUS and SCRUB return it
    before = {k: v.clone() for k, v in returned.state_dict().items()}
    ev = evaluation(bench, returned, PAPER)
    ev.prepare()
    ev.logits("unlearned", "forget")
    after = returned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_clean_protocol_never_runs_the_batch1_pass(bench):
    returned = copy.deepcopy(bench.original).train()
    before = bn_state(returned)
    ev = evaluation(bench, returned, CLEAN)
    ev.prepare()
    ev.logits("unlearned", "forget", "membership")  # the same outputs as the eval pass under clean
    assert all(torch.equal(before[k], v) for k, v in bn_state(returned).items())
    assert ev.logits("unlearned", "forget", "membership") is ev.logits("unlearned", "forget")


def test_paper_protocol_augments_forget_and_retain_with_the_same_draws_for_every_model(bench):
    from dataclasses import replace

    from unlearnkit.api.types import Augment

    aug = {k: replace(s, pre=replace(s.pre, augment=Augment(crop_padding=2))) for k, s in bench.splits.items()}
    ctx = bench.context("probe")
    ctx.protocol = PAPER
    model = copy.deepcopy(bench.original).eval()
    ev = Evaluation({"unlearned": model, "original": copy.deepcopy(model), "retrained": bench.retrained}, aug, ctx)
    ev.prepare()
    same = torch.equal(ev.logits("unlearned", "forget"), ev.logits("original", "forget"))
    assert same  # the same model, the same crops: identical outputs
    ctx_clean = bench.context("probe")
    clean = Evaluation({"unlearned": model}, aug, ctx_clean)
    assert not torch.equal(clean.logits("unlearned", "forget"), ev.logits("unlearned", "forget"))  # cropped
    assert torch.equal(clean.logits("unlearned", "test"), ev.logits("unlearned", "test"))  # test stays clean


def test_paper_membership_pass_of_an_eval_mode_model_on_a_clean_split_is_its_eval_pass(bench):
    """The same forward either way, so it is taken once: outputs identical to a separate pass, the
    images counted once; augmented splits keep their own draws, a train-mode model its batch-1 pass."""
    from dataclasses import replace

    from unlearnkit.api.types import Augment

    aug = {k: replace(s, pre=replace(s.pre, augment=Augment(crop_padding=2))) for k, s in bench.splits.items()}
    ctx = bench.context("probe")
    ctx.protocol = PAPER
    model = copy.deepcopy(bench.original).eval()
    ev = Evaluation({"unlearned": model}, aug, ctx)
    ev.prepare()
    n = {s: len(aug[s]) for s in MEMBERSHIP_SPLITS}
    assert ev.images_forwarded() == sum(n.values())  # the membership passes
    for split in ("test", "unseen"):
        assert ev.logits("unlearned", split) is ev.logits("unlearned", split, "membership")
        separate = Evaluation({"unlearned": copy.deepcopy(model)}, aug, ctx)
        assert torch.equal(separate._forward(model, aug[split], "membership"), ev.logits("unlearned", split))
    for split in ("forget", "retain"):  # another draw of crops: a pass of its own
        assert not torch.equal(ev.logits("unlearned", split), ev.logits("unlearned", split, "membership"))
    assert ev.images_forwarded() == sum(n.values()) + n["forget"] + n["retain"]

    returned = copy.deepcopy(bench.original).train()
    trained = evaluation(bench, returned, PAPER)
    trained.prepare()  # batch-1 passes, then eval mode
    assert not returned.training
    membership = trained.logits("unlearned", "test", "membership")
    assert membership is not trained.logits("unlearned", "test")  # the pass taken in train mode is kept


def test_rounding_and_protocol_names():
    assert rounded(0.6666, PAPER) == 0.67 and rounded(0.6666, CLEAN) == 0.6666
    assert get_protocol("paper") is PAPER
    with pytest.raises(ConfigError, match="Unknown protocol 'papr'. Valid protocols: clean, paper."):
        get_protocol("papr")


def test_a_model_unlearned_under_one_protocol_is_evaluated_under_the_other_without_rerunning(host):
    """The unlearned model does not depend on the protocol (except for methods that read it, like
    LoTUS's check): the paper-protocol run loads the clean run's model, in the mode it was returned."""
    from unlearnkit.api.progress import RecordingReporter
    from unlearnkit.engine.config import RunRequest, validate
    from unlearnkit.engine.runner import Runner
    from unlearnkit.store.mlflow_store import Store

    def run(protocol: str) -> RecordingReporter:
        reporter = RecordingReporter()
        request = RunRequest(
            dataset="tiny", model="tiny_cnn", methods=["finetune", "lotus"], epochs=3, seeds=[1], device="cpu",
            protocol=protocol, options={"finetune.epochs": "2", "lotus.epochs": "2"},
        )  # fmt: skip
        Runner(validate(request, host.registries), Store(), reporter).run()
        return reporter

    run("clean")
    reporter = run("paper")
    assert any("finetune (seed 1): unlearned model reused" in e for e in reporter.events)
    assert not any("lotus (seed 1): unlearned model reused" in e for e in reporter.events)
    runs = {(r.tag("method"), r.tag("protocol")): r for r in Store().search({"run_type": "unlearn"})}
    clean, paper = runs[("finetune", "clean")], runs[("finetune", "paper")]
    assert paper.tag("unlearned_in") == clean.run_id and paper.tag("returned_mode") == "train"
    assert paper.metrics["time_s"] == clean.metrics["time_s"]  # the unlearning's own cost, not a reload's
    assert paper.tag("config_hash") != clean.tag("config_hash")  # two runs, two rows on two boards


def forward_sizes(model: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    sizes: list[int] = []
    return sizes, model.register_forward_hook(lambda _m, args, _out: sizes.append(args[0].shape[0]))


def test_an_eval_mode_cpu_pass_forwards_in_chunks_with_the_whole_batch_outputs(bench):
    from unlearnkit.api.evaluation import CPU_FORWARD_CHUNK, predict_logits

    model, data = copy.deepcopy(bench.original).eval(), bench.splits["retain"]
    assert len(data) > CPU_FORWARD_CHUNK  # else nothing would be cut up
    with torch.no_grad():
        whole = model(data.pre(data.x)).float()
    sizes, hook = forward_sizes(model)
    chunked = predict_logits(model, data)
    hook.remove()
    assert max(sizes) == CPU_FORWARD_CHUNK and sum(sizes) == len(data)
    assert torch.equal(chunked, whole)


def test_a_train_mode_pass_kept_in_its_mode_forwards_the_whole_batch(bench):
    """BatchNorm in train mode normalises by the batch it is given: cutting it up would move the outputs."""
    from unlearnkit.api.evaluation import predict_logits

    model, data = copy.deepcopy(bench.original).train(), bench.splits["retain"]
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        whole = by_hand(data.pre(data.x)).float()
    sizes, hook = forward_sizes(model)
    kept = predict_logits(model, data, keep_mode=True)
    hook.remove()
    assert sizes == [len(data)]
    assert torch.equal(kept, whole)
    one_layer = copy.deepcopy(bench.original).eval()
    next(m for m in one_layer.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)).train()
    sizes, hook = forward_sizes(one_layer)
    predict_logits(one_layer, data, keep_mode=True)
    hook.remove()
    assert sizes == [len(data)]  # one layer in train mode is enough to keep the batch whole


def test_a_batchnorm_without_running_statistics_keeps_the_batch_whole_in_eval_mode(bench):
    """Such a layer normalises by the batch even in eval mode: cut up, its outputs would move."""
    from unlearnkit.api.evaluation import predict_logits

    data = bench.splits["retain"]
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(data.x[0].numel(), 8), torch.nn.BatchNorm1d(8, track_running_stats=False)
    ).eval()
    with torch.no_grad():
        whole = model(data.pre(data.x)).float()
    sizes, hook = forward_sizes(model)
    out = predict_logits(model, data)
    hook.remove()
    assert sizes == [len(data)] and torch.equal(out, whole)
