"""Bootstrap resampling of interval histograms: resample 1-second intervals, merge, read percentiles exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.stats.histogram import HIGHEST_EQUIVALENT, Intervals

REPLICATES = 1000
SEED = 20261129
CONFIDENCE = 0.95
# Fine HDR buckets folded into one coarse bucket for the first pass of the percentile search (see below).
_COARSE_SHIFT = 4


def method_text(confidence: float = CONFIDENCE) -> str:
    """How the intervals are obtained (the verdict rule that reads them is analysis/stats/equivalence.py's)."""
    return (
        f"{confidence * 100:.3g}% confidence intervals by bootstrap ({REPLICATES} replicates, seed {SEED}): each "
        "repetition's 1-second interval histograms are resampled with replacement in circular blocks of ~n^(1/3) "
        "intervals (so short-range autocorrelation stays inside a block), the resampled histograms are merged, and "
        "percentiles are read from the merged histogram; throughput is resampled count over resampled time. The "
        f"interval is the {(1 - confidence) / 2 * 100:.3g}th..{(1 + confidence) / 2 * 100:.4g}th percentile of the "
        "replicate ratios B/A − 1. Percentiles come from merged HDR histograms, never averages. CPU per campaign "
        "(web + redis + workers): the same block bootstrap of each repetition's seconds, the statistic the CPU the "
        "seconds drawn spent (cpu.csv) over the campaigns served in them; lower is better."
    )


METHOD = method_text()


def block_length(n_intervals: int) -> int:
    return max(1, round(n_intervals ** (1 / 3)))


def block_weights(n_intervals: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, n) how often each interval is drawn by a circular block bootstrap of one repetition."""
    if n_intervals == 0:
        return np.zeros((replicates, 0))
    length = block_length(n_intervals)
    blocks = -(-n_intervals // length)
    starts = rng.integers(0, n_intervals, size=(replicates, blocks))
    positions = ((starts[:, :, None] + np.arange(length)) % n_intervals).reshape(replicates, -1)[:, :n_intervals]
    flat = (positions + np.arange(replicates)[:, None] * n_intervals).ravel()
    return np.bincount(flat, minlength=replicates * n_intervals).reshape(replicates, n_intervals).astype(float)


def stratified_weights(strata: Sequence[int], replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Block weights drawn separately inside each stratum (repetition), side by side."""
    if not strata:
        return np.zeros((replicates, 0))
    return np.hstack([block_weights(n, replicates, rng) for n in strata])


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of one side: throughput (B,) and percentile values (B, P)."""

    throughput_per_s: np.ndarray
    values_us: np.ndarray


def resample(parts: Sequence[Intervals], percentiles: Sequence[float], rng: np.random.Generator,
             replicates: int = REPLICATES) -> Replicates:
    """Replicates of several repetitions' logs taken together, each repetition resampled on its own."""
    intervals = Intervals.concat(parts)
    weights = stratified_weights([p.n_intervals for p in parts if p.n_intervals], replicates, rng)
    counts = weights @ intervals.interval_counts()
    seconds = weights @ intervals.length_s
    throughput = np.divide(counts, seconds, out=np.zeros_like(counts), where=seconds > 0)
    return Replicates(throughput, weighted_percentiles(intervals, weights, percentiles))


def weighted_percentiles(intervals: Intervals, weights: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """(B, P) exact HDR percentiles of sum_i weights[b, i] * interval_i, for every replicate b.

    Merging densely would cost B × n × 23,552 bucket additions, so the search runs in two passes: merged counts
    of coarse buckets (16 HDR buckets each, only those ever used) locate the coarse bucket holding each target
    count; then only that coarse bucket's 16 fine buckets are merged to find the exact one."""
    replicates = weights.shape[0]
    out = np.zeros((replicates, len(percentiles)), dtype=np.int64)
    if not len(intervals.count):
        return out
    coarse_id = intervals.index >> _COARSE_SHIFT
    present = np.bincount(coarse_id) > 0
    used = np.flatnonzero(present)
    column = (np.cumsum(present) - 1)[coarse_id]
    n = intervals.n_intervals
    coarse = np.bincount(intervals.row * len(used) + column, weights=intervals.count,
                         minlength=n * len(used)).reshape(n, len(used))
    cumulative = np.cumsum(weights @ coarse, axis=1)
    totals = cumulative[:, -1]
    fine_width = 1 << _COARSE_SHIFT
    targets = np.maximum(np.floor(np.minimum(np.asarray(percentiles, float), 100.0)[None, :] * totals[:, None] / 100
                                  + 0.5), 1)
    buckets = np.stack([np.minimum((cumulative < targets[:, [p]]).sum(axis=1), len(used) - 1)
                        for p in range(len(percentiles))], axis=1)
    # Only the entries of the few coarse buckets some replicate's target falls in are needed for the second pass.
    needed = np.isin(column, np.unique(buckets))
    sub_row, sub_fine, sub_count, sub_column = (intervals.row[needed], intervals.index[needed] & (fine_width - 1),
                                                intervals.count[needed], column[needed])
    for p_number in range(len(percentiles)):
        bucket = buckets[:, p_number]
        below = np.where(bucket > 0, cumulative[np.arange(replicates), np.maximum(bucket - 1, 0)], 0.0)
        for coarse_column in np.unique(bucket):
            chosen = np.flatnonzero(bucket == coarse_column)
            entries = sub_column == coarse_column
            fine = np.bincount(sub_row[entries] * fine_width + sub_fine[entries], weights=sub_count[entries],
                               minlength=n * fine_width).reshape(n, fine_width)
            fine_cumulative = below[chosen, None] + np.cumsum(weights[chosen] @ fine, axis=1)
            offset = np.minimum((fine_cumulative < targets[chosen, p_number, None]).sum(axis=1), fine_width - 1)
            out[chosen, p_number] = HIGHEST_EQUIVALENT[(int(used[coarse_column]) << _COARSE_SHIFT) + offset]
    out[totals == 0] = 0
    return out


def interval_of(ratios: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile-bootstrap interval of replicate ratios."""
    finite = ratios[np.isfinite(ratios)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def new_rng(seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng(seed)
