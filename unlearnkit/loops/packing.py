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
  are forwarded one by one at that step, inside the same optimiser step. A pack that cannot be
  stacked (:func:`stackable`, :func:`vmap_problem`) is trained with threads.

``auto`` stacks on CUDA and uses threads on a CPU, where a grouped convolution is slower than the
separate ones it replaces (measured in ``benchmarks/ensemble.py``).

An interrupt (Ctrl-C) stops every model of the pack at its next optimiser step, and :func:`fit_many`
returns: the models that had finished are reported trained (their caller keeps them, so a resumed
run does not train them again), every other one with the interrupt as its error.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.api.context import TRAIN_STREAM, UnlearnContext
from unlearnkit.api.data import Split
from unlearnkit.api.progress import Reporter
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

T = TypeVar("T")
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


def vmap_problem(jobs: Sequence[TrainJob], recipe: TrainRecipe) -> str:
    """Why the pack's training step cannot be vmapped ('' when it can): a random op (functional
    dropout, drop-path), data-dependent control flow or ``.item()`` in the forward would fail the
    whole pack at its first step, where threads train every model. One trial step of copies of two
    of them on the first batch finds out, under a forked RNG: the jobs' models and streams untouched."""
    from torch.func import functional_call, stack_module_state, vmap

    device = jobs[0].ctx.device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            copies = [copy.deepcopy(job.model).train() for job in jobs[:2]]
            for model, job in zip(copies, jobs):
                init_from_data(model, job.split)
            params, buffers = stack_module_state(copies)
            skeleton = copy.deepcopy(copies[0]).to("meta")
            x, y = next(iter(jobs[0].split.batches(recipe.batch_size)))

            def call(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                return functional_call(skeleton, (p, b), (x,))

            with jobs[0].ctx.autocast():
                logits = vmap(call)(params, buffers, torch.stack([x] * len(copies)))
                loss = F.cross_entropy(logits.flatten(0, 1), y.repeat(len(copies)))
            loss.backward()
    except Exception as err:  # noqa: BLE001 - whatever vmap cannot run, a thread per model can
        detail = (str(err).strip().splitlines() or [""])[0][:160]
        return f"their training step cannot be vmapped ({type(err).__name__}: {detail})"
    return ""


def resolve_strategy(strategy: str, device: torch.device) -> str:
    """``auto``: stacked on CUDA, threads on a CPU (where a grouped convolution is the slower one)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown packing strategy '{strategy}'. Valid strategies: {', '.join(STRATEGIES)}.")
    if strategy == "auto":
        return "stack" if device.type == "cuda" else "threads"
    return strategy


def check_per_device(per_device: int | None) -> None:
    """Refuse a pack size of 0 or less: threads would quietly train one at a time, stacking would crash."""
    if per_device is not None and (isinstance(per_device, bool) or per_device < 1):
        raise ConfigError(f"Bad per_device {per_device!r}: expected a whole number of 1 or more, or None (auto).")


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
    its :class:`Packed`; the others go on. ``on_done(i)`` is called as job ``i`` finishes. On an
    interrupt it returns, every unfinished job's error the interrupt (the caller re-raises it)."""
    check_per_device(per_device)
    if not jobs:
        return []
    size = per_device if per_device is not None else auto_models_per_device(jobs[0], recipe)
    if resolve_strategy(strategy, jobs[0].ctx.device) == "stack":
        return _stacked_packs(jobs, recipe, size, on_done)
    return _threaded(jobs, recipe, size, on_done)


# ---------------------------------------------------------------------------------------- threads
class _Stop(BaseException):
    """Raised in a worker's training at its next step once the pack is interrupted (only the main
    thread receives Ctrl-C); a BaseException, so that no ``except Exception`` swallows it."""


class _Stoppable(Reporter):
    """A job's own reporter whose step counter raises :class:`_Stop` once ``stop`` is set: ``fit``
    advances it after every optimiser step, so an interrupted worker ends within one step instead
    of training its model to the end (an hour, for a large one) while the process waits."""

    def __init__(self, inner: Reporter, stop: threading.Event) -> None:
        self.inner, self.stop = inner, stop
        self.taken, self.total = 0, 0

    @property
    def done(self) -> float:
        """The part of its training this job did (1 when it ended, 0 when it never stepped)."""
        return self.taken / self.total if self.total else 0.0

    def track(self, iterable: Iterable[T], total: int | None = None, description: str = "") -> Iterator[T]:
        return self.inner.track(iterable, total=total, description=description)

    @contextmanager
    def steps(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        self.total = total
        with self.inner.steps(description, total) as advance:

            def step() -> None:
                advance()
                self.taken += 1
                if self.stop.is_set():
                    raise _Stop

            yield step

    def counter(self, description: str, total: int) -> Callable[[], None]:
        return self.inner.counter(description, total)

    def event(self, message: str) -> None:
        self.inner.event(message)

    def warn(self, message: str) -> None:
        self.inner.warn(message)


def _run_all(
    pool: ThreadPoolExecutor, train: Callable[[int], None], order: Sequence[int], stop: threading.Event
) -> KeyboardInterrupt | None:
    """Every job on the pool, waited for; on Ctrl-C, start no more and stop the running ones at
    their next step (the pool's exit then waits a step, not a training). Returns the interrupt."""
    futures: list[Future[None]] = []
    try:
        for i in order:
            futures.append(pool.submit(train, i))
        for future in futures:
            future.result()
    except KeyboardInterrupt as err:
        stop.set()
        for future in futures:
            future.cancel()
        return err
    return None


def _threaded(
    jobs: Sequence[TrainJob], recipe: TrainRecipe, workers: int, on_done: Callable[[int], None]
) -> list[Packed]:
    """``workers`` threads, each training one job at a time with ``fit``; the wall time is shared
    by the work done (every job, uninterrupted). Interrupted, every job not trained to its end gets
    the interrupt, and a finished one's share is of the wall time over the trainings it paid for
    (the finished ones, and the parts of the stopped ones), not over the jobs never started."""
    on_cpu = jobs[0].ctx.device.type == "cpu"
    errors: list[BaseException | None] = [None] * len(jobs)
    work, ended = [0.0] * len(jobs), [False] * len(jobs)
    stop = threading.Event()

    def train(i: int) -> None:
        job = jobs[i]
        if stop.is_set():  # taken from the queue as the interrupt came: never started
            return
        stream: AbstractContextManager = nullcontext()
        if job.ctx.device.type == "cuda":
            stream = torch.cuda.stream(torch.cuda.Stream(job.ctx.device))
        reporter = job.ctx.reporter
        job.ctx.reporter = stoppable = _Stoppable(reporter, stop)
        try:
            with stream:
                fit(job.model, job.split, recipe, job.ctx, description=job.description)
                if job.ctx.device.type == "cuda":
                    torch.cuda.current_stream(job.ctx.device).synchronize()
        except _Stop:
            work[i] = stoppable.done
            return
        except Exception as err:  # noqa: BLE001 - one model's failure is its own run's, not the pack's
            errors[i] = err
        finally:
            job.ctx.reporter = reporter
        work[i], ended[i] = 1.0, True
        on_done(i)

    # the longest first (a larger training set): the workers end together rather than one waiting on the last
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].split))
    ready_to_time()
    start = time.perf_counter()
    # one intra-op thread per model on a CPU: W workers keep W cores busy (and each model is deterministic)
    with pinned_threads(1 if on_cpu else None), ThreadPoolExecutor(max(1, min(workers, len(jobs)))) as pool:
        interrupt = _run_all(pool, train, order, stop)
    # uninterrupted: every job's work is 1, so this is the wall time over the jobs
    share = (time.perf_counter() - start) / (len(jobs) if interrupt is None else max(sum(work), 1e-9))
    if interrupt is not None:
        errors = [err if done else interrupt for err, done in zip(errors, ended)]
    return [Packed(share, err, "threads") for err in errors]


# ---------------------------------------------------------------------------------------- stacked
def _stacked_packs(
    jobs: Sequence[TrainJob], recipe: TrainRecipe, size: int, on_done: Callable[[int], None]
) -> list[Packed]:
    """Packs of up to ``size`` jobs with equal step counts, stacked; every job that fits no such
    pack (alone in its step count, another architecture, dropout, a forward vmap cannot run)
    trained by threads, together."""
    out: list[Packed | None] = [None] * len(jobs)
    by_steps: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        steps = job.split.num_batches(recipe.batch_size, drop_last=drops_single(job.split, recipe))
        by_steps.setdefault(steps, []).append(i)
    packs, rest = [], []
    for group in by_steps.values():
        for start in range(0, len(group), size):
            members = group[start : start + size]
            pack = [jobs[i] for i in members]
            if len(members) > 1 and not (stackable(pack, recipe) or vmap_problem(pack, recipe)):
                packs.append(members)
            else:
                rest += members
    for members in packs:
        began = time.perf_counter()
        try:
            results = _fit_stacked([jobs[i] for i in members], recipe)
            for i, result in zip(members, results):
                out[i] = result
            for i in members:
                on_done(i)
        except KeyboardInterrupt as err:  # this pack (unless trained) and every later one unfinished
            spent = (time.perf_counter() - began) / len(members)
            return [r or Packed(spent if i in members else 0.0, err, "stack") for i, r in enumerate(out)]
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
