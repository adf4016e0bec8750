"""Third-party plugins that break their contract: each is one line naming the plugin and what it did
wrong; a method's breach fails its own row while the other methods run (exit 1 at the end), and
nothing it leaves behind (torch's global settings, the shared labels) reaches the methods after it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "misbehaving"
RUN = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--seeds", "1", "--device", "cpu", "--epochs", "2"]


def run(cli, folder: str, *extra: str) -> tuple[int, str, str]:
    return cli(*RUN, "--plugins-dir", str(FIXTURES / folder), *extra)


def stored() -> dict[str, str]:
    """Each unlearning row's method -> status in the store."""
    from unlearnkit.store.mlflow_store import Store

    return {r.tag("method"): r.status for r in Store().search({"run_type": "unlearn"}, finished_only=False)}


def failed_line(err: str, method: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if f"{method} (seed 1) failed:" in ln]
    assert lines, err
    return lines[0]


@pytest.mark.parametrize(
    "method, expected",
    [
        ("returns_none", "Method 'returns_none' returned None from unlearn: return the model (an nn.Module)"),
        ("returns_tuple", "Method 'returns_tuple' returned a tuple of (Sequential, dict) from unlearn"),
        ("outcome_none", "Method 'outcome_none' returned an UnlearnOutcome whose model is None"),
        ("other_architecture", "Method 'other_architecture' returned a model of another architecture"),
        ("meta_device", "Method 'meta_device' returned a model with '0.weight' on meta, not on the run's device cpu"),
        ("negative_time", "Method 'negative_time' returned time_s=-5.0: time_s is seconds, finite and >= 0"),
        ("nan_time", "Method 'nan_time' returned time_s=nan"),
        ("string_time", "Method 'string_time' returned time_s=a str ('fast')"),
        ("bad_info", "Method 'bad_info' returned info['epochs']=a str ('three'): info maps names to numbers"),
        ("exits", "Method 'exits' called sys.exit(3) in unlearn"),
        # its info replaced the measured acc_forget, and the row was stored FINISHED
        ("forges_metric", "Method 'forges_metric' returned info 'acc_forget', which the run measures itself"),
    ],
)
def test_a_method_breaking_its_return_contract_fails_its_row_and_the_next_runs(cli, method, expected):
    """Before: an AttributeError or ValueError traceback from the runner or the store (every later
    method lost), a silent exit 3 (sys.exit), or a finished row with a negative or NaN time, or with
    weights no later command could load into the original's architecture."""
    code, _, err = run(cli, "methods", "--method", f"{method},lotus")
    assert code == 1, err
    assert expected in failed_line(err, method)
    rows = stored()
    assert rows["lotus"] == "FINISHED" and rows[method] == "FAILED", rows


def json_rows(out: str) -> dict[str, dict]:
    import json

    return {r["method"]: r for r in json.loads(out)}


def numbers(row: dict) -> dict[str, float]:
    """A row's metrics but its clocks (the only numbers that differ between two identical runs)."""
    return {k: v for k, v in row["metrics"].items() if not k.endswith("time_s") and k != "rte"}


@pytest.mark.parametrize(
    "method, expected",
    [
        ("grad_off", "left torch's global grad mode (True -> False)"),
        ("float64", "left torch's global default dtype (torch.float32 -> torch.float64)"),
        ("writes_splits", "wrote in place into the labels of the forget split"),
    ],
)
def test_what_a_method_leaves_changed_fails_its_row_and_no_later_number_moves(
    cli, monkeypatch, store_dir, method, expected
):
    """Before: grad mode left off crashed the next method with a traceback; a float64 default dtype, or
    zeroed forget labels, silently moved every later method's numbers (lotus' acc_forget 0.25 -> 1.0)."""
    _, out, err = run(cli, "methods", "--method", f"{method},lotus", "--json")
    rows = json_rows(out)
    assert rows[method]["status"] == "failed" and expected in rows[method]["failure"], err
    assert "Traceback" not in err and torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
    monkeypatch.setenv("UNLEARNKIT_STORE", str(store_dir("alone")))
    _, out, _ = run(cli, "methods", "--method", "lotus", "--json")
    assert numbers(rows["lotus"]) == numbers(json_rows(out)["lotus"])


@pytest.mark.parametrize(
    "metric, expected",
    [
        ("gives_none", "Metric 'gives_none' returned None: compute returns one float"),
        ("gives_vector", "Metric 'gives_vector' returned a Tensor of shape (16,)"),
        ("gives_huge_int", "which is no float (OverflowError)"),
        ("gives_inf", "Metric 'gives_inf' returned inf: compute returns a finite float"),
        ("gives_text", "Metric 'gives_text' returned a str ('0.5')"),
    ],
)
def test_a_metric_returning_no_float_is_one_line_per_row(cli, metric, expected):
    """Before: a traceback from the store (None, a vector, a huge int), or a row stored with inf as
    1.8e308 or the text '0.5' as a number."""
    code, _, err = run(cli, "metrics", "--method", "lotus", "--metric", f"acc_forget,{metric}")
    assert code == 1 and expected in failed_line(err, "lotus"), err
    assert stored()["lotus"] == "FAILED"


def test_a_metric_returning_a_tensor_is_its_float(cli):
    """Before: ``--json`` printed the metric as the text 'tensor(0.2698, dtype=torch.float64)'."""
    import json

    code, out, err = run(
        cli, "metrics", "--method", "lotus", "--metric", "acc_forget,gives_tensor,gives_numpy", "--json"
    )
    assert code == 0, err
    (lotus,) = [r for r in json.loads(out) if r["method"] == "lotus"]
    assert isinstance(lotus["metrics"]["gives_tensor"], float) and lotus["metrics"]["gives_numpy"] == 0.25


def test_a_metric_needing_a_model_no_benchmark_has_is_refused(cli):
    """Before: the metric was left out of every run without a word, even when asked for by name."""
    code, _, err = run(cli, "metric_needs", "--method", "lotus", "--metric", "needs_teacher")
    assert code == 2 and "Traceback" not in err, err
    assert "Plugin 'needs_teacher' registered metric 'needs_teacher' with needs 'teacher', which no benchmark" in err


def test_a_misnamed_hook_argument_says_what_is_wrong(cli):
    """Before: only pluggy's first line, which names the hook but not the problem."""
    code, _, err = run(cli, "bad_hook", "--method", "lotus")
    assert code == 2 and "Traceback" not in err, err
    assert "wrong_argument.py' has an invalid hook: hook 'register_methods'" in err
    assert "Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec" in err


def test_a_registration_hook_that_raises_is_one_line_naming_the_plugin(cli):
    """Before: a traceback through the plugin host, with no word on how to take the plugin out."""
    code, _, err = run(cli, "raising_hook", "--method", "lotus")
    assert code == 2 and "Traceback" not in err, err
    assert "Plugin 'raises' from local:" in err and "failed in register_methods (RuntimeError: hook bug); fix" in err


def test_check_method_reports_the_breach_not_an_attribute_error(tiny_bench_one_thread):
    """Before: ``AttributeError: 'NoneType' object has no attribute 'eval'`` from the helper itself."""
    from tests.fixtures.misbehaving.methods.bad_methods import GradOff, ReturnsNone
    from unlearnkit.testing import check_method

    with pytest.raises(AssertionError, match="Method 'returns_none' returned None from unlearn"):
        check_method(ReturnsNone, bench=tiny_bench_one_thread)
    with pytest.raises(AssertionError, match="left torch's global grad mode"):
        check_method(GradOff, bench=tiny_bench_one_thread)
    assert torch.is_grad_enabled()


def test_check_metric_reports_the_value_it_refuses(tiny_bench_one_thread):
    from tests.fixtures.misbehaving.metrics.bad_metrics import GivesNone, GivesNumpy
    from unlearnkit.testing import check_metric

    with pytest.raises(AssertionError, match="Metric 'gives_none' returned None"):
        check_metric(GivesNone, bench=tiny_bench_one_thread)
    assert check_metric(GivesNumpy, bench=tiny_bench_one_thread) == 0.25


def test_json_output_is_the_json_alone_and_a_failed_row_is_exit_1(cli):
    """A plugin's print went into ``--json``'s stdout, so the JSON no longer parsed; and ``--json``
    exited 0 although a row had failed."""
    code, out, err = run(cli, "methods", "--method", "prints,returns_none,lotus", "--json")
    rows = json_rows(out)  # parses: the print went to stderr
    assert "debug: unlearning now" in err and "debug" not in out
    assert code == 1 and rows["returns_none"]["status"] == "failed" and rows["lotus"]["status"] == "finished"
    assert "returns_none (seed 1) failed: Method 'returns_none' returned None" in err


def test_a_method_writing_into_the_shared_images_stops_the_command(cli):
    """Images (unlike labels) are not kept to put back: the rows after such a method read the
    changed images and were stored FINISHED. Now the command stops there, in one line."""
    code, _, err = run(cli, "methods", "--method", "writes_images,lotus")
    assert code == 2 and "Traceback" not in err, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("Error: Method 'writes_images' wrote in place into the images of the forget split")
    ), err
    assert stored().get("writes_images") == "FAILED" and "lotus" not in stored()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "wrong_classes"], "The original model gives outputs of shape (16, 7) on forget, not (N, 4)"),
        (["--model", "not_a_module"], "Model 'not_a_module' built a function from build(spec), not an nn.Module."),
        (["--model", "gives_tuple"], "The model's forward returned a tuple, not a tensor of logits"),
        (["--dataset", "labels_out_of_range"], "Dataset 'labels_out_of_range' loaded train labels from 0 to 9, but 4"),
        (["--dataset", "negative_labels"], "Dataset 'negative_labels' loaded test labels from -1 to 3, but 4 class"),
        (["--dataset", "no_classes"], "Dataset 'no_classes' loaded a RawDataset with no class_names"),
        (["--dataset", "float_images"], "Dataset 'float_images' built a RawDataset that is not one: x_train must be"),
        (["--dataset", "short_labels"], "Dataset 'short_labels' built a RawDataset that is not one: images and"),
        (["--dataset", "not_raw"], "Dataset 'not_raw' loaded a tuple, not a RawDataset."),
        (["--dataset", "wrong_mean_std"], "Dataset 'wrong_mean_std' loaded a mean of (0.5, 0.5, 0.5) for 1-channel"),
        (["--dataset", "float_labels"], "Dataset 'float_labels' loaded train labels of dtype float64: labels are"),
    ],
)
def test_a_model_or_dataset_plugin_giving_what_no_benchmark_can_use_is_one_line(cli, args, expected):
    """Before: tracebacks deep in training or splitting, or (7 logits for 4 classes) silent numbers."""
    code, _, err = cli(*RUN, "--plugins-dir", str(FIXTURES / "models"), "--method", "lotus", *args)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"Error: {expected}"), err
