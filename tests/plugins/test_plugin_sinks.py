"""Sink plugins in real runs: the repeatable --sink flag, TrackingConfig.extra_sinks, and
build_sinks creating plugin sinks through the registry (with clear errors)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from codex_ml.errors import CodexMLError
from codex_ml.plugins import PluginLoadError, UnknownPluginError
from codex_ml.plugins.registry import PluginError
from codex_ml.tracking import start_run
from codex_ml.tracking.builtin_sinks import build_sinks
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.flags import add_tracking_arguments, tracking_config_from, with_tracking_options

PLUGINS = """
    import json
    from codex_ml.rundir.sink import Sink
    CODEX_ML_PLUGIN_API = 1

    class JsonSink(Sink):
        '''Writes every metric point to <run>/plugin.jsonl.'''
        def __init__(self, config=None):
            self.config = config
        def start(self, run):
            self.file = open(run.paths.root / "plugin.jsonl", "w")
        def write_metrics(self, points):
            for step, _, values in points:
                self.file.write(json.dumps({"step": step, **values}) + "\\n")
        def close(self, status):
            self.file.write(json.dumps({"status": status}) + "\\n")
            self.file.close()

    class Configured(Sink):
        name = "configured"
        @classmethod
        def from_config(cls, config):
            sink = cls()
            sink.experiment = config.mlflow_experiment
            return sink

    def duck_factory():
        return object()

    def failing_factory():
        raise RuntimeError("backend refused")
"""
ENTRY_POINTS = {"codex_ml.sinks": {
    "jsonsink": "codex_test_sinks:JsonSink", "configured": "codex_test_sinks:Configured",
    "duck": "codex_test_sinks:duck_factory", "failing": "codex_test_sinks:failing_factory",
}}  # fmt: skip


@pytest.fixture
def sink_plugins(make_dist: Callable[..., Path]) -> None:
    """A distribution with a handful of sink plugins, on sys.path for this test."""
    make_dist("codex-test-sinks", ENTRY_POINTS, {"codex_test_sinks": PLUGINS})


def _argparse(argv: list[str]) -> TrackingConfig:
    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser)
    return tracking_config_from(parser.parse_args(argv))


def _typer(argv: list[str]) -> TrackingConfig:
    seen: list[TrackingConfig] = []
    app = typer.Typer()

    @app.command()
    @with_tracking_options
    def job(tracking: TrackingConfig | None = None) -> None:
        seen.append(tracking)

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["job", *argv])
    assert result.exit_code == 0, result.output
    return seen[0]


@pytest.mark.parametrize("parse", [_argparse, _typer], ids=["argparse", "typer"])
def test_sink_flag_is_repeatable(parse: Callable[[list[str]], TrackingConfig], sink_plugins: None) -> None:
    """--sink a --sink b gives extra_sinks [a, b] under both parsers; no flag keeps []."""
    assert parse(["--sink", "jsonsink", "--sink", "duck"]).extra_sinks == ["jsonsink", "duck"]
    assert parse([]).extra_sinks == []


def test_unset_sink_flag_keeps_the_base_config() -> None:
    """An absent --sink does not wipe extra_sinks from a base config (e.g. one from YAML)."""
    base = TrackingConfig(extra_sinks=["csvsink"])
    assert tracking_config_from({"extra_sinks": []}, base).extra_sinks == ["csvsink"]
    assert tracking_config_from({"extra_sinks": None}, base).extra_sinks == ["csvsink"]


def test_extra_sinks_values() -> None:
    """One string is one name; empty or non-string names are refused."""
    assert TrackingConfig(extra_sinks="csvsink").extra_sinks == ["csvsink"]
    assert TrackingConfig(extra_sinks=("a", "b")).extra_sinks == ["a", "b"]
    with pytest.raises(ValueError, match="sink plugin names"):
        TrackingConfig(extra_sinks=["ok", ""])


def test_unknown_sink_fails_before_the_run_starts(tmp_path: Path) -> None:
    """An unknown name is a CodexMLError listing the registered sinks; no run dir is made."""
    with pytest.raises(UnknownPluginError, match="registered sinks: alerts, mlflow, prometheus, tensorboard, wandb") as error:
        start_run("r", output_root=str(tmp_path), extra_sinks=["nope"])
    assert isinstance(error.value, CodexMLError)
    assert not (tmp_path / "r").exists()


def test_builtin_names_are_their_enable_flags() -> None:
    """--sink tensorboard is --enable-tensorboard (given twice, still one sink)."""
    sinks = build_sinks(TrackingConfig(extra_sinks=["tensorboard", "tensorboard"], enable_tensorboard=True))
    assert [s.name for s in sinks] == ["tensorboard"]
    with pytest.raises(PluginError, match="--prometheus-port"):
        build_sinks(TrackingConfig(extra_sinks=["prometheus"]))


@pytest.mark.usefixtures("sink_plugins")
def test_plugin_sink_receives_a_real_run(tmp_path: Path) -> None:
    """A plugin sink named in extra_sinks gets every metric and the close status."""
    with start_run("plugged", output_root=str(tmp_path), flush_interval=0.05, extra_sinks=["jsonsink"]) as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    lines = [json.loads(line) for line in (tmp_path / "plugged" / "plugin.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines[:-1]] == [0, 1, 2, 3, 4]
    assert lines[-1] == {"status": "FINISHED"}
    assert "jsonsink" in run.sink_names


@pytest.mark.usefixtures("sink_plugins")
def test_plugin_sinks_are_given_the_config() -> None:
    """from_config() is preferred; a `config` parameter receives the TrackingConfig."""
    config = TrackingConfig(extra_sinks=["configured", "jsonsink"], mlflow_experiment="exp-7")
    configured, jsonsink = build_sinks(config)
    assert configured.experiment == "exp-7"
    assert jsonsink.config is config and jsonsink.name == "jsonsink"  # default name replaced


@pytest.mark.usefixtures("sink_plugins")
@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("duck", PluginError, "sink plugin 'duck': an object of type object is not a Sink and lacks start"),
        ("failing", PluginError, "sink plugin 'failing' could not be created: RuntimeError: backend refused"),
    ],
    ids=["not-a-sink", "raises"],
)
def test_bad_plugin_sinks_fail_clearly(name: str, error: type[Exception], message: str) -> None:
    """A factory returning a non-sink, or raising, is named in the error."""
    with pytest.raises(error, match=message):
        build_sinks(TrackingConfig(extra_sinks=[name]))


def test_broken_installed_sink_fails_with_its_reason(plugin_site: Path, on_path: Callable[[Path], None]) -> None:
    """Asking for a broken installed sink raises PluginLoadError with the import failure."""
    on_path(plugin_site)
    with pytest.raises(PluginLoadError, match="codex_no_such_dependency"):
        build_sinks(TrackingConfig(extra_sinks=["broken_import"]))
