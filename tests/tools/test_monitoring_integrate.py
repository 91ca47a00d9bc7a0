"""tools/monitoring_integrate.py: a real training job streamed to every sink, read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codex_ml.rundir.reader import metric_series
from codex_ml.backends.wandb import find_run_files, read_history

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "monitoring_integrate.py"


def _run_tool(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOOL), "--steps", "60", "--no-progress", "--output-root", str(tmp_path), *flags]
    full_env = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.pop("MLFLOW_ALLOW_FILE_STORE", None)  # the tool must handle the file store itself
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=full_env, cwd=tmp_path)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp_path = tmp_path_factory.mktemp("integrate")
    out = _run_tool(tmp_path, "--run-name", "demo", "--enable-tensorboard", "--enable-mlflow", "--enable-wandb",
                    env={"WANDB_MODE": "offline", "WANDB_PROJECT": "myproj"})
    assert out.returncode == 0, out.stderr
    return tmp_path / "demo", out


def test_model_learns_and_ndjson_has_every_step(demo_run) -> None:
    """train/loss is logged at every step 1..60 and validation loss falls."""
    run_dir, _ = demo_run
    series = metric_series(run_dir / "metrics.ndjson")
    assert [s for s, _ in series["train/loss"]] == list(range(1, 61))
    val = [v for _, v in series["val/loss"]]
    assert val[-1] < val[0] - 0.3


def test_tensorboard_has_scalars_and_histograms(demo_run) -> None:
    """TensorBoard's own reader sees the loss curve and weight histograms."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = demo_run
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    assert len(acc.Scalars("train/loss")) == 60
    assert any(tag.startswith("weights/") for tag in acc.Tags()["histograms"])


def test_mlflow_has_metrics_params_and_finished_status(demo_run) -> None:
    """The local MLflow store (runs/demo/mlruns) holds the run, read with MlflowClient."""
    from mlflow.tracking import MlflowClient

    run_dir, _ = demo_run
    backend = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    assert backend["tracking_uri"] == (run_dir / "mlruns").resolve().as_uri()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(backend["tracking_uri"])
    run = client.get_run(backend["run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(backend["run_id"], "train/loss")) == 60
    assert run.data.params["steps"] == "60"


def test_wandb_offline_run_has_history(demo_run) -> None:
    """W&B wrote an offline run in the run dir, project from WANDB_PROJECT, all steps present."""
    run_dir, _ = demo_run
    files = find_run_files(run_dir)
    assert len(files) == 1
    rows = [r for r in read_history(files[0]) if "train/loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert json.loads((run_dir / "run.json").read_text())["backends"]["wandb"]["project"] == "myproj"


def test_prints_where_everything_went(demo_run) -> None:
    """The tool tells the user how to view each sink."""
    _, out = demo_run
    assert "tensorboard --logdir" in out.stdout
    assert "mlflow ui --backend-store-uri" in out.stdout
    assert "wandb sync" in out.stdout


def test_rerun_moves_the_earlier_run_aside(tmp_path: Path) -> None:
    """Running again with the same name keeps the earlier run under a new name."""
    first = _run_tool(tmp_path, "--run-name", "again")
    assert first.returncode == 0, first.stderr
    second = _run_tool(tmp_path, "--run-name", "again")
    assert second.returncode == 0, second.stderr
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("again.")]
    assert len(moved) == 1 and (moved[0] / "metrics.ndjson").exists()
    assert "moved to" in second.stdout


def test_missing_package_names_the_extra(tmp_path: Path) -> None:
    """Asking for a sink whose package is absent fails at start with the pip extra."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # A sitecustomize that blocks the import machinery from finding wandb: a real missing package.
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'wandb' or name.startswith('wandb.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(hide), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    earlier = tmp_path / "nowandb"
    earlier.mkdir()
    (earlier / "metrics.ndjson").write_text("")  # an earlier run of that name
    out = _run_tool(tmp_path, "--run-name", "nowandb", "--enable-wandb", env=env)
    assert out.returncode == 2
    assert "pip install 'codex-ml[wandb]'" in out.stderr
    # The missing package is found before anything is touched: the earlier run is not moved aside.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("nowandb")) == ["nowandb"]
    assert (earlier / "metrics.ndjson").exists()


def _psutil_blocker(tmp_path: Path) -> Path:
    """A sitecustomize that makes `import psutil` fail, as on a machine without it."""
    hide = tmp_path / "nopsutil"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'psutil' or name.startswith('psutil.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return hide


def test_system_metrics_auto_records_samples_and_forwards_them(tmp_path: Path) -> None:
    """--system-metrics (no value = AUTO) writes <checkpoint_dir>/system_metrics.jsonl (the run
    dir here) and forwards samples to TensorBoard as system/* scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = _run_tool(tmp_path, "--run-name", "sys", "--enable-tensorboard", "--system-metrics",
                    "--system-metrics-interval", "0.2")
    assert out.returncode == 0, out.stderr
    samples = [json.loads(line) for line in (tmp_path / "sys" / "system_metrics.jsonl").read_text().splitlines()]
    assert samples and all(0.0 <= s["cpu"]["percent"] <= 100.0 for s in samples)
    acc = EventAccumulator(str(tmp_path / "sys" / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    assert any(tag.startswith("system/") for tag in acc.Tags()["scalars"])


def test_training_goes_on_without_psutil(tmp_path: Path) -> None:
    """With psutil not importable, --system-metrics prints one [monitoring-error] line and the
    training job still finishes with every step logged."""
    env = {"PYTHONPATH": os.pathsep.join([str(_psutil_blocker(tmp_path)), str(ROOT / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    out = _run_tool(tmp_path, "--run-name", "nopsutil", "--system-metrics", "AUTO", env=env)
    assert out.returncode == 0, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1 and "psutil is not installed" in errors[0] and "codex-ml[system]" in errors[0]
    series = metric_series(tmp_path / "nopsutil" / "metrics.ndjson")
    assert [s for s, _ in series["train/loss"]] == list(range(1, 61))
    assert not (tmp_path / "nopsutil" / "system_metrics.jsonl").exists()
