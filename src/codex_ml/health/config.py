"""The ``health:`` config section: which rules run, with which settings, and ``key=value`` overrides.

```yaml
health:
  enabled: true          # false: no rule runs
  spike: {threshold: 10, action: stop}
  stall: {floor_s: 60}
  memory_leak: false     # shorthand for {enabled: false}
  my_rule: {}            # a plugin rule (entry-point group codex_ml.health_rules)
```

Every built-in rule runs with its defaults unless its section says otherwise; a plugin rule runs
when its name appears. Problems are collected and reported together, each naming its key
(``health.spike.threshold: expected a number, got 'x'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from codex_ml.config_schema import parse_value, split_override
from codex_ml.errors import CodexMLError
from codex_ml.health.events import ACTIONS, SEVERITIES
from codex_ml.health.rules import GradExplosion, NonFinite, Param, Rule, SinkDown, Spike
from codex_ml.health.rules_progress import DataStall, MemoryLeak, Stall, ThroughputDrop
from codex_ml.health.rules_ranks import RankHang, Straggler

__all__ = ["BUILTIN_RULES", "HealthConfig", "HealthConfigError", "load_rule_class"]

#: The built-in rules by name, in the order they run (docs/health.md).
BUILTIN_RULES: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (NonFinite, Spike, GradExplosion, Stall, ThroughputDrop, DataStall, MemoryLeak, SinkDown,
                Straggler, RankHang)
}

#: The plugin group of third-party rules.
PLUGIN_GROUP = "health_rules"


class HealthConfigError(CodexMLError, ValueError):
    """One or more problems in a ``health:`` section, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_rule_class(name: str) -> type[Rule]:
    """The rule class registered as ``name``: a built-in, else the ``health_rules`` plugin group.

    The registry is imported only here and only for a name that is not built in, so a config of
    built-in rules never reads entry points. Raises a registry error (a CodexMLError) if unknown.
    """
    if name in BUILTIN_RULES:
        return BUILTIN_RULES[name]
    from codex_ml.plugins.registry import Registry

    return Registry().load(PLUGIN_GROUP, name)


@dataclass
class HealthConfig:
    """Whether health checks run and each rule's settings (``{rule: {setting: value}}``)."""

    enabled: bool = True
    rules: dict[str, dict[str, Any]] = field(default_factory=lambda: {n: c.defaults() for n, c in BUILTIN_RULES.items()})

    @classmethod
    def from_mapping(cls, mapping: Any, where: str = "health") -> HealthConfig:
        """The config a ``health:`` mapping describes (None or {}: the defaults)."""
        problems: list[str] = []
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise HealthConfigError([f"{where}: expected a mapping, got {type(mapping).__name__} {mapping!r}"])
        enabled = mapping.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{where}.enabled: expected true or false, got {enabled!r}")
            enabled = True
        rules = {name: rule.defaults() for name, rule in BUILTIN_RULES.items()}
        for name, section in mapping.items():
            if name == "enabled":
                continue
            settings = _rule_settings(str(name), section, f"{where}.{name}", problems)
            if settings is not None:
                rules[str(name)] = settings
        if problems:
            raise HealthConfigError(problems)
        return cls(enabled=enabled, rules=rules)

    def with_overrides(self, overrides: Iterable[str], where: str = "health") -> HealthConfig:
        """A copy with ``health.<rule>.<key>=value`` (or ``health.enabled=false``) items applied.

        Values are read as YAML (``8``, ``stop``, ``[train/loss, val/loss]``); keys not under
        ``where`` are a problem, like unknown rules and settings.
        """
        tree = self.to_dict()
        problems = []
        for item in overrides:
            split = split_override(item)
            parts = split[0].split(".") if split else []
            if not split or parts[0] != where or len(parts) not in (2, 3):
                problems.append(f"{item}: expected {where}.<rule>.<key>=value or {where}.enabled=true|false")
                continue
            try:
                value = parse_value(split[1])
            except Exception as exc:  # noqa: BLE001 - yaml.YAMLError, named without importing yaml
                problems.append(f"{split[0]}: cannot read {split[1]!r} ({type(exc).__name__})")
                continue
            if len(parts) == 2:
                tree[parts[1]] = value
            else:
                section = tree.get(parts[1])
                tree[parts[1]] = {**(section if isinstance(section, dict) else {}), parts[2]: value}
        if problems:
            raise HealthConfigError(problems)
        return HealthConfig.from_mapping(tree, where)

    def to_dict(self) -> dict[str, Any]:
        """The ``health:`` mapping of this config (every rule with every setting); round-trips."""
        return {"enabled": self.enabled, **{name: dict(settings) for name, settings in self.rules.items()}}

    def active(self) -> dict[str, dict[str, Any]]:
        """The rules that run: none when health is off, else those with ``enabled: true``."""
        if not self.enabled:
            return {}
        return {name: settings for name, settings in self.rules.items() if settings.get("enabled", True)}

    def build_rules(self) -> list[Rule]:
        """One new rule object per active rule, in config order."""
        return [load_rule_class(name)(**settings) for name, settings in self.active().items()]


def _rule_settings(name: str, section: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    """A rule's settings (defaults filled in), or None after adding problems."""
    try:
        rule = load_rule_class(name)
    except CodexMLError as exc:
        known = ", ".join(BUILTIN_RULES)
        problems.append(f"{where}: unknown health rule {name!r} (built-in: {known}; or a health_rules plugin: {exc})")
        return None
    if isinstance(section, bool):  # `spike: false` is short for `spike: {enabled: false}`
        section = {"enabled": section}
    elif section is None:
        section = {}
    if not isinstance(section, Mapping):
        problems.append(f"{where}: expected a mapping of settings or true/false, got {section!r}")
        return None
    params = rule.params()
    settings = rule.defaults()
    before = len(problems)
    for key, value in section.items():
        param = params.get(str(key))
        if param is None:
            problems.append(f"{where}.{key}: unknown setting (valid: {', '.join(params)})")
            continue
        ok, converted = _convert(value, param)
        if not ok:
            problems.append(f"{where}.{key}: expected {_describe(param)}, got {value!r}")
        elif param.minimum is not None and converted is not None and converted < param.minimum:
            problems.append(f"{where}.{key}: must be at least {param.minimum:g}, got {value!r}")
        else:
            settings[str(key)] = converted
    _check_choices(rule, settings, where, problems)
    if len(problems) == before:
        problems.extend(f"{where}.{key}: {why}" for key, why in rule.check(settings))
    return settings if len(problems) == before else None


def _check_choices(rule: type[Rule], settings: dict[str, Any], where: str, problems: list[str]) -> None:
    if settings["action"] not in rule.ALLOWED_ACTIONS:
        allowed = ", ".join(rule.ALLOWED_ACTIONS)
        problems.append(f"{where}.action: expected one of {allowed} for this rule, got {settings['action']!r}"
                        + ("" if settings["action"] in ACTIONS else f" (actions: {', '.join(ACTIONS)})"))
    if settings["severity"] not in SEVERITIES:
        problems.append(f"{where}.severity: expected one of {', '.join(SEVERITIES)}, got {settings['severity']!r}")


def _convert(value: Any, param: Param) -> tuple[bool, Any]:
    """``(True, value as param.kind)`` or ``(False, None)``; bools are never numbers."""
    kind = param.kind
    if value is None:
        return (True, None) if param.default is None else (False, None)
    if isinstance(value, bool) or kind is bool:
        return (True, value) if isinstance(value, bool) and kind is bool else (False, None)
    if kind is float or (param.default is None and kind is not str):
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if kind is int:
        return (True, value) if isinstance(value, int) else (False, None)
    if kind is list:
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, (list, tuple)) and all(isinstance(item, str) and item for item in items)
        return (True, list(items)) if ok else (False, None)
    if kind is str:
        return (True, value) if isinstance(value, str) else (False, None)
    return True, value


def _describe(param: Param) -> str:
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
             list: "a list of metric-name patterns"}
    return names.get(param.kind, "a number or null")
