"""The plugin registry: built-ins, entry points loaded lazily, API version and type checks,
and broken plugins reported one by one without breaking the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_ml.errors import CodexMLError, MissingExtraError
from codex_ml.plugins import GROUPS, PluginLoadError, PluginSpec, Registry, UnknownGroupError, UnknownPluginError
from codex_ml.plugins.registry import ERROR, MISSING_EXTRA, OK, PLANNED, PluginError

SINK_PLUGIN = """
    from codex_ml.rundir.sink import Sink
    CODEX_ML_PLUGIN_API = 1

    class GoodSink(Sink):
        '''A sink that keeps what it is given.'''
        name = "good"
"""


def test_builtins_cover_the_groups_and_listing_imports_nothing(tmp_path: Path) -> None:
    """Every group has built-ins; listing them imports no plugin module."""
    code = (
        "import json, sys\n"
        "from codex_ml.plugins import Registry\n"
        "specs = Registry().specs()\n"
        "loaded = [s.module for s in specs if s.module in sys.modules]\n"
        "print(json.dumps({'groups': sorted({s.group for s in specs}), 'loaded': loaded,\n"
        "                  'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"groups": sorted(GROUPS), "loaded": [], "torch": False}


def test_fresh_checkout_diagnoses_clean() -> None:
    """With only the built-ins installed nothing is broken, and the known ones really load."""
    registry = Registry()
    statuses = registry.diagnose()
    assert [s.spec.name for s in statuses if s.failed] == []
    assert {s.state for s in statuses} <= {OK, PLANNED, MISSING_EXTRA}
    from codex_ml.data.char_tokenizer import CharTokenizer
    from codex_ml.backends.tensorboard import TensorBoardSink

    assert registry.load("tokenizers", "char") is CharTokenizer
    assert registry.load("sinks", "tensorboard") is TensorBoardSink
    assert registry.load("sinks", "tensorboard") is registry.load("sinks", "tensorboard")  # loaded once


def test_unknown_group_and_name_list_what_exists() -> None:
    """Unknown groups and names raise CodexMLErrors that list the valid choices."""
    registry = Registry()
    with pytest.raises(UnknownGroupError, match="system_metric_collectors") as group_error:
        registry.specs("sink")
    assert isinstance(group_error.value, CodexMLError)
    with pytest.raises(UnknownPluginError, match="mlflow, prometheus, tensorboard, wandb"):
        registry.load("sinks", "nope")
    assert registry.names("system-metric-collectors") == registry.names("system_metric_collectors")


def test_planned_builtin_is_not_an_error_until_its_module_exists(tmp_path: Path, on_path: Callable[[Path], None]) -> None:
    """A planned entry is PLANNED while its module is absent; once written it is checked for real."""
    registry = Registry(builtins=[
        PluginSpec("pipeline_stages", "absent", "codex_test_planned_absent:Stage", planned=True),
        PluginSpec("pipeline_stages", "half", "codex_test_planned_half:Stage", planned=True),
    ], discover=False)  # fmt: skip
    (tmp_path / "codex_test_planned_half.py").write_text("OTHER = 1\n")
    on_path(tmp_path)
    absent, half = registry.diagnose()
    assert (absent.state, absent.failed) == (PLANNED, False)
    assert "not written yet" in absent.detail
    assert half.state == ERROR and "has no attribute 'Stage'" in half.detail
    with pytest.raises(PluginLoadError, match="planned"):
        registry.load("pipeline_stages", "absent")


def test_missing_extra_names_the_install_command(tmp_path: Path, on_path: Callable[[Path], None]) -> None:
    """A built-in whose optional package is missing is MISSING_EXTRA (not a failure); load raises
    MissingExtraError with the pip command."""
    (tmp_path / "codex_test_needs_extra.py").write_text("import codex_no_such_backend\nclass Model: pass\n")
    on_path(tmp_path)
    registry = Registry(builtins=[
        PluginSpec("models", "fancy", "codex_test_needs_extra:Model", requires=("codex_no_such_backend", "fancy")),
    ], discover=False)  # fmt: skip
    (status,) = registry.diagnose()
    assert (status.state, status.failed) == (MISSING_EXTRA, False)
    with pytest.raises(MissingExtraError, match=r"pip install 'codex-ml\[fancy\]'"):
        registry.load("models", "fancy")


def test_entry_point_plugin_is_loaded_lazily(make_dist: Callable[..., Path]) -> None:
    """Discovery reads metadata only; the plugin module is imported on first load."""
    make_dist("codex-test-good", {"codex_ml.sinks": {"good": "codex_test_good_sink:GoodSink"}},
              {"codex_test_good_sink": SINK_PLUGIN})  # fmt: skip
    registry = Registry()
    spec = registry.spec("sinks", "good")
    assert (spec.target, spec.source) == ("codex_test_good_sink:GoodSink", "codex-test-good 1.0")
    assert "codex_test_good_sink" not in sys.modules
    status = registry.status("sinks", "good")
    assert (status.state, status.api_version) == (OK, 1)
    assert status.obj.__name__ == "GoodSink" and "codex_test_good_sink" in sys.modules


@pytest.mark.parametrize(
    ("declaration", "expected"),
    [
        ("", "declares no plugin API version"),
        ("CODEX_ML_PLUGIN_API = 2", "written for plugin API 2; this codex_ml supports 1"),
        ("CODEX_ML_PLUGIN_API = '1'", "written for plugin API '1'"),
    ],
    ids=["missing", "newer", "string"],
)
def test_api_version_mismatch_is_reported(make_dist: Callable[..., Path], declaration: str, expected: str) -> None:
    """A third-party plugin must declare a supported integer API version."""
    make_dist("codex-test-api", {"codex_ml.tokenizers": {"tok": "codex_test_api_tok:Tok"}},
              {"codex_test_api_tok": f"{declaration}\nclass Tok:\n    pass\n"})  # fmt: skip
    status = Registry().status("tokenizers", "tok")
    assert status.failed and expected in status.detail


def test_api_version_on_the_object_wins_over_the_module(make_dist: Callable[..., Path]) -> None:
    """The version may be declared on the plugin object itself."""
    source = "CODEX_ML_PLUGIN_API = 0\nclass Tok:\n    CODEX_ML_PLUGIN_API = 1\n"
    make_dist("codex-test-objapi", {"codex_ml.tokenizers": {"tok": "codex_test_objapi:Tok"}}, {"codex_test_objapi": source})
    assert Registry().status("tokenizers", "tok").state == OK


@pytest.mark.parametrize(
    ("group", "source", "expected"),
    [
        ("sinks", "class Thing:\n    def start(self, run): pass\n", "lacks write_metrics"),
        ("system_metric_collectors", "class Thing:\n    pass\n", "not a codex_ml.monitoring.collectors.Collector"),
        ("models", "Thing = 42\n", "is not callable"),
    ],
    ids=["sink", "collector", "model"],
)
def test_wrong_type_is_reported(make_dist: Callable[..., Path], group: str, source: str, expected: str) -> None:
    """Each group checks what its plugins are."""
    make_dist("codex-test-type", {f"codex_ml.{group}": {"thing": "codex_test_type_thing:Thing"}},
              {"codex_test_type_thing": "CODEX_ML_PLUGIN_API = 1\n" + source})  # fmt: skip
    status = Registry().status(group, "thing")
    assert status.failed and "wrong type" in status.detail and expected in status.detail


def test_installed_broken_package_is_reported_while_others_work(plugin_site: Path, on_path: Callable[[Path], None]) -> None:
    """The pip-installed broken package: every kind of failure shows up, each on its own,
    and the sample plugin and the built-ins still load."""
    on_path(plugin_site)
    registry = Registry()
    by_name = {(s.spec.group, s.spec.name, s.spec.source.split()[0]): s for s in registry.diagnose()}
    broken = "codex-broken-plugin"
    expected = {
        ("sinks", "broken_import"): "No module named 'codex_no_such_dependency'",
        ("sinks", "not_a_sink"): "lacks start, write_metrics",
        ("sinks", "tensorboard"): "name clash",
        ("tokenizers", "old_api"): "written for plugin API 0",
        ("tokenizers", "no_api"): "declares no plugin API version",
        ("sink", "typo_group"): "unknown entry-point group 'codex_ml.sink'",
    }
    for (group, name), message in expected.items():
        status = by_name[(group, name, broken)]
        assert status.failed and message in status.detail, (group, name, status.detail)
    assert by_name[("sinks", "csvsink", "codex-sample-plugin")].state == OK
    assert [key for key, s in by_name.items() if s.failed and key[2] != broken] == []
    from codex_ml.backends.tensorboard import TensorBoardSink

    assert registry.load("sinks", "tensorboard") is TensorBoardSink  # the built-in wins the clash
    with pytest.raises(PluginLoadError, match=r"codex-broken-plugin 0\.0\.1.*codex_no_such_dependency"):
        registry.load("sinks", "broken_import")


def test_register_in_code() -> None:
    """Objects already in memory can be registered; a taken name is refused."""
    from codex_ml.rundir.sink import Sink

    class MemorySink(Sink):
        """Kept in memory."""

    registry = Registry(discover=False)
    registry.register("sinks", "memory", MemorySink)
    assert registry.load("sinks", "memory") is MemorySink
    with pytest.raises(PluginError, match="already registered"):
        registry.register("sinks", "tensorboard", MemorySink)


def test_same_distribution_twice_on_the_path_counts_once(make_dist: Callable[..., Path], tmp_path: Path,
                                                         on_path: Callable[[Path], None]) -> None:  # fmt: skip
    """A distribution found in two folders (a venv and a --target dir) is not a name clash."""
    site = make_dist("codex-test-twice", {"codex_ml.datasets": {"twice": "codex_test_twice:load"}},
                     {"codex_test_twice": "CODEX_ML_PLUGIN_API = 1\ndef load():\n    return []\n"})  # fmt: skip
    copy = tmp_path / "second-site"
    copy.mkdir()
    for item in site.iterdir():
        if item.name.endswith(".dist-info"):
            os.symlink(item, copy / item.name)
    on_path(copy)
    registry = Registry()
    assert registry.problems == [] and registry.names("datasets").count("twice") == 1
