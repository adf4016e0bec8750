"""The speedrun recipe against the fast one: wall time to a test accuracy, on one CIFAR-10 subset.

    python benchmarks/speedrun.py --data-dir ../shared/data --subset 100 --json speedrun.json

Trains (a) ``resnet18`` under ``--train-recipe fast`` and (b) ``speedrun`` under ``--train-recipe
speedrun`` through ``uk.fit``, exactly as `unlearnkit run` trains an original model: the same
subset of the training set (``--subset`` images per class, the first in dataset order), the same
seed, the toolkit's augmentation and evaluation. Accuracy is on the run's unseen and test splits
together (the first ``--subset`` test images per class); the wall time is ``fit`` alone (the whitening's
data pass included), not data loading or evaluation. ``--pair`` adds or replaces the pairs trained,
e.g. ``--pair speedrun:speedrun:12`` for 12 epochs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from _common import console, environment, table, timed, write_json

PAIRS = ("resnet18:fast", "speedrun:speedrun")


def train_one(model_name: str, recipe: str, epochs: int | None, args: argparse.Namespace) -> dict:
    from unlearnkit.api.data import concat
    from unlearnkit.discovery.host import get_host
    from unlearnkit.engine.config import RunRequest, validate
    from unlearnkit.engine.prepared import Benchmark, seed_everything
    from unlearnkit.loops.training import accuracy, fit

    request = RunRequest(
        dataset="cifar10",
        model=model_name,
        methods=["original"],
        seeds=[args.seed],
        subset=str(args.subset),
        train_recipe=recipe,
        epochs=epochs,
        data_dir=args.data_dir,
        device=args.device,
        no_retrain=True,
    )
    plan = validate(request, get_host().registries)
    bench = Benchmark(plan)
    splits = bench.splits(bench.indices(args.seed))
    train = splits["train"]
    held_out, _ = concat(splits["unseen"], splits["test"], "held_out")
    seed_everything(args.seed)
    model = bench.build_model()
    ctx = bench.context(args.seed, None, method="original")
    seconds = timed(
        lambda: fit(model, train, plan.train_recipe, ctx, description=f"{model_name}/{recipe}"), bench.device
    )
    r = plan.train_recipe
    return {
        "model": model_name,
        "recipe": recipe,
        "epochs": r.epochs,
        "batch": r.batch_size,
        "train_images": len(train),
        "image_passes": r.epochs * len(train),
        "wall_s": seconds,
        "img_s": r.epochs * len(train) / seconds,
        "train_acc": accuracy(model, train, ctx),
        "test_acc": accuracy(model, held_out, ctx),
        "test_images": len(held_out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10-images.tar.gz")
    ap.add_argument("--subset", type=int, default=100, help="training (and test) images per class")
    ap.add_argument("--seed", type=int, default=3407)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--pair", action="append", default=None, help="MODEL:RECIPE[:EPOCHS], repeatable (default: the two above)"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    for pair in args.pair or PAIRS:
        model_name, recipe, *rest = pair.split(":")
        rows.append(train_one(model_name, recipe, int(rest[0]) if rest else None, args))
        console.print(f"{model_name}/{recipe}: {rows[-1]['wall_s']:.1f} s, test acc {rows[-1]['test_acc']:.3f}")
    base = rows[0]["wall_s"]
    for row in rows:
        row["wall_ratio"] = base / row["wall_s"]  # the first pair's time / this one's
    from unlearnkit.engine.prepared import resolve_device

    env = {**environment(resolve_device(args.device)), "load_avg": os.getloadavg()}
    shown = [{k: f"{v:.3f}" if k.endswith("acc") or k == "wall_ratio" else v for k, v in row.items()} for row in rows]
    table(
        f"speedrun vs fast: CIFAR-10, {args.subset} per class, seed {args.seed} "
        f"({env.get('gpu', env['cpu'])}, {env['threads']} threads, load {env['load_avg'][0]:.2f})",
        shown,
    )
    write_json(args.json, {"environment": env, "subset": args.subset, "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
