"""Every tag key unlearnkit writes to or reads from the store, with its type and meaning: the
results contract the leaderboard, bundles, audits and tuning depend on, stated once.

Keys are written as ``unlearnkit.<name>`` (:func:`key`); an undeclared name is a programming
error, raised where it is used, and ``tests/test_tags.py`` checks that every literal the code
passes is declared. Changing a key's meaning changes what stored runs mean: add a key instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PREFIX = "unlearnkit"

Kind = Literal["text", "int", "float", "bool", "hash", "list", "json", "time"]


@dataclass(frozen=True)
class TagSpec:
    kind: Kind
    meaning: str


# name -> what it holds. "hash": a config_hash; "list": comma-separated; "time": seconds since the epoch.
TAGS: dict[str, TagSpec] = {
    # what a run is
    "run_type": TagSpec(
        "text",
        "unlearn, train (a reference model), audit, shadow, ensemble, ensemble-logits, leaderboard, tune, reproduction",
    ),
    "config_hash": TagSpec("hash", "the run's identity: everything that can change its numbers"),
    "unlearning_hash": TagSpec("hash", "the unlearned model's identity: the run without its evaluation"),
    "code": TagSpec("hash", "the method and metric code versions that made the numbers (newest shown)"),
    "versions": TagSpec(
        "list", "the method's plugin version, then each metric's (package:name@algorithm_version): what `code` hashes"
    ),
    "benchmark": TagSpec("hash", "the benchmark a run belongs to: one leaderboard per benchmark"),
    "creation": TagSpec("text", "a one-off nonce that makes run creation idempotent under retries"),
    # the benchmark's coordinates
    "dataset": TagSpec("text", "dataset plugin name"),
    "model": TagSpec("text", "model name as requested (timm/<name> included)"),
    "scenario": TagSpec("text", "forget-set rule with its parameters (e.g. instance:0.1)"),
    "protocol": TagSpec("text", "evaluation protocol: clean or paper"),
    "eval_draw": TagSpec("int", "which draw of the paper protocol's random crops evaluated the run (absent: 0)"),
    "seed": TagSpec("int", "the run's seed"),
    "train_recipe": TagSpec("text", "training recipe of the reference models"),
    "subset": TagSpec("text", "per-class count or fraction of the data, or full"),
    "splits": TagSpec("hash", "fingerprint of the split index sets"),
    "version": TagSpec("text", "unlearnkit release that ran it"),
    "device": TagSpec("text", "device type the run used (cpu, cuda)"),
    "threads": TagSpec("int", "torch's intra-op CPU threads the run used (torch.get_num_threads)"),
    "deterministic": TagSpec("bool", "torch.are_deterministic_algorithms_enabled() during the run"),
    "default_dtype": TagSpec("text", "torch's default floating dtype during the run (e.g. float32)"),
    "torch_version": TagSpec("text", "torch.__version__ of the process that ran it"),
    "world_size": TagSpec("int", "ranks of a data-parallel run (absent in one process)"),
    "models_per_device": TagSpec(
        "int", "a reference model trained in a pack of this many in one process (absent: trained alone)"
    ),
    # the method row
    "method": TagSpec("text", "method plugin name"),
    "access": TagSpec("text", "training data the method touches (none, forget, retain, forget+retain)"),
    "role": TagSpec("text", "original or retrained for reference rows"),
    "grid_point": TagSpec("text", "a recipe's option-grid point, e.g. lotus.alpha=8"),
    "sweep": TagSpec("text", "the sweep recipe the run belongs to"),
    "reproduction_table": TagSpec("text", "the published table a reproduction run judged"),
    "table_hash": TagSpec("hash", "sha256 of that table's file: which numbers the verdicts are against"),
    "tuning_trial": TagSpec("text", "study/trial of a tuning run (hidden from leaderboards)"),
    "original_run": TagSpec("text", "run id of the original model's training run"),
    "returned_mode": TagSpec("text", "train or eval: the mode the method returned its model in"),
    "info_keys": TagSpec("list", "metrics the method itself reported (UnlearnOutcome.info)"),
    "unlearning_s": TagSpec("float", "the method's own wall time, kept with its reused model"),
    "touched": TagSpec("list", "splits the method read"),
    "unlearned_in": TagSpec("text", "run whose unlearned model this run re-evaluated"),
    "weak_original": TagSpec("float", "memorisation gap of an original that fails the reference-quality rule"),
    "weak_original_reason": TagSpec("list", "the reference-quality rules the original failed: memorisation, learning"),
    "no_op": TagSpec("text", "weights or outputs: the unlearned model is indistinguishable from the original"),
    # plugin provenance: <kind>.plugin / .package / .version (Provenance.as_tags)
    **{
        f"{kind}.{field}": TagSpec("text", f"{kind} plugin's {what}")
        for kind in ("dataset", "model", "method")
        for field, what in (("plugin", "entry point"), ("package", "distribution"), ("version", "distribution version"))
    },
    # checkpoints
    "checkpoint_sha256": TagSpec("hash", "sha256 of a reference model's checkpoint artifact"),
    "model_sha256": TagSpec("hash", "sha256 of an unlearned model's artifact"),
    "logits_sha256": TagSpec(
        "hash", "sha256 of a logits artifact (an audit shadow row's pool, an ensemble member's splits)"
    ),
    # claims: who holds an unfinished run
    "host": TagSpec("text", "host of the process holding a run"),
    "pid": TagSpec("int", "process id holding a run"),
    "heartbeat": TagSpec("time", "last sign of life of a run's holder, on its own clock (shown, never judged)"),
    "beat": TagSpec("int", "holder's heartbeat counter: new each beat, judged by change on the judge's clock"),
    "ticket": TagSpec("int", "a claim's place in line: one above the highest ticket it saw (lowest live one works)"),
    "taken_over_from": TagSpec("list", "abandoned claims this run's claimant failed before it took the work"),
    "failure": TagSpec("text", "why a failed run failed (one line, at most 5000 characters)"),
    # bundles
    "imported_from": TagSpec("text", "bundle file a reference model was imported from"),
    "imported_times": TagSpec(
        "text",
        "untrusted or trusted: an imported model's train_time_s was measured on another machine; an untrusted "
        "one is never an RTE denominator (unlearnkit import --trust-times vouches for it)",
    ),
    # audits (U-LiRA)
    "audit": TagSpec("hash", "the audit group a target or shadow run belongs to"),
    "shadow": TagSpec("int", "index of a shadow model"),
    "shadows": TagSpec("int", "number of shadow pairs an audit used"),
    "shadow_original": TagSpec("text", "run id of the original a shadow was trained beside"),
    "mode": TagSpec("text", "U-LiRA mode: online or offline"),
    "fixed_variance": TagSpec("bool", "whether U-LiRA used one variance for all examples"),
    "ulira_power": TagSpec("text", "ok or underpowered (too few shadows for a publishable number)"),
    "ulira_nan": TagSpec("json", "why some U-LiRA columns are missing"),
    # ensemble scores (unlearnkit audit --scores)
    "model_key": TagSpec("hash", "identity of the model whose logits an ensemble-logits run caches"),
    "members": TagSpec("int", "number of ensemble members (repeated seeds) behind an ensemble score"),
    "scores": TagSpec("list", "the ensemble scores an ensemble run computed"),
    # tuning
    "study": TagSpec("text", "Optuna study name"),
    "recipe": TagSpec("text", "recipe a tuning or board run was made from"),
    "objective": TagSpec("text", "tuning objective"),
    "best_params": TagSpec("json", "best options found by a study"),
    "best_trial": TagSpec("int", "number of the best trial"),
}


def key(name: str) -> str:
    """The store key of a declared tag: ``unlearnkit.<name>``."""
    if name not in TAGS:
        raise KeyError(f"tag '{name}' is not declared in unlearnkit.store.tags.TAGS")
    return f"{PREFIX}.{name}"


__all__ = ["PREFIX", "TAGS", "TagSpec", "key"]
