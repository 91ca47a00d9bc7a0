"""Rolling robust statistics over the last ``size`` values: median and MAD, cheap per value.

A deque keeps arrival order and a sorted list keeps the values in order (``bisect.insort`` and
one ``bisect`` removal: O(log n) comparisons plus an O(n) memmove of pointers, which for n = 100
is a few hundred nanoseconds). The median is one index; the MAD (median of absolute deviations)
is the k-th smallest of two sorted runs, the deviations below and above the median, found by
binary search in O(log n) without building them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

__all__ = ["RollingMedian"]


class RollingMedian:
    """Median and MAD of the last ``size`` values added (lower median when the count is even)."""

    __slots__ = ("size", "_order", "_sorted")

    def __init__(self, size: int) -> None:
        """An empty window of ``size`` values (at least 1)."""
        self.size = max(1, int(size))
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: float) -> None:
        """Add ``value`` (finite), dropping the oldest when the window is full."""
        if len(self._order) == self.size:
            old = self._order.popleft()
            del self._sorted[bisect_left(self._sorted, old)]
        self._order.append(value)
        insort(self._sorted, value)

    def median(self) -> float:
        """The (lower) median; the window must not be empty."""
        values = self._sorted
        return values[(len(values) - 1) // 2]

    def mad(self) -> float:
        """The (lower) median of ``|x - median|`` over the window."""
        values = self._sorted
        n = len(values)
        m = values[(n - 1) // 2]
        split = bisect_left(values, m)  # values[:split] < m <= values[split:]
        below, above = split, n - split

        # low(i) = m - values[split - 1 - i]: the i-th smallest deviation among values below m;
        # high(j) = values[split + j] - m: the j-th smallest among values at or above m (inlined).
        k = (n - 1) // 2  # 0-based rank of the lower median among n deviations
        lo, hi = max(0, k + 1 - above), min(k + 1, below)
        while lo < hi:  # how many of the k + 1 smallest deviations come from below m
            i = (lo + hi) // 2
            if m - values[split - 1 - i] < values[split + k - i] - m:
                lo = i + 1
            else:
                hi = i
        i, j = lo, k + 1 - lo
        if i == 0:
            return values[split + j - 1] - m
        if j == 0:
            return m - values[split - i]
        return max(m - values[split - i], values[split + j - 1] - m)

    def values(self) -> list[float]:
        """The window in arrival order (a copy)."""
        return list(self._order)
