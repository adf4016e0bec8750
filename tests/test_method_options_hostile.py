"""Hostile option values for the built-in methods, as a user types them (``-o METHOD.key=value``, a
recipe's ``[options.METHOD]``): a value no step can take is refused in one line before anything
trains, and a value that runs either finishes or fails its own row in one line, so one method's bad
value never stops ``--method all`` with a traceback.

Covered here: learning rates and weight decays past what a float32 optimiser step converts (SGD's
lr, SGD's and Adam's weight decay, Adam's first step 10 lr), which raised a RuntimeError from inside
torch; LoTUS's temperature exp(alpha * gap) past the largest float, which raised
OverflowError; SCRUB's T^2 past the largest float, likewise.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from unlearnkit.errors import ConfigError, UnlearnkitError

FIXTURES = str(Path(__file__).parent / "fixtures" / "plugins")
RUN = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", FIXTURES, "--seeds", "1"]
RUN += ["--device", "cpu", "--epochs", "2"]

# (method, option, a value refused): SGD's lr and SGD's or Adam's weight decay past float32's range,
# an Adam-family lr past a tenth of it (its first step is lr / (1 - 0.9))
PAST_FLOAT32 = [
    ("finetune", "lr", 1e39),
    ("finetune", "weight_decay", 1e39),
    ("neggrad_plus", "lr", 1e39),
    ("random_label", "weight_decay", 1e39),
    ("salun", "lr", 1e39),
    ("l1_sparse", "lr", 1e39),
    ("cf_k", "lr", 1e39),
    ("eu_k", "weight_decay", 1e39),
    ("ga", "lr", 1e39),
    ("ga", "weight_decay", 1e39),
    ("boundary_shrink", "lr", 1e39),
    ("boundary_expand", "weight_decay", 1e39),
    ("unsir", "weight_decay", 1e39),
    ("unsir", "noise_lr", 1e38),
    ("amnesiac", "lr", 1e38),
    ("amnesiac", "weight_decay", 1e39),
    ("bad_teacher", "lr", 1e38),
    ("bad_teacher", "weight_decay", 1e39),
    ("lotus", "lr", 1e38),
    ("scrub", "lr", 1e38),
    ("scrub", "weight_decay", 1e39),
    ("sfron", "lr", 1e38),
    ("sfron", "weight_decay", 1e39),
]


def method(name: str):
    from unlearnkit.discovery.host import registries

    return registries().methods.get(name).cls


def one_line_error(err: str) -> str:
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def unlearn_runs() -> dict[str, str]:
    """Every unlearning run the isolated store holds: method -> status."""
    from unlearnkit.store.mlflow_store import Store

    return {r.tag("method"): r.status for r in Store().search({"run_type": "unlearn"})}


# ------------------------------------------------------------------------- rates past float32
@pytest.mark.parametrize(("name", "key", "value"), PAST_FLOAT32, ids=lambda v: str(v))
def test_a_rate_no_float32_step_can_take_is_refused_with_its_bound(name, key, value):
    cls = method(name)
    with pytest.raises(ConfigError) as err:
        cls.parse_options({key: str(value)})
    message = str(err.value)
    assert f"for option '{key}' of method '{name}'" in message and "\n" not in message
    assert "Allowed: a finite number" in message and ("<= 3.4e+37" in message or "<= 3.4e+38" in message), message


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("finetune", {"lr": 3.4e38}),
        ("amnesiac", {"lr": 3.4e37}),
        ("scrub", {"lr": 3.4e37, "optimizer": "sgd"}),
        ("unsir", {"noise_lr": 3.4e37}),
        ("salun", {"weight_decay": 3.4e38}),
    ],
    ids=lambda v: str(v),
)
def test_the_largest_rate_allowed_diverges_in_one_line_not_a_torch_traceback(tiny, name, options):
    from unlearnkit.testing import run_method

    cls = method(name)
    with pytest.raises(UnlearnkitError, match="diverged"):
        run_method(cls, tiny, {**cls.conformance.options, **options})


def test_an_adam_lr_past_float32_is_one_line_and_leaves_nothing_in_the_store(cli):
    code, _, err = cli(*RUN, "--method", "amnesiac,finetune", "-o", "amnesiac.lr=1e38")
    assert code == 2, err
    line = one_line_error(err)
    assert "Bad value '1e38' for option 'lr' of method 'amnesiac'" in line and "<= 3.4e+37" in line, line
    assert unlearn_runs() == {}  # refused before anything trained: no run half-written


# ------------------------------------------------------------------------------------- LoTUS
def test_lotus_temperature_past_the_largest_float_is_infinite_not_an_overflow():
    from unlearnkit_plugins.methods.lotus import temperature

    assert temperature(1.0, 0.0, 1e6) == math.inf  # exp(1e6): OverflowError before
    assert temperature(1.0, 0.0, 1e308) == math.inf  # exp(inf): already inf
    assert temperature(0.5, 0.0, 8.0) == math.exp(4.0)  # a finite tau is the same number as before
    assert temperature(0.0, 0.5, 1e6) is None


def test_lotus_with_a_huge_alpha_runs_on_uniform_targets(tiny):
    from unlearnkit.testing import run_method

    lotus = method("lotus")
    model, _ = run_method(lotus, tiny, {**lotus.conformance.options, "alpha": 1e6})
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_lotus_huge_alpha_fails_nothing_and_the_next_method_still_runs(cli):
    code, _, err = cli(*RUN, "--method", "lotus,finetune", "-o", "lotus.alpha=1e6")
    assert code == 0 and "Traceback" not in err, err
    assert unlearn_runs().keys() >= {"lotus", "finetune"}


# ------------------------------------------------------------------------------------- SCRUB
def test_scrub_temperature_whose_square_overflows_is_refused():
    scrub = method("scrub")
    with pytest.raises(ConfigError, match=r"option 'temperature' of method 'scrub'.*<= 1e\+154"):
        scrub.parse_options({"temperature": "1e160"})
    assert scrub.parse_options({"temperature": "1e154"}).temperature == 1e154  # T^2 = 1e308 is a float


def test_scrub_largest_temperature_allowed_diverges_in_one_line(tiny):
    from unlearnkit.testing import run_method

    scrub = method("scrub")
    with pytest.raises(UnlearnkitError, match="diverged"):
        run_method(scrub, tiny, {**scrub.conformance.options, "temperature": 1e154})


@pytest.fixture(scope="module")
def tiny(tiny_bench_one_thread):
    return tiny_bench_one_thread


def test_allowed_values_of_a_type_beside_named_choices_say_both():
    """``int | Literal["all"]`` (imagenet's train_per_class) read "one of <class 'int'>, all"."""
    from typing import Literal

    from pydantic import BaseModel, Field

    from unlearnkit.api.contracts import allowed_values

    class Options(BaseModel):
        per_class: int | Literal["all"] = Field(1, ge=1)
        kept: int | Literal["all", "half"] | None = None
        target: Literal["gumbel", "softmax"] = "gumbel"

    said = {name: allowed_values(f) for name, f in Options.model_fields.items()}
    assert said == {
        "per_class": "a 64-bit integer >= 1, or all",
        "kept": "a 64-bit integer, or one of all, half (or unset)",
        "target": "one of gumbel, softmax",
    }
    imagenet = uk_dataset_options("imagenet")
    assert allowed_values(imagenet.model_fields["train_per_class"]) == "a 64-bit integer, or all"


def uk_dataset_options(name: str):
    from unlearnkit.discovery.host import get_host

    return get_host().registries.datasets.get(name).cls.Options
