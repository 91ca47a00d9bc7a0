"""``codex-ml monitoring plot``: metric curves and system-metric panels as one PNG.

One panel per metric (losses first), runs overlaid; then system panels (CPU, memory,
process RSS, load, GPU) against seconds since the run's first sample, one curve per
system-metrics file (every DDP rank; wherever the run wrote it, see ``runs.resolve``).
Each curve is reduced with min/max-preserving downsampling, so a one-step spike is still
drawn. Non-finite points cannot be drawn; their count goes into the panel title.
matplotlib (extra ``export``) runs with the Agg backend: no display needed.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.errors import MissingExtraError
from codex_ml.monitoring.downsample import minmax_downsample
from codex_ml.monitoring.loading import MetricsData, Series, load
from codex_ml.monitoring.runs import SYSTEM, MonitoringInputError, resolve

MAX_PANELS = 24
#: System series drawn by default (suffixes of the flat ``system/...`` names).
SYSTEM_PANELS = ("cpu/percent", "memory/percent", "process/rss_bytes", "process/cpu_percent", "load/1m",
                 "utilization_percent", "memory_percent")  # fmt: skip


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError("plot", "matplotlib", "export") from exc
    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def choose_metrics(keys: list[str], patterns: list[str] | None) -> list[str]:
    """Keys matching any glob in ``patterns`` (all when None), loss-like keys first."""
    chosen = [k for k in keys if patterns is None or any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    return sorted(chosen, key=lambda k: (0 if "loss" in k.lower() else 1, keys.index(k)))


def system_keys(keys: list[str]) -> list[str]:
    """The system series worth a panel, in a stable order."""
    return [k for suffix in SYSTEM_PANELS for k in keys if k.endswith(suffix) and "/per_core/" not in k]


def plot(paths: list[str | Path], output: str | Path, *, patterns: list[str] | None = None, max_points: int = 2000,
         system: bool = True) -> int:  # fmt: skip
    """Write the PNG; returns the number of panels. Raises when nothing matches."""
    runs = [_load_run(Path(p), system) for p in paths]
    all_keys = list(dict.fromkeys(k for metrics, _ in runs if metrics for k in metrics.keys()))
    metric_keys = choose_metrics(all_keys, patterns)
    sys_keys = list(dict.fromkeys(k for _, files in runs for sysdata in files for k in system_keys(sysdata.keys())))
    panels = [("metric", k) for k in metric_keys] + [("system", k) for k in sys_keys]
    if not panels:
        raise MonitoringInputError(", ".join(map(str, paths)), f"no metric matches {patterns} (available: {', '.join(all_keys[:20])})")
    panels = panels[:MAX_PANELS]
    plt = _pyplot()
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3 * rows), squeeze=False)
    labels = [Path(p).name or str(p) for p in paths]
    for ax, (kind, key) in zip(axes.flat, panels):
        _draw_panel(ax, kind, key, runs, labels, max_points)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return len(panels)


def _load_run(path: Path, system: bool) -> tuple[MetricsData | None, list[MetricsData]]:
    """The run's metrics (None for a bare system file) and every system-metrics file (all ranks)."""
    source = resolve(path)
    if source.kind == SYSTEM:
        return None, [load(source.main, SYSTEM)]
    metrics = load(source.main, source.kind)
    return metrics, [load(file, SYSTEM) for file in source.system_files] if system else []


def _curves(kind: str, runs: list[tuple[Any, list[Any]]], labels: list[str]) -> list[tuple[MetricsData, str, float]]:
    """(data, label, time origin) of each curve source: one per run for metrics, one per system file for
    system panels (labelled with the file when a run has several), all ranks of a run on one clock."""
    if kind == "metric":
        return [(metrics, label, 0.0) for (metrics, _), label in zip(runs, labels) if metrics is not None]
    curves = []
    for (_, files), label in zip(runs, labels):
        start = min((data.time_span[0] for data in files if data.time_span), default=0.0)
        for data in files:
            curves.append((data, f"{label} {data.path.name}" if len(files) > 1 else label, start))
    return curves


def _draw_panel(ax: Any, kind: str, key: str, runs: list[tuple[Any, list[Any]]], labels: list[str],
                max_points: int) -> None:  # fmt: skip
    bad, drawn = 0, 0
    for data, label, start in _curves(kind, runs, labels):
        series = data.series.get(key)
        if series is None:
            continue
        x, y, skipped = _xy(series, kind, start)
        bad += skipped
        x, y = minmax_downsample(x, y, max_points)
        ax.plot(x, y, linewidth=1.0, label=label)
        drawn += 1
    ax.set_title(key + (f"  ({bad} NaN/Inf not drawn)" if bad else ""), fontsize=9)
    ax.set_xlabel("step" if kind == "metric" else "seconds since start")
    if "rss_bytes" in key:
        ax.yaxis.set_major_formatter(_mib_formatter())
    if len(runs) > 1 or drawn > 1:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)


def _xy(series: Series, kind: str, start: float) -> tuple[np.ndarray, np.ndarray, int]:
    finite = np.isfinite(series.values)
    x = series.steps if kind == "metric" else series.times - start
    return x[finite], series.values[finite], int((~finite).sum())


def _mib_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value / 2**20:.0f} MiB")
