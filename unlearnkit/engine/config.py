"""A run request as the user states it, validated into a plan before any compute.

Everything here is cheap: names are checked against the registries (with "did you mean"),
``-o`` options go through each plugin's Options model, fractions and seeds are parsed, the
dataset's files and the store are checked. Only then does the runner load data or train.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearnkit.api.contracts import Dataset, Method, Metric, Model
from unlearnkit.api.protocols import PROTOCOLS, EvalProtocol, get_protocol
from unlearnkit.api.scenarios import Scenario
from unlearnkit.api.types import ROLE_ORDER, Setting
from unlearnkit.discovery.registry import Entry, Registries
from unlearnkit.engine.splits import parse_scenario, parse_subset
from unlearnkit.errors import ConfigError, UnknownNameError, did_you_mean, shorten

if TYPE_CHECKING:
    from unlearnkit.loops.training import TrainRecipe

DEFAULT_SEEDS = (3407,)


#: how each kind's options are given on the command line, for the line a malformed pair gets
OPTION_EXAMPLES = {
    "method": "-o KEY=VALUE (e.g. -o alpha=8, or -o METHOD.alpha=8 with several methods)",
    "dataset": "--dataset-option KEY=VALUE (e.g. --dataset-option download=false)",
    "model": "--model-option KEY=VALUE (`unlearnkit show model NAME` lists them)",
}


def parse_option_pairs(pairs: list[str], kind: str = "method") -> dict[str, str]:
    """``["alpha=8", "lotus.lr=1e-4"]`` -> dict; a pair without ``=`` is a one-line error showing how
    ``kind``'s options are written."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Bad {kind} option '{shorten(pair)}': expected {OPTION_EXAMPLES[kind]}.")
        out[key.strip()] = value.strip()
    return out


def parse_seeds(text: str | list[int] | tuple[int, ...]) -> list[int]:
    if isinstance(text, (list, tuple)):
        items = [str(s) for s in text]
    else:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
    seeds = []
    for item in items:
        if not (item.isascii() and item.lstrip("-").isdigit()) or int(item) < 0 or int(item) >= 2**32:
            raise ConfigError(f"Bad seed '{item}': expected non-negative integers, e.g. --seeds 3407,13,12.")
        seeds.append(int(item))
    if not seeds:
        raise ConfigError("No seeds given: expected e.g. --seeds 3407,13,12.")
    return list(dict.fromkeys(seeds))


def parse_models_per_device(value: str | int | None) -> int | None:
    """``--models-per-device``: a whole number of 1 or more, or ``auto`` (None: chosen when training)."""
    if value is None or value == "auto":
        return None
    text = str(value).strip()
    if type(value) is bool or not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigError(f"Bad --models-per-device {value!r}: expected a whole number of 1 or more, or auto.")
    return int(text)


def _flag(help: str, **more: Any) -> dict[str, Any]:
    """A request field's description: the `unlearnkit run` option and the recipe key share it."""
    return {"help": help, **more}


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for (CLI flags or a recipe), exactly as asked: never changed by
    validation (the resolved values live in the :class:`Plan`). Each field is one `unlearnkit run`
    option and one recipe key (``tests/test_config.py`` keeps the three in step)."""

    dataset: str | None = field(
        default=None, metadata=_flag("None: the dataset that declares itself the default", recipe="datasets")
    )
    model: str | None = field(default=None, metadata=_flag("None: the default model plugin", recipe="models"))
    methods: list[str] = field(default_factory=list, metadata=_flag("empty: the default method", cli="method"))
    options: dict[str, str | Any] = field(
        default_factory=dict, metadata=_flag('"key" (one method), "method.key" or "metric.key"', cli="option")
    )
    dataset_options: dict[str, Any] = field(default_factory=dict, metadata=_flag("dataset plugin options"))
    model_options: dict[str, Any] = field(default_factory=dict, metadata=_flag("model plugin options"))
    metrics: list[str] | None = field(default=None, metadata=_flag("None: every registered metric", cli="metric"))
    seeds: str | list[int] | tuple[int, ...] = field(
        default=DEFAULT_SEEDS, metadata=_flag("comma-separated text or integers, parsed once by validate")
    )
    forget: str = field(default="0.1", metadata=_flag("the forget-set scenario", recipe="scenarios"))
    subset: str | None = field(default=None, metadata=_flag("per-class count or fraction of the data"))
    train_recipe: str | None = field(default=None, metadata=_flag("None: the dataset's default"))
    epochs: int | None = field(default=None, metadata=_flag("override the training recipe's epochs"))
    data_dir: Path | None = field(default=None, metadata=_flag("folder holding the dataset's files"))
    pretrained: bool = field(default=False, metadata=_flag("start from pretrained weights"))
    weights: Path | None = field(default=None, metadata=_flag("initial weights of every network built"))
    original: Path | None = field(default=None, metadata=_flag("a trained model file used as the original"))
    retrained: Path | None = field(default=None, metadata=_flag("a model file used as the gold standard"))
    no_retrain: bool = field(default=False, metadata=_flag("no gold standard at all"))
    original_min_retain: float | None = field(
        default=None, metadata=_flag("None: 0.9; the original's lowest retain accuracy before it is judged weak")
    )
    protocol: str = field(default="clean", metadata=_flag('"clean" (correct) or "paper" (the official code\'s)'))
    eval_draw: int = field(
        default=0,
        metadata=_flag("0: the evaluation's usual random crops; N: drawn anew (paper protocol; models reused)"),
    )
    device: str = field(default="auto", metadata=_flag("auto, cpu, cuda or cuda:N: resolved where the run runs"))
    threads: int | None = field(
        default=None, metadata=_flag("None: torch's default; N pins torch's CPU threads and enters the identity")
    )
    compile: bool = field(default=False, metadata=_flag("torch.compile reference training (CUDA)", recipe=None))
    models_per_device: str | int = field(
        default=1,
        metadata=_flag("1: reference models trained one at a time; N or auto: N together (same identities)"),
    )
    save_models: bool = field(default=True, metadata=_flag("log every unlearned model as an artifact"))


def cli_names() -> dict[str, str]:
    """`unlearnkit run` parameter name -> RunRequest field name (``dataset_options`` is
    ``--dataset-option``, ``methods`` is ``--method``, ...)."""
    out = {}
    for f in fields(RunRequest):
        cli = f.metadata.get("cli")
        if cli is None:
            cli = f.name[:-1] if f.name.endswith("_options") else f.name
        out[cli] = f.name
    return out


def recipe_keys() -> dict[str, str | None]:
    """Recipe key -> RunRequest field name (None: a field recipes do not set)."""
    out: dict[str, str | None] = {}
    for f in fields(RunRequest):
        key = f.metadata.get("recipe", f.name)
        if key is None:
            continue
        out[key] = f.name
    return out


@dataclass(frozen=True)
class Plan:
    """A request resolved and validated once: plugin classes and objects, every option parsed,
    seeds parsed, the training recipe loaded, nothing computed yet. The device is not resolved
    here: a plan built on one host (a sweep's driver) may run on another (a Ray worker)."""

    request: RunRequest  # as asked
    dataset: Entry[Dataset]
    dataset_obj: Dataset
    model: Entry[Model]
    model_name: str  # the model as requested or defaulted (timm/<name> included)
    model_obj: Model
    methods: list[Entry[Method]]
    user_options: dict[str, dict[str, Any]]  # method name -> user overrides
    metrics: list[Entry[Metric]]
    metric_options: dict[str, Any]  # metric name -> its parsed Options (only metrics given options)
    scenario: Scenario  # the scenario plugin, its parameters parsed (``scenario.key`` is its canonical text)
    scenario_entry: Entry[Scenario]
    subset: float | int | None
    seeds: tuple[int, ...]
    train_recipe: TrainRecipe  # loaded for the model's family, --epochs applied
    protocol: EvalProtocol
    models_per_device: int | None = 1  # reference models trained together; None: chosen from memory or cores

    def method_options(self, entry: Entry[Method], setting: Setting) -> Any:
        """Defaults < per-setting (paper) defaults < user overrides, validated."""
        return entry.cls.parse_options(
            self.user_options.get(entry.name, {}), defaults=entry.cls.default_options(setting)
        )

    def metric(self, entry: Entry[Metric]) -> Metric:
        """The metric plugin with its options (the user's, else its defaults)."""
        return entry.cls(self.metric_options.get(entry.name))

    def resolved(self) -> dict[str, Any]:
        """What the request resolved to, JSON-able: recorded with every run as identity.json."""
        return {
            "dataset": self.dataset.name,
            "dataset_options": self.dataset_obj.options.model_dump(),
            "model": self.model_name,
            "model_options": self.model_obj.options.model_dump(),
            "methods": [m.name for m in self.methods],
            "method_options": self.user_options,
            "metrics": [m.name for m in self.metrics],
            "metric_options": {k: v.model_dump() for k, v in self.metric_options.items()},
            "scenario": self.scenario.key,
            "subset": self.subset,
            "seeds": list(self.seeds),
            "train_recipe": self.train_recipe.model_dump(),
            "protocol": self.protocol.name,
            **({"eval_draw": self.protocol.draw} if self.protocol.draw else {}),
            "device": self.request.device,
            "threads": self.request.threads,  # None: torch's default (the count used is in the run's tags)
            "pretrained": self.request.pretrained,
            "weights": str(self.request.weights) if self.request.weights else None,
            "original": str(self.request.original) if self.request.original else None,
            "retrained": str(self.request.retrained) if self.request.retrained else None,
            "no_retrain": self.request.no_retrain,
            "original_min_retain": self.request.original_min_retain,  # judges the original; changes no number
            "compile": self.request.compile,
            "models_per_device": self.models_per_device,  # how models were trained, not what they are
            "save_models": self.request.save_models,
        }


def is_reference(entry: Entry[Method]) -> bool:
    return entry.cls.role is not None


def method_parts(names: list[str]) -> list[str]:
    """The names of a method list, comma lists split and spaces dropped: ``["all, - salun", "lotus"]``
    -> ``["all", "-salun", "lotus"]``."""
    parts = [p.strip() for name in names for p in name.split(",") if p.strip()]
    return [f"-{p[1:].strip()}" if p.startswith("-") else p for p in parts]


def metric_names(names: list[str] | None, registries: Registries) -> list[str]:
    """The metrics a run computes: every registered one when None, else the names given, comma
    lists split as a method list's are (``--metric acc_forget,mia``), each once, in order."""
    if names is None:
        return registries.metrics.names()
    parts = list(dict.fromkeys(p.strip() for name in names for p in name.split(",") if p.strip()))
    if not parts:
        valid = ", ".join(registries.metrics.names())
        raise ConfigError(f"Metric list '{shorten(','.join(names))}' names no metric. Valid metrics: {valid}.")
    return parts


def left_out(names: list[str]) -> set[str]:
    """The methods a list leaves out of ``all`` (its ``-NAME`` parts)."""
    return {p[1:] for p in method_parts(names) if p.startswith("-")}


def expand_methods(names: list[str], registries: Registries, rule: str | None = None) -> list[str]:
    """``all`` means every registered method defined for forget rule ``rule`` (every one when
    None), less those named ``-NAME`` (``all,-salun``); reference rows (methods with a ``role``) are
    always included and lead the list, the original's before the retrained one's. A method named
    explicitly that is not defined for ``rule`` is refused in one line (``Method.scenario_rules``)."""
    parts = method_parts(names)
    if not parts:  # e.g. --method "$EMPTY": a run of the reference rows alone is asked for by name
        valid = ", ".join(registries.methods.names())
        raise ConfigError(f"Method list '{shorten(','.join(names))}' names no method. Valid methods: all, {valid}.")
    dropped = left_out(names)
    for name in dropped:
        cls = registries.methods.get(name).cls  # a misspelt -NAME fails here, with suggestions
        if cls.role is not None:
            raise ConfigError(
                f"Method '-{name}' leaves out a reference row, which every run has; drop it from the list."
            )
    if dropped and "all" not in parts:
        listed = ",".join(parts)
        raise ConfigError(
            f"Method list '{shorten(listed)}' leaves methods out of 'all' but has no 'all': write 'all,{listed}'."
        )
    out: list[str] = []
    for part in parts:
        if part == "all":
            out.extend(
                n
                for n in registries.methods.names()
                if rule is None or registries.methods.get(n).cls.accepts_scenario(rule)
            )
        elif not part.startswith("-"):
            out.append(part)
    out = [name for name in out if name not in dropped]
    for part in out:
        cls = registries.methods.get(part).cls  # unknown names fail here, with suggestions
        if rule is not None and not cls.accepts_scenario(rule):
            rules = ", ".join(sorted(cls.scenario_rules or ()))
            why = f": {cls.scenario_reason}" if cls.scenario_reason else ""
            raise ConfigError(f"Method '{part}' is defined only for forget scenarios {rules}, not '{rule}'{why}.")
    refs = [e for e in registries.methods.entries() if is_reference(e)]
    refs.sort(key=lambda e: (ROLE_ORDER.get(e.cls.role or "", 9), e.name))
    return list(dict.fromkeys([*(e.name for e in refs), *out]))


def split_options(
    options: dict[str, Any], methods: list[str], metrics: list[str], registries: Registries
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Route ``-o`` pairs: ``method.key`` and ``metric.key`` explicitly; a bare ``key`` to the one
    non-reference method. Returns (method -> options, metric -> options)."""
    routed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    to_metrics: dict[str, dict[str, Any]] = {}
    learners = [m for m in methods if not is_reference(registries.methods.get(m))]
    for key, value in options.items():
        target, dot, opt = key.partition(".")
        if dot and target in routed:
            routed[target][opt] = value
        elif dot and target in metrics:
            to_metrics.setdefault(target, {})[opt] = value
        elif dot and target in registries.metrics.names():
            raise ConfigError(
                f"Option '{key}' names metric '{target}', which is not in this run ({', '.join(metrics)})."
            )
        elif dot:  # a misspelt method or metric: the closest of either that this run has
            raise ConfigError(
                f"Option '{key}' names '{shorten(target)}', which is no method or metric of this run (methods: "
                f"{', '.join(methods)}; metrics: {', '.join(metrics)}).{did_you_mean(target, [*methods, *metrics])}"
            )
        elif len(learners) == 1:
            routed[learners[0]][key] = value
        else:
            raise ConfigError(f"Option '{key}' is ambiguous with several methods: write it as METHOD.{key}=VALUE.")
    return routed, to_metrics


def validate(request: RunRequest, registries: Registries) -> Plan:
    """Resolve and check everything in the request, once; raise a one-line error on the first
    problem. The request itself is left as it was asked."""
    dataset = registries.datasets.get(request.dataset or registries.datasets.default().name)
    dataset_obj = dataset.cls(dataset.cls.parse_options(request.dataset_options))
    model_name = request.model or registries.models.default().name
    model, variant = registries.model(model_name)
    for what, path in (
        ("Weights", request.weights),
        ("Original model", request.original),
        ("Retrained model", request.retrained),
    ):
        if path is not None and not Path(path).is_file():
            wrong = "is a folder: name the model file in it" if Path(path).is_dir() else "does not exist"
            raise ConfigError(f"{what} file '{shorten(path, 300)}' {wrong}.")
    if request.no_retrain and request.retrained is not None:
        raise ConfigError("--no-retrain and --retrained FILE contradict each other: give one of them.")
    bar = request.original_min_retain
    if bar is not None and not (isinstance(bar, (int, float)) and 0 <= bar <= 1):
        raise ConfigError(f"Bad --original-min-retain {bar!r}: expected a retain accuracy from 0 to 1, e.g. 0.8.")
    model_obj = model.cls(
        model.cls.parse_options(request.model_options),
        variant=variant,
        pretrained=request.pretrained,
        weights=request.weights,
    )
    scenario = parse_scenario(request.forget, registries.scenarios)
    method_names = expand_methods(request.methods or [registries.methods.default().name], registries, scenario.rule)
    methods = [registries.methods.get(n) for n in method_names]
    if request.no_retrain:  # no gold standard: its row cannot exist
        methods = [m for m in methods if m.cls.role != "retrained"]
        method_names = [m.name for m in methods]
    metrics = [registries.metrics.get(n) for n in metric_names(request.metrics, registries)]
    user_options, metric_values = split_options(request.options, method_names, [m.name for m in metrics], registries)
    metric_options = {m.name: m.cls.parse_options(metric_values[m.name]) for m in metrics if m.name in metric_values}
    subset = parse_subset(request.subset)
    seeds = tuple(parse_seeds(request.seeds))
    protocol = get_protocol(request.protocol).with_draw(request.eval_draw)
    probe = Setting(dataset.name, model_obj.model_family(), scenario.rule, 0)
    for entry in methods:  # option names and types, before any compute
        entry.cls.parse_options(user_options.get(entry.name, {}), defaults=entry.cls.default_options(probe))
    from unlearnkit.loops.training import load_train_recipe  # imports torch: only once names are valid

    recipe = load_train_recipe(request.train_recipe or dataset.cls.default_train_recipe, model_obj.model_family())
    train_recipe = recipe.with_epochs(request.epochs)
    if train_recipe.epochs == 0 and not (request.pretrained or request.weights):  # before the store is opened
        raise ConfigError("A 0-epoch training recipe leaves the original untrained: give --pretrained or --weights.")
    if request.device not in ("auto", "cpu", "cuda") and not request.device.startswith("cuda:"):
        raise ConfigError(f"Bad device '{request.device}'. Valid devices: auto, cpu, cuda, cuda:N.")
    threads = request.threads
    if threads is not None and (type(threads) is not int or threads < 1):
        raise ConfigError(f"Bad --threads {threads!r}: expected a whole number of CPU threads of 1 or more, e.g. 1.")
    models_per_device = parse_models_per_device(request.models_per_device)
    dataset_obj.check_available(request.data_dir)
    return Plan(
        request=request,
        dataset=dataset,
        dataset_obj=dataset_obj,
        model=model,
        model_name=model_name,
        model_obj=model_obj,
        methods=methods,
        user_options=user_options,
        metrics=metrics,
        metric_options=metric_options,
        scenario=scenario,
        scenario_entry=registries.scenarios.get(scenario.name),
        subset=subset,
        seeds=seeds,
        train_recipe=train_recipe,
        protocol=protocol,
        models_per_device=models_per_device,
    )


__all__ = [
    "PROTOCOLS",
    "Plan",
    "RunRequest",
    "UnknownNameError",
    "parse_models_per_device",
    "parse_option_pairs",
    "parse_seeds",
    "validate",
]
