"""The two-protocol table of docs/protocols.md, from a store: one row per method, the clean and the
paper board side by side, each method's Average Gap rank among the non-reference rows under each
protocol. Written from the boards' JSON, so the table in the docs is never typed by hand.

    python benchmarks/protocol_table.py --tracking-uri sqlite:///protocols/mlflow.db --recipe recipes/protocols-cifar10-cpu.toml

Rows are ordered by the clean rank (the reference rows first); ``--json FILE`` also writes the joined
numbers with the machine they were read on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from _common import environment

COLUMNS = ("acc_forget", "acc_retain", "acc_test", "mia", "jsd", "rf_jsd")
SCALE = {"jsd": 1e4, "rf_jsd": 1e4}  # shown x1e4, as the paper's tables do
PROTOCOLS = ("clean", "paper")


def board(protocol: str, tracking_uri: str, recipe: str | None) -> dict[str, Any]:
    """The single benchmark cell of ``unlearnkit leaderboard -f json`` under ``protocol``."""
    argv = ["unlearnkit", "leaderboard", "-f", "json", "--protocol", protocol, "--tracking-uri", tracking_uri]
    if recipe:
        argv += ["--recipe", recipe]
    cells = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    if len(cells) != 1:
        raise SystemExit(f"expected one benchmark under --protocol {protocol}, the store has {len(cells)}")
    return cells[0]


def ranks(rows: list[dict[str, Any]]) -> dict[str, int]:
    """1 = smallest Average Gap among the rows without a reference role (ties share the lower rank)."""
    gaps = {r["method"]: r["avg_gap"] for r in rows if not r.get("role") and r.get("avg_gap") is not None}
    return {m: 1 + sum(other < g for other in gaps.values()) for m, g in gaps.items()}


def cell(row: dict[str, Any] | None, metric: str) -> str:
    if row is None or metric not in row["metrics"]:
        return "–"
    m, scale = row["metrics"][metric], SCALE.get(metric, 1.0)
    digits = 1 if metric in SCALE else 2
    return f"{m['mean'] * scale:.{digits}f} ± {(m['std'] or 0.0) * scale:.{digits}f}"


def gap(row: dict[str, Any] | None, rank: dict[str, int]) -> str:
    if row is None or row.get("avg_gap") is None:
        return "–"
    text = f"{row['avg_gap']:.3f}"
    return f"{text} ({rank[row['method']]})" if row["method"] in rank else text


def failures(tracking_uri: str, boards: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Methods of the boards' benchmark whose every run failed under some protocol (the boards show
    only finished runs), each with the first sentence of its failure."""
    from unlearnkit.store.mlflow_store import Store

    store, out = Store(tracking_uri), {}
    for p in PROTOCOLS:
        finished = {r["method"] for r in boards[p]["rows"]}
        query = {"run_type": "unlearn", "benchmark": boards[p]["benchmark"], "protocol": p}
        for rec in store.search(query, finished_only=False):
            method = rec.tag("method")
            if rec.status == "FAILED" and method not in finished:
                out.setdefault(method, rec.tag("failure").split(" on the ")[0].split(": metric")[0])
    return out


def table(boards: dict[str, dict[str, Any]], seeds: int, failed: dict[str, str] | None = None) -> str:
    by_protocol = {p: {r["method"]: r for r in boards[p]["rows"]} for p in PROTOCOLS}
    rank = {p: ranks(boards[p]["rows"]) for p in PROTOCOLS}
    methods = sorted(
        set(by_protocol["clean"]) | set(by_protocol["paper"]),
        key=lambda m: (
            0 if (by_protocol["clean"].get(m) or by_protocol["paper"][m]).get("role") == "original" else 1,
            0 if (by_protocol["clean"].get(m) or by_protocol["paper"][m]).get("role") else 1,
            rank["clean"].get(m, 10_000),
            m,
        ),
    )
    head = ["method", "seeds"]
    for p in PROTOCOLS:
        head += [f"{p}: {COLUMNS[0]}", *COLUMNS[1:], "avg gap (rank)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        row = by_protocol["clean"].get(m) or by_protocol["paper"].get(m)
        n = len(row["seeds"]) if row else 0
        cells = [m, f"{n}/{seeds}"]
        for p in PROTOCOLS:
            r = by_protocol[p].get(m)
            cells += [cell(r, c) for c in COLUMNS] + [gap(r, rank[p])]
        lines.append("| " + " | ".join(cells) + " |")
    width = 2 + 2 * (len(COLUMNS) + 1)
    for m, reason in sorted((failed or {}).items()):
        lines.append("| " + " | ".join([m, f"0/{seeds}", f"failed: {reason}", *["–"] * (width - 3)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--recipe", help="only the cells and methods of this recipe")
    parser.add_argument("--seeds", type=int, default=3, help="seeds the recipe asks for (the 'n/3' column)")
    parser.add_argument("--json", type=Path, help="also write the joined boards and the machine here")
    args = parser.parse_args(argv)
    boards = {p: board(p, args.tracking_uri, args.recipe) for p in PROTOCOLS}
    print(table(boards, args.seeds, failures(args.tracking_uri, boards)))
    if args.json:
        args.json.write_text(json.dumps({"machine": environment(torch.device("cpu")), "boards": boards}, indent=2))
        print(f"figures written to {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
