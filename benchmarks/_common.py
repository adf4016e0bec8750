"""Shared bits of the benchmark scripts: environment report, timing, output."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

console = Console(width=160)


def environment(device: torch.device) -> dict[str, Any]:
    """What every figure must be reported with: the device, torch version, CPU threads."""
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        t.add_column(col, justify="left" if isinstance(rows[0][col], str) else "right")
    for row in rows:
        t.add_row(*[f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(t)


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
        console.print(f"wrote {path}")
