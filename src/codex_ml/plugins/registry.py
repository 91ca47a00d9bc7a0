"""The plugin registry: built-ins named by dotted path, third-party plugins from entry points.

A plugin is one object (a class or a factory) in one of :data:`GROUPS`, named
``package.module:attr``. Nothing is imported while plugins are listed: built-ins are dotted
paths (``builtins.py``) and third-party plugins are read from their distribution's
``entry_points.txt`` (groups ``codex_ml.sinks``, ``codex_ml.models``, ...). A plugin is
imported the first time it is loaded; a third-party one must declare
``CODEX_ML_PLUGIN_API = 1`` (on the object or its module). Loading never lets one broken
plugin affect another: each failure becomes a :class:`PluginStatus` that ``diagnose``
reports, and :meth:`Registry.load` raises :class:`PluginLoadError` only for the plugin asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

from codex_ml.errors import MissingExtraError
from codex_ml.plugins.checks import type_problem
from codex_ml.plugins.discovery import discover_entry_points
from codex_ml.plugins.spec import (
    API_ATTRIBUTE,
    API_VERSION,
    BUILTIN,
    ENTRY_POINT_PREFIX,
    ERROR,
    GROUPS,
    IN_CODE,
    MISSING_EXTRA,
    OK,
    PLANNED,
    SUPPORTED_API_VERSIONS,
    PluginError,
    PluginLoadError,
    PluginSpec,
    PluginStatus,
    UnknownGroupError,
    UnknownPluginError,
    check_group,
)

__all__ = [
    "API_ATTRIBUTE", "API_VERSION", "BUILTIN", "ENTRY_POINT_PREFIX", "ERROR", "GROUPS", "IN_CODE", "MISSING_EXTRA",
    "OK", "PLANNED", "SUPPORTED_API_VERSIONS", "BUILTIN_TABLE", "PluginError", "PluginLoadError", "PluginSpec",
    "PluginStatus", "Registry", "UnknownGroupError", "UnknownPluginError", "check_group", "load_status",
    "module_exists",
]  # fmt: skip

#: Where codex_ml's own plugins are listed, named like an entry point: the table lists the
#: backends (a layer above this one), so it is imported by name when a Registry is built,
#: the way a third-party plugin's entry point is.
BUILTIN_TABLE = "codex_ml.plugins.builtins:builtin_specs"


def builtin_specs() -> list[PluginSpec]:
    """codex_ml's own plugins (:data:`BUILTIN_TABLE`), as specs; nothing is imported but the table."""
    module, _, attr = BUILTIN_TABLE.partition(":")
    return list(getattr(importlib.import_module(module), attr)())

class Registry:
    """Plugins by group and name: the built-ins plus every installed entry point.

    Construction reads names only; :meth:`load` imports one plugin (once, then cached).
    """

    def __init__(self, builtins: Iterable[PluginSpec] | None = None, discover: bool = True) -> None:
        """Register ``builtins`` (default: :data:`BUILTIN_TABLE`)
        and, with ``discover``, the entry points of the installed distributions."""
        if builtins is None:
            builtins = builtin_specs()
        self._specs: dict[str, dict[str, PluginSpec]] = {group: {} for group in GROUPS}
        self._objects: dict[tuple[str, str], Any] = {}
        self._loaded: dict[tuple[str, str], PluginStatus] = {}
        #: Entry points that could not be registered (name clash, unknown group).
        self.problems: list[PluginStatus] = []
        for spec in builtins:
            self.add(spec)
        if discover:
            for spec, problem in discover_entry_points():
                self._add_discovered(spec, problem)

    # -- registering ---------------------------------------------------------------------
    def add(self, spec: PluginSpec) -> None:
        """Register ``spec``; a name already taken in its group raises PluginError."""
        group = check_group(spec.group)
        taken = self._specs[group].get(spec.name)
        if taken is not None:
            raise PluginError(f"{group} plugin {spec.name!r} is already registered by {taken.source} ({taken.target})")
        self._specs[group][spec.name] = spec

    def register(self, group: str, name: str, obj: Any) -> PluginSpec:
        """Register an object already in memory (e.g. from a test or a notebook)."""
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
        spec = PluginSpec(check_group(group), name, target, source=IN_CODE)
        self.add(spec)
        self._objects[(spec.group, name)] = obj
        return spec

    def _add_discovered(self, spec: PluginSpec, problem: str | None) -> None:
        if problem is None and spec.group in self._specs and spec.name in self._specs[spec.group]:
            taken = self._specs[spec.group][spec.name]
            problem = f"name clash: {spec.group} plugin {spec.name!r} is already registered by {taken.source}; this one is ignored"
        if problem is None:
            self._specs[spec.group][spec.name] = spec
        else:
            self.problems.append(PluginStatus(spec, ERROR, problem))

    # -- looking up ----------------------------------------------------------------------
    def specs(self, group: str | None = None) -> list[PluginSpec]:
        """Registered plugins (of one group, or all), in group order then by name."""
        groups = GROUPS if group is None else (check_group(group),)
        return [self._specs[g][name] for g in groups for name in sorted(self._specs[g])]

    def names(self, group: str) -> list[str]:
        """The registered names in ``group``, sorted."""
        return sorted(self._specs[check_group(group)])

    def spec(self, group: str, name: str) -> PluginSpec:
        """The spec of one plugin; an unknown name raises UnknownPluginError listing the known ones."""
        group = check_group(group)
        try:
            return self._specs[group][name]
        except KeyError:
            raise UnknownPluginError(group, name, self._specs[group]) from None

    # -- loading -------------------------------------------------------------------------
    def status(self, group: str, name: str) -> PluginStatus:
        """Load one plugin (once) and say how it went; never raises for a broken plugin."""
        spec = self.spec(group, name)
        key = (spec.group, spec.name)
        if key not in self._loaded:
            if key in self._objects:
                self._loaded[key] = _checked(spec, self._objects[key], None)
            else:
                self._loaded[key] = load_status(spec)
        return self._loaded[key]

    def load(self, group: str, name: str) -> Any:
        """The plugin object; raises UnknownPluginError, MissingExtraError or PluginLoadError."""
        status = self.status(group, name)
        if status.obj is not None and status.state in (OK, MISSING_EXTRA):
            return status.obj
        if status.state == MISSING_EXTRA and status.spec.requires:
            module, extra = status.spec.requires
            raise MissingExtraError(f"The {status.spec.group} plugin {status.spec.name!r}", module, extra)
        raise PluginLoadError(status)

    def diagnose(self, group: str | None = None, on_each: Callable[[PluginSpec], None] | None = None) -> list[PluginStatus]:
        """Load every plugin (of ``group``) and return each one's status, problems first.

        ``on_each(spec)`` is called before each load (a progress bar hooks in there).
        """
        results = [p for p in self.problems if group is None or p.spec.group == check_group(group)]
        for spec in self.specs(group):
            if on_each is not None:
                on_each(spec)
            results.append(self.status(spec.group, spec.name))
        return results


def load_status(spec: PluginSpec) -> PluginStatus:
    """Import ``spec``'s target and check it; every failure is caught and described."""
    if spec.planned and not module_exists(spec.module):
        return PluginStatus(spec, PLANNED, f"planned: module {spec.module} is not written yet")
    missing = _missing_requirement(spec)
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # a broken plugin must not break the caller: report any failure
        if missing:
            return PluginStatus(spec, MISSING_EXTRA, missing)
        return PluginStatus(spec, ERROR, f"import of {spec.module} failed: {type(exc).__name__}: {exc}")
    obj: Any = module
    for part in filter(None, spec.attr.split(".")):
        if not hasattr(obj, part):
            return PluginStatus(spec, ERROR, f"{spec.module} has no attribute {spec.attr!r}")
        obj = getattr(obj, part)
    status = _checked(spec, obj, module)
    if missing and status.state == OK:
        status.state, status.detail = MISSING_EXTRA, missing
    return status


def _checked(spec: PluginSpec, obj: Any, module: Any) -> PluginStatus:
    """Check the API version (third-party plugins) and the object's type for its group."""
    version = getattr(obj, API_ATTRIBUTE, getattr(module, API_ATTRIBUTE, None))
    if spec.source not in (BUILTIN, IN_CODE):  # built-ins are versioned with codex_ml itself
        if version is None:
            return PluginStatus(spec, ERROR, f"declares no plugin API version: add `{API_ATTRIBUTE} = {API_VERSION}` to {spec.module}", obj)
        if type(version) is not int or version not in SUPPORTED_API_VERSIONS:
            supported = ", ".join(map(str, sorted(SUPPORTED_API_VERSIONS)))
            return PluginStatus(spec, ERROR, f"written for plugin API {version!r}; this codex_ml supports {supported}", obj, None)
    problem = type_problem(spec.group, obj)
    if problem:
        return PluginStatus(spec, ERROR, f"wrong type: {problem}", obj, version)
    return PluginStatus(spec, OK, "", obj, version if isinstance(version, int) else None)


def module_exists(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing
        return False


def _missing_requirement(spec: PluginSpec) -> str:
    if spec.requires is None or module_exists(spec.requires[0]):
        return ""
    module, extra = spec.requires
    return f"needs the '{module}' package: pip install 'codex-ml[{extra}]'"
