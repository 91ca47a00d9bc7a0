"""Every plugin group is used by a job: the pip-installed sample plugin's collector, tokenizer,
model, dataset, pipeline stage and health rule are selected by name from a config and leave their mark in
the run's files; an unknown name stops the job before anything is written, listing the names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_ml.plugins.registry import UnknownPluginError

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "training" / "tiny.yaml")
FAST = ["training.max_steps=4", "training.eval_interval=2", "training.checkpoint_interval=2",
        "training.sample_tokens=8", "training.eval_batches=1", "training.histogram_interval=2"]  # fmt: skip


def _train_model(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``codex-ml train-model`` in a subprocess that finds the plugins installed in ``site``."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "codex_ml.cli", "train-model", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def plugin_run(plugin_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real train-model job using the sample plugin's dataset, tokenizer, model and collector,
    then a --resume of it (which must find the plugin tokenizer again)."""
    root = tmp_path_factory.mktemp("plugin-run")
    first = _train_model(plugin_site, root, "--config", TINY, "--output-root", str(root), "--run-name", "p",
                         "--no-progress", "--system-metrics", "--system-metrics-interval", "0.1",
                         "data.dataset=abc", "data.tokenizer=reserved_chars", "model.name=sample_gpt",
                         "system_metrics.collectors=[ticks,load]", "health.loss_above.threshold=0.0", *FAST,
                         "training.stop_after_steps=2")  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = _train_model(plugin_site, root, "--resume", str(root / "p"), "--no-progress")
    assert second.returncode == 0, second.stderr
    return root / "p"


def _params(run: Path) -> dict:
    return json.loads((run / "params.json").read_text())


def test_health_rule_plugin_watches_the_run(plugin_run: Path) -> None:
    """health.loss_above.threshold=0: the plugin rule (not a built-in) fired once, live, in the first
    session (the resumed session's new rule object fires again: a rule's state is per session)."""
    events = [json.loads(line) for line in (plugin_run / "events.ndjson").read_text().splitlines()]
    fired = [e for e in events if e["rule"] == "loss_above"]
    assert [e["step"] for e in fired] == [1, 3] and fired[0]["threshold"] == 0.0
    assert json.loads((plugin_run / "summary.json").read_text())["health"]["by_rule"]["loss_above"] == 2


def test_dataset_plugin_feeds_the_run(plugin_run: Path) -> None:
    """data.dataset=abc: the tokenizer was trained on the plugin's text (only a, b, c, space)."""
    saved = json.loads((plugin_run / "tokenizer" / "tokenizer.json").read_text())
    assert set(saved["chars"]) == {"\x00", "\n", " ", "a", "b", "c"}
    assert _params(plugin_run)["data.dataset"] == "abc"


def test_tokenizer_plugin_is_trained_saved_and_reloaded(plugin_run: Path) -> None:
    """data.tokenizer=reserved_chars: the run's tokenizer file is the plugin's, id 0 reserved,
    and the resumed session loaded it (the run finished both sessions)."""
    saved = json.loads((plugin_run / "tokenizer" / "tokenizer.json").read_text())
    assert saved["type"] == "reserved_chars" and saved["chars"][0] == "\x00"
    assert _params(plugin_run)["model.vocab_size"] == 6
    state = json.loads((plugin_run / "run.json").read_text())
    assert state["status"] == "FINISHED" and len(state["sessions"]) == 2


def test_model_plugin_is_the_model_trained(plugin_run: Path) -> None:
    """model.name=sample_gpt: params.json names the plugin's class, and the loss was logged."""
    params = _params(plugin_run)
    assert params["model.name"] == "sample_gpt" and params["model.class"] == "SampleGPT"
    steps = [json.loads(line) for line in (plugin_run / "metrics.ndjson").read_text().splitlines()]
    assert any("train/loss" in record.get("metrics", {}) for record in steps)


def test_collector_plugin_writes_its_group(plugin_run: Path) -> None:
    """system_metrics.collectors=[ticks,load]: each sample holds exactly those groups."""
    samples = [json.loads(line) for line in (plugin_run / "checkpoints" / "system_metrics.jsonl").read_text().splitlines()]
    assert samples
    for sample in samples:
        groups = set(sample) - {"v", "time", "sample", "rank"}
        assert groups == {"ticks", "load"}, groups
        assert sample["ticks"]["count"] >= 1


def test_pipeline_stage_plugin_runs_in_the_pipeline(plugin_site: Path, on_path: Callable[[Path], None],
                                                    tmp_path: Path) -> None:  # fmt: skip
    """stages=[..., token_count]: the plugin stage runs after the built-ins, logs its metric
    under its own prefix and is recorded in summary.json. The pipeline also trains the plugin
    tokenizer (tokenizer=reserved_chars) and runs every built-in stage on the plugin model (model.name)."""
    from codex_ml.pipeline.config import PipelineConfig, apply_overrides, load_config_file
    from codex_ml.pipeline.example_data import ExampleSpec, write_example_data
    from codex_ml.pipeline.runner import run_pipeline

    on_path(plugin_site)
    data = write_example_data(tmp_path / "data", ExampleSpec(corpus_docs=40, demos=60, prefs=80, seed=7))
    values = load_config_file(REPO / "configs" / "pipeline" / "tiny.yaml")
    values.update({name: str(path) for name, path in data.items()}, output_dir=str(tmp_path / "out"))
    overrides = ["stages=[pretrain,sft,reward,preference,token_count]", "tokenizer=reserved_chars",
                 "model.name=sample_gpt"]
    summary = run_pipeline(PipelineConfig.from_mapping(apply_overrides(values, overrides)), progress=False)
    record = summary["stages"]["token_count"]
    assert record["status"] == "trained" and record["metrics"]["corpus_tokens"] > 0
    logged = [json.loads(line) for line in (tmp_path / "out" / "metrics.ndjson").read_text().splitlines()]
    values_logged = [r["metrics"]["token_count/corpus_tokens"] for r in logged if "token_count/corpus_tokens" in r.get("metrics", {})]
    assert values_logged == [record["metrics"]["corpus_tokens"]]
    assert json.loads((tmp_path / "out" / "tokenizer.json").read_text())["type"] == "reserved_chars"
    assert [summary["stages"][s]["status"] for s in ("M0", "M1", "RM", "M2")] == ["trained"] * 4


@pytest.mark.parametrize(("override", "group"), [
    ("data.tokenizer=nope", "tokenizers"), ("model.name=nope", "models"), ("data.dataset=nope", "datasets"),
    ("system_metrics.collectors=[cpu,nope]", "system_metric_collectors"),
])  # fmt: skip
def test_unknown_name_in_a_training_config_lists_the_registered_ones(override: str, group: str) -> None:
    """validate_config refuses an unregistered name with the registered ones, as one ConfigError."""
    from codex_ml.training.config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert f"unknown {group} plugin 'nope'" in str(caught.value)
    assert {"tokenizers": "bpe, char", "models": "gpt", "datasets": "corpus, sample",
            "system_metric_collectors": "cpu, disk, gpu"}[group] in str(caught.value)  # fmt: skip


def test_unknown_pipeline_stage_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """An unregistered stage name is a PipelineConfigError listing the registered stages."""
    from codex_ml.pipeline.config import PipelineConfig, PipelineConfigError

    with pytest.raises(PipelineConfigError) as caught:
        PipelineConfig.from_mapping({"stages": ["pretrain", "sft", "reward", "preference", "nope"],
                                     "output_dir": str(tmp_path / "out")})  # fmt: skip
    assert "unknown pipeline_stages plugin 'nope'" in str(caught.value) and "preference, pretrain" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_unknown_model_stops_train_model_before_the_run_directory(plugin_site: Path, tmp_path: Path) -> None:
    """train-model model.name=nope: exit 2, one error line naming the installed plugin model, no run dir."""
    done = _train_model(plugin_site, tmp_path, "--config", TINY, "--output-root", str(tmp_path / "runs"),
                        "--run-name", "x", "--no-progress", "model.name=nope")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "unknown models plugin 'nope'" in done.stderr and "sample_gpt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()


def test_registry_error_is_a_codexml_error() -> None:
    """The error every unknown name ends in is a CodexMLError (exit 2, one line)."""
    from codex_ml.errors import CodexMLError

    assert issubclass(UnknownPluginError, CodexMLError)
