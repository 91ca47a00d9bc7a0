"""Record tuples passed from the hot path to the background writer and sinks.

Records are plain tuples ``(kind, step, wall_time, *payload)`` because a tuple is the
cheapest thing to build on the hot path. The layouts:

- ``(METRICS, step, time, {name: number})``
- ``(HISTOGRAM, step, time, name, Histogram)`` (the hot path enqueues a numpy copy of the
  values; the writer thread replaces it with a Histogram before any sink sees it)
- ``(TEXT, step, time, name, text)``
- ``(PARAMS, 0, time, {flat_key: value})``
- ``(TAGS, 0, time, {key: str})``
- ``(ARTIFACT, 0, time, path_in_run_artifacts, name)``
- ``(SYSTEM, sample_index, time, {"system/...": number})``: system telemetry on its own
  time axis; its source of truth is the sampler's own NDJSON file, so it is not written to
  metrics.ndjson, only forwarded to the sinks
- ``(EVENT, step, time, {event})``: a health event (keys ``time, step, rule, severity, metric,
  value, threshold, message, action``); its source of truth is ``events.ndjson``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codex_ml.rundir.encoding import encode_number

METRICS, HISTOGRAM, TEXT, PARAMS, TAGS, ARTIFACT, SYSTEM, EVENT = range(8)

Record = tuple[Any, ...]


@dataclass(frozen=True)
class Histogram:
    """A histogram of finite values plus counts of the non-finite ones.

    ``edges`` has ``len(counts) + 1`` entries, as ``numpy.histogram`` returns them.
    """

    edges: list[float]
    counts: list[int]
    count: int
    min: float
    max: float
    sum: float
    sum_squares: float
    nan_count: int = 0
    inf_count: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready form stored in histograms.ndjson."""
        return {
            "edges": self.edges,
            "counts": self.counts,
            "count": self.count,
            "min": self.min,
            "max": self.max,
            # Sums of huge finite values can overflow to inf: spelled "Infinity", never null.
            "sum": encode_number(self.sum),
            "sum_squares": encode_number(self.sum_squares),
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
        }


def compute_histogram(values: Any, bins: int) -> Histogram:
    """Histogram of a numpy array (finite values only; NaN/Inf are counted apart)."""
    import numpy as np

    flat = np.asarray(values, dtype=np.float64).ravel()
    finite_mask = np.isfinite(flat)
    finite = flat[finite_mask]
    nan_count = int(np.isnan(flat).sum())
    inf_count = int(flat.size - finite.size - nan_count)
    if finite.size == 0:
        return Histogram([0.0, 0.0], [0], 0, 0.0, 0.0, 0.0, 0.0, nan_count, inf_count)
    low, high = float(finite.min()), float(finite.max())
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            counts, edges = np.histogram(finite, bins=bins)
            edge_list, count_list = edges.tolist(), counts.tolist()
        except ValueError:
            # The range itself overflows (e.g. [-1e308, 1e308]): keep one bin with everything.
            edge_list, count_list = [low, high], [int(finite.size)]
        total, squares = float(finite.sum()), float(np.dot(finite, finite))
    return Histogram(
        edges=edge_list,
        counts=count_list,
        count=int(finite.size),
        min=low,
        max=high,
        sum=total,
        sum_squares=squares,
        nan_count=nan_count,
        inf_count=inf_count,
    )
