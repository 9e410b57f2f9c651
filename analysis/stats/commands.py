"""Redis commands per campaign: the commands a design ran on the run's Redis through a cell (its commands.json) over
the campaigns it served — per cell, per phase (commands and campaigns summed over repetitions, never ratios averaged),
and the spread between repetitions that stands for a count's interval.

Why not a bootstrap over seconds, as for CPU: a count has no sampling error (every command is counted), and one
campaign's commands fall in several seconds (its acceptance, its jobs, its outcome) while the campaign is placed in the
second it completed, so resampling seconds would measure where the seconds were cut, not the count. What does move
between repetitions of identical code is small: commands that come per second rather than per campaign (workers'
heartbeats and polls, a service's backlog gauge) spread over a cell's campaigns and the length of its drain, and
whether a worker finds the next job waiting or has to block for it. So a comparison's interval is the range its
repetitions give, every repetition of one side against every repetition of the other: it holds what moved between
them, and with one repetition a side there is none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.stats.cost import served_campaigns
from analysis.stats.load import Cell, Run
from foundation.format import CommandFigures

__all__ = ["ALL", "COMMANDS_SCOPE", "EACH", "CountChange", "Counted", "cell_commands", "command_figures",
           "count_changes", "counted", "difference_range", "merged_commands", "phase_commands", "ratio_range",
           "repetition_values"]

# What the figure counts, as tables name it: the commands of the design's every tier, on the run's Redis.
COMMANDS_SCOPE = "Redis commands"
# What a count compares (count_changes): every command together, or each kind on its own; any other word is a kind.
ALL, EACH = "all", "each"


def command_figures(commands: int, by_kind: Mapping[str, int], campaigns: int, source: str,
                    harness_commands: int | None = None) -> CommandFigures:
    """Commands per campaign, in all and by kind (most frequent first), from counts and campaigns served (pure)."""
    def per(n: float) -> float | None:
        return round(n / campaigns, 4) if campaigns else None

    kinds = sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))
    return CommandFigures(campaigns=campaigns, campaigns_source=source, commands=int(commands),
                          per_campaign=per(commands),
                          by_kind_per_campaign={kind: round(n / campaigns, 4) for kind, n in kinds} if campaigns else {},
                          harness_commands=harness_commands)


def cell_commands(cell: Cell) -> CommandFigures | None:
    """The cell's commands per campaign; None for a cell without a commands.json; `unmeasured` saying why for one whose
    design's commands are not on the run's Redis, or could not be read."""
    counts = cell.commands()
    if counts is None:
        return None
    if not counts.measured:
        return CommandFigures(unmeasured=counts.unmeasured or counts.error or "not counted")
    assert counts.commands is not None
    campaigns, source = served_campaigns(cell)
    return command_figures(counts.commands, counts.by_kind, campaigns, source, counts.harness_commands)


def merged_commands(cells: Sequence[Cell]) -> CommandFigures | None:
    """Commands per campaign over several cells (repetitions): commands and campaigns summed, then divided. Cells
    without counts are left out; None when no cell has a commands.json, `unmeasured` when none has counts."""
    found = [(cell, cell.commands()) for cell in cells]
    measured = [(cell, counts) for cell, counts in found if counts is not None and counts.measured]
    if not measured:
        reasons = [counts.unmeasured or counts.error or "not counted" for _, counts in found if counts is not None]
        return CommandFigures(unmeasured=reasons[0]) if reasons else None
    by_kind: Counter[str] = Counter()
    campaigns, sources, harness = 0, [], 0
    for cell, counts in measured:
        by_kind.update(counts.by_kind)
        served, source = served_campaigns(cell)
        campaigns += served
        sources.append(source)
        harness += counts.harness_commands or 0
    return command_figures(sum(by_kind.values()), by_kind, campaigns, "+".join(dict.fromkeys(sources)), harness)


def repetition_values(cells: Sequence[Cell], kind: str | None = None) -> list[float]:
    """Commands per campaign of each cell that has counts and campaigns (of one command `kind`, or all)."""
    values = []
    for cell in cells:
        figures = cell_commands(cell)
        if figures is None or figures.per_campaign is None:
            continue
        values.append(figures.per_campaign if kind is None else figures.by_kind_per_campaign.get(kind, 0.0))
    return values


def difference_range(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(lowest, highest) of b_j - a_i over every pair of repetitions; NaNs with one repetition a side (no spread)."""
    if not a or not b or (len(a) == 1 and len(b) == 1):
        return float("nan"), float("nan")
    return min(b) - max(a), max(b) - min(a)


def ratio_range(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(lowest, highest) of b_j / a_i - 1 over every pair of repetitions; NaNs with one repetition a side, or a side
    without commands."""
    if not a or not b or (len(a) == 1 and len(b) == 1) or min(a) <= 0:
        return float("nan"), float("nan")
    return min(b) / max(a) - 1, max(b) / min(a) - 1


def phase_commands(run: Run) -> list[dict[str, Any]]:
    """One record per kind × phase × design whose cells have a commands.json, repetitions summed (CommandFigures' keys,
    after kind, phase, design, offered rate and how many repetitions were counted)."""
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in run.cells:
        groups.setdefault((cell.kind, cell.phase, cell.design), []).append(cell)
    records = []
    for (kind, phase, design), cells in groups.items():
        figures = merged_commands(cells)
        if figures is not None:
            counted = sum(1 for cell in cells if (c := cell.commands()) is not None and c.measured)
            records.append({"kind": kind, "phase": phase, "design": design,
                            "offered_rate_per_s": cells[0].offered_rate_per_s, "repetitions": counted,
                            **figures.to_dict()})
    return records


@dataclass(frozen=True)
class Counted:
    """One side's counts: pooled over its repetitions, and each repetition's."""

    pooled: CommandFigures
    repetitions: tuple[CommandFigures, ...]

    def per_campaign(self, command: str) -> tuple[float, tuple[float, ...]]:
        """(pooled, per repetition) commands per campaign of `command` (ALL, or a kind: 0 where it never ran)."""
        def of(figures: CommandFigures) -> float:
            if command == ALL:
                return figures.per_campaign or 0.0
            return figures.by_kind_per_campaign.get(command, 0.0)

        return of(self.pooled), tuple(of(f) for f in self.repetitions)


def counted(cells: Sequence[Cell]) -> Counted | str:
    """A side's counts, or why it has none to judge: every cell needs a commands.json with counts and campaigns."""
    figures = [cell_commands(cell) for cell in cells]
    missing = [cell.id for cell, f in zip(cells, figures, strict=True) if f is None or f.per_campaign is None]
    pooled = merged_commands(cells)
    if not cells or missing or pooled is None or pooled.per_campaign is None:
        reason = next((f.unmeasured for f in figures if f is not None and f.unmeasured), None)
        return reason or f"no commands.json with counts and campaigns in {', '.join(missing) or 'any cell'}"
    return Counted(pooled, tuple(f for f in figures if f is not None))


@dataclass(frozen=True)
class CountChange:
    """One count, candidate against base, per campaign: pooled over the repetitions (`base`, `value`) and each
    repetition's; `low`, `high` the range of the differences of every candidate repetition and every base one (NaN with
    one repetition a side)."""

    command: str  # ALL, or a kind
    base: float
    value: float
    base_repetitions: tuple[float, ...]
    repetitions: tuple[float, ...]

    @property
    def delta(self) -> float:
        return self.value - self.base

    @property
    def range(self) -> tuple[float, float]:
        return difference_range(self.base_repetitions, self.repetitions)

    def past(self, limit: float) -> bool:
        """An increase beyond `limit` commands per campaign that every candidate repetition shows against every base
        one (the range above 0), or, with one repetition a side, the increase alone: one odd repetition does not make
        a change."""
        low, _ = self.range
        return self.delta > limit and not (math.isfinite(low) and low <= 0)


def count_changes(base: Counted, candidate: Counted, command: str = ALL) -> list[CountChange]:
    """The changes a count rule judges: every command together (ALL), one kind, or each kind either side ran (EACH),
    the largest increase first."""
    kinds = [command] if command != EACH else sorted(
        set(base.pooled.by_kind_per_campaign) | set(candidate.pooled.by_kind_per_campaign))
    changes = []
    for kind in kinds:
        (was, was_each), (now, now_each) = base.per_campaign(kind), candidate.per_campaign(kind)
        changes.append(CountChange(kind, was, now, was_each, now_each))
    return sorted(changes, key=lambda change: -change.delta)
