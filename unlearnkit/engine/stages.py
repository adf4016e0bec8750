"""The stages every stored row goes through — identify, claim, execute, record — as the pieces
that the benchmark runner (:mod:`.runner`), the audit's shadow rows (:mod:`unlearnkit.audit.runner`)
and tuning trials share, so that a new kind of run reuses them instead of re-writing them:

* :func:`row_tags`: what every row of a benchmark is tagged with (identify);
* :func:`owned`: a claimed run kept alive while it computes, released when done, marked failed
  with a one-line reason on any error (claim -> record);
* :func:`unlearn_copy`: a method applied to a private copy of a model, seeded, timed with the
  device synchronised, its weights checked finite (execute).
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
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.prepared import Benchmark, seed_everything, synchronize
from unlearnkit.errors import DivergenceError, UnlearnkitError
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
    }


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
    out = method.unlearn(model, data, ctx)
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


__all__ = ["failure_reason", "owned", "row_tags", "unlearn_copy"]
