"""HDR interval histograms as numpy count arrays: merging and percentiles with HdrHistogram's exact semantics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from foundation.format import HIGHEST_US, LOWEST_US, SCHEMA_VERSION, SIGNIFICANT_DIGITS, SUMMARY_PERCENTILES

_REFERENCE = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
COUNTS_LEN: int = _REFERENCE.counts_len
_HALF_MAG: int = _REFERENCE.sub_bucket_half_count_magnitude
_HALF_COUNT: int = _REFERENCE.sub_bucket_half_count
_UNIT_MAG: int = _REFERENCE.unit_magnitude


def _index_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowest, highest and median equivalent value of every counts index (hdrh's own arithmetic, vectorised)."""
    index = np.arange(COUNTS_LEN, dtype=np.int64)
    bucket = (index >> _HALF_MAG) - 1
    sub_bucket = (index & (_HALF_COUNT - 1)) + _HALF_COUNT
    first = bucket < 0
    sub_bucket = np.where(first, sub_bucket - _HALF_COUNT, sub_bucket)
    bucket = np.where(first, 0, bucket)
    lowest = sub_bucket << (bucket + _UNIT_MAG)
    size = np.int64(1) << (bucket + _UNIT_MAG)
    return lowest, lowest + size - 1, lowest + (size >> 1)


LOWEST_EQUIVALENT, HIGHEST_EQUIVALENT, MEDIAN_EQUIVALENT = _index_tables()


def index_for(values_us: np.ndarray) -> np.ndarray:
    """The counts index each value is recorded at (values must lie in 1 µs .. 1 h)."""
    # LOWEST_EQUIVALENT is strictly increasing from 0: a value's index is the last bucket starting at or below it.
    return np.searchsorted(LOWEST_EQUIVALENT[1:], np.asarray(values_us, dtype=np.int64), side="right").astype(np.int64)


def value_at_percentiles(counts: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """HdrHistogram's getValueAtPercentile on a dense counts array: the highest value equivalent to the
    bucket holding the ceil-rounded target count (0 for an empty histogram)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(len(percentiles), dtype=np.int64)
    cumulative = np.cumsum(counts)
    targets = np.maximum((np.minimum(np.asarray(percentiles, float), 100.0) * total / 100 + 0.5).astype(np.int64), 1)
    return HIGHEST_EQUIVALENT[np.searchsorted(cumulative, targets, side="left")]


def stats(counts: np.ndarray, percentiles: Sequence[float] = SUMMARY_PERCENTILES) -> dict[str, float | int | None]:
    """Count, percentiles, max and mean of one merged histogram; percentiles are None when it is empty."""
    total = int(counts.sum())
    out: dict[str, float | int | None] = {"count": total}
    values = value_at_percentiles(counts, percentiles)
    for percentile, value in zip(percentiles, values, strict=True):
        out[percentile_key(percentile)] = int(value) if total else None
    nonzero = np.flatnonzero(counts)
    out["max_us"] = int(HIGHEST_EQUIVALENT[nonzero[-1]]) if total else None
    out["mean_us"] = round(float(np.dot(counts[nonzero], MEDIAN_EQUIVALENT[nonzero]) / total), 1) if total else None
    return out


def percentile_key(percentile: float) -> str:
    """50 -> 'p50_us', 99.9 -> 'p999_us', 99.99 -> 'p9999_us'."""
    return "p" + f"{percentile:g}".replace(".", "") + "_us"


@dataclass(frozen=True)
class Intervals:
    """One interval log: per-interval start and length, and the non-zero counts of every interval (sparse)."""

    start_s: np.ndarray  # float64 (n,), seconds since the log's StartTime
    length_s: np.ndarray  # float64 (n,)
    row: np.ndarray  # int64 (nnz,), which interval a count belongs to
    index: np.ndarray  # int64 (nnz,), HDR counts index
    count: np.ndarray  # int64 (nnz,)
    start_time_s: float = 0.0  # epoch seconds of the log's StartTime header

    @property
    def n_intervals(self) -> int:
        return len(self.start_s)

    @property
    def total_count(self) -> int:
        return int(self.count.sum())

    @property
    def duration_s(self) -> float:
        """From the first interval's start to the last interval's end."""
        if not self.n_intervals:
            return 0.0
        return float(self.start_s[-1] + self.length_s[-1] - self.start_s[0])

    def interval_counts(self) -> np.ndarray:
        return np.bincount(self.row, weights=self.count, minlength=self.n_intervals).astype(np.int64)

    def merged(self) -> np.ndarray:
        """The dense counts of all intervals merged (exact integer sums)."""
        return np.bincount(self.index, weights=self.count, minlength=COUNTS_LEN).astype(np.int64)

    def windows(self, size: int) -> Intervals:
        """Consecutive intervals merged in groups of `size` (for smoother time series)."""
        if size <= 1 or not self.n_intervals:
            return self
        group = np.arange(self.n_intervals) // size
        n_groups = int(group[-1]) + 1
        starts = self.start_s[::size]
        lengths = np.bincount(group, weights=self.length_s, minlength=n_groups)
        return Intervals(starts, lengths, group[self.row], self.index, self.count, self.start_time_s)

    def span(self, start_s: float, end_s: float) -> Intervals:
        """The intervals that start in [start_s, end_s) (seconds since the log's StartTime), renumbered from 0."""
        chosen = np.flatnonzero((self.start_s >= start_s) & (self.start_s < end_s))
        if not len(chosen):
            return Intervals.empty()
        renumber = np.full(self.n_intervals, -1, dtype=np.int64)
        renumber[chosen] = np.arange(len(chosen))
        kept = renumber[self.row] >= 0
        return Intervals(self.start_s[chosen], self.length_s[chosen], renumber[self.row[kept]], self.index[kept],
                         self.count[kept], self.start_time_s)

    def interval_percentiles(self, percentiles: Sequence[float]) -> np.ndarray:
        """(n, P) value of each percentile inside each interval; 0 where an interval is empty."""
        out = np.zeros((self.n_intervals, len(percentiles)), dtype=np.int64)
        if not len(self.count):
            return out
        order = np.lexsort((self.index, self.row))
        row, index, count = self.row[order], self.index[order], self.count[order]
        cumulative = np.cumsum(count)
        totals = np.bincount(row, weights=count, minlength=self.n_intervals).astype(np.int64)
        base = np.concatenate(([0], np.cumsum(totals)[:-1]))
        for column, percentile in enumerate(percentiles):
            targets = np.maximum((min(percentile, 100.0) * totals / 100 + 0.5).astype(np.int64), 1)
            position = np.searchsorted(cumulative, base + targets, side="left")
            nonempty = totals > 0
            out[nonempty, column] = HIGHEST_EQUIVALENT[index[position[nonempty]]]
        return out

    @staticmethod
    def empty() -> Intervals:
        none_f, none_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return Intervals(none_f, none_f, none_i, none_i, none_i)

    @staticmethod
    def concat(parts: Iterable[Intervals]) -> Intervals:
        """Intervals of several logs one after another (rows renumbered; start times kept as they are)."""
        parts = [p for p in parts if p.n_intervals]
        if not parts:
            return Intervals.empty()
        offsets = np.cumsum([0] + [p.n_intervals for p in parts[:-1]])
        return Intervals(
            np.concatenate([p.start_s for p in parts]),
            np.concatenate([p.length_s for p in parts]),
            np.concatenate([p.row + offset for p, offset in zip(parts, offsets, strict=True)]),
            np.concatenate([p.index for p in parts]),
            np.concatenate([p.count for p in parts]),
            parts[0].start_time_s,
        )


def from_hdr(histograms: Sequence[HdrHistogram], start_s: Sequence[float], length_s: Sequence[float],
             start_time_s: float = 0.0) -> Intervals:
    """Intervals from decoded hdrh histograms (the counts arrays are read without copying)."""
    rows, indexes, counts = [], [], []
    for number, histogram in enumerate(histograms):
        if histogram.counts_len != COUNTS_LEN or histogram.unit_magnitude != _UNIT_MAG:
            raise ValueError(
                f"interval {number}: histogram range {histogram.lowest_trackable_value}..{histogram.highest_trackable_value}"
                f" µs with {histogram.significant_figures} digits; results schema {SCHEMA_VERSION} requires "
                f"{LOWEST_US}..{HIGHEST_US} µs with {SIGNIFICANT_DIGITS}"
            )
        array = np.ctypeslib.as_array(histogram.counts)
        nonzero = np.flatnonzero(array)
        rows.append(np.full(len(nonzero), number, dtype=np.int64))
        indexes.append(nonzero.astype(np.int64))
        counts.append(array[nonzero].astype(np.int64))
    if not histograms:
        return Intervals.empty()
    return Intervals(np.asarray(start_s, float), np.asarray(length_s, float), np.concatenate(rows),
                     np.concatenate(indexes), np.concatenate(counts), start_time_s)


def to_hdr(counts: np.ndarray) -> HdrHistogram:
    """A dense counts array as an hdrh histogram (for HdrHistogram's own tools and encoders)."""
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    np.ctypeslib.as_array(histogram.counts)[:] = counts
    nonzero = np.flatnonzero(counts)
    if len(nonzero):
        histogram.set_internal_tacking_values(int(nonzero[0]), int(nonzero[-1]), int(counts.sum()))
    return histogram


def histogram_of(values_us: np.ndarray) -> np.ndarray:
    """Dense counts of raw values, as HdrHistogram would record them (values clamped to 1 µs .. 1 h)."""
    values = np.clip(np.asarray(values_us, dtype=np.int64), LOWEST_US, HIGHEST_US)
    return np.bincount(index_for(values), minlength=COUNTS_LEN).astype(np.int64)
