"""The numpy view of HDR histograms agrees with hdrh itself, bucket for bucket and percentile for percentile."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import histogram as hist
from analysis.stats.bootstrap import block_weights, stratified_weights, weighted_percentiles
from analysis.stats.histogram import Intervals, from_hdr
from tests.analysis_fixtures import hdr_of

pytestmark = pytest.mark.fast

VALUES = np.concatenate([
    np.arange(1, 3000),  # the exact region (1 µs resolution below 2048)
    np.random.default_rng(7).lognormal(np.log(40_000), 1.5, 20_000).astype(np.int64).clip(1, 3_600_000_000),
    np.array([3_600_000_000, 2**31, 999_999_999]),
])


def test_counts_index_matches_hdrh():
    reference = hdr_of(VALUES)
    assert (hist.histogram_of(VALUES) == np.ctypeslib.as_array(reference.counts)).all()


def test_equivalent_value_tables_match_hdrh():
    reference = hdr_of(VALUES[:10])
    for index in [0, 1, 1023, 1024, 2047, 2048, 2049, 3071, 10_000, hist.COUNTS_LEN - 1]:
        lowest = reference.get_value_from_index(index)
        assert hist.LOWEST_EQUIVALENT[index] == lowest
        assert hist.HIGHEST_EQUIVALENT[index] == reference.get_highest_equivalent_value(lowest)


@pytest.mark.parametrize("percentile", [0.5, 25, 50, 90, 99, 99.9, 99.99, 100])
def test_value_at_percentile_matches_hdrh(percentile):
    reference = hdr_of(VALUES)
    assert hist.value_at_percentiles(hist.histogram_of(VALUES), [percentile])[0] == \
        reference.get_value_at_percentile(percentile)


def test_stats_of_empty_histogram_has_count_zero_and_no_percentiles():
    figures = hist.stats(np.zeros(hist.COUNTS_LEN, dtype=np.int64))
    assert figures["count"] == 0 and figures["p99_us"] is None and figures["max_us"] is None


def test_max_and_mean_match_hdrh():
    reference = hdr_of(VALUES)
    figures = hist.stats(hist.histogram_of(VALUES))
    assert figures["max_us"] == reference.get_max_value()
    assert figures["mean_us"] == pytest.approx(reference.get_mean_value(), abs=0.05)  # rounded to 0.1 µs


def _intervals(n: int = 12, per: int = 500, seed: int = 3) -> tuple[Intervals, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    parts = [rng.lognormal(np.log(5000 + 100 * i), 0.7, per).astype(np.int64) + 1 for i in range(n)]
    return from_hdr([hdr_of(p) for p in parts], np.arange(n, dtype=float), np.ones(n)), parts


def test_merged_count_equals_sum_of_intervals():
    intervals, parts = _intervals()
    assert intervals.total_count == sum(len(p) for p in parts)
    assert (intervals.merged() == hist.histogram_of(np.concatenate(parts))).all()
    assert (intervals.interval_counts() == [len(p) for p in parts]).all()


def test_interval_percentiles_are_each_intervals_own():
    intervals, parts = _intervals()
    values = intervals.interval_percentiles([50.0, 99.0])
    for number, part in enumerate(parts):
        assert list(values[number]) == list(hist.value_at_percentiles(hist.histogram_of(part), [50.0, 99.0]))


def test_windows_merge_consecutive_intervals():
    intervals, parts = _intervals(n=10)
    windows = intervals.windows(4)
    assert windows.n_intervals == 3
    assert list(windows.interval_counts()) == [2000, 2000, 1000]
    assert list(windows.length_s) == [4, 4, 2]


def test_weighted_percentiles_with_unit_weights_equal_the_merged_histogram():
    intervals, _ = _intervals()
    percentiles = [50.0, 90.0, 99.0, 99.9]
    weights = np.ones((3, intervals.n_intervals))
    expected = hist.value_at_percentiles(intervals.merged(), percentiles)
    assert (weighted_percentiles(intervals, weights, percentiles) == expected).all()


def test_weighted_percentiles_equal_explicitly_resampled_merges():
    intervals, parts = _intervals()
    rng = np.random.default_rng(11)
    weights = block_weights(intervals.n_intervals, 20, rng)
    got = weighted_percentiles(intervals, weights, [50.0, 99.0])
    for b in range(20):
        resampled = np.concatenate([np.repeat(part, int(w)) for part, w in zip(parts, weights[b], strict=True)])
        assert list(got[b]) == list(hist.value_at_percentiles(hist.histogram_of(resampled), [50.0, 99.0]))


def test_block_bootstrap_draws_as_many_intervals_as_each_stratum_has():
    weights = stratified_weights([7, 30], 50, np.random.default_rng(1))
    assert weights.shape == (50, 37)
    assert (weights[:, :7].sum(axis=1) == 7).all() and (weights[:, 7:].sum(axis=1) == 30).all()
