"""A run's report as one HTML page: headline, deltas, capacity, cost, plots, how it was measured."""

from __future__ import annotations

from html import escape

from analysis.reports.page import figure, page_top, table
from analysis.reports.report import Report
from analysis.reports.tables import (
    COMMANDS_NOTE,
    FIXED_NOTE,
    OUTCOME_NOTE,
    capacity_ratio_text,
    capacity_rows,
    command_rows,
    cost_rows,
    fixed_cost_rows,
    phase_rows,
    step_rows,
)
from analysis.stats.compare import LABELS, format_delta, format_value, level_text, row_label, verdict_text
from analysis.stats.cost import COST_SCOPE


def delta_table(report: Report) -> str:
    comparison = report.comparison
    rows, classes = [], []
    for row in comparison.rows:
        delta, ci = format_delta(row)
        rows.append({"phase": row.group, "endpoint": row_label(row, comparison.names), "metric": LABELS[row.metric],
                     comparison.a_label: format_value(row.metric, row.a),
                     comparison.b_label: format_value(row.metric, row.b), "delta": delta,
                     f"{level_text(comparison.confidence)} CI": ci,
                     "verdict": verdict_text(row), "n (A / B)": f"{row.n_a:,} / {row.n_b:,}"})
        css = {"better": "better", "worse": "worse", "equivalent": "equivalent"}.get(row.verdict, "same")
        classes.append({"verdict": css, "delta": css})
    if not rows:
        return "<p class='note'>Nothing to compare: " + escape("; ".join(comparison.missing) or "no data") + "</p>"
    return table(rows, classes)


def cost_section(report: Report) -> str:
    """CPU per campaign per tier: the steady phases' table and stacked bars, the capacity steps folded away; then the
    Redis commands per campaign."""
    steady, steps = cost_rows(report.costs), cost_rows(report.costs, kinds=("capacity",))
    commands = command_rows(report.commands)
    fixed = fixed_cost_rows(report.fixed, report.costs)
    if not steady and not steps and not commands:
        return ""
    html = (f"<h2>Cost per campaign <span class='sub'>(CPU ms per campaign served; {escape(COST_SCOPE)} charged, "
            "repetitions summed)</span></h2>")
    html += table(steady) if steady else ""
    html += "".join(figure(p) for p in report.cost_plots)
    if fixed:
        html += f"<h3>Fixed and per-campaign CPU</h3><p class='sub'>{escape(FIXED_NOTE)}</p>" + table(fixed)
    if steps:
        html += "<details><summary class='sub'>every capacity step</summary>" + table(steps) + "</details>"
    if commands:
        html += f"<h3>Redis commands per campaign</h3><p class='sub'>{escape(COMMANDS_NOTE)}</p>" + table(commands)
    return html


def claim_section(report: Report) -> str:
    if report.claim is None:
        return ""
    source, rows = report.claim
    return f"<h2>Against {escape(source)}</h2>" + table([r.as_dict() for r in rows])


def outcome_section(report: Report) -> str:
    if not report.outcomes:
        return ""
    return (f"<h2>What the outcome took</h2><p class='sub'>{escape(OUTCOME_NOTE)}</p>" + table(report.outcomes))


def to_html(report: Report) -> str:
    run = report.run
    notes = "".join(f"<div class='note'>{escape(n)}</div>" for n in report.notes)
    figures = "".join(figure(p) for p in report.plots)
    capacity_section = ""
    if report.capacity.designs:
        ratio = capacity_ratio_text(report.capacity)
        capacity_section = ("<h2>Capacity</h2>" + table(capacity_rows(report.capacity)) +
                            (f"<p class='sub'>{escape(ratio)}</p>" if ratio else "") +
                            "<details><summary class='sub'>every step</summary>" + table(step_rows(report.capacity)) +
                            "</details>")
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.facts)
    return f"""{page_top(f"offpath — {run.id}", "offpath report", run.id, run.record)}
<p class="headline">{escape(report.headline)}</p>
{notes}
{claim_section(report)}
<h2>{escape(report.comparison.title)}</h2>
{delta_table(report)}
<p class="method">{escape(report.comparison.method)}</p>
{capacity_section}
{outcome_section(report)}
{cost_section(report)}
<h2>Plots</h2>
{figures or "<p class='sub'>No plottable data in this run.</p>"}
<h2>Per design and phase <span class="sub">(repetitions merged; counts next to every percentile)</span></h2>
{table(phase_rows(report.phases))}
<h2>How it was measured</h2>
<dl>{facts}</dl>
</main></body>
</html>
"""
