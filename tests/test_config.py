"""A request is resolved once into an immutable plan: the request stays as asked, the CLI options
and recipe keys are the request's fields, metric options reach the metric, and every run records
what its identity is a hash of (identity.json) and what the request resolved to (request.json)."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from pydantic import Field

from unlearnkit.api.contracts import Metric, Options
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.api.hookspecs import hookimpl
from unlearnkit.cli.run import run as run_command
from unlearnkit.engine.config import RunRequest, cli_names, recipe_keys, validate
from unlearnkit.engine.runner import Runner
from unlearnkit.errors import ConfigError, UnknownNameError
from unlearnkit.identity import config_hash
from unlearnkit.scale.sweep_recipes import RecipeFile
from unlearnkit.store.mlflow_store import Store


class ScaledForgetAccuracy(Metric):
    """acc_forget times a factor: a metric with an option, to see the option arrive."""

    name = "scaled_forget_acc"
    summary = "Forget accuracy times a factor (test metric)."
    algorithm_version = 1

    class Options(Options):
        factor: float = Field(1.0, gt=0)

    def compute(self, ev: Evaluation) -> float:
        predicted = ev.logits("unlearned", "forget").argmax(1).cpu()
        return self.options.factor * float((predicted == ev.labels("forget")).float().mean())


class ScaledPlugin:
    @hookimpl
    def register_metrics(self, register):
        register(ScaledForgetAccuracy)


@pytest.fixture
def scaled(host):
    plugin = ScaledPlugin()
    host.register(plugin)
    yield host
    host.unregister(plugin)


def tiny(**kw) -> RunRequest:
    base = dict(dataset="tiny", model="tiny_cnn", methods=["lotus"], epochs=2, seeds="1", device="cpu")
    return RunRequest(**{**base, **kw})


def test_validate_leaves_the_request_as_asked_and_resolves_it_once(host):
    asked = RunRequest(dataset="tiny", model=None, methods=[], seeds="5,3,5", device="cpu", epochs=1)
    before = dataclasses.replace(asked)
    plan = validate(asked, host.registries)
    assert asked == before and asked.model is None and asked.methods == []  # nothing written back
    with pytest.raises(dataclasses.FrozenInstanceError):
        asked.model = "x"  # type: ignore[misc]
    assert plan.seeds == (5, 3) and plan.model_name == host.registries.models.default().name
    assert plan.train_recipe.epochs == 1  # loaded once, --epochs applied
    assert plan.resolved()["seeds"] == [5, 3] and plan.resolved()["model"] == plan.model_name


def test_every_request_field_is_a_run_option_and_a_recipe_key():
    fields = {f.name for f in dataclasses.fields(RunRequest)}
    params = set(typing.get_type_hints(run_command, include_extras=True))
    mapped = cli_names()
    assert set(mapped.values()) == fields
    assert set(mapped) <= params, f"run has no option for {set(mapped) - params}"
    recipe = recipe_keys()
    assert set(recipe) <= set(RecipeFile.model_fields), (
        f"recipes have no key {set(recipe) - set(RecipeFile.model_fields)}"
    )
    assert fields - set(recipe.values()) == {"compile"}  # the one field recipes leave to the command line


def test_metric_options_reach_the_metric_and_enter_the_identity(scaled):
    plain = Runner(validate(tiny(), scaled.registries), Store()).run()
    doubled = Runner(validate(tiny(options={"scaled_forget_acc.factor": "2"}), scaled.registries), Store()).run()
    by = {(r.method, r.run_id): r for r in plain + doubled}
    lotus = [r for r in by.values() if r.method == "lotus"]
    assert len({r.run_id for r in lotus}) == 2  # another identity: both computed
    one, two = (r.metrics["scaled_forget_acc"] for r in lotus)
    assert two == pytest.approx(2 * one) and one == lotus[0].metrics["acc_forget"]


def test_options_for_a_metric_without_options_or_outside_the_run_are_refused(host):
    with pytest.raises(
        ConfigError, match=r"^Unknown option 'x' for metric 'mia'\. Valid options: \(this plugin has no options\)\.$"
    ):
        validate(tiny(options={"mia.x": "1"}), host.registries)
    with pytest.raises(
        ConfigError, match=r"^Option 'mia.x' names metric 'mia', which is not in this run \(acc_forget\)\.$"
    ):
        validate(tiny(options={"mia.x": "1"}, metrics=["acc_forget"]), host.registries)


def test_a_metric_list_splits_commas_as_a_method_list_does(host):
    """``--metric acc_forget,mia`` was one unknown metric 'acc_forget,mia'; it is now the two, the same
    plan (and identity) as two --metric flags, each metric once."""
    regs = host.registries
    flags = validate(tiny(metrics=["acc_forget", "mia"]), regs)
    commas = validate(tiny(metrics=["acc_forget, mia", "acc_forget"]), regs)
    assert [m.name for m in commas.metrics] == ["acc_forget", "mia"]
    assert commas.resolved() == flags.resolved()
    with pytest.raises(ConfigError, match=r"^Metric list ',' names no metric\. Valid metrics: acc_forget, "):
        validate(tiny(metrics=[","]), regs)
    with pytest.raises(UnknownNameError, match=r"^Unknown metric 'mai'\. Did you mean 'mia'\?"):
        validate(tiny(metrics=["acc_forget,mai"]), regs)


def test_every_run_records_its_identity_and_its_request(host, tmp_path):
    store = Store()
    results = Runner(validate(tiny(), host.registries), store).run()
    for result in results:
        record = store.get(result.run_id)
        identity = json.loads(store.download(result.run_id, "identity.json", tmp_path / result.method).read_text())
        assert config_hash(identity) == record.tag("config_hash")
        request = json.loads(store.download(result.run_id, "request.json", tmp_path / f"{result.method}-r").read_text())
        assert request["seeds"] == [1] and request["methods"] == ["original", "retrain", "lotus"]


def test_a_method_list_can_leave_methods_out_of_all(host):
    from unlearnkit.engine.config import expand_methods

    regs = host.registries
    every = expand_methods(["all"], regs)
    assert expand_methods(["all,-finetune", "-neggrad_plus"], regs) == [
        m for m in every if m not in ("finetune", "neggrad_plus")
    ]
    with pytest.raises(UnknownNameError, match=r"^Unknown method .fintune'. Did you mean 'finetune'\?"):
        expand_methods(["all,-fintune"], regs)
    with pytest.raises(ConfigError, match=r"^Method '-original' leaves out a reference row"):
        expand_methods(["all,-original"], regs)
    with pytest.raises(ConfigError, match=r"^Method list 'lotus,-finetune' leaves methods out of 'all' but has no"):
        expand_methods(["lotus,-finetune"], regs)
    with pytest.raises(ConfigError, match=r"^Method list ',' names no method. Valid methods: all, amnesiac, "):
        expand_methods([","], regs)


def test_run_leaves_out_what_the_method_list_drops(host):
    request = RunRequest(dataset="tiny", model="tiny_cnn", methods=["all,-lotus"], device="cpu")
    names = [m.name for m in validate(request, host.registries).methods]
    assert "lotus" not in names and "finetune" in names
