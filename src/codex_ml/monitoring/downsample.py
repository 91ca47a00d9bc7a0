"""Min/max-preserving downsampling for plots: spikes survive, flat stretches shrink.

A plot of a million points is a few thousand pixels wide. Picking every n-th point would
drop a one-step loss spike; averaging would flatten it. Instead the series is cut into
equal buckets and each bucket keeps the points holding its minimum and its maximum (in
their original order), plus the very first and last points. Non-finite values are never
picked as a bucket's extreme; keep them out before calling if they should not be drawn
(:func:`drawable_points` does).

Measured against ``tsdownsample`` 0.1.5 (MinMaxLTTB, MinMax; docs/runs.md): on 1M points to
2,000 it takes ~4 ms against ~1 ms, both far below loading the points, and it keeps as many
one-step spikes as MinMax and more than MinMaxLTTB (whose LTTB pass keeps one point of a
bucket's min/max pair), so the project keeps its own.
"""

from __future__ import annotations

import numpy as np


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` points that keep every bucket's min and max.

    With ``len(values) <= max_points`` every index is returned. The global minimum and
    maximum are always among the result.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4 (first, last and a min/max pair), got {max_points}")
    if n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    size = -(-n // buckets)  # ceil: every point falls into some bucket
    padded = np.full(buckets * size, np.nan)
    padded[:n] = values
    grid = padded.reshape(buckets, size)
    finite = np.isfinite(grid)
    # Non-finite cells can never win: +inf for the argmin, -inf for the argmax.
    low = np.argmin(np.where(finite, grid, np.inf), axis=1)
    high = np.argmax(np.where(finite, grid, -np.inf), axis=1)
    offsets = np.arange(buckets) * size
    has_finite = finite.any(axis=1)
    picked = np.concatenate([(offsets + low)[has_finite], (offsets + high)[has_finite], [0, n - 1]])
    return np.unique(picked[picked < n])


def minmax_downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` reduced to at most ``max_points`` points with :func:`minmax_indices`."""
    index = minmax_indices(y, max_points)
    return np.asarray(x)[index], np.asarray(y)[index]


def drawable_points(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The points of a curve worth drawing: ``(x, y, non_finite)``.

    NaN/Inf cannot be drawn, so they are left out (and counted, for the panel title) before
    the min/max downsampling: every spike of the finite values survives. Shared by
    ``monitoring plot`` and ``runs compare``.
    """
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y)
    x, y = minmax_downsample(np.asarray(x)[finite], y[finite], max_points)
    return x, y, int((~finite).sum())
