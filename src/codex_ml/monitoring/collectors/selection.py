"""Which collectors a sampler runs: the default set, or the ones a config names (plugins included)."""

from __future__ import annotations

from typing import Any

__all__ = ["collectors_by_name", "default_collectors"]


def default_collectors(include_gpu: bool = True, pid: int | None = None) -> list[Any]:
    """The standard collectors, in record order. Imports psutil (and nothing heavier)."""
    from codex_ml.monitoring.collectors.cpu import CpuCollector
    from codex_ml.monitoring.collectors.disk import DiskCollector
    from codex_ml.monitoring.collectors.load import LoadCollector
    from codex_ml.monitoring.collectors.memory import MemoryCollector
    from codex_ml.monitoring.collectors.network import NetworkCollector
    from codex_ml.monitoring.collectors.pressure import PressureCollector
    from codex_ml.monitoring.collectors.process import ProcessCollector

    process = ProcessCollector(pid)
    collectors = [CpuCollector(), MemoryCollector(), LoadCollector(), PressureCollector(), DiskCollector(),
                  NetworkCollector(), process]  # fmt: skip
    if include_gpu:
        from codex_ml.monitoring.collectors.gpu import GpuCollector

        collectors.append(GpuCollector(pids=lambda: process.pids))
    return collectors


def collectors_by_name(names: list[str] | None, include_gpu: bool = True, pid: int | None = None,
                       on_error: Any = None) -> list[Any]:
    """The collectors registered under ``names`` (``system_metrics.collectors``), in that order.

    None or an empty list is :func:`default_collectors`. Each name is loaded from the plugin
    registry (group ``system_metric_collectors``: the built-ins and installed entry points) and
    created with no arguments; the built-in ``process`` and ``gpu`` are wired as in the default
    set (the GPU collector attributes memory to the processes ``process`` found). A plugin that
    fails to load or to be created is passed to ``on_error(name, exc)`` and left out: telemetry
    never stops training (names were checked against the registry when the config was read).
    """
    if not names:
        return default_collectors(include_gpu, pid)
    from codex_ml.plugins.registry import Registry

    registry, collectors, process = Registry(), [], None
    for name in names:
        if name == "gpu" and not include_gpu:
            continue
        try:
            collector = _create_collector(registry, name, pid, process)
        except Exception as exc:  # noqa: BLE001 - one broken plugin is left out, the rest sample
            if on_error is not None:
                on_error(name, exc)
            continue
        if collector.name == "collector":  # the base class's: name the group after the plugin
            collector.name = name
        process = collector if name == "process" and process is None else process
        collectors.append(collector)
    return collectors


def _create_collector(registry: Any, name: str, pid: int | None, process: Any) -> Any:
    """One collector from its registered class or factory."""
    factory = registry.load("system_metric_collectors", name)
    builtin = registry.spec("system_metric_collectors", name).builtin
    if builtin and name == "process":
        return factory(pid)
    if builtin and name == "gpu" and process is not None:
        return factory(pids=lambda: process.pids)
    return factory()
