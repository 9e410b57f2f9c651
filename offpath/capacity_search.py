"""The capacity search: which rates to offer a design, and what its limit is once they have been offered.

It steps the offered rate up (by `step_per_s`, or by `step_factor`) until a step breaks the SLO; past the declared
`max_per_s` it goes on, doubling the rate, up to a declared ceiling (`ceiling_per_s`: what the load generator and
the machine are trusted to offer). Once a step has broken, the limit lies in [held, broke): the highest rate that
held and the lowest above it that broke. The search then bisects that bracket until it is within `precision_pct` —
(broke − held) / (2 · held), the bracket's half-width over the rate that held — or until `refine_steps` more probes
are spent; when even the first rate broke, it halves the rate until one holds, from the same budget. Each probe
that narrows a bracket runs long enough for `tail_values` values beyond the SLO's P99 (the fewest a P99 can be
judged on: analysis/stats/compare.py's MIN_TAIL_SAMPLES); the steps that locate the limit run `step_duration_s`, as
declared. Whatever ended it (SEARCH_OUTCOMES) is said: a limit bracketed within the precision, a step budget spent
first, a ceiling reached with the limit not found.

`narrow = "until-decided"` spends narrowing probes only while they can still decide something: a design's search
pauses where it would start narrowing, and the runner narrows, one design at a time, the widest bracket left, until
every capacity ratio against the first design is decided against the experiment's capacity margin (outcome
`decided`: the bracket may stay wider than the precision) or the precision and budget are reached as above. A sweep
whose map needs a verdict per point, not every limit to ±5%, spends its minutes where the ratio is close to 1.

Decided defaults: an experiment that declares neither `refine_steps` nor `ceiling_per_s` searches as it always did —
up to `max_per_s`, no narrowing — and is told so (`budget`: the bracket is wider than ±5%; `ceiling`: not found).
Narrowing and going past the maximum cost minutes (a narrowing probe at 30/s lasts 34 s, to hold 10 values beyond
P99), and a quick experiment (smoke, CI) must not grow by minutes it did not budget: an experiment that wants its
capacities to ±5% declares the probes and the ceiling it can afford.

The search is pure: `run_search(probe, settings)` asks `probe(step) -> held` about each step it chooses and returns
how it ended (foundation/manifest_format.py's SEARCH_OUTCOMES) with the bracket. The runner's probe runs a capacity cell
(offpath/runner.py); a test's is a simulated system whose limit is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from analysis.stats.bracket import Bracket, capacity_ratio
from analysis.stats.equivalence import UNDECIDED
from foundation.config import ConfigModel, parse
from foundation.manifest_format import CapacitySearchRecord

__all__ = ["SETTLE_TIMEOUT_S", "UNTIL_DECIDED", "Search", "SearchResult", "SearchSettings", "Step", "StopSearch", "drive",
           "narrow_until_decided", "phase_name", "ratios_decided", "run_search"]

# Past max_per_s the rate doubles each step: the bisection narrows whatever bracket that leaves.
BEYOND_FACTOR = 2.0
# The SLO's percentile: P99 (foundation/format.py's Slo).
SLO_PERCENTILE = 99.0
# A probe after one that broke must start on an empty queue (a backlog left over would make it break too): the
# runner waits this long at most for the leftover to drain, and stops the search when it does not.
SETTLE_TIMEOUT_S = 120.0

FOUND, BUDGET, CEILING, BELOW, STOPPED, DECIDED = "found", "budget", "ceiling", "below", "stopped", "decided"
Stage = Literal["step", "beyond", "refine", "down"]
# How narrowing probes are spent: each design's bracket to the precision, or only while a capacity ratio is undecided.
TO_PRECISION, UNTIL_DECIDED = "to-precision", "until-decided"
Narrow = Literal["to-precision", "until-decided"]


class SearchSettings(ConfigModel):
    """`[capacity]` of an experiment: where the search starts and how it steps, its declared maximum and ceiling, the
    precision a found limit is bracketed to and the probes that may be spent getting there."""

    start_per_s: float = Field(gt=0, description="a rate > 0 (requests per second)")
    step_per_s: float = Field(default=0.0, ge=0, description="a rate >= 0 (requests per second added each step)")
    step_factor: float | None = Field(default=None, gt=1, description="a number > 1 (the rate multiplied each step)")
    max_per_s: float = Field(gt=0, description="a rate > 0 (requests per second)")
    step_duration_s: float = Field(gt=0, description="seconds > 0")
    precision_pct: float = Field(default=5.0, gt=0, lt=100, description="a percentage > 0 and < 100")
    refine_steps: int = Field(default=0, ge=0, description="a whole number >= 0 (probes to narrow a bracket)")
    ceiling_per_s: float | None = Field(default=None, gt=0, description="a rate > 0, at least max_per_s (none: "
                                        "max_per_s)")
    tail_values: int = Field(default=10, ge=1, description="a whole number >= 1 (values beyond P99 in a narrowing probe)")
    narrow: Narrow = Field(default="to-precision", description="'to-precision' (every design's bracket) or "
                           "'until-decided' (only while a capacity ratio against the first design is undecided)")

    @model_validator(mode="after")
    def _one_step_rule(self) -> SearchSettings:
        if (self.step_per_s > 0) == (self.step_factor is not None):
            raise ValueError("allowed: exactly one of step_per_s (add a rate each step) or step_factor (multiply the "
                             "rate each step)")
        if self.max_per_s < self.start_per_s:
            raise ValueError(f"allowed: max_per_s ({self.max_per_s:g}) >= start_per_s ({self.start_per_s:g})")
        if self.ceiling_per_s is not None and self.ceiling_per_s < self.max_per_s:
            raise ValueError(f"allowed: ceiling_per_s ({self.ceiling_per_s:g}) >= max_per_s ({self.max_per_s:g})")
        return self

    @classmethod
    def of(cls, table: Mapping[str, Any], source: str = "experiment") -> SearchSettings:
        """The settings of a `[capacity]` table as the manifest's experiment holds it (ConfigError otherwise)."""
        return parse(table, cls, f"{source} [capacity]")

    @property
    def ceiling(self) -> float:
        return self.ceiling_per_s if self.ceiling_per_s is not None else self.max_per_s

    def rates(self) -> list[float]:
        """The stepping rates up to max_per_s."""
        rates, rate = [], self.start_per_s
        while rate <= self.max_per_s + 1e-9:
            # A geometric step's rates to 3 significant digits (32.8/s, not 32.768/s): the same rate to Locust.
            rates.append(probe_rate(rate) if self.step_factor is not None else round(rate, 3))
            rate = rate * self.step_factor if self.step_factor is not None else rate + self.step_per_s
        return rates

    def duration_s(self, rate: float, stage: Stage) -> float:
        """How long a probe offers `rate`: a narrowing probe long enough for `tail_values` values beyond P99."""
        if stage in ("step", "beyond"):
            return self.step_duration_s
        enough = self.tail_values / (1 - SLO_PERCENTILE / 100) / rate
        return max(self.step_duration_s, math.ceil(enough))

    def most_probes(self) -> int:
        """The most probes a search can take: every step to the ceiling, then the whole budget."""
        beyond = 0
        rate = self.rates()[-1]
        while rate < self.ceiling:
            rate, beyond = min(rate * BEYOND_FACTOR, self.ceiling), beyond + 1
        return len(self.rates()) + beyond + self.refine_steps


def probe_rate(rate: float) -> float:
    """A rate as the search offers it: 3 significant digits."""
    return float(f"{rate:.3g}")


def phase_name(rate: float) -> str:
    """A capacity cell's phase: 'capacity-0015_0', 'capacity-0037_5', 'capacity-0008_19' (the rate, zero-padded, with
    as many decimals as it has, at least one; '_' for the point, which separates a cell id's parts)."""
    decimals = next((d for d in (1, 2, 3) if round(rate, d) == rate), 3)
    return f"capacity-{rate:0{5 + decimals}.{decimals}f}".replace(".", "_")


@dataclass(frozen=True)
class Step:
    """One probe: the rate offered, for how long, and why (stepping up, past the maximum, narrowing, going down)."""

    rate_per_s: float
    duration_s: float
    stage: Stage


@dataclass(frozen=True)
class Probe:
    step: Step
    held: bool


class StopSearch(Exception):  # noqa: N818 — a signal from the probe, not an error: the search ends with its reason
    """Raised by a probe to end the search (outcome STOPPED) with what it measured so far; str() is the reason."""


@dataclass(frozen=True)
class SearchResult:
    outcome: str  # FOUND | BUDGET | CEILING | BELOW | STOPPED | DECIDED
    held_per_s: float | None
    broke_per_s: float | None
    probes: tuple[Probe, ...]
    precision_pct: float  # declared
    ceiling_per_s: float
    reason: str = ""

    @property
    def achieved_pct(self) -> float | None:
        """The bracket's ±precision, (broke − held) / (2 · held); None without both ends."""
        if self.held_per_s is None or self.broke_per_s is None or self.held_per_s <= 0:
            return None
        return (self.broke_per_s - self.held_per_s) / (2 * self.held_per_s) * 100

    def record(self) -> CapacitySearchRecord:
        return CapacitySearchRecord(outcome=self.outcome, held_per_s=self.held_per_s, broke_per_s=self.broke_per_s,
                                    probes=len(self.probes), precision_pct=self.precision_pct,
                                    ceiling_per_s=self.ceiling_per_s, reason=self.reason)

    def text(self) -> str:
        """How the search ended, as the runner says it."""
        bracket = f"[{self.held_per_s:g}, {self.broke_per_s:g})/s" if self.held_per_s and self.broke_per_s else ""
        achieved = self.achieved_pct
        if self.outcome == FOUND:
            return f"limit in {bracket} (±{achieved:.1f}%) after {len(self.probes)} probes"
        if self.outcome == BUDGET:
            return (f"limit in {bracket} (±{achieved:.1f}%): the step budget was spent before ±{self.precision_pct:g}%"
                    f" (raise [capacity] refine_steps to narrow it)")
        if self.outcome == DECIDED:
            return (f"limit in {bracket} (±{achieved:.1f}%) after {len(self.probes)} probes: narrowed no further, "
                    "every capacity ratio was decided")
        if self.outcome == CEILING:
            return (f"held at every rate up to the ceiling, {self.held_per_s:g}/s: its limit was not found (raise "
                    "[capacity] ceiling_per_s, if the load generator can offer more, to go on past it)")
        if self.outcome == BELOW:
            return (f"broke at every rate down to {self.broke_per_s:g}/s: its limit lies below the lowest rate the "
                    "search may try")
        where = f"limit in {bracket}" if bracket else (
            f"held up to {self.held_per_s:g}/s, limit not found" if self.held_per_s else "no rate held")
        return f"search stopped ({self.reason}): {where}"


@dataclass
class Search:
    """The search's state: `next_step()` says what to probe (None once it has ended, or while it is paused),
    `record()` what the probe found. run_search() drives it; the class is there for callers that probe on their own
    schedule.

    `paused`: a search that would narrow next returns None instead and stays open (`outcome` None) until the caller
    sets `paused = False`. `decided`: asked before every narrowing probe; once it says True, the search ends there
    (DECIDED) — the comparison its limit serves needs no narrower bracket."""

    settings: SearchSettings
    paused: bool = False
    decided: Callable[[], bool] | None = None
    probes: list[Probe] = field(default_factory=list)
    held: float | None = None
    broke: float | None = None
    outcome: str | None = None
    reason: str = ""
    _plan: list[float] = field(default_factory=list)
    _narrowing: int = 0

    def __post_init__(self) -> None:
        self._plan = self.settings.rates()

    def next_step(self) -> Step | None:
        if self.outcome is not None:
            return None
        rate, stage = self._next()
        if rate is None:
            return None
        return Step(rate, self.settings.duration_s(rate, stage), stage)

    def _next(self) -> tuple[float | None, Stage]:
        settings = self.settings
        if self.broke is None:  # still stepping up: the plan, then past the maximum to the ceiling
            if self._plan:
                return self._plan.pop(0), "step"
            last = self.held if self.held is not None else settings.start_per_s
            nearest = min(probe_rate(last * BEYOND_FACTOR), settings.ceiling)
            # A step to the ceiling closer than the precision would not tell the limit apart from the last rate.
            if (nearest - last) / (2 * last) * 100 <= settings.precision_pct:
                return self._ended(CEILING)
            return nearest, "beyond"
        if self.held is not None and (self.broke - self.held) / (2 * self.held) * 100 <= settings.precision_pct:
            return self._ended(FOUND)
        if self._narrowing >= settings.refine_steps:
            return self._ended(BUDGET if self.held is not None else BELOW)
        if self.decided is not None and self.decided():
            return self._ended(DECIDED)
        if self.paused:
            return None, "refine"
        if self.held is None:  # even the first rate broke: halve until one holds
            return probe_rate(self.broke / 2), "down"
        middle = probe_rate((self.held + self.broke) / 2)
        if not self.held < middle < self.broke:  # 3 significant digits cannot split it further: found, as closely
            return self._ended(FOUND)
        return middle, "refine"

    def _ended(self, outcome: str) -> tuple[None, Stage]:
        self.outcome = outcome
        return None, "refine"

    def record(self, step: Step, held: bool) -> None:
        self.probes.append(Probe(step, held))
        if step.stage in ("refine", "down"):
            self._narrowing += 1
        if held:
            self.held = step.rate_per_s if self.held is None else max(self.held, step.rate_per_s)
        elif self.broke is None or step.rate_per_s < self.broke:
            self.broke = step.rate_per_s
            self._plan = []  # a step broke: no more stepping up

    @property
    def width_pct(self) -> float:
        """The bracket's ±width so far (Bracket.precision_pct); infinite while it has an open end."""
        width = Bracket(self.held, self.broke).precision_pct
        return math.inf if width is None else width

    def end_decided(self) -> None:
        """A paused search whose comparison was decided by another design's narrowing: ended, narrowed no further."""
        if self.outcome is None:
            self.outcome = DECIDED

    def stop(self, reason: str) -> None:
        self.outcome, self.reason = STOPPED, reason

    def result(self) -> SearchResult:
        outcome = self.outcome or STOPPED
        return SearchResult(outcome=outcome, held_per_s=self.held, broke_per_s=self.broke, probes=tuple(self.probes),
                            precision_pct=self.settings.precision_pct, ceiling_per_s=self.settings.ceiling,
                            reason=self.reason)


def run_search(probe: Callable[[Step], bool], settings: SearchSettings) -> SearchResult:
    """Search with `probe(step) -> held`: the steps it chooses, in order, until it has ended; a probe that raises
    StopSearch ends it there (outcome STOPPED, the exception's text the reason)."""
    search = Search(settings)
    drive(search, probe)
    return search.result()


def drive(search: Search, probe: Callable[[Step], bool]) -> None:
    """Probe the steps `search` chooses until it ends or pauses; a probe that raises StopSearch ends it (STOPPED)."""
    while (step := search.next_step()) is not None:
        try:
            held = probe(step)
        except StopSearch as stop:
            search.stop(str(stop))
            return
        search.record(step, held)


def ratios_decided(searches: Mapping[str, Search], designs: Sequence[str], margin: float) -> bool:
    """Is every design's capacity against the first design's decided, as far as the searches have bracketed them
    (analysis/stats/bracket.py's rule against the capacity `margin`, a fraction)? False while one has not searched."""
    first, *others = designs
    if any(name not in searches for name in designs):
        return False
    brackets = {name: Bracket(searches[name].held, searches[name].broke) for name in designs}
    return all(capacity_ratio(brackets[name], brackets[first], margin).verdict != UNDECIDED for name in others)


def narrow_until_decided(searches: Mapping[str, Search], decided: Callable[[], bool],
                         narrow: Callable[[str], None]) -> list[str]:
    """`narrow = "until-decided"`, once every design has searched: while `decided()` says no, `narrow(name)` the
    paused search with the widest bracket (the caller unpauses and drives it until it ends); once decided, the searches
    still paused end there (DECIDED). Returns the names ended that way, in order, for the caller to record."""
    while paused := {name: search for name, search in searches.items() if search.outcome is None}:
        if decided():
            for search in paused.values():
                search.end_decided()
            return list(paused)
        name = max(paused, key=lambda n: paused[n].width_pct)
        narrow(name)
        if searches[name].outcome is None:  # the caller drives it to its end; one left open must not loop forever
            searches[name].stop("its narrowing block left it open")
    return []
