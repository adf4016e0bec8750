"""The third-party path for real: examples/unlearnkit-example, pip-installed, arrives through its
entry point with its package and version, in the registries, the CLI and the store.

Only what is specific to the entry-point path is tested here. The example's method contract
(``check_method``) and its end-to-end run to the leaderboard are the example's own tests,
``examples/unlearnkit-example/tests``, which the root ``testpaths`` collects too: nothing here
repeats them.

CI installs the example (``pip install -e examples/unlearnkit-example``); without it these tests
skip with that command as the reason. The slow test builds it into a fresh virtual environment.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unlearnkit-example"
INSTALL = "pip install -e examples/unlearnkit-example"
PACKAGE = ("unlearnkit-example", "0.1.0")

needs_example = pytest.mark.skipif(
    importlib.util.find_spec("unlearnkit_example") is None,
    reason=f"the example package is not installed: {INSTALL}",
)


@needs_example
def test_entry_point_belongs_to_the_example_distribution():
    eps = [ep for ep in md.entry_points(group="unlearnkit") if ep.value.split(":")[0] == "unlearnkit_example"]
    assert eps, "no `unlearnkit` entry point points at unlearnkit_example"
    assert {(ep.dist.name, ep.dist.version) for ep in eps} == {PACKAGE}


@needs_example
def test_plugin_host_registers_it_with_provenance():
    from unlearnkit.discovery.host import PluginHost

    host = PluginHost()
    regs = host.registries
    for registry, name in ((regs.methods, "grad_ascent_plus"), (regs.metrics, "forget_confidence")):
        prov = registry.get(name).provenance
        assert (prov.plugin, prov.package, prov.version) == ("unlearnkit_example", *PACKAGE), prov
    assert not [m for m in host.report.failed if "unlearnkit-example" in m]


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    from unlearnkit.cli import main

    capsys.readouterr()
    main([*argv, "--json"])  # returns normally on success; an error exits
    return json.loads(capsys.readouterr().out)


@needs_example
def test_the_cli_lists_its_method_and_metric_with_its_package(host, capsys):
    for kind, name in (("methods", "grad_ascent_plus"), ("metrics", "forget_confidence")):
        rows = {r["name"]: r for r in cli_json(capsys, "list", kind)}
        assert (rows[name]["package"], rows[name]["version"]) == PACKAGE, kind
    loaded = {r["plugin"]: r for r in cli_json(capsys, "plugins")["loaded"]}
    example = loaded["unlearnkit_example"]
    assert (example["package"], example["version"]) == PACKAGE
    assert sorted(example["registers"]) == ["method grad_ascent_plus", "metric forget_confidence", "scenario tail"]


@needs_example
def test_a_run_logs_its_provenance(host, tmp_path):
    """One method run, with its package and version in the run's tags. Nothing is trained: the
    original is brought as a file and there is no retrained model (the full pipeline is the
    example's own end-to-end test)."""
    import torch

    from unlearnkit.api.types import ImageSpec
    from unlearnkit.engine.config import RunRequest, validate
    from unlearnkit.engine.runner import Runner
    from unlearnkit.store.mlflow_store import Store
    from unlearnkit.testing import TinyModel

    original = tmp_path / "original.pt"  # an untrained tiny_cnn for the tiny data's 4 classes: it only has to fit
    torch.save(TinyModel().build(ImageSpec(1, 8, 8, 4)).state_dict(), original)
    request = RunRequest(
        dataset="tiny",
        model="tiny_cnn",
        methods=["grad_ascent_plus"],
        options={"epochs": "1"},
        metrics=["forget_confidence"],
        original=original,
        no_retrain=True,
        seeds=[1],
        device="cpu",
        save_models=False,
    )
    results = Runner(validate(request, host.registries), Store()).run()
    assert [(r.method, r.status) for r in results] == [("original", "finished"), ("grad_ascent_plus", "finished")]
    (run,) = Store().search({"run_type": "unlearn", "method": "grad_ascent_plus"})
    assert (run.tag("method.plugin"), run.tag("method.package"), run.tag("method.version")) == (
        "unlearnkit_example",
        *PACKAGE,
    )
    assert run.params["method.ascent_weight"] == "0.3"  # the resolved options are logged with it
    assert 0 <= run.metrics["forget_confidence"] <= 1  # and so is its metric


@pytest.mark.slow
def test_installs_into_a_fresh_venv_and_registers(tmp_path):
    """A non-editable install from a copy, with no index: the wheel's own metadata is what counts."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    venv = tmp_path / "venv"
    # --without-pip: the venv uses this interpreter's pip and setuptools (a venv's bundled ones may be too old)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps", str(src)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot build the example offline here: {pip.stderr.strip().splitlines()[-1:]}")
    probe = (
        "import unlearnkit_example, sys\n"
        "from unlearnkit.discovery.host import PluginHost\n"
        "prov = PluginHost().registries.methods.get('grad_ascent_plus').provenance\n"
        "print(prov.package, prov.version, unlearnkit_example.__file__.startswith(sys.prefix))\n"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == [*PACKAGE, "True"]
