"""The public place plugin authors import the Sink protocol from (docs/plugins.md).

It lives in ``codex_ml.rundir.sink``, below tracking and the backends; this name stays so
that ``from codex_ml.tracking.sink import Sink`` in third-party sinks keeps working.
"""

from __future__ import annotations

from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink

__all__ = ["MetricPoint", "RunInfo", "Sink"]
