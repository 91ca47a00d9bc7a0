"""A run moved aside (``demo`` -> ``demo.<ts>``) or copied by hand keeps its MLflow artifacts.

MLflow's file store keeps absolute ``artifact_location``/``artifact_uri`` values in its
meta.yaml files; these tests use the real MLflow library to read a moved and a copied store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from codex_ml.cli.demo_command import archive_existing_run
from codex_ml.tracking import start_run
from codex_ml.tracking.config import TrackingConfig
from codex_ml.tracking.relocate import relocate_run_dir, repair_moved_store


def _mlflow_run_with_artifact(root: Path, name: str = "demo") -> str:
    root.mkdir(parents=True, exist_ok=True)
    note = root / "note.txt"
    note.write_text("hello artifacts\n")
    with start_run(name, output_root=root, flush_interval=0.05, enable_mlflow=True) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_artifact(note)
    return json.loads((run.paths.run_file).read_text())["backends"]["mlflow"]["run_id"]


def _assert_artifact_readable(mlruns: Path, run_id: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=mlruns.as_uri())
    listed = [item.path for item in client.list_artifacts(run_id)]
    assert listed == ["note.txt"]
    target = tmp_path / f"download-{len(list(tmp_path.iterdir()))}"
    target.mkdir()
    local = client.download_artifacts(run_id, "note.txt", str(target))
    assert Path(local).read_text() == "hello artifacts\n"


def test_moving_a_run_aside_keeps_its_mlflow_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's two 'Try it' lines: the second demo moves runs/demo aside; its MLflow store still
    lists and downloads the artifact, and nothing in it points at the old path."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    run_id = _mlflow_run_with_artifact(root)
    moved = archive_existing_run(TrackingConfig(output_root=str(root)), "demo")
    assert moved is not None and not (root / "demo").exists()
    _assert_artifact_readable(moved / "mlruns", run_id, tmp_path)
    for meta in (moved / "mlruns").rglob("meta.yaml"):
        assert str(root / "demo") + "/" not in meta.read_text(), meta
    backend = json.loads((moved / "run.json").read_text())["backends"]["mlflow"]
    assert backend["tracking_uri"] == (moved / "mlruns").as_uri()


def test_relocate_rewrites_only_locations_under_the_old_path(tmp_path: Path) -> None:
    """A location elsewhere (another store, a server, a sibling whose name shares a prefix) is kept."""
    mlruns = tmp_path / "new" / "mlruns" / "1"
    mlruns.mkdir(parents=True)
    old = tmp_path / "old"
    meta = mlruns / "meta.yaml"
    lines = [f"artifact_location: {(old / 'mlruns' / '1').as_uri()}", f"other: {(tmp_path / 'old2' / 'x').as_uri()}",
             "name: codex_ml"]
    meta.write_text("\n".join(lines) + "\n")
    changed = relocate_run_dir(old, tmp_path / "new")
    text = meta.read_text()
    assert changed == 1
    assert f"artifact_location: {(tmp_path / 'new' / 'mlruns' / '1').as_uri()}" in text
    assert (tmp_path / "old2" / "x").as_uri() in text and "name: codex_ml" in text


def test_a_run_copied_by_hand_is_repaired_when_read(tmp_path: Path) -> None:
    """``cp -r runs/demo runs/copy``: the copy's store names the original's artifacts until a reader
    repairs it; then it lists its own artifacts, and the original is untouched."""
    root = tmp_path / "runs"
    run_id = _mlflow_run_with_artifact(root)
    copy = root / "copy"
    shutil.copytree(root / "demo", copy)
    for artifacts in (root / "demo" / "mlruns").rglob("artifacts"):
        shutil.rmtree(artifacts)  # the original's files gone: the copy must not depend on them
    assert MlflowClient(tracking_uri=(copy / "mlruns").as_uri()).list_artifacts(run_id) == []  # the defect
    assert repair_moved_store(copy) >= 2  # experiment + run meta.yaml
    _assert_artifact_readable(copy / "mlruns", run_id, tmp_path)
    assert repair_moved_store(copy) == 0  # idempotent


def test_replay_into_mlflow_repairs_a_copied_run_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``monitoring export COPY --to mlflow`` repairs the copy's store and run.json before it reads them:
    it finds the copied MLflow run (nothing to send) in the copy's own store, never the original's."""
    from codex_ml.monitoring.replay import replay

    root = tmp_path / "runs"
    run_id = _mlflow_run_with_artifact(root)
    copy = root / "copy"
    shutil.copytree(root / "demo", copy)
    shutil.rmtree(root / "demo")
    result = replay(copy, "mlflow", progress=False)
    assert result.sent == 0 and result.already_there == 1
    assert (copy / "mlruns").as_uri() in result.target
    backend = json.loads((copy / "run.json").read_text())["backends"]["mlflow"]
    assert backend["tracking_uri"] == (copy / "mlruns").as_uri()
    _assert_artifact_readable(copy / "mlruns", run_id, tmp_path)


def test_resuming_a_copied_run_repairs_its_store(tmp_path: Path) -> None:
    """``--resume`` of a hand copy back-fills MLflow through replay, which re-anchors the copy's store first:
    the resumed session's artifact lands in the copy's own store, and the original is left as it was."""
    root = tmp_path / "runs"
    run_id = _mlflow_run_with_artifact(root)
    original_meta = {p: p.read_text() for p in (root / "demo" / "mlruns").rglob("meta.yaml")}
    shutil.copytree(root / "demo", root / "copy")
    second = root / "second.txt"
    second.write_text("second session\n")
    with start_run("copy", output_root=root, resume=True, flush_interval=0.05, enable_mlflow=True) as run:
        run.log_artifact(second)
    client = MlflowClient(tracking_uri=(root / "copy" / "mlruns").as_uri())
    assert sorted(item.path for item in client.list_artifacts(run_id)) == ["note.txt", "second.txt"]
    assert {p: p.read_text() for p in (root / "demo" / "mlruns").rglob("meta.yaml")} == original_meta
    assert not list((root / "demo" / "mlruns").rglob("second.txt"))


def test_mlflow_viewer_of_a_copied_run_opens_the_copys_store(tmp_path: Path) -> None:
    """``monitoring ui COPY --mlflow`` must serve the copy's own store (with its own artifacts),
    not the original's that run.json and meta.yaml still name."""
    from codex_ml.monitoring.ui import _mlflow_command

    root = tmp_path / "runs"
    run_id = _mlflow_run_with_artifact(root)
    copy = root / "copy"
    shutil.copytree(root / "demo", copy)
    shutil.rmtree(root / "demo")
    command, _env, fragment = _mlflow_command(copy, "127.0.0.1", 0)
    assert command[command.index("--backend-store-uri") + 1] == (copy / "mlruns").as_uri()
    assert run_id in fragment
    _assert_artifact_readable(copy / "mlruns", run_id, tmp_path)
