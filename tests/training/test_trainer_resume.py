"""Resume continues a run exactly; bad input fails clearly and leaves existing runs untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.data.corpus import CorpusError
from codex_ml.tracking.run import RunExistsError
from codex_ml.training.checkpoints import CheckpointError
from codex_ml.training.components import find_resume_point
from codex_ml.training.config import load_config
from codex_ml.training.errors import ResumeError, TrainingError
from codex_ml.training.trainer import train
from trainer_helpers import records, series, snapshot, tiny_config, tracking_for

N, K = 12, 7


def _resume(run_dir: Path, *overrides: str) -> None:
    point = find_resume_point(run_dir)
    config = load_config(base=point.state["config"], overrides=list(overrides))
    train(config, config.tracking_config(), resume=point)


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    """N steps stopped at K then resumed: steps 1..N exactly once, losses identical to one go."""
    train(tiny_config(f"training.max_steps={N}"), tracking_for(tmp_path, "whole"))
    partial = train(tiny_config(f"training.max_steps={N}", f"training.stop_after_steps={K}"),
                    tracking_for(tmp_path, "parts"))
    assert not partial.finished and partial.last_step == K
    _resume(tmp_path / "parts", "training.stop_after_steps=null")
    whole, parts = series(tmp_path / "whole", "train/loss"), series(tmp_path / "parts", "train/loss")
    assert [s for s, _ in parts] == list(range(1, N + 1))
    assert parts == whole  # bit-identical floats: same batches, dropout, optimizer and schedule state
    assert series(tmp_path / "parts", "val/loss") == series(tmp_path / "whole", "val/loss")
    run = json.loads((tmp_path / "parts" / "run.json").read_text())
    assert len(run["sessions"]) == 2 and run["status"] == "FINISHED"
    assert json.loads((tmp_path / "parts" / "summary.json").read_text())["last_step"] == N


def test_resume_continues_the_tracking_backends(tmp_path: Path) -> None:
    """The resumed session writes to the same TensorBoard folder and keeps the same run id."""
    config = tiny_config("training.max_steps=6", "training.stop_after_steps=3")
    train(config, tracking_for(tmp_path, "tb", enable_tensorboard=True))
    run_id = json.loads((tmp_path / "tb" / "run.json").read_text())["run_id"]
    _resume(tmp_path / "tb")  # sinks come from the checkpoint's effective tracking config
    assert json.loads((tmp_path / "tb" / "run.json").read_text())["run_id"] == run_id
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    resumed = json.loads((tmp_path / "tb" / "run.json").read_text())
    assert len(resumed["sessions"]) == 2 and resumed["sinks"] == ["tensorboard"]
    assert [s for s, _ in series(tmp_path / "tb", "train/loss")] == list(range(1, 7))


def test_checkpoint_from_before_position_key_resumes_with_learned_positions(tmp_path: Path) -> None:
    """Checkpoints saved before model.position existed hold a position table: resume keeps it."""
    import torch

    from codex_ml.training.checkpoints import find_latest_checkpoint

    train(tiny_config("training.max_steps=6", "training.stop_after_steps=3", "model.position=learned"),
          tracking_for(tmp_path, "old"))
    latest = find_latest_checkpoint(tmp_path / "old" / "checkpoints")
    payload = torch.load(latest, weights_only=True)
    del payload["state"]["config"]["model"]["position"]  # as an older codex_ml wrote it
    torch.save(payload, latest)
    point = find_resume_point(tmp_path / "old")
    assert point.state["config"]["model"]["position"] == "learned"
    _resume(tmp_path / "old")
    assert [s for s, _ in series(tmp_path / "old", "train/loss")] == list(range(1, 7))


def test_resume_of_a_finished_run_asks_for_more_steps(tmp_path: Path) -> None:
    """Resuming a run that reached max_steps says how to train further, changing nothing."""
    train(tiny_config("training.max_steps=3"), tracking_for(tmp_path, "done"))
    before = snapshot(tmp_path / "done")
    with pytest.raises(TrainingError, match="training.max_steps"):
        _resume(tmp_path / "done")
    assert snapshot(tmp_path / "done") == before
    _resume(tmp_path / "done", "training.max_steps=5")
    assert [s for s, _ in series(tmp_path / "done", "train/loss")] == [1, 2, 3, 4, 5]


def test_resume_path_that_is_not_a_run(tmp_path: Path) -> None:
    """A missing directory, a plain directory and a run without checkpoints are refused by name."""
    with pytest.raises(ResumeError, match="no such directory"):
        find_resume_point(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(ResumeError, match="not a run directory"):
        find_resume_point(tmp_path / "plain")
    (tmp_path / "plain" / "run.json").write_text("{}")
    with pytest.raises(ResumeError, match="no checkpoint"):
        find_resume_point(tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["notes.txt", "run.json"]


def test_checkpoint_from_a_different_model_shape(tmp_path: Path) -> None:
    """Resuming with another model size names the checkpoint and the tensors; the run is untouched."""
    train(tiny_config("training.max_steps=4", "training.stop_after_steps=2"), tracking_for(tmp_path, "shape"))
    before = snapshot(tmp_path / "shape")
    with pytest.raises(CheckpointError, match=r"latest\.pt.*different model shape.*wte\.weight"):
        _resume(tmp_path / "shape", "model.n_embd=64")
    assert snapshot(tmp_path / "shape") == before


@pytest.mark.parametrize("content", [None, "", "   \n"], ids=["missing", "empty", "blank"])
def test_missing_or_empty_corpus(tmp_path: Path, content: str | None) -> None:
    """A missing or empty corpus is a CorpusError naming the file; no run directory is created."""
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_text(content)
    with pytest.raises(CorpusError, match="corpus.txt") as info:
        train(tiny_config(f"data.path={corpus}"), tracking_for(tmp_path / "runs", "r"))
    assert not (tmp_path / "runs" / "r").exists()
    assert "--data" not in str(info.value)  # no such flag: the key is data.path
    if content is None:
        assert "data.path" in str(info.value)


def test_existing_run_name_is_refused_without_damage(tmp_path: Path) -> None:
    """Starting a new run under a taken name fails before anything in that run changes."""
    train(tiny_config("training.max_steps=2"), tracking_for(tmp_path, "taken"))
    before = snapshot(tmp_path / "taken")
    with pytest.raises(RunExistsError):
        train(tiny_config("training.max_steps=2"), tracking_for(tmp_path, "taken"))
    assert snapshot(tmp_path / "taken") == before
    assert len(records(tmp_path / "taken" / "metrics.ndjson")) > 0


def test_resume_after_a_crash_logs_no_step_twice(tmp_path: Path) -> None:
    """Steps logged after the last checkpoint (a crash) are retrained but not logged again."""
    train(tiny_config(f"training.max_steps={N}"), tracking_for(tmp_path, "whole"))
    train(tiny_config(f"training.max_steps={N}", f"training.stop_after_steps={K}"), tracking_for(tmp_path, "crash"))
    folder = tmp_path / "crash" / "checkpoints"
    (folder / "latest.pt").unlink()  # as if the process died after step K, before its checkpoint
    (folder / f"step-{K:08d}.pt").unlink()
    _resume(tmp_path / "crash", "training.stop_after_steps=null")
    crash = series(tmp_path / "crash", "train/loss")
    assert [s for s, _ in crash] == list(range(1, N + 1))
    assert crash == series(tmp_path / "whole", "train/loss")


def test_resume_falls_back_past_a_truncated_latest_checkpoint(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """latest.pt truncated in place (so its hard-linked step file too): --resume skips both, saying why,
    continues from the step before, and every step is logged once with the uninterrupted losses."""
    train(tiny_config(f"training.max_steps={N}"), tracking_for(tmp_path, "whole"))
    train(tiny_config(f"training.max_steps={N}", f"training.stop_after_steps={K}", "training.checkpoint_interval=2",
                      "training.eval_interval=100"), tracking_for(tmp_path, "cut"))
    folder = tmp_path / "cut" / "checkpoints"
    with open(folder / "latest.pt", "r+b") as f:  # step 7's file: the same inode
        f.truncate(1000)
    point = find_resume_point(tmp_path / "cut")
    assert point.checkpoint_path.name == "step-00000006.pt" and point.state["step"] == 6
    assert point.skipped[0].startswith("latest.pt (corrupt: truncated")
    assert point.skipped[1] == f"step-{K:08d}.pt (the same file as latest.pt)"
    capfd.readouterr()
    _resume(tmp_path / "cut", "training.stop_after_steps=null", "training.eval_interval=5")
    err = capfd.readouterr().err
    assert "[train] resuming from step-00000006.pt; skipped the newer latest.pt (corrupt: truncated" in err
    cut = series(tmp_path / "cut", "train/loss")
    assert [s for s, _ in cut] == list(range(1, N + 1))
    assert cut == series(tmp_path / "whole", "train/loss")


def test_resume_when_no_checkpoint_loads_says_each_and_how_to_restart(tmp_path: Path) -> None:
    """Every checkpoint corrupt: a ResumeError naming each file and why, nothing written."""
    train(tiny_config("training.max_steps=4", "training.stop_after_steps=2"), tracking_for(tmp_path, "bad"))
    for path in (tmp_path / "bad" / "checkpoints").glob("*.pt"):
        path.unlink()
        path.write_bytes(b"\x00" * 64)
    before = snapshot(tmp_path / "bad")
    with pytest.raises(ResumeError, match=r"no checkpoint there loads: latest\.pt \(corrupt.*move .*checkpoints aside"):
        find_resume_point(tmp_path / "bad")
    assert snapshot(tmp_path / "bad") == before


def test_run_without_checkpoint_restarts_from_step_0_in_the_same_run(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A run that stopped before its first checkpoint (here: its checkpoints and tokenizer deleted, as a
    SIGKILL at step K leaves it) resumes by restarting from step 0 in the same run, saying so; the
    steps it had logged are trained again but not logged twice, and the losses equal an uninterrupted run."""
    import shutil

    train(tiny_config(f"training.max_steps={N}"), tracking_for(tmp_path, "whole"))
    train(tiny_config(f"training.max_steps={N}", f"training.stop_after_steps={K}"),
          tracking_for(tmp_path, "early", enable_tensorboard=True))
    run_id = json.loads((tmp_path / "early" / "run.json").read_text())["run_id"]
    shutil.rmtree(tmp_path / "early" / "checkpoints")
    shutil.rmtree(tmp_path / "early" / "tokenizer")
    point = find_resume_point(tmp_path / "early")
    assert point.restart and point.state["step"] == 0
    capfd.readouterr()
    _resume(tmp_path / "early", "training.stop_after_steps=null")
    lines = [line for line in capfd.readouterr().err.splitlines() if "restarts from step 0" in line]
    assert len(lines) == 1 and f"steps 1..{K}, logged before, are trained again but not logged twice" in lines[0]
    early = series(tmp_path / "early", "train/loss")
    assert [s for s, _ in early] == list(range(1, N + 1))
    assert early == series(tmp_path / "whole", "train/loss")
    assert [s for s, _ in series(tmp_path / "early", "val/loss")] == [0, 5, 10, N]
    state = json.loads((tmp_path / "early" / "run.json").read_text())
    assert state["run_id"] == run_id and len(state["sessions"]) == 2 and state["status"] == "FINISHED"
    assert (tmp_path / "early" / "tokenizer").is_dir()
    tensorboard = _tensorboard_steps(tmp_path / "early", "train/loss")
    assert tensorboard == list(range(1, N + 1)), tensorboard


def _tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    """Steps of ``tag`` as TensorBoard reads the whole folder (a step that goes back purges later ones)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return sorted(e.step for e in acc.Scalars(tag))



def test_a_restart_from_step_0_keeps_the_health_section(tmp_path: Path) -> None:
    """params.json flattens health.<rule>.<setting>; a run restarted without a checkpoint gets its health
    settings back from there, one level deeper than the other sections."""
    import shutil

    train(tiny_config("training.max_steps=4", "health.spike.threshold=7", "health.stall.enabled=false"),
          tracking_for(tmp_path, "h"))
    shutil.rmtree(tmp_path / "h" / "checkpoints")
    point = find_resume_point(tmp_path / "h")
    assert point.restart
    health = point.state["config"]["health"]
    assert health["spike"]["threshold"] == 7 and health["stall"]["enabled"] is False
