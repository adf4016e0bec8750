"""Where a LoTUS run spends its time: share in model forward/backward passes (target >= 80 %).

    python benchmarks/profile_lotus.py --dataset cifar10 --data-dir ../shared/data --model resnet18 --subset 100

Trains (or reuses, in a temporary store) the original model briefly, then profiles one LoTUS
call with cProfile: forward = cumulative time in the top-level ``nn.Module.__call__``,
backward = cumulative time in ``Tensor.backward``; the rest is targets, optimiser steps,
accuracy checks and Python overhead.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import console, environment, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--subset", default=None)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the original model")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UNLEARNKIT_STORE"] = str(Path(tmp) / "store")
        from unlearnkit.api.data import UnlearnData
        from unlearnkit.discovery.host import get_host
        from unlearnkit.engine.config import RunRequest, validate
        from unlearnkit.engine.runner import Runner
        from unlearnkit.engine.splits import make_splits
        from unlearnkit.store.mlflow_store import Store

        regs = get_host().registries
        plan = validate(
            RunRequest(
                dataset=args.dataset,
                model=args.model,
                methods=["lotus"],
                seeds=[3407],
                subset=args.subset,
                epochs=args.epochs,
                data_dir=args.data_dir,
                device=args.device,
            ),
            regs,
        )
        runner = Runner(plan, Store())
        raw = runner.load_data()
        idx = make_splits(raw.y_train, raw.y_test, plan.scenario, 3407, raw.class_names, plan.subset)
        splits = runner.splits_on_device(idx)
        train_idx = np.sort(np.concatenate([idx.forget, idx.retain]))
        original, _ = runner.obtain_model("original", 3407, splits["train"], train_idx, runner.benchmark_identity())
        entry = regs.methods.get("lotus")
        ctx = runner.context(3407, idx.forget_class, "lotus")
        options = plan.method_options(entry, ctx.setting)
        method = entry.cls(options)
        data = UnlearnData(splits, entry.cls.splits(), "lotus")
        method.unlearn(copy.deepcopy(original), data, ctx)  # warm-up
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        method.unlearn(copy.deepcopy(original), data, ctx)
        prof.disable()
        total = time.perf_counter() - start
    stats = pstats.Stats(prof)
    cum = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        key = None
        if func == "_call_impl" and file.endswith("torch/nn/modules/module.py"):
            key = "forward"
        elif func == "backward" and ("torch/_tensor.py" in file or "torch/autograd/__init__.py" in file):
            key = "backward"
        elif func in ("step",) and "torch/optim" in file:
            key = "optimizer"
        if key:
            cum[key] = max(cum.get(key, 0.0), ct)
    fwd, bwd = cum.get("forward", 0.0), cum.get("backward", 0.0)
    share = (fwd + bwd) / total
    out = {
        "total_s": total,
        "forward_s": fwd,
        "backward_s": bwd,
        "optimizer_s": cum.get("optimizer", 0.0),
        "fwd_bwd_share": share,
        "options": options.model_dump(),
        "n_forget": len(idx.forget),
        "n_retain": len(idx.retain),
        "environment": environment(runner.device),
    }
    console.print(
        f"LoTUS on {args.dataset}/{args.model}: {total:.2f} s; forward {fwd:.2f} s, backward {bwd:.2f} s, "
        f"optimiser {out['optimizer_s']:.2f} s -> forward+backward = {share:.1%} of the run"
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
