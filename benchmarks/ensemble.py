"""Models per GPU-hour (or CPU-hour) when training 1, 2, 4 or 8 models per device at once.

    python benchmarks/ensemble.py --dataset digits --model cnn --models 8 --per-device 1,2,4,8
    python benchmarks/ensemble.py --dataset cifar10 --model speedrun --train-recipe speedrun \\
        --data-dir DIR --device cuda --models 16 --per-device 1,4,8,16 --strategy stack,threads

Each figure trains the same ``--models`` reference models (seeds 0..M-1 on one benchmark's
training split, as an ensemble's members are trained) through ``unlearnkit.loops.packing.fit_many``
— the code ``--models-per-device`` runs — and reports the whole wall time, models per hour,
training images per second, the largest weight difference from the one-at-a-time models and, on
CUDA, the mean GPU utilisation sampled while training. Nothing is stored.

The one-at-a-time row always runs first (added when ``--per-device`` leaves out 1): every ratio
and difference is against it. It trains at torch's own thread count, a CPU pack each model at one,
so on a CPU the threads rows' difference is 0 only with ``OMP_NUM_THREADS=1``; otherwise it is
float noise, which grows with training as any change of thread count or kernel makes it grow.
A short throwaway training runs before any clock starts: a process's first training pays
one-off set-up (about 1.5 s on digits, three one-epoch trainings of the compact CNN at one
thread), which would otherwise be charged to whichever row ran first.
"""

from __future__ import annotations

import argparse
import copy
import threading
import time
from pathlib import Path

import torch
from _common import environment, sync, table, write_json

from unlearnkit.api.data import Split
from unlearnkit.discovery.host import get_host
from unlearnkit.engine.config import RunRequest, parse_option_pairs, validate
from unlearnkit.engine.prepared import Benchmark, resolve_device, seed_everything
from unlearnkit.loops.accounting import images_trained
from unlearnkit.loops.packing import STRATEGIES, Packed, TrainJob, fit_many
from unlearnkit.loops.training import TrainRecipe, fit

# the throwaway training before the clocks: this many batches, one epoch
WARM_UP_BATCHES = 4


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


def pack_sizes(text: str) -> list[int]:
    """``--per-device``: whole numbers of 1 or more, the one-at-a-time baseline (1) first."""
    try:
        sizes = [int(p) for p in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers of 1 or more, e.g. 1,2,4, not {text!r}"
        )
    return [1, *dict.fromkeys(p for p in sizes if p != 1)]


def strategies(text: str) -> list[str]:
    """``--strategy``: a comma-separated list of fit_many's strategies."""
    names = text.split(",")
    bad = [n for n in names if n not in STRATEGIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown strategy {bad[0]!r}: expected {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))


def positive(text: str) -> int:
    """``--models``: at least one model per figure."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def warm_up(bench: Benchmark, split: Split, recipe: TrainRecipe, strategies: list[str]) -> None:
    """One epoch of throwaway models on a few batches, alone and packed two by two with every
    strategy asked for: the process's one-off set-up is paid before any row's clock starts."""
    small = split.subset(torch.arange(min(len(split), WARM_UP_BATCHES * recipe.batch_size), device=split.device))
    short = recipe.model_copy(update={"epochs": 1})
    seed_everything(0)
    fit(bench.build_model(), small, short, bench.context(0, None))
    for strategy in strategies:
        pack = [TrainJob(bench.build_model(), small, bench.context(s, None), "warm-up") for s in (0, 1)]
        fit_many(pack, short, per_device=2, strategy=strategy)  # type: ignore[arg-type]
    sync(bench.device)


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
    ap.add_argument("--models", type=positive, default=8, help="models trained per figure")
    ap.add_argument("--per-device", type=pack_sizes, default="1,2,4,8", help="comma-separated; 1 always runs first")
    ap.add_argument("--strategy", type=strategies, default="auto", help="comma-separated: auto, threads, stack")
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

    warm_up(bench, split, recipe, args.strategy)
    rows, baseline = [], None
    for strategy in args.strategy:
        for per_device in args.per_device:
            if per_device == 1 and baseline is not None:  # one baseline for every strategy
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
            for err in failed:  # Ctrl-C: fit_many returned, the unfinished models carrying it
                if isinstance(err, KeyboardInterrupt):
                    raise err
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
