"""Every entry point answers an out-of-range flag value with one ``error:`` line and exit status 2.

Table-driven over (entry point, flag, bad value). Most cases call each entry point's ``main``
in this process (its argument parsing and config checks run exactly as in a real process, and
no case gets as far as importing a training backend); a handful of real subprocesses then
prove the end-to-end path prints no traceback. In every case nothing is written: no run
directory under the output root, no ``--output-dir``, nothing in the working directory.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_ml.tracking.flags import TRACKING_FLAGS

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "monitoring_integrate.py"
DEPLOY = REPO / "deploy" / "deploy_codex_pipeline.py"
BASE_YAML = REPO / "configs" / "training" / "base.yaml"
TINY_PIPELINE = REPO / "configs" / "pipeline" / "tiny.yaml"
PIPELINE_DATA = {name: REPO / "data" / "pipeline" / f"{name}.jsonl" for name in ("corpus", "demos", "prefs")}

#: An out-of-range (or unparsable) value for every value-taking tracking flag.
TRACKING_BAD: list[tuple[str, ...]] = [
    ("--prometheus-port", "70000"), ("--prometheus-port", "-5"), ("--prometheus-port", "abc"),
    ("--system-metrics-interval", "-1"), ("--system-metrics-interval", "nan"), ("--system-metrics-interval", "inf"),
    ("--system-metrics", ""),
    ("--mlflow-tracking-uri", ""), ("--mlflow-tracking-uri", "bogus://x"),
    ("--mlflow-experiment", ""),
    ("--prometheus-addr", "no such host"), ("--prometheus-addr", "999.1.1.1"),
    ("--prometheus-pushgateway", "ftp://gateway:9091"), ("--prometheus-pushgateway", ""),
    ("--alert-webhook", "ftp://hooks.example.com/x"), ("--alert-webhook", ""),
    ("--alert-command", "no-such-program-xyz"), ("--alert-command", "'unbalanced"),
    ("--sink", "nosuch"), ("--sink", ""),
    ("--system-metrics-collector", "nosuch"), ("--system-metrics-collector", ""),
    ("--run-name", "../x"), ("--run-name", ""),
    ("--output-root", ""),
]
# A switch given a value is refused by the parser (argparse and click alike).
TRACKING_BAD += [(f"{flag.names[0]}=yes",) for flag in TRACKING_FLAGS if flag.is_switch]
#: Flags the pipeline does not take: its run directory is --output-dir.
NOT_IN_PIPELINE = ("--run-name", "--output-root")

#: Stands for a corpus file of a few characters, written by the test (valid JSONL, too short to train on).
SHORT_CORPUS = "<short corpus>"

#: Bad values of each entry point's own flags and key=value overrides.
OWN_BAD: dict[str, list[tuple[str, ...]]] = {
    "tools": [("--steps", "0"), ("--steps", "x")],
    "demo": [("--steps", "0"), ("--steps", "x")],
    "train-model": [
        ("--config", "/nonexistent/base.yaml"), ("--resume", "/nonexistent/run"), ("training.max_steps=0",),
        ("training.beta1=2",), ("training.beta2=-1",), ("training.seed=-1",), ("model.dropout=.nan",),
        ("system_metrics.interval=.inf",), ("tracking.histogram_bins=0",), ("no-equals-sign",),
        ("model.block_size=20000",),  # longer than the validation split: found at the first eval, before the fix
        ("model.name=nosuch",), ("data.tokenizer=nosuch",), ("data.dataset=nosuch",),  # unregistered plugin names
    ],
    "hydra": [
        ("training.max_steps=0",), ("training.beta1=2",), ("tracking.prometheus_port=70000",),
        ("training=nosuch",), ("pipeline=nosuch",), ("=x",), ("model.n_layer=[1,",), ("++model.n_layer=${nosuch}",),
    ],
    "deploy": [
        ("--seed", "-1"), ("--seed", "x"), ("--method", "ppo"), ("--config", "/nonexistent.yaml"),
        ("--corpus", "/nonexistent.jsonl"), ("--demos", "/nonexistent.jsonl"), ("--prefs", "/nonexistent.jsonl"),
        ("sft.steps=0",), ("model.n_layer=0",), ("model.n_embd=15",), ("pretrain.batch_size=0",),
        ("preference.temperature=0",), ("reward.lr=-1",), ("model.dropout=1.5",), ("preference.eval_prompts=0",),
        ("stages=[pretrain,sft,reward,preference,nosuch]",), ("stages=[sft,pretrain,reward,preference]",),
        ("--corpus", SHORT_CORPUS),  # too short for one window: found only once M0 started, before the fix
    ],
}

ERROR_LINE = re.compile(r"^([^:\n]+: )?error: ", re.IGNORECASE)


def _load_script(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _exit_code(call: Callable[[], object]) -> int:
    try:
        result = call()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return result if isinstance(result, int) else 0


def _tools(root: Path, bad: tuple[str, ...]) -> int:
    main = _load_script(TOOL).main
    return _exit_code(lambda: main(["--steps", "2", "--no-progress", "--output-root", str(root / "runs"), *bad]))


def _typer(command: list[str]) -> Callable[[Path, tuple[str, ...]], int]:
    def run(root: Path, bad: tuple[str, ...]) -> int:
        from codex_ml.cli.__main__ import main

        return _exit_code(lambda: main([*command, "--no-progress", "--output-root", str(root / "runs"), *bad]))

    return run


def _hydra(root: Path, bad: tuple[str, ...]) -> int:
    from codex_ml.cli.main import main

    argv = [f"tracking.output_root={root / 'runs'}", "training.max_steps=2", *bad]
    saved = sys.argv[:]
    try:
        return _exit_code(lambda: main(argv))
    finally:
        sys.argv = saved


def _deploy(root: Path, bad: tuple[str, ...]) -> int:
    main = _load_script(DEPLOY).main
    if SHORT_CORPUS in bad:
        short = root / "inputs" / "short.jsonl"
        short.parent.mkdir()
        short.write_text('"ab"\n', encoding="utf-8")
        bad = tuple(str(short) if arg == SHORT_CORPUS else arg for arg in bad)
    inputs = [arg for name, path in PIPELINE_DATA.items() for arg in (f"--{name}", str(path))]
    argv = ["--config", str(TINY_PIPELINE), *inputs, "--output-dir", str(root / "runs" / "out"), "--no-progress", *bad]
    return _exit_code(lambda: main(argv))


ENTRY_POINTS: dict[str, Callable[[Path, tuple[str, ...]], int]] = {
    "tools": _tools,
    "demo": _typer(["demo", "--steps", "2"]),
    "train-model": _typer(["train-model", "--config", str(BASE_YAML), "training.max_steps=2"]),
    "hydra": _hydra,
    "deploy": _deploy,
}

CASES = [
    pytest.param(entry, bad, id=f"{entry}:{' '.join(bad) or repr('')}")
    for entry in ENTRY_POINTS
    for bad in [*(b for b in TRACKING_BAD if not (entry == "deploy" and b[0] in NOT_IN_PIPELINE)), *OWN_BAD[entry]]
]


def assert_one_error_line(stderr: str, where: str) -> None:
    """No traceback; exactly one line is an ``error:`` line (argparse's ``prog: error:`` counts)."""
    assert "Traceback" not in stderr, f"{where}: traceback\n{stderr}"
    errors = [line for line in stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, f"{where}: expected one error: line, got {len(errors)}\n{stderr}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (an empty --output-root would write here) and a clean environment."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in ("MLFLOW_TRACKING_URI", "CODEX_ML_OUTPUT_ROOT", "CODEX_ML_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path


def test_every_tracking_flag_has_a_bad_value() -> None:
    """The table covers each tracking flag, so a new flag cannot skip this test."""
    covered = {bad[0].split("=")[0] for bad in TRACKING_BAD}
    assert {flag.names[0] for flag in TRACKING_FLAGS} <= covered


@pytest.mark.parametrize(("entry", "bad"), CASES)
def test_bad_value_is_one_error_line_and_exit_2(entry: str, bad: tuple[str, ...], workdir: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    """Exit status 2, one error: line, no traceback, and no run directory (nor anything else) written."""
    code = ENTRY_POINTS[entry](workdir, bad)
    err = capfd.readouterr().err
    assert code == 2, f"exit status {code}\n{err}"
    assert_one_error_line(err, entry)
    assert not (workdir / "runs").exists(), f"{entry} created {sorted(p.name for p in (workdir / 'runs').iterdir())}"
    assert list((workdir / "cwd").iterdir()) == []


def test_real_processes_print_no_traceback(tmp_path: Path) -> None:
    """The same errors from real processes (started together): exit 2, one error: line, nothing written."""
    runs = tmp_path / "runs"
    py = sys.executable
    commands = {
        "tools": [py, str(TOOL), "--prometheus-port", "70000", "--output-root", str(runs)],
        "deploy": [py, str(DEPLOY), "--system-metrics-interval", "nan", "--output-dir", str(runs / "out")],
        "hydra": [py, "-m", "codex_ml.cli.main", "--prometheus-port", "-5", f"tracking.output_root={runs}"],
        "hydra-group": [py, "-m", "codex_ml.cli.main", "training=nosuch", f"tracking.output_root={runs}"],
        "train-model": [py, "-m", "codex_ml.cli", "train-model", "--config", str(BASE_YAML),
                        "--system-metrics-interval", "-1", "--output-root", str(runs)],
        "demo": [py, "-m", "codex_ml.cli", "demo", "--steps", "0", "--output-root", str(runs)],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CODEX_ML_CONFIG_DIR")}
    started = {name: subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, cmd in commands.items()}
    for name, process in started.items():
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, f"{name}: exit status {process.returncode}\n{err}"
        assert_one_error_line(err, name)
    assert not runs.exists()
