"""How a run was measured, from its manifest: the facts every report ends with."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from analysis.stats.capacity import PENDING_LIMIT
from analysis.stats.compare import method, run_settings
from analysis.stats.cost import ACCOUNTING_TOLERANCE, COST_SCOPE
from analysis.stats.load import Run
from analysis.stats.sequential import looks_text
from analysis.stats.summary import (
    BACKLOG_GROWTH_FLOOR_PER_S,
    BACKLOG_GROWTH_FRACTION,
    BACKLOG_SIGNIFICANCE_SE,
    DRIVER_LAG_P99_LIMIT_US,
)
from foundation.experiment_facts import CapacityFacts, PhaseFacts
from foundation.format import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, TIERS
from foundation.manifest_format import CapacitySearchRecord, Placement

RECORDING = (f"Every latency in microseconds into HDR histograms ({LOWEST_US} µs .. {HIGHEST_US // 3_600_000_000} h, "
             f"{SIGNIFICANT_DIGITS} significant digits), one histogram per second per endpoint. Open model: latency "
             "counts from each request's intended send time, so a stalled server cannot hide its stall (coordinated "
             "omission). Every percentile is read from merged histograms — never an average of percentiles — and "
             "shown with the count behind it.")
RULES = (f"Capacity: the highest offered rate at which it and every lower rate kept POST /campaigns P99 within the "
         f"SLO and errors within the budget (acknowledgement); for a design with queue data also its backlog flat "
         f"(drain) and its completion P99 within the completion SLO, with at most {PENDING_LIMIT:.0%} of the accepted "
         f"campaigns not final after the drain (completion). The capacity table names the limit that bound each design; "
         "a capacity is shown as its bracket [held, broke): the highest rate at which it and every lower rate held, "
         "and the lowest rate above that which broke (±: their difference over twice the rate that held). The search "
         "steps up until a step breaks any limit (past its declared maximum, doubling, up to its ceiling), then bisects "
         "the bracket until it is within the declared precision or its step budget is spent; a limit that never broke "
         "reads '≥' (not found), and the table says whether the search held at its ceiling. Two capacities are "
         "compared by the interval both brackets allow, (held_B / broke_A, broke_B / held_A), decided against the "
         f"capacity margin. Backlog (depth + "
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


def placement_text(placement: Placement | None) -> str:
    """What each tier got, per block (the manifest's placement): the CPUs its processes may use and its budget."""
    if not placement:
        return "-"
    parts = []
    for block, tiers in placement.items():
        got = []
        for tier in [t for t in TIERS if t in tiers] + [t for t in tiers if t not in TIERS]:
            granted = tiers[tier]
            cpus = list(granted.cpus_allowed) if granted.cpus_allowed is not None else None
            got.append(f"{tier} CPUs {_compact(cpus) if cpus is not None else 'any'}"
                       + (f", budget {granted.cpu_budget:g} CPU" if granted.cpu_budget is not None else ""))
        parts.append(f"{block}: " + "; ".join(got))
    return " · ".join(parts)


def phase_text(phase: PhaseFacts) -> str:
    load = f"{phase.rate_per_s:g}/s" if phase.rate_per_s is not None else f"{phase.users} users"
    return f"{phase.name} ({phase.kind}, {load}, {phase.duration_s:g} s)"


def search_text(search: CapacityFacts) -> str:
    """A capacity search's rates and steps, as the experiment declares them."""
    step = f"×{search.step_factor:g}" if search.step_factor else f"{search.step_per_s:g}/s"
    return (f"{search.start_per_s:g}/s to {search.max_per_s:g}/s in steps of {step}, "
            f"{search.step_duration_s:g} s each")


def polling_text(layout: Mapping[str, Any]) -> str:
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


def capacity_search_text(search: CapacityFacts | None, ended: Mapping[str, CapacitySearchRecord] | None = None,
                         per_design: bool = True) -> str:
    """The capacity search as declared and, `per_design`, how it ended for each design (the manifest's
    capacity_searches; a sweep passes one point's for the settings alone)."""
    if search is None:
        return "none"
    text = search_text(search)
    if not ended:  # a run from before the search recorded how it ended: it stopped at the first step that broke
        return text
    first = next(iter(ended.values()))
    refine = f"at most {search.refine_steps if search.refine_steps is not None else 0} narrowing probes"
    text += (f"; then bisected towards ±{first.precision_pct:g}% ({refine}, each long enough for "
             f"{search.tail_values or 10} values beyond P99), going on past the maximum up to a ceiling of "
             f"{first.ceiling_per_s:g}/s")
    if not per_design:
        return text
    return text + " — " + "; ".join(f"{design}: {record.outcome} after {record.probes} probes"
                                    + (f" ({record.reason})" if record.reason else "")
                                    for design, record in ended.items())


def facts(run: Run) -> list[tuple[str, str]]:
    """How it was measured, from the manifest."""
    m = run.record
    experiment = m.experiment
    layout = experiment.layout
    profile = m.profile
    slo = experiment.slo
    versions = m.versions
    search = experiment.capacity
    rows = [
        ("Run", f"{run.id} — {m.status}, {m.started_at} → {m.finished_at}"),
        ("Code", f"git {m.git.sha}" + (" (uncommitted changes)" if m.git.dirty else "")),
        ("Experiment", f"{experiment.name}: {experiment.description}".strip()),
        ("Designs and repetitions", f"{', '.join(experiment.designs or run.designs)}; "
                                    f"{experiment.repetitions} repetition(s), interleaved"
                                    + (f"; sequential: {looks}" if (looks := looks_text(m.sequential)) else "")),
        ("Phases", "; ".join(phase_text(p) for p in experiment.phases) or "none"),
        ("Capacity search", capacity_search_text(search, m.capacity_searches)),
        ("SLO", f"P99 ≤ {slo.p99_ms if slo else '?'} ms, error rate ≤ {slo.error_rate if slo else '?'}, completion P99 "
                f"≤ {slo.completion_ms if slo else '?'} ms (designs with queue data)"),
        ("Client polling", polling_text(layout)),
        ("Workload profile", f"{profile.name} — {profile.description} (seed {profile.seed})" if profile else "-"),
        ("Layout", ", ".join(f"{k}={v}" for k, v in layout.items()) or "-"),
        ("Machine", f"{m.machine.cpu_model}, {m.machine.cpu_count} CPUs, {m.machine.memory_gib} GiB, "
                    f"{m.machine.platform}"),
        ("CPU pinning", f"load generator {list(m.cpus.load)}, system under test {list(m.cpus.system_under_test)}"
         if m.cpus else "-"),
        ("Placement", placement_text(m.placement)),
        ("CPU accounting", ", ".join(f"{tier} by {how}" for tier, how in (m.cpu_accounting or {}).items()) or "-"),
        ("Cost", COSTING),
        ("Redis", f"{versions.get('redis_server', '?')}, " + ("embedded" if m.redis and m.redis.embedded else "external")
         + f", AOF {m.redis.aof if m.redis else '?'}"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("Seeds", ", ".join(f"{k} {v}" for k, v in m.seeds.to_dict().items()) if m.seeds else ""),
        ("Recording", RECORDING),
        ("Comparison", method(run_settings(run))),
        ("Rules", RULES),
    ]
    return rows
