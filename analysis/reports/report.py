"""The run report's content: headline, deltas, capacity, cost, plots, notes and how it was measured, computed once
from the run's files (report_html.py and report_markdown.py render it; write.py writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.reports.facts import facts as measured_facts
from analysis.reports.plots import Plot, cost_plots, plots_for_run
from analysis.reports.tables import outcome_rows
from analysis.stats.capacity import Capacity, capacity
from analysis.stats.claim import ClaimRow, claim_rows
from analysis.stats.commands import phase_commands
from analysis.stats.compare import Comparison
from analysis.stats.cost import ACCOUNTING_TOLERANCE, OTHERS_NOTICE_SHARE, phase_costs
from analysis.stats.fixed_cost import FixedCost, fixed_costs
from analysis.stats.headline import equal_load_comparison, headline
from analysis.stats.load import Run
from analysis.stats.sequential import looks_text
from analysis.stats.summary import (
    DRIVER_LAG_P99_LIMIT_US,
    phase_table,
    summarize_run,
)
from foundation.format import OUTCOME_SEEN, CellSummary


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
    costs: list[dict[str, Any]] = field(default_factory=list)  # analysis/stats/cost.py's phase_costs
    cost_plots: list[Plot] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)  # analysis/stats/commands.py's phase_commands
    claim: tuple[str, list[ClaimRow]] | None = None  # the experiment's [claim] beside this run's figures
    outcomes: list[dict[str, str]] = field(default_factory=list)  # reports/tables.py's outcome_rows
    fixed: list[FixedCost] = field(default_factory=list)  # analysis/stats/fixed_cost.py: fixed and per-campaign CPU


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
    looks = looks_text(run.record.sequential)
    if looks:
        notes.append(f"Repetitions added until the headline rows were decided: {looks}.")
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
    notes += reach_notes(run)
    costs = phase_costs(run)
    return Report(run=run, headline=headline(cap, comparison, run), comparison=comparison, capacity=cap,
                  phases=phase_table(run), summaries=summaries, plots=plots_for_run(run, cap, plots_dir), notes=notes,
                  facts=measured_facts(run), costs=costs, cost_plots=cost_plots(costs, plots_dir),
                  commands=phase_commands(run), fixed=fixed_costs(run, cap),
                  claim=claim_rows(run, cap, comparison), outcomes=outcome_rows(run))


def reach_notes(run: Run) -> list[str]:
    """What offpath could not measure of a design, and where a figure comes from when not from the service itself:
    a deployment it did not start (no CPU of its tiers), a broker it did not start, a backlog read from the clients'
    side (no queue adapter), an outcome known only as the clients saw it (no timestamps: its resolution)."""
    notes = []
    layout = run.record.experiment.layout
    poll_s, mode = layout.get("poll_interval_s", 1.0), layout.get("poll") or "interval"
    resolution = "exact (a held GET answers when the state is final)" if mode == "wait" else (
        f"the polling interval, {poll_s:g} s" if mode == "interval" else "the service's Retry-After")
    for name, facts in run.record.experiment.declarations.items():
        if not facts.started_by_offpath:
            notes.append(f"{name} is a deployment already running: offpath started none of its processes, so the "
                         "CPU of its tiers is not measured (no cost figures).")
        if facts.broker_elsewhere:
            notes.append(f"{name}'s queue lives on a broker offpath did not start ({facts.broker_elsewhere}): its CPU "
                         "is not measured.")
        cells = run.select(design=name)
        if facts.acknowledges and any(c.queue_source == "client" for c in cells):
            notes.append(f"{name} has no queue adapter: its backlog is what its clients saw acknowledged minus what "
                         "they saw final, late by up to the polling interval.")
        if facts.acknowledges and any(c.completion_log == OUTCOME_SEEN for c in cells):
            notes.append(f"{name}'s completion is what its clients saw (from the intended send to the final state "
                         f"first seen; resolution: {resolution}): its answers carry no timestamps of the service's.")
    return notes


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


