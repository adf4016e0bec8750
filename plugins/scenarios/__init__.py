"""Built-in forget scenarios: the five 0.2 rules, sub-class, memorisation strata and sequential
deletion requests (docs/protocols.md)."""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit_plugins.scenarios.memorised import Memorised
from unlearnkit_plugins.scenarios.rules import RULES
from unlearnkit_plugins.scenarios.sequential import Sequential
from unlearnkit_plugins.scenarios.subclass import Subclass

SCENARIOS = (*RULES, Subclass, Memorised, Sequential)


@uk.hookimpl
def register_scenarios(register):
    for cls in SCENARIOS:
        register(cls)
