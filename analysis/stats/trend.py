"""A trend: the least-squares line through a series over time, with a 95% interval for its slope that holds when the
series is autocorrelated (a soak's memory, analysis/stats/soak.py).

A memory series is autocorrelated (each sample is the last plus a little), and ordinary least squares' errors, which
take the residuals as independent, are then too narrow. The interval counts the samples as fewer, by the residuals'
lag-1 autocorrelation r: an effective n (1 − r) / (1 + r), with Student's t at that many less 2 degrees of freedom (as
climate trends are judged: Santer et al. 2000, J. Geophys. Res. 105(D6)). Flat AR(1) series of 181 samples (a
30-minute soak sampled every 10 s), 1,000 of each, read as growing or shrinking at 95% (`python
benchmarks/trend_coverage.py`): at autocorrelation 0, 0.5, 0.8, 0.9 in 4.8%, 5.9%, 6.3%, 6.8% of them, where ordinary
least squares' errors did in 5.9%, 28%, 52%, 66%; with 60 samples 4.1%, 8.2%, 11%, 15%, so a short soak's intervals
are too narrow by that much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["Trend", "fit_trend", "t_quantile"]


@dataclass(frozen=True)
class Trend:
    """A least-squares line through (t_s, value): its slope per second with a 95% interval, over `samples` points
    spanning `span_s`; `start` and `end` are the line's values at the first and last point."""

    slope_per_s: float
    low_per_s: float
    high_per_s: float
    start: float
    end: float
    samples: int
    span_s: float

    @property
    def growing(self) -> bool:
        """The slope's whole interval lies above 0."""
        return self.low_per_s > 0


def fit_trend(t_s: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> Trend | None:
    """The trend of `values` over `t_s`, its interval widened for autocorrelation (the module says how); None with
    fewer than 3 points or none apart in time. With fewer than 3 effective samples the interval is unbounded."""
    t, y = np.asarray(t_s, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    n = len(t)
    if n < 3 or np.ptp(t) == 0:
        return None
    centred = t - t.mean()
    sxx = float(centred @ centred)
    slope = float(centred @ (y - y.mean()) / sxx)
    residuals = y - y.mean() - slope * centred
    squares = float(residuals @ residuals)
    lag1 = float(residuals[1:] @ residuals[:-1]) / squares if squares > 0 else 0.0
    effective = n * (1 - max(lag1, 0.0)) / (1 + max(lag1, 0.0))
    half = t_quantile(0.975, effective - 2) * math.sqrt(squares / (effective - 2) / sxx) if effective >= 3 \
        else math.inf
    intercept = float(y.mean()) - slope * float(t.mean())
    return Trend(slope_per_s=slope, low_per_s=slope - half, high_per_s=slope + half,
                 start=intercept + slope * float(t[0]), end=intercept + slope * float(t[-1]), samples=n,
                 span_s=float(t[-1] - t[0]))


def t_quantile(q: float, df: float) -> float:
    """Student's t quantile by its Cornish–Fisher expansion in 1/df (Abramowitz & Stegun 26.7.5): 0.7% below the exact
    value at 3 degrees of freedom, 0.1% at 5; numpy has no t distribution, and scipy is not a dependency."""
    z = NormalDist().inv_cdf(q)
    return (z + (z**3 + z) / 4 / df + (5 * z**5 + 16 * z**3 + 3 * z) / 96 / df**2
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384 / df**3)
