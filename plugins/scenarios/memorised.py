"""Forget sets drawn from one stratum of a memorisation score (Zhao et al., NeurIPS 2024).

``memorised:<low|medium|high>:<fraction>[:<source>]``: the training pool is ranked by the score
(``confidence`` by default, ``learning``, or the ``shadows:K`` estimate; docs/protocols.md) and cut
into thirds; the forget set is a seeded random ``fraction`` of the whole pool, drawn from the named
third. Highly memorised examples are the ones a model fits only by remembering them: the hardest to
forget, and the ones on which method rankings change.
"""

from __future__ import annotations

import numpy as np

import unlearnkit as uk

STRATA = ("low", "medium", "high")
DEFAULT_SOURCE = "confidence"


def strata(scores: np.ndarray, seed: int) -> list[np.ndarray]:
    """Positions of the pool in its low, medium and high thirds by score (ties broken by a seeded draw,
    so a proxy with few distinct values still cuts into equal thirds)."""
    tie_break = np.random.default_rng([seed, 0x7135]).random(len(scores))
    order = np.lexsort((tie_break, scores))
    return [np.sort(part) for part in np.array_split(order, len(STRATA))]


class Memorised(uk.Scenario):
    """A seeded random ``fraction`` of the pool, drawn from one third of it ranked by memorisation."""

    name = "memorised"
    summary = "A FRACTION of the pool drawn from its low, medium or high third by a memorisation score."
    syntax = "memorised:<low|medium|high>:<fraction>[:<confidence|learning|shadows:K>]"
    example = "high:0.05"
    draws_per_seed = True
    algorithm_version = 1

    def parse(self, params: str) -> str:
        stratum, _, rest = params.partition(":")
        stratum = stratum.strip()
        if stratum not in STRATA:
            raise self.bad(params, f"a stratum ({', '.join(STRATA)}) then a fraction, e.g. memorised:high:0.05")
        share, _, source = rest.partition(":")
        value = uk.parse_fraction(share.strip())
        if value > 1 / len(STRATA):
            raise self.bad(params, f"a fraction of at most 1/{len(STRATA)}: each stratum is a third of the pool")
        self.stratum = stratum
        self.fraction = value
        self.source = uk.parse_score_source(source or DEFAULT_SOURCE)
        return f"{stratum}:{value:g}:{self.source}"

    def needs_scores(self) -> str | None:
        return self.source

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        if data.scores is None:
            raise uk.ConfigError(f"Scenario '{self.key}' needs memorisation scores, and none were given.")
        scores = np.asarray(data.scores(self.source))[data.pool]
        finite = np.isfinite(scores)
        if not finite.all():
            raise uk.ConfigError(
                f"Scenario '{self.key}': {int((~finite).sum())} training images have no {self.source} score."
            )
        stratum = strata(scores, seed)[STRATA.index(self.stratum)]
        count = max(1, round(self.fraction * len(data.pool)))
        picked = np.random.default_rng(seed).choice(stratum, size=min(count, len(stratum)), replace=False)
        return uk.ForgetSet(data.pool[np.sort(picked)])
