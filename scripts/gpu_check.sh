#!/usr/bin/env bash
# End-to-end check of GPU telemetry, for a machine with an NVIDIA GPU (see docs/system-metrics.md).
#
#   scripts/gpu_check.sh                 # 6 s of sampling at 0.5 s while a CUDA matmul loop runs
#   GPU_CHECK_SECONDS=15 scripts/gpu_check.sh
#
# Runs SystemMetricsLogger while a small CUDA workload runs in this process (torch when it is
# installed with CUDA; otherwise the logger runs alone), prints the GPU fields it recorded, checks
# that CUDA_VISIBLE_DEVICES=<GPU uuid> selects exactly that GPU, then trains the tiny model on CUDA
# with `train-model --system-metrics AUTO` and checks its system_metrics.jsonl, then runs the GPU
# tests. Exits non-zero when GPU telemetry is off or a field is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

"$py" - "$workdir" "${GPU_CHECK_SECONDS:-6}" <<'PYTHON'
import sys, time
from pathlib import Path

from codex_ml.monitoring.collectors.cpu import CpuCollector
from codex_ml.monitoring.collectors.gpu import GpuCollector
from codex_ml.monitoring.system_metrics import SystemMetricsLogger, flatten_sample
from codex_ml.rundir.reader import iter_records

REQUIRED = ("utilization_percent", "memory_used_bytes", "memory_total_bytes", "temperature_c", "power_w",
            "sm_clock_mhz", "process_memory_used_bytes")
workdir, seconds = Path(sys.argv[1]), float(sys.argv[2])


def workload(seconds: float) -> str:
    """Keep the GPU busy with matmuls; returns what ran."""
    try:
        import torch
    except ImportError:
        time.sleep(seconds)
        return "no torch: the logger ran alone"
    if not torch.cuda.is_available():
        time.sleep(seconds)
        return f"torch {torch.__version__} sees no CUDA device: the logger ran alone"
    a = torch.randn(4096, 4096, device="cuda")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(20):
            a = torch.tanh(a @ a)
        torch.cuda.synchronize()
    return f"torch {torch.__version__}: 4096x4096 matmuls on {torch.cuda.get_device_name(0)}"


path = workdir / "system_metrics.jsonl"
logger = SystemMetricsLogger(path, 0.5).start()
ran = workload(seconds)
logger.stop()
records = list(iter_records(path))
print(f"workload: {ran}")
print(f"{len(records)} samples in {seconds:g} s; GPU telemetry {'on' if logger.gpu_enabled else 'OFF'}")
gpu_records = [r for r in records if r.get("gpu")]
if not gpu_records:
    sys.exit("FAIL: no sample has a 'gpu' group (see the '[monitoring] system-metrics:' line above)")

problems = []
for row in gpu_records[-1]["gpu"]:
    print(f"\nGPU {row['index']} (NVML index {row['nvml_index']}) {row['name']} {row['uuid']}")
    peak = max(r["gpu"][row["index"]].get("utilization_percent", -1) for r in gpu_records)
    for field in REQUIRED:
        print(f"  {field:28s} {row.get(field, 'MISSING')}")
        if field not in row:
            problems.append(f"GPU {row['index']}: {field} missing")
    print(f"  {'peak utilization_percent':28s} {peak}")
flat = flatten_sample(gpu_records[-1])
print("\nflat names:", ", ".join(sorted(k for k in flat if k.startswith("system/gpu/0/"))))

# CUDA_VISIBLE_DEVICES in its UUID form must select exactly that GPU.
last_uuid = gpu_records[-1]["gpu"][-1]["uuid"]
chosen = SystemMetricsLogger(workdir / "uuid.jsonl", 0.1, collectors=[CpuCollector(), GpuCollector(visible=last_uuid)])
with chosen:
    time.sleep(0.3)
rows = next(iter_records(workdir / "uuid.jsonl")).get("gpu", [])
print(f"\nCUDA_VISIBLE_DEVICES={last_uuid}: {[(r['index'], r['uuid']) for r in rows]}")
if [r["uuid"] for r in rows] != [last_uuid] or rows[0]["index"] != 0:
    problems.append(f"CUDA_VISIBLE_DEVICES={last_uuid} selected {rows}")
if problems:
    sys.exit("FAIL: " + "; ".join(problems))
print("\nOK: every GPU field was recorded")
PYTHON

# A short real training on CUDA through the trainer with --system-metrics AUTO: its
# <checkpoint_dir>/system_metrics.jsonl must hold the GPU fields too.
echo
echo "train-model on CUDA (tiny config, 200 steps) with --system-metrics AUTO --system-metrics-interval 0.5"
"$py" -m codex_ml.cli train-model --config configs/training/tiny.yaml --no-progress \
  --run-name gpu-check --output-root "$workdir/runs" --system-metrics AUTO --system-metrics-interval 0.5 \
  training.device=cuda training.max_steps=200
"$py" - "$workdir/runs/gpu-check/checkpoints/system_metrics.jsonl" <<'PYTHON'
import sys

from codex_ml.rundir.reader import iter_records

rows = [r for r in iter_records(sys.argv[1]) if r.get("gpu")]
if not rows:
    sys.exit(f"FAIL: the training run's {sys.argv[1]} has no GPU fields")
gpu = rows[-1]["gpu"][0]
print(f"training run: {len(rows)} samples with GPU fields; last: utilization {gpu.get('utilization_percent')} %, "
      f"memory {gpu.get('memory_used_bytes')} B, our processes {gpu.get('process_memory_used_bytes')} B")
if not any(r["gpu"][0].get("process_memory_used_bytes") for r in rows):
    sys.exit("FAIL: the trainer's own GPU memory was never recorded")
PYTHON

if "$py" -c "import pytest" 2>/dev/null; then
  "$py" -m pytest tests/monitoring/test_gpu_collector.py -q -p no:cacheprovider -rs
fi
