"""start_run's services from the layer above (tracking/services.py): the system-metrics sampler and
the resume back-fill are bound by name, so tracking never imports monitoring, and a registered
implementation replaces the default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codex_ml.tracking import start_run
from codex_ml.tracking.services import RESUME_BACKFILL, SYSTEM_SAMPLER, register, service

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_defaults_are_the_monitoring_implementations() -> None:
    from codex_ml.monitoring.replay import replay
    from codex_ml.monitoring.system_metrics import start_for_run

    assert service(RESUME_BACKFILL) is replay
    assert service(SYSTEM_SAMPLER) is start_for_run


def test_starting_a_run_without_system_metrics_imports_no_monitoring_module(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from codex_ml.tracking import start_run\n"
        f"run = start_run('plain', output_root={str(tmp_path)!r})\n"
        "run.log_metrics({'loss': 1.0}, step=1)\n"
        "run.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('codex_ml.monitoring')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


class _Sampler:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_a_registered_sampler_is_the_one_start_run_starts(tmp_path: Path) -> None:
    calls: list[tuple[Any, Path]] = []
    sampler = _Sampler()

    def start(config: Any, run: Any, checkpoint_dir: Path) -> _Sampler:
        calls.append((config.system_metrics, checkpoint_dir))
        return sampler

    register(SYSTEM_SAMPLER, start)
    try:
        run = start_run("sampled", output_root=str(tmp_path), system_metrics="AUTO")
        assert run.system_metrics is sampler
        run.close()
    finally:
        register(SYSTEM_SAMPLER, None)
    assert calls == [("AUTO", tmp_path / "sampled")]
    assert sampler.stopped


def test_an_unknown_service_name_is_refused() -> None:
    with pytest.raises(KeyError, match="resume_backfill"):
        register("sampler", lambda *a: None)
