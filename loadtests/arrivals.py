"""Open-model arrival schedules: rate shapes over time and the intended send times they imply, split across processes."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

SHAPE_HELP = (
    "How the offered rate varies over the run, in multiples of --arrival-rate (so --arrival-rate stays the one "
    "rate knob): 'constant' (default); 'steps:F1,F2,...@Ds' holds each factor D seconds, the last one until the "
    "end (steps:0.5,1,1.5@10s); 'ramp:F0,F1@Ds' goes linearly from F0 to F1 over D seconds, then holds F1 "
    "(ramp:0,1@30s); 'spike:FB,FP@Ts+Ls' runs at FB, at FP from T for L seconds, then at FB again "
    "(spike:1,4@10s+2s)."
)

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SECONDS = _NUMBER + r"s?"


@dataclass(frozen=True)
class Segment:
    """A stretch of time over which the rate factor moves linearly from start to end."""

    duration_s: float  # math.inf for the last segment
    start_factor: float
    end_factor: float

    def area(self) -> float:
        """Rate factor integrated over the segment (factor-seconds)."""
        if math.isinf(self.duration_s):
            return math.inf if max(self.start_factor, self.end_factor) > 0 else 0.0
        return self.duration_s * (self.start_factor + self.end_factor) / 2

    def time_to_reach(self, area: float) -> float:
        """Seconds into the segment at which the integrated factor reaches `area` (0 <= area <= self.area())."""
        if area <= 0:
            return 0.0
        a = self.start_factor
        slope = 0.0 if math.isinf(self.duration_s) else (self.end_factor - a) / self.duration_s
        if slope == 0:
            return area / a
        # Root of slope/2 t^2 + a t - area = 0, in the form that stays exact when slope is tiny or negative.
        return 2 * area / (a + math.sqrt(max(a * a + 2 * slope * area, 0.0)))


@dataclass(frozen=True)
class RateShape:
    """A piecewise-linear rate factor f(t); the offered rate at t seconds is f(t) * --arrival-rate."""

    spec: str
    segments: tuple[Segment, ...]

    def factor_at(self, t_s: float) -> float:
        start = 0.0
        for segment in self.segments:
            if t_s < start + segment.duration_s:
                if math.isinf(segment.duration_s):
                    return segment.start_factor
                fraction = (t_s - start) / segment.duration_s
                return segment.start_factor + (segment.end_factor - segment.start_factor) * fraction
            start += segment.duration_s
        return self.segments[-1].end_factor

    def time_of(self, area: float) -> float | None:
        """The time at which the integrated factor reaches `area`; None when the shape never gets there."""
        start = 0.0
        for segment in self.segments:
            segment_area = segment.area()
            if area < segment_area or (area == segment_area > 0):
                return start + segment.time_to_reach(area)
            area -= segment_area
            start += segment.duration_s
        return None


def parse_shape(spec: str) -> RateShape:
    """A shape from its compact spec (see SHAPE_HELP); ValueError names the spec and the accepted forms."""
    text = spec.strip().replace(" ", "")
    kind, _, params = text.partition(":")
    segments: tuple[Segment, ...]
    if kind == "constant" and not params:
        segments = (Segment(math.inf, 1.0, 1.0),)
    elif kind == "steps" and (m := re.fullmatch(rf"(?P<factors>{_NUMBER}(?:,{_NUMBER})*)@(?P<step>{_SECONDS})", params)):
        factors = [float(f) for f in m.group("factors").split(",")]
        step_s = float(m.group("step").rstrip("s"))
        _require(step_s > 0, spec, "the step length must be positive")
        segments = tuple(Segment(step_s, f, f) for f in factors[:-1]) + (Segment(math.inf, factors[-1], factors[-1]),)
    elif kind == "ramp" and (m := re.fullmatch(rf"{_NUMBER},{_NUMBER}@{_SECONDS}", params)):
        start, end, ramp_s = (float(g) for g in m.groups())
        _require(ramp_s > 0, spec, "the ramp length must be positive")
        segments = (Segment(ramp_s, start, end), Segment(math.inf, end, end))
    elif kind == "spike" and (m := re.fullmatch(rf"{_NUMBER},{_NUMBER}@{_SECONDS}\+{_SECONDS}", params)):
        base, peak, at_s, length_s = (float(g) for g in m.groups())
        _require(length_s > 0, spec, "the spike length must be positive")
        lead = (Segment(at_s, base, base),) if at_s > 0 else ()
        segments = lead + (Segment(length_s, peak, peak), Segment(math.inf, base, base))
    else:
        raise ValueError(f"rate shape {spec!r} is not understood. {SHAPE_HELP}")
    _require(any(max(s.start_factor, s.end_factor) > 0 for s in segments), spec, "the shape never sends anything")
    return RateShape(spec=spec, segments=segments)


def _require(condition: bool, spec: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"rate shape {spec!r}: {problem}. {SHAPE_HELP}")


@dataclass(frozen=True)
class Shard:
    """This process's share of the arrivals: every `count`-th arrival, starting with arrival number `index`."""

    index: int = 0
    count: int = 1


def intended_times(shape: RateShape, rate_per_s: float, shard: Shard = Shard()) -> Iterator[float]:
    """Intended send times (seconds after the schedule's start) of this shard's arrivals, like wrk2's schedule.

    Arrival number i of the whole run is due when the offered load has integrated to i requests, so the
    union over all shards is one evenly spread schedule whose total rate is rate_per_s * f(t); a shard takes
    arrivals index, index + count, index + 2 count, ... The times do not depend on when anything was sent.
    """
    if rate_per_s <= 0:
        raise ValueError(f"the arrival rate must be positive (got {rate_per_s})")
    number = shard.index
    while (t_s := shape.time_of(number / rate_per_s)) is not None:
        yield t_s
        number += shard.count
