"""HTML pieces every report page shares: one self-contained page, CSS inline, plots embedded as base64 PNG, works
offline."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING

from foundation.manifest_format import RunRecord

if TYPE_CHECKING:
    from analysis.reports.plots import Plot

CSS = """
:root { --ink: #1d2430; --muted: #5b6575; --line: #dde2ea; --better: #1a7f37; --worse: #c62828; --bg: #ffffff; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Helvetica, Arial, sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 28px 32px 60px; }
h1 { font-size: 1.35rem; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 1.1rem; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); font-size: 0.85rem; }
.headline { font-size: 1.3rem; font-weight: 600; margin: 18px 0 14px; padding: 16px 20px; border-left: 5px solid #e6550d;
            background: #fff6f0; }
.note { background: #fff8e1; border: 1px solid #f0d98a; padding: 8px 12px; margin: 6px 0; font-size: 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; margin: 6px 0 10px; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right; }
td { white-space: nowrap; }
td.wrap { white-space: normal; }
@media (max-width: 900px) { td.wrap { min-width: 10em; } }
th { background: #f4f6f9; font-weight: 600; vertical-align: bottom; }
th:first-child, td:first-child, td.left, th.left { text-align: left; }
td.better { color: var(--better); font-weight: 600; }
td.worse { color: var(--worse); font-weight: 600; }
td.same { color: var(--muted); }
td.equivalent { font-style: italic; }
.method { color: var(--muted); font-size: 0.8rem; max-width: 900px; }
figure { margin: 18px 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 4px; }
dl { display: grid; grid-template-columns: 210px 1fr; gap: 6px 16px; font-size: 0.88rem; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


# Columns of words, left-aligned and free to break lines: a desktop window shows a table whole by wrapping them (and
# the headers) rather than cutting its last columns off; a narrow one scrolls the table in its box (.scroll), the
# wrapped cells kept wide enough to read (the media query) instead of stacked a word a line.
TEXT_COLUMNS = {"phase", "design", "metric", "verdict", "endpoint", "backlog", "within SLO", "machine check", "bound by",
                "time to recover", "measured", "search"}


def page_top(title: str, heading: str, run_id: str, record: RunRecord) -> str:
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
<div class="sub">run {escape(run_id)} · {escape(record.started_at or "")} ·
status {escape(str(record.status))}</div>"""


def table(rows: list[dict[str, str]], classes: list[dict[str, str]] | None = None,
          wrap: frozenset[str] = frozenset()) -> str:
    """Rows of display strings as a table in a box that scrolls sideways; the columns in `wrap` (numbers with words,
    right-aligned) may break lines like the text columns."""
    if not rows:
        return "<p class='sub'>none</p>"
    align = {h: "left wrap" if h in TEXT_COLUMNS else "wrap" if h in wrap else "" for h in rows[0]}
    head = "".join(f"<th class='{align[h]}'>{escape(h)}</th>" for h in rows[0])
    body = []
    for number, row in enumerate(rows):
        row_classes = classes[number] if classes else {}
        cells = "".join(f"<td class='{align.get(k, '')} {row_classes.get(k, '')}'>{escape(str(v))}</td>"
                        for k, v in row.items())
        body.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def image(plot_png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(plot_png).decode("ascii")


def figure(plot: Plot) -> str:
    return (f"<figure><img src='{image(plot.png.read_bytes())}' alt='{escape(plot.title)}'>"
            f"<figcaption><strong>{escape(plot.title)}.</strong> {escape(plot.caption)} "
            f"(<a href='plots/{escape(plot.svg.name)}'>SVG</a>)</figcaption></figure>")
