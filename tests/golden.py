"""Golden numbers: every built-in method on digits under both protocols, as a released version
stored them. A change that only moves code must reproduce them to ``EXACT`` on the machine that
pinned them; that is what lets such a change re-pin the code hashes of
``tests/algorithm_versions.json`` without bumping a version (``tests/test_versions.py --update``
runs this check first and refuses to re-pin when it fails).

``python tests/golden.py --pin`` records the numbers of the code as it is (do this only on a
release, before a restructuring); ``python tests/golden.py`` compares. The commands go through the
CLI, whose flags outlive any move of the modules behind it.

The record also holds each method's ``algorithm_version`` when pinned (``versions``). A method
whose version has moved since changed its numbers on purpose (the bump says so, and gives its runs
a new identity): its numbers and identity are not compared, and the check lists it as skipped.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Collection
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden_results.json")
EXACT = 1e-6  # on the pinning machine: a move-only change changes no number
ELSEWHERE = 0.05  # another CPU, BLAS or torch build: the same numbers up to floating-point drift
PROTOCOLS = ("clean", "paper")
COMMAND = ["run", "--method", "all", "--model", "cnn", "--dataset", "digits", "--seeds", "3407", "--json"]
# measured values that are no result: wall-clock times, what they are divided by, and the count of
# images the evaluation forwarded (its cost: a pass shared instead of repeated lowers it, no metric moves)
VOLATILE = ("time", "_s", "rte", "eval_images")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where the system has none)."""
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_id() -> str:
    """The processor's family, model and stepping: a virtual machine may name every CPU of a
    vendor alike ("AMD EPYC") while two generations round a training run differently."""
    fields = cpuinfo()
    return "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping"))


def cpu_model() -> str:
    """The processor's model name where the system tells it (two hosts that both say ``x86_64``
    can round differently, and a training run amplifies the difference)."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """What the numbers depend on besides the code: the processor, the torch and numpy builds,
    the threads."""
    import numpy
    import torch

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_id": cpu_id(),
        "numpy": numpy.__version__,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": 1,
        "python": platform.python_version(),
    }


def measure() -> dict[str, dict[str, dict[str, float]]]:
    """``{protocol: {method: {metric: value}}}`` from a fresh store, one thread; the runs' config
    hashes under ``{"identities": {protocol: {method: hash}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    # built-ins only (the distribution named unlearnkit), one thread
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "UNLEARNKIT_LOAD_PLUGINS": "unlearnkit"}
    with tempfile.TemporaryDirectory() as tmp:
        env["UNLEARNKIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        for protocol in PROTOCOLS:
            argv = [sys.executable, "-m", "unlearnkit", *COMMAND, "--protocol", protocol]
            argv += ["--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"golden run failed ({protocol}):\n{done.stdout}\n{done.stderr}")
            rows = json.loads(done.stdout)
            out[protocol] = {
                row["method"]: {k: float(v) for k, v in row["metrics"].items() if not volatile(k)} for row in rows
            }
        out["identities"] = identities(f"sqlite:///{tmp}/mlflow.db")  # type: ignore[assignment]
    return out


def identities(uri: str) -> dict[str, dict[str, str]]:
    """``{protocol: {method: config_hash}}`` of the finished unlearning rows in a store: a store
    written by the pinned release must find these runs again, not recompute them."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    out: dict[str, dict[str, str]] = {}
    for run in client.search_runs([client.get_experiment_by_name("unlearnkit").experiment_id]):
        tags = run.data.tags
        if tags.get("unlearnkit.run_type") == "unlearn" and run.info.status == "FINISHED":
            out.setdefault(tags["unlearnkit.protocol"], {})[tags["unlearnkit.method"]] = tags["unlearnkit.config_hash"]
    return out


def volatile(metric: str) -> bool:
    return any(part in metric for part in VOLATILE)


def versions() -> dict[str, int | None]:
    """The ``algorithm_version`` every registered method has now, by name (as the results are keyed)."""
    import unlearnkit as uk

    return {name: type(uk.create_method(name)).algorithm_version for name in uk.list_methods()}


def moved(pinned: dict[str, int | None], now: dict[str, int | None]) -> dict[str, tuple[int | None, int | None]]:
    """``{method: (pinned, now)}`` for the registered methods whose version is not the pinned one."""
    return {name: (was, now[name]) for name, was in sorted(pinned.items()) if name in now and now[name] != was}


def skipped(moves: dict[str, tuple[int | None, int | None]]) -> list[str]:
    return [f"skipped: {name}: version moved {was}->{now}" for name, (was, now) in sorted(moves.items())]


def compare(pinned: dict, now: dict, tolerance: float, skip: Collection[str] = ()) -> list[str]:
    """Every pinned value that differs by more than ``tolerance`` (or is missing now), except the
    methods in ``skip`` (those whose version moved)."""
    problems = []
    for protocol, methods in pinned.items():
        for method, metrics in methods.items():
            if method in skip:
                continue
            for name, value in metrics.items():
                got = now.get(protocol, {}).get(method, {}).get(name)
                if got is None:
                    problems.append(f"{protocol}/{method}/{name}: missing (pinned {value!r})")
                elif not (math.isnan(value) and math.isnan(got)) and not abs(got - value) <= tolerance:
                    problems.append(f"{protocol}/{method}/{name}: {got!r} != pinned {value!r}")
    return problems


def skips() -> dict[str, tuple[int | None, int | None]]:
    """The pinned methods whose ``algorithm_version`` moved since (none for a record without versions)."""
    pinned = json.loads(GOLDEN.read_text())
    return moved(pinned["versions"], versions()) if "versions" in pinned else {}


def check(*, exact: bool = False) -> list[str]:
    """The differences between the pinned numbers and the code as it is (empty: it reproduces them),
    methods whose version moved left out (:func:`skips`). ``exact``: only on the pinning machine, to
    ``EXACT`` (what licenses re-pinning code hashes)."""
    pinned = json.loads(GOLDEN.read_text())
    here = pinned["machine"] == machine()
    if exact and not here:
        return [f"this machine ({machine()}) is not the one that pinned the golden numbers ({pinned['machine']})"]
    skip = skips()
    now = measure()
    problems = compare(pinned["results"], now, EXACT if here else ELSEWHERE, skip)
    for protocol, rows in pinned.get("identities", {}).items():  # identities hold on every machine
        for method, key in rows.items():
            if method in skip:  # a bumped version is a new identity by design
                continue
            got = now["identities"].get(protocol, {}).get(method)  # type: ignore[union-attr]
            if got != key:
                problems.append(
                    f"{protocol}/{method}: run identity {got} != pinned {key} (stored runs would be recomputed)"
                )
    return problems


def main(argv: list[str]) -> int:
    if "--pin" in argv:
        import unlearnkit

        results = measure()
        now = versions()
        record = {
            "version": unlearnkit.__version__,
            "machine": machine(),
            "identities": results.pop("identities"),
            "results": results,
            "versions": {name: now[name] for name in sorted({m for rows in results.values() for m in rows})},
        }
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    print("\n".join(skipped(skips())) or "no method's version moved")
    problems = check()
    print("\n".join(problems) or "golden numbers reproduced")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
