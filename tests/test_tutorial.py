"""CONTRIBUTING.md's "Add a method in five steps", run as a reader runs it, from the blocks as written.

Each block of the tutorial is marked by the line before its fence: ``<!-- tutorial: folders -->``,
``<!-- tutorial: file PATH -->`` (saved to PATH), ``<!-- tutorial: install -->``,
``<!-- tutorial: test -->`` and ``<!-- tutorial: commands -->`` (step 5). The end-to-end test
(in the default suite, so CI runs it on every push) creates the folders, saves the files byte for byte, installs the package for real (pip, into a folder of its
own: the entry point is found as any installed plugin's), runs the package's own test, then every
command of step 5 against a store of its own, and finds the method on the leaderboard with its
package and version. The fast tests run the tutorial's method in this process, on the tiny test
data, and pin the author API it depends on: what ``uk.ce_epoch`` returns is not a flag.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
import torch

import unlearnkit as uk

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "CONTRIBUTING.md"
MARKED = re.compile(
    r"^<!-- tutorial: (?P<what>[^>]*?) -->[ \t]*\n(?:<!--[^\n]*-->[ \t]*\n)*"
    r"(?P<fence>`{3,})(?P<lang>\w*)[ \t]*\n(?P<code>.*?)^(?P=fence)[ \t]*$",
    re.S | re.M,
)


def tutorial() -> dict[str, str]:
    """The tutorial's blocks by marker, exactly as CONTRIBUTING.md writes them."""
    found: dict[str, str] = {}
    for m in MARKED.finditer(GUIDE.read_text(encoding="utf-8")):
        assert m["what"] not in found, f"CONTRIBUTING.md marks two blocks `tutorial: {m['what']}`"
        found[m["what"]] = m["code"]
    return found


def files() -> dict[str, str]:
    return {what.removeprefix("file "): code for what, code in tutorial().items() if what.startswith("file ")}


def project() -> dict:
    """The tutorial's pyproject.toml, parsed."""
    (pyproject,) = [code for path, code in files().items() if path.endswith("/pyproject.toml")]
    return tomllib.loads(pyproject)


def shell_commands(marker: str) -> list[list[str]]:
    """The commands of a shell block, split as a shell would (comments dropped)."""
    return [shlex.split(line, comments=True) for line in tutorial()[marker].splitlines() if shlex.split(line, True)]


def load_method_module() -> types.ModuleType:
    """The tutorial's package module, executed from its block (not from a copy)."""
    (path,) = [p for p in files() if p.endswith("/__init__.py")]
    module = types.ModuleType("tutorial_method")
    exec(compile(files()[path], f"{GUIDE.name}: {path}", "exec"), module.__dict__)
    return module


# ------------------------------------------------------------------------------ fast tests
def test_the_tutorial_blocks_are_marked_and_consistent():
    blocks = tutorial()
    assert {"folders", "install", "test", "commands"} <= set(blocks), sorted(blocks)
    paths = files()
    package = project()["project"]["name"]
    (module,) = project()["project"]["entry-points"]["unlearnkit"].values()
    assert f"{package}/pyproject.toml" in paths and f"{package}/src/{module}/__init__.py" in paths, sorted(paths)
    assert any(re.fullmatch(rf"{package}/tests/test_\w+\.py", p) for p in paths), sorted(paths)
    assert shell_commands("install") == [["pip", "install", "-e", package]]


def test_the_tutorial_method_unlearns_without_a_false_divergence(bench):
    """The method as written runs and logs one finite loss per epoch (it used to stop at epoch 1
    with "diverged: the loss became NaN", passing an ``EpochLoss`` where a flag was wanted)."""
    module = load_method_module()
    (cls,) = [
        v for v in vars(module).values() if isinstance(v, type) and issubclass(v, uk.Method) and v is not uk.Method
    ]
    ctx = bench.context(cls.name)
    options = cls.parse_options({})
    model = cls(options).unlearn(_copy(bench.original), bench.data(cls), ctx)
    assert isinstance(model, torch.nn.Module)
    losses = [(name, value, step) for name, value, step in ctx.series if name == f"{cls.name}_loss"]
    assert [step for _, _, step in losses] == list(range(options.epochs))
    assert all(math.isfinite(value) for _, value, _ in losses), losses


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).train()


def one_epoch(bench, ctx) -> uk.EpochLoss:
    model = _copy(bench.original)
    opt = uk.make_optimizer(model.parameters(), "adam", 1e-3)
    return uk.ce_epoch(model, bench.splits["retain"], opt, ctx, batch_size=32, generator=ctx.generator(), augment=False)


def test_an_epoch_loss_is_not_a_flag(bench):
    loss = one_epoch(bench, bench.context("probe"))
    with pytest.raises(TypeError, match=r"not a divergence flag: pass it to uk\.log_losses"):
        bool(loss)
    with pytest.raises(TypeError):
        if loss:  # the tutorial's old mistake, in its shortest form
            pass


def test_raise_if_diverged_takes_what_the_loops_return(bench):
    ctx = bench.context("probe")
    loss = one_epoch(bench, ctx)
    uk.raise_if_diverged(loss, "probe (epoch 1)")  # finite: no error
    model = _copy(bench.original)
    opt = uk.make_optimizer(model.parameters(), "adam", 1e-3)
    pair = uk.relabel_epoch(
        model,
        bench.splits["forget"],
        bench.splits["retain"],
        opt,
        ctx,
        num_classes=bench.num_classes,
        batch_size=32,
        generator=ctx.generator(),
        augment=False,
    )
    uk.raise_if_diverged(pair, "probe (epoch 1)")
    uk.raise_if_diverged(uk.no_divergence(ctx), "probe (epoch 1)")
    loss.add(torch.tensor(float("nan")))
    with pytest.raises(uk.DivergenceError, match=r"^probe \(epoch 1\) diverged"):
        uk.raise_if_diverged(loss, "probe (epoch 1)")
    with pytest.raises(uk.DivergenceError):
        uk.raise_if_diverged((pair[0], loss), "probe (epoch 1)")
    with pytest.raises(uk.DivergenceError):
        uk.raise_if_diverged(uk.no_divergence(ctx) | True, "probe (epoch 1)")


@pytest.mark.parametrize(
    "given, named",
    [
        (torch.tensor(2.3), "a float32 tensor of shape ()"),
        (torch.zeros(3, dtype=torch.bool), "a bool tensor of shape (3,)"),
        (2.3, "a float"),
        (None, "a NoneType"),
        ((), "a tuple"),
    ],
)
def test_raise_if_diverged_refuses_anything_else(given, named):
    with pytest.raises(TypeError) as caught:
        uk.raise_if_diverged(given, "probe (epoch 1)")
    message = str(caught.value)
    assert message.endswith(f"not {named}.") and message.count(". ") == 0, message
    assert "uk.no_divergence" in message and "EpochLoss" in message


# ------------------------------------------------------------------------------- end to end
def subprocess_env(site: Path) -> dict[str, str]:
    """This environment plus the tutorial's install folder on the path, without pytest's own
    variables (the tutorial's test is a fresh pytest run) and with room for the tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env["COLUMNS"] = "200"
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"`{shlex.join(argv)}` exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    )
    return done


def unlearnkit(words: list[str]) -> list[str]:
    """A step-5 command as this interpreter runs it: ``unlearnkit X`` is ``python -m unlearnkit X``."""
    assert words[0] == "unlearnkit", words
    return [sys.executable, "-m", "unlearnkit", *words[1:]]


def test_the_tutorial_runs_end_to_end_as_written(tmp_path):
    package = project()["project"]["name"]
    version = project()["project"]["version"]
    site = tmp_path / "site"
    env = subprocess_env(site)

    # the folders, then the files saved into them (no parents made here: the mkdir block must)
    for command in shell_commands("folders"):
        run(command, tmp_path, env)
    for path, code in files().items():
        (tmp_path / path).write_text(code, encoding="utf-8")

    # step 4: `pip install -e PACKAGE`, here into a folder of its own, not this environment
    (install,) = shell_commands("install")
    run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
        + ["--target", str(site), str(tmp_path / install[-1])],
        tmp_path,
        env,
    )

    # the package's own test
    (test,) = shell_commands("test")
    assert test[:3] == ["python", "-m", "pytest"], test
    out = run([sys.executable, *test[1:], "-p", "no:cacheprovider"], tmp_path, env).stdout
    assert re.search(r"\b1 passed\b", out), out[-2000:]

    # step 5, every command, against a store of its own
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outputs = {}
    for words in shell_commands("commands"):
        extra = ["--tracking-uri", uri] if words[1] in ("run", "leaderboard") else []
        extra += ["--format", "json"] if words[1] == "leaderboard" else []
        done = run(unlearnkit(words) + extra, tmp_path, env)
        outputs[words[1]] = done.stdout if words[1] == "leaderboard" else done.stdout + done.stderr
    (method,) = [w for words in shell_commands("commands") if words[1] == "show" for w in words[3:4]]
    assert re.search(rf"{method}\b.*{package} {version}", outputs["list"]), outputs["list"]
    assert method in outputs["show"] and package in outputs["show"], outputs["show"]
    assert re.search(rf"{method}\s.*\bdone\b", outputs["run"]), outputs["run"]
    assert "The original model" not in outputs["run"], outputs["run"]  # CONTRIBUTING: no warning before the table

    boards = json.loads(outputs["leaderboard"])
    rows = {row["method"]: row for board in boards for row in board["rows"]}
    assert {"original", "retrain", method} <= set(rows), sorted(rows)
    mine = rows[method]
    assert (mine["package"], mine["version"]) == (package, version)
    assert not any(row["weak_original"] for row in rows.values())  # no † either
    forget = {name: rows[name]["metrics"]["acc_forget"]["mean"] for name in ("original", method)}
    assert forget[method] < forget["original"], forget  # "Forgetting shows"
