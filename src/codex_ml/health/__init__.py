"""Training health: rules that watch a run's records and raise :class:`HealthEvent` s.

Pure Python (no torch, no numpy): the rules run on the tracking writer thread for every metrics
record and on a watchdog thread once a second, and the same code replays a finished run's files
(:func:`codex_ml.health.backtest.backtest`, ``codex-ml monitoring health RUN``). See docs/health.md.
This package sits beside the backends: it imports only rundir, plugins.registry, config_schema
and errors, and the heavier modules are imported by name, not here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ACTIONS", "SEVERITIES", "HealthConfig", "HealthConfigError", "HealthEvent", "HealthMonitor", "read_events"]

# Where each public name lives. Imported on first use (PEP 562): the read-back commands need only
# ``health.events``, and importing the rules and the monitor with it cost a cold
# ``codex-ml monitoring inspect`` 15-25 ms (docs/benchmarks.md, "Monitoring CLI").
_HOMES = {
    "HealthConfig": "config", "HealthConfigError": "config",
    "ACTIONS": "events", "SEVERITIES": "events", "HealthEvent": "events", "read_events": "events",
    "HealthMonitor": "monitor",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
