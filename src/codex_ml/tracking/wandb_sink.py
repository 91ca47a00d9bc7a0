"""Weights & Biases sink, offline-first.

``WANDB_MODE`` is honoured as W&B documents it; when it is unset the sink runs
``offline`` (nothing leaves the machine; ``wandb sync`` can upload later). Files go under
the run directory (``runs/<run>/wandb/``). Steps are sent as a ``step`` metric that every
other metric uses as its x-axis, so resumed or out-of-order steps are never dropped by
W&B's monotonic-step rule.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from codex_ml import env
from codex_ml.tracking.records import Histogram
from codex_ml.tracking.redaction import redacted_argv
from codex_ml.tracking.sink import MetricPoint, RunInfo, Sink

STEP_KEY = "step"
SYSTEM_STEP_KEY = "system/sample"
#: Seconds abort() lets W&B's service process end on its own, then after SIGTERM, before SIGKILL.
SERVICE_EXIT_WAIT = 0.3


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set, else ``offline``."""
    return os.environ.get(env.WANDB_MODE) or "offline"


class WandbSink(Sink):
    """One W&B run per codex_ml run; a resume reuses its id (``resume="allow"``)."""

    name = "wandb"
    #: run.log hands rows to W&B's service process; run.finish() returns once it stored them all.
    buffered = True
    #: run.log costs about 0.4 ms a row: keep one call short enough for close() to stop between calls.
    points_per_call = 250

    def __init__(self, project: str) -> None:
        self._project = project
        self._wandb: Any = None
        self.run: Any = None

    def start(self, run: RunInfo) -> None:
        """``wandb.init`` in the run directory, offline unless ``WANDB_MODE`` says otherwise."""
        import wandb

        self._wandb = wandb
        saved = run.backends.get(self.name, {})
        run_id = saved.get("run_id") or run.run_id[:16]
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
        with redacted_argv():  # W&B records the command line, which may hold a password or token
            self.run = wandb.init(project=self._project, name=run.name, id=run_id, dir=str(run.paths.wandb),
                                  mode=wandb_mode(), resume="allow", reinit="create_new", settings=settings)  # fmt: skip
        self.run.define_metric(STEP_KEY)
        self.run.define_metric(SYSTEM_STEP_KEY)
        # System telemetry has its own x-axis; W&B uses the most specific matching glob.
        self.run.define_metric("system/*", step_metric=SYSTEM_STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)
        run.remember(self.name, {"run_id": run_id, "project": self._project, "dir": str(getattr(self.run, "dir", ""))})

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """One ``run.log`` per step, with the step as a metric."""
        log = self.run.log
        for step, _wall_time, values in points:
            log({**values, STEP_KEY: step})

    def write_system(self, points: list[MetricPoint]) -> None:
        """System samples, with the sample index as their own x-axis."""
        log = self.run.log
        for sample, _wall_time, values in points:
            log({**values, SYSTEM_STEP_KEY: sample})

    def write_histogram(self, step: int, wall_time: float, name: str, histogram: Histogram) -> None:
        """A ``wandb.Histogram`` built from our bins."""
        hist = self._wandb.Histogram(np_histogram=(histogram.counts, histogram.edges))
        self.run.log({name: hist, STEP_KEY: step})

    def write_text(self, step: int, wall_time: float, name: str, text: str) -> None:
        """Text as a one-row table (W&B's way of showing text per step)."""
        table = self._wandb.Table(columns=[STEP_KEY, "text"], data=[[step, text]])
        self.run.log({name: table, STEP_KEY: step})

    def write_params(self, params: dict[str, Any]) -> None:
        """Params into the run config (allowing changes on resume)."""
        self.run.config.update(params, allow_val_change=True)

    def write_tags(self, tags: dict[str, str]) -> None:
        """W&B tags are plain strings: ``key=value``, cut to W&B's 64 characters."""
        new = tuple(f"{k}={v}"[:64] for k, v in tags.items())
        self.run.tags = tuple(dict.fromkeys(tuple(self.run.tags or ()) + new))

    def write_artifact(self, path: Path, name: str) -> None:
        """Copy the file into the W&B run's files folder, which W&B uploads with the run.

        A plain copy rather than ``run.save``: save symlinks the file and prints a warning
        for every artifact, and a symlink would break if the run directory moved.
        """
        import shutil

        shutil.copyfile(path, Path(self.run.dir) / name)

    def close(self, status: str) -> None:
        """Finish the run; a non-zero exit code marks it failed/crashed in W&B."""
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "FINISHED" else 1)
            self.run = None

    def abort(self) -> None:
        """close() gave up on this sink (e.g. ``wandb.init`` waiting on an unreachable server).

        ``wandb.teardown`` makes a pending ``wandb.init`` fail at once and removes W&B's exit
        hook, which would otherwise hold the process until W&B's own network timeouts (90 s
        and more) run out; it runs on its own thread because it then waits for W&B's service
        process. That process would also outlive us for as long, holding our stdout open (a
        pipe reader sees no end), so it is stopped if it has not ended within a moment. This
        ends W&B for the whole process, which close() only does to a backend it abandons.
        """
        if self._wandb is None:
            return
        service = _service_process()
        threading.Thread(target=self._wandb.teardown, kwargs={"exit_code": 1}, name="codex-wandb-teardown",
                         daemon=True).start()  # fmt: skip
        if service is not None:
            _stop(service)


def _stop(service: subprocess.Popen) -> None:
    """Let the service end on its own for a moment, then SIGTERM, then (it finishes its network
    retries first on SIGTERM) SIGKILL."""
    for stop in (service.terminate, service.kill):
        try:
            service.wait(timeout=SERVICE_EXIT_WAIT)
            return
        except subprocess.TimeoutExpired:
            stop()


def _service_process() -> subprocess.Popen | None:
    """The W&B service process this process started, if any.

    W&B has no public handle on it; the attributes are looked up defensively, so a W&B
    version that moved them only loses the early stop, not the teardown.
    """
    from wandb.sdk import wandb_setup

    connection = getattr(getattr(wandb_setup, "_singleton", None), "_connection", None)
    process = getattr(getattr(connection, "_proc", None), "_process", None)
    return process if isinstance(process, subprocess.Popen) else None
