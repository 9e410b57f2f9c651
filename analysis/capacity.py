"""Capacity: the highest offered rate each design sustains within the SLO and error budget, and the headline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.compare import Comparison, DeltaRow, compare_designs
from analysis.load import Cell, Run, load_run
from analysis.summary import backlog_health, merged_figures
from results.format import CREATE


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
    within_slo: bool  # POST P99 <= SLO and error rate <= budget: the acknowledgement holds
    sustainable: bool | None  # the backlog did not grow; None for a design without a queue, or too few samples


@dataclass(frozen=True)
class DesignCapacity:
    design: str
    points: tuple[RatePoint, ...]
    ack_capacity_per_s: float | None  # highest rate with every rate up to it within the SLO (None: not even the first)
    drain_capacity_per_s: float | None  # a design with a queue: highest rate up to which the backlog stayed flat
    tested_up_to_per_s: float

    @property
    def capacity_per_s(self) -> float | None:
        """What the design sustains: acknowledged within the SLO and, for a design with a queue, drained too."""
        if self.drain_capacity_per_s is None:
            return self.ack_capacity_per_s
        if self.ack_capacity_per_s is None:
            return None
        return min(self.ack_capacity_per_s, self.drain_capacity_per_s)

    @property
    def censored(self) -> bool:
        """True when the design held at the highest rate tested: its capacity is at least that."""
        return self.capacity_per_s is not None and self.capacity_per_s >= self.tested_up_to_per_s

    @property
    def moved_the_pain(self) -> bool:
        """Rates acknowledged within the SLO that the design's workers could not keep up with."""
        return (self.drain_capacity_per_s is not None and self.ack_capacity_per_s is not None
                and self.drain_capacity_per_s < self.ack_capacity_per_s)


@dataclass(frozen=True)
class Capacity:
    slo_p99_ms: float
    error_budget: float
    designs: dict[str, DesignCapacity] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    baseline: str | None = None  # the run's design A (Run.baseline): the headline compares the candidate to it
    candidate: str | None = None  # the run's design B (Run.candidate)


def rate_point(cells: list[Cell], slo_p99_ms: float, error_budget: float) -> RatePoint:
    figures = merged_figures(cells)
    p99 = figures.get("p99_us")
    within = (figures["count"] > 0 and p99 is not None and p99 <= slo_p99_ms * 1000
              and figures["error_rate"] <= error_budget)
    sustainable = None
    if any(c.queue is not None for c in cells):
        health = [backlog_health(c, figures["throughput_per_s"]) for c in cells]
        flags = [queue.sustainable for queue in health if queue is not None]
        sustainable = False if False in flags else (None if None in flags or not flags else True)
    return RatePoint(offered_rate_per_s=float(cells[0].offered_rate_per_s or 0.0),
                     throughput_per_s=round(figures["throughput_per_s"], 3), count=figures["count"],
                     errors=figures["errors"], error_rate=figures["error_rate"], p50_us=figures.get("p50_us"),
                     p99_us=p99, completion_p99_us=figures.get("completion_p99_us"), within_slo=bool(within),
                     sustainable=sustainable)


def highest_passing(points: tuple[RatePoint, ...], passes: list[bool]) -> float | None:
    """The highest rate such that it and every lower rate passed (a lucky pass after a failure does not count)."""
    best = None
    for point, ok in zip(points, passes, strict=True):
        if not ok:
            break
        best = point.offered_rate_per_s
    return best


def design_capacity(run: Run, design: str, slo_p99_ms: float, error_budget: float) -> DesignCapacity | None:
    cells = [c for c in run.select(kind="capacity", design=design) if c.offered_rate_per_s is not None]
    if not cells:
        return None
    by_rate: dict[float, list[Cell]] = {}
    for cell in cells:
        by_rate.setdefault(float(cell.offered_rate_per_s or 0), []).append(cell)
    points = tuple(rate_point(by_rate[r], slo_p99_ms, error_budget) for r in sorted(by_rate))
    ack = highest_passing(points, [p.within_slo for p in points])
    drain = None  # only a design with a queue has a backlog to judge
    if any(p.sustainable is not None for p in points):
        drain = highest_passing(points, [p.sustainable is not False for p in points])
    return DesignCapacity(design=design, points=points, ack_capacity_per_s=ack, drain_capacity_per_s=drain,
                          tested_up_to_per_s=points[-1].offered_rate_per_s)


def capacity(run: Run | Path | str) -> Capacity:
    """Capacity of every design with capacity cells, against manifest["experiment"]["slo"]."""
    run = run if isinstance(run, Run) else load_run(run)
    slo = run.slo
    slo_p99_ms = float(slo.get("p99_ms") or 0.0)
    budget = float(slo.get("error_rate") or 0.0)
    designs: dict[str, DesignCapacity] = {}
    missing = []
    if not slo:
        missing.append("the manifest's experiment has no slo: capacity cannot be judged")
    for design in run.designs:
        found = design_capacity(run, design, slo_p99_ms, budget) if slo else None
        if found is None:
            if slo:
                ran = bool(run.select(design=design))
                missing.append(f"no capacity cells for {design}" if ran else f"{design} did not run")
            continue
        designs[design] = found
    return Capacity(slo_p99_ms=slo_p99_ms, error_budget=budget, designs=designs, missing=tuple(missing),
                    baseline=run.baseline, candidate=run.candidate)


def _rate(value: float | None, censored: bool = False) -> str:
    if value is None:
        return "nothing tested"
    return f"{'at least ' if censored else ''}{value:g}/s"


def capacity_sentence(cap: Capacity, baseline: str | None = None, candidate: str | None = None) -> str:
    """The candidate's capacity against the baseline's (by default the run's design B against its design A)."""
    baseline = baseline if baseline is not None else cap.baseline
    candidate = candidate if candidate is not None else cap.candidate
    a = cap.designs.get(baseline) if baseline is not None else None
    b = cap.designs.get(candidate) if candidate is not None else None
    slo = f"P99 ≤ {cap.slo_p99_ms:g} ms"
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


def equal_load_sentence(comparison: Comparison, run: Run | None = None) -> str:
    row = headline_row(comparison, run)
    if row is None or row.delta_pct is None:
        return "P99 at equal load was not compared" + (f" ({comparison.missing[0]})" if comparison.missing else "")
    rate = _phase_rate(run, row.group)
    where = f" ({row.group}, {rate:g}/s)" if rate else f" ({row.group})"
    ci = f"95% CI {row.ci_low_pct:+.0f}%…{row.ci_high_pct:+.0f}%" if row.ci_low_pct is not None else "no CI"
    if row.note:
        return (f"at equal load{where} P99 differs by {row.delta_pct:+.0f}%, but too few samples lie beyond P99 to "
                f"judge (n = {row.n_a:,} / {row.n_b:,})")
    if row.verdict == "~":
        return f"at equal load{where} P99 shows no significant change ({row.delta_pct:+.0f}%, {ci})"
    word = "lower" if row.delta_pct < 0 else "higher"
    return f"at equal load{where} P99 is {abs(row.delta_pct):.0f}% {word} ({ci})"


def pain_sentence(cap: Capacity, run: Run | None = None) -> str:
    """Say so when a design's backlog is not sustainable: a fast acknowledgement next to a growing backlog is both."""
    notes = []
    for design, found in cap.designs.items():
        if found.moved_the_pain:
            notes.append(f"{design} acknowledges up to {found.ack_capacity_per_s:g}/s within the SLO, but its "
                         f"workers keep up only to {found.drain_capacity_per_s:g}/s: above that the backlog grows "
                         "without bound — the queue only moved the pain")
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
    """'<candidate> sustains X% more throughput at P99 <= SLO; at equal load P99 is Y% lower' — or the honest
    opposite."""
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
