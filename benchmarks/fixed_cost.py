"""A command's fixed cost: whole-process wall time of ``unlearnkit --help``, ``unlearnkit list
methods``, opening a fresh store, and one LoTUS run on CIFAR-10 with brought reference models (the
paper protocol, a fresh store each time), as medians of interleaved runs.

    python benchmarks/fixed_cost.py --data-dir ../shared/data --runs 5
    python benchmarks/fixed_cost.py --data-dir ../shared/data --tree ../before --tree . --runs 5

Each ``--tree`` is a source checkout (its ``unlearnkit`` and ``plugins`` folders go first on the
path); the first is the yardstick the others' ratios are taken against. Without ``--tree`` the
installed code is measured. Every command runs once per tree before timing (the decoded-dataset
cache and the store's schema template are made then), and the trees take turns run by run, so a
change in the machine's load reaches every tree alike. The run's store is new every time: it
measures what a first run on a new store costs, not a re-run that finds its rows in the store.
The run's fixed cost is its wall time less the seconds its methods took (their rows' ``time_s``):
what the command costs around the unlearning itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import table, write_json

ARCHIVE = "cifar10-images.tar.gz"

MAKE_WEIGHTS = """
import sys, torch
from unlearnkit.discovery.host import get_host
from unlearnkit import ImageSpec
model = get_host().registries.models.get("resnet18_lotus").cls()
for seed, path in enumerate(sys.argv[1:]):
    torch.manual_seed(seed)
    torch.save(model.build(ImageSpec(3, 32, 32, 10)).state_dict(), path)
"""

OPEN_STORE = "import sys; from unlearnkit.store.mlflow_store import Store; Store(sys.argv[1]).check()"


def source_path(tree: Path, work: Path) -> str:
    """A folder holding ``unlearnkit`` and ``unlearnkit_plugins`` of ``tree`` (links), for PYTHONPATH."""
    folder = Path(tempfile.mkdtemp(prefix="src-", dir=work))
    (folder / "unlearnkit").symlink_to(tree.resolve() / "unlearnkit")
    (folder / "unlearnkit_plugins").symlink_to(tree.resolve() / "plugins")
    return str(folder)


def commands(args: argparse.Namespace, work: Path, weights: tuple[Path, Path]) -> dict[str, list[str]]:
    py = [sys.executable]
    store = work / "store"
    run = f"run --method lotus --model resnet18_lotus --dataset cifar10 --subset {args.subset} --protocol paper"
    run_flags = ["--original", str(weights[0]), "--retrained", str(weights[1]), "--data-dir", str(work / "data")]
    run_cmd = [*py, "-m", "unlearnkit", *run.split(), *run_flags, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"]
    run_cmd.append("--json")  # its rows' time_s: the method's own seconds, taken off to leave the fixed cost
    return {
        "unlearnkit --help": [*py, "-m", "unlearnkit", "--help"],
        "unlearnkit list methods": [*py, "-m", "unlearnkit", "list", "methods"],
        "open a fresh store": [*py, "-c", OPEN_STORE, f"sqlite:///{store / 'mlflow.db'}"],
        f"unlearnkit {run} (brought models, fresh store)": run_cmd,
    }


def timed(cmd: list[str], env: dict[str, str], fresh: Path) -> tuple[float, float]:
    """Whole-process wall seconds of ``cmd``, run beside ``fresh`` (the store folder, removed first):
    not from a checkout, whose own ``unlearnkit`` folder would come before PYTHONPATH's. Second: the
    seconds the methods themselves took (the finite ``time_s`` of the rows a ``--json`` run prints;
    0 for other commands), so that wall minus it is the command's fixed cost."""
    shutil.rmtree(fresh, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=fresh.parent, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    method_s = 0.0
    if "--json" in cmd:
        rows = json.loads(done.stdout)
        times = (r["metrics"].get("time_s") for r in rows)  # null where a row has none (a brought model)
        method_s = sum(t for t in times if t is not None and math.isfinite(float(t)))
    return seconds, method_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help=f"folder holding {ARCHIVE}")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="source checkout (repeatable)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command and tree")
    parser.add_argument("--subset", type=int, default=50, help="per-class images of train and test")
    parser.add_argument("--only", default="", help="measure only the commands whose name contains this")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    archive = (args.data_dir / ARCHIVE).resolve()
    if not archive.is_file():
        sys.exit(f"{archive} not found (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory(prefix="unlearnkit-fixed-cost-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        (work / "data" / ARCHIVE).symlink_to(archive)
        trees = args.tree or [None]
        envs = {}
        for tree in trees:
            env = dict(os.environ)
            if tree is not None:
                env["PYTHONPATH"] = source_path(tree, work)
            envs[str(tree or "installed")] = env
        weights = (work / "original.pt", work / "retrained.pt")
        newest = list(envs.values())[-1]  # the yardstick may predate the module paths MAKE_WEIGHTS names
        subprocess.run([sys.executable, "-c", MAKE_WEIGHTS, *map(str, weights)], env=newest, cwd=work, check=True)
        cmds = {k: v for k, v in commands(args, work, weights).items() if args.only in k}
        for cmd in cmds.values():  # warm-up: caches made, files in the page cache
            for env in envs.values():
                timed(cmd, env, work / "store")
        seconds: dict[tuple[str, str], list[float]] = {(t, n): [] for t in envs for n in cmds}
        fixed: dict[tuple[str, str], list[float]] = {(t, n): [] for t in envs for n in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                for label, env in envs.items():
                    wall, method_s = timed(cmd, env, work / "store")
                    seconds[label, name].append(wall)
                    fixed[label, name].append(wall - method_s)
    base = next(iter(envs))
    rows = []
    for name in cmds:
        for label in envs:
            runs = seconds[label, name]
            rows.append(
                {
                    "command": name,
                    "tree": label,
                    "median s": f"{statistics.median(runs):.2f}",
                    "min s": f"{min(runs):.2f}",
                    "max s": f"{max(runs):.2f}",
                    "median / first tree's": f"{statistics.median(runs) / statistics.median(seconds[base, name]):.2f}",
                    "fixed s (median)": f"{statistics.median(fixed[label, name]):.2f}",
                    "fixed / first tree's": f"{statistics.median(fixed[label, name]) / statistics.median(fixed[base, name]):.2f}",
                }
            )
    load = os.getloadavg()
    table(f"Whole-process wall seconds, {args.runs} runs each (load average {load[0]:.1f})", rows)
    raw = {f"{label} | {name}": runs for (label, name), runs in seconds.items()}
    raw_fixed = {f"{label} | {name}": runs for (label, name), runs in fixed.items()}
    write_json(args.json, {"runs": args.runs, "load_average": load, "rows": rows, "seconds": raw, "fixed": raw_fixed})


if __name__ == "__main__":
    main()
