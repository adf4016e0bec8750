"""A recipe's U-LiRA audit: every cell of the recipe's grid, with the settings of its ``[audit]`` table.

Precedence: defaults < the recipe's ``[audit]`` table < command-line flags. The audited methods are the
table's ``methods`` (default: the recipe's), always with the ``original`` and ``retrain`` reference rows;
the seed is the table's ``seed`` (default: the recipe's first seed). What the audit does not use: the
recipe's option grid (``[grid.*]`` — put the point to audit in ``[options]``) and model files brought as
the original or retrained model (shadows are trained, never brought); both are reported, not silently
dropped. Like a sweep, an audit is resumable by construction: every model, method run and score is keyed
by its config hash in the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Unpack

from unlearnkit.api.ensemble import ensemble_metrics
from unlearnkit.api.progress import SILENT, Reporter
from unlearnkit.audit.ensemble import MIN_MEMBERS, EnsembleEstimate, EnsembleReport, EnsembleRunner, EnsembleSettings
from unlearnkit.audit.runner import AuditRunner, AuditSettings, CellReport, Estimate
from unlearnkit.discovery.registry import Registries
from unlearnkit.engine.config import Plan, method_parts, validate
from unlearnkit.errors import ConfigError, shorten
from unlearnkit.scale.sweep_recipes import Cell, RecipeFile, RecipeOverrides, expand, load_recipe
from unlearnkit.store.mlflow_store import Store


def parse_methods(text: str | list[str] | None, flag: str = "--methods") -> list[str] | None:
    """``"lotus,finetune"`` (or a list of such) -> names; None or an empty list -> None (the recipe
    decides); a list that is given but names nothing (``--methods ","``) is refused."""
    if text is None:
        return None
    items = [text] if isinstance(text, str) else list(text)
    names = method_parts(items)
    if items and not names:
        raise ConfigError(f"Bad {flag} '{shorten(','.join(items))}': it names nothing; give names, comma-separated.")
    return names or None


#: The shadow-model audit's name in ``--scores`` (the other names are ensemble metrics' and families').
ULIRA = "ulira"


def resolve_scores(names: list[str], registries: Registries) -> tuple[bool, list[Any]]:
    """``--scores`` names -> (whether to run U-LiRA, the ensemble metric entries, in registry order).

    A name is ``ulira``, an ensemble metric's name, or a family of them (``challenge``: the challenge
    score and its forgetting quality); anything else is one line naming the valid choices."""
    entries = ensemble_metrics(registries.metrics.entries())
    if not names:  # a recipe's `scores = []`: running nothing and saying "done" would look like an audit
        raise ConfigError(f"Bad audit.scores []: it names nothing. Valid scores: {valid_scores(entries)}.")
    chosen: list[Any] = []
    for name in names:
        if name == ULIRA:
            continue
        hits = [e for e in entries if name in (e.name, e.cls.family)]
        if not hits:
            raise ConfigError(f"Unknown score '{name}'. Valid scores: {valid_scores(entries)}.")
        chosen += [e for e in hits if e not in chosen]
    return ULIRA in names, [e for e in entries if e in chosen]


def valid_scores(entries: list[Any]) -> str:
    """What ``--scores`` accepts, for a message: ulira, the families, the metrics (a name once: klom is both)."""
    families = sorted({e.cls.family for e in entries if e.cls.family})
    return ", ".join(dict.fromkeys([ULIRA, *families, *sorted(e.name for e in entries)]))


def ignored_parts(spec: RecipeFile) -> list[str]:
    """What of the recipe the audit does not use, one sentence each: the option grid and brought models."""
    ignored = []
    if spec.grid:
        ignored.append(
            "The audit ignores the recipe's option grid [grid.*] (audit one point by putting it in [options])."
        )
    if spec.original or spec.retrained or spec.no_retrain:
        ignored.append(
            "The audit ignores the recipe's original/retrained/no_retrain (shadow models are always trained)."
        )
    return ignored


def unused_ensemble(members: int, *, from_recipe: bool) -> str:
    """Why an ensemble size that was asked for trains nothing: no ensemble score is asked for."""
    where = "The recipe's [audit] ensemble" if from_recipe else "--ensemble"
    return (
        f"{where} {members} is unused: no ensemble score is asked for (add one to --scores or the recipe's "
        "[audit] scores, e.g. ulira,challenge,klom; `unlearnkit list metrics`)."
    )


class Audit:
    """A recipe resolved into validated audit cells, ready to estimate and run."""

    def __init__(
        self,
        recipe: str | Path,
        registries: Registries,
        store: Store,
        reporter: Reporter = SILENT,
        *,
        methods: str | list[str] | None = None,
        shadows: int | None = None,
        mode: str | None = None,
        fixed_variance: bool | None = None,
        seed: int | None = None,
        scores: str | list[str] | None = None,
        ensemble: int | None = None,
        models_per_device: str | None = None,
        **recipe_overrides: Unpack[RecipeOverrides],
    ) -> None:
        self.spec: RecipeFile = load_recipe(recipe, registries)
        self.store = store
        self.reporter = reporter
        table = self.spec.audit
        self.settings = AuditSettings(
            shadows=shadows if shadows is not None else table.shadows,
            mode=mode if mode is not None else table.mode,
            fixed_variance=fixed_variance if fixed_variance is not None else table.fixed_variance,
            seed=seed if seed is not None else (table.seed if table.seed is not None else self.spec.seeds[0]),
        )
        self.ignored = ignored_parts(self.spec)  # warned by the command, never dropped silently
        if self.settings.variance_note:
            self.ignored.append(self.settings.variance_note)
        audited = parse_methods(methods) or table.methods or list(self.spec.methods)
        spec = self.spec.model_copy(update={"grid": {}, "original": None, "retrained": None, "no_retrain": False})
        overrides: dict[str, Any] = {**recipe_overrides, "methods": audited, "seeds": [self.settings.seed]}
        if models_per_device is not None:  # else the recipe's (default 1)
            overrides["models_per_device"] = models_per_device
        self.ulira, chosen = resolve_scores(parse_methods(scores, "--scores") or table.scores, registries)
        self.cells: list[Cell] = expand(spec, overrides, registries=registries)
        self.plans: list[tuple[Cell, Plan]] = [(cell, validate(cell.request, registries)) for cell in self.cells]
        self.runners = (
            [AuditRunner(plan, store, self.settings, reporter, label=cell.label) for cell, plan in self.plans]
            if self.ulira
            else []
        )
        self.ensembles: list[EnsembleRunner] = []
        members = ensemble if ensemble is not None else table.ensemble
        if members < MIN_MEMBERS:  # refused even when unused: the flag is wrong either way
            raise ConfigError(f"Bad --ensemble {members}: an ensemble score needs at least {MIN_MEMBERS} members.")
        recipe_asked = "ensemble" in table.model_fields_set and scores is None  # not: --scores ulira on purpose
        if not chosen and (ensemble is not None or recipe_asked):
            self.ignored.append(unused_ensemble(members, from_recipe=ensemble is None))
        if chosen:
            ens = EnsembleSettings(members, self.settings.seed, tuple(e.name for e in chosen))
            for cell in expand(spec, {**overrides, "seeds": ens.seeds}, registries=registries):
                plan = validate(cell.request, registries)
                self.ensembles.append(EnsembleRunner(plan, store, ens, chosen, reporter, label=cell.label))

    @property
    def name(self) -> str:
        return self.spec.name

    def check(self, *, writes: bool = True) -> None:
        """Load every cell's data and check the store: the last checks before anything is computed.
        ``writes`` False (an estimate): nothing is made (:meth:`Store.check`)."""
        self.store.check(writes=writes)
        for runner in self.runners:
            runner.check(writes=writes)
        for ens in self.ensembles:
            ens.check(writes=writes)

    def estimate(self) -> list[Estimate]:
        counted: set[str] = set()  # a shadow model two cells share is counted by the first
        return [runner.estimate(counted) for runner in self.runners]

    def estimate_ensembles(self) -> list[EnsembleEstimate]:
        return [ens.estimate() for ens in self.ensembles]

    def run(self) -> list[CellReport]:
        return [runner.run() for runner in self.runners]

    def run_ensembles(self) -> list[EnsembleReport]:
        return [ens.run() for ens in self.ensembles]


__all__ = ["Audit", "parse_methods"]
