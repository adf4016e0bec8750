"""Models per GPU-hour (or CPU-hour) when training 1, 2, 4 or 8 models per device at once.

    python benchmarks/ensemble.py --dataset digits --model cnn --models 8 --per-device 1,2,4,8
    python benchmarks/ensemble.py --dataset cifar10 --model speedrun --train-recipe speedrun \\
        --data-dir DIR --device cuda --models 16 --per-device 1,4,8,16 --strategy stack,threads

Each figure trains the same ``--models`` reference models (seeds 0..M-1 on one benchmark's
training split, as an ensemble's members are trained) through ``unlearnkit.loops.packing.fit_many``
— the code ``--models-per-device`` runs — and reports the whole wall time, models per hour,
training images per second, the largest weight difference from the one-at-a-time models (0 for
threads against models trained alone at one intra-op thread; otherwise float noise, which grows
with training as any change of thread count or kernel makes it grow) and, on CUDA, the mean GPU
utilisation sampled while training. Nothing is stored.
"""

from __future__ import annotations

import argparse
import copy
import threading
import time
from pathlib import Path

import torch
from _common import environment, sync, table, write_json

from unlearnkit.discovery.host import get_host
from unlearnkit.engine.config import RunRequest, parse_option_pairs, validate
from unlearnkit.engine.prepared import Benchmark, resolve_device, seed_everything
from unlearnkit.loops.accounting import images_trained
from unlearnkit.loops.packing import Packed, TrainJob, fit_many
from unlearnkit.loops.training import fit


class Utilisation:
    """Mean GPU utilisation (%) sampled every 0.2 s while the block runs (NaN off CUDA or without NVML)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self.stop = device, [], threading.Event()

    def __enter__(self) -> Utilisation:
        if self.device.type == "cuda":
            threading.Thread(target=self.sample, daemon=True).start()
        return self

    def sample(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # noqa: BLE001 - no NVML: no figure
                return

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--model-option", action="append", default=[], help="KEY=VALUE, e.g. width=8")
    ap.add_argument("--train-recipe", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--subset", default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", type=int, default=8, help="models trained per figure")
    ap.add_argument("--per-device", default="1,2,4,8")
    ap.add_argument("--strategy", default="auto", help="comma-separated: auto, threads, stack")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    request = RunRequest(
        dataset=args.dataset,
        model=args.model,
        model_options=parse_option_pairs(args.model_option),
        train_recipe=args.train_recipe,
        epochs=args.epochs,
        subset=args.subset,
        data_dir=args.data_dir,
        device=args.device,
    )
    plan = validate(request, get_host().registries)
    bench = Benchmark(plan, device=resolve_device(args.device))
    bench.check()
    idx = bench.indices(0)
    split = bench.splits(idx)["train"]
    recipe = plan.train_recipe
    seeds = list(range(args.models))
    starts = {}
    for seed in seeds:
        seed_everything(seed)
        starts[seed] = bench.build_model()

    def jobs() -> list[TrainJob]:
        return [TrainJob(copy.deepcopy(starts[s]), split, bench.context(s, None), f"model {s}") for s in seeds]

    rows, baseline = [], None
    for strategy in args.strategy.split(","):
        for per_device in [int(p) for p in args.per_device.split(",")]:
            if per_device == 1 and baseline is not None and strategy != args.strategy.split(",")[0]:
                continue
            pack = jobs()
            sync(bench.device)
            began = time.perf_counter()
            with Utilisation(bench.device) as use:
                if per_device == 1:  # what one model per device does: fit, one after another, torch's threads
                    out = [Packed(0.0, None, "one at a time") for _ in pack]
                    for job in pack:
                        fit(job.model, job.split, recipe, job.ctx)
                else:
                    out = fit_many(pack, recipe, per_device=per_device, strategy=strategy)
            sync(bench.device)
            wall = time.perf_counter() - began
            failed = [o.error for o in out if o.error is not None]
            if failed:
                raise SystemExit(f"{strategy} x{per_device}: {failed[0]}")
            states = [job.model.state_dict() for job in pack]
            if baseline is None:
                baseline, base_wall = states, wall
            diff = max((s[k].float() - b[k].float()).abs().max().item() for s, b in zip(states, baseline) for k in b)
            rows.append(
                {
                    "strategy": out[0].strategy,
                    "per device": per_device,
                    "wall s": wall,
                    "models/hour": args.models * 3600 / wall,
                    "images/s": args.models * images_trained(split, recipe) / wall,
                    "vs one at a time": base_wall / wall,
                    "max |dw|": f"{diff:.1e}",
                    "GPU util %": use.mean,
                }
            )
    title = (
        f"{args.models} x {args.model} on {args.dataset} ({len(split)} images, {recipe.name} x {recipe.epochs} epochs)"
    )
    table(title, rows)
    write_json(args.json, {"environment": environment(bench.device), "rows": rows, "title": title})


if __name__ == "__main__":
    main()
