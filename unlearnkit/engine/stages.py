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
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from unlearnkit.api.context import UnlearnContext
from unlearnkit.api.contracts import Method, UnlearnOutcome
from unlearnkit.api.data import Split, UnlearnData
from unlearnkit.api.evaluation import Evaluation
from unlearnkit.api.outcome import returned_outcome
from unlearnkit.discovery.registry import Entry
from unlearnkit.engine.prepared import Benchmark, seed_everything, synchronize
from unlearnkit.errors import ConfigError, DivergenceError, PluginError, UnlearnkitError, shorten
from unlearnkit.loops.accounting import ready_to_time
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
    reports one. Raises DivergenceError on non-finite weights (``where`` says on what), and
    PluginError, one line naming the method, when it breaks the method contract (what it returns,
    torch's global settings or the shared splits it leaves changed, a ``sys.exit``)."""
    method = entry.cls(options)
    model = copy.deepcopy(original).train()
    seed_everything(seed)
    synchronize(ctx.device)
    watch = LeftAlone(data)
    ready_to_time()
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
    except SystemExit as err:
        if from_signal_handler(err):
            raise  # a SIGTERM handler's exit (Ray's): the process is asked to stop
        raise PluginError(
            f"Method '{entry.name}' called sys.exit({shorten(repr(err.code))}) in unlearn{where}: raise an "
            "exception instead, which fails its own row and lets the other methods run."
        ) from None
    finally:  # later methods run under the settings every method starts from, however this one ended
        watch.restore()
    ctx.release()  # several ranks: BatchNorm layers back, rank 0's buffers everywhere (one process: nothing)
    synchronize(ctx.device)
    elapsed = time.perf_counter() - start
    watch.check(entry.name, where)
    outcome = returned_outcome(entry.cls, out, original, ctx, where)
    if outcome.time_s is None:
        outcome.time_s = elapsed
    ctx.world.check_same(outcome.model, f"Method '{entry.name}'")
    if not all(torch.isfinite(p).all() for p in outcome.model.parameters()):
        raise DivergenceError(f"Method '{entry.name}' produced non-finite weights{where}.")
    return outcome


# ------------------------------------------------------------------------ the method contract
#: torch's process-wide settings a method could leave changed for every later method: name -> (get, set)
TORCH_SETTINGS: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "grad mode": (torch.is_grad_enabled, torch.set_grad_enabled),
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype),
    "deterministic algorithms": (
        lambda: (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1]),
    ),
    "thread count": (torch.get_num_threads, torch.set_num_threads),
    "float32 matmul precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    "anomaly detection": (torch.is_anomaly_enabled, torch.set_anomaly_enabled),
    "cudnn benchmark": (
        lambda: torch.backends.cudnn.benchmark,
        lambda v: setattr(torch.backends.cudnn, "benchmark", v),
    ),
    "cudnn deterministic": (
        lambda: torch.backends.cudnn.deterministic,
        lambda v: setattr(torch.backends.cudnn, "deterministic", v),
    ),
}


def torch_settings() -> dict[str, Any]:
    """torch's process-wide settings now, to restore after a method (see :data:`TORCH_SETTINGS`)."""
    return {name: get() for name, (get, _) in TORCH_SETTINGS.items()}


def restore_torch_settings(before: dict[str, Any]) -> list[str]:
    """Put back every setting that differs from ``before``; returns what had changed, as ``name (was -> now)``."""
    changed = []
    for name, (get, put) in TORCH_SETTINGS.items():
        now = get()
        if now != before[name]:
            changed.append(f"{name} ({before[name]} -> {now})")
            put(before[name])
    return changed


#: per split a method may reach: its labels, a copy of them, and the in-place write counters of its labels
#: and images (torch bumps a tensor's ``_version`` on every in-place write, through views too)
SplitSnapshot = dict[str, tuple[torch.Tensor, torch.Tensor, int, int | None]]


def split_labels(data: UnlearnData) -> SplitSnapshot:
    """The splits ``data`` hands out (the very Split objects every later method and metric reads), with
    their labels copied: labels are small, images are not (those are only watched)."""
    splits = real_splits(data)
    return {name: (s.y, s.y.clone(), s.y._version, None if s.x is None else s.x._version) for name, s in splits.items()}


def real_splits(data: UnlearnData) -> dict[str, Split]:
    """The splits ``data`` holds (the very objects every later method and metric reads), less stand-ins
    such as tuning's sealed test split, which nothing may read."""
    return {name: s for name, s in data._splits.items() if isinstance(s, Split)}


def restore_labels(before: SplitSnapshot) -> list[str]:
    """Copy back the labels of every split the method wrote into; returns those splits' names."""
    written = []
    for name, (labels, saved, version, _) in before.items():
        if labels._version != version:
            written.append(name)
            labels.copy_(saved)
    return written


def written_images(data: UnlearnData, before: SplitSnapshot) -> list[str]:
    """The splits whose images the method wrote into in place (they cannot be put back)."""
    images = {name: s.x for name, s in real_splits(data).items() if s.x is not None}
    return [name for name, (_, _, _, seen) in before.items() if name in images and images[name]._version != seen]


class ImagesWritten(PluginError):
    """A method wrote into a shared split's images, which (unlike labels) are not kept to put back: every
    later row of this seed would read the changed images, so a runner stops instead of going on."""


class LeftAlone:
    """What a method may not leave changed, taken before it runs: torch's settings and the shared splits'
    labels (:func:`restore` puts both back, however the method ended) and images (watched only); then
    :meth:`check` fails the method that changed any of them."""

    def __init__(self, data: UnlearnData) -> None:
        self.data, self.settings, self.labels = data, torch_settings(), split_labels(data)
        self.changed: list[str] = []
        self.written: list[str] = []

    def restore(self) -> None:
        self.changed, self.written = restore_torch_settings(self.settings), restore_labels(self.labels)

    def check(self, method: str, where: str = "") -> None:
        check_left_alone(method, self.changed, self.written, written_images(self.data, self.labels), where)


def check_left_alone(method: str, changed: list[str], labels: list[str], images: list[str], where: str = "") -> None:
    """PluginError when the method left torch's settings changed (now restored) or wrote in place into
    the labels (now restored) or images of a split: later methods would run on other settings or data."""
    if changed:
        raise PluginError(
            f"Method '{method}' left torch's global {', '.join(changed)}{where}: set back what it changes "
            "(with torch.no_grad(): ..., not torch.set_grad_enabled(False)); restored for the methods after it."
        )
    if labels or images:
        what = "labels" if not images else "images" if not labels else "labels and images"
        fixed = "restored for the methods after it" if not images else "the methods after it read the changed images"
        raise (ImagesWritten if images else PluginError)(
            f"Method '{method}' wrote in place into the {what} of the {', '.join(sorted({*labels, *images}))} "
            f"split{where}: clone a tensor before changing it, every later method and metric reads them; {fixed}."
        )


def from_signal_handler(err: SystemExit) -> bool:
    """Whether ``err`` was raised by an installed Python signal handler (a SIGTERM turned into an exit)
    rather than by a plugin's own ``sys.exit``."""
    handlers = set()
    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", signal.SIGTERM)):
        code = getattr(signal.getsignal(signum), "__code__", None)
        if code is not None:
            handlers.add(code)
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in handlers:
            return True
        tb = tb.tb_next
    return False


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
    "ImagesWritten",
    "LeftAlone",
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
