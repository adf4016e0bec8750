"""Data-parallel training with ``torchrun``: ranks, shards of global batches, and agreement.

Started by ``torchrun --nproc-per-node N -m unlearnkit run ...`` (or ``unlearnkit run --nproc N``,
which re-executes itself under torchrun), every process runs the same benchmark. Training loops
that support it (the original and retrained models, methods with ``distributed = True``) train a
``DistributedDataParallel`` wrapper; everything else is decided by rank 0 and shared:

* **shards** — every rank draws the same seeded global permutation and the same random numbers a
  single process draws (augmentation crops, LoTUS's Gumbel noise, random labels), for the whole
  global batch, then keeps its contiguous :class:`Part` of it. Losses are sums over the part
  scaled by ``world / global batch``, so DDP's gradient average is the gradient of the global
  batch mean, whatever the part sizes (even an empty part);
* **agreement** — only rank 0 talks to the store and evaluates. Decisions (reuse a cached model,
  train it, skip a finished run) go from rank 0 to the others through the process group's
  key-value store (:func:`on_main`, :func:`agree`): the other ranks poll it without a timeout, so
  they may wait for hours while rank 0 waits for another process's claim or runs a method alone;
  tensors (a reused model) follow by broadcast. Per-epoch numbers (losses, the divergence flag)
  are summed over the ranks (:meth:`World.sum`), so a NaN on one rank stops every rank alike.

Nothing here is used in a single process: there, every helper is the identity and the loops run
exactly the code they ran before (the same numbers, bit for bit).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from unlearnkit.errors import AgreementError, ConfigError, UnlearnkitError, shorten

T = TypeVar("T")

TIMEOUT_ENV = "UNLEARNKIT_DDP_TIMEOUT_S"  # seconds a collective (and the rendezvous) may wait
DEFAULT_TIMEOUT_S = 1800.0
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: longer than any run, and far inside timedelta's range
POLL_S = (0.02, 0.5)  # first and longest pause between two polls of the key-value store


# ------------------------------------------------------------------------------------ the world
@dataclass(frozen=True)
class Part:
    """This rank's rows ``[lo, hi)`` of a global batch of ``total`` samples split over ``world`` ranks."""

    lo: int
    hi: int
    total: int
    world: int = 1

    @property
    def whole(self) -> bool:
        """One process: the part is the global batch (every helper is then the identity)."""
        return self.world == 1

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def scale(self) -> float:
        """Multiplier of a sum of per-sample losses over this part: DDP averages the ranks'
        gradients, so ``sum * world / total`` on every rank yields the global batch mean's gradient."""
        return self.world / self.total

    def take(self, drawn: torch.Tensor) -> torch.Tensor:
        """The rows of this part from values drawn for the whole global batch."""
        return drawn if self.whole else drawn[self.lo : self.hi]

    def global_shape(self, shape: torch.Size) -> torch.Size:
        """The shape of a per-sample draw for the global batch, from the part's ``shape``."""
        return shape if self.whole else torch.Size((self.total, *shape[1:]))

    def loss_sum(self, loss: torch.Tensor) -> torch.Tensor:
        """This part's sum of per-sample losses, from the loss it back-propagates (a mean over the
        batch in one process, the scaled sum of :attr:`scale` on several ranks)."""
        return loss * self.total if self.whole else loss * (self.total / self.world)


def whole(total: int) -> Part:
    return Part(0, total, total, 1)


@dataclass(frozen=True)
class World:
    """The processes of one run: this one's rank among ``size``, and its GPU (``local_rank``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, total: int) -> Part:
        """Contiguous near-equal parts (sizes differ by at most one; the first ranks get the extra)."""
        if not self.active:
            return whole(total)
        q, r = divmod(total, self.size)
        lo = self.rank * q + min(self.rank, r)
        return Part(lo, lo + q + (1 if self.rank < r else 0), total, self.size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks (one all-reduce; the tensor itself in one process)."""
        if self.active:
            torch.distributed.all_reduce(tensor)
        return tensor

    def from_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed on rank 0 and broadcast: a decision every rank must take alike (LoTUS's
        per-epoch forget accuracy). A collective: rank 0 must not take longer than the timeout.
        The value travels as JSON bytes in a tensor (never a pickle), so it must be a JSON value or
        an :func:`agreeable` dataclass; every rank, rank 0 included, gets the decoded copy, so all
        hold the same type (a tuple comes back as a list everywhere)."""
        if not self.active:
            return fn()
        device = self._device()
        payload = encode_message("from_main", fn()) if self.main else b""
        size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
        torch.distributed.broadcast(size, src=0)
        if self.main:
            buf = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
        else:
            buf = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
        torch.distributed.broadcast(buf, src=0)
        _, value = decode_message(buf.cpu().numpy().tobytes(), "from_main")
        return value

    def _device(self) -> torch.device:
        """Where collectives run: this rank's GPU under nccl, the CPU under gloo."""
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def broadcast_state(self, model: nn.Module) -> nn.Module:
        """Rank 0's parameters and buffers on every rank (a reused model), in place."""
        if self.active:
            for tensor in model.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
        return model

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank, in place."""
        if self.active:
            for buf in model.buffers():
                torch.distributed.broadcast(buf, src=0)

    def same_everywhere(self, what: str, text: str) -> None:
        """Refuse, in one line and on every rank alike, ranks started with different ``text`` (the
        request each resolved): they would otherwise part at their first claim or collective, after
        rank 0 has written runs. A collective of one SHA-256 digest per rank (never the text itself)."""
        if not self.active:
            return
        digest = hashlib.sha256(text.encode()).digest()
        mine = torch.frombuffer(bytearray(digest), dtype=torch.uint8).to(self._device())
        gathered = [torch.empty_like(mine) for _ in range(self.size)]
        torch.distributed.all_gather(gathered, mine)
        differ = [rank for rank, got in enumerate(gathered) if not torch.equal(got, gathered[0])]
        if differ:
            raise ConfigError(
                f"The ranks were started with different {what}: rank {differ[0]}'s is not rank 0's. "
                "Start every rank with the same command and files."
            )

    def check_same(self, model: nn.Module, what: str) -> None:
        """Fail loudly if the ranks' copies of ``model`` differ (a sum and a sum of squares per
        tensor, gathered from every rank): a loop that let the ranks drift apart is a bug."""
        if not self.active:
            return
        with torch.no_grad():
            tensors = list(model.state_dict().values())
            sums = torch.stack([t.double().sum() for t in tensors] + [t.double().square().sum() for t in tensors])
            # NaN weights alike on every rank count as alike (the runner rejects them right after)
            sums = sums.nan_to_num(nan=1e300)
        gathered = [torch.empty_like(sums) for _ in range(self.size)]
        torch.distributed.all_gather(gathered, sums)
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError(f"{what}: the ranks hold different weights (a bug: every rank must train alike)")


SINGLE = World()
_world = SINGLE


def from_env() -> World:
    """The world torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).
    Checked here, before anything loads: a value torchrun never writes (``WORLD_SIZE=abc``, a rank
    past the world) is one line, not a traceback or a rendezvous that waits for the timeout."""
    size = _env_int("WORLD_SIZE", "1", "a number of processes, 1 or more", low=1)
    if size <= 1:
        return SINGLE
    rank = _env_int("RANK", None, f"a rank from 0 to {size - 1} (WORLD_SIZE is {size})", low=0, high=size)
    local_size = _env_int("LOCAL_WORLD_SIZE", str(size), f"from 1 to {size} (WORLD_SIZE)", low=1, high=size + 1)
    local = _env_int("LOCAL_RANK", "0", f"a rank on this machine from 0 to {local_size - 1}", low=0, high=local_size)
    timeout_s()  # checked with the rest, before the dataset loads
    rendezvous()  # where the ranks meet: torchrun always writes it
    return World(rank, size, local)


def rendezvous() -> tuple[str, int]:
    """``MASTER_ADDR`` and ``MASTER_PORT``, where the ranks meet (torchrun writes both). Without them
    (``WORLD_SIZE`` left set in a shell, the ranks started by hand) joining the process group was
    torch's traceback from deep inside its rendezvous; here it is one line."""
    addr = os.environ.get("MASTER_ADDR", "").strip()
    if not addr:
        raise ConfigError(
            f"MASTER_ADDR is not set in the environment, but WORLD_SIZE is {os.environ.get('WORLD_SIZE', '').strip()}: "
            "start the ranks with torchrun (or unset WORLD_SIZE to run one process)."
        )
    port = _env_int("MASTER_PORT", None, "a TCP port from 1 to 65535", low=1, high=65536)
    return addr, port


def _env_int(name: str, default: str | None, expected: str, low: int, high: int | None = None) -> int:
    """The integer environment variable ``name`` within ``[low, high)``; a one-line ConfigError naming
    its value and what is expected otherwise (``default`` None: it must be set)."""
    text = os.environ.get(name, "").strip() or default
    if text is None:
        raise ConfigError(f"{name} is not set in the environment: expected {expected}. Start the ranks with torchrun.")
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
    if value is None or value < low or (high is not None and value >= high):
        raise ConfigError(f"Bad {name} '{shorten(text)}' in the environment: expected {expected}.")
    return value


def world() -> World:
    """This process's world once :func:`init` joined the process group; one process otherwise."""
    return _world


def timeout_s() -> float:
    """``UNLEARNKIT_DDP_TIMEOUT_S``: a positive, finite number of seconds (timedelta refuses NaN, a
    negative timeout fails every collective at once, and an infinite one waits forever)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise ConfigError(
            f"Bad {TIMEOUT_ENV} '{shorten(text)}': expected seconds, more than 0 and at most {MAX_TIMEOUT_S:g} "
            f"(default {DEFAULT_TIMEOUT_S:g})."
        )
    return value


def init(device: torch.device) -> World:
    """Join the process group torchrun set up (gloo on the CPU, nccl on CUDA; each rank then uses
    the GPU of its ``LOCAL_RANK``). Idempotent; one process: nothing to do."""
    global _world
    env = from_env()
    if not env.active or _world.active:
        return _world
    import torch.distributed as dist

    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"Device '{device}' names one GPU, but {env.size} ranks run: use --device cuda (or auto), "
                "and each rank takes the GPU of its LOCAL_RANK."
            )
        torch.cuda.set_device(env.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        except dist.DistError as err:  # the other ranks never came, or the address cannot be reached
            raise RendezvousError(rendezvous_failure(env, err)) from None
        atexit.register(teardown)
    _world = env
    return env


class RendezvousError(UnlearnkitError):
    """The ranks did not meet: joining the process group failed or timed out (not bad input: exit 1)."""

    exit_code = 1


def rendezvous_failure(env: World, err: BaseException) -> str:
    """One line for a failed rendezvous: where rank ``env.rank`` waited, for how long, and torch's
    reason (its first line: the C++ error carries a stack of frames after it)."""
    addr, port = rendezvous()
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (
        f"Rank {env.rank} of {env.size} could not join the other ranks at {addr}:{port} within "
        f"{timeout_s():g} s ({shorten(reason, 200)}): start every rank (torchrun --nproc-per-node {env.size}), "
        f"or raise {TIMEOUT_ENV} if they start slowly."
    )


def refuse_under_torchrun(command: str) -> None:
    """Refuse ``unlearnkit <command>`` started by torchrun, in one line: only ``run`` is adapted. A
    sweep or a tuning study ran once per rank (each printing its board, rank 1 logging its own
    leaderboard run, the tuners' trials parting at their first claim)."""
    env = from_env()
    if env.active:
        raise ConfigError(
            f"'unlearnkit {command}' does not run under torchrun (WORLD_SIZE is {env.size}): only 'unlearnkit run' "
            "trains data-parallel (docs/distributed.md). Start it as one process."
        )


#: what gloo and nccl say on a rank whose peer exited or was killed in the middle of a collective
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted")


class PeerLostError(UnlearnkitError):
    """Another rank went away in the middle of a collective (not this rank's bug: exit 1)."""

    exit_code = 1


def peer_lost(err: BaseException) -> PeerLostError | None:
    """One line for a rank whose collective failed because another rank exited or was killed (the
    other rank's own error, or torchrun's, says why); None for anything else, which keeps its traceback."""
    if not _world.active or not isinstance(err, RuntimeError) or not any(s in str(err) for s in PEER_LOST):
        return None
    return PeerLostError(
        f"Rank {_world.rank} lost its connection to the other ranks: one of them exited or was killed (its own "
        "error says why). Run the same command again to resume."
    )


def teardown() -> None:
    """Leave the process group (at exit; harmless when never joined)."""
    global _world, _seq
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _world, _seq = SINGLE, 0


def barrier() -> None:
    if _world.active:
        torch.distributed.barrier()


# ---------------------------------------------------------------------------- agreement on rank 0
class MainRankError(UnlearnkitError):
    """Rank 0 failed at a step every rank waits on: the other ranks stop with its message."""


_seq = 0


def _kv() -> Any:
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


# The key-value store listens on the torchrun master port, reachable by anyone on the network: what
# the ranks exchange there is JSON, never a pickle, so a planted message cannot run code. Dataclasses
# travel as their fields and come back only as the classes registered here (the engine's claims and results).
_AGREEABLE: dict[str, type] = {}
_TYPE = "__agreed_type__"


def agreeable(*classes: type) -> None:
    """Let these dataclasses travel through :func:`agree` (encoded as their fields, rebuilt by name)."""
    for cls in classes:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a dataclass: agree sends JSON values and registered dataclasses")
        _AGREEABLE[cls.__qualname__] = cls


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__qualname__
        if _AGREEABLE.get(name) is not type(value):
            raise TypeError(f"agree cannot send a {name}: register it with torchrun.agreeable, or send JSON values")
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {_TYPE: name, **fields}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("agree sends JSON: dict keys must be strings")
        return {k: _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"agree cannot send a {type(value).__name__}: only JSON values and registered dataclasses")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if _TYPE not in value:
            return {k: _decode(v) for k, v in value.items()}
        cls = _AGREEABLE.get(str(value[_TYPE]))
        if cls is None:
            raise ValueError(f"unregistered type {value[_TYPE]!r}")
        return cls(**{k: _decode(v) for k, v in value.items() if k != _TYPE})
    return value


def encode_message(topic: str, value: Any) -> bytes:
    """What rank 0 writes for one :func:`agree` call: ``{"topic", "value"}`` as JSON."""
    return json.dumps({"topic": topic, "value": _encode(value)}).encode()


def decode_message(raw: bytes, key: str) -> tuple[str, Any]:
    """(topic, value) of a message rank 0 wrote; anything else (a pickle, bad JSON, an unknown
    type) is refused with :class:`AgreementError` and never turned into objects beyond JSON's own."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("topic"), str) or "value" not in doc:
            raise ValueError("not a {topic, value} message")
        return doc["topic"], _decode(doc["value"])
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise AgreementError(
            f"Rank {_world.rank} refused the message '{key}' on the torchrun key-value store: it is not what rank 0 "
            f"writes ({type(err).__name__}). Something else can reach the master port: run on a private network."
        ) from None


def agree(topic: str, value: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (small: JSON values, tuples come back as lists, and dataclasses
    registered with :func:`agreeable`). The other ranks wait for it as long as it takes, polling the
    process group's key-value store: no collective, so no timeout. Every rank must call ``agree`` in
    the same order; ``topic`` names the call (a mismatch is a bug, and raises)."""
    global _seq
    if not _world.active:
        return value
    _seq += 1
    key = f"unlearnkit/agree/{_seq}"
    kv = _kv()
    if _world.main:
        kv.set(key, encode_message(topic, value))
        return value
    pause = POLL_S[0]
    while not kv.check([key]):
        time.sleep(pause)
        pause = min(pause * 1.5, POLL_S[1])
    got_topic, got = decode_message(kv.get(key), key)
    if got_topic != topic:
        raise RuntimeError(f"ranks out of step: rank {_world.rank} waits on '{topic}', rank 0 sent '{got_topic}'")
    return got


def on_main(topic: str, fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 alone (the store, a claim, a download), its result shared with every
    rank through :func:`agree`. If it raises, the other ranks raise :class:`MainRankError` with the
    same message and exit code (rank 0 raises the original)."""
    if not _world.active:
        return fn()
    if _world.main:
        try:
            result = fn()
        except BaseException as err:
            code = err.exit_code if isinstance(err, UnlearnkitError) else 1
            agree(topic, ("error", f"{err}" or type(err).__name__, code))
            raise
        agree(topic, ("ok", result))
        return result
    outcome = agree(topic)
    if outcome[0] == "error":
        failure = MainRankError(outcome[1])
        failure.exit_code = outcome[2]
        raise failure
    return outcome[1]


class RankZeroOnly:
    """Stands in for the store on ranks other than 0: touching it is a bug, and raises."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"rank {_world.rank} used {self._what} ({name}): only rank 0 talks to it")


def main_first(topic: str, fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 first (it may download data or write a cache), then on the others; if
    it fails on rank 0, the others stop with its message instead of trying."""
    if not _world.active or not _world.main:
        on_main(topic, lambda: None)
        return fn()
    box: list[T] = []
    on_main(topic, lambda: box.append(fn()))
    return box[0]


# ------------------------------------------------------------------------------------ wrapping
def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


BATCHNORM_NOTICE = (
    "BatchNorm on {device}: each rank normalises its own share of the global batch (SyncBatchNorm needs "
    "CUDA), and the running statistics are rank 0's; results differ from a single process beyond rounding."
)


_noticed: list[bool] = []  # the BatchNorm notice, once per process


def _ddp_options() -> set[str]:
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    return set(inspect.signature(DistributedDataParallel.__init__).parameters)


class Wrapped:
    """A model trained through ``DistributedDataParallel``; on CUDA its BatchNorm layers are
    SyncBatchNorm while wrapped (sharing parameters and statistics with the originals), put back
    by :meth:`release`."""

    def __init__(self, model: nn.Module, device: torch.device, world: World, notify: Callable[[str], None]) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.model, self.world = model, world
        self.swapped: list[tuple[nn.Module, str, nn.Module]] = []
        synced = device.type == "cuda"
        if synced:
            for parent in list(model.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                        setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                        self.swapped.append((parent, name, child))
        elif has_batchnorm(model) and not _noticed:
            _noticed.append(True)
            notify(BATCHNORM_NOTICE.format(device=device.type.upper()))
        ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        # buffers: SyncBatchNorm keeps them equal; plain BatchNorm gets rank 0's before each forward
        # (torch >= 2.14 renamed the option; both sync at construction)
        sync_kw = "forward_sync_buffers" if "forward_sync_buffers" in _ddp_options() else "broadcast_buffers"
        # a performance hint DDP gives for weights with a size-1 dimension (a 1-channel patch
        # embedding): their gradients are copied into the bucket, the numbers are the same
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.module = DistributedDataParallel(model, device_ids=ids, **{sync_kw: not synced})

    def release(self) -> None:
        for parent, name, child in self.swapped:
            setattr(parent, name, child)
        self.swapped.clear()
        self.world.sync_buffers(self.model)


def relaunch(nproc: int, argv: list[str], device: str) -> None:
    """Re-execute ``unlearnkit <argv>`` under ``torchrun --standalone --nproc-per-node nproc``
    (replaces this process; the exit status is that of the rank that failed first, as in one process)."""
    import sys

    if from_env().active:
        raise ConfigError("--nproc: this command already runs under torchrun; leave --nproc out.")
    if device.startswith("cuda:"):
        raise ConfigError(f"--nproc {nproc} with --device {device}: use --device cuda (each rank takes one GPU).")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda and torch.cuda.device_count() < nproc:
        raise ConfigError(f"--nproc {nproc} needs {nproc} GPUs; this machine has {torch.cuda.device_count()}.")
    env = dict(os.environ)
    if not cuda and "OMP_NUM_THREADS" not in env:  # share the cores instead of torchrun's 1 thread each
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    # torchrun's own launcher, ending with the failed rank's exit status (parallel/launch.py)
    command = [sys.executable, "-m", "unlearnkit.parallel.launch", "--standalone", f"--nproc-per-node={nproc}"]
    command += ["-m", "unlearnkit", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def without_nproc(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` with ``--nproc N`` / ``--nproc=N`` removed, and whether it was there."""
    out: list[str] = []
    found = False
    it: Iterator[str] = iter(argv)
    for word in it:
        if word == "--nproc":
            next(it, None)
            found = True
        elif word.startswith("--nproc="):
            found = True
        else:
            out.append(word)
    return out, found
