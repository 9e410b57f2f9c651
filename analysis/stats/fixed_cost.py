"""What a design costs with nothing to do, apart from what each campaign costs: a line through its capacity steps.

CPU per campaign at one offered rate charges the design's fixed cost — what its processes spend whatever the load:
workers polling their queue, heartbeats, an abandonment watch, a server's timers — to the campaigns of that phase.
At 15/s, twelve idle Dramatiq workers (two consumer threads each, polling every 100 ms) charge about 9 ms to every
campaign, more than a campaign's own work on that library (benchmarks/worker_idle.py, benchmarks/drain_cost.py). A
capacity search offers the same design, on the same processes, at several rates; below its capacity each step's CPU
per second is a line in the campaigns it served per second:

    CPU/s = fixed + marginal × campaigns/s

Its intercept is the fixed cost per second, its slope the cost of one more campaign. Fitted per tier by least
squares over the capacity steps that held (a step past the capacity adds queueing and backlog the line does not
model), each step's CPU and campaigns over its whole cpu.csv (a queued design's drain included, so every campaign's
CPU is in its window); at least 3 steps at 2 or more rates, else no fit. `at_rate` then splits a phase's CPU per
campaign into the fixed share (fixed / rate) and the rest. R² of the system tiers' line says how well a line holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.stats.capacity import Capacity
from analysis.stats.cost import cell_cost
from analysis.stats.load import Run
from foundation.format import SYSTEM_TIERS

__all__ = ["MIN_STEPS", "FixedCost", "fixed_costs"]

MIN_STEPS = 3
SYSTEM = "system"  # the charged tiers together (SYSTEM_TIERS)


@dataclass(frozen=True)
class FixedCost:
    """One design's line: `fixed_ms_per_s` and `marginal_ms` per tier and for SYSTEM, over `steps` capacity steps
    serving `low_per_s` to `high_per_s` campaigns a second; `r2` of the SYSTEM line."""

    design: str
    steps: int
    low_per_s: float
    high_per_s: float
    fixed_ms_per_s: dict[str, float]
    marginal_ms: dict[str, float]
    r2: float | None

    def fixed_ms_per_campaign(self, rate_per_s: float, tier: str = SYSTEM) -> float | None:
        """The fixed cost each campaign carries when `rate_per_s` campaigns a second share it."""
        return self.fixed_ms_per_s[tier] / rate_per_s if rate_per_s > 0 else None


def fixed_costs(run: Run, cap: Capacity) -> list[FixedCost]:
    """A line per design whose capacity steps allow one (see the module's docstring), in the run's design order."""
    lines = []
    for design in run.designs:
        found = cap.designs.get(design)
        held = found.bracket().held if found is not None else None
        if held is None:
            continue
        points = []
        for cell in run.select(kind="capacity", design=design):
            cost = cell_cost(cell)
            if cost is None or cell.offered_rate_per_s is None or cell.offered_rate_per_s > held or cost.wall_s <= 0:
                continue
            per_s = {tier: 1000 * cost.cpu_s.get(tier, 0.0) / cost.wall_s for tier in SYSTEM_TIERS}
            per_s[SYSTEM] = sum(per_s[tier] for tier in SYSTEM_TIERS)
            points.append((cost.campaigns / cost.wall_s, per_s))
        line = _fit(design, points)
        if line is not None:
            lines.append(line)
    return lines


def _fit(design: str, points: list[tuple[float, dict[str, float]]]) -> FixedCost | None:
    rates = np.array([rate for rate, _ in points])
    if len(points) < MIN_STEPS or len(np.unique(np.round(rates, 6))) < 2:
        return None
    fixed, marginal = {}, {}
    for tier in (*SYSTEM_TIERS, SYSTEM):
        cpu = np.array([per_s[tier] for _, per_s in points])
        slope, intercept = np.polyfit(rates, cpu, 1)
        fixed[tier], marginal[tier] = round(float(intercept), 3), round(float(slope), 4)
    cpu = np.array([per_s[SYSTEM] for _, per_s in points])
    residual = cpu - (fixed[SYSTEM] + marginal[SYSTEM] * rates)
    spread = float(np.sum((cpu - cpu.mean()) ** 2))
    r2 = round(1 - float(np.sum(residual ** 2)) / spread, 3) if spread > 0 else None
    return FixedCost(design, len(points), round(float(rates.min()), 2), round(float(rates.max()), 2), fixed, marginal,
                     r2)
