"""`import codex_ml` and the tracking core stay light: no torch and no tracking backend is
imported unless a feature that needs it is switched on. Checked in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "mlflow", "wandb", "tensorboard", "tensorflow", "duckdb", "pyarrow")

_REPORT_HEAVY = """
import json, sys
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _heavy_modules_after(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter and return the heavy modules it left imported."""
    program = textwrap.dedent(code) + _REPORT_HEAVY.format(heavy=HEAVY)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "runs")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_report_detects_a_heavy_import(tmp_path: Path) -> None:
    """Control: the probe really sees a heavy module when one is imported."""
    assert "torch" in _heavy_modules_after("import torch", tmp_path)


@pytest.mark.parametrize(
    "code",
    [
        "import codex_ml",
        "import codex_ml, codex_ml.tracking\nfrom codex_ml.tracking import start_run",
        "import codex_ml.tracking.run",
        "import codex_ml\ncodex_ml.start_run",
    ],
    ids=["package", "tracking", "tracking.run", "lazy-start_run"],
)
def test_imports_pull_no_heavy_modules(tmp_path: Path, code: str) -> None:
    """Importing the package, the tracking API or the run module imports no heavy module."""
    assert _heavy_modules_after(code, tmp_path) == []


def test_full_run_without_sinks_pulls_no_heavy_modules(tmp_path: Path) -> None:
    """A whole run with no sinks (metrics, histogram, text, params, close) imports no heavy
    module either, and really wrote its files."""
    code = """
    import sys
    from pathlib import Path
    from codex_ml.tracking import start_run
    with start_run("light", output_root=sys.argv[1], flush_interval=0.05, params={"a": {"b": 1}}) as run:
        for step in range(10):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        run.log_histogram("w", [0.0, 1.0, 2.0], step=9)
        run.log_text("sample", "hi", step=9)
    assert Path(run.paths.summary).exists()
    assert len(Path(run.paths.metrics).read_text().splitlines()) == 10
    """
    assert _heavy_modules_after(code, tmp_path) == []
    assert (tmp_path / "runs" / "light" / "histograms.ndjson").read_text().count("\n") == 1
