"""Where a capacity lies: the bracket [held, broke) a capacity search leaves, and the ratio of two capacities with the
interval both brackets give it, decided against the experiment's capacity margin."""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.stats.equivalence import BETTER, UNDECIDED, WORSE, decide

__all__ = ["Bracket", "CapacityRatio", "Refinement", "capacity_ratio"]


@dataclass(frozen=True)
class Bracket:
    """A limit lies in [held, broke): `held` the highest rate at which it and every lower rate held (None: even the
    lowest rate tested broke), `broke` the lowest rate tested above it that broke (None: none did — not found)."""

    held: float | None
    broke: float | None

    @property
    def found(self) -> bool:
        return self.held is not None and self.broke is not None

    @property
    def precision_pct(self) -> float | None:
        """±: (broke − held) / (2 · held), in percent; None without both ends."""
        if self.held is None or self.broke is None or self.held <= 0:
            return None
        return (self.broke - self.held) / (2 * self.held) * 100

    def text(self) -> str:
        """'[225, 240)/s ±3.3%', '≥ 360/s (not found)', '< 15/s', or '-' when nothing was tested."""
        if self.held is None:
            return f"< {self.broke:g}/s" if self.broke is not None else "-"
        if self.broke is None:
            return f"≥ {self.held:g}/s (not found)"
        return f"[{self.held:g}, {self.broke:g})/s ±{self.precision_pct:.1f}%"


@dataclass(frozen=True)
class Refinement:
    """Brackets that would decide a capacity ratio: `shrink` times as wide as now, ±`pct` on both designs."""

    shrink: float
    pct: float


@dataclass(frozen=True)
class CapacityRatio:
    """B's capacity over A's: the ratio of the rates that held; its interval from both brackets, (held_B / broke_A,
    broke_B / held_A), both ends open (0 or ∞ where a bracket has no end); and that interval's verdict against the
    capacity margin. `refine_to`: for an undecided ratio, the brackets that would decide it at this ratio (None
    where refining cannot: a limit not found, or the ratio exactly 1 with no margin)."""

    value: float | None
    low: float
    high: float
    verdict: str
    margin: float
    refine_to: Refinement | None = None

    def interval_text(self) -> str:
        high = "∞" if math.isinf(self.high) else f"{(self.high - 1) * 100:+.0f}%"
        return f"{(self.low - 1) * 100:+.0f}%…{high}"


def capacity_ratio(b: Bracket, a: Bracket, margin: float) -> CapacityRatio:
    """B's capacity against A's, as the two brackets allow (see CapacityRatio)."""
    low = b.held / a.broke if b.held and a.broke else 0.0
    high = b.broke / a.held if b.broke is not None and a.held else math.inf
    value = b.held / a.held if a.held and b.held is not None else None
    # Both ends are open: B's capacity is at least its held rate and A's below its broke rate, so the ratio exceeds
    # held_B / broke_A strictly (and likewise stays below broke_B / held_A): an end at exactly 1 excludes 1.
    verdict = BETTER if low >= 1 else WORSE if high <= 1 else decide(low - 1, high - 1, True, margin)
    refine = _refine_to(b, a, low, high, margin) if verdict == UNDECIDED else None
    return CapacityRatio(value, low, high, verdict, margin, refine)


def _refine_to(b: Bracket, a: Bracket, low: float, high: float, margin: float) -> Refinement | None:
    """The ±precision of both brackets that would decide the ratio, if each limit stayed in the middle of its bracket:
    the interval's sides, in log terms, shrink in proportion to the brackets' widths."""
    if not (a.found and b.found and a.held and b.held and a.broke and b.broke):
        return None
    middle = math.log(((b.held + b.broke) / 2) / ((a.held + a.broke) / 2))
    down, up = middle - math.log(low), math.log(high) - middle
    shrink = []
    if middle > 0 and down > 0:
        shrink.append(middle / down)
    if middle < 0 and up > 0:
        shrink.append(-middle / up)
    upper, lower = math.log(1 + margin), math.log(1 - margin)
    if lower < middle < upper and up > 0 and down > 0:
        shrink.append(min((upper - middle) / up, (middle - lower) / down))
    if not shrink:
        return None
    factor = min(max(shrink), 1.0)
    return Refinement(factor, max(a.precision_pct or 0.0, b.precision_pct or 0.0) * factor)
