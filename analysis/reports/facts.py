"""How a run was measured, from its manifest: the facts every report ends with."""

from __future__ import annotations

import json
from typing import Any

from analysis.stats.bootstrap import METHOD
from analysis.stats.capacity import PENDING_LIMIT
from analysis.stats.cost import ACCOUNTING_TOLERANCE, COST_SCOPE
from analysis.stats.load import Run
from analysis.stats.summary import (
    BACKLOG_GROWTH_FLOOR_PER_S,
    BACKLOG_GROWTH_FRACTION,
    BACKLOG_SIGNIFICANCE_SE,
    DRIVER_LAG_P99_LIMIT_US,
)
from foundation.format import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, TIERS

RECORDING = (f"Every latency in microseconds into HDR histograms ({LOWEST_US} µs .. {HIGHEST_US // 3_600_000_000} h, "
             f"{SIGNIFICANT_DIGITS} significant digits), one histogram per second per endpoint. Open model: latency "
             "counts from each request's intended send time, so a stalled server cannot hide its stall (coordinated "
             "omission). Every percentile is read from merged histograms — never an average of percentiles — and "
             "shown with the count behind it.")
RULES = (f"Capacity: the highest offered rate at which it and every lower rate kept POST /campaigns P99 within the "
         f"SLO and errors within the budget (acknowledgement); for a design with queue data also its backlog flat "
         f"(drain) and its completion P99 within the completion SLO, with at most {PENDING_LIMIT:.0%} of the accepted "
         f"campaigns not final after the drain (completion). The capacity table names the limit that bound each design; "
         f"a search stops at the first step that breaks any, so a limit not reached by then reads '≥'. Backlog (depth + "
         f"deferred + scheduled jobs) is not sustainable when its least-squares slope over "
         f"the second half of the load exceeds {BACKLOG_GROWTH_FRACTION:.0%} of the accepted rate (at least "
         f"{BACKLOG_GROWTH_FLOOR_PER_S:g} jobs/s) and {BACKLOG_SIGNIFICANCE_SE:g} standard errors. The load "
         f"generator is flagged as the bottleneck when its send lag P99 exceeds {DRIVER_LAG_P99_LIMIT_US / 1000:g} ms. "
         "Outcome rows set what each side's campaign owner waits for against the other's: the completion where the "
         "cells have queue data, the POST's answer where they have none.")
COSTING = (f"Each tier's CPU seconds through each cell, read from its own processes (cpu.csv, once a second; a design "
           f"with a queue is counted through its drain). CPU per campaign charges the serving tiers ({COST_SCOPE}) "
           "to the campaigns served to their outcome: successful creates for a design without a queue, campaigns "
           "completed (not accepted) for one with a queue. Repetitions are summed before dividing, never ratios "
           "averaged. The load generator's CPU is shown, not charged. Machine check: the machine's CPU against the "
           f"tiers' plus every other process's, flagged GAP when they differ by more than {ACCOUNTING_TOLERANCE:.0%}.")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def placement_text(placement: Any) -> str:
    """What each tier got, per block (manifest["placement"]): the CPUs its processes may use and its budget."""
    if not isinstance(placement, dict) or not placement:
        return "-"
    parts = []
    for block, tiers in placement.items():
        if not isinstance(tiers, dict):
            parts.append(f"{block}: {_compact(tiers)}")
            continue
        got = []
        for tier in [t for t in TIERS if t in tiers] + [t for t in tiers if t not in TIERS]:
            granted = tiers[tier]
            if not isinstance(granted, dict):
                got.append(f"{tier} {_compact(granted)}")
                continue
            cpus = granted.get("cpus_allowed")
            budget = granted.get("cpu_budget")
            got.append(f"{tier} CPUs {_compact(cpus) if cpus is not None else 'any'}"
                       + (f", budget {budget:g} CPU" if isinstance(budget, int | float) else ""))
        parts.append(f"{block}: " + "; ".join(got))
    return " · ".join(parts)


def polling_text(layout: dict[str, Any]) -> str:
    """How the simulated client of a 202 learned its campaign's outcome (experiment layout `poll`)."""
    interval = layout.get("poll_interval_s", 1.0)
    mode = layout.get("poll") or "interval"
    if not interval:
        return "none: the client of a 202 did not follow its Location"
    described = {
        "interval": f"GET /campaigns/{{id}} every {interval:g} s until the campaign was final",
        "retry-after": "GET /campaigns/{id} when the service's Retry-After (on the 202 and on every answer about an "
                       f"unfinished campaign) said to, every {interval:g} s without one",
        "wait": "GET /campaigns/{id}?wait=N, which the service holds until the campaign is final (asked again at once "
                "when N seconds run out)",
    }
    return f"{mode}: the client of a 202 sent " + described.get(mode, "(a mode this analysis does not know)")


def facts(run: Run) -> list[tuple[str, str]]:
    """How it was measured, from the manifest."""
    m = run.manifest
    experiment = m.get("experiment") or {}
    git = m.get("git") or {}
    versions = m.get("versions") or {}
    machine = m.get("machine") or {}
    layout = experiment.get("layout") or {}
    profile = m.get("profile") or {}
    slo = experiment.get("slo") or {}
    phases = "; ".join(
        f"{p.get('name')} ({p.get('kind')}, "
        + (f"{p['rate_per_s']:g}/s" if p.get("rate_per_s") is not None else f"{p.get('users')} users")
        + f", {p.get('duration_s', 0):g} s)" for p in experiment.get("phases") or [])
    search = experiment.get("capacity")
    cpus = m.get("cpus") or {}
    redis = m.get("redis") or {}
    rows = [
        ("Run", f"{run.id} — {m.get('status')}, {m.get('started_at')} → {m.get('finished_at')}"),
        ("Code", f"git {git.get('sha', 'unknown')}" + (" (uncommitted changes)" if git.get("dirty") else "")),
        ("Experiment", f"{experiment.get('name')}: {experiment.get('description', '')}".strip()),
        ("Designs and repetitions", f"{', '.join(experiment.get('designs') or run.designs)}; "
                                    f"{experiment.get('repetitions', 1)} repetition(s), interleaved"),
        ("Phases", phases or "none"),
        ("Capacity search", f"{search['start_per_s']:g}/s to {search['max_per_s']:g}/s in steps of "
                            + (f"×{search['step_factor']:g}" if search.get("step_factor") else f"{search['step_per_s']:g}/s")
                            + f", {search['step_duration_s']:g} s each" if search else "none"),
        ("SLO", f"P99 ≤ {slo.get('p99_ms', '?')} ms, error rate ≤ {slo.get('error_rate', '?')}, completion P99 ≤ "
                f"{slo.get('completion_p99_ms') or slo.get('p99_ms', '?')} ms (designs with queue data)"),
        ("Client polling", polling_text(layout)),
        ("Workload profile", f"{profile.get('name')} — {profile.get('description', '')} (seed {profile.get('seed')})"),
        ("Layout", ", ".join(f"{k}={v}" for k, v in layout.items()) or "-"),
        ("Machine", f"{machine.get('cpu_model')}, {machine.get('cpu_count')} CPUs, {machine.get('memory_gib')} GiB, "
                    f"{machine.get('platform')}"),
        ("CPU pinning", f"load generator {cpus.get('load')}, system under test {cpus.get('system_under_test')}"
         if cpus else "-"),
        ("Placement", placement_text(m.get("placement"))),
        ("CPU accounting", ", ".join(f"{tier} by {how}" for tier, how in (m.get("cpu_accounting") or {}).items())
         or "-"),
        ("Cost", COSTING),
        ("Redis", f"{versions.get('redis_server', '?')}, " + ("embedded" if redis.get("embedded") else "external")
         + f", AOF {redis.get('aof', '?')}"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("Seeds", ", ".join(f"{k} {v}" for k, v in (m.get("seeds") or {}).items())),
        ("Recording", RECORDING),
        ("Comparison", METHOD),
        ("Rules", RULES),
    ]
    return rows


