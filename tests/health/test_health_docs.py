"""docs/health.md documents every rule and every setting with its real default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.health.config import BUILTIN_RULES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "health.md").read_text(encoding="utf-8")


def _section(name: str) -> str:
    return DOC.split(f"### `{name}`")[1].split("\n### ")[0].split("\n## ")[0]


@pytest.mark.parametrize("name", list(BUILTIN_RULES))
def test_every_rule_and_setting_is_documented(name: str) -> None:
    assert f"### `{name}`" in DOC
    params = BUILTIN_RULES[name].PARAMS
    if name == "grad_explosion":  # "same settings as spike, with ..." and the ones that differ
        for key in ("metrics", "threshold"):
            assert f"`{key}: {json.dumps(params[key].default)}`" in _section(name), key
        params = {k: p for k, p in params.items() if k not in ("metrics", "threshold")}
        name = "spike"
    for key, param in params.items():
        shown = param.default if isinstance(param.default, str) else json.dumps(param.default)
        assert f"| `{key}` | `{shown}` |" in _section(name), (name, key)


def test_measurement_table_is_filled_in() -> None:
    assert "MEASUREMENT_TABLE" not in DOC
