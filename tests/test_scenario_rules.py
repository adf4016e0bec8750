"""A method defined only for some forget rules (``Method.scenario_rules``) is refused in one line for
any other rule, before anything is computed, and ``--method all`` leaves it out instead."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from unlearnkit import ConfigError, Conformance, DataAccess, Method, UnlearnContext, UnlearnData, hookimpl
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.testing import check_method


class ClassOnly(Method):
    name = "class_only_probe"
    summary = "Test method defined for class forgetting alone."
    access = DataAccess.FORGET
    scenario_rules = frozenset({"class"})
    scenario_reason = "it needs one whole class to move"
    conformance = Conformance(claim="none")

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> nn.Module:
        assert ctx.forget_class is not None  # only ever called on a class forget set
        return model


class Probe:
    @hookimpl
    def register_methods(self, register: Any) -> None:
        register(ClassOnly)


@pytest.fixture
def regs(host):
    probe = Probe()
    host.register(probe)
    yield host.registries
    host.unregister(probe)


def request(methods: list[str], forget: str) -> RunRequest:
    return RunRequest(dataset="tiny", model="tiny_cnn", methods=methods, forget=forget, seeds="0")


def test_naming_it_with_another_rule_is_refused_in_one_line_naming_why(regs):
    with pytest.raises(ConfigError) as err:
        validate(request(["class_only_probe"], "0.1"), regs)
    message = str(err.value)
    assert "\n" not in message
    assert "'class_only_probe'" in message and "class" in message and "'instance'" in message
    assert "it needs one whole class to move" in message


def test_all_leaves_it_out_for_other_rules_and_keeps_it_for_its_own(regs):
    instance = [m.name for m in validate(request(["all"], "0.1"), regs).methods]
    by_class = [m.name for m in validate(request(["all"], "class:0"), regs).methods]
    assert "class_only_probe" not in instance
    assert "class_only_probe" in by_class
    class_only = {n for n in regs.methods.names() if not regs.methods.get(n).cls.accepts_scenario("instance")}
    assert set(by_class) - set(instance) == class_only
    assert [m.name for m in validate(request(["class_only_probe"], "class:0"), regs).methods][-1] == "class_only_probe"


def test_conformance_uses_a_class_forget_set_for_class_only_methods():
    seen: list[int | None] = []

    class Recorder(ClassOnly):
        name = "class_only_recorder"

        def unlearn(self, model, data, ctx):
            seen.append(ctx.forget_class)
            return model

    check_method(Recorder)
    assert seen and all(c == 0 for c in seen)
