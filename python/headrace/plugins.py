"""The plugin registry: entry points and settings, with every problem kept for inspection.

Five kinds, each with its entry-point group and settings list (``HEADRACE_PLUGINS[...]`` in
Django settings, or ``configure(kind, [...])`` elsewhere):

=============  ============================  ===================  =========================
kind           entry-point group             settings key         required base
=============  ============================  ===================  =========================
backends       ``headrace.backends``         ``BACKENDS``         ``headrace.Backend``
connectors     ``headrace.connectors``       ``CONNECTORS``       ``Connector`` / ``ConnectorAdapter``
secrets        ``headrace.secrets.backends`` ``SECRETS_BACKENDS`` ``SecretsBackend``
providers      ``headrace.providers``        ``PROVIDERS``        ``BaseProvider``
integrations   ``headrace.integrations``     ``INTEGRATIONS``     ``IntegrationImpl``
=============  ============================  ===================  =========================

Entry points load first, then settings. A settings entry with the key of an entry point
replaces it and the override is reported (:attr:`PluginRegistry.overrides`, a warning in the
log). Two different plugins claiming one key from one source are a conflict: neither is
registered and the conflict is reported. A plugin that fails to import, is not a subclass of
the kind's base or fails its checks is skipped, its key, origin and reason kept in
:attr:`PluginRegistry.problems`. ``headrace plugins`` lists all of it. An unknown key raises
:class:`PluginNotFoundError` in every registry.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from headrace.errors import ConfigError, PluginNotFoundError

__all__ = [
    "INTEGRATIONS",
    "KINDS",
    "IntegrationRegistry",
    "PluginInfo",
    "PluginNotFoundError",
    "PluginProblem",
    "PluginRegistry",
    "configure",
    "registry",
    "reload_all",
]

log = logging.getLogger("headrace.plugins")


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin: its key, where it came from and the class."""

    kind: str
    key: str
    origin: str  # "builtin", "entry_point" or "settings"
    target: str  # the dotted path or entry-point value
    cls: type[Any]
    overrides: str | None = None  # the target it replaced, when it overrode an entry point


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that was skipped (``import_failed``, ``not_subclass``, ``invalid``, ``conflict``)
    or an override worth knowing about (``override``)."""

    kind: str
    key: str
    origin: str
    target: str
    problem: str
    reason: str


def import_dotted(path: str) -> Any:
    """Imports ``package.module:attr`` or ``package.module.attr``; ``ConfigError`` names the path
    and the cause when it cannot (the one dotted-path loader of plugins, handlers and bridges)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{path!r} is not a dotted path to a class ('package.module.Class')")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {path!r}: {type(exc).__name__}: {exc}") from exc
    return obj


def _django_setting(name: str) -> list[str] | None:
    try:
        from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        if not settings.configured:
            return None
        value = getattr(settings, "HEADRACE_PLUGINS", {}).get(name)
    except Exception:
        return None
    if value is None:
        return None
    return [str(v) for v in value]


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


@dataclass(frozen=True)
class _Candidate:
    key: str
    origin: str
    target: str
    load: Callable[[], Any]


class PluginRegistry:
    """The plugins of one kind; loads lazily on first use."""

    def __init__(
        self,
        kind: str,
        group: str,
        setting: str,
        bases: Callable[[], tuple[type[Any], ...]],
        *,
        key_of: Callable[[type[Any]], str] | None = None,
        check: Callable[[type[Any]], None] | None = None,
        builtins: Callable[[], Iterable[type[Any]]] | None = None,
        resolve: Callable[[Any, str], Any] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.setting = setting
        self._bases = bases
        self._key_of = key_of or (lambda cls: str(getattr(cls, "key", "") or ""))
        self._check = check
        self._builtins = builtins
        #: Turns what an entry point loads (a module, say) into the plugin class; raises
        #: ``ConfigError`` naming what is wrong.
        self._resolve = resolve
        self._settings_paths: list[str] | None = None
        self._loaded_paths: list[str] = []
        self._registered: dict[str, PluginInfo] = {}
        self._plugins: dict[str, PluginInfo] = {}
        self._problems: list[PluginProblem] = []
        self._loaded = False
        self._lock = threading.RLock()

    # -- configuration -------------------------------------------------------------------

    def configure(self, dotted_paths: Sequence[str] | None) -> None:
        """Sets the settings list (``None``: read ``HEADRACE_PLUGINS[setting]`` from Django), forgets
        the paths :meth:`load_paths` added, and reloads on next use."""
        with self._lock:
            self._settings_paths = list(dotted_paths) if dotted_paths is not None else None
            self._loaded_paths = []
            self._loaded = False

    def reload(self) -> None:
        """Forgets everything and scans entry points and settings again."""
        with self._lock:
            self._loaded = False
            self._load()

    def load_paths(self, dotted_paths: Iterable[str]) -> None:
        """Adds dotted paths from code (e.g. a project setting of its own) to the settings
        source and loads them; ``ConfigError`` if any of them is skipped."""
        paths = [str(p) for p in dotted_paths]
        with self._lock:
            self._loaded_paths.extend(p for p in paths if p not in self._loaded_paths)
            self.reload()
            self._raise_problems(lambda p: p.origin == "settings" and p.target in paths)

    def load_entry_points(self) -> None:
        """Scans the entry-point group again; ``ConfigError`` if an entry point was skipped."""
        with self._lock:
            self.reload()
            self._raise_problems(lambda p: p.origin == "entry_point")

    def _raise_problems(self, selected: Callable[[PluginProblem], bool]) -> None:
        found = [p for p in self._problems if p.problem != "override" and selected(p)]
        if found:
            raise ConfigError(
                "; ".join(f"{self.kind} plugin {p.key!r} ({p.target}) {p.problem}: {p.reason}" for p in found)
            )

    # -- lookups -------------------------------------------------------------------------

    def get(self, key: str) -> type[Any]:
        """The class registered under ``key``; :class:`PluginNotFoundError` if there is none."""
        self._load()
        info = self._plugins.get(key)
        if info is None:
            why = [p for p in self._problems if p.key == key and p.problem != "override"]
            known = ", ".join(sorted(self._plugins)) or "none"
            detail = f" ({why[0].problem}: {why[0].reason})" if why else ""
            raise PluginNotFoundError(f"no {self.kind} plugin {key!r}{detail}; known: {known}", kind=self.kind, key=key)
        return info.cls

    def info(self, key: str) -> PluginInfo:
        self.get(key)
        return self._plugins[key]

    def keys(self) -> list[str]:
        self._load()
        return sorted(self._plugins)

    def plugins(self) -> list[PluginInfo]:
        self._load()
        return [self._plugins[k] for k in sorted(self._plugins)]

    @property
    def problems(self) -> list[PluginProblem]:
        """Skipped plugins and conflicts (and overrides), in discovery order."""
        self._load()
        return list(self._problems)

    @property
    def overrides(self) -> list[PluginProblem]:
        return [p for p in self.problems if p.problem == "override"]

    @property
    def conflicts(self) -> list[PluginProblem]:
        return [p for p in self.problems if p.problem == "conflict"]

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._plugins

    def register(self, cls: type[Any], *, key: str | None = None, replace: bool = True) -> type[Any]:
        """Registers a class from code (origin ``builtin``; kept across reloads); usable as a
        decorator. With ``replace=False`` a key another class holds is a ``ConfigError``."""
        self._load()
        problem = self._validate(cls)
        key = key or (self._key_of(cls) if problem is None else "")
        with self._lock:
            if problem:
                raise ConfigError(f"{self.kind} plugin {key or cls!r} is invalid: {problem[1]}")
            existing = self._plugins.get(key)
            if not replace and existing is not None and existing.cls is not cls:
                raise ConfigError(f"{self.kind} key {key!r} is taken by {existing.target}")
            info = PluginInfo(self.kind, key, "builtin", f"{cls.__module__}.{cls.__qualname__}", cls)
            self._registered[key] = self._plugins[key] = info
        return cls

    # -- loading -------------------------------------------------------------------------

    def _validate(self, cls: Any) -> tuple[str, str] | None:
        bases = self._bases()
        if not isinstance(cls, type) or not issubclass(cls, bases):
            names = " or ".join(f"{b.__module__}.{b.__qualname__}" for b in bases)
            return "not_subclass", f"{cls!r} is not a subclass of {names}"
        if self._check is not None:
            try:
                self._check(cls)
            except Exception as exc:
                return "invalid", f"{type(exc).__name__}: {exc}"
        return None

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._plugins = {}
            self._problems = []
            if self._builtins is not None:
                for cls in self._builtins():
                    key = self._key_of(cls)
                    self._plugins[key] = PluginInfo(
                        self.kind, key, "builtin", f"{cls.__module__}.{cls.__qualname__}", cls
                    )
            self._load_source("entry_point", self._entry_point_candidates())
            paths = self._settings_paths if self._settings_paths is not None else _django_setting(self.setting)
            paths = [*(paths or []), *(p for p in self._loaded_paths if p not in (paths or []))]
            self._load_source("settings", self._settings_candidates(paths))
            self._plugins.update(self._registered)
            self._loaded = True

    def entry_point(self, name: str) -> EntryPoint | None:
        """The entry point ``name`` of this kind's group, not loaded (``None`` if there is none):
        for callers that load one plugin by name with their own error handling."""
        for ep in entry_points(group=self.group):
            if ep.name == name:
                return ep
        return None

    def _entry_point_candidates(self) -> list[_Candidate]:
        found = []
        for ep in entry_points(group=self.group):
            dist = getattr(getattr(ep, "dist", None), "name", None)
            target = f"{ep.value} ({dist})" if dist else ep.value
            found.append(_Candidate(ep.name, "entry_point", target, ep.load))
        return sorted(found, key=lambda c: (c.key, c.target))

    def _settings_candidates(self, paths: Sequence[str]) -> list[_Candidate]:
        found = []
        for path in paths:
            try:
                cls = import_dotted(path)
            except Exception as exc:
                self._problems.append(
                    PluginProblem(self.kind, path, "settings", path, "import_failed", f"{type(exc).__name__}: {exc}")
                )
                log.warning("%s plugin %s from settings failed to import: %s", self.kind, path, exc)
                continue
            key = self._key_of(cls) if isinstance(cls, type) else ""
            found.append(_Candidate(key or path, "settings", path, _constant(cls)))
        return found

    def _load_source(self, origin: str, candidates: list[_Candidate]) -> None:
        by_key: dict[str, list[_Candidate]] = {}
        for c in candidates:
            by_key.setdefault(c.key, []).append(c)
        for key, group in by_key.items():
            distinct = {c.target for c in group}
            if len(distinct) > 1:
                reason = f"{len(distinct)} plugins claim key {key!r} from {origin}: {', '.join(sorted(distinct))}"
                self._problems.append(PluginProblem(self.kind, key, origin, group[0].target, "conflict", reason))
                log.warning("%s plugin conflict: %s; none of them is registered", self.kind, reason)
                if origin == "entry_point":
                    self._plugins.pop(key, None)
                continue
            candidate = group[0]
            try:
                cls = candidate.load()
            except Exception as exc:
                self._problems.append(
                    PluginProblem(
                        self.kind, key, origin, candidate.target, "import_failed", f"{type(exc).__name__}: {exc}"
                    )
                )
                log.warning("%s plugin %r (%s) failed to import: %s", self.kind, key, candidate.target, exc)
                continue
            if self._resolve is not None:
                try:
                    cls = self._resolve(cls, f"{self.kind} plugin {key!r} ({candidate.target})")
                except ConfigError as exc:
                    self._problems.append(
                        PluginProblem(self.kind, key, origin, candidate.target, "not_subclass", str(exc))
                    )
                    log.warning("%s plugin %r (%s) skipped: %s", self.kind, key, candidate.target, exc)
                    continue
            problem = self._validate(cls)
            if problem is not None:
                self._problems.append(PluginProblem(self.kind, key, origin, candidate.target, *problem))
                log.warning("%s plugin %r (%s) skipped: %s", self.kind, key, candidate.target, problem[1])
                continue
            replaced = self._plugins.get(key)
            overrides = None
            if replaced is not None and replaced.target != candidate.target:
                overrides = replaced.target
                reason = f"{candidate.target} from {origin} replaces {replaced.target} from {replaced.origin}"
                self._problems.append(PluginProblem(self.kind, key, origin, candidate.target, "override", reason))
                log.warning("%s plugin %r: %s", self.kind, key, reason)
            self._plugins[key] = PluginInfo(self.kind, key, origin, candidate.target, cls, overrides)


# -- the five registries --------------------------------------------------------------------


def _backend_bases() -> tuple[type[Any], ...]:
    from headrace.backend import Backend

    return (Backend,)


def _backend_class(loaded: Any, where: str) -> Any:
    """A backend entry point may name a module, as a policy's ``config.package`` may: the
    runner's rule picks its Backend subclass."""
    from headrace.runner import backend_class_in

    return backend_class_in(loaded, where)


def _connector_bases() -> tuple[type[Any], ...]:
    from headrace.connectors import Connector, ConnectorAdapter

    return (Connector, ConnectorAdapter)


def _connector_key(cls: type[Any]) -> str:
    return str(getattr(cls, "key", "") or getattr(cls, "code", "") or "")


def _check_connector(cls: type[Any]) -> None:
    from headrace.connectors import Connector, check_action_specs

    if not _connector_key(cls):
        raise ConfigError("a connector needs a non-empty 'key' (or 'code' for a ConnectorAdapter)")
    if issubclass(cls, Connector):
        check_action_specs(cls)


def _connector_builtins() -> Iterable[type[Any]]:
    from headrace.connectors import builtin_connectors

    return builtin_connectors()


def _secrets_bases() -> tuple[type[Any], ...]:
    from headrace.secrets import SecretsBackend

    return (SecretsBackend,)


def _secrets_builtins() -> Iterable[type[Any]]:
    from headrace.secrets import DictSecretsBackend, EnvSecretsBackend, FileSecretsBackend

    return (EnvSecretsBackend, FileSecretsBackend, DictSecretsBackend)


def _provider_bases() -> tuple[type[Any], ...]:
    from headrace.providers import BaseProvider

    return (BaseProvider,)


def _check_provider(cls: type[Any]) -> None:
    from headrace._core import check_json_schema

    if not getattr(cls, "key", ""):
        raise ConfigError("a provider needs a non-empty 'key'")
    check_json_schema(cls.config_schema())


def _provider_builtins() -> Iterable[type[Any]]:
    from headrace.providers import EchoLLMProvider

    return (EchoLLMProvider,)


def _integration_bases() -> tuple[type[Any], ...]:
    from headrace.integrations import IntegrationImpl

    return (IntegrationImpl,)


def _integration_key(cls: type[Any]) -> str:
    return str(cls.registry_key())


class IntegrationRegistry(PluginRegistry):
    """The ``integrations`` kind: :class:`~headrace.integrations.IntegrationImpl` classes by key
    (``key``, else the dotted path), found like every other kind, plus what integration records
    need: an empty key selects ``NullIntegrationImpl`` and :meth:`bind` makes an instance bound to
    a record. ``headrace.integrations.registry`` is this kind's registry."""

    def __init__(self) -> None:
        super().__init__(
            "integrations", "headrace.integrations", "INTEGRATIONS", _integration_bases, key_of=_integration_key
        )

    def get(self, key: str | None) -> type[Any]:
        """The class for ``key``; an empty key selects ``NullIntegrationImpl``."""
        if not key:
            from headrace.integrations import NullIntegrationImpl

            return NullIntegrationImpl
        return super().get(key)

    def register(self, cls: type[Any], *, key: str | None = None, replace: bool = False) -> type[Any]:
        """Adds ``cls`` under ``key`` (default: its registry key); a key another class holds is a
        ``ConfigError`` unless ``replace``. Usable as a decorator."""
        return super().register(cls, key=key, replace=replace)

    def bind(self, integration: Any, key: str | None = None) -> Any:
        """An instance bound to ``integration``, selected by ``key`` or its ``impl_key`` attribute."""
        return self.get(key if key is not None else getattr(integration, "impl_key", None))(integration)


#: The ``integrations`` kind (``headrace.integrations.registry``).
INTEGRATIONS = IntegrationRegistry()

KINDS: dict[str, PluginRegistry] = {
    "backends": PluginRegistry("backends", "headrace.backends", "BACKENDS", _backend_bases, resolve=_backend_class),
    "connectors": PluginRegistry(
        "connectors",
        "headrace.connectors",
        "CONNECTORS",
        _connector_bases,
        key_of=_connector_key,
        check=_check_connector,
        builtins=_connector_builtins,
    ),
    "secrets": PluginRegistry(
        "secrets", "headrace.secrets.backends", "SECRETS_BACKENDS", _secrets_bases, builtins=_secrets_builtins
    ),
    "providers": PluginRegistry(
        "providers",
        "headrace.providers",
        "PROVIDERS",
        _provider_bases,
        check=_check_provider,
        builtins=_provider_builtins,
    ),
    "integrations": INTEGRATIONS,
}


def registry(kind: str) -> PluginRegistry:
    """The registry of ``kind`` (``connectors``, ``secrets``, ``providers``, ``backends``, ``integrations``)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}") from None


def configure(kind: str, dotted_paths: Sequence[str] | None) -> None:
    """Sets the settings list of one kind (outside Django)."""
    registry(kind).configure(dotted_paths)


def reload_all() -> None:
    for reg in KINDS.values():
        reg.reload()


def report() -> list[dict[str, Any]]:
    """Every plugin and problem of every kind, as rows (what ``headrace plugins`` prints)."""
    rows: list[dict[str, Any]] = []
    for kind, reg in KINDS.items():
        for info in reg.plugins():
            rows.append(
                {
                    "kind": kind,
                    "key": info.key,
                    "status": "ok",
                    "origin": info.origin,
                    "target": info.target,
                    "reason": f"overrides {info.overrides}" if info.overrides else "",
                }
            )
        for p in reg.problems:
            if p.problem != "override":
                rows.append(
                    {
                        "kind": kind,
                        "key": p.key,
                        "status": p.problem,
                        "origin": p.origin,
                        "target": p.target,
                        "reason": p.reason,
                    }
                )
    return rows


def _cmd_plugins(args: Any) -> int:
    import json as _json

    rows = report()
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.json:
        print(_json.dumps(rows, indent=2))
        return 0
    widths = [max([len(str(r[c])) for r in rows] + [len(c)]) for c in ("kind", "key", "status", "origin")]
    header = ("kind", "key", "status", "origin")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  target / reason")
    for r in rows:
        cells = [str(r[c]).ljust(w) for c, w in zip(header, widths, strict=True)]
        detail = r["target"] + (f"  ({r['reason']})" if r["reason"] else "")
        print("  ".join(cells) + "  " + detail)
    return 1 if any(r["status"] not in ("ok",) for r in rows) and args.strict else 0


def add_cli(commands: Any) -> None:
    """Adds ``headrace plugins`` to the CLI's subcommands."""
    parser = commands.add_parser("plugins", help="list discovered plugins, skipped ones and conflicts")
    parser.add_argument("--kind", choices=sorted(KINDS), help="only this kind")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a plugin was skipped or conflicts")
    parser.set_defaults(handler=_cmd_plugins)
