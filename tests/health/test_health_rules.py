"""Each built-in rule, table-driven: it fires when it should, stays quiet when it should, and re-arms.

A case is a rule (with settings) and a script of inputs; the expected result is the list of
``(step, rule, metric)`` of the events raised, in order.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from codex_ml.health.config import BUILTIN_RULES
from codex_ml.health.rules import Rule
from codex_ml.health.stragglers import Beat


def noisy(step: int) -> float:
    """A loss-like value with deterministic noise of about +-0.05 around 2.0."""
    return 2.0 + 0.05 * math.sin(step * 1.7) + 0.02 * math.cos(step * 5.3)


def losses(count: int, spikes: dict[int, float] | None = None, key: str = "train/loss") -> list[tuple]:
    """``("m", step, time, {key: value})`` items, one step a second; ``spikes`` replaces values."""
    spikes = spikes or {}
    return [("m", s, 1000.0 + s, {key: spikes.get(s, noisy(s))}) for s in range(count)]


def run(rule: Rule, script: list[tuple]) -> list[tuple[Any, str, Any]]:
    """Feed ``script`` to ``rule``: ("m", step, time, metrics), ("s", index, time, values),
    ("t", now) ticks, ("k", sink, state, now) sink states, ("b", now, beats, world size, host, step) heartbeats."""
    events = []
    for item in script:
        if item[0] == "m":
            events += rule.on_metrics(item[1], item[2], item[3])
        elif item[0] == "s":
            events += rule.on_system(item[1], item[2], item[3])
        elif item[0] == "t":
            events += rule.on_tick(item[1])
        elif item[0] == "b":
            events += rule.on_beats(*item[1:])  # type: ignore[attr-defined]
        else:
            events += rule.on_sink_status(item[1], item[2], "", item[3])
    for event in events:
        assert event.rule == rule.name and "\n" not in event.message and event.action == rule.action
    return [(e.step, e.rule, e.metric) for e in events]


def steps(count: int, every: float = 1.0, start: int = 0, t0: float = 1000.0, **metrics: float) -> list[tuple]:
    """Training records ``start..start+count-1``, one each ``every`` seconds (plus extra metrics)."""
    named = {k.replace("__", "/"): v for k, v in metrics.items()}
    return [("m", s, t0 + s * every, {"train/loss": 2.0, **named}) for s in range(start, start + count)]


def throughput(values: list[float]) -> list[tuple]:
    return [("m", s, 1000.0 + s, {"train/tokens_per_s": v}) for s, v in enumerate(values)]


def scores(values: list[float], rank: int = 1) -> list[tuple]:
    return [("m", s, 1000.0 + s, {"ranks/straggler_score/rank0": 1.0, f"ranks/straggler_score/rank{rank}": v})
            for s, v in enumerate(values)]


def beats(seqs: list[int], step: int = 7) -> list[tuple]:
    """Rank 1's heartbeat counter seen once a second (on another node: no pid check)."""
    return [("b", 1000.0 + i, {1: Beat(1, "other-node", 1, "s", seq, 0.0, step)}, 2, "this-node", step)
            for i, seq in enumerate(seqs)]


def waits(shares: list[float]) -> list[tuple]:
    return [("m", s, 1000.0 + s, {"time/data_wait_s": share * 0.1, "time/step_s": 0.1}) for s, share in
            enumerate(shares)]


def rss(mib: list[float], every: float = 15.0) -> list[tuple]:
    return [("s", i, 1000.0 + i * every, {"system/process/rss_bytes": v * 1024 * 1024}) for i, v in enumerate(mib)]


NAN, INF = math.nan, math.inf
CASES = {
    # nonfinite: once per metric until a finite value comes back; default patterns */loss, train/grad_norm
    "nonfinite fires at the NaN step": ("nonfinite", {}, losses(40, {30: NAN}), [(30, "nonfinite", "train/loss")]),
    "nonfinite once while NaN lasts, again after recovery": (
        "nonfinite", {}, losses(40, {10: NAN, 11: NAN, 12: INF, 20: -INF}),
        [(10, "nonfinite", "train/loss"), (20, "nonfinite", "train/loss")]),
    "nonfinite watches val/loss and grad_norm": (
        "nonfinite", {}, [("m", 1, 1.0, {"val/loss": NAN, "train/grad_norm": INF, "train/lr": NAN})],
        [(1, "nonfinite", "val/loss"), (1, "nonfinite", "train/grad_norm")]),
    "nonfinite quiet on finite values and unwatched names": (
        "nonfinite", {}, [*losses(50), ("m", 51, 1.0, {"train/lr": NAN})], []),
    # spike: robust z over the rolling window, after warm-up, upward by default
    "spike fires on a x20 loss": ("spike", {}, losses(120, {100: 40.0}), [(100, "spike", "train/loss")]),
    "spike quiet on a clean noisy curve": ("spike", {}, losses(400), []),
    "spike quiet during warm-up": ("spike", {}, losses(120, {30: 40.0}), []),
    "spike ignores a drop (direction up)": ("spike", {}, losses(120, {100: 0.01}), []),
    "spike direction both sees a drop": ("spike", {"direction": "both"}, losses(120, {100: -5.0}),
                                         [(100, "spike", "train/loss")]),
    "spike once per excursion, re-arms after": (
        "spike", {}, losses(200, {100: 40.0, 101: 40.0, 102: 41.0, 150: 40.0}),
        [(100, "spike", "train/loss"), (150, "spike", "train/loss")]),
    "spike leaves non-finite values to nonfinite": ("spike", {}, losses(120, {100: INF}), []),
    "spike on a flat curve uses the min_scale floor": (
        "spike", {}, [("m", s, 1.0, {"train/loss": 2.0 if s != 80 else 2.1}) for s in range(100)],
        [(80, "spike", "train/loss")]),
    "spike threshold is a setting": ("spike", {"threshold": 1000.0}, losses(120, {100: 40.0}), []),
    # grad_explosion: the same detector on train/grad_norm
    "grad_explosion fires on a x20 grad norm": (
        "grad_explosion", {}, losses(120, {100: 40.0}, key="train/grad_norm"), [(100, "grad_explosion", "train/grad_norm")]),
    "grad_explosion ignores the loss": ("grad_explosion", {}, losses(120, {100: 40.0}), []),
    # stall: checked on ticks; fires once per stall; re-armed by the next step
    "stall fires after max(3 x median interval, floor)": (
        "stall", {"floor_s": 10.0}, [*steps(10), ("t", 1009 + 9.0), ("t", 1009 + 10.5), ("t", 1009 + 30)],
        [(9, "stall", None)]),
    "stall follows a slow step interval": (
        "stall", {"floor_s": 1.0}, [*steps(10, every=20.0), ("t", 1180 + 59.0), ("t", 1180 + 61.0)], [(9, "stall", None)]),
    "stall re-arms when steps come back": (
        "stall", {"floor_s": 5.0}, [*steps(10), ("t", 1020.0), *steps(10, start=20, t0=1000.0), ("t", 1029 + 6.0)],
        [(9, "stall", None), (29, "stall", None)]),
    "stall quiet before min_steps (start-up)": ("stall", {}, [*steps(2), ("t", 5000.0)], []),
    "stall quiet while steps keep coming": ("stall", {}, [*steps(30), ("t", 1029.5)], []),
    "stall ignores val-only records": (
        "stall", {"floor_s": 5.0}, [*steps(10), ("m", 10, 1012.0, {"val/loss": 2.0}), ("t", 1009 + 5.5)],
        [(9, "stall", None)]),
    # throughput_drop: below fraction x rolling median for patience records
    "throughput_drop fires after patience records": (
        "throughput_drop", {"patience": 5}, throughput([1000.0] * 50 + [300.0] * 10), [(54, "throughput_drop", "train/tokens_per_s")]),
    "throughput_drop quiet on a short dip": ("throughput_drop", {"patience": 5}, throughput([1000.0] * 50 + [300.0] * 4 + [1000.0] * 10), []),
    "throughput_drop quiet above the fraction": ("throughput_drop", {"patience": 5}, throughput([1000.0] * 50 + [600.0] * 30), []),
    "throughput_drop re-arms after recovery": (
        "throughput_drop", {"patience": 3}, throughput([1000.0] * 50 + [300.0] * 5 + [1000.0] * 60 + [300.0] * 3),
        [(52, "throughput_drop", "train/tokens_per_s"), (117, "throughput_drop", "train/tokens_per_s")]),
    "throughput_drop: a lasting drop once, even with patience near the window": (
        "throughput_drop", {"patience": 80}, throughput([1000.0] * 150 + [300.0] * 400),
        [(229, "throughput_drop", "train/tokens_per_s")]),
    "throughput_drop: no second event while the median settles": (
        "throughput_drop", {"patience": 3, "fraction": 0.4}, throughput([1000.0] * 150 + [300.0] * 400),
        [(152, "throughput_drop", "train/tokens_per_s")]),
    # data_stall: windowed share of step time waiting for data
    "data_stall fires when the window share passes the threshold": (
        "data_stall", {"window": 4}, waits([0.0] * 10 + [0.9] * 10), [(12, "data_stall", "time/data_wait_s")]),
    "data_stall quiet under the threshold": ("data_stall", {"window": 4}, waits([0.4] * 50), []),
    "data_stall quiet on one slow batch": ("data_stall", {"window": 4}, waits([0.0] * 10 + [1.0] + [0.0] * 10), []),
    "data_stall re-arms": ("data_stall", {"window": 2}, waits([0.9] * 3 + [0.0] * 3 + [0.9] * 3),
                           [(1, "data_stall", "time/data_wait_s"), (7, "data_stall", "time/data_wait_s")]),
    # memory_leak: RSS slope over system samples (every 15 s)
    "memory_leak fires on 100 MiB per minute": (
        "memory_leak", {}, rss([1000.0 + 25.0 * i for i in range(40)]), [(None, "memory_leak", "system/process/rss_bytes")]),
    "memory_leak quiet on flat memory with noise": (
        "memory_leak", {}, rss([1000.0 + (30.0 if i % 2 else 0.0) for i in range(60)]), []),
    "memory_leak quiet on a start-up ramp then flat": (
        "memory_leak", {}, rss([200.0 * min(i, 4) for i in range(60)]), []),
    "memory_leak quiet on slow growth": ("memory_leak", {}, rss([1000.0 + 2.0 * i for i in range(60)]), []),
    "memory_leak re-arms after it levels off": (
        "memory_leak", {"window": 5, "warmup": 0, "min_growth_mb": 10.0},
        rss([100.0 * i for i in range(8)] + [800.0] * 10 + [800.0 + 100.0 * i for i in range(1, 8)]),
        [(None, "memory_leak", "system/process/rss_bytes")] * 2),
    # sink_down: once per sink and state, re-armed by ok
    "sink_down fires per sink and state": (
        "sink_down", {}, [("k", "mlflow", "dropping", 1.0), ("k", "mlflow", "dropping", 2.0),
                          ("k", "mlflow", "disabled", 3.0), ("k", "wandb", "disabled", 4.0)],
        [(None, "sink_down", None)] * 3),
    "sink_down re-arms on ok": (
        "sink_down", {}, [("k", "tb", "dropping", 1.0), ("k", "tb", "ok", 2.0), ("k", "tb", "dropping", 3.0)],
        [(None, "sink_down", None)] * 2),
    "sink_down quiet on ok": ("sink_down", {}, [("k", "tb", "ok", 1.0)], []),
    # straggler: a rank's score above threshold for patience records; once per episode
    "straggler fires after patience records": (
        "straggler", {"patience": 3}, scores([1.1, 2.0, 2.0, 2.0, 2.0]), [(3, "straggler", "ranks/straggler_score/rank1")]),
    "straggler quiet on short bursts": ("straggler", {"patience": 3}, scores([1.0, 2.0, 2.0, 1.2] * 5), []),
    "straggler re-arms": ("straggler", {"patience": 2}, scores([2.0] * 3 + [1.0] + [2.0] * 2),
                          [(1, "straggler", "ranks/straggler_score/rank1"), (5, "straggler", "ranks/straggler_score/rank1")]),
    # rank_hang: a rank's heartbeat counter stops moving for timeout_s (by rank 0's clock)
    "rank_hang fires after timeout_s": (
        "rank_hang", {"timeout_s": 5.0}, beats([1, 2, 3] + [3] * 10), [(7, "rank_hang", "ranks/heartbeat_age_s/rank1")]),
    "rank_hang quiet while the counter moves": ("rank_hang", {"timeout_s": 2.0}, beats(list(range(30))), []),
    "rank_hang re-arms when the rank beats again": (
        "rank_hang", {"timeout_s": 2.0}, beats([1] * 5 + [2, 3] + [3] * 5),
        [(7, "rank_hang", "ranks/heartbeat_age_s/rank1")] * 2),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_rule(case: str) -> None:
    name, settings, script, expected = CASES[case]
    assert run(BUILTIN_RULES[name](**settings), script) == expected


@pytest.mark.parametrize("name", list(BUILTIN_RULES))
def test_every_rule_has_a_firing_case_and_a_quiet_case(name: str) -> None:
    cases = [c for c in CASES.values() if c[0] == name]
    assert any(c[3] for c in cases) and any(not c[3] for c in cases)


def test_event_carries_action_severity_value_threshold() -> None:
    rule = BUILTIN_RULES["spike"](action="stop", severity="critical", threshold=8.0)
    events = [e for item in losses(120, {100: 40.0}) for e in rule.on_metrics(item[1], item[2], item[3])]
    (event,) = events
    assert (event.action, event.severity, event.value, event.threshold, event.time) == ("stop", "critical", 40.0, 8.0, 1100.0)
    assert "train/loss = 40 at step 100" in event.message


def test_stall_event_value_and_limit() -> None:
    rule = BUILTIN_RULES["stall"](floor_s=10.0)
    (event,) = [e for item in [*steps(10), ("t", 1021.0)] for e in run_one(rule, item)]
    assert event.value == pytest.approx(12.0) and event.threshold == 10.0 and event.time == 1021.0


def run_one(rule: Rule, item: tuple) -> list:
    return rule.on_metrics(item[1], item[2], item[3]) if item[0] == "m" else rule.on_tick(item[1])
