"""How often a flat memory series reads as growing or shrinking: simulated soaks whose memory is stationary AR(1)
noise (each sample `phi` times the last plus fresh noise), fitted by analysis/stats/trend.py; a 95% interval that
excludes 0 is a wrong reading, and should happen about 5% of the time. Beside it, the same series judged with
ordinary least squares' standard error, which takes the samples as independent. Prints one line per series length and
autocorrelation, then `trend_false_readings: R` (181 samples, phi 0.8: a 30-minute soak sampled every 10 s) last.
tests/test_soak_analysis.py runs that case on 400 series.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.stats.trend import fit_trend  # noqa: E402


def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 1, n)
    out = np.zeros(n)
    out[0] = noise[0] / math.sqrt(1 - phi**2)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


def independent_reading(t: np.ndarray, y: np.ndarray) -> bool:
    """Ordinary least squares with its textbook standard error: does its 95% interval exclude 0?"""
    centred = t - t.mean()
    sxx = float(centred @ centred)
    slope = float(centred @ (y - y.mean())) / sxx
    residuals = y - y.mean() - slope * centred
    se = math.sqrt(float(residuals @ residuals) / (len(t) - 2) / sxx)
    return abs(slope) > 1.96 * se


def rates(n: int, phi: float, trials: int) -> tuple[float, float]:
    t = np.arange(n) * 10.0
    wrong = naive = 0
    for seed in range(trials):
        y = ar1(n, phi, np.random.default_rng(seed))
        trend = fit_trend(t, y)
        assert trend is not None
        wrong += trend.low_per_s > 0 or trend.high_per_s < 0
        naive += independent_reading(t, y)
    return wrong / trials, naive / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    headline = 0.0
    for n in (181, 60):
        for phi in (0.0, 0.5, 0.8, 0.9):
            wrong, naive = rates(n, phi, args.trials)
            print(f"n={n} phi={phi:g}: trend {wrong:.1%} wrong, independent-samples errors {naive:.1%}")
            if n == 181 and phi == 0.8:
                headline = wrong
    print(f"trend_false_readings: {headline:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
