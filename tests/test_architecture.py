"""The import contracts in pyproject.toml ([tool.importlinter]) hold: layers point down, each
backend module stands alone, no import cycles beyond the listed exceptions (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).parent / "lint-imports")


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT, "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


def test_import_contracts_hold() -> None:
    result = _lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    """Without its listed exception, the plugin registry's import of the built-in table is reported:
    the contract sees an upward import and the suite would fail on a new one."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    exception = '    "codex_ml.plugins.registry -> codex_ml.plugins.builtins",\n'
    assert exception in text
    (tmp_path / "pyproject.toml").write_text(text.replace(exception, ""), encoding="utf-8")
    result = _lint(tmp_path / "pyproject.toml")
    assert result.returncode == 1
    assert "codex_ml.plugins.registry -> codex_ml.plugins.builtins" in result.stdout
