"""The headline: one sentence per run that answers the question — how much more (or less) the candidate sustains at
the SLO, what each side's campaign owner waits for at equal load, and where the queue only moved the pain — each
figure with its interval and its verdict (analysis/stats/equivalence.py), never a change the intervals do not
decide read as one."""

from __future__ import annotations

from analysis.stats.capacity import ACKNOWLEDGEMENT, Capacity, capacity, capacity_ratio, ratio_verdict_text
from analysis.stats.compare import MIN_TAIL_SAMPLES, Comparison, DeltaRow, compare_designs, level_text
from analysis.stats.equivalence import BETTER, EQUIVALENT, WORSE
from analysis.stats.load import Cell, Run
from analysis.stats.summary import backlog_health
from foundation.format import COMPLETION, CREATE, OUTCOME

__all__ = ["capacity_sentence", "equal_load_comparison", "equal_load_sentence", "headline", "headline_row",
           "pain_sentence", "slo_text"]


def slo_text(cap: Capacity) -> str:
    """'P99 ≤ 500 ms', and the completion SLO beside it when a design has queue data (its completions are judged)."""
    text = f"P99 ≤ {cap.slo_p99_ms:g} ms"
    if any(d.queued for d in cap.designs.values()):
        text += f" and completion P99 ≤ {cap.slo.completion_ms:g} ms"
    return text


def capacity_sentence(cap: Capacity, baseline: str | None = None, candidate: str | None = None) -> str:
    """The candidate's capacity against the baseline's (by default the run's design B against its design A): both
    brackets, the change they allow and its verdict."""
    baseline = baseline if baseline is not None else cap.baseline
    candidate = candidate if candidate is not None else cap.candidate
    a = cap.designs.get(baseline) if baseline is not None else None
    b = cap.designs.get(candidate) if candidate is not None else None
    slo = slo_text(cap)
    if a is None or b is None:
        have = ", ".join(f"{d.design} sustains {d.bracket().text()}" for d in cap.designs.values())
        return (f"Capacity not compared ({'; '.join(cap.missing) or 'one design has no capacity cells'})"
                + (f": {have} at {slo}." if have else "."))
    a_cap, b_cap = a.capacity_per_s, b.capacity_per_s
    if a_cap is None and b_cap is None:
        return f"Neither design sustains even the lowest rate tested at {slo} and errors ≤ {cap.error_budget:.1%}."
    if a_cap is None or b_cap is None:
        holder, other = (candidate, baseline) if a_cap is None else (baseline, candidate)
        held = b if a_cap is None else a
        return (f"{holder} sustains {held.bracket().text()} at {slo}; {other} does not sustain even the lowest rate "
                f"tested ({min(p.offered_rate_per_s for p in (a.points + b.points)):g}/s).")
    if a.censored and b.censored:
        return (f"Both designs sustain the highest rate tested ({b_cap:g}/s) at {slo}: capacity is not separated "
                f"(neither limit was found: {a.unfound_text()}; raise the capacity search's ceiling_per_s).")
    ratio = capacity_ratio(b.bracket(), a.bracket(), cap.margin)
    change = (b_cap / a_cap - 1) * 100
    if abs(change) < 0.5:
        head = f"{candidate} and {baseline} sustain the same throughput at {slo}"
    else:
        head = f"{candidate} sustains {abs(change):.0f}% {'more' if change > 0 else 'less'} throughput at {slo}"
    text = (f"{head} ({b.bracket().text()} vs {a.bracket().text()}: a change of {ratio.interval_text()}, "
            f"{ratio_verdict_text(ratio)})")
    unfound = a if a.censored else b if b.censored else None
    if unfound is not None:
        # A censored capacity makes the ratio a bound, not a figure: the headline must say so, not only "≥".
        text += f"; {unfound.design}'s limit was not found ({unfound.unfound_text()}), so the difference is a bound"
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
    """'is 80% lower than <than> (95% CI …)', 'is equivalent to <than> within ±10% (…)', or undecided with what would
    decide it; `than` empty: the one-sided wording."""
    against = f" than {than}" if than else ""
    level = level_text(row.confidence)
    ci = f"{level} CI {row.ci_low_pct:+.0f}%…{row.ci_high_pct:+.0f}%" if row.ci_low_pct is not None else "no CI"
    need = row.need
    if row.note:
        enough = f"; {need.text(f'put {MIN_TAIL_SAMPLES} values beyond P99 and decide it')}" if need is not None else ""
        return (f"differs by {row.delta_pct:+.0f}%{' from ' + than if than else ''}, but too few samples lie beyond "
                f"P99 to judge (n = {row.n_a:,} / {row.n_b:,}{enough})")
    if row.verdict == EQUIVALENT:
        return (f"is equivalent{' to ' + than if than else ''} within ±{row.margin_pct:g}% "
                f"({row.delta_pct:+.0f}%, {ci})")
    if row.verdict not in (BETTER, WORSE):
        decides = f": {need.text()}" if need is not None else ""
        return (f"is undecided{' against ' + than if than else ''} ({row.delta_pct:+.0f}%, {ci}, margin "
                f"±{row.margin_pct:g}%){decides}")
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
        acknowledged = found.limit_text(ACKNOWLEDGEMENT)
        if found.moved_the_pain:
            notes.append(f"{design} acknowledges {acknowledged} within the SLO, but its "
                         f"workers keep up only to {found.drain_capacity_per_s:g}/s: above that the backlog grows "
                         "without bound — the queue only moved the pain")
        elif found.late_completions:
            notes.append(f"{design} acknowledges {acknowledged} within the SLO, but its completion P99 stays "
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
