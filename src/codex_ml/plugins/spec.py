"""What a plugin is before it is loaded: groups, :class:`PluginSpec`, :class:`PluginStatus`, errors.

The bottom of the plugins package: discovery (entry points) and the registry build on it, so
neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from codex_ml.errors import CodexMLError

#: The plugin API this codex_ml speaks; a plugin declares the version it was written for.
API_VERSION = 1
SUPPORTED_API_VERSIONS = frozenset({1})
API_ATTRIBUTE = "CODEX_ML_PLUGIN_API"
ENTRY_POINT_PREFIX = "codex_ml."
GROUPS = ("sinks", "models", "tokenizers", "datasets", "pipeline_stages", "system_metric_collectors", "health_rules")
BUILTIN = "builtin"
#: The source of a plugin registered with Registry.register (no distribution, no version check).
IN_CODE = "registered in code"

# What a plugin's load came to. Only ERROR makes `diagnose` fail: PLANNED is a built-in whose
# module is not written yet, MISSING_EXTRA one whose optional package is not installed.
OK, PLANNED, MISSING_EXTRA, ERROR = "ok", "planned", "missing-extra", "error"


class PluginError(CodexMLError):
    """Root of the registry's errors."""


class UnknownGroupError(PluginError, LookupError):
    """A group name that is not one of :data:`GROUPS`."""

    def __init__(self, group: str) -> None:
        super().__init__(f"unknown plugin group {group!r}; groups: {', '.join(GROUPS)}")


class UnknownPluginError(PluginError, LookupError):
    """A plugin name not registered in its group; the message lists the registered ones."""

    def __init__(self, group: str, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown {group} plugin {name!r}; registered {group}: {names} "
            f"(see `codex-ml plugins list {group}`)"
        )


class PluginLoadError(PluginError):
    """A registered plugin that cannot be loaded (import error, wrong type, API version)."""

    def __init__(self, status: PluginStatus) -> None:
        spec = status.spec
        super().__init__(f"{spec.group} plugin {spec.name!r} ({spec.target}, {spec.source}): {status.detail}")
        self.status = status


@dataclass(frozen=True)
class PluginSpec:
    """A registered plugin, before it is imported."""

    group: str
    name: str
    #: ``package.module:attr`` (the attr may be dotted: ``module:Class.factory``).
    target: str
    #: ``builtin`` or ``<distribution> <version>`` for an entry point.
    source: str = BUILTIN
    #: A built-in whose module is not written yet: absent is not an error.
    planned: bool = False
    #: ``(module, extra)`` the plugin needs to be usable, e.g. ``("mlflow", "mlflow")``.
    requires: tuple[str, str] | None = None

    @property
    def module(self) -> str:
        """The module part of the target."""
        return self.target.partition(":")[0]

    @property
    def attr(self) -> str:
        """The attribute part of the target (empty for a whole module)."""
        return self.target.partition(":")[2]

    @property
    def builtin(self) -> bool:
        """Whether codex_ml itself ships this plugin."""
        return self.source == BUILTIN


@dataclass
class PluginStatus:
    """What loading one plugin came to: the object, or why there is none."""

    spec: PluginSpec
    state: str
    detail: str = ""
    obj: Any = field(default=None, repr=False)
    api_version: int | None = None

    @property
    def failed(self) -> bool:
        """True for a broken plugin (the states diagnose fails on)."""
        return self.state == ERROR

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        spec = self.spec
        return {"group": spec.group, "name": spec.name, "target": spec.target, "source": spec.source,
                "state": self.state, "detail": self.detail, "api_version": self.api_version}  # fmt: skip


def check_group(group: str) -> str:
    """``group`` normalised (``pipeline-stages`` -> ``pipeline_stages``); unknown ones raise."""
    normal = group.strip().replace("-", "_")
    if normal not in GROUPS:
        raise UnknownGroupError(group)
    return normal
