"""The built-in tracking backends: one module each, one row each in :data:`BACKENDS`.

A backend module (``codex_ml.backends.<name>``) holds everything about one backend:

- its sink class (``Row.sink``), with ``from_config(config)`` building it from a TrackingConfig;
- ``History`` (optional): what the backend already holds, so resume back-fill and
  ``codex-ml monitoring export --to NAME`` send only what is missing (``monitoring/replay.py``);
- ``view_line(paths, saved)`` (optional): the line telling the user where the run's data went
  and the command that views it (``tracking/viewing.py``).

Run start-up (``tracking/builtin_sinks.py``), the run's ``sinks`` list and back-fill
(``tracking/run.py``), replay, the viewer hints and the plugin listing (``plugins/builtins.py``)
all read this table. Adding a backend is one module and one row. Nothing is imported while the
table is read: a module is imported the first time a job uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Row:
    """One built-in backend, before its module is imported."""

    name: str
    #: The backend's module: ``codex_ml.backends.<name>``.
    module: str
    #: The sink class in that module (the ``sinks`` plugin it registers).
    sink: str
    #: The optional package it needs, as imported, and the pip extra that installs it.
    package: str
    extra: str
    #: How a missing package is reported: "<feature> needs <pip name>; pip install 'codex-ml[<extra>]'".
    feature: str
    #: Whether a TrackingConfig asks for this backend.
    enabled: Callable[[Any], bool]
    #: The package's name on PyPI when it differs from ``package``.
    pip_name: str | None = None
    #: The TrackingConfig flag that turns it on (``--sink NAME`` sets it); None when a setting does.
    switch: str | None = None
    #: Whether the module has a ``History``: back-fill on resume and ``export --to NAME``.
    replayable: bool = True
    #: Whether the sink runs in the run's sink process (tracking/sink_host.py) rather than in the
    #: trainer: backends whose imports and encoding cost the training loop CPU and the GIL.
    own_process: bool = False

    @property
    def target(self) -> str:
        """``module:Class``, the sink as the plugin registry names it."""
        return f"{self.module}:{self.sink}"

    def load(self) -> ModuleType:
        """Import the backend's module (its optional package is imported later, by the sink)."""
        return importlib.import_module(self.module)


def _flag(name: str) -> Callable[[Any], bool]:
    return lambda config: bool(getattr(config, name))


def _prometheus_wanted(config: Any) -> bool:
    return config.prometheus_port is not None or bool(config.prometheus_pushgateway)


def _alerts_wanted(config: Any) -> bool:
    return bool(config.alert_webhook) or bool(config.alert_command)


_ROWS = (
    Row("tensorboard", "codex_ml.backends.tensorboard", "TensorBoardSink", "tensorboard", "tensorboard",
        "The TensorBoard sink (--enable-tensorboard)", _flag("enable_tensorboard"), switch="enable_tensorboard",
        own_process=True),
    Row("mlflow", "codex_ml.backends.mlflow", "MlflowSink", "mlflow", "mlflow",
        "The MLflow sink (--mlflow-enable)", _flag("enable_mlflow"), switch="enable_mlflow",
        own_process=True),
    Row("wandb", "codex_ml.backends.wandb", "WandbSink", "wandb", "wandb",
        "The W&B sink (--enable-wandb)", _flag("enable_wandb"), switch="enable_wandb",
        own_process=True),
    Row("prometheus", "codex_ml.backends.prometheus", "PrometheusSink", "prometheus_client", "prometheus",
        "The Prometheus exporter (--prometheus-port)", _prometheus_wanted, pip_name="prometheus-client",
        replayable=False),
    # Standard library only: the row format names a package, and urllib.request is always there.
    Row("alerts", "codex_ml.backends.alerts", "AlertSink", "urllib.request", "",
        "Health alerts (--alert-webhook/--alert-command)", _alerts_wanted, replayable=False),
)  # fmt: skip

#: Every built-in backend by name, in the order sinks are built and outputs are listed.
BACKENDS: dict[str, Row] = {row.name: row for row in _ROWS}



def replayable() -> tuple[str, ...]:
    """The backends a run can be replayed into (``export --to``) and back-filled on resume."""
    return tuple(name for name, row in BACKENDS.items() if row.replayable)


# -- shared by the modules' view_line ------------------------------------------------
#: What a view line says for a backend that was asked for but wrote nothing.
NOT_STARTED = "nothing was written (the sink did not start; see the [monitoring-error] lines above)"


def quote(path: Any) -> str:
    """``path`` quoted for a shell command the user copies."""
    import shlex

    return shlex.quote(str(path))


def undelivered(paths: Any, sink: str) -> int:
    """Records summary.json says never reached ``sink`` (0 while the run is open or unknown)."""
    import json

    try:
        stats = json.loads(paths.summary.read_text(encoding="utf-8"))["sinks"][sink]
        return int(stats.get("undelivered", 0)) + int(stats.get("dropped", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0
