"""Building the sinks a TrackingConfig asks for, failing early on missing packages.

The built-in sinks are the rows of ``codex_ml.backends.BACKENDS``, each built when its row says
the config asks for it, and loaded through the plugin registry like any other sink; ``extra_sinks`` names more sinks from the plugin
registry (``codex-ml plugins list sinks``), built here so that an unknown or broken plugin
stops the run before it starts.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

from codex_ml.backends import BACKENDS
from codex_ml.errors import MissingExtraError
from codex_ml.tracking.config import TrackingConfig
from codex_ml.rundir.sink import Sink


def require(feature: str, module: str, extra: str, package: str | None = None) -> None:
    """Raise MissingExtraError unless ``module`` can be imported (without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        found = False
    if not found:
        raise MissingExtraError(feature, package or module, extra)


#: ``--sink NAME`` for a built-in is the same as its enable flag.
BUILTIN_SWITCHES = {name: row.switch for name, row in BACKENDS.items() if row.switch}


def build_sinks(config: TrackingConfig) -> list[Sink]:
    """The sinks ``config`` asks for: enabled built-ins, then ``extra_sinks`` plugins in order."""
    plugin_names = list(dict.fromkeys(config.extra_sinks))  # a name given twice is one sink
    switches = {BUILTIN_SWITCHES[n]: True for n in plugin_names if n in BUILTIN_SWITCHES}
    if "prometheus" in plugin_names and config.prometheus_port is None and not config.prometheus_pushgateway:
        from codex_ml.plugins.registry import PluginError

        raise PluginError("the prometheus sink needs --prometheus-port PORT or --prometheus-pushgateway URL")
    if "alerts" in plugin_names and not (config.alert_webhook or config.alert_command):
        from codex_ml.plugins.registry import PluginError

        raise PluginError("the alerts sink needs --alert-webhook URL or --alert-command CMD")
    config = config.replace(**switches) if switches else config
    sinks = _builtin_sinks(config)
    others = [n for n in plugin_names if n not in BACKENDS]
    if others:
        sinks += build_plugin_sinks(others, config)
    return sinks


def build_plugin_sinks(names: list[str], config: TrackingConfig) -> list[Sink]:
    """Sink plugins by registered name; unknown names and broken plugins raise a PluginError.

    A plugin is a Sink class or factory: ``from_config(config)`` is used when it has one, a
    ``config`` parameter is passed the TrackingConfig, otherwise it is called with no arguments.
    """
    from codex_ml.plugins.registry import Registry

    registry = Registry()
    return [_instantiate(name, registry.load("sinks", name), config) for name in names]


def _instantiate(name: str, factory: Any, config: TrackingConfig) -> Sink:
    from codex_ml.plugins.checks import sink_instance_problem
    from codex_ml.plugins.registry import PluginError

    try:
        if callable(getattr(factory, "from_config", None)):
            sink = factory.from_config(config)
        elif _takes_config(factory):
            sink = factory(config=config)
        else:
            sink = factory()
    except Exception as exc:  # a plugin's own error, reported with the plugin's name
        raise PluginError(f"sink plugin {name!r} could not be created: {type(exc).__name__}: {exc}") from exc
    problem = sink_instance_problem(sink)
    if problem:
        raise PluginError(f"sink plugin {name!r}: {problem}")
    if getattr(sink, "name", Sink.name) == Sink.name:
        sink.name = name  # messages then say which plugin failed
    return sink


def _takes_config(factory: Any) -> bool:
    try:
        return "config" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        return False


def check_sink_packages(config: TrackingConfig) -> None:
    """Raise MissingExtraError for an enabled built-in sink whose package is missing.

    Nothing is built or imported: jobs call this before they touch the disk (the demo moves an
    earlier run aside), so a missing package leaves everything as it was.
    """
    for feature, module, extra, package in _wanted_packages(config):
        require(feature, module, extra, package)


def _wanted_packages(config: TrackingConfig) -> list[tuple[str, str, str, str | None]]:
    return [(row.feature, row.package, row.extra, row.pip_name) for row in BACKENDS.values() if row.enabled(config)]


def _builtin_sinks(config: TrackingConfig) -> list[Sink]:
    check_sink_packages(config)
    wanted = [row for row in BACKENDS.values() if row.enabled(config)]
    if not wanted:
        return []
    from codex_ml.plugins.registry import Registry

    registry = Registry()  # the same path as a plugin's sink: the registry imports and checks the class
    return [registry.load("sinks", row.name).from_config(config) for row in wanted]
