"""System-metrics samples as the sinks see them: one nested sample record -> flat ``system/...`` numbers.

In the read layer because the sampler (monitoring), the loaders (monitoring) and the health
backtest (health) all name a sample's values the same way.
"""

from __future__ import annotations

from typing import Any

from codex_ml.rundir.encoding import decode_number

__all__ = ["NOT_METRICS", "flatten_sample"]

#: Record keys that describe a sample rather than measure something; never flattened.
NOT_METRICS = frozenset({"v", "time", "sample", "rank", "processes", "index", "nvml_index", "pid"})


def flatten_sample(record: dict[str, Any]) -> dict[str, float]:
    """One sample as flat ``system/<group>/<field>`` numbers (what sinks and exporters get).

    Nested groups add levels (``system/pressure/io/some_avg10``), GPUs are keyed by their
    index (``system/gpu/0/utilization_percent``) and per-core values by core number
    (``system/cpu/per_core/3``). Per-process rows are left out (pids come and go, so they
    would make unbounded metric names); their totals are in ``system/process/...``.
    """
    flat: dict[str, float] = {}
    for group, value in record.items():
        if group not in NOT_METRICS:
            _flatten(f"system/{group}", value, flat)
    return flat


def _flatten(prefix: str, value: Any, flat: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in NOT_METRICS:
                _flatten(f"{prefix}/{key}", item, flat)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            key = item.get("index", position) if isinstance(item, dict) else position
            _flatten(f"{prefix}/{key}", item, flat)
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            flat[prefix] = float(decode_number(value))  # "NaN" etc. from a file read back
        except ValueError:
            pass  # a label such as a GPU's name
