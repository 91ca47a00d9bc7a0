"""RollingMedian against a brute-force median and MAD."""

from __future__ import annotations

import random

import pytest

from codex_ml.health.window import RollingMedian


def _brute(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    median = ordered[(len(ordered) - 1) // 2]
    deviations = sorted(abs(v - median) for v in values)
    return median, deviations[(len(deviations) - 1) // 2]


@pytest.mark.parametrize("seed", range(5))
def test_median_and_mad_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        size = rng.randint(1, 25)
        window, seen = RollingMedian(size), []
        for _ in range(rng.randint(1, 60)):
            value = rng.choice([rng.random(), float(rng.randint(0, 3)), -rng.random() * 1e6])  # ties and spread
            window.add(value)
            seen.append(value)
            assert (window.median(), window.mad()) == pytest.approx(_brute(seen[-size:]), abs=1e-9)
        assert len(window) == min(size, len(seen)) and window.values() == seen[-size:]


def test_flat_window_has_zero_mad() -> None:
    window = RollingMedian(10)
    for _ in range(10):
        window.add(2.5)
    assert window.median() == 2.5 and window.mad() == 0.0
