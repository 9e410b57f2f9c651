"""What serving costs: the CPU seconds each tier spent through a cell (its cpu.csv) against the campaigns the cell
served to their outcome — per cell, per phase (CPU and campaigns summed over repetitions, never ratios averaged),
and per second, for the comparison's bootstrap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats.bootstrap import REPLICATES, stratified_weights
from analysis.stats.histogram import Intervals
from analysis.stats.load import Cell, Run
from foundation.format import CREATE, SYSTEM_TIERS, TIERS, CostFigures

# The tiers' CPU plus every other process's should add up to the machine's: /proc/stat and the processes' own
# counters read the same kernel clock at the same instants. More than 10% apart (either way) means a tier's work
# went uncounted (a process outside its cgroup or tree, interrupts) or was counted twice, and the per-tier
# figures should be read with that in mind.
ACCOUNTING_TOLERANCE = 0.10
# Processes outside the tiers (the harness itself, anything else running here) above this share of the machine's
# CPU are worth a note: they competed with the tiers for the CPUs, and may have slowed what was measured.
OTHERS_NOTICE_SHARE = 0.10
# What "CPU per campaign" charges: the tiers that serve; the load generator is the client's and only shown.
COST_SCOPE = " + ".join(SYSTEM_TIERS)
# What the campaigns were counted from (CostFigures.campaigns_source), as the report says it.
SOURCE_LABELS = {"create": "successful POSTs", "census": "completed", "completion_log": "completed"}


def served_campaigns(cell: Cell) -> tuple[int, str]:
    """How many campaigns the cell served to their outcome, and what they were counted from: for a design without
    queue data its successful creates; for one with queue data the campaigns completed (a queue that accepts
    faster than it completes is not cheaper), from the census, else from the completion log."""
    if cell.queue is None:
        return cell.log(CREATE).total_count, "create"
    census = cell.census()
    if census is not None and census.completed is not None:
        return int(census.completed), "census"
    return cell.completion.total_count, "completion_log"


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) + 0.0 if whole > 0 else None  # + 0.0: no "-0.0"


def cost_figures(cpu_s: Mapping[str, float], machine_s: float, others_s: float, campaigns: int, source: str,
                 wall_s: float = 0.0, samples: int = 0) -> CostFigures:
    """Cost per campaign from CPU seconds per tier and the campaigns served with them (pure)."""
    cpu_s = {tier: float(cpu_s.get(tier, 0.0)) for tier in TIERS}
    system_s = sum(cpu_s[tier] for tier in SYSTEM_TIERS)
    per_campaign = {tier: round(1000 * s / campaigns, 4) if campaigns else None for tier, s in cpu_s.items()}
    unaccounted = _share(machine_s - sum(cpu_s.values()) - others_s, machine_s)
    return CostFigures(
        campaigns=campaigns, campaigns_source=source, wall_s=round(wall_s, 3), samples=samples,
        cpu_s={tier: round(s, 4) for tier, s in cpu_s.items()}, system_cpu_s=round(system_s, 4),
        cpu_ms_per_campaign=per_campaign,
        total_cpu_ms_per_campaign=round(1000 * system_s / campaigns, 4) if campaigns else None,
        campaigns_per_cpu_s=round(campaigns / system_s, 4) if system_s > 0 else None,
        machine_cpu_s=round(machine_s, 4), others_cpu_s=round(others_s, 4), others_share=_share(others_s, machine_s),
        unaccounted_share=unaccounted, accounting_gap=unaccounted is not None and abs(unaccounted) > ACCOUNTING_TOLERANCE,
    )


def _spent(cpu: pd.DataFrame) -> dict[str, float]:
    """CPU seconds per column from the first row to the last (the first is the cell's start, all zeros)."""
    return {column: float(cpu[column].iloc[-1] - cpu[column].iloc[0]) for column in cpu.columns}


def cell_cost(cell: Cell) -> CostFigures | None:
    """The cell's cost per campaign; None for a cell without a cpu.csv (or an empty one)."""
    cpu = cell.cpu
    if cpu is None or cpu.empty:
        return None
    spent = _spent(cpu)
    campaigns, source = served_campaigns(cell)
    return cost_figures(spent, spent["machine"], spent["others"], campaigns, source, wall_s=spent["t_s"],
                        samples=len(cpu))


def merged_cost(cells: Sequence[Cell]) -> CostFigures | None:
    """Cost over several cells (repetitions): CPU and campaigns summed, then divided — never ratios averaged.
    Cells without a cpu.csv are left out; None when none has one."""
    costs = [cost for cost in (cell_cost(cell) for cell in cells) if cost is not None]
    if not costs:
        return None
    cpu_s = {tier: sum(cost.cpu_s.get(tier, 0.0) for cost in costs) for tier in TIERS}
    sources = "+".join(dict.fromkeys(cost.campaigns_source for cost in costs))
    return cost_figures(cpu_s, sum(c.machine_cpu_s for c in costs), sum(c.others_cpu_s for c in costs),
                        sum(c.campaigns for c in costs), sources, wall_s=sum(c.wall_s for c in costs),
                        samples=sum(c.samples for c in costs))


def phase_costs(run: Run) -> list[dict[str, Any]]:
    """One record per kind × phase × design with cost data, repetitions summed (CostFigures' keys, after kind,
    phase, design, offered rate and how many repetitions had a cpu.csv)."""
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in run.cells:
        groups.setdefault((cell.kind, cell.phase, cell.design), []).append(cell)
    records = []
    for (kind, phase, design), cells in groups.items():
        cost = merged_cost(cells)
        if cost is not None:
            records.append({"kind": kind, "phase": phase, "design": design,
                            "offered_rate_per_s": cells[0].offered_rate_per_s,
                            "repetitions": sum(cell.cpu is not None for cell in cells), **cost.to_dict()})
    return records


def cost_table(run: Run) -> pd.DataFrame:
    """phase_costs as a frame: CPU ms per campaign per tier, the system tiers' total, campaigns per CPU-second,
    how many campaigns, and the machine check, per design and phase."""
    return pd.DataFrame(phase_costs(run))


@dataclass(frozen=True)
class CostSeries:
    """One cell's cost second by second: the system tiers' CPU seconds in each interval of its cpu.csv, and the
    campaigns served in the same interval (by the time their outcome was logged)."""

    cpu_s: np.ndarray  # (n,)
    campaigns: np.ndarray  # (n,)


def _outcome_log(cell: Cell) -> Intervals:
    """The log that times the campaigns served_campaigns counts: creates, or completions for queue data."""
    return cell.log(CREATE) if cell.queue is None else cell.completion


def cost_series(cell: Cell, tiers: Sequence[str] = SYSTEM_TIERS) -> CostSeries | None:
    """Per-interval CPU of `tiers` (differences of cpu.csv's rows) and campaigns (the outcome log's interval counts,
    each interval placed by its midpoint's time since the cell's start); None without a cpu.csv, or when the campaigns
    counted have no log to place them in time."""
    cpu = cell.cpu
    if cpu is None or len(cpu) < 2:
        return None
    t = cpu["t_s"].to_numpy(float)
    cpu_s = np.diff(cpu[list(tiers)].sum(axis=1).to_numpy(float))
    campaigns, _ = served_campaigns(cell)
    log = _outcome_log(cell)
    placed = np.zeros(len(cpu_s))
    if log.total_count:
        started = cell.record.started_at
        origin = started if started is not None else log.start_time_s + float(log.start_s[0])
        middle = log.start_time_s + log.start_s + log.length_s / 2 - origin
        # Outcomes logged before the first row or after the last belong to the first or last interval.
        where = np.clip(np.searchsorted(t[1:], middle, side="right"), 0, len(cpu_s) - 1)
        placed = np.bincount(where, weights=log.interval_counts(), minlength=len(cpu_s)).astype(float)
        # The census may count a campaign or two the log missed (or the reverse): centre on the reported count.
        placed *= campaigns / log.total_count
    elif campaigns:
        return None
    return CostSeries(cpu_s=cpu_s, campaigns=placed)


def cost_replicates(series: Sequence[CostSeries], rng: np.random.Generator,
                    replicates: int = REPLICATES) -> np.ndarray:
    """(replicates,) CPU ms per campaign (of the series' tiers) of block-bootstrapped seconds: each cell's
    (repetition's) intervals resampled in circular blocks on their own, then sum(CPU) / sum(campaigns) over everything
    drawn (NaN where a replicate drew no campaign)."""
    weights = stratified_weights([len(s.cpu_s) for s in series], replicates, rng)
    cpu_s = weights @ np.concatenate([s.cpu_s for s in series]) if series else np.zeros(replicates)
    campaigns = weights @ np.concatenate([s.campaigns for s in series]) if series else np.zeros(replicates)
    return np.divide(1000 * cpu_s, campaigns, out=np.full(replicates, np.nan), where=campaigns > 0)


def cell_series(cells: Sequence[Cell], tiers: Sequence[str] = SYSTEM_TIERS) -> list[CostSeries] | None:
    """The series of every cell with a cpu.csv; None when one of them cannot be placed in time (no CI then)."""
    series = [cost_series(cell, tiers) for cell in cells if cell.cpu is not None]
    return None if any(s is None for s in series) or not series else [s for s in series if s is not None]
