"""The image of ``runs compare -o cmp.png``: one panel per metric, the runs' curves overlaid.

Each run keeps one colour on every panel and is named in each panel's legend by its label (its
name, or its path when two runs share a name). Curves are reduced with the min/max-preserving
downsampling that ``monitoring plot`` uses (``monitoring.downsample.drawable_points``), so a
one-step spike in a million points is still drawn; NaN/Inf cannot be drawn and are counted in the
panel title. :func:`plot_data` returns exactly the points drawn, for tests and other renderers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codex_ml.monitoring.downsample import drawable_points
from codex_ml.monitoring.plot import MAX_PANELS, pyplot
from codex_ml.runs.compare_data import CompareError, ComparedRun

__all__ = ["MAX_POINTS", "Curve", "plot_data", "write_image"]

#: Points per curve after downsampling: a panel is ~700 pixels wide, so this keeps every pixel's extremes.
MAX_POINTS = 2000


@dataclass
class Curve:
    """One run's drawn points on one panel (x = step), and how many NaN/Inf points were left out."""

    label: str
    colour: str
    x: np.ndarray
    y: np.ndarray
    non_finite: int


def _colours(count: int) -> list[str]:
    # matplotlib's ten-colour cycle; past ten runs, tab20 still gives each run its own colour.
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    from matplotlib import colormaps, colors

    cmap = colormaps["tab20"]
    return [colors.to_hex(cmap(i % 20)) for i in range(count)]


def plot_data(runs: list[ComparedRun], metrics: list[str], max_points: int = MAX_POINTS) -> dict[str, list[Curve]]:
    """The downsampled curves of every panel: metric -> one Curve per run that logged it."""
    colours = _colours(len(runs))
    panels: dict[str, list[Curve]] = {}
    for key in metrics:
        panels[key] = []
        for run, colour in zip(runs, colours):
            series = run.series(key)
            if series is not None:
                panels[key].append(Curve(run.label, colour, *drawable_points(series.steps, series.values, max_points)))
    return panels


def write_image(runs: list[ComparedRun], metrics: list[str], out: Path, max_points: int = MAX_POINTS) -> int:
    """Draw the panels and save them to ``out`` (format from its suffix: png, svg, pdf...); returns
    the number of panels. At most ``MAX_PANELS`` panels are drawn (the first metrics)."""
    if not metrics:
        raise CompareError("nothing to plot: the runs share no metric; name some with --metric")
    plt = pyplot()
    panels = list(plot_data(runs, metrics[:MAX_PANELS], max_points).items())
    cols = 1 if len(panels) == 1 else 2
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(7 * cols, 3 * math.ceil(len(panels) / cols)),
                             squeeze=False)  # fmt: skip
    try:
        for ax, (key, curves) in zip(axes.flat, panels):
            _draw_panel(ax, key, curves)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.tight_layout()
        _save(fig, out)
    finally:
        plt.close(fig)
    return len(panels)


def _draw_panel(ax: Any, key: str, curves: list[Curve]) -> None:
    for curve in curves:
        ax.plot(curve.x, curve.y, color=curve.colour, linewidth=1.0, label=curve.label)
    bad = sum(curve.non_finite for curve in curves)
    ax.set_title(key + (f"  ({bad} NaN/Inf not drawn)" if bad else ""), fontsize=9)
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=7)


def _save(fig: Any, out: Path) -> None:
    suffix = out.suffix.lower().lstrip(".")
    supported = fig.canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        raise CompareError(f"-o {out}: cannot write a .{suffix} image; use one of: .{', .'.join(sorted(supported))}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise CompareError(f"-o {out}: cannot write it ({exc.strerror or exc})") from exc
