"""Time every stage of one benchmark — data, original training, retraining, each method, each
evaluation — and the evaluation's forward-pass ratio, on a fresh temporary store.

    python benchmarks/pipeline.py --dataset cifar10 --data-dir ../shared/data --model cnn \
        --subset 200 --epochs 3 --methods all --seeds 3407 --json pipeline.json
    python benchmarks/pipeline.py --recipe recipes/cpu-mnist.toml      # end-to-end time of a recipe

The ratio is (images the evaluation forwarded) / (images strictly needed: each unlearned model
once over every split, the original and retrained models once per seed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import console, environment, table, write_json


def run_pipeline(args: argparse.Namespace) -> dict:
    from unlearnkit.discovery.host import get_host
    from unlearnkit.engine.config import RunRequest, parse_seeds, validate
    from unlearnkit.engine.runner import Runner
    from unlearnkit.store.mlflow_store import Store

    request = RunRequest(
        dataset=args.dataset,
        model=args.model,
        methods=args.methods.split(","),
        seeds=parse_seeds(args.seeds),
        subset=args.subset,
        epochs=args.epochs,
        train_recipe=args.train_recipe,
        data_dir=args.data_dir,
        device=args.device,
    )
    plan = validate(request, get_host().registries)
    runner = Runner(plan, Store())
    t0 = time.perf_counter()
    runner.prepare()
    load_s = time.perf_counter() - t0
    results = runner.run()
    wall = time.perf_counter() - t0
    store = Store()
    trains = {
        (r.t("kind"), r.t("seed")): r.metrics["train_time_s"]
        for k in ("original", "retrain")
        for r in store.search({"kind": k})
    }
    rows, needed, forwarded = [], 0, 0
    for seed in plan.seeds:
        runs = [r for r in results if r.seed == seed]
        lotus_like = store.search({"kind": "unlearn", "seed": str(seed)})
        n_all = sum(int(lotus_like[0].params[f"n_{s}"]) for s in ("forget", "retain", "unseen", "test"))
        needed += n_all * (len(runs))  # every row's model once over every split (references included)
        forwarded += sum(r.metrics.get("eval_images", 0) for r in runs)
        rows.append({"stage": f"train original (seed {seed})", "seconds": trains.get(("original", str(seed)), 0.0)})
        rows.append({"stage": f"retrain (seed {seed})", "seconds": trains.get(("retrain", str(seed)), 0.0)})
        for r in runs:
            rows.append({"stage": f"{r.method} (seed {seed})", "seconds": r.metrics.get("time_s", float("nan"))})
            rows.append({"stage": f"  evaluate {r.method}", "seconds": r.metrics.get("eval_time_s", float("nan"))})
    rows.insert(0, {"stage": "load data", "seconds": load_s})
    rows.append({"stage": "total wall", "seconds": wall})
    return {
        "rows": rows,
        "eval_forward_ratio": forwarded / needed if needed else float("nan"),
        "images_forwarded": forwarded,
        "images_needed": needed,
        "wall_s": wall,
        "config": {k: str(v) for k, v in vars(args).items()},
    }


def run_recipe(args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "unlearnkit", "sweep", str(args.recipe)]
    for flag, value in (("--data-dir", args.data_dir), ("--device", args.device), ("--seeds", args.recipe_seeds)):
        if value:
            cmd += [flag, str(value)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    wall = time.perf_counter() - start
    console.print(proc.stdout[-6000:])
    if proc.returncode:
        console.print(proc.stderr[-3000:])
    return {"recipe": str(args.recipe), "wall_s": wall, "returncode": proc.returncode, "command": " ".join(cmd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--seeds", default="3407")
    ap.add_argument("--subset", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--train-recipe", default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--recipe", type=Path, default=None, help="time a whole recipe sweep instead")
    ap.add_argument("--recipe-seeds", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UNLEARNKIT_STORE"] = str(Path(tmp) / "store")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        out = run_recipe(args) if args.recipe else run_pipeline(args)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    out["environment"] = environment(device)
    if "rows" in out:
        table(f"pipeline stages ({out['environment'].get('gpu', out['environment']['cpu'])})", out["rows"])
        console.print(
            f"evaluation forward ratio: {out['eval_forward_ratio']:.3f} "
            f"({out['images_forwarded']:,} images forwarded / {out['images_needed']:,} needed)"
        )
    else:
        console.print(f"recipe {out['recipe']}: {out['wall_s']:.1f} s wall (exit {out['returncode']})")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
