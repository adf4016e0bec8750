"""The third-party path for real: examples/unlearnkit-example, pip-installed, shows up everywhere.

CI installs it (``pip install -e examples/unlearnkit-example``); without it these tests skip with
that command as the reason. The slow tests build it into a fresh virtual environment and run
the package's own test suite.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from unlearnkit.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unlearnkit-example"
INSTALL = "pip install -e examples/unlearnkit-example"

needs_example = pytest.mark.skipif(
    importlib.util.find_spec("unlearnkit_example") is None,
    reason=f"the example package is not installed: {INSTALL}",
)


@needs_example
def test_entry_point_belongs_to_the_example_distribution():
    eps = [ep for ep in md.entry_points(group="unlearnkit") if ep.value.split(":")[0] == "unlearnkit_example"]
    assert eps, "no `unlearnkit` entry point points at unlearnkit_example"
    assert {ep.dist.name for ep in eps} == {"unlearnkit-example"}
    assert {ep.dist.version for ep in eps} == {"0.1.0"}


@needs_example
def test_plugin_host_registers_it_with_provenance():
    from unlearnkit.plugins import PluginHost

    host = PluginHost()
    regs = host.registries
    for registry, name in ((regs.methods, "grad_ascent_plus"), (regs.metrics, "forget_confidence")):
        prov = registry.get(name).provenance
        assert (prov.package, prov.version) == ("unlearnkit-example", "0.1.0"), prov
    assert not [m for m in host.report.failed if "unlearnkit-example" in m]


@needs_example
def test_it_meets_the_method_and_metric_contracts(bench):
    from unlearnkit_example import ForgetConfidence, GradAscentPlus

    from unlearnkit.testing import check_method, check_metric

    report = check_method(GradAscentPlus, bench=bench)
    assert report.touched == {"forget", "retain"}
    assert 0 < check_metric(ForgetConfidence, bench) <= 1


@needs_example
def test_a_tiny_run_lands_on_the_leaderboard_with_its_package(host):
    from unlearnkit.config import RunRequest, validate
    from unlearnkit.leaderboard import leaderboard
    from unlearnkit.progress import RecordingReporter
    from unlearnkit.runner import Runner
    from unlearnkit.store import Store

    request = RunRequest(
        dataset="tiny", model="tiny_cnn", methods=["grad_ascent_plus"], epochs=4, seeds=[1], device="cpu"
    )
    results = Runner(validate(request, host.registries), Store(), RecordingReporter()).run()
    assert {r.method: r.status for r in results} == {
        "original": "finished",
        "retrain": "finished",
        "grad_ascent_plus": "finished",
    }
    (run,) = Store().search({"kind": "unlearn", "method": "grad_ascent_plus"})
    assert (run.t("method.package"), run.t("method.version")) == ("unlearnkit-example", "0.1.0")
    assert run.params["method.ascent_weight"] == "0.3"  # the resolved options are logged
    (board,) = leaderboard(Store())
    row = next(r for r in board.rows if r.method == "grad_ascent_plus")
    assert (row.package, row.version, row.access, row.seeds) == ("unlearnkit-example", "0.1.0", "forget+retain", [1])
    assert "forget_confidence" in row.metrics  # its metric ran for every method of the benchmark
    assert {r.method for r in board.rows} == {"original", "retrain", "grad_ascent_plus"}


@needs_example
def test_it_is_listed_by_the_cli(host, capsys):
    import json

    from unlearnkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["list", "methods", "--json"])
        raise SystemExit(0)
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert exc.value.code == 0
    assert (rows["grad_ascent_plus"]["package"], rows["grad_ascent_plus"]["version"]) == ("unlearnkit-example", "0.1.0")


class HelloCommand:
    """What a package adds with ``register_commands``: a sub-command of ``unlearnkit``."""

    @hookimpl
    def register_commands(self, app: typer.Typer) -> None:
        @app.command("example-hello")
        def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
            """Say hello (a plugin-provided command)."""
            print(f"hello, {name}")


def test_register_commands_adds_a_cli_sub_command(host, capsys):
    from unlearnkit.cli import app, main

    plugin = HelloCommand()
    host.register(plugin)
    before = list(app.registered_commands)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["example-hello", "--name", "plugin author"])
            raise SystemExit(0)
        assert exc.value.code == 0
        assert capsys.readouterr().out == "hello, plugin author\n"
    finally:
        app.registered_commands[:] = before  # the typer app is process-wide: leave it as found
        host.unregister(plugin)


@pytest.mark.slow
def test_the_example_package_own_tests_pass():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        timeout=600,
    )
    if "ModuleNotFoundError: No module named 'unlearnkit_example'" in proc.stdout:
        pytest.skip(f"the example package is not installed: {INSTALL}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


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
        "from unlearnkit.plugins import PluginHost\n"
        "prov = PluginHost().registries.methods.get('grad_ascent_plus').provenance\n"
        "print(prov.package, prov.version, unlearnkit_example.__file__.startswith(sys.prefix))\n"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["unlearnkit-example", "0.1.0", "True"]
