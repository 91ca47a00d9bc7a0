"""The health: section: defaults, errors naming their key, key=value overrides, round trip."""

from __future__ import annotations

import pytest

from codex_ml.health import HealthConfig, HealthConfigError
from codex_ml.health.config import BUILTIN_RULES, load_rule_class

BUILTINS = ["nonfinite", "spike", "grad_explosion", "stall", "throughput_drop", "data_stall", "memory_leak",
            "sink_down", "straggler", "rank_hang"]


def test_defaults_enable_every_builtin_rule_with_action_log() -> None:
    config = HealthConfig.from_mapping(None)
    assert list(config.active()) == BUILTINS == list(BUILTIN_RULES)
    assert all(settings["action"] == "log" for settings in config.rules.values())
    assert config.rules["spike"]["window"] == 100 and config.rules["spike"]["warmup"] == 50
    assert config.rules["nonfinite"]["severity"] == "critical"
    assert [rule.name for rule in config.build_rules()] == BUILTINS


def test_mapping_sets_disables_and_round_trips() -> None:
    config = HealthConfig.from_mapping({"spike": {"threshold": 6, "action": "stop"}, "memory_leak": False,
                                        "stall": {"floor_s": 1e2, "metrics": "train/loss"}})
    assert config.rules["spike"]["threshold"] == 6.0 and isinstance(config.rules["spike"]["threshold"], float)
    assert "memory_leak" not in config.active() and config.rules["stall"]["metrics"] == ["train/loss"]
    assert HealthConfig.from_mapping(config.to_dict()) == config
    assert HealthConfig.from_mapping({"enabled": False}).active() == {}


@pytest.mark.parametrize(("mapping", "message"), [
    ({"spike": {"threshold": "x"}}, "health.spike.threshold: expected a number, got 'x'"),
    ({"spike": {"window": 2.5}}, "health.spike.window: expected an integer, got 2.5"),
    ({"spike": {"window": 1}}, "health.spike.window: must be at least 3, got 1"),
    ({"spike": {"treshold": 3}}, "health.spike.treshold: unknown setting (valid: enabled, action, severity,"),
    ({"spike": {"action": "explode"}}, "health.spike.action: expected one of log, stop, skip, rollback"),
    ({"stall": {"action": "rollback"}}, "health.stall.action: expected one of log, stop for this rule, got 'rollback'"),
    ({"spike": {"direction": "sideways"}}, "health.spike.direction: expected one of 'up', 'down', 'both'"),
    ({"nonfinite": {"metrics": [1]}}, "health.nonfinite.metrics: expected a list of metric-name patterns"),
    ({"spike": {"enabled": "yes"}}, "health.spike.enabled: expected true or false"),
    ({"enabled": 1}, "health.enabled: expected true or false, got 1"),
    ({"no_such_rule": {}}, "health.no_such_rule: unknown health rule 'no_such_rule' (built-in: nonfinite, spike"),
    ({"spike": 3}, "health.spike: expected a mapping of settings or true/false, got 3"),
    ([1], "health: expected a mapping, got list"),
])  # fmt: skip
def test_problems_name_their_key(mapping: object, message: str) -> None:
    with pytest.raises(HealthConfigError) as info:
        HealthConfig.from_mapping(mapping)
    assert message in str(info.value)


def test_problems_are_reported_together() -> None:
    with pytest.raises(HealthConfigError) as info:
        HealthConfig.from_mapping({"spike": {"threshold": "x"}, "stall": {"factor": "y"}})
    assert [p.split(":")[0] for p in info.value.problems] == ["health.spike.threshold", "health.stall.factor"]


def test_overrides() -> None:
    config = HealthConfig().with_overrides(["health.spike.action=stop", "health.spike.threshold=1e1",
                                            "health.memory_leak.enabled=false", "health.nonfinite.metrics=[a, b]"])
    assert config.rules["spike"]["action"] == "stop" and config.rules["spike"]["threshold"] == 10.0
    assert "memory_leak" not in config.active() and config.rules["nonfinite"]["metrics"] == ["a", "b"]
    assert HealthConfig().with_overrides(["health.enabled=false"]).active() == {}
    assert HealthConfig().rules["spike"]["action"] == "log"  # the original is unchanged


@pytest.mark.parametrize(("item", "message"), [
    ("health.spike.threshold=x", "health.spike.threshold: expected a number, got 'x'"),
    ("spike.threshold=3", "spike.threshold=3: expected health.<rule>.<key>=value"),
    ("health.spike", "health.spike: expected health.<rule>.<key>=value"),
    ("health.spike.threshold=[", "health.spike.threshold: cannot read '['"),
])  # fmt: skip
def test_bad_overrides(item: str, message: str) -> None:
    with pytest.raises(HealthConfigError, match=None) as info:
        HealthConfig().with_overrides([item])
    assert message in str(info.value)


def test_load_rule_class_builtin_and_unknown() -> None:
    assert load_rule_class("spike") is BUILTIN_RULES["spike"]
    with pytest.raises(Exception, match="no_such_rule"):
        load_rule_class("no_such_rule")
