"""Sub-class forgetting: every training image of one fine class while the model predicts the
coarse classes (CIFAR-20's superclasses), the setting of Chundawat et al. (Bad Teacher, AAAI 2023)
and Foster et al. (SSD, AAAI 2024), whose CIFAR-20 sub-classes are e.g. ``rocket``, ``baby``,
``lamp``, ``mushroom``, ``sea``. The rest of the superclass stays to be predicted: the unlearned
model must lose the sub-class without losing the class it belongs to.
"""

from __future__ import annotations

import unlearnkit as uk
from unlearnkit_plugins.scenarios.rules import NamedClassRule, as_number, is_digits, is_signed_id, suggestion


class Subclass(NamedClassRule):
    """Every training image of one fine class (by name or id), in datasets that give sub-classes.
    The original is not expected to have memorised it: the rest of its superclass carries it."""

    name = "subclass"
    summary = "Every training image of one fine class, the model still predicting its superclass (e.g. cifar20)."
    syntax = "subclass:<fine name|id>"
    example = "0"
    expected = "a fine class name or id, e.g. subclass:rocket"
    algorithm_version = 1

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        if data.subclasses is None or data.subclass_names is None:
            raise uk.ConfigError(
                "The subclass: scenario needs a dataset that gives every image a fine class inside its class "
                "(e.g. cifar20); this one does not. Use class:C instead."
            )
        names = data.subclass_names
        target = self.params
        number = as_number(target)
        if number is not None and number < len(names):
            fine = number
        elif target in names:
            fine = names.index(target)
        else:
            numbered = is_digits(target) or is_signed_id(target)
            hint = f" Sub-class ids run from 0 to {len(names) - 1}." if numbered else suggestion(target, names)
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise uk.ConfigError(
                f"Unknown sub-class '{self.shown(target)}' for sub-class unlearning.{hint} "
                f"Valid sub-classes ({len(names)}): {shown}."
            )
        picked = data.pool[data.subclasses[data.pool] == fine]
        return uk.ForgetSet(picked, forget_subclass=fine)
