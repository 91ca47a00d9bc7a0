"""The whole tiny pipeline: outputs, reproducibility, resume/skip, crash safety, empty demos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import codex_ml.pipeline.stages as stages
from codex_ml.pipeline.loop import pair_accuracy
from codex_ml.pipeline.runner import STAGES, run_pipeline
from codex_ml.pipeline.summary import print_table
from codex_ml.rundir.reader import metric_series


def _stage_metrics(summary: dict) -> dict:
    return {name: record.get("metrics") for name, record in summary["stages"].items()}


def _metric_keys(run_dir: Path) -> set[str]:
    return set(metric_series(run_dir / "metrics.ndjson"))


def test_tiny_pipeline_writes_every_output(make_config, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config("out")
    summary = run_pipeline(config, progress=False)
    out = Path(config.output_dir)
    # Where the data went, in the lines every entry point prints (tracking.viewing.describe_outputs).
    printed = capsys.readouterr().out
    assert f"Run directory:  {out}" in printed and f"summary:      {out / 'summary.json'}" in printed
    assert summary["pipeline_status"] == "FINISHED" and summary["status"] == "FINISHED"
    assert [summary["stages"][s]["status"] for s in STAGES] == ["trained"] * 4
    for stage in STAGES:
        assert (out / "checkpoints" / stage / "stage.json").is_file()
        assert (out / "artifacts" / f"{stage}-checkpoint.pt").is_file()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["inputs"]["prefs"]["rows"] == 80 and len(on_disk["inputs"]["corpus"]["sha256"]) == 64
    assert set(on_disk["versions"]) >= {"python", "torch"} and on_disk["config"]["seed"] == 0
    assert {"m0/train/loss", "m0/val/loss", "m1/val/completion_loss", "rm/val/accuracy", "m2/val/reward", "m2/val/kl"} <= _metric_keys(out)
    tags = json.loads((out / "tags.json").read_text())
    assert tags["pipeline.stage.RM"] == "trained"
    assert set(summary["acceptance"]) == {
        "sft_lowers_completion_loss", "rm_heldout_accuracy", "rm_sees_off_by_one", "m2_raises_reward",
        "m2_raises_answer_accuracy", "no_reward_hacking",
    }
    rm_final = summary["stages"]["RM"]["metrics"]["final"]
    assert {"accuracy_off_by_one", "accuracy_tens_digit", "accuracy_random"} <= set(rm_final)
    assert "rm/val/accuracy_off_by_one" in _metric_keys(out)


def test_same_inputs_seed_and_config_give_identical_metrics(make_config) -> None:
    first = run_pipeline(make_config("a"), progress=False)
    second = run_pipeline(make_config("b"), progress=False)
    assert _stage_metrics(first) == _stage_metrics(second)
    assert first["metrics"] == second["metrics"]  # every last logged value too
    third = run_pipeline(make_config("c", "seed=1"), progress=False)
    assert _stage_metrics(third) != _stage_metrics(first)


def test_rerun_skips_verified_stages_and_force_retrains(make_config) -> None:
    first = run_pipeline(make_config("out"), progress=False)
    again = run_pipeline(make_config("out"), progress=False)
    assert [again["stages"][s]["status"] for s in STAGES] == ["reused"] * 4
    assert _stage_metrics(again) == _stage_metrics(first)
    changed = run_pipeline(make_config("out", "reward.steps=9"), progress=False)
    assert [changed["stages"][s]["status"] for s in STAGES] == ["reused", "reused", "trained", "trained"]
    forced = run_pipeline(make_config("out", "reward.steps=9", "force=true"), progress=False)
    assert [forced["stages"][s]["status"] for s in STAGES] == ["trained"] * 4
    assert _stage_metrics(forced) == _stage_metrics(changed)


def test_a_tampered_checkpoint_is_retrained(make_config) -> None:
    config = make_config("out")
    run_pipeline(config, progress=False)
    marker = json.loads((Path(config.output_dir) / "checkpoints" / "M1" / "stage.json").read_text())
    (Path(config.output_dir) / "checkpoints" / "M1" / marker["checkpoint"]).write_bytes(b"garbage")
    again = run_pipeline(make_config("out"), progress=False)
    assert [again["stages"][s]["status"] for s in STAGES] == ["reused", "trained", "reused", "reused"]


def test_crash_in_a_stage_keeps_the_earlier_ones(make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("reward model crashed")

    with monkeypatch.context() as patch:
        patch.setattr(stages, "run_reward", explode)
        with pytest.raises(RuntimeError, match="reward model crashed"):
            run_pipeline(make_config("out"), progress=False)
    out = Path(make_config("out").output_dir)
    crashed = json.loads((out / "summary.json").read_text())
    assert crashed["pipeline_status"] == "FAILED" and crashed["failed_stage"] == "RM"
    assert not (out / "checkpoints" / "RM" / "stage.json").exists()
    resumed = run_pipeline(make_config("out"), progress=False)
    assert [resumed["stages"][s]["status"] for s in STAGES] == ["reused", "reused", "trained", "trained"]


def test_empty_demos_skip_sft_with_a_warning(small_data: dict[str, Path], tmp_path: Path, make_config, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    config = make_config("out", f"demos={empty}")
    with pytest.warns(UserWarning, match="SFT is skipped"):
        summary = run_pipeline(config, progress=False)
    assert summary["stages"]["M1"]["status"] == "skipped"
    assert summary["stages"]["M2"]["status"] == "trained"
    print_table(json.loads((tmp_path / "out" / "summary.json").read_text())["stages"])
    cells = [[c.strip() for c in line.split("│")[1:3]] for line in capsys.readouterr().err.splitlines() if line.startswith("│")]
    assert [c for c in cells if c[0] in STAGES] == [["M0", "trained"], ["M1", "skipped"], ["RM", "trained"], ["M2", "trained"]]


def test_dpo_method_runs_and_reports_reward_and_kl(make_config) -> None:
    summary = run_pipeline(make_config("out", "preference.method=dpo"), progress=False)
    final = summary["stages"]["M2"]["metrics"]["final"]
    assert {"reward", "kl", "answer_accuracy"} <= set(final)


def test_hydra_entry_runs_the_composed_pipeline_group(small_data: dict[str, Path], tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from codex_ml.pipeline.runner import run_from_hydra
    from codex_ml.tracking import TrackingConfig

    repo = Path(__file__).resolve().parents[2]
    overrides = ["pipeline=tiny", f"++pipeline.output_dir={tmp_path / 'hydra'}"]
    overrides += [f"++pipeline.{name}={path}" for name, path in small_data.items()]
    with initialize_config_dir(config_dir=str(repo / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run_from_hydra(cfg, TrackingConfig())
    assert summary["pipeline_status"] == "FINISHED"
    assert summary["config"]["pretrain"]["steps"] == 12  # from tiny.yaml
    assert (tmp_path / "hydra" / "checkpoints" / "M2" / "stage.json").is_file()


def test_bpe_tokenizer_uses_its_end_of_text_token_as_stop(make_config) -> None:
    summary = run_pipeline(make_config("out", "tokenizer=bpe", "vocab_size=300"), progress=False)
    assert [summary["stages"][s]["status"] for s in STAGES] == ["trained"] * 4
    from codex_ml.data.tokenizers import load_tokenizer
    from codex_ml.pipeline.loop import PromptCodec

    tokenizer = load_tokenizer(make_config("out").output_dir)
    assert tokenizer.kind == "bpe" and PromptCodec(tokenizer, 16).stop_id == tokenizer.eot_id is not None


def test_short_corpus_fails_before_the_output_dir_is_written(small_data: dict[str, Path], tmp_path: Path, make_config) -> None:
    """A corpus too short for one window is an input error found before M0 starts or --output-dir exists."""
    from codex_ml.pipeline.inputs import PipelineInputError

    short = tmp_path / "short.jsonl"
    short.write_text('"ab"\n', encoding="utf-8")
    config = make_config("out", f"corpus={short}")
    with pytest.raises(PipelineInputError, match="too short to pretrain on"):
        run_pipeline(config, progress=False)
    assert not Path(config.output_dir).exists()


def test_reward_model_ties_count_half(make_config, capsys: pytest.CaptureFixture[str]) -> None:
    """The RM head starts at zero, so every held-out pair is a tie before training: accuracy 0.5,
    not 0.0; the table says how ties count."""
    assert pair_accuracy(torch.tensor([1.0, -1.0, 0.0, 0.0])) == 0.5
    assert pair_accuracy(torch.tensor([2.0, 0.0])) == 0.75
    summary = run_pipeline(make_config("out"), progress=False)
    assert summary["stages"]["RM"]["metrics"]["initial"]["accuracy"] == 0.5
    print_table(summary["stages"])
    assert "ties count 0.5" in capsys.readouterr().err


def test_exact_reward_needs_checkable_prompts(make_config, tmp_path: Path) -> None:
    """preference.reward=exact scores with check_answer; prompts it cannot check are an input error."""
    from codex_ml.pipeline.inputs import PipelineInputError

    summary = run_pipeline(make_config("exact", "preference.reward=rm+exact"), progress=False)
    assert summary["stages"]["M2"]["status"] == "trained"
    prefs = tmp_path / "words.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"say {w}", "chosen": w, "rejected": "no"}) + "\n" for w in "abcdefghij"))
    config = make_config("words", f"prefs={prefs}", "preference.reward=exact")
    with pytest.raises(PipelineInputError, match="preference.reward=exact needs prompts"):
        run_pipeline(config, progress=False)
    assert not Path(config.output_dir).exists()  # found before anything is written
