"""ImageNet input throughput (images/s): decoding everything up front vs streaming lazily.

    python benchmarks/streaming.py --images 400 --workers 0,2,4 --batch-size 64 --json out.json

Builds a fake ``ILSVRC2012_img_train.tar`` in a temp dir (nested per-class tars of 500x375 JPEGs
of about 100 KB, like the real ones; val as ``val/<wnid>/`` folders), then measures

* eager: the ``imagenet`` plugin's first load (tar index + threaded decode to 224 px + cache
  write), the bare threaded decode, and the second load (from the decoded cache);
* lazy: the plugin's ``EncodedImages`` (an ImageArray) indexed in batches by a
  ``torch.utils.data.DataLoader`` with N workers (``sampler=BatchSampler(...)``, ``batch_size=None``,
  so each worker decodes a whole batch; ``pin_memory`` and a device copy when CUDA is there), one
  pass including the workers' start-up;
* forwarded: the same images decoded and pushed through a model (torchvision ResNet-18 by default)
  as an evaluation pass does, resident (decoded up front, uint8 on the device) against streamed
  through unlearnkit's ``Split``/``Stream`` with N workers, so the table shows whether decoding or
  the model is the bottleneck.

Images/s are the run's images over wall-clock seconds; decoding is CPU-bound, so the figures
scale with free cores: the machine's core count and load average are printed with them.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import console, environment, table, write_json

from unlearnkit_plugins.datasets.imagenet import ImageNet


def fake_jpeg(rng: np.random.Generator, h: int = 375, w: int = 500) -> bytes:
    """A photo-like JPEG: smooth colour regions plus sensor-like noise (about 100 KB at quality 90)."""
    from PIL import Image

    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    arr = np.clip(base + rng.normal(0, 16, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def build(root: Path, images: int, classes: int, seed: int = 0) -> float:
    """The fake archive in ``root``; returns the mean JPEG size in KB."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{10000000 + 1111 * k:08d}" for k in range(classes)]
    sizes = []
    inner = {}
    for k, wnid in enumerate(wnids):
        per_class = images // classes + (1 if k < images % classes else 0)
        files = {f"{wnid}_{i}.JPEG": fake_jpeg(rng) for i in range(per_class)}
        sizes += [len(b) for b in files.values()]
        inner[f"{wnid}.tar"] = _tar(files)
        (root / "val" / wnid).mkdir(parents=True)
        (root / "val" / wnid / f"ILSVRC2012_val_{k + 1:08d}.JPEG").write_bytes(fake_jpeg(rng))
    (root / "ILSVRC2012_img_train.tar").write_bytes(_tar(inner))
    return float(np.mean(sizes)) / 1e3


def row(what: str, n: int, seconds: float, **extra: object) -> dict:
    return {
        "path": what,
        **{k: str(v) for k, v in extra.items()},
        "images": n,
        "seconds": seconds,
        "img_s": n / seconds,
    }


def warm_up(root: Path, cache: Path) -> None:
    """Import PIL and touch the archive once, so the first timed path pays for nothing the others skip."""
    x = ImageNet(ImageNet.parse_options({"train_per_class": 4, "decode_budget_gb": 0})).load(root, cache).x_train
    x[np.arange(len(x))]


def eager(root: Path, cache: Path, threads: int) -> list[dict]:
    ds = ImageNet(ImageNet.parse_options({"train_per_class": "all", "val_per_class": 1, "decode_budget_gb": 1000}))
    t0 = time.perf_counter()
    raw = ds.load(root, cache)
    first = time.perf_counter() - t0
    n = len(raw.y_train) + len(raw.y_test)
    lazy = ImageNet(ImageNet.parse_options({"train_per_class": "all", "decode_budget_gb": 0})).load(root, cache)
    t0 = time.perf_counter()
    lazy.x_train.decode_all(threads=threads)
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds.load(root, cache)
    again = time.perf_counter() - t0
    return [
        row("eager: plugin load (index+decode+cache)", n, first, workers=f"{threads} threads"),
        row("eager: EncodedImages.decode_all", len(lazy.x_train), bare, workers=f"{threads} threads"),
        row("eager: plugin load from cache", n, again, workers="-"),
    ]


def lazy(root: Path, cache: Path, workers: int, batch: int, device: torch.device) -> dict:
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    raw = ImageNet(ImageNet.parse_options({"train_per_class": "all", "decode_budget_gb": 0})).load(root, cache)
    x = raw.x_train
    sampler = BatchSampler(RandomSampler(range(len(x)), generator=torch.Generator().manual_seed(0)), batch, False)
    loader = DataLoader(
        x,
        sampler=sampler,
        batch_size=None,  # the sampler yields index batches: one __getitem__ per batch
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    t0 = time.perf_counter()
    n = 0
    for images in loader:
        images = images.to(device, non_blocking=True)
        n += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return row("lazy: DataLoader over EncodedImages", n, time.perf_counter() - t0, workers=workers)


def forward_all(split, net: torch.nn.Module, batch: int, device: torch.device) -> tuple[int, float]:
    """One evaluation pass of ``split`` through ``net``: (images, seconds)."""
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        for x, _ in split.batches(batch):
            net(x)
            n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n, time.perf_counter() - t0


def forwarded(root: Path, tmp: Path, workers: list[int], batch: int, device: torch.device, model: str) -> list[dict]:
    """Images/s decoded *and* forwarded through a model, as an evaluation pass sees them: the
    resident path (everything decoded up front, uint8 on the device) against the streamed path
    (DataLoader workers decode while the model runs), on the same images in the same order."""
    import torchvision

    from unlearnkit.api.data import Preprocess, Split, Stream
    from unlearnkit.api.types import Augment

    options = {"train_per_class": "all", "val_per_class": 1}
    net = getattr(torchvision.models, model)(num_classes=1000).to(device).eval()
    pre = Preprocess.create(ImageNet.mean, ImageNet.std, (224, 224), Augment(), device, channels_last=True)
    net = net.to(memory_format=torch.channels_last)
    lazy = ImageNet(ImageNet.parse_options({**options, "decode_budget_gb": 0})).load(root, tmp / "index-cache")
    y = torch.as_tensor(lazy.y_train, device=device)
    forward_all(Split("warm-up", torch.zeros(batch, 3, 224, 224, dtype=torch.uint8, device=device), y[:batch], pre),
                net, batch, device)  # fmt: skip
    t0 = time.perf_counter()
    raw = ImageNet(ImageNet.parse_options({**options, "decode_budget_gb": 1000})).load(root, tmp / "fresh-cache")
    x = torch.as_tensor(raw.x_train).to(device)
    decode = time.perf_counter() - t0
    n, seconds = forward_all(Split("train", x, y, pre), net, batch, device)
    rows = [
        row(f"forwarded ({model}): resident, decode up front + forward", n, decode + seconds, workers="threads"),
        row(f"forwarded ({model}): resident, forward only", n, seconds, workers="-"),
    ]
    for w in workers:
        stream = Stream(lazy.x_train, np.arange(len(y)), workers=w)
        n, seconds = forward_all(Split("train", None, y, pre, stream=stream), net, batch, device)
        rows.append(row(f"forwarded ({model}): streamed, decode + forward", n, seconds, workers=w))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400, help="training images in the fake archive")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--workers", default=None, help="DataLoader worker counts, e.g. 0,2,8 (default: 0, 2, all cores)")
    ap.add_argument("--threads", type=int, default=None, help="eager decode threads (default: the plugin's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="resnet18", help="torchvision model for the forwarded rows ('none': skip them)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    workers = [int(w) for w in args.workers.split(",")] if args.workers else sorted({0, min(2, cpus), cpus})
    threads = args.threads or min(16, cpus)
    with tempfile.TemporaryDirectory(prefix="unlearnkit-streaming-") as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        t0 = time.perf_counter()
        kb = build(root, args.images, args.classes)
        console.print(f"built {args.images} JPEGs of 500x375 (mean {kb:.0f} KB) in {time.perf_counter() - t0:.1f} s")
        warm_up(root, Path(tmp) / "warm-up-cache")
        rows = eager(root, cache, threads) + [lazy(root, cache, w, args.batch_size, device) for w in workers]
        if args.model != "none":
            rows += forwarded(root, Path(tmp), workers, args.batch_size, device, args.model)
    env = {**environment(device), "cpu_count": cpus, "loadavg_1_5_15": os.getloadavg()}
    load = ", ".join(f"{v:.2f}" for v in env["loadavg_1_5_15"])
    table(f"ImageNet decoding to 3x224x224 uint8 on {env.get('gpu', env['cpu'])}, {cpus} CPUs, load {load}", rows)
    write_json(args.json, {"environment": env, "images": args.images, "jpeg_kb": kb, "rows": rows})


if __name__ == "__main__":
    main()
