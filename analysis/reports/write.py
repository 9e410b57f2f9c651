"""Writing a run's report files: report.html, report.md and comparison.json in its folder, plots beside them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from analysis.reports.report import build
from analysis.reports.report_html import to_html
from analysis.reports.report_markdown import to_markdown
from analysis.stats.bracket import Bracket
from analysis.stats.compare import write_comparison
from analysis.stats.load import Run
from foundation.format import COMPARISON_FILE, PLOTS_DIR, REPORT_HTML_FILE, REPORT_MD_FILE


def write_report(run: Run) -> Path:
    """The report files of one run (or one point of a sweep) in its folder; returns the HTML path."""
    report = build(run, run.dir / PLOTS_DIR)
    write_comparison(report.comparison, run.dir / COMPARISON_FILE, extra={
        "headline": report.headline,
        "capacity": {"slo_p99_ms": report.capacity.slo_p99_ms, "error_budget": report.capacity.error_budget,
                     "completion_slo_p99_ms": report.capacity.slo.completion_ms,
                     "designs": {d: asdict(c) | {"capacity_per_s": c.capacity_per_s, "bound_by": list(c.bound_by),
                                                 "bracket": _bracket(c.bracket())}
                                 for d, c in report.capacity.designs.items()},
                     "missing": list(report.capacity.missing)},
        "notes": report.notes,
        "cost": report.costs,
        "commands": report.commands,
    })
    (run.dir / REPORT_MD_FILE).write_text(to_markdown(report))
    html_path = run.dir / REPORT_HTML_FILE
    html_path.write_text(to_html(report))
    return html_path


def _bracket(bracket: Bracket) -> dict[str, float | None]:
    return {"held_per_s": bracket.held, "broke_per_s": bracket.broke, "precision_pct": bracket.precision_pct}
