"""The verdict of a comparison: better, worse, equivalent within the experiment's margin, or undecided — and, for an
undecided one, how many more values would decide it at the spread observed.

A verdict reads one interval of the relative change (B / A − 1, or a ratio − 1) against 0 and against the margin:

- `equivalent`: the whole interval lies inside ±margin — the two one-sided tests of an equivalence test (TOST),
  each at half the interval's α. Checked first: a change the interval pins inside the margin does not matter even
  where it is significant (an interval of +1%…+3% under a 10% margin is `equivalent`, not `worse`);
- `better` / `worse`: the interval excludes 0, on the side that is better (or worse) for the measure;
- `undecided`: neither — the interval includes 0 and reaches past the margin, or it cannot be trusted (too few
  values beyond a percentile), or there is none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BETTER", "EQUIVALENT", "UNDECIDED", "VERDICTS", "WORSE", "Need", "decide", "decided", "spread_factor",
           "tail_factor", "verdict_rule"]

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
VERDICTS = (BETTER, WORSE, EQUIVALENT, UNDECIDED)
# Past this many times the values already compared, repeating is no way to decide a row.
HOPELESS_FACTOR = 100.0


def decide(low: float, high: float, higher_is_better: bool, margin: float) -> str:
    """The verdict of an interval [low, high] of a relative change (fractions: -0.1 is −10%) under ±margin; an end may
    be infinite (a capacity bracket left open), NaN means there is no interval."""
    if math.isnan(low) or math.isnan(high):
        return UNDECIDED
    if -margin < low and high < margin:
        return EQUIVALENT
    if low > 0:
        return BETTER if higher_is_better else WORSE
    if high < 0:
        return WORSE if higher_is_better else BETTER
    return UNDECIDED


def decided(verdict: str) -> bool:
    return verdict in (BETTER, WORSE, EQUIVALENT)


def spread_factor(delta: float, low: float, high: float, margin: float) -> float | None:
    """k: how many times the values now compared would decide an undecided interval, if the change stayed at its point
    estimate `delta` and each side of the interval narrowed as 1/√n (as a bootstrap interval of a percentile or a
    mean does). Two ways to decide, the nearer one counts: the interval excluding 0 (its side towards 0 shorter
    than |delta|), or the whole interval inside ±margin (possible only while |delta| < margin). None when neither
    can happen at this estimate (delta exactly 0 and no margin, or no interval)."""
    if not all(math.isfinite(v) for v in (delta, low, high)):
        return None
    up, down = max(high - delta, 0.0), max(delta - low, 0.0)
    ways = []
    if delta > 0:
        ways.append((down / delta) ** 2)
    elif delta < 0:
        ways.append((up / -delta) ** 2)
    if abs(delta) < margin:
        ways.append(max((up / (margin - delta)) ** 2, (down / (margin + delta)) ** 2))
    return max(min(ways), 1.0) if ways else None


def tail_factor(n: int, percentile: float, wanted: int) -> float:
    """How many times `n` values would put `wanted` values beyond `percentile`."""
    beyond = n * (1 - percentile / 100)
    return wanted / beyond if beyond > 0 else math.inf


@dataclass(frozen=True)
class Need:
    """What would decide an undecided row: `factor` times the values it was judged on, either as more repetitions of
    every design at the present phase length, or as longer phases at the present repetitions."""

    factor: float
    repetitions: int  # repetitions judged now (the fewer side)
    phase_s: float  # seconds of each repetition's phase judged now

    @property
    def more_repetitions(self) -> int:
        return max(1, math.ceil(self.repetitions * self.factor - 1e-9) - self.repetitions)

    @property
    def longer_phase_s(self) -> float:
        return self.phase_s * self.factor

    def text(self, purpose: str = "decide it") -> str:
        """'~2.4× the values would decide it: 3 more repetitions of each design (5 in all), or phases of 96 s (now
        40 s)'."""
        if not math.isfinite(self.factor) or self.factor > HOPELESS_FACTOR:
            return (f"more than {HOPELESS_FACTOR:g}× the values it rests on would be needed to {purpose}: repeating "
                    "is no way to, at this spread")
        total = self.repetitions + self.more_repetitions
        text = (f"~{self.factor:.1f}× the values would {purpose}: {self.more_repetitions} more repetition"
                f"{'s' if self.more_repetitions > 1 else ''} of each design ({total} in all)")
        if self.phase_s > 0:
            text += f", or phases of {self.longer_phase_s:,.0f} s (now {self.phase_s:,.0f} s)"
        return text


def verdict_rule(margins_text: str, confidence: float, min_tail: int) -> str:
    """The verdict rule as the report's method note states it."""
    level = f"{confidence * 100:.3g}%"
    return (f"Verdict, on the {level} interval: `equivalent` when the whole interval lies within the margin "
            f"({margins_text}; a two one-sided test, checked first: a change the interval pins inside the margin "
            "does not matter even where it is significant); `better` or `worse` when it excludes 0; `undecided` "
            "otherwise, with the values that would decide it at the observed spread — the smallest multiple k of the "
            "values compared at which the interval, its sides narrowing as 1/√k around an unchanged point estimate, "
            "would exclude 0 or fit inside the margin, given as more repetitions of each design or as longer phases. "
            f"A percentile with fewer than {min_tail} values beyond it on a side is `undecided (few samples)`, with "
            f"the values that would give it {min_tail}.")
