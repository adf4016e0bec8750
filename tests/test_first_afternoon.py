"""A researcher's first afternoon from Python: ``uk.unlearn`` on a model they hold, a method of their own
written in the notebook, and the plugin-author kit's checks on the declarations ``unlearnkit show`` and
``-o`` read. Each test pins a mistake that used to end in a traceback, or a result that was silently wrong."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import BaseModel, Field

import unlearnkit as uk
from unlearnkit.testing import check_declarations, check_metric, check_scenario

FAST = {"epochs": 1}


def splits_of(bench, *names: str) -> dict:
    return {n: (bench.splits[n].x, bench.splits[n].y) for n in names}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"setting": "resnet"}, r"^setting must be a uk\.Setting\(dataset, model_family, scenario_rule, num_classes\)"),
        ({"augment": "flip"}, r"^augment must be a uk\.Augment\(crop_padding=\.\.\., flip=\.\.\.\), not a str"),
        ({"mean": 0.5}, r"^Bad mean 0\.5: expected a tuple of one number per image channel"),
        ({"std": (0.0,)}, r"^Bad std \(0\.0,\): expected numbers > 0"),
        ({"retrained": "ret.pt"}, r"^retrained must be a torch\.nn\.Module, not a str \('ret\.pt'\)"),
        ({"method": uk.Method}, r"^Plugin 'notebook' registered Method without a `name`"),
        ({"method": 3}, r"^method must be a method's name \(e\.g\. 'lotus'\) or a uk\.Method subclass, not a int"),
        ({"method": "retrain"}, r"^Method 'retrain' is the retrained reference row: pass the model as retrained="),
        ({"retrain_time_s": -1.0}, r"^Bad retrain_time_s -1\.0: expected seconds, a number > 0"),
        (
            {"metric_options": {"relearn_time": {"max_step": 3}}},
            r"^Unknown option 'max_step' for metric 'relearn_time'",
        ),
        ({"metric_options": {"relearn": {}}}, r"^Unknown metric 'relearn'\. Did you mean 'relearn_time'\?"),
        ({"metrics": ["acc_other"]}, r"^Metric 'acc_other' needs the sub-class labels .*; uk\.unlearn has none"),
    ],
)
def test_bad_arguments_are_one_line_not_a_traceback(bench, kwargs, message):
    """Each used to raise AttributeError, TypeError, NaN losses or RuntimeError deep inside a method."""
    kwargs = {"method": "finetune", "options": FAST, **kwargs}
    with pytest.raises(uk.UnlearnkitError, match=message):
        uk.unlearn(bench.original, **splits_of(bench, "forget", "retain"), **kwargs)


def test_a_model_that_is_no_module_is_one_line(bench):
    with pytest.raises(uk.ConfigError, match=r"^model must be a torch\.nn\.Module, not a str \('model\.pt'\)"):
        uk.unlearn("model.pt", **splits_of(bench, "forget", "retain"))


def test_splits_of_other_image_shapes_are_refused_before_any_training(bench):
    """Retain images of another size were resized and trained on silently; of other channels, a torch
    shape error came out of the method's first step."""
    x_r, y_r = bench.splits["retain"].x, bench.splits["retain"].y
    forget = (bench.splits["forget"].x, bench.splits["forget"].y)
    with pytest.raises(
        uk.ConfigError, match=r"^The retain split has images of shape \(1, 4, 4\) \(C, H, W\), the forget"
    ):
        uk.unlearn(bench.original, forget, (x_r[:, :, :4, :4], y_r), "finetune")
    with pytest.raises(uk.ConfigError, match=r"^The retain split has images of shape \(3, 8, 8\)"):
        uk.unlearn(bench.original, forget, (x_r.repeat(1, 3, 1, 1), y_r), "finetune")


def test_the_class_count_comes_from_the_model(bench):
    """Labels that leave out the last class used to set num_classes one short, and a PluginError about a
    "model plugin" came after the method had run; a num_classes the model does not give, the same."""
    x_f, y_f = bench.splits["forget"].x, bench.splits["forget"].y
    x_r, y_r = bench.splits["retain"].x, bench.splits["retain"].y
    keep_f, keep_r = y_f < 3, y_r < 3  # class 3 in no split: the tiny model still gives 4 logits
    result = uk.unlearn(
        bench.original, (x_f[keep_f], y_f[keep_f]), (x_r[keep_r], y_r[keep_r]), "finetune", options=FAST
    )
    assert 0 <= result.metrics["acc_forget"] <= 1
    with pytest.raises(uk.ConfigError, match=r"^The model gives 4 logits per image but num_classes is 6"):
        uk.unlearn(bench.original, **splits_of(bench, "forget", "retain"), method="finetune", num_classes=6)


def test_new_model_is_freshly_initialised_so_eu_k_resets_its_layers(bench):
    """ctx.new_model() returned a copy of the trained model, so EU-k "re-initialised" the last layers to
    the weights they had: it was CF-k. With lr ~0 the reset head is what EU-k returns."""
    tiny = {"k": 1, "epochs": 1, "lr": 1e-12}
    given = splits_of(bench, "forget", "retain")
    eu = uk.unlearn(bench.original, method="eu_k", options=tiny, metrics=["acc_forget"], **given)
    head_before, head_after = list(bench.original.parameters())[-2], list(eu.model.parameters())[-2]
    assert not torch.allclose(head_before, head_after)  # the head starts afresh
    assert torch.equal(list(bench.original.parameters())[0], list(eu.model.parameters())[0])  # frozen below it
    built = []
    own = uk.unlearn(
        bench.original,
        method="eu_k",
        options=tiny,
        metrics=["acc_forget"],
        new_model=lambda: built.append(1) or copy.deepcopy(bench.original),
        **given,
    )
    assert built and own.model is not bench.original


class Untrained(uk.Method):
    """A notebook's own method: halves the head's weights (reads D_f only to look at it)."""

    name = "halve_head"
    summary = "Halve the last layer's weights (test method)."
    algorithm_version = 1
    access = uk.DataAccess.FORGET

    def unlearn(self, model, data, ctx):
        data.forget  # noqa: B018 - declared and read
        with torch.no_grad():
            list(model.parameters())[-2].mul_(0.5)
        return uk.UnlearnOutcome(model, info={"halve_head_factor": 0.5})


def test_a_method_class_of_the_notebook_runs_without_a_package(bench):
    """uk.unlearn took registered names only; a class crashed inside the 'did you mean' of the registry."""
    result = uk.unlearn(
        bench.original, method=Untrained, metrics=["acc_forget"], **splits_of(bench, "forget", "retain")
    )
    assert result.info == {"halve_head_factor": 0.5} and set(result.metrics) == {"acc_forget"}


def test_what_unlearn_returns_is_checked_as_a_run_checks_it(bench):
    class ForgetsToReturn(Untrained):
        name = "forgets_to_return"

        def unlearn(self, model, data, ctx):
            super().unlearn(model, data, ctx)

    class Explodes(Untrained):
        name = "explodes"

        def unlearn(self, model, data, ctx):
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))
            return model

    given = splits_of(bench, "forget", "retain")
    with pytest.raises(uk.UnlearnkitError, match=r"^Method 'forgets_to_return' returned None from unlearn: return"):
        uk.unlearn(bench.original, method=ForgetsToReturn, **given)
    with pytest.raises(uk.DivergenceError, match=r"^Method 'explodes' produced non-finite weights"):
        uk.unlearn(bench.original, method=Explodes, **given)


def test_undefined_metrics_are_left_out_and_rte_needs_the_retrain_time(bench):
    """rte came back as NaN (no retrain time); now it is left out, as a run leaves NaN out of the store,
    and retrain_time_s enables it."""
    given = splits_of(bench, "forget", "retain", "unseen", "test")
    plain = uk.unlearn(bench.original, method="finetune", options=FAST, retrained=bench.retrained, **given)
    assert "jsd" in plain.metrics and "rte" not in plain.metrics
    timed = uk.unlearn(
        bench.original, method="finetune", options=FAST, retrained=bench.retrained, retrain_time_s=4.0, **given
    )
    assert timed.metrics["rte"] == pytest.approx(timed.metrics["time_s"] / 4.0)


def test_metric_options_reach_the_metric(bench):
    """A metric's options (-o relearn_time.max_steps=1 on the command line) had no way in from Python."""
    given = splits_of(bench, "forget", "retain")
    ascent = {"epochs": 1, "lr": 0.02, "batch_size": 8}  # pushes D_f away: the probe needs 5 steps to relearn it
    free, capped = (
        uk.unlearn(
            bench.original, method="ga", options=ascent, metrics=["relearn_time"], metric_options=given_options, **given
        ).metrics["relearn_time"]
        for given_options in (None, {"relearn_time": {"max_steps": 2}})
    )
    assert free > 2 and capped == 2  # a value equal to max_steps: not back within the budget
    with pytest.raises(uk.ConfigError, match=r"^metric_options names relearn_time, which metrics= leaves out"):
        uk.unlearn(bench.original, metrics=["acc_forget"], metric_options={"relearn_time": {}}, **given)


# ------------------------------------------------------------------------------ the author kit
class NoDescription(uk.Options):
    lr: float = 0.1


class PlainModel(BaseModel):
    lr: float = Field(0.1, description="A bare pydantic model: no finiteness check, no unknown-key check.")


def metric(name: str = "fine_metric", options: type = uk.Options) -> type[uk.Metric]:
    class M(uk.Metric):
        """Zero. Direction: lower."""

        summary = "Always zero (test metric)."
        algorithm_version = 1
        direction = "lower"
        Options = options

        def compute(self, ev):
            return 0.0

    M.name = name
    return M


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (metric("a,b"), r"name 'a,b' holds ',', which the command line reads as a delimiter"),
        (metric("my metric"), r"name 'my metric' holds a space"),
        (metric("ns.metric"), r"name 'ns\.metric' holds '\.'"),
        (metric("-x"), r"name '-x' starts with '-'"),
        (metric(options=NoDescription), r"fine_metric: option 'lr' has no description"),
        (metric(options=PlainModel), r"fine_metric: Options is .*PlainModel.*, not a subclass of uk\.Options"),
    ],
)
def test_the_kit_names_a_bad_declaration(cls, message):
    """A name with a delimiter registered and listed, then could not be selected (`--method a,b` is two
    names); a bare pydantic Options skipped every option check; a dataclass one crashed `unlearnkit show`."""
    with pytest.raises(AssertionError, match=message):
        check_declarations(cls)
    with pytest.raises(AssertionError, match=message):
        check_metric(cls)


def test_a_well_declared_metric_with_options_passes(bench):
    class TopOptions(uk.Options):
        k: int = Field(2, ge=1, description="How many top classes count as a hit.")

    value = check_metric(metric("forget_top2", TopOptions), bench)
    assert value == 0.0


def test_the_kit_names_a_scenario_without_a_syntax():
    class NoSyntax(uk.Scenario):
        name, summary, example = "first_n", "The first N (test scenario).", "3"

        def parse(self, params):
            return params

        def draw(self, data, seed):
            return uk.ForgetSet(data.pool[: int(self.params)])

    with pytest.raises(AssertionError, match=r"NoSyntax needs a `syntax`"):
        check_scenario(NoSyntax)
    NoSyntax.syntax = "first_n:<N>"
    assert len(check_scenario(NoSyntax)) > 0
