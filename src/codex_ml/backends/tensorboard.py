"""TensorBoard backend: the sink (event files under ``runs/<run>/tensorboard/``), its history
reader for back-fill and replay, and its view line. Needs the ``tensorboard`` extra.

The sink uses the ``tensorboard`` package's own event writer and protobufs, so neither TensorFlow
nor torch is needed. Scalars, histograms and text are written in the forms TensorBoard's
scalar, histogram and text dashboards read; params appear as a markdown table of text.

A trial of a sweep (``TrackingConfig.sweep``) also writes the HParams plugin's session data, so that
``tensorboard --logdir sweeps/<sweep>`` shows the trials in the HParams tab: ``session_start_info``
(the flattened params as hparams, the trial as its session group) with the first params, and at close
``session_end_info`` (FINISHED: success, FAILED: failure). No ``experiment`` summary is written: the
plugin takes the first one it finds as the whole sweep's, while without one it builds the table from
every trial's hparams and scalar tags (the metrics), so trials with different params or metrics all
show. TensorBoard keeps the first value of a tag in a folder, so a KILLED session writes no end (the
trial is expected to be resumed; the resumed session ends it); the start a resumed session writes again
is ignored the same way.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from codex_ml.backends import NOT_STARTED, quote

from codex_ml.rundir.records import Histogram
from codex_ml.rundir.paths import RunPaths
from codex_ml.rundir.run_files import read_run_json
from codex_ml.rundir.rewinds import REWIND_RULE, read_rewinds, superseded
from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink


class TensorBoardSink(Sink):
    """Writes one event file per session of the run (resumes add a new file)."""

    name = "tensorboard"
    #: EventFileWriter queues events for its own writer thread; close() writes them all out.
    buffered = True

    def __init__(self, flush_secs: float = 5.0, sweep: str | None = None, trial: str | None = None) -> None:
        self._flush_secs = flush_secs
        self._writer: Any = None
        self._pb: Any = None
        self._sweep = sweep
        self._trial = trial
        self._session_group = trial or ""
        #: The HParams plugin's protobuf modules (a trial of a sweep only), and whether its start is written.
        self._hp: Any = None
        self._hparams_started = False

    @classmethod
    def from_config(cls, config: Any) -> TensorBoardSink:
        """The sink a TrackingConfig asks for: the HParams session data when the run is a trial of a sweep."""
        return cls(sweep=config.sweep, trial=config.trial)

    def start(self, run: RunInfo) -> None:
        """Open a new event file in the run's tensorboard/ folder."""
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._pb = _Protos(event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2)
        if self._sweep:
            from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

            self._hp = (api_pb2, metadata, plugin_data_pb2)
            self._session_group = self._trial or run.name
        run.paths.tensorboard.mkdir(parents=True, exist_ok=True)
        # A unique suffix: event file names only hold the second and host, so a resumed
        # session in the same second would otherwise reopen (and overwrite) the last file.
        self._writer = EventFileWriter(str(run.paths.tensorboard), max_queue_size=1000, flush_secs=self._flush_secs,
                                       filename_suffix=f".{uuid.uuid4().hex[:8]}")  # fmt: skip

    def write_event(self, event: dict[str, Any]) -> None:
        """The event's text (the base class); a rollback's rewind also purges the rewound steps.

        A rewind to the checkpoint of step c (``codex_ml.rundir.rewinds``) writes what
        ``SummaryWriter(purge_step=c + 1)`` writes when it reopens: a ``SessionLog.START`` event at
        step c + 1, on which TensorBoard discards every event it read with a step >= c + 1, so the
        steps trained again after the rollback show once, with their new values. Written twice: the
        reader of ``tensorboard --load_fast=false`` (``plugin_event_accumulator``) takes a run's first
        START for the session's beginning and purges only on the next one (a second purge at the same
        step removes nothing more). It goes into the current file rather than a new one: files are
        read in name order, and two files opened in the same second are not named in the order they
        were opened. (The default fast reader, RustBoard, keeps one point per step by itself.)
        """
        super().write_event(event)
        if event.get("rule") == REWIND_RULE and isinstance(event.get("step"), int):
            pb = self._pb.event_pb2
            start = pb.SessionLog(status=pb.SessionLog.START)
            for _ in range(2):
                self._writer.add_event(pb.Event(step=int(event["step"]) + 1, wall_time=float(event["time"]),
                                                session_log=start))  # fmt: skip

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """One event per step holding all of that step's scalars."""
        summary_cls, value_cls = self._pb.summary_pb2.Summary, self._pb.summary_pb2.Summary.Value
        for step, wall_time, metrics in points:
            values = [value_cls(tag=k, simple_value=float(v)) for k, v in metrics.items()]
            self._add(step, wall_time, summary_cls(value=values))

    def write_histogram(self, step: int, wall_time: float, name: str, histogram: Histogram) -> None:
        """A HistogramProto with right bucket edges, as TensorBoard expects."""
        proto = self._pb.summary_pb2.HistogramProto(
            min=histogram.min,
            max=histogram.max,
            num=histogram.count,
            sum=histogram.sum,
            sum_squares=histogram.sum_squares,
            bucket_limit=histogram.edges[1:],
            bucket=[float(c) for c in histogram.counts],
        )
        value = self._pb.summary_pb2.Summary.Value(tag=name, histo=proto)
        self._add(step, wall_time, self._pb.summary_pb2.Summary(value=[value]))

    def write_text(self, step: int, wall_time: float, name: str, text: str) -> None:
        """A string tensor tagged for the text plugin."""
        self._add(step, wall_time, self._text_summary(name, text))

    def write_params(self, params: dict[str, Any]) -> None:
        """Params as a markdown table in the text dashboard (tag ``params``)."""
        rows = "\n".join(f"| {k} | {_md(v)} |" for k, v in sorted(params.items()))
        self._add(0, None, self._text_summary("params", "| param | value |\n|---|---|\n" + rows))
        if self._hp is not None and not self._hparams_started:
            self._write_session_start(params)

    def _write_session_start(self, params: dict[str, Any]) -> None:
        """The HParams plugin's ``session_start_info``: every param as an hparam of this trial."""
        import time

        _, metadata, plugin_data_pb2 = self._hp
        info = plugin_data_pb2.SessionStartInfo(group_name=self._session_group, start_time_secs=time.time())
        for key, value in sorted(params.items()):
            if value is not None:  # no type to give it; the plugin types a column by its values
                _set_hparam(info.hparams[key], value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
        self._add(0, None, self._hparams_summary(metadata.SESSION_START_INFO_TAG, data))
        self._hparams_started = True

    def _write_session_end(self, status: str) -> None:
        """``session_end_info`` with the run's status (KILLED writes none: see the module doc)."""
        import time

        api_pb2, metadata, plugin_data_pb2 = self._hp
        if not self._hparams_started:  # a trial that logged no params still shows in the table
            self._write_session_start({})
        code = {"FINISHED": api_pb2.STATUS_SUCCESS, "FAILED": api_pb2.STATUS_FAILURE}.get(status)
        if code is not None:
            info = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
            data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
            self._add(0, None, self._hparams_summary(metadata.SESSION_END_INFO_TAG, data))

    def _hparams_summary(self, tag: str, data: Any) -> Any:
        metadata = self._hp[1]
        value = self._pb.summary_pb2.Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data),
                                                   tensor=metadata.NULL_TENSOR)  # fmt: skip
        return self._pb.summary_pb2.Summary(value=[value])

    def _text_summary(self, name: str, text: str) -> Any:
        pb = self._pb
        metadata = pb.summary_pb2.SummaryMetadata(
            plugin_data=pb.summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        )
        tensor = pb.tensor_pb2.TensorProto(
            dtype=pb.types_pb2.DT_STRING,
            string_val=[text.encode("utf-8")],
            tensor_shape=pb.tensor_shape_pb2.TensorShapeProto(dim=[pb.tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
        )
        value = pb.summary_pb2.Summary.Value(tag=name, metadata=metadata, tensor=tensor)
        return pb.summary_pb2.Summary(value=[value])

    def _add(self, step: int, wall_time: float | None, summary: Any) -> None:
        import time

        event = self._pb.event_pb2.Event(step=step, wall_time=wall_time or time.time(), summary=summary)
        self._writer.add_event(event)

    def flush(self) -> None:
        """Flush the event file."""
        if self._writer is not None:
            self._writer.flush()

    def close(self, status: str) -> None:
        """Close the event file; a trial of a sweep first ends its HParams session with the status."""
        if self._writer is not None:
            if self._hp is not None:
                self._write_session_end(status)
            self._writer.close()
            self._writer = None


class _Protos:
    """The protobuf modules, imported on start and kept together."""

    def __init__(self, event_pb2: Any, summary_pb2: Any, tensor_pb2: Any, tensor_shape_pb2: Any, types_pb2: Any) -> None:
        self.event_pb2 = event_pb2
        self.summary_pb2 = summary_pb2
        self.tensor_pb2 = tensor_pb2
        self.tensor_shape_pb2 = tensor_shape_pb2
        self.types_pb2 = types_pb2


def _set_hparam(slot: Any, value: Any) -> None:
    """One hparam value: bools and finite numbers as themselves, anything else as text (JSON for lists)."""
    import json
    import math

    if isinstance(value, bool):
        slot.bool_value = value
        return
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int past float's range: kept exact, as text
            number = math.nan
        if math.isfinite(number):
            slot.number_value = number
            return
    slot.string_value = value if isinstance(value, str) else json.dumps(value, default=str)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class History:
    """Event files in ``<run>/tensorboard``, read with TensorBoard's EventAccumulator."""

    def __init__(self, info: RunInfo, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        try:
            from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
        except ImportError as exc:
            from codex_ml.errors import MissingExtraError

            raise MissingExtraError("replay into TensorBoard", "tensorboard", "tensorboard") from exc
        self.info = info
        self.sink = TensorBoardSink(flush_secs=1.0)
        self.target = str(info.paths.tensorboard)

    def name(self, key: str) -> str:
        """TensorBoard keeps tags verbatim."""
        return key

    def existing(self, keys: list[str]) -> dict[str, dict[int, int]]:
        """Scalar points per tag and step in every event file of the folder."""
        from tensorboard.backend.event_processing import event_accumulator as ea

        folder = self.info.paths.tensorboard
        if not folder.is_dir():
            return {}
        # Keep every event, and keep out-of-order steps (purging them is for restarted jobs).
        acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
        acc.Reload()
        # Points a rollback superseded (logged live before its rewind) are purged by TensorBoard's
        # views: do not count them, so replay sends the surviving timeline in their place if need be.
        rewinds = read_rewinds(self.info.paths)
        return {tag: dict(Counter(e.step for e in acc.Scalars(tag) if not superseded(e.step, e.wall_time, rewinds)))
                for tag in acc.Tags()["scalars"]}  # fmt: skip


def view_line(paths: RunPaths, saved: dict[str, Any] | None = None) -> str:
    """The tensorboard command, when the run wrote event files; for a trial of a sweep also the sweep's."""
    line = tensorboard_view_line(paths)
    if line != NOT_STARTED and read_run_json(paths).get("sweep"):
        line += f"   all trials (HParams tab): tensorboard --logdir {quote(paths.root.parent)} --host 127.0.0.1"
    return f"  TensorBoard:  {line}"


def tensorboard_view_line(paths: RunPaths) -> str:
    """The tensorboard command, when the run wrote event files (without the label)."""
    if not any(paths.tensorboard.glob("events.out.tfevents.*")):
        return NOT_STARTED
    return f"tensorboard --logdir {quote(paths.tensorboard)} --host 127.0.0.1"
