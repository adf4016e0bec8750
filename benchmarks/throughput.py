"""Training and inference throughput (images/s) per model and resolution.

    python benchmarks/throughput.py --models resnet18,cnn --sizes 32 --batch-size 512 --json out.json

Training = forward + backward + SGD step under the toolkit's settings (bf16 autocast and
channels-last on CUDA); inference = forward under ``torch.inference_mode``. Data is random but
resident on the device, so the figure is the model's, not the input pipeline's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import environment, sync, table, timed, write_json

from unlearnkit.api.types import ImageSpec
from unlearnkit.discovery.host import get_host
from unlearnkit.loops.training import make_optimizer


def measure(
    name: str,
    size: int,
    channels: int,
    classes: int,
    batch: int,
    steps: int,
    device: torch.device,
    compile_model: bool,
    pretrained: bool,
) -> dict:
    entry, variant = get_host().registries.model(name)
    model_obj = entry.cls(variant=variant, pretrained=pretrained)
    spec = ImageSpec(channels, size, size, classes)
    model = model_obj.build(spec).to(device)
    h, w = model_obj.input_size(spec)
    cl = device.type == "cuda" and model_obj.channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, h, w, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    run_model = torch.compile(model) if compile_model else model
    opt = make_optimizer(model.parameters(), "sgd", 0.01, momentum=0.9, weight_decay=5e-4)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )

    def train_steps(n: int) -> None:
        model.train()
        for _ in range(n):
            with amp:
                loss = F.cross_entropy(run_model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.inference_mode()
    def infer_steps(n: int) -> None:
        model.eval()
        for _ in range(n):
            with amp:
                run_model(x)

    warm = 3 if device.type == "cuda" else 1
    train_steps(warm)
    train_s = timed(lambda: train_steps(steps), device)
    infer_steps(warm)
    infer_s = timed(lambda: infer_steps(steps * 2), device)
    sync(device)
    return {
        "model": name,
        "input": f"{channels}x{h}x{w}",
        "batch": batch,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_img_s": batch * steps / train_s,
        "infer_img_s": batch * steps * 2 / infer_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn,resnet20,resnet18,vit")
    ap.add_argument("--sizes", default="32")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 512 on CUDA, 64 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="default: 30 on CUDA, 3 on CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    ap.add_argument("--pretrained", action="store_true", help="e.g. vit -> ViT-B/16 at 224 px (needs weights)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    batch = args.batch_size or (512 if device.type == "cuda" else 64)
    steps = args.steps or (30 if device.type == "cuda" else 3)
    rows = [
        measure(m, int(s), args.channels, args.classes, batch, steps, device, args.compile, args.pretrained)
        for m in args.models.split(",")
        for s in args.sizes.split(",")
    ]
    env = environment(device)
    table(f"throughput on {env.get('gpu', env['cpu'])} (torch {env['torch']}, batch {batch})", rows)
    write_json(args.json, {"environment": env, "batch_size": batch, "steps": steps, "rows": rows})


if __name__ == "__main__":
    main()
