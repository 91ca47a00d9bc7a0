"""Prometheus backend (extra ``prometheus``): a sink that serves ``/metrics`` and, for short jobs, pushes to a Pushgateway.

Every training scalar and system gauge is exported as a gauge holding its latest value
(``train/loss`` -> ``codex_train_loss``), labelled ``run="<run name>"`` (a trial of a sweep adds
``sweep`` and ``trial`` to every series, so one label set per exporter; under torchrun each rank serves its own
exporter on port base + local rank, labelled ``rank`` and ``node``), next to the tracker's
own health (``codex_tracker_*``), which is read from ``RunInfo.health()`` at scrape time, and the
run's health events (``codex_health_events_total{rule}``, ``codex_health_active{rule}``). The
collector lives in a private ``CollectorRegistry`` so several runs (and tests) can coexist in
one process. The HTTP server binds 127.0.0.1 unless another address is asked for, and stops in
``close()``. A serving exporter writes its file_sd target into the run directory (prometheus_targets.py) and
removes it in ``close()``. A Pushgateway URL with credentials (``http://user:password@host:9091``) is used
without them: they are sent as HTTP basic auth and never appear in a message or a file.
See docs/prometheus.md. (A little over ~400 lines: one module per backend is the layout's rule, and
the exporter's name mapping, its metric families and the Pushgateway are all this backend's.)
"""

from __future__ import annotations

import errno
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from codex_ml.backends.prometheus_targets import Place, remove_target, target_address, torchrun_place, write_target
from codex_ml.errors import CodexMLError
from codex_ml.secrets.credentials import credentials_for, take_credentials
from codex_ml.rundir.sink import MetricPoint, RunInfo, Sink

__all__ = [
    "HEALTH_ACTIVE_SECONDS",
    "PUSH_INTERVAL",
    "PUSH_JOB",
    "PrometheusBindError",
    "PrometheusSink",
    "PushgatewayError",
    "RunLabels",
    "prometheus_name",
]

#: The ``job`` label of pushed metrics; the grouping key adds ``run=<run name>`` (and ``sweep``, ``trial`` for a trial).
PUSH_JOB = "codex_ml"
#: Pushes triggered by incoming records happen at most this often (seconds); close() always pushes.
PUSH_INTERVAL = 10.0
PUSH_TIMEOUT = 5.0
#: Addresses that mean "every interface": binding them prints a warning.
WILDCARD_ADDRS = ("0.0.0.0", "::", "")

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_]+")
_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The exporter's own metrics: (family name, kind, help). Counters are exposed with ``_total``.
_HEALTH = (
    ("codex_tracker_queue_depth", "gauge", "Records waiting for the tracker's background writer."),
    ("codex_tracker_records_written", "counter", "Records written to the run's NDJSON log."),
    ("codex_tracker_last_step", "gauge", "Step of the latest training scalar this exporter received."),
    ("codex_tracker_last_log_timestamp_seconds", "gauge", "Wall time (Unix seconds) of that latest scalar."),
)
# Health events (docs/alerting.md): a counter and an "active" gauge per rule, labelled run and rule.
_EVENTS = ("codex_health_events", "Health events the run's rules fired.")
_ACTIVE = ("codex_health_active", "1 while the rule fired within the last active-window seconds, else 0.")
#: Seconds codex_health_active{rule} stays 1 after the rule's latest event.
HEALTH_ACTIVE_SECONDS = 300.0
#: Keys not exported as gauges: the running count ``health/events`` is the sum of codex_health_events_total.
_SKIPPED_KEYS = frozenset({"health/events"})
_SINK_COUNTERS = (
    ("delivered", "Records delivered to the sink."),
    ("dropped", "Records dropped for the sink because it fell behind (they stay in metrics.ndjson)."),
    ("undelivered", "Records that did not reach the sink before close or while it was disabled."),
    ("failures", "Failed calls to the sink (each retry counts)."),
    ("errors", "[monitoring-error] lines printed for the sink."),
)
_SINK_DISABLED = ("codex_tracker_sink_disabled", "1 when the tracker disabled the sink after repeated failures.")


def _reserved_names() -> set[str]:
    families = [(name, kind) for name, kind, _ in _HEALTH]
    families += [(f"codex_tracker_sink_{field}", "counter") for field, _ in _SINK_COUNTERS]
    families += [(_SINK_DISABLED[0], "gauge"), (_EVENTS[0], "counter"), (_ACTIVE[0], "gauge")]
    names = {name for name, _ in families}
    names |= {f"{name}{suffix}" for name, kind in families if kind == "counter" for suffix in ("_total", "_created")}
    return names


RESERVED_NAMES = frozenset(_reserved_names())


class PrometheusBindError(CodexMLError, OSError):
    """The exporter cannot listen on the requested address and port."""

    #: Retrying will not free the port: a worker may report this once and disable the sink.
    retryable = False

    def __init__(self, addr: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            why = f"port {port} on {addr} is in use; choose another with --prometheus-port"
        elif exc.errno == errno.EACCES:
            why = (f"not allowed to listen on port {port} on {addr} (ports below 1024 need root); "
                   "choose another with --prometheus-port")
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            why = (f"cannot listen on {addr}:{port} ({exc.strerror or exc}); choose an address of this machine "
                   "with --prometheus-addr (127.0.0.1 keeps it local)")
        else:
            why = f"cannot listen on {addr}:{port}: {exc}"
        super().__init__(why)
        self.errno = exc.errno


class PushgatewayError(CodexMLError, OSError):
    """A push to the Pushgateway failed (the next push, at most PUSH_INTERVAL later, tries again)."""

    def __init__(self, url: str, exc: Exception) -> None:
        super().__init__(f"push to the Pushgateway at {url} failed: {type(exc).__name__}: {exc}")


def prometheus_name(key: str, prefix: str = "codex_") -> str:
    """The Prometheus metric name for ``key``: ``train/loss`` -> ``codex_train_loss``.

    Each run of characters outside ``[A-Za-z0-9_]`` (``/``, ``.``, ``-``, ``:``, spaces,
    non-ASCII letters) becomes one ``_``; a name that would start with a digit gets a
    leading ``_``. Depends only on ``key`` and ``prefix``. Colons are replaced too: the
    Prometheus rules reserve them for recording rules.
    """
    if prefix and not _VALID_NAME.match(prefix):
        raise ValueError(f"prefix {prefix!r} is not a valid start of a Prometheus metric name ([A-Za-z_][A-Za-z0-9_]*)")
    name = prefix + _BAD_CHARS.sub("_", key)
    if not name:
        return "_"
    return name if not name[0].isdigit() else "_" + name


def _digest(key: str, size: int = 8) -> str:
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:size]


class _Names:
    """Key -> metric name, stable for the life of the exporter; clashes are reported once each.

    A key whose name is already taken (by another key, or by the exporter's own health
    metrics) gets a short hash suffix: ``codex_train_loss_1a2b3c4d``.
    """

    def __init__(self, on_collision: Callable[[str], None]) -> None:
        self._on_collision = on_collision
        self._owner: dict[str, str] = dict.fromkeys(RESERVED_NAMES, "")
        self._cache: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        name = self._cache.get(key)
        if name is None:
            name = self._claim(key, prometheus_name(key))
        return name

    def _claim(self, key: str, name: str) -> str:
        owner = self._owner.get(name)
        if owner is not None:
            hashed = f"{name}_{_digest(key)}"
            if hashed in self._owner:  # a key literally named like another key's hashed name
                hashed = f"{name}_{_digest(key, 40)}"
            taken_by = f"the exporter's own health metric {name!r}" if owner == "" else f"{owner!r} (as {name!r})"
            self._on_collision(f"metric name {key!r} clashes with {taken_by}; exporting it as {hashed!r}")
            name = hashed
        self._owner[name] = key
        self._cache[key] = name
        return name


class _Collector:
    """Builds the metric families at scrape time (called on the HTTP server's threads)."""

    def __init__(self, sink: PrometheusSink) -> None:
        self._sink = sink

    def describe(self) -> list[Any]:
        return []  # names change as keys arrive; the registry must not call collect() to find them

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        run = self._sink.labels()
        values, last_step, last_time = self._sink.snapshot()
        for name, (key, kind, value) in sorted(values.items()):
            family = GaugeMetricFamily(name, f"Latest value of the {kind} {key!r}.", labels=run.names)
            family.add_metric(run.values, value)
            yield family
        yield from _health_families(run, self._sink.health(), last_step, last_time)
        yield from _event_families(run, self._sink.events(), self._sink.active_seconds)


class RunLabels:
    """The labels every series of one exporter carries: ``run``, ``sweep``, ``trial`` for a trial, then ``place``
    (``rank`` and ``node`` under torchrun)."""

    def __init__(self, run: str, sweep: str | None = None, trial: str | None = None,
                 place: dict[str, str] | None = None) -> None:  # fmt: skip
        in_sweep = sweep is not None or trial is not None
        self.names = ["run", "sweep", "trial"] if in_sweep else ["run"]
        self.values = [run, sweep or "", trial or ""] if in_sweep else [run]
        self.names += list(place or {})
        self.values += list((place or {}).values())

    def as_dict(self) -> dict[str, str]:
        """The non-empty labels as a mapping (a run outside a sweep has no empty sweep/trial)."""
        return {name: value for name, value in zip(self.names, self.values) if value or name == "run"}

    def plus(self, name: str) -> list[str]:
        """The label names with one more (``sink``, ``rule``) after them."""
        return [*self.names, name]


def _health_families(run: RunLabels, health: dict[str, Any], last_step: int | None,
                     last_time: float | None) -> Iterator[Any]:  # fmt: skip
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    kinds = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
    readings = {
        "codex_tracker_queue_depth": health.get("queue_depth"),
        "codex_tracker_records_written": health.get("records_written"),
        "codex_tracker_last_step": last_step,
        "codex_tracker_last_log_timestamp_seconds": last_time,
    }
    for name, kind, help_text in _HEALTH:
        if readings[name] is not None:
            family = kinds[kind](name, help_text, labels=run.names)
            family.add_metric(run.values, float(readings[name]))
            yield family
    yield from _sink_families(run, health.get("sinks", {}), health.get("errors", {}))


def _sink_families(run: RunLabels, sinks: dict[str, dict[str, Any]], errors: dict[str, int]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    names = sorted(set(sinks) | set(errors))
    if not names:
        return
    for field, help_text in _SINK_COUNTERS:
        family = CounterMetricFamily(f"codex_tracker_sink_{field}", help_text, labels=run.plus("sink"))
        for sink in names:
            count = errors.get(sink, 0) if field == "errors" else sinks.get(sink, {}).get(field, 0)
            family.add_metric([*run.values, sink], float(count))
        yield family
    disabled = GaugeMetricFamily(_SINK_DISABLED[0], _SINK_DISABLED[1], labels=run.plus("sink"))
    for sink in names:
        disabled.add_metric([*run.values, sink], float(bool(sinks.get(sink, {}).get("disabled", False))))
    yield disabled


def _event_families(run: RunLabels, events: dict[str, tuple[int, float]], active_for: float) -> Iterator[Any]:
    """codex_health_events_total{run,rule} and codex_health_active{run,rule}; nothing before the first event."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if not events:
        return
    now = time.monotonic()
    counter = CounterMetricFamily(_EVENTS[0], _EVENTS[1], labels=run.plus("rule"))
    active = GaugeMetricFamily(_ACTIVE[0], _ACTIVE[1], labels=run.plus("rule"))
    for rule, (count, last) in sorted(events.items()):
        counter.add_metric([*run.values, rule], float(count))
        active.add_metric([*run.values, rule], 1.0 if now - last < active_for else 0.0)
    yield counter
    yield active


class PrometheusSink(Sink):
    """Serves the latest value of every scalar on ``http://<addr>:<port>/metrics``.

    ``port=0`` picks a free port (see :attr:`bound_address`); ``port=None`` serves nothing
    and only pushes to ``pushgateway``. Pushes happen on close and, as records arrive, at
    most every ``push_interval`` seconds. Each health event counts in
    ``codex_health_events_total{rule}`` and holds ``codex_health_active{rule}`` at 1 until the
    rule has been quiet for ``health_active_seconds`` (or the exporter stops at close). ``place`` is the
    process's place in a torchrun job (:func:`from_config` reads it from torchrun's environment): its ``rank`` and
    ``node`` label every series, and name the file_sd target the exporter writes once it serves.
    """

    name = "prometheus"

    def __init__(
        self,
        port: int | None,
        addr: str = "127.0.0.1",
        pushgateway: str | None = None,
        push_interval: float = PUSH_INTERVAL,
        health_active_seconds: float = HEALTH_ACTIVE_SECONDS,
        sweep: str | None = None,
        trial: str | None = None,
        place: Place | None = None,
    ) -> None:
        if port is None and not pushgateway:
            raise ValueError("PrometheusSink needs a port to serve /metrics on, a pushgateway URL, or both")
        if port is not None and (type(port) is not int or not 0 <= port <= 65535):
            raise ValueError(f"prometheus port must be an int in 0-65535, got {port!r}")
        self._port = port
        self._addr = addr
        # No scheme means http, as prometheus_client reads it; the credentials stay in memory only.
        self._gateway = take_credentials(pushgateway, default_scheme="http")
        self._push_interval = push_interval
        self._sweep = sweep
        self._trial = trial
        self._place = place or Place()
        self._target: list[dict[str, Any]] | None = None  # the file_sd target written, removed on close
        self._run: RunInfo | None = None
        self._registry: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._bound: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, str, float]] = {}  # name -> (key, kind, latest value)
        self._last_step: int | None = None
        self._last_time: float | None = None
        self._last_push = float("-inf")
        self._names = _Names(lambda message: None)
        self._health_failed = False
        self.active_seconds = health_active_seconds
        self._events: dict[str, tuple[int, float]] = {}  # rule -> (events so far, monotonic time of the latest)

    @classmethod
    def from_config(cls, config: Any) -> PrometheusSink:
        """The exporter a TrackingConfig asks for: its port, address and Pushgateway, and sweep and trial if any.

        Under torchrun the port is ``prometheus_port + LOCAL_RANK`` and the series carry ``rank`` and ``node``.
        """
        place = torchrun_place()
        return cls(place.port(config.prometheus_port), config.prometheus_addr, config.prometheus_pushgateway,
                   sweep=config.sweep, trial=config.trial, place=place)  # fmt: skip

    # -- what the collector reads -------------------------------------------------------
    @property
    def bound_address(self) -> tuple[str, int] | None:
        """``(host, port)`` the server listens on once started (None before, or when only pushing)."""
        return self._bound

    @property
    def registry(self) -> Any:
        """The private ``CollectorRegistry`` holding this run's metrics (None before start)."""
        return self._registry

    @property
    def run_name(self) -> str:
        """The ``run`` label value (empty before start)."""
        return self._run.name if self._run is not None else ""

    def labels(self) -> RunLabels:
        """The labels of every series: ``run``; ``sweep``, ``trial`` for a trial; ``rank``, ``node`` under torchrun."""
        return RunLabels(self.run_name, self._sweep, self._trial, self._place.labels())

    def snapshot(self) -> tuple[dict[str, tuple[str, str, float]], int | None, float | None]:
        """A consistent copy of the latest values, last step and its wall time."""
        with self._lock:
            return dict(self._values), self._last_step, self._last_time

    def events(self) -> dict[str, tuple[int, float]]:
        """A copy of ``{rule: (events so far, monotonic time of the latest)}``."""
        with self._lock:
            return dict(self._events)

    def health(self) -> dict[str, Any]:
        """The tracker's health, or ``{}`` (reported once) if reading it fails: a scrape never breaks."""
        try:
            return self._run.health() if self._run is not None else {}
        except Exception as exc:  # noqa: BLE001 - the scalars are still worth serving
            if not self._health_failed and self._run is not None:
                self._health_failed = True
                self._run.warn(self.name, f"could not read the tracker's health ({type(exc).__name__}: {exc}); "
                                          "codex_tracker_* metrics are left out")
            return {}

    # -- the Sink protocol -------------------------------------------------------------
    def start(self, run: RunInfo) -> None:
        """Create the private registry and start the HTTP server (raises PrometheusBindError)."""
        from prometheus_client import CollectorRegistry

        self._run = run
        self._names = _Names(lambda message: run.warn(self.name, message))
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        if self._port is not None:
            self._serve(run)

    def _serve(self, run: RunInfo) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(self._port, self._addr, self._registry)
        except OSError as exc:
            raise PrometheusBindError(self._addr, self._port, exc) from exc
        self._bound = tuple(self._server.server_address[:2])
        if self._addr in WILDCARD_ADDRS:
            where = f"{self._addr or '*'}:{self._bound[1]}"
            run.warn(self.name, f"serving /metrics on all interfaces ({where}): anyone who can reach this machine "
                                "can read them; use --prometheus-addr 127.0.0.1 to keep them local")
        self._write_target(run)

    def _write_target(self, run: RunInfo) -> None:
        """Publish ``<run>/prometheus/rank-<k>.json`` for file_sd; a failure is a warning (the exporter serves)."""
        address = target_address(self._addr, self._bound[1])  # type: ignore[index]
        try:
            self._target = write_target(run.paths.root, self._place, address, self.labels().as_dict())
        except OSError as exc:
            run.warn(self.name, f"could not write the file_sd target for {address} into {run.paths.root}: {exc} "
                                "(the exporter serves; list it in prometheus.yml yourself)")

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """Keep the latest value of each training scalar, and the last step."""
        self._update(points, "training scalar")
        if points:
            with self._lock:
                self._last_step, self._last_time = points[-1][0], points[-1][1]
        self._maybe_push()

    def write_system(self, points: list[MetricPoint]) -> None:
        """Keep the latest value of each system gauge (their sample index is not a step)."""
        self._update(points, "system gauge")
        self._maybe_push()

    def write_event(self, event: dict[str, Any]) -> None:
        """Count the event under its rule and mark the rule active (the time is when it arrived here)."""
        rule = str(event.get("rule") or "unknown")
        with self._lock:
            count, _ = self._events.get(rule, (0, 0.0))
            self._events[rule] = (count + 1, time.monotonic())
        self._maybe_push()

    def _update(self, points: list[MetricPoint], kind: str) -> None:
        names, last = self._names, {}
        for _, _, values in points:  # only the last value of each key is exposed: keep it (C-level update)
            last.update(values)
        latest = {names(key): (key, kind, float(value)) for key, value in last.items() if key not in _SKIPPED_KEYS}
        with self._lock:
            self._values.update(latest)

    def close(self, status: str) -> None:
        """Stop the HTTP server (freeing the port), then push one last time if a Pushgateway is set."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5.0)
        if self._target is not None and self._run is not None:
            target, self._target = self._target, None
            try:  # the run is over: its target goes, so Prometheus does not report a finished run as down
                remove_target(self._run.paths.root, self._place.rank, target)
            except OSError:
                pass  # a read-only or vanished run directory: Prometheus will report the target down
        if self._gateway and self._registry is not None:
            self._push()

    # -- Pushgateway -------------------------------------------------------------------
    def _maybe_push(self) -> None:
        if not self._gateway or time.monotonic() - self._last_push < self._push_interval:
            return
        self._push()

    def _push(self) -> None:
        from prometheus_client import push_to_gateway

        # Set first: a failed push raises, and the worker's retry of this call must not push again.
        self._last_push = time.monotonic()
        try:
            push_to_gateway(self._gateway, job=PUSH_JOB, registry=self._registry, handler=self._push_handler(),
                            grouping_key=self._grouping_key(), timeout=PUSH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - re-raised with the URL and what still works
            raise PushgatewayError(self._gateway, exc) from exc

    def _grouping_key(self) -> dict[str, str]:
        """``run``, plus ``sweep`` and ``trial`` when set: trials of two sweeps may share a name."""
        labels = RunLabels(self.run_name, self._sweep, self._trial)  # rank 0 alone pushes: no rank in the key
        return labels.as_dict()

    def _push_handler(self) -> Callable[..., Any]:
        """prometheus_client's default handler, or its basic-auth one when the URL had credentials."""
        from prometheus_client.exposition import basic_auth_handler, default_handler

        creds = credentials_for(self._gateway)
        if creds is None:
            return default_handler

        def handler(url: str, method: str, timeout: float | None, headers: list, data: bytes) -> Callable[[], None]:
            return basic_auth_handler(url, method, timeout, headers, data, creds.user, creds.password or "")

        return handler
