"""A soak's analysis on data whose slopes and drift are known: growth that would use up the machine's memory within a
day is flagged and flat memory is not, a P99 that rose between the first and last ten minutes is a drift and a steady
one is not, keys that expire level off instead of growing in a line, and a soak's folder renders its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.reports.render import render
from analysis.reports.soak_report import verdict
from analysis.stats.key_kinds import HORIZON_S, by_kinds_day_bytes, key_growth
from analysis.stats.soak import Growth, drift_of, memory_growth
from analysis.stats.trend import fit_trend, t_quantile
from analysis.stats.verdict_settings import VerdictSettings
from foundation.experiment_facts import SoakFacts
from foundation.format import (
    KEYS_FILE,
    MANIFEST_FILE,
    MEMORY_COLUMNS,
    MEMORY_FILE,
    REDIS_MEMORY_COLUMNS,
    REDIS_MEMORY_FILE,
    KeyCensus,
    KeyPattern,
)
from tests.analysis_fixtures import CellSpec, Latency, intervals_of, write_run

pytestmark = pytest.mark.fast

MIB, GIB = 2**20, 2**30
SOAK = SoakFacts(duration_s=1800, load_fraction=0.7, sample_interval_s=10, warmup_s=60, bin_s=60, drift_bins=10)


def ar1(n: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Autocorrelated noise: each sample `phi` times the last plus fresh noise, stationary from the first."""
    noise = rng.normal(0, sd, n)
    out = np.zeros(n)
    out[0] = noise[0] / math.sqrt(1 - phi**2)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


def test_a_known_slope_is_recovered_within_its_interval():
    t = np.arange(0, 1801, 10.0)
    truth = 50 * MIB / 3600  # 50 MiB an hour
    values = 100 * MIB + truth * t + ar1(len(t), 0.8, 0.5 * MIB, np.random.default_rng(7))
    trend = fit_trend(t, values)
    assert trend is not None and trend.growing
    assert trend.low_per_s < truth < trend.high_per_s
    assert abs(trend.slope_per_s / truth - 1) < 0.1


def test_flat_autocorrelated_memory_is_read_as_growth_at_about_the_stated_rate():
    # A memory series is its last sample plus a little: ordinary least squares' errors would call a flat one growing
    # or shrinking in about half of these (analysis/stats/soak.py); the effective sample size brings it near 5%.
    t = np.arange(0, 1801, 10.0)
    trials = 400
    wrong = 0
    for seed in range(trials):
        trend = fit_trend(t, 80 * MIB + ar1(len(t), 0.8, MIB, np.random.default_rng(seed)))
        assert trend is not None
        wrong += trend.low_per_s > 0 or trend.high_per_s < 0
    assert wrong / trials <= 0.09


def test_t_quantiles_are_those_of_the_tables():
    assert t_quantile(0.975, 5) == pytest.approx(2.5706, rel=2e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.0423, rel=1e-3)
    assert t_quantile(0.975, 1e9) == pytest.approx(1.959964, rel=1e-6)


def memory_frame(series: dict[tuple[str, str], np.ndarray], t: np.ndarray, available: float) -> pd.DataFrame:
    rows = []
    for (tier, name), values in series.items():
        rows += [(float(at), tier, name, 100, int(v)) for at, v in zip(t, values, strict=True) if not np.isnan(v)]
    rows += [(float(at), "machine", "available", 0, int(available)) for at in t]
    return pd.DataFrame(rows, columns=list(MEMORY_COLUMNS)).sort_values("t_s", kind="stable")


def test_growth_that_would_use_up_the_available_memory_within_a_day_is_flagged_and_flat_is_not():
    rng = np.random.default_rng(3)
    t = np.arange(0, 1801, 10.0)
    n = len(t)
    fork = np.full(n, np.nan)
    fork[100:110] = 300 * MIB  # a background save's fork: in a few samples only
    memory = memory_frame({
        ("web", "service"): 60 * MIB + GIB / 3600 * t + ar1(n, 0.5, MIB, rng),  # 1 GiB an hour: 24 GiB a day
        ("workers", "worker-0"): 48 * MIB + ar1(n, 0.8, MIB, rng),  # flat
        ("workers", "worker-1"): 48 * MIB + 20 * MIB / 3600 * t + ar1(n, 0.5, 0.2 * MIB, rng),  # 480 MiB a day
        ("redis", "redis-server>redis-rdb-bgsave"): fork,
        ("load", "locust"): 70 * MIB + ar1(n, 0.5, MIB, rng),
    }, t, available=16 * GIB)
    found, headroom, _ = memory_growth(memory, warmup_s=60)
    assert headroom == 16 * GIB
    by_name = {g.name: g for g in found}
    assert [g.name for g in found] == ["service", "redis-server>redis-rdb-bgsave", "worker-0", "worker-1", "locust"]
    web = by_name["service"]
    assert web.flagged and web.exhausts_in_s == pytest.approx(16 * 3600, rel=0.1)
    assert not by_name["worker-0"].flagged and not by_name["worker-0"].trend.growing
    grows_slowly = by_name["worker-1"]
    assert grows_slowly.trend.growing and not grows_slowly.flagged  # real, but 16 GiB would last 34 days
    assert by_name["redis-server>redis-rdb-bgsave"].trend is None  # passing: not fitted, never flagged
    assert by_name["redis-server>redis-rdb-bgsave"].max_bytes == 300 * MIB


def test_keys_that_expire_level_off_instead_of_growing_in_a_line():
    # 10 campaigns a second for 100 s: each leaves a record that never expires (1 kB) and a job that expires after
    # an hour (12 kB). In a line, Redis would grow by 130 kB/s, 10.5 GiB a day; by kinds of key, 0.8 GiB a day stays
    # and the jobs level off at 10/s x 3600 s x 12 kB = 0.4 GiB.
    census = KeyCensus(at=0.0, keys=2000, patterns=(
        KeyPattern("rq:job:{id}", count=1000, with_ttl=1000, ttl_min_s=3500, ttl_max_s=3600, sampled=20,
                   mean_bytes=12_000, type="hash"),
        KeyPattern("offpath:campaign:{id}", count=1000, sampled=20, mean_bytes=1000, type="hash"),
        KeyPattern("rq:queues", count=1, sampled=1, mean_bytes=200, type="set"),
    ))
    kinds = {k.pattern.pattern: k for k in key_growth(census, campaigns=1000, rate_per_s=10)}
    assert kinds["rq:job:{id}"].levels_off_at == pytest.approx(36_000)
    assert kinds["offpath:campaign:{id}"].levels_off_at is None and kinds["offpath:campaign:{id}"].grows_with_campaigns
    assert not kinds["rq:queues"].grows_with_campaigns
    slope = 130_000.0
    day = by_kinds_day_bytes(list(kinds.values()), slope, campaigns_per_s=10)
    assert day == pytest.approx(1000 * 10 * HORIZON_S + (36_000 - 1000) * 12_000)
    trend = fit_trend([0, 50, 100], [0, 50 * slope, 100 * slope])
    assert trend is not None
    linear = Growth("Redis used memory", "redis", trend, 0, 100 * slope, 100 * slope, headroom_bytes=5 * GIB)
    assert linear.flagged  # 10.5 GiB a day in a line
    assert not Growth("Redis used memory", "redis", trend, 0, 100 * slope, 100 * slope, headroom_bytes=5 * GIB,
                      by_kinds_bytes=day).flagged


@pytest.mark.fast
def test_a_series_flat_then_rising_is_not_called_flat():
    # Redis's resident memory in the soak of 2026-12-07: flat while the allocator reused what the last design left,
    # then rising in a line. Its residuals run so long one way that the interval is unbounded: no verdict either way.
    t = np.arange(0, 1800, 10.0)
    rss = np.where(t < 900, 485e6, 485e6 + (t - 900) * 480e3)
    trend = fit_trend(t, rss)
    assert trend is not None and math.isinf(trend.low_per_s)
    growth = Growth("redis-server", "redis", trend, 0, float(rss[0]), float(rss[-1]), headroom_bytes=20 * GIB)
    assert verdict(growth).startswith("no trend to tell")


def soak_latency(rng: np.random.Generator, rise: float) -> list[np.ndarray]:
    """30 minutes at 20/s, lognormal around 20 ms; its scale grows by `rise` (a fraction) from the first second to
    the last."""
    return [rng.lognormal(np.log(20_000 * (1 + rise * second / 1800)), 0.5, 20).astype(np.int64)
            for second in range(1800)]


def test_a_p99_that_rose_between_the_first_and_last_ten_minutes_is_a_drift_and_a_steady_one_is_not():
    settings = VerdictSettings()
    rng = np.random.default_rng(11)
    drifting = drift_of(intervals_of(soak_latency(rng, 0.6)), "request", SOAK, 1800, settings)
    steady = drift_of(intervals_of(soak_latency(rng, 0.0)), "request", SOAK, 1800, settings)
    assert drifting.first_s == (60, 660) and drifting.last_s == (1200, 1800)
    assert drifting.row is not None and drifting.flagged
    # The scale averages 1.12 over the first window and 1.5 over the last: the P99 rises by about a third.
    assert drifting.row.delta_pct == pytest.approx(100 * (1.5 / 1.12 - 1), abs=10)
    assert steady.row is not None and not steady.flagged and steady.row.verdict in ("equivalent", "undecided")
    short = drift_of(intervals_of(soak_latency(rng, 0.0)[:600]), "request", SOAK, 600, settings)
    assert short.row is None and "20 are needed" in short.why


def test_a_soak_folder_renders_its_flags_and_figures(tmp_path):
    spec = CellSpec(design="inline", phase="soak", kind="soak", rate_per_s=5, duration_s=600, latency=Latency(20_000))
    run_dir, _ = write_run(tmp_path, [spec], run_id="20261207-100000-soak-abcdef", designs=("inline",))
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    soak = {"duration_s": 600.0, "load_fraction": None, "rate_per_s": {"inline": 5.0}, "sample_interval_s": 10.0,
            "warmup_s": 60.0, "bin_s": 30.0, "drift_bins": 5}
    manifest["kind"] = "soak"
    manifest["experiment"] |= {"soak": soak, "phases": []}
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    cell_dir = run_dir / "cells" / spec.id
    rng = np.random.default_rng(5)
    t = np.arange(0, 601, 10.0)
    n = len(t)
    memory_frame({("web", "inline-service"): 60 * MIB + 2 * GIB / 3600 * t + ar1(n, 0.5, MIB, rng),
                  ("redis", "redis-server"): 8 * MIB + ar1(n, 0.5, 0.1 * MIB, rng)},
                 t, available=20 * GIB).to_csv(cell_dir / MEMORY_FILE, index=False)
    keys = 2 * 5 * t
    pd.DataFrame({"t_s": t, "used_memory_bytes": MIB + 1200 * 5 * t, "used_memory_rss_bytes": 8 * MIB + 0 * t,
                  "keys": keys, "expiring_keys": 0 * t}, columns=list(REDIS_MEMORY_COLUMNS)).to_csv(
        cell_dir / REDIS_MEMORY_FILE, index=False)
    census = KeyCensus(at=0.0, keys=6000, patterns=(
        KeyPattern("offpath:campaign:{id}", count=3000, sampled=20, mean_bytes=1040, type="hash"),
        KeyPattern("offpath:executions:{id}", count=3000, sampled=20, mean_bytes=132, type="hash")))
    (cell_dir / KEYS_FILE).write_text(json.dumps(census.to_dict()))

    render(run_dir)
    report = (run_dir / "report.md").read_text()
    assert report.splitlines()[2].startswith("**inline: memory that would run out within a day: inline-service")
    assert "| inline-service | web |" in report and "GROWS: would take the 20.00 GiB available in 10.0 h" in report
    assert "offpath:campaign:{id}, offpath:executions:{id}" in report  # the keys that never expire, named
    figures = json.loads((run_dir / "soak.json").read_text())
    design = figures["designs"][0]
    web, redis = design["processes"]
    assert web["flagged"] and not redis["flagged"]
    assert design["keys_per_campaign"] == pytest.approx(2.0, rel=0.01)
    assert design["bytes_per_campaign"] == pytest.approx(1200, rel=0.01)
    assert len(design["request_bins"]) == 20 and design["request_drift"]["row"]["verdict"] != "worse"
    assert (run_dir / "plots" / "memory-inline.png").is_file() and (run_dir / "plots" / "latency-inline.png").is_file()
