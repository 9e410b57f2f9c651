"""What an experiment declares about how its comparisons are decided: the margin within which a change does not matter,
per measure, and the sequential option (repetitions added until the headline rows are decided).

Both are read from the manifest's experiment mapping (`experiment.margins`, `experiment.sequential`), where the
harness writes the experiment as resolved; an experiment that declares neither gets `Margins()` and no sequential
looks. The defaults, and why:

- latency ±10%: below a tenth, a percentile moves that much between runs of unchanged code on a shared machine
  (docs/gate.md, the gate's calibration), and nobody moves work off the request path for less;
- throughput ±5%: at equal offered load both designs serve the offered rate; a 5% shortfall is already a queue
  that does not keep up;
- capacity ±10%: two brackets of ±5% each (the capacity search's precision) leave a ratio known to about ±10%;
- CPU per campaign ±5%: CPU accounting is exact to a few percent (analysis/stats/cost.py's machine check), and
  a 5% cost is what a capacity plan notices;
- Redis commands per campaign ±1%: a count is exact, and moves between repetitions of identical code by far less
  (analysis/stats/commands.py); 1% keeps one more command per campaign a change (`worse`) for a design of up to
  ~100 commands a campaign.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from analysis.stats.cost import COST_SCOPE
from foundation.config import ConfigModel, parse
from foundation.format import CREATE, OUTCOME

__all__ = ["DEFAULT_CONFIDENCE", "HEADLINE_ROWS", "Margins", "Sequential", "VerdictSettings", "verdict_settings"]

DEFAULT_CONFIDENCE = 0.95
# The rows a sequential run may wait for, by the name an experiment gives them: (endpoint, metric) of a comparison
# row at the headline's phase (the most loaded steady phase). "outcome_p99" is what each side's campaign owner waits
# for (queued's completion against inline's answer), "p99" the POST /campaigns answers themselves.
HEADLINE_ROWS: dict[str, tuple[str, str]] = {
    "outcome_p99": (OUTCOME, "p99_us"),
    "p99": (CREATE, "p99_us"),
    "p50": (CREATE, "p50_us"),
    "throughput": (CREATE, "throughput_per_s"),
    "cpu": (COST_SCOPE, "cpu_ms_per_campaign"),
}
RowName = Literal["outcome_p99", "p99", "p50", "throughput", "cpu"]


class Margins(ConfigModel):
    """`[margins]`: how large a change must be to matter, in percent either way. A row whose whole interval lies
    inside its margin is `equivalent` (the two one-sided tests of an equivalence test, at the interval's level)."""

    latency_pct: float = Field(default=10.0, gt=0, lt=100, description="a percentage > 0 and < 100")
    throughput_pct: float = Field(default=5.0, gt=0, lt=100, description="a percentage > 0 and < 100")
    capacity_pct: float = Field(default=10.0, gt=0, lt=100, description="a percentage > 0 and < 100")
    cpu_pct: float = Field(default=5.0, gt=0, lt=100, description="a percentage > 0 and < 100")
    commands_pct: float = Field(default=1.0, gt=0, lt=100, description="a percentage > 0 and < 100")

    def for_metric(self, metric: str) -> float:
        """The margin of a comparison row's metric, as a fraction: 'p99_us' -> 0.10."""
        if metric == "throughput_per_s":
            return self.throughput_pct / 100
        if metric == "cpu_ms_per_campaign":
            return self.cpu_pct / 100
        if metric == "commands_per_campaign":
            return self.commands_pct / 100
        if metric == "capacity":
            return self.capacity_pct / 100
        return self.latency_pct / 100

    def text(self) -> str:
        return (f"latency ±{self.latency_pct:g}%, throughput ±{self.throughput_pct:g}%, capacity "
                f"±{self.capacity_pct:g}%, CPU per campaign ±{self.cpu_pct:g}%, Redis commands per campaign "
                f"±{self.commands_pct:g}%")


class Sequential(ConfigModel):
    """`[sequential]`: after the declared repetitions, look at the headline rows; while one is undecided, add one
    interleaved repetition of every design and look again — until every row is decided, `max_repetitions` are
    reached, or the next repetition would overrun `budget_s`.

    The looks are bounded in advance (K = max_repetitions − repetitions + 1), and every look judges its rows on
    intervals at confidence 1 − α/K (α = 1 − confidence): whatever the looks' intervals have in common, the chance
    that any of them misses the true change is at most K · α/K = α (the union bound, i.e. alpha spent evenly over
    the looks), so a row is wrongly decided with probability at most α however many looks the run takes. Why this
    and not a boundary that spends less early (O'Brien–Fleming) or a confidence sequence: both need the joint law of
    the statistics across looks (independent Gaussian increments, or a martingale of bounded observations), and a
    percentile of merged interval histograms, bootstrapped, gives neither; the union bound needs nothing but each
    look's interval, at the price of wider intervals (99% for 5 looks at 95%).

    Measured (benchmarks/sequential_aa.py: simulated A/A comparisons of P99, looks after 2, 3 and 4 repetitions of
    20 one-second intervals, 2 x 1,000 trials): 4.3% wrong verdicts with the correction, 10.4% looking three times
    at 95%. The level holds only as far as each look's bootstrap interval holds its own, which needs at least ~20
    one-second intervals a repetition (analysis/stats/sequential.py's MIN_INTERVALS; a look on shorter phases says
    so)."""

    max_repetitions: int = Field(ge=2, description="a whole number >= 2 (and >= the experiment's repetitions)")
    budget_s: float = Field(gt=0, description="seconds > 0 that the added repetitions may take")
    rows: list[RowName] = ["outcome_p99", "p99"]
    confidence: float = Field(default=DEFAULT_CONFIDENCE, gt=0.5, lt=1, description="a number > 0.5 and < 1")

    def looks(self, repetitions: int) -> int:
        """K: the looks a run that starts with `repetitions` may take (one after each repetition from there)."""
        return max(1, self.max_repetitions - repetitions + 1)

    def level(self, repetitions: int) -> float:
        """Each look's confidence: 1 − α/K."""
        return 1 - (1 - self.confidence) / self.looks(repetitions)


class VerdictSettings(ConfigModel):
    """How a run's rows are decided: its margins, and the confidence of every interval (corrected for the looks of a
    sequential run)."""

    margins: Margins = Margins()
    sequential: Sequential | None = None
    repetitions: int = Field(default=1, ge=1)

    @property
    def confidence(self) -> float:
        if self.sequential is None:
            return DEFAULT_CONFIDENCE
        return self.sequential.level(self.repetitions)


def verdict_settings(experiment: Mapping[str, Any] | None, source: str = "manifest.json") -> VerdictSettings:
    """The settings an experiment declares (the manifest's experiment as resolved); defaults for what it does not."""
    experiment = experiment or {}
    data: dict[str, Any] = {"repetitions": int(experiment.get("repetitions") or 1)}
    for key in ("margins", "sequential"):
        if experiment.get(key) is not None:
            data[key] = experiment[key]
    return parse(data, VerdictSettings, f"{source}: experiment")
