"""The trainer end to end on CPU: what a run directory holds after a real (tiny) training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from codex_ml.training.checkpoints import load_checkpoint
from codex_ml.training.trainer import train
from trainer_helpers import records, series, tiny_config, tracking_for


def test_training_logs_everything_and_learns(tmp_path: Path) -> None:
    """Loss falls; every metric family, histograms, samples, params, summary and checkpoints are written."""
    config = tiny_config("training.max_steps=20", "training.lr=3e-3")
    result = train(config, tracking_for(tmp_path, "full"))
    run = tmp_path / "full"
    assert result.finished and result.last_step == 20 and result.run_dir == run
    loss = series(run, "train/loss")
    assert [s for s, _ in loss] == list(range(1, 21))
    keys = set().union(*(r["metrics"] for r in records(run / "metrics.ndjson")))
    for key in ("train/lr", "train/grad_norm", "train/tokens_per_s", "time/data_wait_s", "time/fwd_bwd_s",
                "time/optimizer_s", "time/logging_s", "time/step_s", "val/loss", "val/perplexity"):
        assert key in keys, key
    val = series(run, "val/loss")
    assert [s for s, _ in val] == [0, 5, 10, 15, 20] and val[-1][1] < val[0][1] - 0.1
    assert math.isclose(series(run, "val/perplexity")[-1][1], math.exp(val[-1][1]), rel_tol=1e-9)
    hist_names = {r["name"] for r in records(run / "histograms.ndjson")}
    assert "weights/wte.weight" in hist_names and "grads/wte.weight" in hist_names
    texts = records(run / "text.ndjson")
    assert [t["step"] for t in texts] == [10, 20] and all(t["name"] == "samples/generation" for t in texts)
    params = json.loads((run / "params.json").read_text())
    assert params["model.n_embd"] == 32 and params["training.max_steps"] == 20 and params["model.vocab_size"] > 10
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["last_step"] == 20
    assert (run / "tokenizer" / "tokenizer.json").is_file()


def test_learning_rate_follows_warmup_then_cosine(tmp_path: Path) -> None:
    """Logged lr: linear warmup to lr, then decay reaching min_lr at the last step."""
    config = tiny_config("training.max_steps=12", "training.lr=1e-3", "training.min_lr=1e-4",
                         "training.warmup_steps=4", "training.eval_interval=100")
    train(config, tracking_for(tmp_path, "lr"))
    lrs = [v for _, v in series(tmp_path / "lr", "train/lr")]
    assert [round(v, 10) for v in lrs[:4]] == [2.5e-4, 5e-4, 7.5e-4, 1e-3]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and math.isclose(lrs[-1], 1.1e-4, rel_tol=0.2)


def test_checkpoint_holds_everything_resume_needs(tmp_path: Path) -> None:
    """latest.pt has model, optimizer, scheduler, RNG, step and the resolved config; best.pt exists."""
    train(tiny_config("training.max_steps=10", "training.keep_last=1"), tracking_for(tmp_path, "ck"))
    folder = tmp_path / "ck" / "checkpoints"
    state = load_checkpoint(folder / "latest.pt")
    assert state["step"] == 10 and state["config"]["training"]["max_steps"] == 10
    assert {"model", "optimizer", "scheduler", "ranks", "best_val_loss"} <= set(state)
    assert "rng" in state["ranks"][0] and "batches" in state["ranks"][0]
    assert (folder / "best.pt").is_file()
    assert sorted(p.name for p in folder.glob("step-*.pt")) == ["step-00000010.pt"]  # keep_last=1


def test_gradient_accumulation_and_clipping_run(tmp_path: Path) -> None:
    """grad_accum_steps=2 trains; with a tiny grad_clip the logged norm is the pre-clip norm (> clip)."""
    config = tiny_config("training.max_steps=4", "training.grad_accum_steps=2", "training.grad_clip=1e-3")
    result = train(config, tracking_for(tmp_path, "acc"))
    norms = [v for _, v in series(tmp_path / "acc", "train/grad_norm")]
    assert result.last_step == 4 and all(n > 1e-3 for n in norms)


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    """precision=bf16 runs under autocast on CPU and logs finite losses."""
    train(tiny_config("training.max_steps=3", "training.precision=bf16"), tracking_for(tmp_path, "bf16"))
    assert all(math.isfinite(v) for _, v in series(tmp_path / "bf16", "train/loss"))


def test_same_seed_same_losses(tmp_path: Path) -> None:
    """Two runs with one seed log identical losses on CPU (determinism)."""
    config = tiny_config("training.max_steps=5")
    train(config, tracking_for(tmp_path, "a"))
    train(config, tracking_for(tmp_path, "b"))
    assert series(tmp_path / "a", "train/loss") == series(tmp_path / "b", "train/loss")
    other = tiny_config("training.max_steps=5", "training.seed=7")
    train(other, tracking_for(tmp_path, "c"))
    assert series(tmp_path / "a", "train/loss") != series(tmp_path / "c", "train/loss")


def test_bpe_tokenizer_on_a_jsonl_corpus(tmp_path: Path) -> None:
    """data.tokenizer=bpe trains on a JSONL corpus and the tokenizer is saved in the run."""
    corpus = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": f"the quick brown fox {i} jumps over the lazy dog"}) for i in range(200)]
    corpus.write_text("\n".join(lines) + "\n")
    config = tiny_config("training.max_steps=3", f"data.path={corpus}", "data.tokenizer=bpe", "data.vocab_size=300")
    train(config, tracking_for(tmp_path, "bpe"))
    saved = json.loads((tmp_path / "bpe" / "tokenizer" / "tokenizer.json").read_text())
    assert "bpe" in json.dumps(saved).lower()
    assert torch.isfinite(torch.tensor([v for _, v in series(tmp_path / "bpe", "train/loss")])).all()


def test_progress_bar_ends_on_the_final_val_loss(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A run shorter than the eval interval evaluates only at step 0 and at its end: the bar must end
    showing the end's val loss, not step 0's."""
    result = train(tiny_config("training.max_steps=3", "training.eval_interval=100", "training.progress=true"),
                   tracking_for(tmp_path, "bar"))
    shown = capfd.readouterr().err.rsplit("val=", 1)[1][:6]
    assert shown == f"{result.final_val_loss:.4f}"
