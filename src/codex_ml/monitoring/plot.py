"""``codex-ml monitoring plot``: metric curves and system-metric panels as one PNG.

One panel per metric (losses first), runs overlaid; then system panels (CPU, memory,
process RSS, load, GPU) against seconds since the run's first sample, one curve per
system-metrics file (every DDP rank; wherever the run wrote it, see ``runs.resolve``).
Each curve is reduced with min/max-preserving downsampling, so a one-step spike is still
drawn. Non-finite points cannot be drawn; their count goes into the panel title.
Health events (events.ndjson) are vertical lines, one colour and legend entry per rule: at the
event's step on the panel of its metric, or on every panel when the event names no metric (or
one the run never logged, such as a ratio a rule computes); system panels place them by time.
matplotlib (extra ``export``) runs with the Agg backend: no display needed.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.errors import MissingExtraError
from codex_ml.health.events import HealthEvent
from codex_ml.monitoring import health_events
from codex_ml.monitoring.downsample import drawable_points
from codex_ml.monitoring.loading import MetricsData, load
from codex_ml.monitoring.runs import SYSTEM, MonitoringInputError, resolve

MAX_PANELS = 24
#: System series drawn by default (suffixes of the flat ``system/...`` names).
SYSTEM_PANELS = ("cpu/percent", "memory/percent", "process/rss_bytes", "process/cpu_percent", "load/1m",
                 "utilization_percent", "memory_percent")  # fmt: skip
#: Event line colours, one per rule in the order rules first fired (curves use matplotlib's C0, C1, ...).
EVENT_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
#: Metrics the run logs about its own health (``health/events``): plotted only when a pattern asks.
HEALTH_PREFIX = "health/"
#: Prefix of the ``gid`` of every event line (the rule follows), so a reader of the figure can find them.
EVENT_GID = "health:"


@dataclass
class Drawing:
    """A drawn figure: the matplotlib Figure, its panels ``(kind, key)`` in axes order, and the
    event lines drawn on each panel (same order)."""

    figure: Any
    panels: list[tuple[str, str]]
    marks: list[int] = field(default_factory=list)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only), or a MissingExtraError naming the extra."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError("plot", "matplotlib", "export") from exc
    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def choose_metrics(keys: list[str], patterns: list[str] | None) -> list[str]:
    """Keys matching any glob in ``patterns`` (all when None, but for the ``health/`` counts, which the
    event lines already show), loss-like keys first."""
    if patterns is None:
        chosen = [k for k in keys if not k.startswith(HEALTH_PREFIX)]
    else:
        chosen = [k for k in keys if any(fnmatch.fnmatchcase(k, p) for p in patterns)]
    return sorted(chosen, key=lambda k: (0 if "loss" in k.lower() else 1, keys.index(k)))


def system_keys(keys: list[str]) -> list[str]:
    """The system series worth a panel, in a stable order."""
    return [k for suffix in SYSTEM_PANELS for k in keys if k.endswith(suffix) and "/per_core/" not in k]


def plot(paths: list[str | Path], output: str | Path, *, patterns: list[str] | None = None, max_points: int = 2000,
         system: bool = True) -> int:  # fmt: skip
    """Write the PNG; returns the number of panels. Raises when nothing matches."""
    drawing = draw(paths, patterns=patterns, max_points=max_points, system=system)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    drawing.figure.savefig(output, dpi=100)
    pyplot().close(drawing.figure)
    return len(drawing.panels)


def draw(paths: list[str | Path], *, patterns: list[str] | None = None, max_points: int = 2000,
         system: bool = True) -> Drawing:  # fmt: skip
    """The figure ``plot`` saves (the caller closes it). Raises when nothing matches."""
    runs = [_load_run(Path(p), system) for p in paths]
    all_keys = list(dict.fromkeys(k for metrics, _ in runs if metrics for k in metrics.keys()))
    metric_keys = choose_metrics(all_keys, patterns)
    sys_keys = list(dict.fromkeys(k for _, files in runs for sysdata in files for k in system_keys(sysdata.keys())))
    panels = [("metric", k) for k in metric_keys] + [("system", k) for k in sys_keys]
    if not panels:
        raise MonitoringInputError(", ".join(map(str, paths)), f"no metric matches {patterns} (available: {', '.join(all_keys[:20])})")
    panels = panels[:MAX_PANELS]
    plt = pyplot()
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3 * rows), squeeze=False)
    labels = [Path(p).name or str(p) for p in paths]
    events = _Events([_run_events(Path(p)) for p in paths], panels, set(all_keys), runs)
    drawing = Drawing(fig, panels)
    for ax, (kind, key) in zip(axes.flat, panels):
        curves = _draw_panel(ax, kind, key, runs, labels, max_points)
        drawing.marks.append(events.mark(ax, kind, key))
        if len(runs) > 1 or curves > 1 or drawing.marks[-1]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return drawing


def _run_events(path: Path) -> list[HealthEvent]:
    return health_events.load(resolve(path))[0]


class _Events:
    """Which panel shows which health event, and where on its x-axis."""

    def __init__(self, per_run: list[list[HealthEvent]], panels: list[tuple[str, str]], logged: set[str],
                 runs: list[tuple[Any, list[MetricsData]]]) -> None:  # fmt: skip
        self.per_run = per_run
        self.panel_keys = {key for _, key in panels}
        self.logged = logged  # every metric the runs logged, plotted or not
        # System panels are seconds since the run's first sample: the same origin as its curves.
        self.starts = [min((d.time_span[0] for d in files if d.time_span), default=None) for _, files in runs]
        rules = list(dict.fromkeys(e.rule for events in per_run for e in events))
        self.colours = {rule: EVENT_COLOURS[i % len(EVENT_COLOURS)] for i, rule in enumerate(rules)}

    def _shown_on(self, event: HealthEvent, key: str) -> bool:
        if event.metric in self.panel_keys:
            return event.metric == key
        # A metric the user filtered out stays off; no metric, or a name no run logged, goes everywhere.
        return event.metric is None or event.metric not in self.logged

    def mark(self, ax: Any, kind: str, key: str) -> int:
        """Draw the panel's event lines (one legend entry per rule); returns how many were drawn."""
        seen: set[tuple[str, float]] = set()
        labelled: set[str] = set()
        for events, start in zip(self.per_run, self.starts):
            for event in events:
                x = self._x(event, kind, start)
                if x is None or (event.rule, x) in seen or not self._shown_on(event, key):
                    continue
                seen.add((event.rule, x))
                label = "_nolegend_" if event.rule in labelled else f"health: {event.rule}"
                labelled.add(event.rule)
                ax.axvline(x, color=self.colours[event.rule], linewidth=0.9, alpha=0.7, zorder=0, label=label,
                           linestyle="-" if event.severity == "critical" else "--", gid=EVENT_GID + event.rule)
        return len(seen)

    @staticmethod
    def _x(event: HealthEvent, kind: str, start: float | None) -> float | None:
        if kind == "metric":
            return None if event.step is None else float(event.step)
        return None if start is None else event.time - start


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
                max_points: int) -> int:  # fmt: skip
    """Draw the panel's curves; returns how many."""
    bad, drawn = 0, 0
    for data, label, start in _curves(kind, runs, labels):
        series = data.series.get(key)
        if series is None:
            continue
        x, y, skipped = drawable_points(series.steps if kind == "metric" else series.times - start, series.values,
                                        max_points)
        bad += skipped
        ax.plot(x, y, linewidth=1.0, label=label)
        drawn += 1
    ax.set_title(key + (f"  ({bad} NaN/Inf not drawn)" if bad else ""), fontsize=9)
    ax.set_xlabel("step" if kind == "metric" else "seconds since start")
    if "rss_bytes" in key:
        ax.yaxis.set_major_formatter(_mib_formatter())
    ax.grid(True, alpha=0.3)
    return drawn


def _mib_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value / 2**20:.0f} MiB")
