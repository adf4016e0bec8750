"""The README's first code block is what a newcomer runs and what CI runs (.ci/run): keep it two
commands, and run it literally in a fresh virtual environment on a copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_block() -> list[str]:
    """The commands of the README's first ```bash block, as .ci/run reads them."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("```bash") + 1
    end = lines.index("```", start)
    return [line for line in lines[start:end] if line.strip()]


def test_the_first_block_is_install_and_run_then_every_check():
    install, checks = readme_block()
    assert install.startswith('pip install -e ".[dev]" -e examples/unlearnkit-example && unlearnkit run ')
    for check in ("ruff check .", "ruff format --check .", "mypy", "python -m pytest"):
        assert check in checks.split(" && "), check


def repository_copy(dest: Path) -> Path:
    """What a fresh clone holds (tracked and not-ignored files), without build leftovers."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    return dest


@pytest.mark.slow
def test_the_first_block_runs_literally_in_a_fresh_venv(tmp_path):
    """Command 1 as written; command 2 as written too, with pytest told to collect only (CI runs the
    suite itself). The venv sees this interpreter's packages, so nothing heavy is downloaded."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    clone = repository_copy(tmp_path / "clone")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UNLEARNKIT_", "MLFLOW_", "PYTEST_", "VIRTUAL_ENV"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UNLEARNKIT_CACHE_DIR=str(tmp_path / "cache"),
    )
    install, checks = readme_block()
    first = subprocess.run(["bash", "-c", install], cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert "lotus" in first.stdout and "has not memorised" not in first.stdout + first.stderr
    assert (clone / "unlearnkit-store" / "mlflow.db").is_file()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import unlearnkit, unlearnkit_example; print(unlearnkit.__file__)"],
        cwd=tmp_path,  # not this checkout: `python -c` puts the working directory first on sys.path
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(clone)), where  # the venv runs the clone's code, not this checkout's
    second = subprocess.run(
        ["bash", "-c", checks],
        cwd=clone,
        env={**env, "PYTEST_ADDOPTS": "--collect-only -q -n0"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "tests collected" in second.stdout
