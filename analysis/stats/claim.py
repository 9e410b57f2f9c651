"""A result measured elsewhere, set beside what the run measured: the experiment's `[claim]` (e.g. the
reference team's throughput +40% and P99 -25%) against the same two figures from this run, each with the
uncertainty this run leaves — a confidence interval for P99, the capacity brackets for throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.stats.capacity import Capacity, capacity_ratio_of
from analysis.stats.compare import Comparison, level_text
from analysis.stats.headline import headline_row
from analysis.stats.load import Run

__all__ = ["ClaimRow", "claim_rows"]


@dataclass(frozen=True)
class ClaimRow:
    figure: str
    claimed_pct: float
    measured: str  # the measured change with its interval, or why there is none
    agrees: str  # "yes", "no", or "cannot tell"

    def as_dict(self) -> dict[str, str]:
        return {"figure": self.figure, "claimed": f"{self.claimed_pct:+.0f}%", "measured here": self.measured,
                "within the interval": self.agrees}


def throughput_row(cap: Capacity, baseline: str, candidate: str, claimed_pct: float) -> ClaimRow:
    """The capacity ratio, with the interval both brackets leave: a capacity in [held, broke) on each side puts the
    change in (held_B / broke_A − 1, broke_B / held_A − 1), unbounded above when B's limit was not found."""
    figure = "throughput at the SLO"
    a, b = cap.designs.get(baseline), cap.designs.get(candidate)
    if a is None or b is None or not a.capacity_per_s or b.capacity_per_s is None:
        return ClaimRow(figure, claimed_pct, "not measured (a design has no capacity within the SLO)", "cannot tell")
    ratio = capacity_ratio_of(cap, baseline, candidate)
    assert ratio is not None
    point = (b.capacity_per_s / a.capacity_per_s - 1) * 100
    low = (ratio.low - 1) * 100 if ratio.low > 0 else None
    high = (ratio.high - 1) * 100 if math.isfinite(ratio.high) else None
    interval = f"{'…' if low is None else f'{low:+.0f}%'} … {'∞' if high is None else f'{high:+.0f}%'}"
    measured = (f"{point:+.0f}% ({b.bracket().text()} vs {a.bracket().text()}; between {interval} from both "
                "brackets)")
    inside = (low is None or claimed_pct >= low) and (high is None or claimed_pct <= high)
    return ClaimRow(figure, claimed_pct, measured, "yes" if inside else "no")


def p99_row(comparison: Comparison, run: Run, claimed_pct: float) -> ClaimRow:
    figure = "P99 at equal load"
    row = headline_row(comparison, run)
    if row is None or row.delta_pct is None:
        return ClaimRow(figure, claimed_pct, "not compared", "cannot tell")
    if row.ci_low_pct is None or row.ci_high_pct is None or row.note:
        return ClaimRow(figure, claimed_pct, f"{row.delta_pct:+.0f}% ({row.group}; too few samples for a CI)",
                        "cannot tell")
    measured = (f"{row.delta_pct:+.0f}% ({level_text(row.confidence)} CI {row.ci_low_pct:+.0f}% … "
                f"{row.ci_high_pct:+.0f}%; {row.group})")
    inside = row.ci_low_pct <= claimed_pct <= row.ci_high_pct
    return ClaimRow(figure, claimed_pct, measured, "yes" if inside else "no")


def claim_rows(run: Run, cap: Capacity, comparison: Comparison) -> tuple[str, list[ClaimRow]] | None:
    """The claim's source and its rows beside this run's figures; None when the experiment declares no claim."""
    claim = run.record.experiment.claim
    if claim is None or run.baseline is None or run.candidate is None:
        return None
    rows = [throughput_row(cap, run.baseline, run.candidate, float(claim.throughput_at_slo_change_pct)),
            p99_row(comparison, run, float(claim.p99_at_equal_load_change_pct))]
    return claim.source or "a result measured elsewhere", rows
