"""`offpath report`: the report a results folder calls for — a chaos run's fault table, a sweep's decision map (and each
of its points' own report), or a run's report."""

from __future__ import annotations

from pathlib import Path

from analysis.reports.chaos_report import render_chaos
from analysis.reports.soak_report import render_soak
from analysis.reports.sweep_report import render_sweep
from analysis.reports.write import write_report
from analysis.stats.decision_map import is_sweep
from analysis.stats.load import load_run
from foundation.format import CHAOS_FILE, SOAK_KIND


def render(run_dir: Path | str, *, allow_incomplete: bool = False) -> Path:
    """Write run_dir/report.html (self-contained), run_dir/report.md, run_dir/comparison.json and run_dir/plots/;
    returns the HTML path. A chaos run's folder gets the chaos report: its figures are the fault table; a sweep's
    gets the decision map, and each of its points its own report; a soak's, its slopes and drift (soak.json)."""
    if (Path(run_dir) / CHAOS_FILE).is_file():
        return render_chaos(run_dir)
    run = load_run(run_dir, allow_incomplete=allow_incomplete)
    if is_sweep(run):
        return render_sweep(run)
    if run.record.kind == SOAK_KIND:
        return render_soak(run)
    return write_report(run)
