"""A sweep's report: the decision map (a plot and a sentence per ratio, a row per point) as report.html, report.md
and decision_map.json at the top of the run folder, and each point's own report in its folder."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from analysis.reports.facts import capacity_search_text, facts
from analysis.reports.map_plots import map_plots
from analysis.reports.markdown import markdown_table
from analysis.reports.page import figure, page_top, table
from analysis.reports.plots import Plot
from analysis.reports.write import write_report
from analysis.stats.decision_map import MEASURES, DecisionMap, decision_map, interval_text, parameter_text, point_runs
from analysis.stats.load import Run
from foundation.format import (
    DECISION_MAP_FILE,
    PLOTS_DIR,
    POINTS_DIR,
    REPORT_HTML_FILE,
    REPORT_MD_FILE,
)


def point_rows(dmap: DecisionMap, linked: set[str]) -> list[dict[str, str]]:
    """A row per point: its parameters, status, and each ratio with its interval and its verdict for queued."""
    rows = []
    for point in dmap.points:
        row = {"point": point.id}
        row |= {name.replace("_", " "): parameter_text(name, point.values.get(name, float("nan")))
                for name, _ in dmap.parameters}
        row["status"] = point.status
        for measure in MEASURES:
            row[measure.title] = f"{point.ratios[measure.key].text()} — {point.ratios[measure.key].verdict_text(measure)}"
        row["report"] = f"{POINTS_DIR}/{point.id}/{REPORT_HTML_FILE}" if point.id in linked else "-"
        rows.append(row)
    return rows


def sweep_facts(run: Run) -> list[tuple[str, str]]:
    """How it was measured: the run's facts, with the sweep and its resumes first."""
    sweep = run.record.experiment.sweep
    rows = [("Sweep", "; ".join(f"{name.replace('_', ' ')}: {', '.join(parameter_text(name, v) for v in values)}"
                                for name, values in sweep.items())
             + f" — {len(run.record.points)} points, each a complete comparison in "
               f"{POINTS_DIR}/<point>/ with its own report")]
    rows.append(("Resumed", "; ".join(f"{r.at} (git {r.git.sha[:10]}), redone: {', '.join(r.redone) or 'nothing'}"
                                      for r in run.record.resumes)
                 or "no: the sweep ran uninterrupted"))
    return rows + [(k, v) for k, v in facts(run) if k not in ("Capacity search",)] + [
        ("Capacity search", _search_text(run))]


def _search_text(run: Run) -> str:
    search = run.record.experiment.capacity
    ended = next((p.capacity_searches for p in run.record.points if p.capacity_searches), None)
    return capacity_search_text(search, ended, per_design=False) + (", per design and point" if search else "")


def notes(run: Run, dmap: DecisionMap) -> list[str]:
    found = []
    if run.incomplete_reason:
        found.append(f"This sweep is INCOMPLETE ({run.incomplete_reason}): points not finished are shown without "
                     "figures; `offpath bench <experiment> --resume <run>` finishes them.")
    unfinished = [p.id for p in dmap.points if p.status != "complete"]
    if unfinished:
        found.append(f"Points not finished: {', '.join(unfinished)}.")
    return found


def to_markdown(run: Run, dmap: DecisionMap, plots: list[Plot], linked: set[str]) -> str:
    parts = [f"# offpath — sweep {run.id}", ""]
    parts += [f"**{dmap.sentences[m.key]}**" + "  " for m in MEASURES if m.key in dmap.sentences] + [""]
    parts += [f"> {note}" for note in notes(run, dmap)] + [""]
    parts += ["## Decision map", ""]
    for plot in plots:
        parts += [f"![{plot.title}]({PLOTS_DIR}/{plot.png.name})", "", f"{plot.caption} ([SVG]({PLOTS_DIR}/"
                  f"{plot.svg.name}))", ""]
    parts += ["## Per point (queued / inline, interval — the verdict for queued)", "",
              markdown_table(point_rows(dmap, linked)), "", f"<sub>{interval_text()}</sub>", ""]
    parts += ["## How it was measured", ""] + [f"- **{k}**: {v}" for k, v in sweep_facts(run)] + [""]
    return "\n".join(parts)


def to_html(run: Run, dmap: DecisionMap, plots: list[Plot], linked: set[str]) -> str:
    sentences = "".join(f"<li>{escape(dmap.sentences[m.key])}</li>" for m in MEASURES if m.key in dmap.sentences)
    note_html = "".join(f"<div class='note'>{escape(n)}</div>" for n in notes(run, dmap))
    rows = point_rows(dmap, linked)
    links = {row["point"]: row.pop("report") for row in rows}
    for row in rows:  # a ratio's cell breaks only before the side it resolves to, never inside its interval
        row |= {m.title: row[m.title].replace(" ", "\u00a0").replace("\u00a0—\u00a0", " — ") for m in MEASURES}
    body = table(rows, wrap=frozenset(m.title for m in MEASURES))
    for point, href in links.items():
        if href != "-":
            body = body.replace(f">{escape(point)}</td>", f"><a href='{escape(href)}'>{escape(point)}</a></td>", 1)
    fact_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in sweep_facts(run))
    return f"""{page_top(f"offpath — sweep {run.id}", "offpath sweep report", run.id, run.record)}
<div class="headline"><ul>{sentences}</ul></div>
{note_html}
<h2>Decision map</h2>
{"".join(figure(p) for p in plots) or "<p class='sub'>Nothing to map yet.</p>"}
<h2>Per point <span class="sub">(queued / inline, interval — the verdict for queued)</span></h2>
{body}
<p class="method">{escape(interval_text())}</p>
<h2>How it was measured</h2>
<dl>{fact_html}</dl>
</main></body>
</html>
"""


def render_sweep(run: Run) -> Path:
    """Each measured point's report in its folder, then the map at the top; returns the top report.html's path."""
    linked = set()
    for record, point in point_runs(run):
        if point.cells:
            write_report(point)
            linked.add(record.id)
    dmap = decision_map(run)
    plots = map_plots(dmap, run.dir / PLOTS_DIR)
    tmp = run.dir / (DECISION_MAP_FILE + ".tmp")
    tmp.write_text(json.dumps(dmap.to_dict(), indent=2) + "\n")
    tmp.replace(run.dir / DECISION_MAP_FILE)
    (run.dir / REPORT_MD_FILE).write_text(to_markdown(run, dmap, plots, linked))
    html_path = run.dir / REPORT_HTML_FILE
    html_path.write_text(to_html(run, dmap, plots, linked))
    return html_path
