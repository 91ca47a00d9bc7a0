"""The GPU collector: device selection, "telemetry is off", field-level failure isolation.

What needs no GPU runs everywhere. Reading a real GPU needs NVML and a device; those tests
skip with the reason NVML gives (scripts/gpu_check.sh is the end-to-end check on a GPU box).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from codex_ml.monitoring.collectors import Unavailable
from codex_ml.monitoring.collectors.cpu import CpuCollector
from codex_ml.monitoring.collectors.gpu import GpuCollector, GpuDevice, parse_visible_devices, select_devices
from codex_ml.monitoring.system_metrics import SystemMetricsLogger, flatten_sample
from codex_ml.rundir.reader import iter_records

SRC = str(Path(__file__).resolve().parents[2] / "src")
UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-bbbb3333-0000"]


def _nvml_problem() -> str | None:
    """None when NVML starts here and sees a GPU, else why not."""
    collector = GpuCollector(visible=None)
    try:
        collector.start()
    except Unavailable as exc:
        return str(exc)
    collector.stop()
    return None


def _real_gpu() -> GpuCollector:
    problem = _nvml_problem()
    if problem:
        pytest.skip(f"needs an NVIDIA GPU with NVML: {problem}")
    collector = GpuCollector(visible=None)
    collector.start()
    return collector


# -- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("-1", []),
        ("0,1", [0, 1]),
        (" 1 , 0 ", [1, 0]),
        ("0,-1,1", [0]),
        ("1,foo,0", [1]),
        ("0,0,2", [0, 2]),
        ("GPU-bbbb2222,0", ["GPU-bbbb2222", 0]),
        ("MIG-1234", ["MIG-1234"]),
    ],
)
def test_parse_visible_devices(value: str | None, expected: list[Any] | None) -> None:
    assert parse_visible_devices(value) == expected


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (None, [0, 1, 2]),
        ([2, 0], [2, 0]),
        ([0, 7, 1], [0]),  # CUDA ignores a bad index and all after it
        (["GPU-bbbb2222"], [1]),  # a unique UUID prefix is enough
        (["GPU-bbbb", 0], []),  # an ambiguous prefix ends the list
        (["GPU-aaaa1111-0000", 2], [0, 2]),
        (["MIG-1234"], []),
        ([], []),
    ],
)
def test_select_devices(entries: list[Any] | None, expected: list[int]) -> None:
    assert select_devices(entries, UUIDS) == expected


# -- telemetry off ---------------------------------------------------------------------
def test_gpu_off_is_one_line_and_cpu_goes_on(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    problem = _nvml_problem()
    if problem is None:
        pytest.skip("NVML works here, so GPU telemetry is not off")
    path = tmp_path / "sys.jsonl"
    logger = SystemMetricsLogger(path, 0.1).start()
    time.sleep(0.25)
    logger.stop()
    lines = [line for line in capfd.readouterr().err.splitlines() if "GPU" in line]
    assert lines == [f"[monitoring] system-metrics: {problem}"]
    assert problem.startswith("GPU telemetry is off (")
    records = list(iter_records(path))
    assert not logger.gpu_enabled and records and all("cpu" in r and "gpu" not in r for r in records)


def test_cuda_visible_devices_hiding_every_gpu_turns_gpu_off() -> None:
    with pytest.raises(Unavailable, match="GPU telemetry is off"):
        GpuCollector(visible="-1").start()


def test_missing_pynvml_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import sys

            class BlockPynvml:
                def find_spec(self, name, path=None, target=None):
                    if name == "pynvml":
                        raise ModuleNotFoundError("No module named 'pynvml'", name=name)
                    return None

            sys.meta_path.insert(0, BlockPynvml())
            """
        )
    )
    code = (
        "import time\nfrom codex_ml.monitoring.system_metrics import SystemMetricsLogger\n"
        "with SystemMetricsLogger('sys.jsonl', 0.1) as logger:\n    time.sleep(0.25)\n"
        "print(logger.samples_written > 0, logger.gpu_enabled)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), SRC])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
    assert result.stderr.strip().splitlines() == [
        "[monitoring] system-metrics: GPU telemetry is off (pynvml is not installed; pip install 'codex-ml[gpu]')"
    ]


# -- one failing field does not lose the others --------------------------------------
class ScriptedGpu(GpuCollector):
    """Our collector with two pretend devices and field readers we script (no NVML involved)."""

    def start(self) -> None:
        self.devices = [
            GpuDevice(0, 1, "GPU-test-0", "test", handle="h0"),
            GpuDevice(1, 0, "GPU-test-1", "test", handle="h1"),
        ]
        self.readers = {
            "utilization": lambda handle: {"utilization_percent": 87.0},
            "power": self._broken_on_h1,
            "temperature": self._always_broken,
            "memory": lambda handle: {"memory_used_bytes": 5, "memory_total_bytes": 10},
        }

    @staticmethod
    def _broken_on_h1(handle: str) -> dict[str, float]:
        if handle == "h1":
            raise RuntimeError("Not Supported")
        return {"power_w": 300.0}

    @staticmethod
    def _always_broken(handle: str) -> dict[str, float]:
        raise OSError("driver went away")


def test_a_failing_field_keeps_the_other_fields() -> None:
    warnings: list[str] = []
    collector = ScriptedGpu()
    collector.warn = warnings.append
    collector.start()
    for _ in range(3):
        collector.collect()
        rows = collector.aggregate()
        collector.clear()
    assert rows[0] == {"index": 0, "nvml_index": 1, "uuid": "GPU-test-0", "name": "test", "utilization_percent": 87.0,
                       "power_w": 300.0, "memory_used_bytes": 5, "memory_total_bytes": 10}  # fmt: skip
    assert "power_w" not in rows[1] and rows[1]["utilization_percent"] == 87.0 and rows[1]["memory_used_bytes"] == 5
    assert sorted(warnings) == [  # once per device and field, not once per sample
        "gpu 0 (GPU-test-0): temperature unavailable (driver went away); other fields go on",
        "gpu 1 (GPU-test-1): power unavailable (Not Supported); other fields go on",
        "gpu 1 (GPU-test-1): temperature unavailable (driver went away); other fields go on",
    ]


def test_gpu_rows_are_written_and_flattened_by_index(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gpu.jsonl"
    logger = SystemMetricsLogger(path, 0.1, collectors=[CpuCollector(), ScriptedGpu()]).start()
    time.sleep(0.25)
    logger.stop()
    record = next(iter_records(path))
    assert logger.gpu_enabled and [row["uuid"] for row in record["gpu"]] == ["GPU-test-0", "GPU-test-1"]
    flat = flatten_sample(record)
    assert flat["system/gpu/0/utilization_percent"] == 87.0 and flat["system/gpu/0/power_w"] == 300.0
    assert "system/gpu/1/power_w" not in flat and "system/gpu/1/memory_used_bytes" in flat
    assert "[monitoring] system-metrics: gpu 1 (GPU-test-1): power unavailable" in capfd.readouterr().err


# -- a real GPU ----------------------------------------------------------------------------
@pytest.mark.gpu
def test_real_gpu_fields() -> None:
    collector = _real_gpu()
    try:
        collector.collect()
        rows = collector.aggregate()
    finally:
        collector.stop()
    assert rows and all(row["uuid"].startswith(("GPU-", "MIG-")) for row in rows)
    for row in rows:
        assert 0 <= row["utilization_percent"] <= 100
        assert 0 < row["memory_used_bytes"] <= row["memory_total_bytes"]
        assert "temperature_c" in row and "sm_clock_mhz" in row and "process_memory_used_bytes" in row


@pytest.mark.gpu
def test_real_gpu_selected_by_uuid() -> None:
    collector = _real_gpu()
    uuids = [device.uuid for device in collector.devices]
    collector.stop()
    chosen = GpuCollector(visible=f"{uuids[-1]},0")
    chosen.start()
    try:
        assert [d.uuid for d in chosen.devices][0] == uuids[-1] and chosen.devices[0].index == 0
    finally:
        chosen.stop()
