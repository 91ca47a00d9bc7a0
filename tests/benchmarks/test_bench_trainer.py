"""benchmarks/bench_trainer.py: the gate logs exactly the tracked blocks' steps, and --quick runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import trainer_alternate as alt  # noqa: E402

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16", "training.batch_size=4",
        "training.eval_batches=2", "training.progress=false"]


def test_gate_forwards_tracked_blocks_only_and_times_every_block(tmp_path: Path) -> None:
    """Step 1 (warm-up, tracked), then pairs T B / B T of 1 untimed + 2 timed steps: steps 2-4 and 11-13
    reach metrics.ndjson, 5-10 (the bare blocks) do not."""
    from codex_ml.training.config import load_config

    config = load_config(overrides=[*TINY, *alt.measured_overrides(alt.Plan(1))])
    plan = alt.Plan(pairs=2, transition=1, timed=2)
    outcome = alt.measure(config, "system", plan, tmp_path)
    assert len(outcome.tracked) == len(outcome.bare) == 2 and len(outcome.ratios()) == 2
    assert all(0 < seconds < 10 for seconds in outcome.tracked + outcome.bare)
    lines = [json.loads(line) for line in (tmp_path / "alt-system" / "metrics.ndjson").read_text().splitlines()]
    assert [r["step"] for r in lines if "train/loss" in r["metrics"]] == [1, 2, 3, 4, 11, 12, 13]
    assert [r["step"] for r in lines if "val/loss" in r["metrics"]] == [0]  # no evaluation inside the blocks


def test_mean_ci_matches_the_t_table() -> None:
    """The 95 % half-width uses Student's t (2.262 for 10 values, 2.045 for 30), not the normal 1.96."""
    assert abs(alt.t_quantile(10) - 2.262) < 0.005 and abs(alt.t_quantile(30) - 2.045) < 0.002
    mean, half = alt.mean_ci([0.98, 1.0, 1.02, 0.99, 1.01])
    assert abs(mean - 1.0) < 1e-12 and abs(half - 2.776 * 0.0158114 / 5**0.5) < 5e-4
    assert alt.pairs_needed(0.05, 0.01) == 97


def test_quick_mode_prints_a_row_per_selection(tmp_path: Path) -> None:
    """``--quick --sinks none,prometheus`` runs in a child per thread setting and prints both rows."""
    from codex_ml.data.sample import load_sample_text

    data = tmp_path / "text.txt"
    data.write_text(load_sample_text()[:50_000])
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_trainer.py"), "--quick", "--data", str(data),
                           "--sinks", "none,prometheus", "--threads", "1", "--json", str(tmp_path / "rows.jsonl")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [(r["sinks"], r["threads"], r["pairs"]) for r in rows] == [("none", 1, 2), ("prometheus", 1, 2)]
    assert rows[1]["sink_names"] == ["prometheus"] and rows[0]["sink_names"] == []
    assert "ratio" in done.stdout and "prometheus" in done.stdout


def test_unknown_sink_is_one_error_line(tmp_path: Path) -> None:
    """A typo in --sinks is refused before anything trains."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_trainer.py"), "--data", __file__,
                           "--sinks", "all,tensorbord"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.strip() == ("error: --sinks tensorbord: choose from all, none, "
                                                            "tensorboard, mlflow, wandb, prometheus, system")
