"""plot: a real PNG with metric and system panels; bad filters are clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codex_ml.monitoring.plot import choose_metrics, plot, system_keys
from codex_ml.monitoring.runs import MonitoringInputError
from codex_ml.tracking import start_run


def _run(tmp_path: Path, name: str) -> Path:
    with start_run(name, output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(200):
            loss = 50.0 if step == 137 else 2.0 / (step + 1)
            run.log_metrics({"train/loss": loss, "lr": 1e-3, "odd": math.nan if step == 5 else step}, step=step)
    lines = [f'{{"v":1,"time":{1000.0 + i},"sample":{i},"cpu":{{"percent":{i}}},"memory":{{"percent":50}},'
             f'"process":{{"rss_bytes":{2**20 * (100 + i)}}}}}\n' for i in range(10)]  # fmt: skip
    (run.paths.root / "system_metrics.jsonl").write_text("".join(lines))
    return run.paths.root


def test_png_with_metric_and_system_panels(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    a, b = _run(tmp_path, "a"), _run(tmp_path, "b")
    out = tmp_path / "plots" / "curves.png"
    panels = plot([a, b], out, max_points=50)
    assert panels == 3 + 3  # train/loss, lr, odd + cpu, memory, rss
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600


def test_metric_filter_and_no_system(tmp_path: Path) -> None:
    run = _run(tmp_path, "a")
    assert plot([run], tmp_path / "loss.png", patterns=["train/*"], system=False) == 1
    with pytest.raises(MonitoringInputError, match="no metric matches.*available: train/loss, lr, odd"):
        plot([run], tmp_path / "none.png", patterns=["nope*"], system=False)


def test_choose_metrics_puts_losses_first() -> None:
    assert choose_metrics(["lr", "eval/loss", "acc", "train/loss"], None) == ["eval/loss", "train/loss", "lr", "acc"]
    assert choose_metrics(["lr", "train/loss"], ["l*"]) == ["lr"]
    keys = ["system/cpu/percent", "system/cpu/per_core/0", "system/gpu/0/utilization_percent", "system/disk/read_ops_per_s"]
    assert system_keys(keys) == ["system/cpu/percent", "system/gpu/0/utilization_percent"]
