"""A run's report as Markdown (report.md): small enough for a CI job summary, plots linked, not embedded."""

from __future__ import annotations

from analysis.reports.markdown import markdown_table
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
from analysis.stats.compare import comparison_markdown
from analysis.stats.cost import COST_SCOPE
from foundation.format import PLOTS_DIR


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
        ratio = capacity_ratio_text(report.capacity)
        parts += ["## Capacity", "", markdown_table(capacity_rows(report.capacity)), ""] + ([ratio, ""] if ratio else [])
        parts += [markdown_table(step_rows(report.capacity)), ""]
    if report.outcomes:
        parts += ["## What the outcome took", "", OUTCOME_NOTE, "", markdown_table(report.outcomes), ""]
    parts += cost_markdown(report)
    parts += ["## Per design and phase (repetitions merged)", "", markdown_table(phase_rows(report.phases)), ""]
    if report.plots:
        parts += ["## Plots", ""] + [f"- [{p.title}]({PLOTS_DIR}/{p.png.name}) ([SVG]({PLOTS_DIR}/{p.svg.name})) — "
                                     f"{p.caption}" for p in report.plots] + [""]
    parts += ["## How it was measured", ""] + [f"- **{k}**: {v}" for k, v in report.facts] + [""]
    return "\n".join(parts)


def cost_markdown(report: Report) -> list[str]:
    """The cost section: the steady phases' CPU table, the bar, the capacity steps' table when there are any, then the
    Redis commands per campaign."""
    steady, steps = cost_rows(report.costs), cost_rows(report.costs, kinds=("capacity",))
    commands = command_rows(report.commands)
    fixed = fixed_cost_rows(report.fixed, report.costs)
    if not steady and not steps and not commands:
        return []
    parts = [f"## Cost per campaign (CPU ms per campaign served; {COST_SCOPE} charged)", ""]
    if steady:
        parts += [markdown_table(steady), ""]
    parts += [f"[{p.title}]({PLOTS_DIR}/{p.png.name}) — {p.caption}" for p in report.cost_plots]
    parts += [""] if report.cost_plots else []
    if fixed:
        parts += ["Fixed and per-campaign CPU:", "", FIXED_NOTE, "", markdown_table(fixed), ""]
    if steps:
        parts += ["Capacity steps:", "", markdown_table(steps), ""]
    if commands:
        parts += ["Redis commands per campaign:", "", COMMANDS_NOTE, "", markdown_table(commands), ""]
    return parts
