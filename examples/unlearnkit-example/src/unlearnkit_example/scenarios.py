"""A forget scenario from outside the core: the last images of one class (``tail:<class id>:<N>``).

Shows what a third party writes to add a forget-set rule: parse the text to a canonical form (the
key every stored run carries), draw the set from the pool. No core file changes.
"""

from __future__ import annotations

import numpy as np
import unlearnkit as uk


class ClassTail(uk.Scenario):
    """The last N training images of one class, in dataset order: the same set at every seed."""

    name = "tail"
    summary = "The last N training images of one class, in dataset order (example package)."
    syntax = "tail:<class id>:<N>"
    example = "0:3"
    algorithm_version = 1

    def parse(self, params: str) -> str:
        label, _, count = params.partition(":")
        if not (
            f"{label}{count}".strip().isascii()
            and label.strip().isdigit()
            and count.strip().isdigit()
            and max(len(label.strip().lstrip("0")), len(count.strip().lstrip("0"))) <= 18  # int() refuses 4,300 digits
            and int(count) >= 1
        ):
            raise self.bad(params, "a class id and a positive count, e.g. tail:3:50")
        self.label, self.count = int(label), int(count)
        return f"{self.label}:{self.count}"

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        if self.label >= len(data.class_names):
            raise uk.ConfigError(
                f"Bad forget scenario '{self.key}': class ids run from 0 to {len(data.class_names) - 1}."
            )
        members = data.pool[data.pool_labels == self.label]
        return uk.ForgetSet(np.sort(members[-self.count :]))
