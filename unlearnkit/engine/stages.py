"""The stages every stored row goes through — identify, claim, execute, record — as the pieces
that the benchmark runner (:mod:`.runner`), the audit's shadow rows (:mod:`unlearnkit.audit.runner`)
and tuning trials share, so that a new kind of run reuses them instead of re-writing them:

* :func:`row_tags`: what every row of a benchmark is tagged with (identify);
* :func:`owned`: a claimed run kept alive while it computes, released when done, marked failed
  with a one-line reason on any error (claim -> record);
* :func:`unlearn_copy`: a method applied to a private copy of a model, seeded, timed with the
  device synchronised, its weights checked finite (execute);
* :func:`equal_state`, :func:`same_outputs`: whether the method changed anything at all (a no-op).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Method, UnlearnOutcome
from unlearnkit.api.data import UnlearnData
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.prepared import Benchmark, seed_everything, synchronize
from unlearnkit.errors import ConfigError, DivergenceError, UnlearnkitError
from unlearnkit.store import claims
from unlearnkit.store.mlflow_store import Store, tag


def row_tags(bench: Benchmark, seed: int, entry: Entry[Method], run_type: str, key: str) -> dict[str, str]:
    """The tags of one method's row of ``bench`` at ``seed``: the benchmark's own, what the row is
    (run type, method, its data access and role, its identity) and where the method comes from."""
    return {
        **bench.tags(seed),
        tag("run_type"): run_type,
        tag("method"): entry.name,
        tag("access"): entry.cls.access.value,
        tag("role"): entry.cls.role or "",
        tag("config_hash"): key,
        tag("benchmark"): bench.key,
        **entry.provenance.as_tags(tag("method")),
        **numerics_tags(),
    }


def numerics() -> dict[str, str]:
    """The numeric settings a CPU result depends on besides its identity, as torch reports them now:
    the same command and seed give bit-identical numbers only where these match (docs/protocols.md)."""
    return {
        "threads": str(torch.get_num_threads()),
        "deterministic": str(torch.are_deterministic_algorithms_enabled()).lower(),
        "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        "torch_version": torch.__version__,
    }


def numerics_tags() -> dict[str, str]:
    """:func:`numerics` as the store tags every run carries (the device is ``Benchmark.tags``')."""
    return {tag(name): value for name, value in numerics().items()}


def failure_reason(err: BaseException) -> str:
    """A failed run's one-line reason: a method's own failure as it says it, anything else typed."""
    return str(err) if isinstance(err, UnlearnkitError) else f"{type(err).__name__}: {err}"


@contextmanager
def owned(store: Store, run_id: str) -> Iterator[None]:
    """Work on a run this process claimed: its heartbeat refreshed meanwhile, the claim released
    when the block ends, the run marked failed (and the error raised on) when it does not."""
    try:
        with claims.heartbeat(store, run_id):
            yield
        claims.release(store, run_id)
    except BaseException as err:
        store.fail(run_id, failure_reason(err))
        raise


#: torch's words when a train-mode BatchNorm meets a single value per channel (a batch of one image
#: at 1x1 resolution): the method was handed a forget set or batch size it cannot run on, not a bug.
SINGLE_IMAGE_BATCHNORM = "Expected more than 1 value per channel when training"


def unlearn_copy(
    entry: Entry[Method],
    options: Any,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    seed: int,
    *,
    where: str = "",
) -> UnlearnOutcome:
    """``entry``'s method on a private copy of ``original`` (the method may train it in place),
    seeded, timed with the device synchronised; the outcome's time is the method's own when it
    reports one. Raises DivergenceError on non-finite weights (``where`` says on what)."""
    method = entry.cls(options)
    model = copy.deepcopy(original).train()
    seed_everything(seed)
    synchronize(ctx.device)
    start = time.perf_counter()
    try:
        out = method.unlearn(model, data, ctx)
    except ValueError as err:
        if SINGLE_IMAGE_BATCHNORM not in str(err):
            raise  # the method's own bug, with its traceback
        raise ConfigError(
            f"Method '{entry.name}' passed a batch of one image through a BatchNorm layer in train mode, which "
            f"cannot normalise it{where}: use a forget set, or a batch size, that leaves no batch of one image."
        ) from err
    ctx.release()  # several ranks: BatchNorm layers back, rank 0's buffers everywhere (one process: nothing)
    synchronize(ctx.device)
    elapsed = time.perf_counter() - start
    outcome = out if isinstance(out, UnlearnOutcome) else UnlearnOutcome(out)
    if outcome.time_s is None:
        outcome.time_s = elapsed
    ctx.world.check_same(outcome.model, f"Method '{entry.name}'")
    if not all(torch.isfinite(p).all() for p in outcome.model.parameters()):
        raise DivergenceError(f"Method '{entry.name}' produced non-finite weights{where}.")
    return outcome


# A method whose model answers like the original is a no-op, whatever it did to the weights: on every
# split evaluated, the same predicted class for every image and no softmax probability more than
# NO_OP_TOLERANCE away (docs/protocols.md). Every metric is then the original's to about three decimals.
NO_OP_TOLERANCE = 1e-3


def equal_state(model: nn.Module, original: nn.Module) -> bool:
    """Whether ``model`` holds exactly the original's weights and buffers (a method that changed nothing)."""
    mine, theirs = model.state_dict(), original.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k].to(mine[k].device)) for k in mine)


def same_outputs(ev: Evaluation, tolerance: float = NO_OP_TOLERANCE) -> bool:
    """Whether the unlearned model's outputs in ``ev`` are the original's on every split ``ev``
    forwarded it on (D_f among them): same predictions, probabilities within ``tolerance``."""
    mine = {split: out for (_, split, pass_), out in ev.own.logits.items() if pass_ == "eval"}
    if "forget" not in mine:
        return False
    for split, out in mine.items():
        theirs = ev.logits("original", split)
        if not torch.equal(out.argmax(1), theirs.argmax(1)):
            return False
        if float((out.float().softmax(1) - theirs.float().softmax(1)).abs().max()) > tolerance:
            return False
    return True


__all__ = [
    "NO_OP_TOLERANCE",
    "equal_state",
    "failure_reason",
    "numerics",
    "numerics_tags",
    "owned",
    "row_tags",
    "same_outputs",
    "unlearn_copy",
]
