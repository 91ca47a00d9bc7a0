"""HealthEvent JSON round trip (non-finite values spelled as in metrics.ndjson) and read_events."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from codex_ml.health import HealthEvent, read_events
from codex_ml.rundir.reader import ReadReport


def test_round_trip_spells_nonfinite_values() -> None:
    event = HealthEvent(1.5, 30, "nonfinite", "critical", "train/loss", math.nan, math.inf, "train/loss is nan", "stop")
    data = event.to_json()
    assert data["value"] == "NaN" and data["threshold"] == "Infinity"
    assert set(data) == {"time", "step", "rule", "severity", "metric", "value", "threshold", "message", "action"}
    back = HealthEvent.from_json(json.loads(json.dumps(data)))
    assert math.isnan(back.value) and back.threshold == math.inf and back.key() == ("nonfinite", 30, "train/loss")


def test_from_json_refuses_a_record_without_rule() -> None:
    with pytest.raises(ValueError, match="not a health event"):
        HealthEvent.from_json({"time": 1.0})


def test_read_events_skips_torn_tail_and_bad_records(tmp_path: Path) -> None:
    good = HealthEvent(2.0, None, "stall", "critical", None, 12.0, 10.0, "no step", "log")
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(good.to_json()) + "\n" + '{"time": 3}\n' + '{"time": 4, "rule": "sp', encoding="utf-8")
    report = ReadReport(str(path))
    assert read_events(path, report) == [good]
    assert report.torn_tail and len(report.bad_lines) == 1
    assert read_events(tmp_path / "missing.ndjson") == []
