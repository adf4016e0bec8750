"""Several models trained at once on one device: what makes shadow audits and ensembles cheap.

A small model trained alone leaves most of a device idle: on a GPU its kernels are too small to
fill it, on a CPU the intra-op threads of an 8x8 convolution mostly wait. Every strong evaluation
needs many such models (U-LiRA's shadow pairs, ensemble scores), so :func:`fit_many` trains a
pack of them together, each exactly as :func:`~unlearnkit.loops.training.fit` would train it alone
(its own seed, data order, augmentation draws and recipe), so a packed model is interchangeable
with one trained by itself and is stored under the same identity:

* ``threads`` — one worker thread per model, each running ``fit`` itself (on a GPU each on its own
  CUDA stream; on a CPU each with one intra-op thread, so W workers use W cores). The arithmetic is
  ``fit``'s own, so a packed model is bit-identical to one trained alone at one thread;
* ``stack`` — one model whose parameters are the pack's parameters stacked
  (``torch.func.stack_module_state``), its forward ``vmap``-ed over the pack: one kernel per layer
  for every model. The same maths as ``fit`` (per-model mean cross-entropy, element-wise optimiser
  steps), not the same kernels (a vmapped convolution is a grouped one), so weights agree to float
  tolerance, not bit for bit. Models whose batches differ in size at a step (a last partial batch)
  are forwarded one by one at that step, inside the same optimiser step.

``auto`` stacks on CUDA and uses threads on a CPU, where a grouped convolution is slower than the
separate ones it replaces (measured in ``benchmarks/ensemble.py``).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.context import TRAIN_STREAM, UnlearnContext
from unlearnkit.api.data import Split
from unlearnkit.errors import ConfigError
from unlearnkit.loops.accounting import ready_to_time
from unlearnkit.loops.threads import pinned_threads
from unlearnkit.loops.training import (
    Lookahead,
    TrainRecipe,
    cross_entropy,
    drops_single,
    fit,
    init_from_data,
    lr_lambda,
    raise_if_diverged,
    recipe_optimizer,
)

Strategy = Literal["auto", "threads", "stack"]
STRATEGIES: tuple[str, ...] = ("auto", "threads", "stack")
# The most models one pack holds when the choice is automatic (memory measured on CUDA, cores on a CPU).
AUTO_CAP = 16


@dataclass
class TrainJob:
    """One model to train: a freshly built network, its training split and its own context (seed)."""

    model: nn.Module
    split: Split
    ctx: UnlearnContext
    description: str


@dataclass
class Packed:
    """What one job of a pack came to: its share of the pack's wall time, or the error it raised."""

    seconds: float
    error: BaseException | None = None
    strategy: str = ""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_models_per_device(job: TrainJob, recipe: TrainRecipe) -> int:
    """How many models fit: on CUDA, the free memory over one model's measured training footprint
    (a forward and backward of one batch on a copy); on a CPU, one model per usable core."""
    device = job.ctx.device
    if device.type != "cuda":
        return max(1, min(usable_cores(), AUTO_CAP))
    probe = copy.deepcopy(job.model).to(device).train()
    x, y = next(job.split.batches(recipe.batch_size))
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with job.ctx.autocast():
        loss = F.cross_entropy(probe(x), y)
    loss.backward()
    # what the peak leaves out: the model itself, the optimiser's state (momentum, Adam moments: about two
    # more copies of the parameters) and the model's own training images on the device
    params = sum(p.numel() * p.element_size() for p in probe.parameters())
    images = job.split.x.numel() * job.split.x.element_size() if job.split.x is not None else 0
    footprint = torch.cuda.max_memory_allocated(device) - before + 3 * params + images
    del probe, loss
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(AUTO_CAP, int(0.8 * free // max(footprint, 1))))


def stackable(jobs: Sequence[TrainJob], recipe: TrainRecipe) -> str:
    """Why ``jobs`` cannot be stacked ('' when they can): one architecture, one device, one process,
    the same number of steps, no random layers (vmap would draw one dropout mask for all)."""
    first = jobs[0]
    shapes = {k: v.shape for k, v in first.model.state_dict().items()}
    steps = {job.split.num_batches(recipe.batch_size, drop_last=drops_single(job.split, recipe)) for job in jobs}
    if len(steps) > 1:
        return "their training sets take different numbers of steps"
    for job in jobs:
        if {k: v.shape for k, v in job.model.state_dict().items()} != shapes:
            return "they are not one architecture"
        if job.ctx.device != first.ctx.device or job.ctx.world.active:
            return "they do not train on one device in one process"
        if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in job.model.modules()):
            return "the model has dropout"
    return ""


def resolve_strategy(strategy: str, device: torch.device) -> str:
    """``auto``: stacked on CUDA, threads on a CPU (where a grouped convolution is the slower one)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown packing strategy '{strategy}'. Valid strategies: {', '.join(STRATEGIES)}.")
    if strategy == "auto":
        return "stack" if device.type == "cuda" else "threads"
    return strategy


def fit_many(
    jobs: Sequence[TrainJob],
    recipe: TrainRecipe,
    *,
    per_device: int | None,
    strategy: Strategy = "auto",
    on_done: Callable[[int], None] = lambda i: None,
) -> list[Packed]:
    """Train every job, ``per_device`` at a time (None: :func:`auto_models_per_device`); each job's
    model is trained in place and left in eval mode. A job that fails (diverges) is reported in
    its :class:`Packed`; the others go on. ``on_done(i)`` is called as job ``i`` finishes."""
    if not jobs:
        return []
    size = per_device if per_device is not None else auto_models_per_device(jobs[0], recipe)
    if resolve_strategy(strategy, jobs[0].ctx.device) == "stack":
        return _stacked_packs(jobs, recipe, size, on_done)
    return _threaded(jobs, recipe, size, on_done)


# ---------------------------------------------------------------------------------------- threads
def _threaded(
    jobs: Sequence[TrainJob], recipe: TrainRecipe, workers: int, on_done: Callable[[int], None]
) -> list[Packed]:
    """``workers`` threads, each training one job at a time with ``fit``; the wall time is shared."""
    on_cpu = jobs[0].ctx.device.type == "cpu"
    errors: list[BaseException | None] = [None] * len(jobs)

    def train(i: int) -> None:
        job = jobs[i]
        stream: AbstractContextManager = nullcontext()
        if job.ctx.device.type == "cuda":
            stream = torch.cuda.stream(torch.cuda.Stream(job.ctx.device))
        try:
            with stream:
                fit(job.model, job.split, recipe, job.ctx, description=job.description)
                if job.ctx.device.type == "cuda":
                    torch.cuda.current_stream(job.ctx.device).synchronize()
        except Exception as err:  # noqa: BLE001 - one model's failure is its own run's, not the pack's
            errors[i] = err
        on_done(i)

    # the longest first (a larger training set): the workers end together rather than one waiting on the last
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].split))
    ready_to_time()
    start = time.perf_counter()
    # one intra-op thread per model on a CPU: W workers keep W cores busy (and each model is deterministic)
    with pinned_threads(1 if on_cpu else None), ThreadPoolExecutor(max(1, min(workers, len(jobs)))) as pool:
        list(pool.map(train, order))
    share = (time.perf_counter() - start) / len(jobs)
    return [Packed(share, err, "threads") for err in errors]


# ---------------------------------------------------------------------------------------- stacked
def _stacked_packs(
    jobs: Sequence[TrainJob], recipe: TrainRecipe, size: int, on_done: Callable[[int], None]
) -> list[Packed]:
    """Packs of up to ``size`` jobs with equal step counts, stacked; every job that fits no such
    pack (alone in its step count, another architecture, dropout) trained by threads, together."""
    out: list[Packed | None] = [None] * len(jobs)
    by_steps: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        steps = job.split.num_batches(recipe.batch_size, drop_last=drops_single(job.split, recipe))
        by_steps.setdefault(steps, []).append(i)
    packs, rest = [], []
    for group in by_steps.values():
        for start in range(0, len(group), size):
            members = group[start : start + size]
            if len(members) > 1 and not stackable([jobs[i] for i in members], recipe):
                packs.append(members)
            else:
                rest += members
    for members in packs:
        for i, result in zip(members, _fit_stacked([jobs[i] for i in members], recipe)):
            out[i] = result
            on_done(i)
    if rest:
        threaded = _threaded([jobs[i] for i in rest], recipe, size, lambda j: on_done(rest[j]))
        for i, result in zip(rest, threaded):
            out[i] = result
    return [r for r in out if r is not None]


def _fit_stacked(jobs: Sequence[TrainJob], recipe: TrainRecipe) -> list[Packed]:
    """``fit`` for a pack at once: every model's batch forwarded by one vmapped call."""
    from torch.func import functional_call, stack_module_state, vmap

    models = [job.model.train() for job in jobs]
    for job in jobs:  # a network that initialises itself from its training images does so first, as in fit
        init_from_data(job.model, job.split)
    device = jobs[0].ctx.device
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def call(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (x,))

    together = vmap(call)

    def alone(i: int, x: torch.Tensor) -> torch.Tensor:
        return call({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()}, x)

    opt = recipe_optimizer(params.values(), recipe)
    drops = [drops_single(job.split, recipe) for job in jobs]
    steps = jobs[0].split.num_batches(recipe.batch_size, drop_last=drops[0])  # every job's (stackable)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(recipe, steps))
    gens = [job.ctx.generator(offset=TRAIN_STREAM) for job in jobs]
    # every model's weights and statistics, stacked: the moving average is element-wise, as each model's own
    lookahead = Lookahead([*params.values(), *buffers.values()], recipe, steps) if recipe.lookahead_every else None
    smoothing = recipe.label_smoothing
    taken = 0
    n = len(jobs)
    failed: list[BaseException | None] = [None] * n
    start = time.perf_counter()
    with jobs[0].ctx.steps(f"{jobs[0].description} and {n - 1} more, stacked", recipe.epochs * steps) as advance:
        for epoch in range(recipe.epochs):
            tally = torch.zeros(n, 3, dtype=torch.float64, device=device)  # [diverged, loss sum, correct]
            passes = [
                job.split.sharded_batches(recipe.batch_size, None, shuffle=True, augment=True, generator=g, drop_last=d)
                for job, g, d in zip(jobs, gens, drops)
            ]
            for batches in zip(*passes):
                xs, ys = [b[0] for b in batches], [b[1] for b in batches]
                with jobs[0].ctx.autocast():
                    if len({x.shape for x in xs}) == 1:
                        logits = list(together(params, buffers, torch.stack(xs)).unbind(0))
                    else:  # a last partial batch of another size: each model alone, one optimiser step still
                        logits = [alone(i, x) for i, x in enumerate(xs)]
                    losses = torch.stack([cross_entropy(z, y, label_smoothing=smoothing) for z, y in zip(logits, ys)])
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()  # model i's gradient is that of its own mean loss
                opt.step()
                sched.step()
                taken += 1
                if lookahead is not None:
                    lookahead.after_step(taken, epoch)
                detached = losses.detach().double()
                sizes = torch.tensor([len(y) for y in ys], dtype=torch.float64, device=device)
                correct = torch.stack([(z.detach().argmax(1) == y).sum() for z, y in zip(logits, ys)]).double()
                tally += torch.stack([(~torch.isfinite(detached)).double(), detached * sizes, correct], 1)
                advance()
            if lookahead is not None:
                lookahead.end_epoch()
            for i, (diverged, loss_sum, right) in enumerate(tally.tolist()):  # one host sync per epoch
                job = jobs[i]
                if failed[i] is None:
                    try:
                        raise_if_diverged(bool(diverged > 0), f"{job.description} (epoch {epoch + 1})")
                    except Exception as err:  # noqa: BLE001 - this model's run fails; the pack trains on
                        failed[i] = err
                seen = max(len(job.split) - drops[i], 1)  # fit's count: a dropped last image is not seen
                job.ctx.log("train_loss", loss_sum / seen, epoch)
                job.ctx.log("train_acc", right / seen, epoch)
    with torch.no_grad():  # the trained slices back into each job's own module
        for i, model in enumerate(models):
            for name, tensor in model.named_parameters():
                tensor.copy_(params[name][i])
            for name, tensor in model.named_buffers():
                tensor.copy_(buffers[name][i])
            model.eval()
    share = (time.perf_counter() - start) / n
    return [Packed(share, err, "stack") for err in failed]
