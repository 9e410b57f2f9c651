"""The run report: headline, deltas, capacity, cost, plots, how it was measured — as report.html, report.md and
comparison.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.bootstrap import METHOD
from analysis.capacity import PENDING_LIMIT, Capacity, capacity, equal_load_comparison, headline
from analysis.chaos_report import render_chaos
from analysis.claim import ClaimRow, claim_rows
from analysis.compare import Comparison, comparison_markdown, write_comparison
from analysis.cost import ACCOUNTING_TOLERANCE, COST_SCOPE, OTHERS_NOTICE_SHARE, phase_costs
from analysis.load import Run, load_run
from analysis.page import to_html
from analysis.plots import Plot, cost_plots, plots_for_run
from analysis.summary import (
    BACKLOG_GROWTH_FLOOR_PER_S,
    BACKLOG_GROWTH_FRACTION,
    BACKLOG_SIGNIFICANCE_SE,
    DRIVER_LAG_P99_LIMIT_US,
    phase_table,
    summarize_run,
)
from analysis.sweep import is_sweep
from analysis.tables import capacity_rows, cost_rows, phase_rows, step_rows
from results.format import (
    CHAOS_FILE,
    COMPARISON_FILE,
    HIGHEST_US,
    LOWEST_US,
    PLOTS_DIR,
    REPORT_HTML_FILE,
    REPORT_MD_FILE,
    SIGNIFICANT_DIGITS,
    TIERS,
    CellSummary,
)

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


@dataclass
class Report:
    run: Run
    headline: str
    comparison: Comparison
    capacity: Capacity
    phases: pd.DataFrame
    summaries: list[CellSummary]
    plots: list[Plot]
    notes: list[str]
    facts: list[tuple[str, str]]
    costs: list[dict[str, Any]] = field(default_factory=list)  # analysis/cost.py's phase_costs
    cost_plots: list[Plot] = field(default_factory=list)
    claim: tuple[str, list[ClaimRow]] | None = None  # the experiment's [claim] beside this run's figures


def build(run: Run, plots_dir: Path) -> Report:
    """Everything the report shows, computed once from the run's files."""
    cap = capacity(run)
    comparison = equal_load_comparison(run, cap)
    summaries = summarize_run(run)
    notes = []
    if run.incomplete_reason:
        notes.append(f"This run is INCOMPLETE ({run.incomplete_reason}): the figures cover only the cells it finished.")
    missing_designs = [d for d in run.designs if not run.select(design=d)]
    for design in missing_designs:
        notes.append(f"No {design} cells in this run: the {design} side of every comparison is missing.")
    notes += [f"Not compared: {m}" for m in comparison.missing if not missing_designs]
    notes += [f"Capacity: {m}" for m in cap.missing if not missing_designs]
    lagged = [s.cell for s in summaries if s.driver_bottleneck]
    if lagged:
        notes.append(f"The load generator fell behind (send lag P99 > {DRIVER_LAG_P99_LIMIT_US / 1000:g} ms) in "
                     f"{', '.join(lagged)}: those latencies include the generator's own delay.")
    empty = [c.id for c in run.cells if not c.dir.is_dir()]
    if empty:
        notes.append(f"Cells in the manifest without files (never written): {', '.join(empty)}.")
    notes += cost_notes(summaries)
    costs = phase_costs(run)
    return Report(run=run, headline=headline(cap, comparison, run), comparison=comparison, capacity=cap,
                  phases=phase_table(run), summaries=summaries, plots=plots_for_run(run, cap, plots_dir), notes=notes,
                  facts=facts(run), costs=costs, cost_plots=cost_plots(costs, plots_dir),
                  claim=claim_rows(run, cap, comparison))


def cost_notes(summaries: list[CellSummary]) -> list[str]:
    """Say so when the CPU accounting does not add up, or when something beside the tiers loaded the machine."""
    notes = []
    gaps = [f"{s.cell} ({s.cost.unaccounted_share:+.0%})" for s in summaries
            if s.cost is not None and s.cost.accounting_gap and s.cost.unaccounted_share is not None]
    if gaps:
        notes.append(f"CPU accounting: the machine's CPU and the tiers' plus other processes' differ by more than "
                     f"{ACCOUNTING_TOLERANCE:.0%} (share of the machine's CPU unaccounted) in {', '.join(gaps)}: "
                     "some work went uncounted or was counted twice; read those cells' per-tier costs with care.")
    busy = [f"{s.cell} ({s.cost.others_share:.0%})" for s in summaries
            if s.cost is not None and s.cost.others_share is not None and s.cost.others_share > OTHERS_NOTICE_SHARE]
    if busy:
        notes.append(f"Processes outside the tiers used more than {OTHERS_NOTICE_SHARE:.0%} of the machine's CPU in "
                     f"{', '.join(busy)}: another load competed for the CPUs and may have slowed what was measured.")
    without = [s.cell for s in summaries if s.cost is None]
    if without and len(without) < len(summaries):
        notes.append(f"No CPU accounting (cpu.csv) in {', '.join(without)}: those cells have no cost figures.")
    return notes


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


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "\\|") for h in header) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    """report.md: small enough for a CI job summary (plots are linked, not embedded)."""
    parts = [f"# offpath — run {report.run.id}", "", f"**{report.headline}**", ""]
    parts += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    if report.claim is not None:
        source, rows = report.claim
        parts += [f"## Against {source}", "", markdown_table([r.as_dict() for r in rows]), ""]
    parts += [f"## {report.comparison.title}", "", comparison_markdown(report.comparison), "",
              f"<sub>{report.comparison.method}</sub>", ""]
    if report.capacity.designs:
        parts += ["## Capacity", "", markdown_table(capacity_rows(report.capacity)), "",
                  markdown_table(step_rows(report.capacity)), ""]
    parts += cost_markdown(report)
    parts += ["## Per design and phase (repetitions merged)", "", markdown_table(phase_rows(report.phases)), ""]
    if report.plots:
        parts += ["## Plots", ""] + [f"- [{p.title}]({PLOTS_DIR}/{p.png.name}) ([SVG]({PLOTS_DIR}/{p.svg.name})) — "
                                     f"{p.caption}" for p in report.plots] + [""]
    parts += ["## How it was measured", ""] + [f"- **{k}**: {v}" for k, v in report.facts] + [""]
    return "\n".join(parts)


def cost_markdown(report: Report) -> list[str]:
    """The cost section: the steady phases' table, the bar, and the capacity steps' table when there are any."""
    steady, steps = cost_rows(report.costs), cost_rows(report.costs, kinds=("capacity",))
    if not steady and not steps:
        return []
    parts = [f"## Cost per campaign (CPU ms per campaign served; {COST_SCOPE} charged)", ""]
    if steady:
        parts += [markdown_table(steady), ""]
    parts += [f"[{p.title}]({PLOTS_DIR}/{p.png.name}) — {p.caption}" for p in report.cost_plots]
    parts += [""] if report.cost_plots else []
    if steps:
        parts += ["Capacity steps:", "", markdown_table(steps), ""]
    return parts


def render(run_dir: Path | str, *, allow_incomplete: bool = False) -> Path:
    """Write run_dir/report.html (self-contained), run_dir/report.md, run_dir/comparison.json and run_dir/plots/;
    returns the HTML path. A chaos run's folder gets the chaos report: its figures are the fault table; a sweep's
    gets the decision map, and each of its points its own report."""
    if (Path(run_dir) / CHAOS_FILE).is_file():
        return render_chaos(run_dir)
    run = load_run(run_dir, allow_incomplete=allow_incomplete)
    if is_sweep(run):
        from analysis.sweep_report import render_sweep  # it renders each point with write_report below

        return render_sweep(run)
    return write_report(run)


def write_report(run: Run) -> Path:
    """The report files of one run (or one point of a sweep) in its folder; returns the HTML path."""
    report = build(run, run.dir / PLOTS_DIR)
    write_comparison(report.comparison, run.dir / COMPARISON_FILE, extra={
        "headline": report.headline,
        "capacity": {"slo_p99_ms": report.capacity.slo_p99_ms, "error_budget": report.capacity.error_budget,
                     "completion_slo_p99_ms": report.capacity.slo.completion_ms,
                     "designs": {d: asdict(c) | {"capacity_per_s": c.capacity_per_s, "bound_by": list(c.bound_by)}
                                 for d, c in report.capacity.designs.items()},
                     "missing": list(report.capacity.missing)},
        "notes": report.notes,
        "cost": report.costs,
    })
    (run.dir / REPORT_MD_FILE).write_text(to_markdown(report))
    html_path = run.dir / REPORT_HTML_FILE
    html_path.write_text(to_html(report))
    return html_path
