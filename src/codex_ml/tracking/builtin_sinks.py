"""Building the sinks a TrackingConfig asks for, failing early on missing packages."""

from __future__ import annotations

import importlib.util

from codex_ml.errors import MissingExtraError
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.sink import Sink


def require(feature: str, module: str, extra: str, package: str | None = None) -> None:
    """Raise MissingExtraError unless ``module`` can be imported (without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        found = False
    if not found:
        raise MissingExtraError(feature, package or module, extra)


def build_sinks(config: TrackingConfig) -> list[Sink]:
    """The built-in sinks enabled in ``config``; each checks its package is installed."""
    sinks: list[Sink] = []
    if config.enable_tensorboard:
        require("The TensorBoard sink (--enable-tensorboard)", "tensorboard", "tensorboard")
        from codex_ml.tracking.tensorboard_sink import TensorBoardSink

        sinks.append(TensorBoardSink())
    if config.enable_mlflow:
        require("The MLflow sink (--mlflow-enable)", "mlflow", "mlflow")
        from codex_ml.tracking.mlflow_sink import MlflowSink

        sinks.append(MlflowSink(config.mlflow_tracking_uri, config.mlflow_experiment))
    if config.enable_wandb:
        require("The W&B sink (--enable-wandb)", "wandb", "wandb")
        from codex_ml.tracking.wandb_sink import WandbSink

        sinks.append(WandbSink(config.resolved_wandb_project()))
    if config.prometheus_port is not None or config.prometheus_pushgateway:
        require("The Prometheus exporter (--prometheus-port)", "prometheus_client", "prometheus", "prometheus-client")
        from codex_ml.monitoring.prometheus_exporter import PrometheusSink

        sinks.append(PrometheusSink(config.prometheus_port, config.prometheus_addr, config.prometheus_pushgateway))
    return sinks
