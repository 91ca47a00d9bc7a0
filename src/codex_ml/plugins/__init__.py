"""Plugins: sinks, models, tokenizers, datasets, pipeline stages and system-metric collectors.

Built-ins are registered by dotted path; third-party packages add plugins through entry
points ``codex_ml.<group>`` (see docs/plugins.md). Nothing is imported until a plugin is
loaded::

    from codex_ml.plugins import Registry
    registry = Registry()
    sink_class = registry.load("sinks", "csvsink")
"""

from __future__ import annotations

from codex_ml.plugins.registry import (
    API_ATTRIBUTE,
    API_VERSION,
    GROUPS,
    PluginError,
    PluginLoadError,
    PluginSpec,
    PluginStatus,
    Registry,
    UnknownGroupError,
    UnknownPluginError,
)

__all__ = [
    "API_ATTRIBUTE",
    "API_VERSION",
    "GROUPS",
    "PluginError",
    "PluginLoadError",
    "PluginSpec",
    "PluginStatus",
    "Registry",
    "UnknownGroupError",
    "UnknownPluginError",
]
