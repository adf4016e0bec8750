"""The one plugin manager: loads the ``unlearnkit`` entry points one at a time, guarded.

A plugin that fails to import is reported (named, with how to disable it) and skipped, so one
broken package never takes the others down. Environment switches:

- ``UNLEARNKIT_LOAD_PLUGINS=a,b``: load only these entry points (names or distribution names).
- ``UNLEARNKIT_DISABLE_PLUGINS=a,b``: skip these.
- ``UNLEARNKIT_TRACE_HOOKS=1``: print every hook call and its result to stderr.
- ``UNLEARNKIT_PLUGINS_DIR=DIR`` (or ``--plugins-dir``): also load every ``*.py`` module in DIR.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from unlearnkit.api import hookspecs
from unlearnkit.api.contracts import Method
from unlearnkit.api.types import Setting
from unlearnkit.discovery.registry import Provenance, Registries
from unlearnkit.errors import PluginError, shorten

ENTRY_POINT_GROUP = "unlearnkit"


@dataclass
class LoadReport:
    """What was loaded and what failed, for `unlearnkit plugins`."""

    loaded: list[Provenance] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one-line messages
    skipped: list[str] = field(default_factory=list)


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else ""


def hook_problem(err: pluggy.PluginValidationError) -> str:
    """pluggy's reason a hook implementation is invalid, on one line: its first line only names the plugin
    and the hook; the definition and what is wrong with it follow on the next lines."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    hook = lines[0].split(" for hook ", 1)[-1]
    return "; ".join([f"hook {hook}", *lines[1:]])


def _split_env(var: str) -> set[str]:
    return {p.strip() for p in os.environ.get(var, "").split(",") if p.strip()}


class PluginHost:
    """A pluggy manager plus the registries its hooks fill, built lazily on first use."""

    def __init__(
        self,
        plugins_dir: Path | None = None,
        *,
        load_entry_points: bool = True,
        folder_names: Mapping[str, str] | None = None,
    ) -> None:
        """``folder_names``: the name a folder's plugins are recorded under (``local:NAME``, which enters
        their runs' identities), by the folder as loaded; default, the folder as given. A Ray worker loads
        the driver's folder by its absolute path and records it as the driver spelt it."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.report = LoadReport()
        self._provenance: dict[int, Provenance] = {}
        self._registries: Registries | None = None
        self._checked = False  # start-up's loads are checked together once they are all in
        self.trace = bool(os.environ.get("UNLEARNKIT_TRACE_HOOKS"))
        if load_entry_points:
            self._load_entry_points()
        env_dir = os.environ.get("UNLEARNKIT_PLUGINS_DIR")
        for directory in filter(None, [plugins_dir, Path(env_dir) if env_dir else None]):
            self.load_directory(directory, (folder_names or {}).get(str(directory)))
        self.check_hooks()
        self._checked = True

    def check_hooks(self) -> None:
        """A misspelt hook (``register_method``) fails loudly instead of registering nothing."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as err:
            raise PluginError(f"A plugin implements a hook that does not exist: {err}") from None

    # ------------------------------------------------------------------------------- loading
    def _load_entry_points(self) -> None:
        only, disabled = _split_env("UNLEARNKIT_LOAD_PLUGINS"), _split_env("UNLEARNKIT_DISABLE_PLUGINS")
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name))
        seen: set[tuple[str, str]] = set()
        for ep in eps:
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "0"
            if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            if (only and not ({ep.name, dist} & only)) or ({ep.name, dist} & disabled):
                self.report.skipped.append(ep.name)
                continue
            try:
                module = ep.load()
                self.register(module, Provenance(plugin=ep.name, package=dist, version=version))
            except Exception as err:  # noqa: BLE001 - any import or validation failure is reported, not fatal
                reason = hook_problem(err) if isinstance(err, pluggy.PluginValidationError) else first_line(err)
                self.report.failed.append(
                    f"Plugin '{ep.name}' from {dist} {version} failed to load "
                    f"({type(err).__name__}: {reason}); disable it with UNLEARNKIT_DISABLE_PLUGINS={ep.name}."
                )

    def load_directory(self, directory: Path, recorded_as: str | None = None) -> None:
        """Load each ``*.py`` in ``directory`` as a plugin module (quick research, no packaging), recorded
        as the package ``local:DIRECTORY`` (or ``local:RECORDED_AS``)."""
        if directory.exists() and not directory.is_dir():
            raise PluginError(
                f"Plugins directory '{directory}' is a file: --plugins-dir takes the folder holding *.py plugins."
            )
        if not directory.is_dir():
            raise PluginError(f"Plugins directory '{directory}' does not exist.")
        for path in sorted(directory.glob("*.py")):
            mod_name = f"unlearnkit_local_plugins.{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
                self.register(
                    module, Provenance(plugin=path.stem, package=f"local:{recorded_as or directory}", version="0")
                )
            except pluggy.PluginValidationError as err:
                raise PluginError(f"Plugin file '{path}' has an invalid hook: {hook_problem(err)}") from None
            except Exception as err:  # noqa: BLE001
                self.report.failed.append(
                    f"Plugin file '{path}' failed to load ({type(err).__name__}: {err}); fix or remove it."
                )

    def register(self, plugin: object, provenance: Provenance | None = None) -> None:
        """Register a module or object with hook implementations (tests use this directly)."""
        name = provenance.plugin if provenance else getattr(plugin, "__name__", repr(plugin))
        # pluggy names must be unique: two packages may both call an entry point "metrics"
        unique = f"{provenance.package}:{name}" if provenance else name
        self.pm.register(plugin, name=unique)
        self._provenance[id(plugin)] = provenance or Provenance(plugin=name, package="local", version="0")
        self.report.loaded.append(self._provenance[id(plugin)])
        self._registries = None
        if self._checked:  # after start-up: one registered by hand (a notebook, a test) is checked at once
            try:
                self.check_hooks()
            except PluginError:
                self.report.loaded.remove(self._provenance[id(plugin)])
                self.unregister(plugin)  # refused whole, so the host stays usable
                raise

    def unregister(self, plugin: object) -> None:
        self.pm.unregister(plugin)
        self._provenance.pop(id(plugin), None)
        self._registries = None

    # ---------------------------------------------------------------------------- registries
    @property
    def registries(self) -> Registries:
        if self._registries is None:
            self._registries = self._collect()
        return self._registries

    def _collect(self) -> Registries:
        regs = Registries.empty()
        hooks = {
            "register_methods": regs.methods,
            "register_metrics": regs.metrics,
            "register_datasets": regs.datasets,
            "register_models": regs.models,
            "register_scenarios": regs.scenarios,
        }
        for hook_name, registry in hooks.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                prov = self._provenance.get(id(impl.plugin)) or Provenance(impl.plugin_name, "local", "0")

                def register(cls: type, _r=registry, _p=prov, _h=hook_name) -> None:
                    if self.trace:
                        sys.stderr.write(f"[unlearnkit hook] {_h} from {_p.plugin} ({_p.package}) -> {cls!r}\n")
                    _r.add(cls, _p)

                if self.trace:
                    sys.stderr.write(f"[unlearnkit hook] calling {hook_name} of {prov.plugin}\n")
                call_hook(impl.function, register, prov, hook_name)
        return regs


def call_hook(function: Callable[..., object], register: Callable[[type], None], prov: Provenance, hook: str) -> None:
    """A plugin's registration hook: an exception it raises (its own bug, not a registration unlearnkit
    refused) is one line naming the plugin and how to take it out, not a traceback through the host."""
    try:
        function(register=register)
    except PluginError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the plugin's own hook is named, as one failing to import
        remedy = (
            "fix or remove it"
            if prov.package.startswith("local:")
            else f"disable it with UNLEARNKIT_DISABLE_PLUGINS={prov.plugin}"
        )
        raise PluginError(
            f"Plugin '{prov.plugin}' from {prov.package} failed in {hook} ({type(err).__name__}: "
            f"{shorten(first_line(err), 120)}); {remedy}."
        ) from err


_HOST: PluginHost | None = None


def get_host(plugins_dir: Path | None = None) -> PluginHost:
    """The process-wide plugin host (created on first use)."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost(plugins_dir)
    elif plugins_dir is not None:
        _HOST.load_directory(plugins_dir)
    return _HOST


def reset_host() -> None:
    """Forget the loaded plugins (tests, or after changing the environment switches)."""
    global _HOST
    _HOST = None


def registries() -> Registries:
    return get_host().registries


def list_methods() -> list[str]:
    """Names of every registered unlearning method (built-in and installed plugins)."""
    return get_host().registries.methods.names()


def create_method(name: str, setting: object | None = None, **options: object) -> Method:
    """An unlearning method by name, its options validated: the paper's per-setting defaults for
    ``setting`` (a :class:`~unlearnkit.api.Setting`) when given, then ``options`` on top::

        lotus = create_method("lotus", alpha=8)
    """
    entry = get_host().registries.methods.get(name)
    defaults = entry.cls.default_options(setting) if isinstance(setting, Setting) else {}
    return entry.cls(entry.cls.parse_options(options, defaults=defaults))


__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadReport",
    "PluginHost",
    "create_method",
    "get_host",
    "list_methods",
    "registries",
    "reset_host",
]
