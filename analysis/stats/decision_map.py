"""The decision map of a sweep: per point, the candidate's (queued) figures over the baseline's (inline) — capacity
at the SLO (acknowledgement, and drain with completion), P99 at equal load, CPU per campaign — each with its
interval and its verdict (better, worse, equivalent within the experiment's margin, or undecided with what would
decide it), and where along the swept parameter the queue starts to win, as far as the verdicts allow saying so."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from analysis.stats.bootstrap import new_rng, resample
from analysis.stats.bracket import capacity_ratio as bracket_ratio
from analysis.stats.capacity import (
    ACKNOWLEDGEMENT,
    COMPLETION_SLO,
    DRAIN,
    Capacity,
    capacity,
    refine_text,
)
from analysis.stats.compare import COST_METRIC, Comparison, DeltaRow
from analysis.stats.cost import COST_SCOPE
from analysis.stats.equivalence import BETTER, EQUIVALENT, UNDECIDED, WORSE, decide
from analysis.stats.headline import equal_load_comparison, headline_row
from analysis.stats.load import Cell, Run, cells_of
from foundation.format import CREATE, OUTCOME, POINTS_DIR, SWEEP_KIND
from foundation.manifest_format import PointRecord

__all__ = ["MEASURES", "DecisionMap", "Measure", "PointRatios", "Ratio", "decision_map", "is_sweep", "point_runs"]

# Which side a point's verdict puts the winner on (the candidate, queued, better: the queue wins); EVEN where the two
# are equivalent within the margin, UNRESOLVED where the verdict is undecided.
QUEUE, INLINE, EVEN, UNRESOLVED = "queue wins", "inline wins", "equivalent", "undecided"
SIDES = {BETTER: QUEUE, WORSE: INLINE, EQUIVALENT: EVEN, UNDECIDED: UNRESOLVED}


@dataclass(frozen=True)
class Measure:
    """One ratio of the map: candidate over baseline, and which way is better for the candidate."""

    key: str
    title: str
    higher_is_better: bool
    how: str  # how the point's figure and its interval are obtained, for the report

    @property
    def heading(self) -> str:
        """The title as a sentence starts it ('Capacity at the SLO, ...'; str.capitalize would lower 'SLO')."""
        return self.title[:1].upper() + self.title[1:]


MEASURES = (
    Measure("ack_capacity", "capacity at the SLO, acknowledgement", True,
            "queued's highest rate acknowledged within the SLO over inline's capacity"),
    Measure("drain_capacity", "capacity at the SLO, drain and completion", True,
            "queued's highest rate also drained (flat backlog) and completed within the completion SLO over inline's "
            "capacity"),
    Measure("p99", "P99 at equal load", False,
            "queued's completion P99 over inline's end-to-end P99 at the most loaded phase both ran"),
    Measure("cpu", "CPU per campaign", False, f"queued's CPU ({COST_SCOPE}) per campaign completed over inline's "
            "per campaign served, at the same phase"),
)
CAPACITY_INTERVAL = ("capacity: a 95% bootstrap interval (each step that held, its 1-second intervals resampled as in the "
                     "comparison and its P99s judged against the SLO again on every replicate; a step that broke stays "
                     "broken) widened by the search's step: a capacity c whose next "
                     "rate n broke lies in [c, n), so the ratio lies in [c_queued / n_inline, n_queued / c_inline], "
                     "unbounded where a design held at every rate tested")


@dataclass(frozen=True)
class Ratio:
    """Candidate over baseline at one point: the figure, its interval (None where there is none), and why not."""

    value: float | None
    low: float | None = None
    high: float | None = None
    note: str = ""  # what to know about the figure, e.g. "few samples"
    judged: bool = True  # False: the interval is shown, not judged (e.g. too few values beyond P99)
    # For the candidate (better: the queue wins); None: judged from the interval alone, against 1 with no margin.
    verdict: str | None = None
    need: str = ""  # an undecided ratio: what would decide it

    def decision(self, measure: Measure) -> str:
        """The verdict for the candidate: the one given, else the interval's against 1 (no margin)."""
        if self.low is None or self.high is None or not self.judged:
            return UNDECIDED
        if self.verdict is not None:
            return self.verdict
        return decide(self.low - 1, self.high - 1, measure.higher_is_better, margin=0.0)

    def side(self, measure: Measure) -> str:
        return SIDES[self.decision(measure)]

    def verdict_text(self, measure: Measure) -> str:
        """'better: the queue wins', 'worse: inline wins', 'equivalent', 'undecided (what would decide it)'."""
        decision = self.decision(measure)
        if decision in (BETTER, WORSE):
            return f"{decision}: {'the queue wins' if decision == BETTER else 'inline wins'}"
        return decision + (f" ({self.need})" if decision == UNDECIDED and self.need else "")

    def text(self) -> str:
        if self.value is None:
            return f"- ({self.note})" if self.note else "-"

        def bound(v: float | None) -> str:
            return "?" if v is None else "∞" if math.isinf(v) else f"{v:.2f}"

        interval = f" [{bound(self.low)}, {bound(self.high)}]" if self.low is not None or self.high is not None else ""
        return f"{self.value:.2f}{interval}" + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        def finite(v: float | None) -> float | str | None:
            return None if v is None else ("inf" if math.isinf(v) else round(v, 4))

        return {"ratio": finite(self.value), "ci_low": finite(self.low), "ci_high": finite(self.high),
                "note": self.note, "need": self.need}


# A swept value: a number (a scale, a rate, a count) or a name (a queue backend).
Value = float | str


@dataclass(frozen=True)
class PointRatios:
    id: str
    values: dict[str, Value]
    status: str
    ratios: dict[str, Ratio]
    capacity: Capacity | None = None
    comparison: Comparison | None = None

    def side(self, measure: Measure) -> str:
        return self.ratios[measure.key].side(measure)


@dataclass(frozen=True)
class Crossover:
    """Where the winner changes between two neighbouring resolved points along the first parameter."""

    measure: str
    low: float  # the parameter's value on the last point before the change (the first equivalent point: see below)
    high: float  # ... and on the first point after it (the last equivalent point)
    starts: bool  # True: the queue starts to win (towards higher values); False: it stops winning
    at: dict[str, Value] = field(default_factory=dict)  # the other parameter's value in a two-parameter sweep
    equivalent: bool = False  # the designs are equivalent at the points low … high, between the two winners


@dataclass(frozen=True)
class DecisionMap:
    run_id: str
    parameters: tuple[tuple[str, tuple[Value, ...]], ...]
    baseline: str
    candidate: str
    points: tuple[PointRatios, ...]
    crossovers: tuple[Crossover, ...]
    sentences: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "baseline": self.baseline, "candidate": self.candidate,
            "parameters": {name: list(values) for name, values in self.parameters},
            "measures": {m.key: {"title": m.title, "higher_is_better": m.higher_is_better, "how": m.how}
                         for m in MEASURES},
            "points": [{"id": p.id, "values": p.values, "status": p.status,
                        "ratios": {m.key: p.ratios[m.key].to_dict() | {"side": p.side(m)} for m in MEASURES}}
                       for p in self.points],
            "crossovers": [{"measure": c.measure, "between": [c.low, c.high], "queue": "starts to win" if c.starts
                            else "stops winning", "at": c.at} | ({"equivalent": True} if c.equivalent else {})
                           for c in self.crossovers],
            "sentences": self.sentences,
            "capacity_interval": CAPACITY_INTERVAL,
        }


def is_sweep(run: Run) -> bool:
    return run.record.kind == SWEEP_KIND


def point_runs(run: Run) -> list[tuple[PointRecord, Run]]:
    """Each point of a sweep as a Run of its own (its folder points/<id>/, its entry of the manifest's points over
    the run's facts), so that every analysis of a plain run works on a point; with the point's manifest entry."""
    found = []
    for point in run.record.points:
        complete = point.status == "complete"
        error = None if complete else f"point {point.id} is {point.status}"
        record = replace(run.record.as_point_run(point.id), status="complete" if complete else "incomplete",
                         error=error)
        point_dir = run.dir / POINTS_DIR / point.id
        found.append((point, Run(dir=point_dir, record=record,
                                 cells=cells_of(record.cells, point_dir, record.experiment.declarations),
                                 incomplete_reason=error)))
    return found


# -- capacity ratios -----------------------------------------------------------------------------------------------


def _step_passes(cells: list[Cell], capacity_: Capacity, limits: Sequence[str], broken: Sequence[str],
                 rng: np.random.Generator, replicates: int) -> np.ndarray:
    """(replicates,) whether each bootstrap replicate of one capacity step keeps `limits`. A limit the step broke
    stays broken: past capacity, latency and backlog climb through the step, and resampling its seconds would scatter
    that trend rather than repeat it. A limit it held is judged again on resampled intervals (the P99 of the answer,
    and of the completion), since a repeat of a step that passed near the SLO could fail; errors and pending
    campaigns as measured."""
    slo = capacity_.slo
    passes = np.ones(replicates, dtype=bool)
    if any(limit in broken for limit in limits):
        passes[:] = False
        return passes
    if ACKNOWLEDGEMENT in limits:
        p99 = resample([c.log(CREATE) for c in cells], [99.0], rng, replicates).values_us[:, 0]
        passes &= p99 <= slo.p99_ms * 1000
    if COMPLETION_SLO in limits and any(c.queue is not None for c in cells):
        p99 = resample([c.completion for c in cells], [99.0], rng, replicates).values_us[:, 0]
        passes &= p99 <= slo.completion_ms * 1000
    return passes


def _bracket_replicates(run: Run, capacity_: Capacity, design: str, limits: Sequence[str],
                        rng: np.random.Generator, replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """(found, next) per replicate: the highest rate that it and every lower rate held, and the rate tested after it
    (0 when even the first broke; inf when every rate held: the capacity lies beyond what was tested)."""
    found = capacity_.designs[design]
    rates = np.array([p.offered_rate_per_s for p in found.points])
    cells = [c for c in run.select(kind="capacity", design=design) if c.offered_rate_per_s is not None]
    passes = np.stack([_step_passes([c for c in cells if c.offered_rate_per_s == point.offered_rate_per_s],
                                    capacity_, limits, point.broken, rng, replicates)
                       for point in found.points], axis=1)
    held = np.cumprod(passes, axis=1).sum(axis=1)
    low = np.where(held > 0, rates[np.maximum(held - 1, 0)], 0.0)
    high = np.where(held < len(rates), rates[np.minimum(held, len(rates) - 1)], np.inf)
    return low, high


def capacity_ratio(run: Run, capacity_: Capacity, limits: Sequence[str], replicates: int = 1000) -> Ratio:
    """The candidate's capacity under `limits` over the baseline's whole capacity, with CAPACITY_INTERVAL."""
    a_name, b_name = capacity_.baseline, capacity_.candidate
    a = capacity_.designs.get(a_name) if a_name else None
    b = capacity_.designs.get(b_name) if b_name else None
    if a is None or b is None or a_name is None or b_name is None:
        return Ratio(None, note="no capacity search of both designs", judged=False)
    b_value = b.ack_capacity_per_s if tuple(limits) == (ACKNOWLEDGEMENT,) else b.capacity_per_s
    a_value = a.capacity_per_s
    rng = new_rng()
    a_low, a_high = _bracket_replicates(run, capacity_, a_name, (ACKNOWLEDGEMENT, DRAIN, COMPLETION_SLO), rng,
                                        replicates)
    b_low, b_high = _bracket_replicates(run, capacity_, b_name, limits, rng, replicates)
    with np.errstate(divide="ignore", invalid="ignore"):
        lows = np.where(np.isinf(a_high), 0.0, b_low / a_high)
        highs = np.where(a_low > 0, b_high / np.where(a_low > 0, a_low, 1.0), np.inf)
    # No interpolation: a bound may be infinite (a design that held every rate tested).
    low = float(np.percentile(lows, 2.5, method="lower"))
    high = float(np.percentile(highs, 97.5, method="higher"))
    if not a_value:
        return Ratio(None, low, high, note=f"{a_name} held no rate tested", judged=False)
    # The interval's ends are brackets' ends, open (analysis/stats/bracket.py): an end at exactly 1 excludes 1.
    verdict = BETTER if low >= 1 else WORSE if high <= 1 else decide(low - 1, high - 1, True, capacity_.margin)
    need = ""
    if verdict == UNDECIDED:
        b_bracket = b.bracket(ACKNOWLEDGEMENT) if tuple(limits) == (ACKNOWLEDGEMENT,) else b.bracket()
        need = refine_text(bracket_ratio(b_bracket, a.bracket(), capacity_.margin))
    if b_value is None:
        return Ratio(0.0, low, high, note=f"{b_name} held no rate tested", verdict=verdict, need=need)
    note = "both held every rate tested" if a.censored and b.limit_censored(b_value) else ""
    return Ratio(b_value / a_value, low, high, note=note, verdict=verdict, need=need)


# -- ratios from the comparison's rows -------------------------------------------------------------------------------


def row_ratio(row: DeltaRow | None) -> Ratio:
    """A comparison row's change as a ratio (1 + delta), its bootstrap interval likewise; its note kept."""
    if row is None or row.delta_pct is None:
        return Ratio(None, note="not compared", judged=False)
    low = 1 + row.ci_low_pct / 100 if row.ci_low_pct is not None else None
    high = 1 + row.ci_high_pct / 100 if row.ci_high_pct is not None else None
    need = row.need
    return Ratio(1 + row.delta_pct / 100, low, high, note=row.note, judged=not row.note, verdict=row.verdict,
                 need=need.text() if need is not None else "")


def point_ratios(record: PointRecord, run: Run) -> PointRatios:
    values: dict[str, Value] = {str(k): v if isinstance(v, str) else float(v) for k, v in record.values.items()}
    if not run.cells:
        return PointRatios(record.id, values, record.status,
                           {m.key: Ratio(None, note="not measured", judged=False) for m in MEASURES})
    cap = capacity(run)
    comparison = equal_load_comparison(run, cap)
    headline = headline_row(comparison, run)
    group = headline.group if headline is not None else None
    p99 = comparison.row("p99_us", group, endpoint=OUTCOME) if group is not None else None
    cpu = comparison.row(COST_METRIC, group, endpoint=COST_SCOPE) if group is not None else None
    ratios = {
        "ack_capacity": capacity_ratio(run, cap, (ACKNOWLEDGEMENT,)),
        "drain_capacity": capacity_ratio(run, cap, (ACKNOWLEDGEMENT, DRAIN, COMPLETION_SLO)),
        "p99": row_ratio(p99 if p99 is not None else headline),
        "cpu": row_ratio(cpu),
    }
    return PointRatios(record.id, values, record.status, ratios, cap, comparison)


# -- where the queue starts to win -----------------------------------------------------------------------------------


def parameter_text(name: str, value: Value) -> str:
    if isinstance(value, str):
        return value
    return f"×{value:g}" if name.endswith("_scale") else f"{value:g}"


def categorical(values: Sequence[Value]) -> bool:
    """A parameter whose values are names (a queue backend): no order along it, so no crossover, only a verdict per
    value."""
    return any(isinstance(v, str) for v in values)


def category_sentence(measure: Measure, name: str, points: Sequence[PointRatios], where: str = "") -> str:
    """One sentence for a parameter of names: which design wins at which, where they are equivalent, where it is not
    decided."""
    if not points:
        return f"{measure.heading}{where}: no point was measured."
    said = []
    for side, words in ((QUEUE, "the queue wins"), (INLINE, "inline wins"), (EVEN, "the two are equivalent"),
                        (UNRESOLVED, "undecided")):
        names = [parameter_text(name, p.values[name]) for p in points if p.side(measure) == side]
        if names:
            said.append(f"{words} on {', '.join(names)}")
    return f"{measure.heading}{where}: {'; '.join(said)}."


def _label(name: str) -> str:
    return name.replace("_", " ")


def crossovers_along(measure: Measure, name: str, points: Sequence[PointRatios],
                     at: dict[str, Value] | None = None) -> list[Crossover]:
    """Changes of winner along the parameter, in its order: between two neighbouring decided points won by different
    designs, or at the points between them where the two are equivalent. Undecided points are skipped: the change
    happened somewhere across them."""
    found = []
    last: tuple[float, str] | None = None  # the last point won by a design
    even: list[float] = []  # equivalent points since then
    for point in points:
        x, side = float(point.values[name]), point.side(measure)
        if side == EVEN:
            even.append(x)
            continue
        if side == UNRESOLVED:
            continue
        if last is not None and last[1] != side:
            low, high = (even[0], even[-1]) if even else (last[0], x)
            found.append(Crossover(measure.key, low, high, starts=side == QUEUE, at=at or {}, equivalent=bool(even)))
        last, even = (x, side), []
    return found


def crossover_sentence(measure: Measure, name: str, points: Sequence[PointRatios], crossings: Sequence[Crossover],
                       where: str = "") -> str:
    """One sentence: where along `name` the queue starts (or stops) to win on this measure, that it wins or never
    wins over the range, or that the verdicts do not tell."""
    if not points:
        return f"{measure.heading}{where}: no point was measured."
    xs = [float(p.values[name]) for p in points]
    span = f"{_label(name)} {parameter_text(name, min(xs))} … {parameter_text(name, max(xs))}"
    sides = [p.side(measure) for p in points]
    head = f"{measure.heading}{where}"

    def at(side: str) -> list[str]:
        return [parameter_text(name, x) for x, s in zip(xs, sides, strict=True) if s == side]

    rest = "".join(f"; {word} at {', '.join(at(side))}" for word, side in (("equivalent", EVEN), ("undecided",
                                                                                                 UNRESOLVED))
                   if at(side))
    if crossings:
        changes = []
        for crossing in crossings:
            verb = "starts to win" if crossing.starts else "stops winning"
            if crossing.equivalent:
                points_text = parameter_text(name, crossing.low) if crossing.low == crossing.high else (
                    f"{parameter_text(name, crossing.low)} … {parameter_text(name, crossing.high)}")
                changes.append(f"the queue {verb} where the two are equivalent, at {_label(name)} {points_text}")
            else:
                changes.append(f"the queue {verb} between {_label(name)} {parameter_text(name, crossing.low)} and "
                               f"{parameter_text(name, crossing.high)}")
        return f"{head}: {'; '.join(changes)} (in {span}{rest})."
    if all(s == QUEUE for s in sides):
        return f"{head}: the queue wins over the whole range ({span})."
    if all(s == EVEN for s in sides):
        return f"{head}: the two are equivalent over the whole range ({span})."
    if all(s in (UNRESOLVED, EVEN) for s in sides) and UNRESOLVED in sides:
        return (f"{head}: undecided at every point of {span} where the two are not equivalent{rest}: whether the "
                "queue wins there cannot be said." if EVEN in sides else
                f"{head}: undecided at every point of {span} (every interval includes 1 and reaches past the margin, "
                "or too few samples to judge): whether the queue wins there cannot be said.")
    if QUEUE not in sides:
        return f"{head}: the queue never wins in the range ({span}): inline wins at {', '.join(at(INLINE))}{rest}."
    return (f"{head}: the queue wins at {', '.join(at(QUEUE))}{rest}; where it starts to win is not resolved "
            "(no decided point on the other side).")


def decision_map(run: Run) -> DecisionMap:
    """The map of a sweep's run: every point's ratios, the crossovers along the first parameter (per value of the
    second in a two-parameter sweep), and a sentence per measure."""
    parameters = tuple(run.record.experiment.sweep.items())
    points = tuple(point_ratios(record, point_run) for record, point_run in point_runs(run))
    first = parameters[0][0] if parameters else ""
    crossings: list[Crossover] = []
    sentences: dict[str, str] = {}
    names = categorical(parameters[0][1]) if parameters else False
    order: dict[Value, int] = {value: index for index, value in enumerate(parameters[0][1])} if parameters else {}

    def along_first(selected: Sequence[PointRatios]) -> list[PointRatios]:
        # Names keep the sweep's own order; numbers go from low to high.
        if names:
            return sorted(selected, key=lambda p: order.get(p.values.get(first, ""), 0))
        return sorted(selected, key=lambda p: float(p.values.get(first, 0.0)))

    for measure in MEASURES:
        if len(parameters) < 2:
            along = along_first(points)
            if names:
                sentences[measure.key] = category_sentence(measure, first, along)
                continue
            found = crossovers_along(measure, first, along)
            crossings += found
            sentences[measure.key] = crossover_sentence(measure, first, along, found)
            continue
        second, values = parameters[1]
        parts = []
        for value in values:
            along = along_first([p for p in points if p.values.get(second) == value])
            where = f" at {_label(second)} {parameter_text(second, value)}"
            if names:
                parts.append(category_sentence(measure, first, along, where=where))
                continue
            found = crossovers_along(measure, first, along, {second: value})
            crossings += found
            parts.append(crossover_sentence(measure, first, along, found, where=where))
        sentences[measure.key] = " ".join(parts)
    return DecisionMap(run_id=run.id, parameters=parameters, baseline=run.baseline or "inline",
                       candidate=run.candidate or "queued", points=points, crossovers=tuple(crossings),
                       sentences=sentences)


def interval_text() -> str:
    """How each ratio's interval is obtained and decided (the report's method note)."""
    return ("Ratios are queued over inline at each point. P99 at equal load and CPU per campaign: the comparison's "
            "bootstrap interval of the change, as a ratio, and its verdict against the experiment's margin "
            "(`undecided` when fewer than 10 values lie beyond P99 on a side). "
            f"{CAPACITY_INTERVAL[0].upper()}{CAPACITY_INTERVAL[1:]}; its ends are the brackets' open ends, so an end "
            "at exactly 1 excludes 1, and it is equivalent when it lies within the capacity margin. A point is won by "
            "queued where its verdict is better, by inline where it is worse; a crossover is drawn between two "
            "neighbouring decided points won by different designs, or at the points between them where the two are "
            "equivalent, and 'undecided' said otherwise.")
