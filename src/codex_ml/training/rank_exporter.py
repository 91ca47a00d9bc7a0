"""The Prometheus exporter of a rank > 0 under torchrun: its own system gauges and step times, served by itself.

Rank 0 owns the run and its sinks, the exporter among them (port ``--prometheus-port``). Every other rank logs to
a :class:`~codex_ml.training.distributed.NullRun`; with ``--prometheus-port`` set it gets a :class:`RankRun`
instead, a NullRun that serves this rank's own ``PrometheusSink`` on port base + LOCAL_RANK (labels ``run``,
``rank``, ``node``; see ``backends/prometheus_targets.py``). It exports what only this rank knows:

- its system gauges (the rank's sampler forwards each sample to :meth:`RankRun.log_system_metrics`);
- its own step times (the ``time/*`` keys of the trainer's ``log_metrics``: measured by this rank, never
  averaged) and ``codex_tracker_last_step``/``codex_tracker_last_log_timestamp_seconds``, so a rank that stops
  stepping shows. The losses are averaged over the ranks: rank 0's exporter has them, once.

Updates are a dict update under a lock, on the thread that logs (the training loop at log steps, the sampler);
nothing is sent anywhere until Prometheus scrapes. The exporter never pushes to a Pushgateway (a push is an HTTP
request, and would sit in the training loop here); rank 0 pushes the run's metrics as before.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.sink import RunInfo
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.reporting import Reporter
from codex_ml.training.distributed import NullRun

__all__ = ["LOCAL_KEYS", "RankRun", "rank_run"]

#: Prefixes of the trainer's keys that each rank measures itself (exported per rank); the rest are averaged.
LOCAL_KEYS = ("time/",)
SOURCE = "prometheus"


class RankRun(NullRun):
    """The run of a rank > 0 that serves its own exporter; everything else is discarded like a NullRun."""

    def __init__(self, exporter: Any, reporter: Reporter) -> None:
        self.exporter = exporter
        self.reporter = reporter  # the sampler reports through the run's reporter when it has one

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Export this rank's own step times (``time/*``) and the step; drop the averaged values."""
        local = {key: value for key, value in metrics.items() if key.startswith(LOCAL_KEYS)}
        if step is not None and local:
            self.exporter.write_metrics([(step, time.time(), local)])

    def log_system_metrics(self, values: dict[str, Any], sample_index: int, wall_time: float | None = None) -> None:
        """Export one system sample of this rank (the sampler's ``run`` forwards here)."""
        self.exporter.write_system([(sample_index, time.time() if wall_time is None else wall_time, values)])

    def close(self, status: str = "FINISHED", timeout: float | None = None) -> None:
        """Stop the sampler (its last sample still arrives), then the exporter (freeing its port and target)."""
        super().close(status, timeout)
        self.exporter.close(status)


def rank_run(tracking: TrackingConfig, run_dir: Path) -> NullRun:
    """A rank > 0's run: a :class:`RankRun` serving its exporter when ``prometheus_port`` is set, else a NullRun.

    A port already taken (or any start failure) is one ``[monitoring-error] prometheus: ...`` line and a NullRun:
    training goes on without this rank's exporter, as a failing sink does on rank 0.
    """
    if tracking.prometheus_port is None:
        return NullRun()
    from codex_ml.backends.prometheus import PrometheusSink

    reporter = Reporter(tracking.run_name or "")
    # No Pushgateway here (see the module docstring); only the port, address and labels of this rank.
    exporter = PrometheusSink.from_config(tracking.replace(prometheus_pushgateway=None))
    info = RunInfo(tracking.run_name or "", "", RunPaths(Path(run_dir)), warn=reporter.warn)
    try:
        exporter.start(info)
    except Exception as exc:  # noqa: BLE001 - PrometheusBindError says which port; training continues
        reporter.error(SOURCE, f"{exc} (this rank's exporter is off; training continues)")
        return NullRun()
    return RankRun(exporter, reporter)
