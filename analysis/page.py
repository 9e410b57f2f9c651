"""The report as one self-contained HTML page: CSS inline, plots embedded as base64 PNG, works offline."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING

from analysis.compare import LABELS, format_delta, format_value, row_label
from analysis.cost import COST_SCOPE
from analysis.tables import capacity_rows, cost_rows, phase_rows, step_rows

if TYPE_CHECKING:
    from analysis.plots import Plot
    from analysis.report import Report

CSS = """
:root { --ink: #1d2430; --muted: #5b6575; --line: #dde2ea; --better: #1a7f37; --worse: #c62828; --bg: #ffffff; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Helvetica, Arial, sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 32px 60px; }
h1 { font-size: 1.35rem; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 1.1rem; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); font-size: 0.85rem; }
.headline { font-size: 1.3rem; font-weight: 600; margin: 18px 0 14px; padding: 16px 20px; border-left: 5px solid #e6550d;
            background: #fff6f0; }
.note { background: #fff8e1; border: 1px solid #f0d98a; padding: 8px 12px; margin: 6px 0; font-size: 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; margin: 6px 0 10px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f4f6f9; font-weight: 600; }
th:first-child, td:first-child, td.left, th.left { text-align: left; }
td.better { color: var(--better); font-weight: 600; }
td.worse { color: var(--worse); font-weight: 600; }
td.same { color: var(--muted); }
.method { color: var(--muted); font-size: 0.8rem; max-width: 900px; }
figure { margin: 18px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 4px; }
dl { display: grid; grid-template-columns: 210px 1fr; gap: 6px 16px; font-size: 0.88rem; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


TEXT_COLUMNS = {"phase", "design", "metric", "verdict", "endpoint", "backlog", "within SLO", "machine check", "bound by"}


def page_top(title: str, heading: str, run_id: str, manifest: dict) -> str:
    """A report page's head and first lines: title, style, heading, and the run's id, start and status."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title>
<style>{CSS}</style>
</head>
<body><main>
<h1>{escape(heading)}</h1>
<div class="sub">run {escape(run_id)} · {escape(str(manifest.get("started_at") or ""))} ·
status {escape(str(manifest.get("status")))}</div>"""


def table(rows: list[dict[str, str]], classes: list[dict[str, str]] | None = None) -> str:
    if not rows:
        return "<p class='sub'>none</p>"
    align = {h: "left" if h in TEXT_COLUMNS else "" for h in rows[0]}
    head = "".join(f"<th class='{align[h]}'>{escape(h)}</th>" for h in rows[0])
    body = []
    for number, row in enumerate(rows):
        row_classes = classes[number] if classes else {}
        cells = "".join(f"<td class='{align.get(k, '')} {row_classes.get(k, '')}'>{escape(str(v))}</td>"
                        for k, v in row.items())
        body.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def delta_table(report: Report) -> str:
    comparison = report.comparison
    rows, classes = [], []
    for row in comparison.rows:
        delta, ci = format_delta(row)
        rows.append({"phase": row.group, "endpoint": row_label(row), "metric": LABELS[row.metric],
                     comparison.a_label: format_value(row.metric, row.a),
                     comparison.b_label: format_value(row.metric, row.b), "delta": delta, "95% CI": ci,
                     "verdict": row.verdict + (f" ({row.note})" if row.note else ""),
                     "n (A / B)": f"{row.n_a:,} / {row.n_b:,}"})
        css = {"better": "better", "worse": "worse"}.get(row.verdict, "same")
        classes.append({"verdict": css, "delta": css})
    if not rows:
        return "<p class='note'>Nothing to compare: " + escape("; ".join(comparison.missing) or "no data") + "</p>"
    return table(rows, classes)


def image(plot_png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(plot_png).decode("ascii")


def figure(plot: Plot) -> str:
    return (f"<figure><img src='{image(plot.png.read_bytes())}' alt='{escape(plot.title)}'>"
            f"<figcaption><strong>{escape(plot.title)}.</strong> {escape(plot.caption)} "
            f"(<a href='plots/{escape(plot.svg.name)}'>SVG</a>)</figcaption></figure>")


def cost_section(report: Report) -> str:
    """CPU per campaign per tier: the steady phases' table and stacked bars, the capacity steps folded away."""
    steady, steps = cost_rows(report.costs), cost_rows(report.costs, kinds=("capacity",))
    if not steady and not steps:
        return ""
    html = (f"<h2>Cost per campaign <span class='sub'>(CPU ms per campaign served; {escape(COST_SCOPE)} charged, "
            "repetitions summed)</span></h2>")
    html += table(steady) if steady else ""
    html += "".join(figure(p) for p in report.cost_plots)
    if steps:
        html += "<details><summary class='sub'>every capacity step</summary>" + table(steps) + "</details>"
    return html


def claim_section(report: Report) -> str:
    if report.claim is None:
        return ""
    source, rows = report.claim
    return f"<h2>Against {escape(source)}</h2>" + table([r.as_dict() for r in rows])


def to_html(report: Report) -> str:
    run = report.run
    notes = "".join(f"<div class='note'>{escape(n)}</div>" for n in report.notes)
    figures = "".join(figure(p) for p in report.plots)
    capacity_section = ""
    if report.capacity.designs:
        capacity_section = ("<h2>Capacity</h2>" + table(capacity_rows(report.capacity)) +
                            "<details><summary class='sub'>every step</summary>" + table(step_rows(report.capacity)) +
                            "</details>")
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.facts)
    return f"""{page_top(f"offpath — {run.id}", "offpath report", run.id, run.manifest)}
<p class="headline">{escape(report.headline)}</p>
{notes}
{claim_section(report)}
<h2>{escape(report.comparison.title)}</h2>
{delta_table(report)}
<p class="method">{escape(report.comparison.method)}</p>
{capacity_section}
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
