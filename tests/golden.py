"""Golden numbers: every built-in method on digits under both protocols, as a released version
stored them. A change that only moves code must reproduce them to ``EXACT`` on the machine that
pinned them; that is what lets such a change re-pin the code hashes of
``tests/algorithm_versions.json`` without bumping a version (``tests/test_versions.py --update``
runs this check first and refuses to re-pin when it fails).

``python tests/golden.py --pin`` records the numbers of the code as it is (do this only on a
release, before a restructuring); ``python tests/golden.py`` compares. The commands go through the
CLI, whose flags outlive any move of the modules behind it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden_results.json")
EXACT = 1e-6  # on the pinning machine: a move-only change changes no number
ELSEWHERE = 0.05  # another CPU, BLAS or torch build: the same numbers up to floating-point drift
PROTOCOLS = ("clean", "paper")
COMMAND = ["run", "--method", "all", "--model", "cnn", "--dataset", "digits", "--seeds", "3407", "--json"]
# measured values that are no result: wall-clock times and what they are divided by
VOLATILE = ("time", "_s", "rte")


def machine() -> dict[str, object]:
    """What the numbers depend on besides the code: the processor, the torch build, the threads."""
    import torch

    return {
        "processor": platform.processor() or platform.machine(),
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


def compare(pinned: dict, now: dict, tolerance: float) -> list[str]:
    """Every pinned value that differs by more than ``tolerance`` (or is missing now)."""
    problems = []
    for protocol, methods in pinned.items():
        for method, metrics in methods.items():
            for name, value in metrics.items():
                got = now.get(protocol, {}).get(method, {}).get(name)
                if got is None:
                    problems.append(f"{protocol}/{method}/{name}: missing (pinned {value!r})")
                elif not (math.isnan(value) and math.isnan(got)) and not abs(got - value) <= tolerance:
                    problems.append(f"{protocol}/{method}/{name}: {got!r} != pinned {value!r}")
    return problems


def check(*, exact: bool = False) -> list[str]:
    """The differences between the pinned numbers and the code as it is (empty: it reproduces them).
    ``exact``: only on the pinning machine, to ``EXACT`` (what licenses re-pinning code hashes)."""
    pinned = json.loads(GOLDEN.read_text())
    here = pinned["machine"] == machine()
    if exact and not here:
        return [f"this machine ({machine()}) is not the one that pinned the golden numbers ({pinned['machine']})"]
    now = measure()
    problems = compare(pinned["results"], now, EXACT if here else ELSEWHERE)
    for protocol, rows in pinned.get("identities", {}).items():  # identities hold on every machine
        for method, key in rows.items():
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
        record = {
            "version": unlearnkit.__version__,
            "machine": machine(),
            "identities": results.pop("identities"),
            "results": results,
        }
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    problems = check()
    print("\n".join(problems) or "golden numbers reproduced")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
