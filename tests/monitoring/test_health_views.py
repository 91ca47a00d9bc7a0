"""Health events in the monitoring views: inspect (text and --json), tail -f, plot.

Runs are real (``start_run``): a NaN loss makes the built-in ``nonfinite`` rule fire on the
run's writer thread, and ``run.log_event`` adds events of other rules, so events.ndjson is
the file a training run writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codex_ml.health import HealthEvent, read_events
from codex_ml.monitoring.cli import app
from codex_ml.monitoring.inspect import health_lines, inspect_paths
from codex_ml.monitoring.plot import EVENT_GID, draw, plot
from codex_ml.monitoring.tail import tail, text_printer
from codex_ml.tracking import start_run

STALL_STEP = 20


def _event(rule: str, step: int | None, metric: str | None = None, severity: str = "warning") -> HealthEvent:
    return HealthEvent(time.time(), step, rule, severity, metric, 1.0, 0.5, f"{rule} at step {step}", "log")


def _run(tmp_path: Path, extra: list[HealthEvent] = (), name: str = "h") -> Path:
    """30 steps, NaN loss at step 5 (one nonfinite event), then ``extra`` events."""
    with start_run(name, output_root=tmp_path, flush_interval=0.05) as run:
        for step in range(30):
            run.log_metrics({"train/loss": math.nan if step == 5 else 2.0 / (step + 1), "lr": 1e-3}, step=step)
        for event in extra:
            run.log_event(dataclasses.replace(event, time=time.time()))  # fired now, after the steps
    return run.paths.root


# -- inspect -----------------------------------------------------------------------
def test_inspect_json_lists_every_event(tmp_path: Path) -> None:
    root = _run(tmp_path, [_event("stall", STALL_STEP)])
    result = CliRunner().invoke(app, ["inspect", "--json", str(root)])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.output)["runs"]
    assert run["health_by_rule"] == {"nonfinite": 1, "stall": 1}
    nonfinite, stall = run["health_events"]
    assert nonfinite["step"] == 5 and nonfinite["metric"] == "train/loss" and nonfinite["value"] == "NaN"
    assert nonfinite["message"] == "train/loss is nan at step 5" and nonfinite["severity"] == "critical"
    assert stall["metric"] is None and stall["step"] == STALL_STEP
    assert run["health_events"] == [e.to_json() for e in read_events(root / "events.ndjson")]
    assert run["health_events_file"] == {"file": str(root / "events.ndjson"), "bad_lines": [], "torn_tail": False}


def test_inspect_text_counts_per_rule_and_caps_the_list(tmp_path: Path) -> None:
    root = _run(tmp_path, [_event("spike", step, "train/loss") for step in range(10, 35)])
    result = CliRunner().invoke(app, ["inspect", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    head = lines.index(f"health events — {root}: 26 (nonfinite 1, spike 25)")
    listed = lines[head + 1 : head + 22]
    assert "step 5 nonfinite critical: train/loss is nan at step 5" in listed[0]
    assert [line.endswith(f"spike warning: spike at step {s}") for line, s in zip(listed[1:20], range(10, 29))] == [True] * 19
    assert listed[20] == "  ... 6 more (--json lists them all)"


def test_inspect_reports_a_torn_events_line_and_a_run_without_events(tmp_path: Path) -> None:
    root = _run(tmp_path)
    with open(root / "events.ndjson", "ab") as handle:
        handle.write(b'{"v":1,"time":1.0,"step":9,"rule":"sp')  # a crash mid-write
    [result] = inspect_paths([root])
    assert result["health_by_rule"] == {"nonfinite": 1} and result["health_events_file"]["torn_tail"]
    assert any("the last line is torn" in line for line in health_lines(result))

    with start_run("quiet", output_root=tmp_path, flush_interval=0.05) as run:
        run.log_metrics({"train/loss": 1.0}, step=0)
    [quiet] = inspect_paths([run.paths.root])
    assert quiet["health_events"] == [] and quiet["health_by_rule"] == {}
    assert health_lines(quiet) in ([], [f"health events — {run.paths.root}: none"])  # no file yet, or an empty one


# -- tail ----------------------------------------------------------------------------
def test_tail_follow_prints_an_event_whose_file_appears_after_it_started(tmp_path: Path) -> None:
    run = start_run("live", output_root=tmp_path, flush_interval=0.05)
    for step in range(5):
        run.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    run.flush()
    assert not run.paths.events.exists(), "the event must come after tail started"
    seen: list[dict[str, Any]] = []
    follower = threading.Thread(target=tail, args=(run.paths.root, seen.append),
                                kwargs={"lines": 100, "until_closed": True, "interval": 0.02, "max_seconds": 30})  # fmt: skip
    follower.start()
    time.sleep(0.2)  # tail is following by now
    run.log_metrics({"train/loss": math.nan}, step=5)
    run.log_metrics({"train/loss": 0.1}, step=6)
    run.close()
    follower.join(timeout=35)
    assert not follower.is_alive()
    events = [r for r in seen if "rule" in r]
    assert [(e["rule"], e["step"], e["metric"]) for e in events] == [("nonfinite", 5, "train/loss")]
    steps = [r["step"] for r in seen if "metrics" in r and "train/loss" in r["metrics"]]
    assert steps == list(range(7))
    # The event comes after the record that caused it.
    assert seen.index(events[0]) > next(i for i, r in enumerate(seen) if r.get("step") == 5 and "metrics" in r)


def test_tail_prints_events_as_health_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _run(tmp_path, [HealthEvent(time.time(), 29, "spike", "warning", "train/loss", 9.0, 5.0, "big", "stop")])
    tail(root, text_printer, lines=100)
    out = capsys.readouterr().out.splitlines()
    health = [line for line in out if line.startswith("[health]")]
    assert health == ["[health] step 5 nonfinite critical: train/loss is nan at step 5",
                      "[health] step 29 spike warning: big  (action: stop)"]  # fmt: skip
    # In time order: the NaN event right after step 5's record, before step 6's.
    at = out.index(health[0])
    assert out[at - 1].startswith("step 5 ") or out[at - 2].startswith("step 5 ")
    assert all(not line.startswith("step 6 ") for line in out[:at])
    # -n keeps the events of the records it shows: step 5 is outside the last 3.
    capsys.readouterr()
    tail(root, text_printer, lines=3)
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("[health]")] == health[1:]


# -- plot ------------------------------------------------------------------------------
def _event_lines(ax: Any) -> list[tuple[str, float]]:
    return [(line.get_gid()[len(EVENT_GID):], line.get_xdata()[0]) for line in ax.get_lines()
            if (line.get_gid() or "").startswith(EVENT_GID)]  # fmt: skip


def test_plot_marks_events_on_their_metric_or_every_panel(tmp_path: Path) -> None:
    root = _run(tmp_path, [_event("stall", STALL_STEP, severity="critical"), _event("spike", 12, "lr")])
    drawing = draw([root], system=False)
    try:
        axes = dict(zip((key for _, key in drawing.panels), drawing.figure.axes))
        assert list(axes) == ["train/loss", "lr"]  # health/events is no panel: the lines show it
        assert sorted(_event_lines(axes["train/loss"])) == [("nonfinite", 5.0), ("stall", float(STALL_STEP))]
        assert sorted(_event_lines(axes["lr"])) == [("spike", 12.0), ("stall", float(STALL_STEP))]
        legend = [text.get_text() for text in axes["train/loss"].get_legend().get_texts()]
        assert legend == ["h", "health: nonfinite", "health: stall"]
        assert drawing.marks == [2, 2]
    finally:
        import matplotlib.pyplot as plt

        plt.close(drawing.figure)
    # Filtered to train/loss: the lr event stays off (its metric is logged, only not plotted).
    only_loss = draw([root], patterns=["train/*"], system=False)
    assert sorted(_event_lines(only_loss.figure.axes[0])) == [("nonfinite", 5.0), ("stall", float(STALL_STEP))]


def test_plot_writes_a_png_with_event_lines(tmp_path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    root = _run(tmp_path)
    out = tmp_path / "curves.png"
    assert plot([root], out, system=False) == 2
    pixels = mpimg.imread(out)
    red = (pixels[..., 0] > 0.75) & (pixels[..., 1] < 0.5) & (pixels[..., 2] < 0.5)  # tab:red (alpha 0.7), the first rule
    columns = np.flatnonzero(red.sum(axis=0) > pixels.shape[0] * 0.2)  # a line down most of a panel's height
    assert columns.size > 0, "no event line in the PNG"
