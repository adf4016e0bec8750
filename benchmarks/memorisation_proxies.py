"""How well the cheap memorisation proxies track the shadow-model estimate: Spearman's rank
correlation over the training pool, as docs/protocols.md reports it.

    python benchmarks/memorisation_proxies.py --dataset digits --model cnn --shadows 8

The proxies (``confidence``, ``learning``) are read off the seed's original training run; the
estimate (``shadows:K``) trains, or reuses from the store, the audit's K shadow originals. All
three are the cached scores the ``memorised`` scenario draws by, so a second call trains nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import environment
from scipy.stats import spearmanr

from unlearnkit.api.progress import SILENT
from unlearnkit.discovery.host import PluginHost
from unlearnkit.engine.config import RunRequest, validate
from unlearnkit.engine.memorisation import ScoreBook, score_source
from unlearnkit.engine.prepared import Benchmark
from unlearnkit.store.mlflow_store import Store


def correlations(scores: dict[str, np.ndarray], estimate: str) -> dict[str, float]:
    """Spearman's rho of every proxy against the estimate, over the images that have a score."""
    truth = scores[estimate]
    keep = ~np.isnan(truth)
    return {
        name: float(spearmanr(values[keep], truth[keep]).statistic)
        for name, values in scores.items()
        if name != estimate
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--subset", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-recipe", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--shadows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    fields = {
        "train_recipe": args.train_recipe,
        "epochs": args.epochs,
        "data_dir": Path(args.data_dir) if args.data_dir else None,
    }
    request = RunRequest(
        dataset=args.dataset,
        model=args.model,
        methods=["original"],
        seeds=[args.seed],
        subset=args.subset,
        device="cpu",
        forget=f"memorised:high:0.05:shadows:{args.shadows}",
        **{k: v for k, v in fields.items() if v is not None},
    )
    bench = Benchmark(validate(request, PluginHost().registries), SILENT, scores=score_source)
    bench.store = Store(args.tracking_uri) if args.tracking_uri else Store()
    book = ScoreBook(bench, args.seed)
    estimate = f"shadows:{args.shadows}"
    scores = {name: book(name) for name in ("confidence", "learning", estimate)}
    rho = correlations(scores, estimate)
    pool = int((~np.isnan(scores[estimate])).sum())
    print(f"{args.dataset}/{args.model}, {pool} training images, seed {args.seed}, estimate {estimate}")
    for name, value in rho.items():
        print(f"  {name:<10} Spearman rho vs {estimate}: {value:+.3f}")
    print(json.dumps({"spearman": rho, "pool": pool, "environment": environment(bench.device)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
