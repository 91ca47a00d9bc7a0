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
    """With tracking listed above monitoring, monitoring's real imports of tracking point up: the
    contract reports them, so a new upward import would fail the suite."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    order = '    "codex_ml.monitoring",\n    "codex_ml.tracking",\n'
    assert order in text
    swapped = text.replace(order, '    "codex_ml.tracking",\n    "codex_ml.monitoring",\n')
    (tmp_path / "pyproject.toml").write_text(swapped, encoding="utf-8")
    result = _lint(tmp_path / "pyproject.toml")
    assert result.returncode == 1
    assert "codex_ml.monitoring." in result.stdout and "-> codex_ml.tracking" in result.stdout
