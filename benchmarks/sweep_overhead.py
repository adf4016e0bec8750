"""What ``--executor ray`` costs: the wall time of one small sweep with ``local`` and with ``ray`` on this
machine, and Ray's overhead per run, (ray wall - local wall) / runs, printed with the machine it ran on.

    python benchmarks/sweep_overhead.py                       # the tiny test recipe and a digits/cnn one
    python benchmarks/sweep_overhead.py --preset digits --repeats 3 --json overhead.json
    python benchmarks/sweep_overhead.py --preset gpu --data-dir ../shared/data   # on a CUDA machine
    python benchmarks/sweep_overhead.py --repeats 3 --marginal 1   # also split fixed from per-run cost

Every sweep is the real command (``python -m unlearnkit sweep ...``) in a fresh store and cache, so
both executors train the same reference models and run the same methods; ``ray`` starts (and stops)
its own local Ray instance unless ``--ray-address`` names a running cluster. Two Ray settings are
timed: ``--cpus-per-run`` = all cores (one run at a time, like ``local``: Ray's overhead alone) and
``--cpus-per-run 1`` (one run per core: what parallelism buys on this machine). Every process gets
``--threads`` torch threads (default 1), so that both executors do the same arithmetic the same way
and a busy machine's oversubscribed threads do not swamp the difference.

Most of Ray's overhead on a small sweep is paid once: starting the private instance, and each worker
process importing torch, unlearnkit and MLflow and connecting to the store. ``--marginal SEEDS`` also
times every setting with ``--seeds SEEDS`` (fewer runs) and splits the overhead into what a sweep pays
once, ``startup_s``, and what each further run adds, ``marginal_per_run_s`` = (overhead of the full
sweep - overhead of the short one) / (its runs - the short one's), in which start-up cancels out.

On a CUDA machine the ``gpu`` preset sweeps ``recipes/gpu-cifar10.toml`` (``--seeds``/``--epochs`` to
shorten it) with ``--gpus-per-run 1`` and ``0.5`` while sampling GPU utilisation (``nvidia-smi``, or
``torch.cuda.utilization()``) every half second: the busy fraction shows whether packing two light runs
on one GPU keeps it busier. On a machine without CUDA that preset is skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import console, table, write_json

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "recipes" / "tiny.toml"
TINY_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"
GPU_RECIPE = ROOT / "recipes" / "gpu-cifar10.toml"
DIGITS = """name = "overhead-digits"
description = "Ray overhead benchmark: digits, compact CNN, a few epochs."
datasets = ["digits"]
models = ["cnn"]
scenarios = ["0.1"]
methods = ["lotus", "ssd"]
seeds = [1, 2]
epochs = 3
device = "cpu"
"""
SUMMARY = re.compile(r"Sweep '.*': (\d+) runs \((\d+) new, (\d+) already in the store, (\d+) failed\) in ([\d.]+) s")


def machine() -> dict[str, Any]:
    import torch

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ray": ray_version,
        "cuda": torch.cuda.is_available(),
    }
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class GpuSampler:
    """GPU utilisation (%) every ``period`` seconds in a thread, while a sweep runs."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        if shutil.which("nvidia-smi"):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            values = [float(v) for v in out.stdout.split() if v.strip()]
            return statistics.fmean(values) if values else None
        try:
            import torch

            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no NVML: nothing to sample
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = self._read()
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"gpu_util_mean": float("nan"), "gpu_busy_fraction": float("nan")}
        return {
            "gpu_util_mean": statistics.fmean(self.samples),
            "gpu_busy_fraction": sum(s > 5 for s in self.samples) / len(self.samples),
        }


def sweep(
    recipe: Path, plugins: Path | None, extra: list[str], work: Path, sample_gpu: bool, threads: int | None
) -> dict[str, Any]:
    """One sweep command in a fresh store and cache under ``work``; its wall time and summary."""
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "UNLEARNKIT_STORE": str(work / "store"),
        "UNLEARNKIT_CACHE_DIR": str(work / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    if threads:  # torch's threads in the sweep and in every Ray worker (Ray keeps a value already set)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "unlearnkit", "sweep", str(recipe), *extra]
    if plugins is not None:
        cmd += ["--plugins-dir", str(plugins)]
    sampler = GpuSampler()
    start = time.perf_counter()
    if sample_gpu:
        with sampler:
            proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    else:
        proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    found = SUMMARY.search(proc.stdout)
    if proc.returncode or not found:
        console.print(f"[red]failed[/] ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
        raise SystemExit(1)
    runs, new, skipped, failed, sweep_s = found.groups()
    out = {"runs": int(runs), "new": int(new), "failed": int(failed), "wall_s": wall, "sweep_s": float(sweep_s)}
    if sample_gpu:
        out.update(sampler.summary())
    return out


def repeat(
    args: argparse.Namespace, work: Path, recipe: Path, plugins: Path | None, flags: list[str], sample_gpu: bool
) -> list[dict[str, Any]]:
    """``--repeats`` sweeps of one setting, each in its own folder under ``work``."""
    results = []
    for i in range(args.repeats):
        where = work.with_name(f"{work.name.replace(' ', '_').replace(',', '')}-{i}")
        results.append(sweep(recipe, plugins, flags, where, sample_gpu, args.threads or None))
        console.print(f"{work.name} #{i + 1}: {results[-1]['wall_s']:.1f} s", highlight=False)
    return results


def presets(args: argparse.Namespace, work: Path) -> list[tuple[str, Path, Path | None, list[str]]]:
    """(name, recipe, plugins dir, extra flags) of each preset asked for."""
    out: list[tuple[str, Path, Path | None, list[str]]] = []
    shared = [f for flag, v in (("--seeds", args.seeds), ("--epochs", args.epochs)) if v for f in (flag, str(v))]
    for name in args.preset:
        if name == "tiny":
            out.append(("tiny", TINY, TINY_PLUGINS, shared))
        elif name == "digits":
            recipe = work / "digits.toml"
            recipe.write_text(DIGITS)
            out.append(("digits", recipe, None, shared))
        elif name == "gpu":
            folder = Path(args.data_dir) if args.data_dir else ROOT.parent / "shared" / "data"  # the recipe's default
            data = ["--data-dir", str(folder.resolve())]
            out.append(("gpu-cifar10", GPU_RECIPE, None, [*shared, *data]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", choices=["tiny", "digits", "gpu"], help="default: tiny and digits")
    ap.add_argument("--repeats", type=int, default=1, help="sweeps per setting (the median is reported)")
    ap.add_argument("--seeds", help="override the recipes' seeds, e.g. 1")
    ap.add_argument("--epochs", type=int, help="override the recipes' training epochs")
    ap.add_argument("--data-dir", help="the datasets' folder (gpu preset: CIFAR-10)")
    ap.add_argument("--ray-address", help="a running Ray cluster (default: each sweep starts a local instance)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process in every sweep (default 1: a loaded machine's oversubscribed threads "
        "would swamp the comparison; 0: each executor's own default, all cores for local, --cpus-per-run for ray)",
    )
    ap.add_argument(
        "--marginal",
        metavar="SEEDS",
        help="also time every setting with --seeds SEEDS (fewer runs, e.g. 1) and report start-up and per-run cost",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    args.preset = args.preset or (["tiny", "digits", "gpu"] if cuda else ["tiny", "digits"])
    if "gpu" in args.preset and not cuda:
        console.print("[yellow]No CUDA device: skipping the gpu preset (GPU busy fraction not measured).[/]")
        args.preset = [p for p in args.preset if p != "gpu"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    address = ["--ray-address", args.ray_address] if args.ray_address else []
    before = machine()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ulk-overhead-") as tmp:
        work = Path(tmp)
        for name, recipe, plugins, extra in presets(args, work):
            gpu = name.startswith("gpu")
            settings: list[tuple[str, list[str]]] = [("local", [])]
            if gpu:
                settings += [
                    (f"ray, {g} GPU per run", ["--executor", "ray", *address, "--gpus-per-run", g])
                    for g in ("1", "0.5")
                ]
            else:
                settings += [
                    (f"ray, {cores} CPUs per run", ["--executor", "ray", *address, "--cpus-per-run", str(cores)]),
                    ("ray, 1 CPU per run", ["--executor", "ray", *address, "--cpus-per-run", "1"]),
                ]
            local: dict[str, float] = {}
            for label, flags in settings:
                sample = gpu and label != "local"
                where = work / f"{name}-{label}"
                results = repeat(args, where, recipe, plugins, [*extra, *flags], sample)
                wall = statistics.median(r["wall_s"] for r in results)
                runs = results[0]["runs"]
                row: dict[str, Any] = {
                    "recipe": name,
                    "executor": label,
                    "runs": runs,
                    "wall_s": wall,
                    "sweep_s": statistics.median(r["sweep_s"] for r in results),
                    "overhead_per_run_s": float("nan") if label == "local" else (wall - local["wall"]) / runs,
                }
                if args.marginal:
                    short = repeat(
                        args,
                        where.with_name(f"{where.name}-short"),
                        recipe,
                        plugins,
                        [*extra, *flags, "--seeds", args.marginal],
                        sample,
                    )
                    short_wall, short_runs = statistics.median(r["wall_s"] for r in short), short[0]["runs"]
                    if label == "local":
                        local.update(short_wall=short_wall)
                        row.update(startup_s=float("nan"), marginal_per_run_s=float("nan"))
                    else:
                        overhead, short_overhead = wall - local["wall"], short_wall - local["short_wall"]
                        marginal = (overhead - short_overhead) / (runs - short_runs)
                        row.update(startup_s=overhead - marginal * runs, marginal_per_run_s=marginal)
                if label == "local":
                    local.update(wall=wall)
                if gpu and label != "local":
                    row["gpu_util_mean_%"] = statistics.fmean(r["gpu_util_mean"] for r in results)
                    row["gpu_busy_fraction"] = statistics.fmean(r["gpu_busy_fraction"] for r in results)
                rows.append(row)
    after = machine()
    console.print(
        f"machine: {before['cpus']} CPUs ({before['cpus_usable']} usable), load average {before['load_avg_1_5_15']} "
        f"before and {after['load_avg_1_5_15']} after; {before['platform']}; Python {before['python']}, "
        f"torch {before['torch']} ({before['torch_threads']} threads by default), Ray {before['ray']}"
        + (f"; GPU {before['gpu']}" if before.get("gpu") else "; no GPU")
        + (f"; {args.threads} torch thread(s) per process" if args.threads else "; default torch threads"),
        highlight=False,
    )
    printable = [{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    console.print("median of the repeats; overhead_per_run_s = (ray wall_s - local wall_s) / runs", highlight=False)
    if args.marginal:
        console.print(
            f"marginal_per_run_s: the overhead's slope between --seeds {args.marginal} and the full sweep; "
            "startup_s: what is left, paid once per sweep",
            highlight=False,
        )
    table("Sweep wall time, local vs ray", printable)
    write_json(
        args.json,
        {
            "machine_before": before,
            "machine_after": after,
            "rows": rows,
            "repeats": args.repeats,
            "marginal_seeds": args.marginal,
            "threads": args.threads,
        },
    )


if __name__ == "__main__":
    main()
