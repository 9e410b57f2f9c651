"""A soak's figures (`offpath bench soak`: memory.csv, redis_memory.csv and keys.json beside each soak cell's logs):
per design, the slope of every process's resident memory, of Redis's memory and keys and of the P99 per bin, each
with its 95% interval; the growth that would exhaust the machine's available memory within a day; and whether the
P99 of the first bins after the warm-up differs from the last bins' beyond its interval.

Slopes are least squares over the samples after the warm-up, each with an interval that holds for autocorrelated
series (analysis/stats/trend.py).

A series is flagged when its growth is real (its interval's low end above 0) and what it would add over HORIZON_S (a
day) is at least the memory the machine had available at the soak's end. What a day adds is the slope's, except for
Redis's used memory, where the keys counted at the end say more: a kind of key that grows with the campaigns and
expires levels off once its TTL has passed (at the rate times the keys per campaign times the TTL), which a soak
shorter than the TTL sees only as a line; the kinds that never expire, and any growth no kind accounts for, go on
at their slope. Redis is judged by its used memory, not its resident set: an allocator keeps pages it once had, so
after the Redis of an earlier block was emptied its RSS shows no growth until the data outgrows the old peak.

The drift: the merged histograms of the first `drift_bins` bins after the warm-up against the last `drift_bins`', by
the comparison's own bootstrap and verdict (analysis/stats/compare.py: `worse` is a P99 that rose beyond its interval
and beyond the margin's equivalence), the bins resampled, not the seconds: over a long run the minutes are the units
of time, and what varies between them is what a soak looks for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats.bootstrap import new_rng
from analysis.stats.compare import DeltaRow, compare_logs, run_settings
from analysis.stats.equivalence import BETTER, WORSE
from analysis.stats.histogram import Intervals, stats
from analysis.stats.key_kinds import HORIZON_S, KeyGrowth, by_kinds_day_bytes, key_growth
from analysis.stats.load import Cell, Run
from analysis.stats.trend import Trend, fit_trend
from analysis.stats.verdict_settings import VerdictSettings
from foundation.experiment_facts import SoakFacts
from foundation.format import CREATE, MACHINE_TIER, SYSTEM_TIERS, TIERS

__all__ = ["DesignSoak", "Drift", "Growth", "LatencyBin", "Soak", "design_soak", "drift_of", "latency_bins",
           "memory_growth", "soak_of"]

# A process in fewer of the samples after the warm-up than this (a fork for a background save) is shown, not fitted.
PRESENT_SHARE = 0.8


@dataclass(frozen=True)
class Growth:
    """The memory of one series over the soak after its warm-up (a process's resident set, Redis's used memory, the
    system's total), fitted; `headroom_bytes` is what the machine had available at the soak's end."""

    name: str
    tier: str
    trend: Trend | None
    first_bytes: float
    last_bytes: float
    max_bytes: float
    present: float = 1.0  # share of the samples after the warm-up it was in
    headroom_bytes: float | None = None
    by_kinds_bytes: float | None = None  # what a day adds by the kinds of key Redis held (None: the slope's)

    @property
    def exhausts_in_s(self) -> float | None:
        """How long until the growth, at its slope, would have taken the whole headroom; None unless it grows."""
        if self.trend is None or self.trend.slope_per_s <= 0 or self.headroom_bytes is None:
            return None
        return self.headroom_bytes / self.trend.slope_per_s

    @property
    def day_bytes(self) -> float | None:
        """What a day (HORIZON_S) adds: by kinds of key where they were counted, else at the slope."""
        if self.by_kinds_bytes is not None:
            return self.by_kinds_bytes
        return self.trend.slope_per_s * HORIZON_S if self.trend is not None else None

    @property
    def flagged(self) -> bool:
        """Real growth that would use up the machine's available memory within a day."""
        day = self.day_bytes
        return self.trend is not None and self.trend.growing and day is not None and \
            self.headroom_bytes is not None and day >= self.headroom_bytes


def _growth(name: str, tier: str, t_s: np.ndarray, values: np.ndarray, present: float,
            headroom: float | None) -> Growth:
    fitted = fit_trend(t_s, values) if present >= PRESENT_SHARE else None
    return Growth(name=name, tier=tier, trend=fitted, first_bytes=float(values[0]), last_bytes=float(values[-1]),
                  max_bytes=float(values.max()), present=round(present, 3), headroom_bytes=headroom)


def memory_growth(memory: pd.DataFrame, warmup_s: float) -> tuple[list[Growth], float | None, pd.DataFrame]:
    """Each process's growth after `warmup_s` (processes of one name, as two children of one root, summed), the
    machine's available memory at the last sample, and the resident memory per sample and process (columns)."""
    after = memory[memory["t_s"] >= warmup_s]
    machine = after[after["tier"] == MACHINE_TIER].sort_values("t_s")
    headroom = float(machine["rss_bytes"].iloc[-1]) if len(machine) else None
    processes = after[after["tier"] != MACHINE_TIER]
    samples = max(after["t_s"].nunique(), 1)
    wide = processes.pivot_table(index="t_s", columns=["tier", "process"], values="rss_bytes", aggfunc="sum")
    found = []
    for column in wide.columns:
        tier, name = str(column[0]), str(column[1])
        series = wide[column].dropna()
        found.append(_growth(name, tier, series.index.to_numpy(float), series.to_numpy(float),
                             len(series) / samples, headroom))
    return sorted(found, key=_order), headroom, wide


def _order(growth: Growth) -> tuple[int, list[Any]]:
    """Tiers in TIERS' order, then names as people sort them (worker-2 before worker-10)."""
    rank = TIERS.index(growth.tier) if growth.tier in TIERS else len(TIERS)
    return rank, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", growth.name)]


@dataclass(frozen=True)
class LatencyBin:
    """One bin of a latency log (a minute, by default): its values merged, counted from the log's first interval."""

    index: int
    start_s: float
    count: int
    p50_us: int | None
    p99_us: int | None
    max_us: int | None


def latency_bins(log: Intervals, bin_s: float, duration_s: float) -> list[LatencyBin]:
    """The whole bins of `log` within `duration_s` of its first interval (the load; a queued design's completions
    go on through the drain after it)."""
    if not log.n_intervals:
        return []
    origin = float(log.start_s[0])
    bins = []
    for index in range(int(duration_s // bin_s)):
        figures = stats(log.span(origin + index * bin_s, origin + (index + 1) * bin_s).merged(), (50.0, 99.0))
        bins.append(LatencyBin(index=index, start_s=index * bin_s, count=int(figures["count"] or 0),
                               p50_us=_int(figures["p50_us"]), p99_us=_int(figures["p99_us"]),
                               max_us=_int(figures["max_us"])))
    return bins


def _int(value: float | int | None) -> int | None:
    return int(value) if value is not None else None


def p99_trend(bins: Sequence[LatencyBin], warmup_s: float) -> Trend | None:
    """The P99 per bin after the warm-up, fitted over the bins' middles (µs per second)."""
    kept = [b for b in bins if b.start_s >= warmup_s and b.count and b.p99_us is not None]
    if not kept:
        return None
    width = bins[1].start_s - bins[0].start_s if len(bins) > 1 else 0.0
    return fit_trend([b.start_s + width / 2 for b in kept], [float(b.p99_us or 0) for b in kept])


@dataclass(frozen=True)
class Drift:
    """The P99 of the first `bins` bins after the warm-up (`first_s`: from, to, seconds from the log's start) against
    the last `bins` bins' (`last_s`); `row` the comparison's row (a = first, b = last), None with `why` when the soak
    was too short or the log empty."""

    log: str
    bins: int
    first_s: tuple[float, float] = (0.0, 0.0)
    last_s: tuple[float, float] = (0.0, 0.0)
    row: DeltaRow | None = None
    why: str = ""

    @property
    def flagged(self) -> bool:
        """The P99 rose beyond its interval (and beyond the margin within which a change does not matter)."""
        return self.row is not None and self.row.verdict == WORSE

    @property
    def fell(self) -> bool:
        return self.row is not None and self.row.verdict == BETTER


def drift_of(log: Intervals, name: str, soak: SoakFacts, duration_s: float, settings: VerdictSettings) -> Drift:
    """The P99 drift of one log between the first and last `soak.drift_bins` whole bins after the warm-up."""
    wanted = soak.drift_bins
    if not log.n_intervals:
        return Drift(name, wanted, why="no values recorded")
    origin = float(log.start_s[0])
    first_bin = math.ceil(soak.warmup_s / soak.bin_s)
    whole = int(duration_s // soak.bin_s)
    if whole - first_bin < 2 * wanted:
        return Drift(name, wanted, why=f"{whole - first_bin} whole bins of {soak.bin_s:g} s after the warm-up; "
                                       f"{2 * wanted} are needed to compare the first {wanted} with the last")
    first_s = (first_bin * soak.bin_s, (first_bin + wanted) * soak.bin_s)
    last_s = ((whole - wanted) * soak.bin_s, whole * soak.bin_s)
    seconds_per_bin = max(1, round(soak.bin_s / float(np.median(log.length_s))))
    first = log.span(origin + first_s[0], origin + first_s[1]).windows(seconds_per_bin)
    last = log.span(origin + last_s[0], origin + last_s[1]).windows(seconds_per_bin)
    rows = compare_logs([first], [last], "drift", name, new_rng(), margins=settings.margins,
                        confidence=settings.confidence, metrics=("p99_us",))
    if not rows:
        return Drift(name, wanted, first_s, last_s, why="no values in the first or the last bins")
    return Drift(name, wanted, first_s, last_s, rows[0])


@dataclass(frozen=True)
class DesignSoak:
    """One design's soak: at what rate (and against what capacity), what every series did, and what Redis held."""

    design: str
    cell: str
    rate_per_s: float | None
    held_per_s: float | None  # the highest rate its capacity search held (None: a declared rate)
    duration_s: float
    warmup_s: float
    campaigns: int  # the requests the soak's load had acknowledged or answered (2xx)
    campaigns_per_s: float | None  # of them, per second after the warm-up
    headroom_bytes: float | None
    processes: tuple[Growth, ...] = ()  # web, workers and Redis's resident sets
    load: tuple[Growth, ...] = ()  # the load generator's, apart: the client's, not the system's
    total: Growth | None = None  # web and workers' resident sets plus Redis's used memory
    redis_used: Growth | None = None
    redis_keys: Trend | None = None
    request_bins: tuple[LatencyBin, ...] = ()
    request_p99: Trend | None = None
    request_drift: Drift | None = None
    outcome_log: str | None = None  # a design with queue data: the log of its completions
    outcome_bins: tuple[LatencyBin, ...] = ()
    outcome_p99: Trend | None = None
    outcome_drift: Drift | None = None
    keys: tuple[KeyGrowth, ...] = ()
    census_error: str | None = None
    missing: tuple[str, ...] = field(default_factory=tuple)

    @property
    def grown(self) -> list[Growth]:
        """The series flagged: growth that would use up the machine's available memory within a day."""
        return [g for g in (*self.processes, self.redis_used, self.total) if g is not None and g.flagged]

    @property
    def drifted(self) -> list[Drift]:
        return [d for d in (self.request_drift, self.outcome_drift) if d is not None and d.flagged]

    @property
    def keys_per_campaign(self) -> float | None:
        if self.redis_keys is None or not self.campaigns_per_s:
            return None
        return self.redis_keys.slope_per_s / self.campaigns_per_s

    @property
    def bytes_per_campaign(self) -> float | None:
        if self.redis_used is None or self.redis_used.trend is None or not self.campaigns_per_s:
            return None
        return self.redis_used.trend.slope_per_s / self.campaigns_per_s


@dataclass(frozen=True)
class Soak:
    """A soak run's figures, design by design; `machine_bytes` the machine's memory (the manifest's)."""

    run_id: str
    settings: SoakFacts
    machine_bytes: float | None
    designs: tuple[DesignSoak, ...]

    def to_dict(self) -> dict[str, Any]:
        """soak.json: every figure, slopes per second and bytes as measured, with each flag."""
        return _plain({"run_id": self.run_id, "settings": asdict(self.settings), "machine_bytes": self.machine_bytes,
                       "horizon_s": HORIZON_S, "designs": [_design_dict(d) for d in self.designs]})


def _design_dict(soak: DesignSoak) -> dict[str, Any]:
    out = asdict(soak)
    for key, series in (("processes", soak.processes), ("load", soak.load)):
        out[key] = [asdict(g) | _growth_figures(g) for g in series]
    for key in ("total", "redis_used"):
        growth = getattr(soak, key)
        if growth is not None:
            out[key] |= _growth_figures(growth)
    for key in ("request_drift", "outcome_drift"):
        drift = getattr(soak, key)
        if drift is not None:
            out[key] |= {"flagged": drift.flagged}
    out["keys"] = [asdict(k) | {"grows_with_campaigns": k.grows_with_campaigns, "expiry": k.expiry}
                   for k in soak.keys]
    out |= {"keys_per_campaign": soak.keys_per_campaign, "bytes_per_campaign": soak.bytes_per_campaign}
    return out


def _growth_figures(growth: Growth) -> dict[str, Any]:
    return {"exhausts_in_s": growth.exhausts_in_s, "day_bytes": growth.day_bytes, "flagged": growth.flagged}


def _plain(value: Any) -> Any:
    """JSON's own types (numpy's numbers and tuples made plain; NaN and infinities as null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def design_soak(cell: Cell, soak: SoakFacts, settings: VerdictSettings, held_per_s: float | None) -> DesignSoak:
    """The figures of one design's soak cell."""
    missing = []
    request = cell.log(CREATE)
    duration_s = cell.duration_s
    request_bins = latency_bins(request, soak.bin_s, duration_s)
    origin = float(request.start_s[0]) if request.n_intervals else 0.0
    measured = request.span(origin + soak.warmup_s, origin + duration_s)
    seconds = float(measured.length_s.sum()) if measured.n_intervals else 0.0
    campaigns_per_s = measured.total_count / seconds if seconds else None
    processes: list[Growth] = []
    load: list[Growth] = []
    total = redis_used = None
    redis_keys = None
    headroom = None
    memory = cell.memory
    redis_memory = cell.redis_memory
    if memory is None:
        missing.append("memory.csv")
    else:
        found, headroom, wide = memory_growth(memory, soak.warmup_s)
        processes = [g for g in found if g.tier != "load"]
        load = [g for g in found if g.tier == "load"]
        if redis_memory is not None:
            redis_used, total = _redis_and_total(found, wide, redis_memory, soak.warmup_s, headroom)
    if redis_memory is None:
        missing.append("redis_memory.csv")
    else:
        after = redis_memory[redis_memory["t_s"] >= soak.warmup_s]
        redis_keys = fit_trend(after["t_s"].to_numpy(float), after["keys"].to_numpy(float))
    census = cell.keys()
    keys: list[KeyGrowth] = []
    if census is None:
        missing.append("keys.json")
    elif census.error is None:
        keys = key_growth(census, request.total_count, campaigns_per_s)
    if keys and redis_used is not None and redis_used.trend is not None and campaigns_per_s:
        redis_used, total = _by_kinds(keys, redis_used, total, campaigns_per_s)
    queued = cell.queue is not None
    outcome = cell.completion_log if queued else None
    outcome_bins = latency_bins(cell.log(outcome), soak.bin_s, duration_s) if outcome else []
    return DesignSoak(
        design=cell.design, cell=cell.id, rate_per_s=cell.offered_rate_per_s, held_per_s=held_per_s,
        duration_s=duration_s, warmup_s=soak.warmup_s, campaigns=request.total_count,
        campaigns_per_s=round(campaigns_per_s, 3) if campaigns_per_s is not None else None, headroom_bytes=headroom,
        processes=tuple(processes), load=tuple(load), total=total, redis_used=redis_used, redis_keys=redis_keys,
        request_bins=tuple(request_bins), request_p99=p99_trend(request_bins, soak.warmup_s),
        request_drift=drift_of(request, CREATE, soak, duration_s, settings),
        outcome_log=outcome, outcome_bins=tuple(outcome_bins),
        outcome_p99=p99_trend(outcome_bins, soak.warmup_s) if outcome else None,
        outcome_drift=drift_of(cell.log(outcome), outcome, soak, duration_s, settings) if outcome else None,
        keys=tuple(keys), census_error=census.error if census is not None else None, missing=tuple(missing))


def _redis_and_total(found: list[Growth], wide: pd.DataFrame, redis_memory: pd.DataFrame, warmup_s: float,
                     headroom: float | None) -> tuple[Growth | None, Growth | None]:
    """Redis's used memory, and the system's total: the resident sets of the web and worker processes sampled
    throughout, plus Redis's used memory (its resident set would count pages its allocator keeps but no data uses)."""
    after = redis_memory[redis_memory["t_s"] >= warmup_s]
    if not len(after):
        return None, None
    used = after.set_index("t_s")["used_memory_bytes"].astype(float)
    redis_used = _growth("Redis used memory", "redis", used.index.to_numpy(float), used.to_numpy(float), 1.0,
                         headroom)
    steady = [(g.tier, g.name) for g in found if g.tier in SYSTEM_TIERS and g.tier != "redis" and g.trend is not None]
    summed = wide[steady].sum(axis=1) if steady else pd.Series(0.0, index=wide.index)
    joined = pd.concat([summed.rename("processes"), used.rename("redis")], axis=1, join="inner").dropna()
    if not len(joined):
        return redis_used, None
    values = joined.sum(axis=1)
    total = _growth("web + workers + Redis used", "system", values.index.to_numpy(float), values.to_numpy(float), 1.0,
                    headroom)
    return redis_used, total


def _by_kinds(keys: Sequence[KeyGrowth], redis_used: Growth, total: Growth | None,
              campaigns_per_s: float) -> tuple[Growth, Growth | None]:
    """Redis's used memory and the system's total, what a day adds to each projected by the kinds of key."""
    assert redis_used.trend is not None
    day = by_kinds_day_bytes(keys, redis_used.trend.slope_per_s, campaigns_per_s)
    if day is None:
        return redis_used, total
    if total is not None and total.trend is not None:
        processes_day = (total.trend.slope_per_s - redis_used.trend.slope_per_s) * HORIZON_S
        total = replace(total, by_kinds_bytes=max(0.0, processes_day) + day)
    return replace(redis_used, by_kinds_bytes=day), total


def soak_of(run: Run) -> Soak:
    """Every design's soak in `run` (a run of kind "soak"), in the order they ran."""
    soak = run.record.experiment.soak
    if soak is None:
        raise ValueError(f"run {run.id} is not a soak: its experiment has no [soak]")
    settings = run_settings(run)
    memory_gib = run.record.machine.memory_gib
    designs = []
    for cell in run.select(kind="soak"):
        search = run.record.capacity_searches.get(cell.design)
        designs.append(design_soak(cell, soak, settings, search.held_per_s if search is not None else None))
    return Soak(run_id=run.id, settings=soak, machine_bytes=memory_gib * 2**30 if memory_gib else None,
                designs=tuple(designs))
