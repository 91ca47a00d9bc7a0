"""The shared config machinery: type hints, dataclasses from mappings, overrides, trees, YAML files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from codex_ml.config_schema import (
    YamlFileError, build_dataclass, check_mapping, coerce, copy_tree, delete_dotted, describe, dotted, merge_tree,
    parse_value, read_yaml_file, set_dotted, split_override,
)
from codex_ml.errors import CodexMLError


@dataclass
class Inner:
    steps: int = 10
    lr: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    path: str | None = None
    inner: Inner = field(default_factory=Inner)
    slow: Inner = field(default_factory=lambda: Inner(steps=99))


@pytest.mark.parametrize(("value", "hint", "expected"), [
    (3, int, (True, 3)), (True, int, (False, None)), (3, float, (True, 3.0)), (True, float, (False, None)),
    ("1e-3", float, (False, None)), (False, bool, (True, False)), (1, bool, (False, None)), ("s", str, (True, "s")),
    (None, str, (False, None)), (None, str | None, (True, None)), ("p", str | None, (True, "p")),
    (2, int | None, (True, 2)), ("a", Literal["a", "b"], (True, "a")), ("c", Literal["a", "b"], (False, "c")),
    ("one", list[str], (True, "one")), ([1], list[str], (True, [1])),
])  # fmt: skip
def test_coerce_follows_the_type_hint(value: object, hint: object, expected: tuple[bool, object]) -> None:
    """Bools are not numbers, ints widen to floats, unions try each option; lists are left to the dataclass."""
    ok, converted = coerce(value, hint)
    assert (ok, converted if ok else expected[1]) == expected
    assert type(converted) is type(expected[1]) or not ok


def test_numeric_strings_only_when_asked() -> None:
    """PyYAML's safe loader leaves 1e-3 a string; numeric_strings accepts it as the float it is."""
    assert coerce("1e-3", float, numeric_strings=True) == (True, 1e-3)
    assert coerce("fast", float, numeric_strings=True) == (False, None)
    assert coerce("2", int, numeric_strings=True) == (False, None)
    assert coerce("1e-3", float | None, numeric_strings=True) == (True, 1e-3)


def test_describe_spells_hints_for_people() -> None:
    assert [describe(h) for h in (int, str | None, Literal["char", "bpe"])] == ["int", "str or null", "one of 'char', 'bpe'"]
    assert (dotted("", "seed"), dotted("model", "n_layer")) == ("seed", "model.n_layer")


def test_check_mapping_collects_every_problem_in_data_order() -> None:
    problems: list[str] = []
    values = check_mapping({"lr": "fast", "zz": 1, "steps": 3}, {"steps": int, "lr": float}, "train", problems)
    assert values == {"steps": 3}
    assert problems == ["train.lr: expected float, got str 'fast'", "train.zz: unknown key (valid: lr, steps)"]


def test_build_dataclass_nests_and_keeps_section_defaults() -> None:
    """Left-out keys keep the default instance's values, also a section's own (slow.steps=99)."""
    problems: list[str] = []
    built = build_dataclass(Outer, {"mode": "b", "slow": {"lr": 1}, "inner": {"steps": 5}}, "", problems)
    assert problems == []
    assert built == Outer(mode="b", inner=Inner(steps=5), slow=Inner(steps=99, lr=1.0))
    assert isinstance(built.slow.lr, float)


def test_build_dataclass_lists_unknown_keys_then_misfits_then_sections() -> None:
    problems: list[str] = []
    build_dataclass(Outer, {"zeta": 1, "inner": {"steps": "x"}, "mode": "c", "alpha": 2, "slow": 3}, "", problems)
    assert problems == [
        "alpha: unknown key (valid: inner, mode, name, path, slow)",
        "zeta: unknown key (valid: inner, mode, name, path, slow)",
        "mode: expected one of 'a', 'b', got str 'c'",
        "inner.steps: expected int, got str 'x'",
        "slow: expected a mapping, got int",
    ]


def test_build_dataclass_names_a_non_mapping_top_level() -> None:
    problems: list[str] = []
    assert build_dataclass(Inner, [1], "", problems) == Inner()
    assert problems == ["(top level): expected a mapping, got list"]


def test_split_and_parse_overrides() -> None:
    assert split_override("a.b=x=y") == ("a.b", "x=y")
    assert split_override("a.b") is None and split_override("=3") is None
    assert [parse_value(t) for t in ("3", "true", "[a, b]", "dpo", "  ", "1.5")] == [3, True, ["a", "b"], "dpo", None, 1.5]
    import yaml

    with pytest.raises(yaml.YAMLError):
        parse_value("[1,")


def test_set_dotted_creates_sections_and_reports_or_replaces_a_value_in_the_way() -> None:
    tree: dict = {"seed": 1}
    assert set_dotted(tree, ["model", "n_layer"], 2) is None
    assert set_dotted(tree, ["seed", "x"], 3) == "seed"
    assert tree == {"seed": 1, "model": {"n_layer": 2}}
    assert set_dotted(tree, ["seed", "x"], 3, replace=True) is None
    assert tree["seed"] == {"x": 3}


def test_tree_helpers() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert merge_tree(base, {"a": {"c": 5}, "d": {"e": 1}}) == {"a": {"b": 1, "c": 5}, "d": {"e": 1}}
    copied = copy_tree(base)
    copied["a"]["b"] = 9
    assert base["a"]["b"] == 1
    delete_dotted(copied, "a.c")
    delete_dotted(copied, "x.y.z")  # absent: no error
    assert copied == {"a": {"b": 9}, "d": 3}


def test_read_yaml_file_reports_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(YamlFileError) as caught:
        read_yaml_file(broken)
    err = caught.value
    assert isinstance(err, CodexMLError) and not err.missing
    assert str(err).startswith(f"{broken}:3: not valid YAML") and err.line == 3 and "line" in err.detail
    with pytest.raises(YamlFileError, match="does not exist") as missing:
        read_yaml_file(tmp_path / "nope.yaml")
    assert missing.value.missing and missing.value.line is None


def test_read_yaml_file_parses_with_the_given_reader(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\n")
    assert read_yaml_file(path) == {"lr": "1e-3"}  # PyYAML's safe loader: no dot, no float
    assert read_yaml_file(path, lambda p: {"read": p.name}) == {"read": "c.yaml"}
    path.write_text("")
    assert read_yaml_file(path) is None
