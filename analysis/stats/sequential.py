"""Runs that go on until they know: after the declared repetitions, and after each repetition added since, a look at
the experiment's headline rows decides whether one more interleaved repetition of every design is worth its time.

The method — a bounded number of looks, each judged on intervals at confidence 1 − α/K, so that the chance of a
wrong verdict over all looks stays at most α — is stated, with why it was chosen, in
analysis/stats/verdict_settings.py's `Sequential`; analysis/stats/compare.py states it under every comparison of a
sequential run. This module judges one look from the run folder as it stands (the runner calls `look()` between
repetitions) and words the record the runner keeps of the looks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis.stats.compare import Comparison, DeltaRow, compare_designs, level_text, run_settings
from analysis.stats.equivalence import UNDECIDED, decided
from analysis.stats.headline import headline_row
from analysis.stats.load import Cell, Run, cells_of
from analysis.stats.verdict_settings import HEADLINE_ROWS, Sequential
from foundation.manifest_format import LookRecord, RunRecord, SequentialRecord

__all__ = ["Look", "judge", "look", "looks_text", "run_so_far"]

EVERY_ROW_DECIDED, MAX_REPETITIONS, BUDGET, GO_ON = "every row decided", "max repetitions", "time budget", "go on"
# The block bootstrap's intervals hold their level only with enough 1-second intervals in each repetition. In
# simulated A/A comparisons of P99 (benchmarks/sequential_aa.py --seconds N, 500 trials, 2 x 1,000 for 20) a single
# 95% look was wrong 10.8% of the time with 5 intervals a repetition, 7.4% with 10, 5.7% with 20, 5.0% with 40; three
# looks corrected as verdict_settings.Sequential says, 12.0%, 7.4%, 4.3%, 3.8%.
MIN_INTERVALS = 20


@dataclass(frozen=True)
class Look:
    """One look: which of the declared rows are decided at this many repetitions, and whether to add another."""

    number: int  # 1-based
    looks: int  # K, the most looks the run may take
    repetitions: int  # of each design, judged at this look
    confidence: float  # every interval's level: 1 − α/K
    verdicts: Mapping[str, str]  # declared row -> verdict; rows the run does not compare are left out
    needs: Mapping[str, str] = field(default_factory=dict)  # undecided row -> what would decide it
    go_on: bool = False
    why: str = ""  # EVERY_ROW_DECIDED | MAX_REPETITIONS | BUDGET | GO_ON
    spent_s: float = 0.0  # on repetitions added so far
    next_round_s: float = 0.0  # what one more is expected to take
    caveat: str = ""  # why the stated level may not hold (phases too short for the bootstrap)

    @property
    def undecided(self) -> list[str]:
        return [name for name, verdict in self.verdicts.items() if not decided(verdict)]

    def record(self) -> LookRecord:
        """The look as the manifest keeps it (foundation/manifest_format.py)."""
        return LookRecord(number=self.number, looks=self.looks, repetitions=self.repetitions,
                          confidence=self.confidence, verdicts=dict(self.verdicts), needs=dict(self.needs),
                          go_on=self.go_on, why=self.why, spent_s=self.spent_s, next_round_s=self.next_round_s,
                          caveat=self.caveat)

    def text(self) -> str:
        """The runner's line: 'look 2 of 5 (3 repetitions, 99% intervals): p99 better, outcome_p99 undecided; …'."""
        rows = ", ".join(f"{name} {verdict}" for name, verdict in self.verdicts.items()) or "no headline row compared"
        then = {GO_ON: f"one more repetition of each design (~{self.next_round_s:.0f} s)",
                EVERY_ROW_DECIDED: "every row decided: no more repetitions",
                MAX_REPETITIONS: f"{self.repetitions} repetitions, the most declared: stop",
                BUDGET: f"the next repetition (~{self.next_round_s:.0f} s) would overrun the time budget "
                        f"({self.spent_s:.0f} s spent): stop"}[self.why]
        return (f"look {self.number} of {self.looks} ({self.repetitions} repetitions, {level_text(self.confidence)} "
                f"intervals): {rows}; {then}" + (f" ({self.caveat})" if self.caveat else ""))


def judge(comparison: Comparison, run: Run | None, wanted: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(verdicts, needs) of the declared rows at the headline's phase (the most loaded steady phase), by their names
    (verdict_settings.HEADLINE_ROWS); a row this comparison does not have is left out (nothing to wait for)."""
    headline = headline_row(comparison, run)
    verdicts: dict[str, str] = {}
    needs: dict[str, str] = {}
    if headline is None:
        return verdicts, needs
    for name in wanted:
        endpoint, metric = HEADLINE_ROWS[name]
        row: DeltaRow | None = comparison.row(metric, headline.group, endpoint=endpoint)
        if row is None:
            continue
        verdicts[name] = row.verdict
        need = row.need
        if row.verdict == UNDECIDED and need is not None:
            needs[name] = need.text()
    return verdicts, needs


def look(run: Run) -> Look:
    """The look a sequential run takes now: its headline rows judged at the look's confidence, and whether to add a
    repetition (every row decided, the most repetitions declared reached, or the next one past the time budget:
    stop). Time comes from the cells' own timestamps: spent is the span of the repetitions added so far, the next
    one is expected to take as long as the last."""
    settings = run_settings(run)
    sequential = settings.sequential
    if sequential is None:
        raise ValueError(f"run {run.id} declares no [sequential] option")
    comparison = compare_designs(run)
    verdicts, needs = judge(comparison, run, sequential.rows)
    repetitions = _repetitions(run)
    spent_s, next_s = _times(run, settings.repetitions, repetitions)
    why = _why(sequential, verdicts, repetitions, spent_s, next_s)
    return Look(number=repetitions - settings.repetitions + 1, looks=sequential.looks(settings.repetitions),
                repetitions=repetitions, confidence=settings.confidence, verdicts=verdicts, needs=needs,
                go_on=why == GO_ON, why=why, spent_s=spent_s, next_round_s=next_s, caveat=_caveat(comparison, run))


def _caveat(comparison: Comparison, run: Run) -> str:
    """Say so when the headline phase's repetitions are too short for the intervals to hold their level."""
    headline = headline_row(comparison, run)
    if headline is None or headline.phase_s >= MIN_INTERVALS:
        return ""
    return (f"its phases give {headline.phase_s:.0f} 1-second intervals a repetition, fewer than the {MIN_INTERVALS} "
            f"the bootstrap needs to hold its stated level: lengthen the steady phase")


def _why(sequential: Sequential, verdicts: Mapping[str, str], repetitions: int, spent_s: float, next_s: float) -> str:
    if all(decided(v) for v in verdicts.values()):
        return EVERY_ROW_DECIDED
    if repetitions >= sequential.max_repetitions:
        return MAX_REPETITIONS
    if spent_s + next_s > sequential.budget_s:
        return BUDGET
    return GO_ON


def _repetitions(run: Run) -> int:
    """Repetitions every design has completed (of its steady phases)."""
    counts = [len({c.repetition for c in run.select(kind="steady", design=d) if c.record.status == "complete"})
              for d in run.designs]
    return min(counts) if counts else 0


def _span(cells: Sequence[Cell]) -> float:
    started = [c.record.started_at for c in cells]
    ended = [c.record.ended_at for c in cells]
    if not cells or None in started or None in ended:
        return 0.0
    return float(max(e for e in ended if e is not None) - min(s for s in started if s is not None))


def _times(run: Run, first: int, repetitions: int) -> tuple[float, float]:
    added = [c for c in run.cells if c.kind != "capacity" and c.repetition > first]
    last = [c for c in run.cells if c.kind != "capacity" and c.repetition == repetitions]
    return _span(added), _span(last)


def run_so_far(stage_dir: Path, record: RunRecord, point: str | None = None) -> Run:
    """The Run a look reads while the run is still going: the folder of a plain run (or of a sweep point) and the
    manifest's record as the runner holds it, with the cells finished so far."""
    if point is not None:
        record = record.as_point_run(point)
    finished = tuple(c for c in record.cells if c.status == "complete")
    record = replace(record, cells=finished)
    return Run(dir=stage_dir, record=record, cells=cells_of(finished, stage_dir, record.experiment.declarations))


def looks_text(record: SequentialRecord | None) -> str:
    """How a sequential run went, from its record of looks (manifest `sequential`): for the report."""
    if record is None or not record.looks:
        return ""
    last = record.looks[-1]
    undecided = [name for name, verdict in last.verdicts.items() if not decided(verdict)]
    text = (f"{len(record.looks)} look(s) of at most {last.looks}, each on {level_text(last.confidence)} intervals; it "
            f"ended at {last.repetitions} repetitions of each design: {last.why}")
    if last.caveat:
        text += f" ({last.caveat})"
    if undecided:
        text += "; still undecided: " + "; ".join(
            name + (f" ({last.needs[name]})" if name in last.needs else "") for name in undecided)
    return text
