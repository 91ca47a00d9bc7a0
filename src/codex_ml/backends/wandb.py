"""Weights & Biases backend, offline-first: the sink, the reader of W&B's run files (used by
back-fill, replay and tests), its history reader and its view line. Needs the ``wandb`` extra.

``WANDB_MODE`` is honoured as W&B documents it; when it is unset the sink runs
``offline`` (nothing leaves the machine; ``wandb sync`` can upload later). Files go under
the run directory (``runs/<run>/wandb/``). Steps are sent as a ``step`` metric that every
other metric uses as its x-axis, so resumed or out-of-order steps are never dropped by
W&B's monotonic-step rule. A health event is logged as text ``health/<rule>`` and, on a run
that talks to W&B live, also raised with ``run.alert``. The trials of a sweep share the W&B group
``<sweep>`` (job type ``trial``), so W&B's runs table groups them.

A W&B offline run file (``run-<id>.wandb``) is read with W&B's own record protobufs. The file is
W&B's 7-byte header (``:W&B``, magic 0xBEE1, version 0) followed by a LevelDB log: 32 KiB blocks
of chunks, each ``crc32c(4) length(2, little-endian) type(1)`` plus payload, with types FULL=1,
FIRST=2, MIDDLE=3, LAST=4. Each whole payload is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codex_ml import env
from codex_ml.backends import NOT_STARTED, quote, undelivered
from codex_ml.errors import MissingExtraError
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.run_files import read_run_json
from codex_ml.rundir.records import Histogram
from codex_ml.secrets.redaction import redacted_argv
from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink

STEP_KEY = "step"
SYSTEM_STEP_KEY = "system/sample"
#: Seconds abort() lets W&B's service process end on its own, then after SIGTERM, before SIGKILL.
SERVICE_EXIT_WAIT = 0.3
#: W&B wants alert titles under 64 characters.
ALERT_TITLE_MAX = 63
#: The run file's layout: header size, LevelDB block size and chunk types.
BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


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

    #: The job type of a sweep's trials (W&B shows it inside the sweep's group).
    TRIAL_JOB_TYPE = "trial"

    def __init__(self, project: str, group: str | None = None) -> None:
        self._project = project
        self._group = group
        self._wandb: Any = None
        self.run: Any = None

    @classmethod
    def from_config(cls, config: Any) -> WandbSink:
        """The sink a TrackingConfig asks for: its W&B project, and its sweep as the W&B group."""
        return cls(config.resolved_wandb_project(), config.sweep)

    def start(self, run: RunInfo) -> None:
        """``wandb.init`` in the run directory, offline unless ``WANDB_MODE`` says otherwise."""
        import wandb

        self._wandb = wandb
        saved = run.backends.get(self.name, {})
        run_id = saved.get("run_id") or run.run_id[:16]
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
        grouping = {"group": self._group, "job_type": self.TRIAL_JOB_TYPE} if self._group else {}
        with redacted_argv():  # W&B records the command line, which may hold a password or token
            self.run = wandb.init(project=self._project, name=run.name, id=run_id, dir=str(run.paths.wandb),
                                  mode=wandb_mode(), resume="allow", reinit="create_new", settings=settings,
                                  **grouping)  # fmt: skip
        self.run.define_metric(STEP_KEY)
        self.run.define_metric(SYSTEM_STEP_KEY)
        # System telemetry has its own x-axis; W&B uses the most specific matching glob.
        self.run.define_metric("system/*", step_metric=SYSTEM_STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)
        run.remember(self.name, {"run_id": run_id, "project": self._project, "dir": str(getattr(self.run, "dir", "")),
                                 **({"group": self._group} if self._group else {})})  # fmt: skip

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

    def write_event(self, event: dict[str, Any]) -> None:
        """The event as text ``health/<rule>`` (a one-row table in the run's history, which an offline
        run keeps for ``wandb sync``), plus :meth:`alert` when the run talks to W&B live: an offline
        alert would only reach W&B at a sync, too late to alert anyone."""
        if not (self.run.offline or self.run.disabled):  # first: a retry after a failed text repeats no row
            self.alert(event)
        super().write_event(event)

    def alert(self, event: dict[str, Any]) -> None:
        """``run.alert`` for the event: title ``<rule> (<severity>)``, level ERROR for critical, else WARN.

        W&B's default ``wait_duration`` stays: at most one alert per title a minute (a NaN on every
        step must not send an email per step); the text written by :meth:`write_event` keeps every event.
        """
        title = f"{event['rule']} ({event['severity']})"[:ALERT_TITLE_MAX]
        level = self._wandb.AlertLevel.ERROR if event["severity"] == "critical" else self._wandb.AlertLevel.WARN
        self.run.alert(title=title, text=str(event["message"]), level=level)

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


# -- reading what W&B stored -----------------------------------------------------------
def iter_payloads(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Yield every complete record payload in the file (a torn tail is ignored)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (missing ':W&B' header)")
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # block trailer padding
            pos += room
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        payload = data[pos + HEADER : pos + HEADER + length]
        if kind == 0 and length == 0:  # zero padding
            pos += room
            continue
        pos += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            parts = [payload]
        elif kind == MIDDLE:
            parts.append(payload)
        elif kind == LAST:
            parts.append(payload)
            yield b"".join(parts)
            parts = []


def records_of(path: str | os.PathLike[str], kind: str) -> list[Any]:
    """The records of one type (``"run"``, ``"history"``, ``"alert"``, ...) of a .wandb file, as
    W&B's own protobuf messages (``record.<kind>``), in file order."""
    from wandb.proto import wandb_internal_pb2

    found = []
    for payload in iter_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == kind:
            found.append(getattr(record, kind))
    return found


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``run.log`` rows of a .wandb file, as dicts of decoded JSON values."""
    return [{_key(item): json.loads(item.value_json) for item in history.item}
            for history in records_of(path, "history")]  # fmt: skip


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run config as W&B stored it (last update wins)."""
    from wandb.proto import wandb_internal_pb2

    config: dict[str, Any] = {}
    for payload in iter_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[_key(item)] = json.loads(item.value_json)
        elif kind == "run" and record.run.HasField("config"):
            for item in record.run.config.update:
                config[_key(item)] = json.loads(item.value_json)
    return config


def find_run_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """All ``run-*.wandb`` files under a codex_ml run directory, oldest first."""
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)


def _key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


class History:
    """The run's W&B id, offline unless WANDB_MODE says otherwise; reads local .wandb files."""

    def __init__(self, info: RunInfo, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("replay into W&B", "wandb", "wandb") from exc
        saved = info.backends.get("wandb", {})
        project = saved.get("project") or os.environ.get(env.WANDB_PROJECT) or "codex_ml"
        self.info = info
        self.sink = WandbSink(project, saved.get("group") or read_run_json(info.paths).get("sweep"))
        self.target = f"{Path(info.paths.wandb) / 'wandb'}, project {project!r}, id {saved.get('run_id') or info.run_id[:16]}"

    def name(self, key: str) -> str:
        """W&B keeps keys verbatim."""
        return key

    def existing(self, keys: list[str]) -> dict[str, dict[int, int]]:
        """Points per key and step over every offline run file of this run."""
        wanted = set(keys)
        counts: dict[str, Counter[int]] = {}
        for path in find_run_files(self.info.paths.root):
            for row in read_history(path):
                step = row.get(SYSTEM_STEP_KEY, row.get(STEP_KEY))
                if not isinstance(step, int):
                    continue
                for key in wanted.intersection(row):
                    counts.setdefault(key, Counter())[step] += 1
        return {key: dict(counter) for key, counter in counts.items()}


def view_line(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """Where W&B wrote this run and how to upload it, or why there is nothing."""
    folders = _wandb_folders(paths, saved)
    offline = [f for f in folders if f.name.startswith("offline-run-")]
    online = [f for f in folders if f.name.startswith("run-")]
    if offline:
        target = quote(offline[0]) if len(offline) == 1 else f"{quote(offline[0].parent)}/offline-run-*"
        return f"  W&B (offline): {offline[-1]}   upload later with: wandb sync {target}"
    if online:
        missing = undelivered(paths, "wandb")
        if missing:
            return (f"  W&B (online): {missing:,} records did not reach W&B; local copy {online[-1]}, "
                    f"upload it later with: wandb sync {quote(online[-1])}")  # fmt: skip
        return f"  W&B (online): synced as it ran; local copy {online[-1]} (if the upload failed: wandb sync {quote(online[-1])})"
    mode = os.environ.get("WANDB_MODE", "")
    if mode == "disabled":
        return "  W&B:          off (WANDB_MODE=disabled), nothing was written"
    return f"  W&B:          {NOT_STARTED}"


def _wandb_folders(paths: RunPaths, saved: dict[str, Any] | None) -> list[Path]:
    """The run's W&B folders that exist: those under the run directory, else the one run.json names."""
    root = paths.wandb / "wandb"
    found = sorted(p for p in root.glob("*run-*") if p.is_dir()) if root.is_dir() else []
    named = Path(saved["dir"]).parent if saved and saved.get("dir") else None
    return found or ([named] if named is not None and named.is_dir() else [])
