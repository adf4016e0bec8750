"""Successive deletion requests (the continual-unlearning setting).

``sequential:<k>:<inner scenario>``: k requests arrive one after another, each a fresh forget set
drawn by the inner scenario from what is still in the training pool; the method is applied to the
previous request's output. After request j the model is measured on everything forgotten so far,
against a model retrained on what remains (docs/protocols.md).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import unlearnkit as uk
from unlearnkit_plugins.scenarios.rules import Identity, NamedClassRule, as_number

MAX_REQUESTS = 100
SEQUENCES = "random:F, instance:F, first:N or memorised:S:F"  # rules whose next request is not empty


class Sequential(uk.Scenario):
    """k successive requests of an inner scenario, each drawn from the pool the earlier ones left:
    random:F, instance:F, first:N or memorised:S:F, a fraction being of what is left at each request
    (docs/protocols.md). Each metric is a step curve, request by request, and its mean over them."""

    name = "sequential"
    summary = "K successive deletion requests of an inner scenario, the method applied to its own output."
    syntax = "sequential:<k>:<scenario>"
    example = "3:random:0.05"
    draws_per_seed = True  # as its example's inner rule does; each instance takes its inner rule's
    algorithm_version = 1

    def parse(self, params: str) -> str:
        count, _, inner = params.partition(":")
        requests = as_number(count.strip())
        if requests is None or not 2 <= requests <= MAX_REQUESTS:
            alone = (
                f" (for one request, use {self.shown(inner.strip())} itself)" if requests == 1 and inner.strip() else ""
            )
            raise self.bad(
                params,
                f"a number of requests from 2 to {MAX_REQUESTS}, then a scenario, e.g. sequential:3:random:0.02{alone}",
            )
        if not inner.strip():
            raise self.bad(params, "a scenario after the number of requests, e.g. sequential:3:random:0.02")
        self.inner = self.parse_inner(params, requests, inner)
        if self.inner.requests > 1:
            raise self.bad(params, "a single-request scenario inside (sequential requests do not nest)")
        # a class, a sub-class or named people: its one set is all gone after the first request
        if isinstance(self.inner, (NamedClassRule, Identity)):
            raise self.bad(
                params, f"a rule that draws again from what is left, not {self.shown(self.inner.key)}: {SEQUENCES}"
            )
        self.requests = requests
        # what the requests are made of decides what the runner expects of the original
        self.forgets_whole_classes = self.inner.forgets_whole_classes
        self.expects_memorisation = self.inner.expects_memorisation
        self.draws_per_seed = self.inner.draws_per_seed
        return f"{self.requests}:{self.inner.key}"

    def parse_inner(self, params: str, requests: int, inner: str) -> uk.Scenario:
        """The scenario each request is drawn by. Its refusal names the whole text too: ``--forget
        sequential:3:random:1.5`` answered "Bad forget fraction '1.5'", which a recipe of several
        scenarios (or a shell script) does not let one trace back."""
        try:
            return uk.parse_scenario(inner)
        except uk.ConfigError as err:
            whole = f"{self.name}:{params}"
            # a long text is echoed by the inner line already: the outer one names only the count
            shown = whole if self.shown(whole) == whole else f"{self.name}:{requests}:…"
            raise uk.ConfigError(f"Bad forget scenario '{shown}': in the scenario of its requests, {err}") from None

    @property
    def rule(self) -> str:
        return self.inner.rule  # a method sees the rule each request is drawn by

    def needs_scores(self) -> str | None:
        return self.inner.needs_scores()

    def draw_requests(self, data: uk.ScenarioData, seed: int) -> list[uk.ForgetSet]:
        left = data.pool
        requests = []
        for step in range(self.requests):
            # the first request is the inner scenario's own set; later ones draw on seeds of their own
            step_seed = seed if step == 0 else int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
            # an emptied pool is a request with nothing left to draw (the core refuses it in one
            # line), never asked of the inner rule: a random draw from nothing raises
            drawn = self.inner.draw(replace(data, pool=left), step_seed) if len(left) else uk.ForgetSet(left)
            if len(left) and not len(drawn.indices):
                raise self.found_nothing(step + 1, len(left))
            requests.append(drawn)
            left = np.setdiff1d(left, drawn.indices, assume_unique=True)
        return requests

    def found_nothing(self, number: int, left: int) -> uk.ConfigError:
        """An empty request while images are still kept: the core's line says "the pool ran out",
        which it had not (a rule such as a third party's ``tail:<class>:<N>`` ran out of its class)."""
        return uk.ConfigError(
            f"Scenario '{self.shown(self.key)}': deletion request {number} is empty: {self.shown(self.inner.key)} "
            f"draws nothing from the {left:,} training images still kept. Make fewer requests, or use a rule "
            f"that draws from the whole pool ({SEQUENCES})."
        )

    def draw(self, data: uk.ScenarioData, seed: int) -> uk.ForgetSet:
        requests = self.draw_requests(data, seed)
        classes = {r.forget_class for r in requests}
        union = np.sort(np.concatenate([r.indices for r in requests]))
        return uk.ForgetSet(union, classes.pop() if len(classes) == 1 else None)
