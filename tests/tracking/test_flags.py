"""The tracking flags are defined once and behave the same under argparse and Typer."""

from __future__ import annotations

import argparse

import pytest
import typer
from typer.testing import CliRunner

from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.flags import (
    TRACKING_FLAGS,
    add_tracking_arguments,
    fill_optional_values,
    tracking_config_from,
    with_tracking_options,
)

ARGV = [
    "--run-name", "r1", "--output-root", "out", "--enable-tensorboard", "--enable-mlflow",
    "--mlflow-tracking-uri", "sqlite:///x.db", "--mlflow-experiment", "exp", "--enable-wandb",
    "--system-metrics", "sys.jsonl", "--system-metrics-interval", "2.5",
    "--prometheus-port", "9109", "--prometheus-addr", "0.0.0.0", "--prometheus-pushgateway", "http://127.0.0.1:9091",
]
EXPECTED = TrackingConfig(
    run_name="r1", output_root="out", enable_tensorboard=True, enable_mlflow=True,
    mlflow_tracking_uri="sqlite:///x.db", mlflow_experiment="exp", enable_wandb=True,
    system_metrics="sys.jsonl", system_metrics_interval=2.5,
    prometheus_port=9109, prometheus_addr="0.0.0.0", prometheus_pushgateway="http://127.0.0.1:9091",
)


def _argparse_config(argv: list[str]) -> TrackingConfig:
    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser)
    return tracking_config_from(parser.parse_args(argv))


def _typer_config(argv: list[str]) -> TrackingConfig:
    seen: list[TrackingConfig] = []
    app = typer.Typer()

    @app.command()
    @with_tracking_options
    def job(epochs: int = 1, tracking: TrackingConfig | None = None) -> None:
        seen.append(tracking)

    @app.command()
    def other() -> None:  # a second command so Typer keeps the subcommand name
        pass

    result = CliRunner().invoke(app, ["job", *fill_optional_values(argv)])
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.mark.parametrize("parse", [_argparse_config, _typer_config], ids=["argparse", "typer"])
def test_every_flag_sets_its_field(parse) -> None:
    """All seven flags reach the same TrackingConfig through either parser."""
    assert parse(ARGV) == EXPECTED


@pytest.mark.parametrize("parse", [_argparse_config, _typer_config], ids=["argparse", "typer"])
def test_mlflow_enable_alias(parse) -> None:
    """--mlflow-enable and --enable-mlflow are the same switch."""
    assert parse(["--mlflow-enable"]).enable_mlflow is True
    assert parse(["--enable-mlflow"]).enable_mlflow is True


@pytest.mark.parametrize("parse", [_argparse_config, _typer_config], ids=["argparse", "typer"])
def test_unset_flags_keep_defaults(parse) -> None:
    """No flags means the TrackingConfig defaults (every sink off)."""
    config = parse([])
    assert config == TrackingConfig()
    assert not (config.enable_mlflow or config.enable_tensorboard or config.enable_wandb)


@pytest.mark.parametrize("parse", [_argparse_config, _typer_config], ids=["argparse", "typer"])
def test_system_metrics_without_value_means_auto(parse) -> None:
    """`--system-metrics` alone (last, or before another flag) is AUTO; a value is kept."""
    assert parse(["--system-metrics"]).system_metrics == "AUTO"
    assert parse(["--system-metrics", "--enable-tensorboard"]).system_metrics == "AUTO"
    assert parse(["--system-metrics", "logs/sys.jsonl"]).system_metrics == "logs/sys.jsonl"


@pytest.mark.parametrize("parse", [_argparse_config, _typer_config], ids=["argparse", "typer"])
def test_port_zero_is_kept(parse) -> None:
    """A falsy value such as port 0 (pick a free port) is not mistaken for 'unset'."""
    assert parse(["--prometheus-port", "0"]).prometheus_port == 0


def test_flag_table_covers_documented_names() -> None:
    """The documented flag names all exist, once each."""
    names = [n for flag in TRACKING_FLAGS for n in flag.names]
    assert len(names) == len(set(names))
    for expected in ("--enable-tensorboard", "--enable-wandb", "--mlflow-enable", "--enable-mlflow",
                     "--mlflow-tracking-uri", "--mlflow-experiment", "--run-name", "--output-root",
                     "--system-metrics", "--system-metrics-interval", "--prometheus-port", "--prometheus-addr",
                     "--prometheus-pushgateway"):
        assert expected in names


def test_unknown_option_names_are_listed() -> None:
    """TrackingConfig.replace rejects unknown fields with the valid ones listed."""
    with pytest.raises(TypeError, match="enable_mlflow"):
        TrackingConfig().replace(enable_mlfow=True)


def test_optional_value_is_implied_before_a_hydra_override() -> None:
    """`--system-metrics training.max_steps=5` means AUTO plus an override, not a path."""
    assert fill_optional_values(["--system-metrics", "training.max_steps=5"]) == [
        "--system-metrics", "AUTO", "training.max_steps=5"]  # fmt: skip
    assert fill_optional_values(["--system-metrics", "++model.n_layer=2"])[1] == "AUTO"
    assert fill_optional_values(["--system-metrics", "logs/sys.jsonl"])[1] == "logs/sys.jsonl"


def test_out_of_range_values_name_the_flag_and_the_config_key() -> None:
    """A TrackingConfigError is a CodexMLError whose message says how the user set the value."""
    from codex_ml.errors import CodexMLError
    from codex_ml.tracking.config import TrackingConfigError

    with pytest.raises(TrackingConfigError) as info:
        tracking_config_from(argparse.Namespace(prometheus_port=70000, system_metrics_interval=float("nan")))
    assert isinstance(info.value, CodexMLError) and info.value.fields == ["system_metrics_interval", "prometheus_port"]
    assert "--prometheus-port (tracking.prometheus_port) must be a port number 0-65535" in str(info.value)
    assert "--system-metrics-interval (system_metrics.interval)" in str(info.value)
    with pytest.raises(TrackingConfigError, match=r"^tracking.flush_interval "):  # no flag: the config key alone
        TrackingConfig(flush_interval=0)


def test_unknown_sink_name_is_refused_when_the_flags_are_read() -> None:
    from codex_ml.plugins.registry import UnknownPluginError

    with pytest.raises(UnknownPluginError, match="nosuch"):
        tracking_config_from({"extra_sinks": ["nosuch"]})
    assert tracking_config_from({"extra_sinks": ["tensorboard"]}).extra_sinks == ["tensorboard"]


def test_flags_can_be_left_out_of_a_parser() -> None:
    """The pipeline's parser has no --run-name/--output-root: its run directory is --output-dir."""
    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser, exclude=("run_name", "output_root"))
    assert "--run-name" not in parser.format_help() and "--output-root" not in parser.format_help()
    assert "--enable-wandb" in parser.format_help()
