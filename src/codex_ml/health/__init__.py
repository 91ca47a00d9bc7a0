"""Training health: rules that watch a run's records and raise :class:`HealthEvent` s.

Pure Python (no torch, no numpy): the rules run on the tracking writer thread for every metrics
record and on a watchdog thread once a second, and the same code replays a finished run's files
(:func:`codex_ml.health.backtest.backtest`, ``codex-ml monitoring health RUN``). See docs/health.md.
This package sits beside the backends: it imports only rundir, plugins.registry, config_schema
and errors, and the heavier modules are imported by name, not here.
"""

from __future__ import annotations

from codex_ml.health.config import HealthConfig, HealthConfigError
from codex_ml.health.events import ACTIONS, SEVERITIES, HealthEvent, read_events
from codex_ml.health.monitor import HealthMonitor

__all__ = ["ACTIONS", "SEVERITIES", "HealthConfig", "HealthConfigError", "HealthEvent", "HealthMonitor", "read_events"]
