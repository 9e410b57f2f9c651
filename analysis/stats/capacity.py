"""Capacity: where the highest offered rate each design sustains within the SLO and error budget lies — the bracket
[held, broke) its search leaves, per limit — and the ratio of two designs' capacities with its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from analysis.stats.bracket import Bracket, CapacityRatio, capacity_ratio
from analysis.stats.compare import run_settings
from analysis.stats.equivalence import EQUIVALENT, UNDECIDED
from analysis.stats.load import Cell, Run, load_run
from analysis.stats.summary import backlog_health, merged_figures
from foundation.format import CREATE, CellSummary, Slo
from foundation.manifest_format import CapacitySearchRecord

# The limits a capacity step can break, as the capacity table names them. A design whose cells have queue data
# answers with an acknowledgement; what its campaigns' owners wait for is the drain and the completion.
ACKNOWLEDGEMENT = "acknowledgement"  # POST /campaigns P99 over the SLO, errors over the budget, or nothing answered
DRAIN = "drain"  # the backlog grew through the step: the workers fell behind
COMPLETION_SLO = "completion"  # completion P99 over the completion SLO, or too many campaigns not final at the end
LIMITS = (ACKNOWLEDGEMENT, DRAIN, COMPLETION_SLO)
# Campaigns still neither completed nor failed after the drain have waited at least the drain (seconds, past any
# completion SLO worth declaring): more of them than the 1% a P99 may leave out puts the P99 itself past the SLO.
PENDING_LIMIT = 0.01


@dataclass(frozen=True)
class StepFigures:
    """What the capacity rule judges of one step (repetitions merged): from cells here, from the CellSummary it has
    just written in the runner's capacity search, so that both stop on the same rule."""

    count: int
    error_rate: float
    p99_us: int | None
    queued: bool = False  # the step's cells have queue data
    sustainable: bool | None = None
    completion_count: int = 0
    completion_p99_us: int | None = None
    accepted: int | None = None
    pending: int | None = None

    @classmethod
    def of_summary(cls, summary: CellSummary) -> StepFigures:
        create = summary.endpoint(CREATE)
        queue = summary.queue
        error_rate = create.errors / (create.count + create.errors) if create.count + create.errors else 0.0
        if queue is None:
            return cls(count=create.count, error_rate=error_rate, p99_us=create.p99_us)
        return cls(count=create.count, error_rate=error_rate, p99_us=create.p99_us, queued=True,
                   sustainable=queue.sustainable, completion_count=queue.completion.count,
                   completion_p99_us=queue.completion.p99_us, accepted=queue.accepted, pending=queue.pending)


def broken_limits(step: StepFigures, slo: Slo) -> tuple[str, ...]:
    """The limits (LIMITS) a step broke; empty when it is within the SLO. A design with queue data must keep all
    three: its acknowledgement, a backlog that does not grow, and its completion P99 within the completion SLO."""
    broken = []
    if (step.count == 0 or step.p99_us is None or step.p99_us > slo.p99_ms * 1000
            or step.error_rate > slo.error_rate):
        broken.append(ACKNOWLEDGEMENT)
    if step.queued:
        if step.sustainable is False:
            broken.append(DRAIN)
        stuck = bool(step.accepted) and (step.pending or 0) > PENDING_LIMIT * (step.accepted or 0)
        if (step.completion_count == 0 or step.completion_p99_us is None
                or step.completion_p99_us > slo.completion_ms * 1000 or stuck):
            broken.append(COMPLETION_SLO)
    return tuple(broken)


@dataclass(frozen=True)
class RatePoint:
    """One capacity step of one design (repetitions of the same rate merged)."""

    offered_rate_per_s: float
    throughput_per_s: float
    count: int
    errors: int
    error_rate: float
    p50_us: int | None
    p99_us: int | None
    completion_p99_us: int | None
    within_slo: bool  # every limit held: the acknowledgement and, for a design with queue data, drain and completion
    sustainable: bool | None  # the backlog did not grow; None for a design without a queue, or too few samples
    broken: tuple[str, ...] = ()  # the limits this step broke (LIMITS order)
    completion_count: int = 0


@dataclass(frozen=True)
class DesignCapacity:
    design: str
    points: tuple[RatePoint, ...]
    ack_capacity_per_s: float | None  # highest rate with every rate up to it acknowledged within SLO (None: not the first)
    drain_capacity_per_s: float | None  # a design with a queue: highest rate up to which the backlog stayed flat
    tested_up_to_per_s: float
    completion_capacity_per_s: float | None = None  # a design with a queue: highest rate completed within its SLO
    queued: bool = False  # its cells have queue data: drain and completion are judged too
    search: CapacitySearchRecord | None = None  # how the runner's search ended (None: a run from before #25)

    def bracket(self, limit: str | None = None) -> Bracket:
        """Where the capacity (or one of LIMITS) lies: [the highest rate it and every lower rate held, the lowest rate
        tested above that which broke it)."""
        passes = [p.within_slo if limit is None else limit not in p.broken for p in self.points]
        held = highest_passing(self.points, passes)
        above = [p.offered_rate_per_s for p, ok in zip(self.points, passes, strict=True)
                 if not ok and (held is None or p.offered_rate_per_s > held)]
        return Bracket(held, min(above) if above else None)

    def limit_text(self, limit: str) -> str:
        """One limit's bracket, as the capacity table and the headline give it. A limit that held at every rate tested
        because another one ended the search (a queue's acknowledgement past its drain's limit) says so: the search
        stops at the design's capacity, the lowest of its limits, and does not go on to find the others."""
        bracket = self.bracket(limit)
        if bracket.held is not None and bracket.broke is None and self.bracket().broke is not None and self.bound_by:
            return f"≥ {bracket.held:g}/s (not reached: the {' and the '.join(self.bound_by)} broke first)"
        return bracket.text()

    def unfound_text(self) -> str:
        """Why a limit that never broke was not found: the search held at its ceiling, or stopped, or (a run from
        before ceilings) it ended at the highest rate it was given."""
        search = self.search
        if search is not None and search.outcome == "ceiling":
            return f"it held at the search's ceiling, {self.tested_up_to_per_s:g}/s"
        if search is not None and search.outcome == "stopped":
            return f"the search stopped at {self.tested_up_to_per_s:g}/s: {search.reason}"
        return f"it still held at {self.tested_up_to_per_s:g}/s, the highest rate tested"

    def search_text(self) -> str:
        """How the search ended, for the capacity table."""
        bracket = self.bracket()
        search = self.search
        if bracket.broke is None:
            return "not found: " + self.unfound_text()
        if bracket.held is None:
            return f"below the lowest rate tried ({bracket.broke:g}/s)"
        achieved = f"±{bracket.precision_pct:.1f}%"
        if search is None:
            return f"found to {achieved} (steps only)"
        if search.outcome == "budget":
            return f"found to {achieved}: the step budget was spent before ±{search.precision_pct:g}%"
        if search.outcome == "decided":
            return f"found to {achieved} in {search.probes} probes, narrowed no further: the capacity ratio was decided"
        return f"found to {achieved} in {search.probes} probes"

    @property
    def capacity_per_s(self) -> float | None:
        """What the design sustains: acknowledged within the SLO and, for a design with a queue, drained and completed
        within the completion SLO too — the lowest of its limits."""
        if not self.queued:
            return self.ack_capacity_per_s
        limits = (self.ack_capacity_per_s, self.drain_capacity_per_s, self.completion_capacity_per_s)
        return None if None in limits else min(v for v in limits if v is not None)

    @property
    def censored(self) -> bool:
        """True when the design held at the highest rate tested: its capacity is at least that."""
        return self.capacity_per_s is not None and self.capacity_per_s >= self.tested_up_to_per_s

    @property
    def bound_by(self) -> tuple[str, ...]:
        """The limits broken at the first step that broke any: what bounds the capacity (empty when censored). A
        search stops there, so a limit that held up to the last step tested held at least that far."""
        return next((p.broken for p in self.points if p.broken), ())

    def limit_censored(self, value: float | None) -> bool:
        """True when one limit's highest passing rate is the highest rate tested: that limit was never reached."""
        return value is not None and value >= self.tested_up_to_per_s

    @property
    def moved_the_pain(self) -> bool:
        """Rates acknowledged within the SLO that the design's workers could not keep up with."""
        return (self.queued and self.drain_capacity_per_s is not None and self.ack_capacity_per_s is not None
                and self.drain_capacity_per_s < self.ack_capacity_per_s)

    @property
    def late_completions(self) -> bool:
        """Rates acknowledged (and drained) within the SLO whose completions were not: the owner waits too long."""
        drained = self.drain_capacity_per_s if self.drain_capacity_per_s is not None else self.ack_capacity_per_s
        return (self.queued and self.completion_capacity_per_s is not None and self.ack_capacity_per_s is not None
                and drained is not None and self.completion_capacity_per_s < min(self.ack_capacity_per_s, drained))


@dataclass(frozen=True)
class Capacity:
    slo_p99_ms: float
    error_budget: float
    designs: dict[str, DesignCapacity] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    baseline: str | None = None  # the run's design A (Run.baseline): the headline compares the candidate to it
    candidate: str | None = None  # the run's design B (Run.candidate)
    completion_slo_p99_ms: float | None = None  # the completion SLO, for designs with queue data (None: the request's)
    margin: float = 0.10  # the experiment's capacity margin (analysis/stats/verdict_settings.py), a fraction

    @property
    def slo(self) -> Slo:
        return Slo(self.slo_p99_ms, self.error_budget, self.completion_slo_p99_ms)


def rate_point(cells: list[Cell], slo: Slo) -> RatePoint:
    figures = merged_figures(cells)
    sustainable = None
    queued = any(c.queue is not None for c in cells)
    if queued:
        health = [backlog_health(c, figures["throughput_per_s"]) for c in cells]
        flags = [queue.sustainable for queue in health if queue is not None]
        sustainable = False if False in flags else (None if None in flags or not flags else True)
    step = StepFigures(count=figures["count"], error_rate=figures["error_rate"], p99_us=figures.get("p99_us"),
                       queued=queued, sustainable=sustainable, completion_count=figures.get("completion_count") or 0,
                       completion_p99_us=figures.get("completion_p99_us"),
                       accepted=figures.get("completion_accepted"), pending=figures.get("completion_pending"))
    broken = broken_limits(step, slo)
    return RatePoint(offered_rate_per_s=float(cells[0].offered_rate_per_s or 0.0),
                     throughput_per_s=round(figures["throughput_per_s"], 3), count=figures["count"],
                     errors=figures["errors"], error_rate=figures["error_rate"], p50_us=figures.get("p50_us"),
                     p99_us=step.p99_us, completion_p99_us=step.completion_p99_us, within_slo=not broken,
                     sustainable=sustainable, broken=broken, completion_count=step.completion_count)


def highest_passing(points: tuple[RatePoint, ...], passes: list[bool]) -> float | None:
    """The highest rate such that it and every lower rate passed (a lucky pass after a failure does not count)."""
    best = None
    for point, ok in zip(points, passes, strict=True):
        if not ok:
            break
        best = point.offered_rate_per_s
    return best


def design_capacity(run: Run, design: str, slo: Slo) -> DesignCapacity | None:
    cells = [c for c in run.select(kind="capacity", design=design) if c.offered_rate_per_s is not None]
    if not cells:
        return None
    by_rate: dict[float, list[Cell]] = {}
    for cell in cells:
        by_rate.setdefault(float(cell.offered_rate_per_s or 0), []).append(cell)
    points = tuple(rate_point(by_rate[r], slo) for r in sorted(by_rate))
    queued = any(c.queue is not None for c in cells)

    def holding(limit: str) -> float | None:
        return highest_passing(points, [limit not in p.broken for p in points])

    return DesignCapacity(design=design, points=points, ack_capacity_per_s=holding(ACKNOWLEDGEMENT),
                          drain_capacity_per_s=holding(DRAIN) if queued else None,
                          completion_capacity_per_s=holding(COMPLETION_SLO) if queued else None,
                          tested_up_to_per_s=points[-1].offered_rate_per_s, queued=queued)


def capacity(run: Run | Path | str) -> Capacity:
    """Capacity of every design with capacity cells, against the SLO the experiment declares."""
    run = run if isinstance(run, Run) else load_run(run)
    slo = run.record.experiment.slo
    designs: dict[str, DesignCapacity] = {}
    missing = []
    if slo is None:
        missing.append("the manifest's experiment has no slo: capacity cannot be judged")
    for design in run.designs:
        found = design_capacity(run, design, slo) if slo is not None else None
        if found is None:
            if slo is not None:
                ran = bool(run.select(design=design))
                missing.append(f"no capacity cells for {design}" if ran else f"{design} did not run")
            continue
        designs[design] = replace(found, search=run.record.capacity_searches.get(design))
    return Capacity(slo_p99_ms=slo.p99_ms if slo else 0.0, error_budget=slo.error_rate if slo else 0.0,
                    designs=designs, missing=tuple(missing), baseline=run.baseline, candidate=run.candidate,
                    completion_slo_p99_ms=slo.completion_ms if slo else None,
                    margin=run_settings(run).margins.for_metric("capacity"))


def capacity_ratio_of(cap: Capacity, baseline: str | None = None, candidate: str | None = None) -> CapacityRatio | None:
    """The candidate's capacity over the baseline's with the interval both brackets give it (None without both)."""
    baseline = baseline if baseline is not None else cap.baseline
    candidate = candidate if candidate is not None else cap.candidate
    a = cap.designs.get(baseline) if baseline is not None else None
    b = cap.designs.get(candidate) if candidate is not None else None
    if a is None or b is None:
        return None
    return capacity_ratio(b.bracket(), a.bracket(), cap.margin)


def refine_text(ratio: CapacityRatio) -> str:
    """What would decide an undecided capacity ratio: 'brackets of ±2.1% on both designs would decide it'; empty when
    refining cannot (a limit not found)."""
    if ratio.refine_to is None:
        return ""
    if ratio.refine_to.pct < 0.5:
        return "the capacities are too close for refining the brackets to decide it"
    if ratio.refine_to.shrink > 0.9:
        return "slightly narrower brackets on both designs would decide it"
    return f"brackets of ±{ratio.refine_to.pct:.1f}% on both designs would decide it"


def ratio_verdict_text(ratio: CapacityRatio) -> str:
    """'better', 'equivalent within ±10%', 'undecided — brackets of ±2.1% on both designs would decide it'."""
    if ratio.verdict == EQUIVALENT:
        return f"equivalent within ±{ratio.margin * 100:g}%"
    if ratio.verdict != UNDECIDED:
        return ratio.verdict
    need = refine_text(ratio)
    return f"undecided — {need}" if need else "undecided"
