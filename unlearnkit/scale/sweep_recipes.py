"""Experiment recipes: TOML files naming a grid (datasets × models × scenarios × option
points) of benchmarks, each run with the listed methods and seeds.

Unknown keys and wrong types are errors. Precedence: defaults < recipe < command-line flags.
A recipe is resumable by construction: every run is keyed by its config hash, so re-running
the same recipe skips finished runs and redoes only unfinished ones.
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from unlearnkit.api.search_space import PARAM_FIELDS, PARAM_FORMS, Param, param_problem
from unlearnkit.engine.config import RunRequest, expand_methods, left_out, method_parts
from unlearnkit.engine.splits import parse_scenario
from unlearnkit.errors import ConfigError, UnknownNameError, shorten

if TYPE_CHECKING:
    from unlearnkit.discovery.registry import Registries


class AuditTable(BaseModel):
    """The recipe's ``[audit]`` table: how ``unlearnkit audit RECIPE`` audits its cells (docs/audit.md).

    Command-line flags (``--shadows``, ``--mode``, ``--fixed-variance``, ``--methods``, ``--seed``) take
    precedence. ``fixed_variance`` unset: one variance pooled over examples below 64 shadows (LiRA's advice
    for few shadows), per-example variances from 64 on.
    """

    model_config = ConfigDict(extra="forbid")

    shadows: int = Field(default=16, ge=4)
    mode: Literal["online", "offline"] = "online"
    fixed_variance: bool | None = None
    methods: list[str] | None = None  # default: the recipe's methods (the reference rows are always audited)
    seed: int | None = Field(default=None, ge=0, lt=2**32)  # default: the recipe's first seed
    # What to score: "ulira" (the shadow-model audit) and/or ensemble scores, by metric or family name
    scores: list[str] = Field(default_factory=lambda: ["ulira"])
    ensemble: int = Field(default=8, ge=2)  # members N of the ensemble scores (seeds seed .. seed+N-1)


def no_boolean(expected: str) -> BeforeValidator:
    """Refuse ``true``/``false`` where a number is meant: pydantic would read ``subset = true`` as 1,
    which is the full data, and ``models_per_device = true`` as 1, so the run would silently differ."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected {expected}, not {str(value).lower()}")
        return value

    return BeforeValidator(check)


Subset = Annotated[str | int | float | None, no_boolean("a per-class count (e.g. 500) or a fraction in (0, 1]")]
ModelsPerDevice = Annotated[str | int, no_boolean("a whole number of 1 or more, or auto")]


class RecipeFile(BaseModel):
    """The schema of ``recipes/*.toml``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    scenarios: list[str] = Field(default_factory=lambda: ["0.1"], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [3407, 13, 12], min_length=1)
    train_recipe: str | None = None
    epochs: int | None = Field(None, ge=0)
    subset: Subset = None
    data_dir: str | None = None
    pretrained: bool = False
    weights: str | None = None
    original: str | None = None  # a model file used as the original (see `unlearnkit run --original`)
    retrained: str | None = None
    no_retrain: bool = False
    original_min_retain: float | None = Field(None, ge=0, le=1)  # the learning bar (docs/protocols.md)
    protocol: str = "clean"
    eval_draw: int = Field(0, ge=0)  # another draw of the paper protocol's random crops (docs/reproducing.md)
    device: str = "auto"
    threads: int | None = Field(None, ge=1)  # pins torch's CPU threads; then in the identity (docs/protocols.md)
    models_per_device: ModelsPerDevice = 1  # reference models trained together (N or auto); same identities
    save_models: bool = True
    metrics: list[str] | None = None
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # method -> fixed options
    # method -> option -> values; an empty table or list would leave a grid with no point to run
    grid: dict[str, Annotated[dict[str, Annotated[list[Any], Field(min_length=1)]], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    dataset_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # dataset -> options
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # model -> options
    audit: AuditTable = Field(default_factory=AuditTable)  # `unlearnkit audit` settings
    # `unlearnkit tune` search spaces: method -> option -> spec, replacing the method's own (docs/tuning.md)
    tune: dict[str, dict[str, Param]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One benchmark of the grid at one point of the option grid: a RunRequest plus the point's label."""

    request: RunRequest
    grid_point: str

    @property
    def label(self) -> str:
        r = self.request
        extra = f" [{self.grid_point}]" if self.grid_point else ""
        return f"{r.dataset}/{r.model}/{r.forget}{extra}"


SHIPPED = "unlearnkit_recipes"  # the package the repository's recipes/ folder installs as (package data)


def shipped_folder(*parts: str) -> Path | None:
    """A folder of the recipes shipped with unlearnkit (None when this install has none)."""
    try:
        folder = Path(str(resources.files(SHIPPED).joinpath(*parts)))
    except ModuleNotFoundError:
        return None
    return folder if folder.is_dir() else None


def shipped_recipes() -> list[str]:
    folder = shipped_folder()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder else []


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: the path as given when it exists, else the shipped recipe of that name
    (``paper-resnet18-cifar10`` or ``paper-resnet18-cifar10.toml``), so a pip install without a
    clone runs them too; otherwise a one-line error naming the shipped recipes."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    folder = shipped_folder()
    if folder is not None and path.parent == Path(".") and (folder / f"{path.stem}.toml").is_file():
        return folder / f"{path.stem}.toml"
    if path.is_dir():  # `recipes/` for `recipes/cpu-mnist.toml`: it does exist
        raise ConfigError(f"Recipe file '{shorten(path, 300)}' is a folder: name a recipe (.toml) file in it.")
    hint = shipped_recipes()
    more = f" Shipped recipes (run by name): {', '.join(hint)}." if hint else ""
    raise ConfigError(f"Recipe file '{path}' does not exist.{more}")


def load_recipe(path: str | Path, registries: Registries | None = None) -> RecipeFile:
    """The recipe parsed and type-checked; with ``registries``, its per-plugin tables checked against
    what is registered too (``check_tables``)."""
    recipe = parse_recipe(path)
    if registries is not None:
        check_tables(recipe, registries)
    return recipe


def parse_recipe(path: str | Path) -> RecipeFile:
    path = resolve_recipe(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"Recipe '{path}' is not UTF-8 text (byte {err.start}): save it as UTF-8 TOML.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Recipe '{path}' is not valid TOML: {err}.") from None
    try:
        return RecipeFile(**doc)
    except ValidationError as err:
        unknown = ("extra_forbidden", "unexpected_keyword_argument")
        # a misspelt [tune] key first: it also leaves a required one missing
        first = next((e for e in err.errors() if e["loc"][0] == "tune" and e["type"] in unknown), err.errors()[0])
        tags = ("log_uniform", "uniform", "int", "categorical")  # a [tune] spec's kind, not a key
        key = ".".join(str(p) for p in first["loc"] if not (first["loc"][0] == "tune" and p in tags))
        if first["type"] in unknown and first["loc"][0] == "tune":
            valid = ", ".join(PARAM_FIELDS)
            raise ConfigError(
                f"Unknown key '{key}' in recipe '{path}'. Valid [tune.METHOD] parameter keys: {valid}."
            ) from None
        if first["type"] == "extra_forbidden":
            if first["loc"][0] == "audit" and len(first["loc"]) > 1:
                valid = ", ".join(sorted(AuditTable.model_fields))
                raise ConfigError(f"Unknown key '{key}' in recipe '{path}'. Valid [audit] keys: {valid}.") from None
            valid = ", ".join(sorted(set(RecipeFile.model_fields) - {"audit"}))
            raise ConfigError(
                f"Unknown key '{key}' in recipe '{path}'. Valid keys: {valid}; and the [audit] table."
            ) from None
        if first["loc"][0] == "tune":  # a search-space parameter: its kind said as the recipe writes it
            raise ConfigError(
                f"Bad value for '{key}' in recipe '{path}': {param_problem(first)}. {PARAM_FORMS}"
            ) from None
        message = str(first["msg"]).removeprefix("Value error, ")  # a validator's own words (no_boolean)
        raise ConfigError(f"Bad value for '{key}' in recipe '{path}': {message}.") from None


class RecipeOverrides(TypedDict, total=False):
    """What every command that expands a recipe (sweep, reproduce, audit) may put over the recipe's
    own keys; None leaves the recipe's value. One declaration, so the commands cannot drift apart."""

    epochs: int | None
    subset: str | None
    data_dir: Path | None
    device: str | None


MAX_CELLS = 10_000  # a grid larger than this is refused before it is built (`--max-cells` raises it)


def count_cells(recipe: RecipeFile, methods: list[str] | None = None) -> int:
    """How many cells ``expand`` would build with ``methods`` (None: the recipe's): the product of
    the list lengths, counted without building any."""
    points = math.prod(len(vals) for opts in recipe.grid.values() for vals in opts.values())
    once = 1 if recipe.grid and run_once(recipe, methods or recipe.methods) else 0  # method_groups' extra cell
    return len(recipe.datasets) * len(recipe.models) * len(recipe.scenarios) * (points + once)


def check_size(recipe: RecipeFile, max_cells: int | None = MAX_CELLS, methods: list[str] | None = None) -> int:
    """The recipe's cell count; a one-line ConfigError, before anything is built, when it exceeds ``max_cells``."""
    cells = count_cells(recipe, methods)
    if max_cells is not None and cells > max_cells:
        raise ConfigError(
            f"Recipe '{shorten(recipe.name)}' has {cells:,} cells (datasets × models × scenarios × grid points), "
            f"more than the limit of {max_cells:,}: shrink its grid, or pass --max-cells {cells} if you mean it."
        )
    return cells


def grid_points(recipe: RecipeFile) -> list[tuple[str, dict[str, Any]]]:
    """Expand ``[grid.METHOD]`` into (label, options) pairs; no grid -> one unnamed point."""
    axes = [(f"{m}.{k}", vals) for m, opts in sorted(recipe.grid.items()) for k, vals in sorted(opts.items())]
    if not axes:
        return [("", {})]
    out = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        pairs = dict(zip((k for k, _ in axes), combo))
        out.append((",".join(f"{k}={v}" for k, v in pairs.items()), pairs))
    return out


def method_groups(recipe: RecipeFile, methods: list[str]) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(grid-point label, grid options, methods) for each cell of one dataset × model × scenario.

    Without a grid: one cell running ``methods``. With one: a cell per point running the methods
    the grid varies, and one more running the listed methods it does not vary, once (their identity
    would be the same at every point)."""
    if not recipe.grid:
        return [("", {}, list(methods))]
    groups = [(label, opts, sorted({k.partition(".")[0] for k in opts})) for label, opts in grid_points(recipe)]
    rest = run_once(recipe, methods)
    return groups + ([("", {}, rest)] if rest else [])


def run_once(recipe: RecipeFile, methods: list[str]) -> list[str]:
    """The method list of a grid recipe's run-once cell (empty: none): the listed methods the grid
    does not vary, or with ``all`` every method but the grid's, which run at its points only."""
    if "all" in method_parts(methods):
        return [*method_parts(methods), *(f"-{m}" for m in sorted(recipe.grid) if m not in left_out(methods))]
    return [m for m in method_parts(methods) if m not in recipe.grid]


def scenarios_once(recipe: RecipeFile, registries: Registries) -> None:
    """Each of the recipe's scenarios parsed before any cell is built, and each listed once: a bad
    text is named with the recipe it came from, and two spellings of one scenario (``0.1`` and
    ``0.10``) are refused, where they made two cells of one benchmark that ``--estimate`` and the
    cell count counted twice."""
    seen: dict[str, str] = {}
    for text in map(str, recipe.scenarios):
        try:
            key = parse_scenario(text, registries.scenarios).key
        except ConfigError as err:
            raise ConfigError(f"Recipe '{shorten(recipe.name)}', scenario '{shorten(text)}': {err}") from None
        if key in seen:
            raise ConfigError(
                f"Recipe '{shorten(recipe.name)}' lists scenarios '{shorten(seen[key])}' and '{shorten(text)}', which "
                f"are one scenario ({shorten(key)}): list it once."
            )
        seen[key] = text


def expand(
    recipe: RecipeFile,
    overrides: dict[str, Any] | None = None,
    *,
    max_cells: int | None = MAX_CELLS,
    registries: Registries | None = None,
) -> list[Cell]:
    """The grid as RunRequests, command-line ``overrides`` applied last (``methods`` replaces the
    recipe's list; a grid's methods still run at each of its points); refused when it has more
    than ``max_cells`` cells (None: no limit), counted before any is built. With ``registries``, a
    cell running ``all`` carries the options of the methods ``all`` means for its scenario only (a
    class-only method's table stays out of an instance scenario's cells)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    listed = overrides.pop("methods", None) or recipe.methods
    check_size(recipe, max_cells, listed)
    fixed = {f"{m}.{k}": v for m, opts in recipe.options.items() for k, v in opts.items()}
    groups = method_groups(recipe, listed)
    if registries is not None:  # the plugins' scenarios (a --dry-run lists the grid without loading them)
        scenarios_once(recipe, registries)
    cells = []
    for dataset, model, scenario in itertools.product(recipe.datasets, recipe.models, recipe.scenarios):
        for label, grid_opts, methods in groups:
            runs = methods
            if registries is not None and "all" in method_parts(methods):
                runs = expand_methods(methods, registries, parse_scenario(str(scenario)).rule)
            base: dict[str, Any] = dict(
                dataset=dataset,
                model=model,
                methods=methods,
                options=options_for(runs, {**fixed, **grid_opts}),
                dataset_options=recipe.dataset_options.get(dataset, {}),
                model_options=recipe.model_options.get(model, {}),
                metrics=recipe.metrics,
                seeds=list(recipe.seeds),
                forget=str(scenario),
                subset=None if recipe.subset is None else str(recipe.subset),
                train_recipe=os.path.expanduser(recipe.train_recipe) if recipe.train_recipe else None,
                epochs=recipe.epochs,
                data_dir=user_path(recipe.data_dir),
                pretrained=recipe.pretrained,
                weights=user_path(recipe.weights),
                original=user_path(recipe.original),
                retrained=user_path(recipe.retrained),
                no_retrain=recipe.no_retrain,
                original_min_retain=recipe.original_min_retain,
                protocol=recipe.protocol,
                eval_draw=recipe.eval_draw,
                device=recipe.device,
                threads=recipe.threads,
                models_per_device=recipe.models_per_device,
                save_models=recipe.save_models,
            )
            base.update({k: user_path(v) if isinstance(v, Path) else v for k, v in overrides.items()})
            cells.append(Cell(RunRequest(**base), label))
    return cells


def user_path(path: str | Path | None) -> Path | None:
    """A recipe's file or folder with ``~`` made the home folder, since no shell reads a TOML file: ``~/w.pt`` was
    a file that does not exist, and ``~/data`` (expanded by the datasets here) a folder ``~`` on a Ray worker."""
    return Path(path).expanduser() if path else None


def options_for(methods: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """The ``METHOD.key`` options of the methods a cell runs: a recipe's ``[options.M]`` table says
    how M runs wherever it runs, so a cell without M (a grid point of another method, a recipe cut
    down to fewer methods) leaves it out instead of being refused for naming a method not in the run.
    Names that match no plugin at all are refused by ``check_tables``."""
    parts = method_parts(methods)
    if "all" in parts:
        dropped = left_out(methods)
        return {key: value for key, value in options.items() if key.partition(".")[0] not in dropped}
    return {key: value for key, value in options.items() if key.partition(".")[0] in parts}


def check_tables(recipe: RecipeFile, registries: Registries) -> None:
    """A one-line error for a per-plugin table (``[options.M]``, ``[grid.M]``, ``[dataset_options.D]``,
    ``[model_options.M]``, ``[tune.M]``) whose name no plugin of that kind registered: a misspelt name would
    otherwise be left out of every cell without a word."""
    tables = [
        ("options", "method", recipe.options),
        ("grid", "method", recipe.grid),
        ("dataset_options", "dataset", recipe.dataset_options),
        ("model_options", "model", recipe.model_options),
        ("tune", "method", recipe.tune),  # read by `unlearnkit tune` alone, but a typo there is as silent
    ]
    for table, kind, entries in tables:
        for name in entries:
            try:  # a model may be PREFIX/VARIANT (timm/convnext_tiny), as in the recipe's models list
                registries.model(name) if kind == "model" else registries.by_kind(kind).get(name)
            except UnknownNameError as err:
                raise ConfigError(
                    f"Recipe '{shorten(recipe.name)}' has a [{table}.{shorten(name)}] table: {err}"
                ) from None
    for name in recipe.model_options:
        if name not in recipe.models and ("/" in name or any(m.startswith(f"{name}/") for m in recipe.models)):
            # a variant's name is free text: only the models list can tell a misspelt one
            raise ConfigError(
                f"Recipe '{shorten(recipe.name)}' has a [model_options.\"{shorten(name)}\"] table, but runs no model "
                f"of that name: its tables apply to the models list by exact name ({', '.join(recipe.models)})."
            )


def recipe_scope(recipe: RecipeFile) -> tuple[set[tuple[str, str, str]], set[str]]:
    """The (dataset, model, scenario) cells and method names a recipe covers (a leaderboard filter):
    its listed methods (comma lists split; ``all`` and ``-NAME`` kept as written, for ``in_recipe``)
    and those its grid varies, which run whether listed or not."""
    cells = {
        (d, m, parse_scenario(str(s)).key) for d in recipe.datasets for m in recipe.models for s in recipe.scenarios
    }
    names = set(method_parts(recipe.methods)) | set(recipe.grid)
    return cells, names - {f"-{m}" for m in recipe.grid}
