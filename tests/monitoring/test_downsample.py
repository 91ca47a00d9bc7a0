"""Min/max downsampling keeps spikes, extremes, endpoints and order."""

from __future__ import annotations

import numpy as np
import pytest

from codex_ml.monitoring.downsample import drawable_points, minmax_downsample, minmax_indices


def test_short_series_is_kept_whole() -> None:
    assert minmax_indices(np.arange(10.0), 10).tolist() == list(range(10))


def test_single_spike_survives() -> None:
    values = np.ones(1_000_000)
    values[123_457] = 50.0  # one bad step in a million
    values[777_777] = -3.0
    x, y = minmax_downsample(np.arange(len(values)), values, 500)
    assert len(y) <= 500
    assert 50.0 in y and -3.0 in y
    assert 123_457 in x and 777_777 in x


def test_every_bucket_extreme_and_endpoints_are_kept() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_007)
    index = minmax_indices(values, 102)
    assert len(index) <= 102
    assert index[0] == 0 and index[-1] == len(values) - 1
    assert np.all(np.diff(index) > 0)  # sorted, no duplicates
    assert values.argmax() in index and values.argmin() in index
    kept = values[index]
    assert kept.max() == values.max() and kept.min() == values.min()


def test_non_finite_values_are_never_chosen_as_extremes() -> None:
    values = np.linspace(0, 1, 1000)
    values[10:20] = np.nan
    values[500] = np.inf
    index = minmax_indices(values, 20)
    assert np.isfinite(values[index][1:-1]).all()
    assert minmax_indices(np.full(100, np.nan), 10).tolist() == [0, 99]  # nothing to pick but the ends


def test_too_few_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_points must be >= 4"):
        minmax_indices(np.arange(100.0), 3)


def test_drawable_points_drop_non_finite_and_keep_the_spike() -> None:
    values = np.ones(100_000)
    values[[10, 20]] = [np.nan, np.inf]
    values[54_321] = 9.0
    x, y, non_finite = drawable_points(np.arange(len(values)), values, 200)
    assert non_finite == 2 and np.isfinite(y).all() and len(y) <= 200
    assert 54_321 in x and 9.0 in y
