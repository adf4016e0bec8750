"""Typed registries of plugin classes, keyed by name, with where each came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from unlearnkit.api.contracts import Dataset, Method, Metric, Model, Options, Plugin, described
from unlearnkit.api.scenarios import Scenario
from unlearnkit.errors import ConfigError, PluginError, UnknownNameError, shorten

P = TypeVar("P", bound=Plugin)
KINDS = ("method", "metric", "dataset", "model", "scenario")  # the plugin kinds, in the order they are listed


@dataclass(frozen=True)
class Provenance:
    """Which plugin module and distribution registered a name: logged with every run."""

    plugin: str
    package: str
    version: str

    def as_tags(self, prefix: str) -> dict[str, str]:
        return {f"{prefix}.plugin": self.plugin, f"{prefix}.package": self.package, f"{prefix}.version": self.version}


#: what a metric's ``needs`` may name: the reference models a benchmark may lack, the sub-class labels of
#: sub-class scenarios, an audit's ensemble (``unlearnkit.api.ensemble``)
METRIC_NEEDS = frozenset({"original", "retrained", "subclasses", "ensemble"})
DIRECTIONS = ("higher", "lower", "closer_to_retrain")
#: characters the command line gives a meaning to (``--method a,b``, ``-o METHOD.KEY=VALUE``,
#: ``--forget NAME:PARAMS``): a plugin named with one cannot be selected, configured or excluded
NAME_DELIMITERS = ",.=:"


def name_problem(name: str) -> str:
    """What makes ``name`` one the command line cannot select ("" when nothing): whitespace, one of
    :data:`NAME_DELIMITERS`, or a leading ``-`` (``--method all,-NAME`` leaves NAME out)."""
    bad = sorted({c for c in name if c.isspace() or c in NAME_DELIMITERS})
    if bad:
        shown = ", ".join("a space" if c.isspace() else repr(c) for c in bad)
        return f"holds {shown}, which the command line reads as a delimiter: use letters, digits and underscores"
    if name.startswith("-"):
        return "starts with '-', which `--method all,-NAME` reads as leaving NAME out"
    return ""


def metric_problem(cls: type[Metric]) -> str:
    """What in a metric class's declarations no benchmark can honour ("" when nothing): a ``needs`` naming
    anything else than :data:`METRIC_NEEDS` leaves the metric out of every run without a word."""
    needs = cls.needs
    if not isinstance(needs, (set, frozenset)) or not all(isinstance(n, str) for n in needs):
        return f"with needs={shorten(repr(needs), 40)}: `needs` is a frozenset of {', '.join(sorted(METRIC_NEEDS))}"
    unknown = sorted(needs - METRIC_NEEDS)
    if unknown:
        return f"with needs {', '.join(map(repr, unknown))}, which no benchmark has: valid {', '.join(sorted(METRIC_NEEDS))}"
    if cls.direction not in DIRECTIONS:
        return f"with direction {shorten(repr(cls.direction), 40)}: valid {', '.join(DIRECTIONS)}"
    return ""


@dataclass(frozen=True)
class Entry(Generic[P]):
    name: str
    cls: type[P]
    provenance: Provenance


class Registry(Generic[P]):
    """One kind of plugin (methods, metrics, ...). A duplicate name is an error naming both."""

    def __init__(self, kind: str, base: type[P]) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[P]] = {}

    def add(self, cls: type[P], provenance: Provenance) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"Plugin '{provenance.plugin}' registered {cls!r} as a {self.kind}, "
                f"but it is not a subclass of unlearnkit.api.{self.base.__name__}."
            )
        name = getattr(cls, "name", "")
        if not name or not isinstance(name, str):
            given = f" (its `name` is {shorten(repr(name), 40)}, not a string)" if name else ""
            raise PluginError(f"Plugin '{provenance.plugin}' registered {cls.__name__} without a `name`{given}.")
        problem = name_problem(name)
        if problem:
            raise PluginError(f"Plugin '{provenance.plugin}' registered {self.kind} {name!r}, whose name {problem}.")
        options = getattr(cls, "Options", None)
        if not (isinstance(options, type) and issubclass(options, Options)):  # `show` and `-o` read it as one
            raise PluginError(
                f"Plugin '{provenance.plugin}' registered {self.kind} '{name}' whose Options is {described(options)}, "
                "not a subclass of unlearnkit.Options (class Options(uk.Options): ...)."
            )
        problem = metric_problem(cls) if issubclass(cls, Metric) else ""
        if problem:
            raise PluginError(f"Plugin '{provenance.plugin}' registered metric '{name}' {problem}.")
        if name in self._entries:
            first = self._entries[name].provenance
            raise PluginError(
                f"Duplicate {self.kind} '{name}': registered by {first.package} ({first.plugin}) "
                f"and by {provenance.package} ({provenance.plugin}). Disable one with "
                f"UNLEARNKIT_DISABLE_PLUGINS={provenance.plugin}."
            )
        self._entries[name] = Entry(name, cls, provenance)

    def get(self, name: str) -> Entry[P]:
        if not isinstance(name, str):  # a notebook's typo (a list, a class): not a traceback from "did you mean"
            raise ConfigError(
                f"A {self.kind} is named by text, not {described(name)}. Valid {self.kind}s: {', '.join(self.names())}."
            )
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def default(self) -> Entry[P]:
        """The entry whose plugin declares ``default = True`` (used when the user names none)."""
        chosen = [e for e in self._entries.values() if e.cls.default]
        if len(chosen) != 1:
            found = ", ".join(f"{e.name} ({e.provenance.package})" for e in chosen) or "none"
            raise PluginError(
                f"Exactly one {self.kind} must declare default = True to be used when none is named; found {found}. "
                f"Name one explicitly (valid: {', '.join(self.names())})."
            )
        return chosen[0]

    def entries(self) -> list[Entry[P]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


@dataclass
class Registries:
    methods: Registry[Method]
    metrics: Registry[Metric]
    datasets: Registry[Dataset]
    models: Registry[Model]
    scenarios: Registry[Scenario]

    @classmethod
    def empty(cls) -> Registries:
        return cls(
            methods=Registry("method", Method),  # type: ignore[type-abstract]
            metrics=Registry("metric", Metric),  # type: ignore[type-abstract]
            datasets=Registry("dataset", Dataset),  # type: ignore[type-abstract]
            models=Registry("model", Model),  # type: ignore[type-abstract]
            scenarios=Registry("scenario", Scenario),  # type: ignore[type-abstract]
        )

    def by_kind(self, kind: str) -> Registry:
        registry: Registry = getattr(self, f"{kind}s")
        return registry

    def model(self, name: str) -> tuple[Entry[Model], str | None]:
        """Resolve ``name`` or ``prefix/variant`` (``timm/convnext_tiny``) to a model entry."""
        if "/" in name:
            prefix, variant = name.split("/", 1)
            entry = self.models.get(prefix)
            if not entry.cls.accepts_variant:
                raise UnknownNameError("model", name, self.models.names())
            return entry, variant
        return self.models.get(name), None
