"""Every clock starts after torch's lazy imports: the first optimizer a process builds imports
``torch._dynamo`` (2-3 s on a CPU), which a method's ``time_s`` (or a training's seconds) must not
include, or the first method of every process looks slower than the same method run second.

Each case runs in a new interpreter (a test process has imported torch._dynamo long before) and
records, at each ``time.perf_counter()`` called from a timed function, whether the import is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from unlearnkit import ImageSpec
from unlearnkit.testing import TinyModel

FIXTURES = str(Path(__file__).parent / "fixtures" / "plugins")
TIMED = ("unlearn_copy", "_train", "unlearn", "_thread_packs")

#: Wraps time.perf_counter before anything is imported, then runs the rest of the script.
RECORDER = f"""
import json, sys, time
seen = []
clock = time.perf_counter
def recorded():
    name = sys._getframe(1).f_code.co_name
    if name in {TIMED!r}:
        seen.append([name, "torch._dynamo" in sys.modules])
    return clock()
time.perf_counter = recorded
"""


def clock_reads(script: str) -> list[list]:
    """(timed function, torch._dynamo already imported) at every clock read of ``script``."""
    code = RECORDER + script + "\nprint('SEEN=' + json.dumps(seen))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("SEEN="))
    return json.loads(line[len("SEEN=") :])


def cli(args: list[str]) -> str:
    return f"""
sys.argv = ["unlearnkit", *{args!r}]
from unlearnkit.cli import main
try:
    main()
except SystemExit as stop:
    assert not stop.code, stop.code
"""


def test_a_method_first_in_its_process_is_not_charged_for_torch_imports(tmp_path):
    weights = tmp_path / "w.pt"
    torch.manual_seed(0)
    torch.save(TinyModel().build(ImageSpec(1, 8, 8, 4)).state_dict(), weights)
    run = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", FIXTURES, "--seeds", "1"]
    run += ["--device", "cpu", "--method", "finetune", "--original", str(weights), "--retrained", str(weights)]
    run += ["--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"]  # brought models: nothing trained first
    reads = clock_reads(cli(run))
    assert reads[0] == ["unlearn_copy", True], reads


def test_the_first_training_of_a_process_is_not_charged_for_torch_imports(tmp_path):
    run = ["run", "--dataset", "tiny", "--model", "tiny_cnn", "--plugins-dir", FIXTURES, "--seeds", "1"]
    run += ["--device", "cpu", "--epochs", "1", "--method", "finetune", "--no-retrain"]
    run += ["--tracking-uri", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"]
    reads = clock_reads(cli(run))
    assert reads and reads[0] == ["_train", True], reads


def test_a_notebook_unlearn_first_in_its_process_is_not_charged_for_torch_imports():
    script = """
import torch
import unlearnkit as uk
from unlearnkit.testing import TinyModel
torch.manual_seed(0)
model = TinyModel().build(uk.ImageSpec(1, 8, 8, 4))
x, y = torch.rand(24, 1, 8, 8), torch.arange(24) % 4
uk.unlearn(model, (x[:8], y[:8]), (x[8:], y[8:]), "finetune", options={"epochs": 1}, seed=0)
"""
    reads = clock_reads(script)
    assert reads and reads[0] == ["unlearn", True], reads
