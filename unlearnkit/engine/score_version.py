"""The version of the memorisation scores' computation, and the identity a benchmark records of
the scores its forget sets are drawn by. A leaf, so the benchmark's identity can name the scores
without importing the code that computes them (:mod:`unlearnkit.engine.memorisation`)."""

from __future__ import annotations

from unlearnkit.api.scenarios import parse_score_source

# Bump when a score's computation changes: the benchmarks of the scenarios reading it change identity.
SCORES_VERSION = 1


def score_identity(source: str) -> str:
    """What a benchmark's identity records of the scores its forget sets are drawn by."""
    return f"{parse_score_source(source)}@{SCORES_VERSION}"
