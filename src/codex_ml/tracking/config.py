"""TrackingConfig: every knob of a run, with the defaults documented in docs/tracking.md."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from codex_ml import env
from codex_ml.errors import CodexMLError
from codex_ml.secrets.credentials import take_credentials

DEFAULT_OUTPUT_ROOT = "runs"
DEFAULT_EXPERIMENT = "codex_ml"
DEFAULT_WANDB_PROJECT = "codex_ml"


@dataclass
class TrackingConfig:
    """Which sinks a run writes to and how its background writer behaves."""

    run_name: str | None = None
    output_root: str = field(default_factory=lambda: os.environ.get(env.CODEX_OUTPUT_ROOT) or DEFAULT_OUTPUT_ROOT)
    enable_tensorboard: bool = False
    enable_mlflow: bool = False
    #: None means the local store ``runs/<run>/mlruns``; file:, sqlite: and http(s): URIs work.
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = DEFAULT_EXPERIMENT
    enable_wandb: bool = False
    #: None means $WANDB_PROJECT, else "codex_ml".
    wandb_project: str | None = None
    #: Seconds between writes of the NDJSON log: a crash loses at most this much.
    flush_interval: float = 1.0
    #: fsync after every write (survives power loss, costs a disk sync per interval).
    fsync: bool = False
    #: Records the hot path may queue before it waits for the writer (backpressure).
    max_queue: int = 200_000
    #: Records a slow sink may lag behind before new ones are dropped for that sink.
    sink_max_pending: int = 500_000
    #: Consecutive failures after which a sink is disabled.
    sink_max_failures: int = 5
    #: Seconds close() waits for sinks to drain before reporting what did not make it.
    close_timeout: float = 30.0
    #: Run the TensorBoard, MLflow and W&B sinks in a companion process (tracking/sink_host.py)
    #: instead of threads of the training process; False keeps them in process.
    sink_process: bool = True
    #: The companion process's ``nice`` value (0-19): higher leaves more CPU to training.
    sink_process_nice: int = 19
    #: Run the companion processes under SCHED_IDLE (Linux): they get a CPU only when training leaves one idle.
    sink_process_idle: bool = True
    histogram_bins: int = 64
    #: None (off), "AUTO" (<checkpoint_dir>/system_metrics.jsonl) or a path (relative to the checkpoint dir).
    system_metrics: str | None = None
    system_metrics_interval: float = 15.0
    #: Registered system-metric collectors to sample, by name (``codex-ml plugins list
    #: system-metric-collectors``); None: the built-in set (cpu, memory, ..., gpu).
    system_metrics_collectors: list[str] | None = None
    #: Serve /metrics for Prometheus on this port (None: off).
    prometheus_port: int | None = None
    prometheus_addr: str = "127.0.0.1"
    prometheus_pushgateway: str | None = None
    #: POST every health event as JSON to this http(s) URL (docs/alerting.md); a user:password@
    #: or token@ in it is sent as HTTP auth and kept out of the stored config. ``env:NAME`` reads
    #: the URL from $NAME when the run starts (for webhooks whose path is the secret).
    alert_webhook: str | None = None
    #: Run this command once per health event with the event's JSON on stdin (split like a shell
    #: command line, run without a shell).
    alert_command: str | None = None
    #: On resume, first replay into TensorBoard/MLflow/W&B the points of the NDJSON they miss
    #: (e.g. after a crash or an outage), so every sink holds every step exactly once.
    backfill_on_resume: bool = True
    #: Names of registered sink plugins to add (``codex-ml plugins list sinks``); the
    #: built-ins tensorboard/mlflow/wandb/prometheus are the same as their enable flags.
    extra_sinks: list[str] = field(default_factory=list)
    #: The sweep this run is a trial of (docs/sweeps.md), None outside a sweep. Sinks group
    #: the trials by it: MLflow nests them under one parent run, W&B puts them in one group.
    sweep: str | None = None
    #: This run's trial name inside ``sweep`` (e.g. ``trial-003``); a Prometheus ``trial`` label.
    trial: str | None = None

    def __post_init__(self) -> None:
        self.extra_sinks = _sink_names(self.extra_sinks)
        if self.system_metrics_collectors is not None:
            self.system_metrics_collectors = _collector_names(self.system_metrics_collectors)
        # user:password@ in a URI stays in memory (credentials.py): this config is stored in
        # run.json, checkpoints and params, and printed, so it keeps the URIs without them.
        self.mlflow_tracking_uri = take_credentials(self.mlflow_tracking_uri)
        self.prometheus_pushgateway = take_credentials(self.prometheus_pushgateway, default_scheme="http")
        self.alert_webhook = take_credentials(self.alert_webhook)
        problems = _problems(self)
        if problems:
            raise TrackingConfigError(problems)

    def replace(self, **changes: Any) -> TrackingConfig:
        """A copy with ``changes`` applied; unknown names raise TypeError listing valid ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown tracking option(s) {unknown}; valid: {sorted(known)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return TrackingConfig(**values)

    def resolved_wandb_project(self) -> str:
        """The W&B project: explicit, else $WANDB_PROJECT, else the default."""
        return self.wandb_project or os.environ.get(env.WANDB_PROJECT) or DEFAULT_WANDB_PROJECT


class TrackingConfigError(CodexMLError, ValueError):
    """Tracking settings out of range. The message names each one's command-line flag and
    config key (``--prometheus-port (tracking.prometheus_port) must be ...``)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        #: The TrackingConfig fields at fault, in order, and one message for each.
        self.fields = [name for name, _ in problems]
        self.problems = [f"{setting_label(name)} {why}" for name, why in problems]
        super().__init__("; ".join(self.problems))


#: Config keys of the fields that live in the ``system_metrics`` section instead of ``tracking``.
_CONFIG_KEYS = {"system_metrics": "system_metrics.path", "system_metrics_interval": "system_metrics.interval",
                "system_metrics_collectors": "system_metrics.collectors"}


def setting_label(name: str) -> str:
    """How a user sets field ``name``: ``--flag (config.key)``, or the config key alone."""
    key = _CONFIG_KEYS.get(name, f"tracking.{name}")
    flag = next((f.names[0] for f in TRACKING_FLAGS if f.field == name), None)
    return f"{flag} ({key})" if flag else key


def _sink_names(value: Any) -> list[str]:
    """``extra_sinks`` as a list of names; one string (e.g. from YAML) is one name."""
    names = [value] if isinstance(value, str) else list(value or [])
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise TrackingConfigError([("extra_sinks", f"must be sink plugin names, got {name!r}")])
    return [name.strip() for name in names]


def _collector_names(value: Any) -> list[str]:
    """``system_metrics_collectors`` as a list of registered names; an unknown one is refused
    here, before anything is written, with the registered names (the registry imports nothing)."""
    names = [value] if isinstance(value, str) else list(value or [])
    if any(not isinstance(name, str) or not name.strip() for name in names):
        raise TrackingConfigError([("system_metrics_collectors", f"must be collector plugin names, got {value!r}")])
    from codex_ml.plugins.registry import Registry, UnknownPluginError

    registry = Registry()
    try:
        for name in names:
            registry.spec("system_metric_collectors", name.strip())
    except UnknownPluginError as exc:
        raise TrackingConfigError([("system_metrics_collectors", str(exc))]) from None
    return [name.strip() for name in names]


# Schemes MLflow itself serves (SQLAlchemy ones may name a driver: postgresql+psycopg2).
_MLFLOW_SCHEMES = {"file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def _problems(c: TrackingConfig) -> list[tuple[str, str]]:
    """Every value out of range, as (field, what is wrong)."""
    out = [(name, "must not be empty") for name in ("mlflow_tracking_uri", "mlflow_experiment", "system_metrics",
                                                      "prometheus_pushgateway", "alert_webhook", "alert_command")
           if isinstance(getattr(c, name), str) and not getattr(c, name).strip()]
    if not str(c.output_root).strip():
        out.append(("output_root", "must not be empty (use . for the current directory)"))
    if c.run_name is not None:
        from codex_ml.rundir.paths import validate_run_name

        try:
            validate_run_name(c.run_name)
        except ValueError as exc:
            out.append(("run_name", f"is not usable: {exc}"))
    out += _number_problems(c)
    out += _address_problems(c)
    out += _alert_problems(c)
    return out


def _number_problems(c: TrackingConfig) -> list[tuple[str, str]]:
    out = []
    # (field, lowest value, whether the lowest is allowed, whether infinity is allowed)
    for name, allow_zero, allow_inf in (("flush_interval", False, False), ("system_metrics_interval", True, False),
                                        ("close_timeout", True, True)):
        value = getattr(c, name)
        if not _is_number(value) or math.isnan(value) or value < 0 or (value == 0 and not allow_zero) \
                or (math.isinf(value) and not allow_inf):
            bound = ">= 0" if allow_zero else "> 0"
            out.append((name, f"must be a {'' if allow_inf else 'finite '}number of seconds {bound}, got {value!r}"))
    for name in ("max_queue", "sink_max_pending", "sink_max_failures", "histogram_bins"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            out.append((name, f"must be an integer >= 1, got {value!r}"))
    nice = c.sink_process_nice
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        out.append(("sink_process_nice", f"must be an integer 0-19, got {nice!r}"))
    for name in ("sink_process", "sink_process_idle"):
        if not isinstance(getattr(c, name), bool):
            out.append((name, f"must be true or false, got {getattr(c, name)!r}"))
    port = c.prometheus_port
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        out.append(("prometheus_port", f"must be a port number 0-65535 (0 picks a free one), got {port!r}"))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _address_problems(c: TrackingConfig) -> list[tuple[str, str]]:
    out = []
    uri = c.mlflow_tracking_uri
    if isinstance(uri, str) and uri.strip() and not _mlflow_scheme_ok(uri):
        out.append(("mlflow_tracking_uri", f"has an unsupported scheme: {uri.split(':', 1)[0]!r} (use a path, file:, "
                                           "sqlite:///, http(s)://host:port, postgresql://, mysql:// or databricks)"))
    if not _is_host(c.prometheus_addr):
        out.append(("prometheus_addr", f"must be an IP address or host name, got {c.prometheus_addr!r}"))
    gateway = c.prometheus_pushgateway
    if isinstance(gateway, str) and gateway.strip():
        scheme, sep, rest = gateway.partition("://")
        host = (rest if sep else gateway).split("/", 1)[0].rsplit("@", 1)[-1]
        if (sep and scheme.lower() not in ("http", "https")) or not host or any(ch.isspace() for ch in gateway):
            out.append(("prometheus_pushgateway", f"must be an http(s)://host:port URL (or host:port), got {_masked(gateway)!r}"))
    return out


def _alert_problems(c: TrackingConfig) -> list[tuple[str, str]]:
    """A webhook that is not http(s)://host..., a command that does not parse or is not found.

    Only the scheme of a bad URL and the program of a bad command are shown: webhook paths and
    command arguments often hold tokens.
    """
    out = []
    url = c.alert_webhook
    if isinstance(url, str) and url.startswith("env:"):
        name = url[4:]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            out.append(("alert_webhook", f"env:NAME needs an environment variable name, got {name!r}"))
            url = None
        elif not os.environ.get(name):
            out.append(("alert_webhook", f"reads the URL from ${name}, which is not set"))
            url = None
        else:
            url = os.environ[name]
    if isinstance(url, str) and url.strip():
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0] or any(ch.isspace() for ch in url):
            got = f"scheme {scheme!r}" if sep else "no scheme"
            out.append(("alert_webhook", f"must be an http(s)://host[:port]/path URL without spaces (got {got})"))
    command = c.alert_command
    if isinstance(command, str) and command.strip():
        import shlex
        import shutil

        try:
            program = shlex.split(command)[0]
        except (ValueError, IndexError) as exc:
            out.append(("alert_command", f"cannot be split into a program and its arguments ({exc})"))
        else:
            if shutil.which(program) is None:
                out.append(("alert_command", f"names {program!r}, which is not an executable file or on PATH"))
    return out


def _mlflow_scheme_ok(uri: str) -> bool:
    """A plain path, a scheme MLflow serves, or one an installed MLflow plugin registers."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", uri)
    if match is None or len(match.group(1)) == 1:  # no scheme, or a Windows drive letter
        return True
    scheme = match.group(1).lower().split("+", 1)[0]
    if scheme in _MLFLOW_SCHEMES:
        return True
    from importlib.metadata import entry_points

    return scheme in {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def _is_host(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        pass
    # All digits and dots is meant as an IPv4 address, and that failed above (999.1.1.1).
    return not re.fullmatch(r"[0-9.]+", value) and _HOSTNAME.match(value) is not None


def _masked(url: str) -> str:
    """``url`` without the password of a ``user:password@`` part (messages are printed)."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", url)


# -- the command-line flag of each field (tracking/flags.py adds them to parsers) ----------
@dataclass(frozen=True)
class Flag:
    """One command-line flag and the TrackingConfig field it sets."""

    names: tuple[str, ...]
    field: str
    is_switch: bool
    help: str
    metavar: str | None = None
    #: Value type for non-switch flags (str, int or float).
    type: type = str
    #: Value used when the flag is given without one (``--system-metrics`` alone means AUTO).
    const: str | None = None
    #: Repeatable flag collected into a list (``--sink a --sink b``).
    multiple: bool = False


TRACKING_FLAGS: tuple[Flag, ...] = (
    Flag(("--run-name",), "run_name", False, "Run name, a folder under the output root (default: run-<date>-<time>-<id>).", "NAME"),
    Flag(("--output-root",), "output_root", False, f"Directory that holds runs (default: {DEFAULT_OUTPUT_ROOT}, or $CODEX_ML_OUTPUT_ROOT).", "DIR"),
    Flag(("--enable-tensorboard",), "enable_tensorboard", True, "Write TensorBoard event files to runs/<run>/tensorboard/."),
    Flag(("--mlflow-enable", "--enable-mlflow"), "enable_mlflow", True, "Log to MLflow (default store: runs/<run>/mlruns)."),
    Flag(("--mlflow-tracking-uri",), "mlflow_tracking_uri", False, "MLflow tracking URI: file:, sqlite:/// or http(s)://host:port (default: $MLFLOW_TRACKING_URI, else runs/<run>/mlruns).", "URI"),
    Flag(("--mlflow-experiment",), "mlflow_experiment", False, f"MLflow experiment name (default: {DEFAULT_EXPERIMENT}).", "NAME"),
    Flag(("--enable-wandb",), "enable_wandb", True, "Log to Weights & Biases, offline unless $WANDB_MODE says otherwise; project from $WANDB_PROJECT."),
    Flag(("--system-metrics",), "system_metrics", False, "Record CPU/memory/GPU telemetry: AUTO (or no value) writes <checkpoint_dir>/system_metrics.jsonl; a relative PATH is taken relative to the checkpoint dir, an absolute one as is.", "AUTO|PATH", const="AUTO"),
    Flag(("--system-metrics-interval",), "system_metrics_interval", False, "Seconds between system telemetry samples (default: 15; minimum 0.1).", "SECONDS", float),
    Flag(("--system-metrics-collector",), "system_metrics_collectors", False, "Sample this registered collector (repeatable; default: all built-ins; `codex-ml plugins list system-metric-collectors` shows the names).", "NAME", multiple=True),
    Flag(("--prometheus-port",), "prometheus_port", False, "Serve /metrics for Prometheus on this port (training scalars, system gauges, tracker health).", "PORT", int),
    Flag(("--prometheus-addr",), "prometheus_addr", False, "Address the Prometheus exporter binds (default: 127.0.0.1; 0.0.0.0 exposes it to the network).", "ADDR"),
    Flag(("--prometheus-pushgateway",), "prometheus_pushgateway", False, "Also push metrics to this Prometheus Pushgateway URL (for short jobs).", "URL"),
    Flag(("--alert-webhook",), "alert_webhook", False, "POST every health event as JSON to this http(s) URL, retried with backoff (docs/alerting.md); user:password@ in it is sent as basic auth, never stored or printed.", "URL"),
    Flag(("--alert-command",), "alert_command", False, "Run this command once per health event with the event as JSON on stdin (docs/alerting.md).", "CMD"),
    Flag(("--sink",), "extra_sinks", False, "Also log to this registered sink plugin (repeatable; `codex-ml plugins list sinks` shows the names).", "NAME", multiple=True),
)
