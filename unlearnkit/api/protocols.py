"""Evaluation protocols: how a benchmark turns models into numbers (docs/protocols.md).

``clean`` (the default) is what we consider correct: every model is evaluated in eval mode, on
clean (un-augmented) images, in float32, and numbers are stored unrounded.

``paper`` reproduces the official LoTUS evaluation (``src/unlearn.py`` and
``src/helpers/eval.py`` of the LoTUS code), defects included, so a table made with it can be
compared with the paper's: the membership attack runs first, on batch-size-1 passes over retain,
forget, test and unseen with the model in whatever mode the method returned it (a train-mode
model's BatchNorm statistics are rewritten by those passes before anything else is measured);
forget and retain images go through the training augmentation in every pass; the attack is the
official 2-class multinomial logistic regression; accuracies and MIA are rounded to 0.01; and
LoTUS checks its forget accuracy on augmented images. The protocol is part of every run's
identity, so the two never mix on a leaderboard.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearnkit.errors import ConfigError


@dataclass(frozen=True)
class EvalProtocol:
    """The switches that differ between protocols; metrics and methods read them from the context."""

    name: str
    summary: str
    augmented_splits: frozenset[str] = frozenset()  # evaluated through the training augmentation
    membership_pass_first: bool = False  # batch-1 pass over MIA splits, model as returned, before all else
    round_to: float | None = None  # accuracies and MIA rounded to this (paper: 0.01)
    returned_mode: bool = False  # evaluate models in the mode the method returned them in
    draw: int = 0  # which draw of the evaluation's random augmentation (0: the usual one; see with_draw)

    @property
    def draws(self) -> bool:
        """Whether the evaluation draws anything at random (augmented splits)."""
        return bool(self.augmented_splits)

    def with_draw(self, draw: int) -> EvalProtocol:
        """The same protocol with its random crops drawn anew: draw N re-evaluates a stored model
        as another run of the official evaluation would have (docs/reproducing.md)."""
        if type(draw) is not int or draw < 0:
            raise ConfigError(f"Bad --eval-draw {draw!r}: expected a whole number of 0 or more, e.g. 1.")
        if draw == self.draw:
            return self
        if draw and not self.draws:
            valid = ", ".join(p.name for p in PROTOCOLS.values() if p.draws)
            raise ConfigError(
                f"--eval-draw {draw} has nothing to draw under the '{self.name}' protocol: its evaluation is "
                f"deterministic. Valid with: {valid}."
            )
        return dataclasses.replace(self, draw=draw)


CLEAN = EvalProtocol(
    name="clean",
    summary="every model in eval mode, clean images, float32, unrounded numbers",
)
PAPER = EvalProtocol(
    name="paper",
    summary="the official LoTUS evaluation: batch-1 MIA pass first with models as returned, "
    "augmented forget/retain images, rounded accuracies and MIA",
    augmented_splits=frozenset({"forget", "retain"}),
    membership_pass_first=True,
    round_to=0.01,
    returned_mode=True,
)
PROTOCOLS: dict[str, EvalProtocol] = {p.name: p for p in (CLEAN, PAPER)}
# The order of the official batch-1 membership pass (retain, forget, test, then the validation
# set that is our `unseen` half): it decides the final BatchNorm statistics of a train-mode model.
MEMBERSHIP_SPLITS = ("retain", "forget", "test", "unseen")


def get_protocol(name: str) -> EvalProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"Unknown protocol '{name}'. Valid protocols: {', '.join(PROTOCOLS)}.") from None


def rounded(value: float, protocol: EvalProtocol | None) -> float:
    """``value`` rounded as the protocol reports it (the paper: to 0.01); unchanged otherwise."""
    if protocol is None or protocol.round_to is None or value != value:
        return value
    return round(round(value / protocol.round_to) * protocol.round_to, 10)
