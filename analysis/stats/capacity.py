"""Capacity: the highest offered rate each design sustains within the SLO and error budget, and the headline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.stats.compare import Comparison, DeltaRow, compare_designs
from analysis.stats.load import Cell, Run, load_run
from analysis.stats.summary import backlog_health, merged_figures
from foundation.format import COMPLETION, CREATE, OUTCOME, CellSummary, Slo

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
        designs[design] = found
    return Capacity(slo_p99_ms=slo.p99_ms if slo else 0.0, error_budget=slo.error_rate if slo else 0.0,
                    designs=designs, missing=tuple(missing), baseline=run.baseline, candidate=run.candidate,
                    completion_slo_p99_ms=slo.completion_ms if slo else None)


def _rate(value: float | None, censored: bool = False) -> str:
    if value is None:
        return "nothing tested"
    return f"{'at least ' if censored else ''}{value:g}/s"


def slo_text(cap: Capacity) -> str:
    """'P99 ≤ 500 ms', and the completion SLO beside it when a design has queue data (its completions are judged)."""
    text = f"P99 ≤ {cap.slo_p99_ms:g} ms"
    if any(d.queued for d in cap.designs.values()):
        text += f" and completion P99 ≤ {cap.slo.completion_ms:g} ms"
    return text


def capacity_sentence(cap: Capacity, baseline: str | None = None, candidate: str | None = None) -> str:
    """The candidate's capacity against the baseline's (by default the run's design B against its design A)."""
    baseline = baseline if baseline is not None else cap.baseline
    candidate = candidate if candidate is not None else cap.candidate
    a = cap.designs.get(baseline) if baseline is not None else None
    b = cap.designs.get(candidate) if candidate is not None else None
    slo = slo_text(cap)
    if a is None or b is None:
        have = ", ".join(f"{d.design} sustains {_rate(d.capacity_per_s, d.censored)}" for d in cap.designs.values())
        return (f"Capacity not compared ({'; '.join(cap.missing) or 'one design has no capacity cells'})"
                + (f": {have} at {slo}." if have else "."))
    a_cap, b_cap = a.capacity_per_s, b.capacity_per_s
    if a_cap is None and b_cap is None:
        return f"Neither design sustains even the lowest rate tested at {slo} and errors ≤ {cap.error_budget:.1%}."
    if a_cap is None or b_cap is None:
        holder, other = (candidate, baseline) if a_cap is None else (baseline, candidate)
        value = b_cap if a_cap is None else a_cap
        return (f"{holder} sustains {_rate(value)} at {slo}; {other} does not sustain even the lowest rate tested "
                f"({min(p.offered_rate_per_s for p in (a.points + b.points)):g}/s).")
    ratio = (b_cap / a_cap - 1) * 100
    if a.censored and b.censored:
        return (f"Both designs sustain the highest rate tested ({b_cap:g}/s) at {slo}: capacity is not separated "
                f"(neither limit was found; raise the capacity search's max_per_s).")
    if abs(ratio) < 0.5:
        return f"{candidate} and {baseline} sustain the same throughput at {slo} ({b_cap:g}/s)."
    word = "more" if ratio > 0 else "less"
    text = (f"{candidate} sustains {abs(ratio):.0f}% {word} throughput at {slo} "
            f"({_rate(b_cap, b.censored)} vs {_rate(a_cap, a.censored)})")
    unfound = a if a.censored else b if b.censored else None
    if unfound is not None:
        # A censored capacity makes the ratio a bound, not a figure: the headline must say so, not only "at least".
        text += (f"; {unfound.design}'s limit was not found (it still held at {unfound.tested_up_to_per_s:g}/s, the "
                 f"highest rate tested), so the difference is a bound")
    return text


def headline_row(comparison: Comparison, run: Run | None) -> DeltaRow | None:
    """The P99 row of the most loaded phase compared (the one closest to where capacity matters)."""
    rows = [r for r in comparison.rows if r.metric == "p99_us" and r.endpoint == CREATE]
    if not rows:
        return None
    return max(rows, key=lambda r: _phase_rate(run, r.group) or 0.0)


def _phase_rate(run: Run | None, phase: str) -> float | None:
    cells = run.select(phase=phase) if run is not None else []
    return cells[0].offered_rate_per_s if cells else None


def _outcome_of(log: str) -> str:
    """What a side's figure is to the campaign's owner: the completion, or the answer when that is the outcome."""
    return "completion" if log == COMPLETION else "end-to-end"


def _answer_of(outcome_log: str) -> str:
    """What a side's POST /campaigns answer is: an acknowledgement when its outcome comes later, else the outcome."""
    return "acknowledgement" if outcome_log == COMPLETION else "end-to-end"


def _change(row: DeltaRow, than: str = "") -> str:
    """'is 80% lower than <than> (95% CI …)', or why it is not judged; `than` empty: the old one-sided wording."""
    against = f" than {than}" if than else ""
    ci = f"95% CI {row.ci_low_pct:+.0f}%…{row.ci_high_pct:+.0f}%" if row.ci_low_pct is not None else "no CI"
    if row.note:
        return (f"differs by {row.delta_pct:+.0f}%{' from ' + than if than else ''}, but too few samples lie beyond "
                f"P99 to judge (n = {row.n_a:,} / {row.n_b:,})")
    if row.verdict == "~":
        return f"shows no significant change{' against ' + than if than else ''} ({row.delta_pct:+.0f}%, {ci})"
    word = "lower" if (row.delta_pct or 0) < 0 else "higher"
    return f"is {abs(row.delta_pct or 0):.0f}% {word}{against} ({ci})"


def equal_load_sentence(comparison: Comparison, run: Run | None = None) -> str:
    """P99 at equal load. Where a side queues its work, both halves: what each side's campaign owner waits for (the
    completion where the work is queued, the answer where it is not), then the POST /campaigns answers themselves."""
    row = headline_row(comparison, run)
    if row is None or row.delta_pct is None:
        return "P99 at equal load was not compared" + (f" ({comparison.missing[0]})" if comparison.missing else "")
    rate = _phase_rate(run, row.group)
    where = f" ({row.group}, {rate:g}/s)" if rate else f" ({row.group})"
    outcome = comparison.row("p99_us", row.group, endpoint=OUTCOME)
    if outcome is None or outcome.delta_pct is None:
        return f"at equal load{where} P99 {_change(row)}"
    a, b = comparison.a_label, comparison.b_label
    waits = _change(outcome, f"{a}'s {_outcome_of(outcome.a_endpoint)} P99")
    answers = _change(row, f"{a}'s {_answer_of(outcome.a_endpoint)} P99")
    return (f"at equal load{where} {b}'s {_outcome_of(outcome.b_endpoint)} P99 {waits}; "
            f"{b}'s {_answer_of(outcome.b_endpoint)} P99 {answers}")


def pain_sentence(cap: Capacity, run: Run | None = None) -> str:
    """Say so when a design's backlog is not sustainable, or its completions miss their SLO where its
    acknowledgements do not: a fast acknowledgement next to a growing backlog or late outcomes is both."""
    notes = []
    for design, found in cap.designs.items():
        acknowledged = _rate(found.ack_capacity_per_s, found.limit_censored(found.ack_capacity_per_s))
        if found.moved_the_pain:
            notes.append(f"{design} acknowledges up to {acknowledged} within the SLO, but its "
                         f"workers keep up only to {found.drain_capacity_per_s:g}/s: above that the backlog grows "
                         "without bound — the queue only moved the pain")
        elif found.late_completions:
            notes.append(f"{design} acknowledges up to {acknowledged} within the SLO, but its completion P99 stays "
                         f"within {cap.slo.completion_ms:g} ms only up to {found.completion_capacity_per_s:g}/s: "
                         "above that its campaigns' owners wait longer than the SLO allows")
    if run is not None:
        for design in run.designs:
            growing = sorted({c.phase for c in run.select(kind="steady", design=design) if _backlog_grew(c)})
            if growing:
                notes.append(f"{design}'s backlog grew through steady phase {', '.join(growing)}: not sustainable — "
                             "the queue only moved the pain")
    return ". ".join(n[0].upper() + n[1:] for n in notes) + ("." if notes else "")


def _backlog_grew(cell: Cell) -> bool:
    health = backlog_health(cell, float(cell.offered_rate_per_s or 0))
    return health is not None and health.sustainable is False


def headline(cap: Capacity, comparison: Comparison, run: Run | None = None) -> str:
    """'<candidate> sustains X% more throughput at P99 <= SLO; at equal load <candidate>'s completion P99 is Y% higher
    than <baseline>'s end-to-end P99 (CI); its acknowledgement P99 is Z% lower (CI)' — or the honest opposite."""
    text = f"{capacity_sentence(cap).rstrip('.')}; {equal_load_sentence(comparison, run)}."
    pain = pain_sentence(cap, run)
    return f"{text} {pain}" if pain else text


def equal_load_comparison(run: Run, cap: Capacity | None = None) -> Comparison:
    """Steady phases when there are any; else the highest capacity step both designs held within the SLO."""
    steady = compare_designs(run)
    if steady.rows or not run.select(kind="capacity"):
        return steady
    cap = cap or capacity(run)
    a = cap.designs.get(run.baseline) if run.baseline is not None else None
    b = cap.designs.get(run.candidate) if run.candidate is not None else None
    if a is None or b is None:
        return steady
    common = sorted({p.offered_rate_per_s for p in a.points if p.within_slo}
                    & {p.offered_rate_per_s for p in b.points if p.within_slo})
    if not common:
        return steady
    phases = [c.phase for c in run.select(kind="capacity") if c.offered_rate_per_s == common[-1]]
    return compare_designs(run, kinds=("capacity",), phases=phases[:1])
