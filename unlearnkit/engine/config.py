"""A run request as the user states it, validated into a plan before any compute.

Everything here is cheap: names are checked against the registries (with "did you mean"),
``-o`` options go through each plugin's Options model, fractions and seeds are parsed, the
dataset's files and the store are checked. Only then does the runner load data or train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.api.contracts import Dataset, Method, Metric, Model
from unlearnkit.api.protocols import PROTOCOLS, EvalProtocol, get_protocol
from unlearnkit.api.types import Setting
from unlearnkit.discovery.registry import Entry, Registries
from unlearnkit.engine.splits import Scenario, parse_scenario, parse_subset
from unlearnkit.errors import ConfigError, UnknownNameError

DEFAULT_SEEDS = (3407,)


def parse_option_pairs(pairs: list[str]) -> dict[str, str]:
    """``["alpha=8", "lotus.lr=1e-4"]`` -> dict; a pair without ``=`` is a one-line error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Bad option '{pair}': expected KEY=VALUE (e.g. -o alpha=8, or -o METHOD.alpha=8 with several methods)."
            )
        out[key.strip()] = value.strip()
    return out


def parse_seeds(text: str | list[int] | tuple[int, ...]) -> list[int]:
    if isinstance(text, (list, tuple)):
        items = [str(s) for s in text]
    else:
        items = [s.strip() for s in str(text).split(",") if s.strip()]
    seeds = []
    for item in items:
        if not item.lstrip("-").isdigit() or int(item) < 0 or int(item) >= 2**32:
            raise ConfigError(f"Bad seed '{item}': expected non-negative integers, e.g. --seeds 3407,13,12.")
        seeds.append(int(item))
    if not seeds:
        raise ConfigError("No seeds given: expected e.g. --seeds 3407,13,12.")
    return list(dict.fromkeys(seeds))


@dataclass
class RunRequest:
    """What the user asked for (CLI flags or a recipe), before validation."""

    dataset: str | None = None  # None: the dataset plugin that declares itself the default
    model: str | None = None  # None: the default model plugin
    methods: list[str] = field(default_factory=list)  # empty: the default method
    options: dict[str, str | Any] = field(default_factory=dict)  # "key" (single method) or "method.key"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] | None = None
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    forget: str = "0.1"
    subset: str | None = None
    train_recipe: str | None = None  # None: the dataset's default
    epochs: int | None = None
    data_dir: Path | None = None
    pretrained: bool = False
    weights: Path | None = None  # initial weights of every network built (not an original: see `original`)
    original: Path | None = None  # a trained model file used as the original instead of training one
    retrained: Path | None = None  # a model file used as the retrained gold standard instead of training one
    no_retrain: bool = False  # no gold standard at all (RF-JSD carries the comparison, as for ImageNet)
    protocol: str = "clean"  # evaluation protocol: "clean" (correct) or "paper" (the official code's)
    device: str = "auto"
    compile: bool = False  # torch.compile the training of the original/retrained models (CUDA)
    save_models: bool = True  # log every unlearned model as an MLflow artifact


@dataclass
class Plan:
    """A validated request: plugin classes resolved, options parsed, nothing computed yet."""

    request: RunRequest
    dataset: Entry[Dataset]
    dataset_obj: Dataset
    model: Entry[Model]
    model_obj: Model
    methods: list[Entry[Method]]
    user_options: dict[str, dict[str, Any]]  # method name -> user overrides
    metrics: list[Entry[Metric]]
    scenario: Scenario
    subset: float | int | None
    seeds: list[int]
    train_recipe: str
    protocol: EvalProtocol

    def method_options(self, entry: Entry[Method], setting: Setting) -> Any:
        """Defaults < per-setting (paper) defaults < user overrides, validated."""
        return entry.cls.parse_options(
            self.user_options.get(entry.name, {}), defaults=entry.cls.default_options(setting)
        )


ROLE_ORDER = {"original": 0, "retrained": 1}


def is_reference(entry: Entry[Method]) -> bool:
    return entry.cls.role is not None


def expand_methods(names: list[str], registries: Registries) -> list[str]:
    """``all`` means every registered method; reference rows (methods with a ``role``) are always
    included and lead the list, the original's before the retrained one's."""
    out: list[str] = []
    for name in names:
        for part in [p.strip() for p in name.split(",") if p.strip()]:
            if part == "all":
                out.extend(registries.methods.names())
            else:
                out.append(part)
    for part in out:
        registries.methods.get(part)  # unknown names fail here, with suggestions
    refs = [e for e in registries.methods.entries() if is_reference(e)]
    refs.sort(key=lambda e: (ROLE_ORDER.get(e.cls.role or "", 9), e.name))
    return list(dict.fromkeys([*(e.name for e in refs), *out]))


def split_method_options(
    options: dict[str, Any], methods: list[str], registries: Registries
) -> dict[str, dict[str, Any]]:
    """Route ``-o`` pairs to methods: ``method.key`` explicitly; a bare ``key`` to the one non-reference method."""
    routed: dict[str, dict[str, Any]] = {m: {} for m in methods}
    learners = [m for m in methods if not is_reference(registries.methods.get(m))]
    for key, value in options.items():
        target, dot, opt = key.partition(".")
        if dot and target in routed:
            routed[target][opt] = value
        elif dot:
            raise ConfigError(
                f"Option '{key}' names method '{target}', which is not in this run ({', '.join(methods)})."
            )
        elif len(learners) == 1:
            routed[learners[0]][key] = value
        else:
            raise ConfigError(f"Option '{key}' is ambiguous with several methods: write it as METHOD.{key}=VALUE.")
    return routed


def validate(request: RunRequest, registries: Registries) -> Plan:
    """Resolve and check everything in the request; raise a one-line error on the first problem."""
    if request.dataset is None:
        request.dataset = registries.datasets.default().name
    if request.model is None:
        request.model = registries.models.default().name
    if not request.methods:
        request.methods = [registries.methods.default().name]
    dataset = registries.datasets.get(request.dataset)
    dataset_obj = dataset.cls(dataset.cls.parse_options(request.dataset_options))
    model, variant = registries.model(request.model)
    weights = request.weights
    for what, path in (
        ("Weights", weights),
        ("Original model", request.original),
        ("Retrained model", request.retrained),
    ):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{what} file '{path}' does not exist.")
    if request.no_retrain and request.retrained is not None:
        raise ConfigError("--no-retrain and --retrained FILE contradict each other: give one of them.")
    model_obj = model.cls(
        model.cls.parse_options(request.model_options), variant=variant, pretrained=request.pretrained, weights=weights
    )
    method_names = expand_methods(request.methods, registries)
    methods = [registries.methods.get(n) for n in method_names]
    if request.no_retrain:  # no gold standard: its row cannot exist
        methods = [m for m in methods if m.cls.role != "retrained"]
        method_names = [m.name for m in methods]
    user_options = split_method_options(request.options, method_names, registries)
    scenario = parse_scenario(request.forget)
    probe = Setting(dataset.name, model_obj.model_family(), scenario.rule, 0)
    plan = Plan(
        request=request,
        dataset=dataset,
        dataset_obj=dataset_obj,
        model=model,
        model_obj=model_obj,
        methods=methods,
        user_options=user_options,
        metrics=[registries.metrics.get(n) for n in (request.metrics or registries.metrics.names())],
        scenario=scenario,
        subset=parse_subset(request.subset),
        seeds=parse_seeds(request.seeds),
        train_recipe=request.train_recipe or dataset.cls.default_train_recipe,
        protocol=get_protocol(request.protocol),
    )
    for entry in methods:  # option names and types, before any compute
        plan.method_options(entry, probe)
    from unlearnkit.loops.training import load_train_recipe  # imports torch: only once names are valid

    load_train_recipe(plan.train_recipe, model_obj.model_family()).with_epochs(request.epochs)
    if request.device not in ("auto", "cpu", "cuda") and not request.device.startswith("cuda:"):
        raise ConfigError(f"Bad device '{request.device}'. Valid devices: auto, cpu, cuda, cuda:N.")
    dataset_obj.check_available(request.data_dir)
    return plan


__all__ = ["PROTOCOLS", "Plan", "RunRequest", "UnknownNameError", "parse_option_pairs", "parse_seeds", "validate"]
