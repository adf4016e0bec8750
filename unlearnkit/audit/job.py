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
from unlearnkit.audit.ensemble import EnsembleEstimate, EnsembleReport, EnsembleRunner, EnsembleSettings
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
    families = {e.cls.family for e in entries if e.cls.family}
    chosen: list[Any] = []
    for name in names:
        if name == ULIRA:
            continue
        hits = [e for e in entries if name in (e.name, e.cls.family)]
        if not hits:
            valid = ", ".join(dict.fromkeys([ULIRA, *sorted(families), *sorted(e.name for e in entries)]))  # klom: both
            raise ConfigError(f"Unknown score '{name}'. Valid scores: {valid}.")
        chosen += [e for e in hits if e not in chosen]
    return ULIRA in names, [e for e in entries if e in chosen]


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
        self.ignored: list[str] = []
        if self.spec.grid:
            self.ignored.append("its option grid [grid.*] (audit one point by putting it in [options])")
        if self.spec.original or self.spec.retrained or self.spec.no_retrain:
            self.ignored.append("original/retrained/no_retrain (shadow models are always trained)")
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
        if chosen:
            members = ensemble if ensemble is not None else table.ensemble
            if members < 2:
                raise ConfigError(f"Bad --ensemble {members}: an ensemble score needs at least 2 members.")
            ens = EnsembleSettings(members, self.settings.seed, tuple(e.name for e in chosen))
            for cell in expand(spec, {**overrides, "seeds": ens.seeds}, registries=registries):
                plan = validate(cell.request, registries)
                self.ensembles.append(EnsembleRunner(plan, store, ens, chosen, reporter, label=cell.label))

    @property
    def name(self) -> str:
        return self.spec.name

    def check(self, *, writes: bool = True) -> None:
        """Load every cell's data and check the store: the last checks before anything is computed.
        ``writes`` False (an estimate): a store that is not there is left unmade, as nothing is written."""
        if writes or self.store.exists():
            self.store.check()
        for runner in self.runners:
            runner.check(writes=writes)
        for ens in self.ensembles:
            ens.check(writes=writes)

    def estimate(self) -> list[Estimate]:
        return [runner.estimate() for runner in self.runners]

    def estimate_ensembles(self) -> list[EnsembleEstimate]:
        return [ens.estimate() for ens in self.ensembles]

    def run(self) -> list[CellReport]:
        return [runner.run() for runner in self.runners]

    def run_ensembles(self) -> list[EnsembleReport]:
        return [ens.run() for ens in self.ensembles]


__all__ = ["Audit", "parse_methods"]
