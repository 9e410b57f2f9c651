"""A soak's report (report.md, report.html, soak.json and plots/ in its run folder): per design, the memory of every
process and of Redis with its slope, what a day at that slope would take and whether it would use up the machine's
available memory, the keys Redis held at the end by kind, the latency per bin and its drift."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

from analysis.reports.markdown import markdown_table
from analysis.reports.page import figure, page_top, table
from analysis.reports.plots import Plot
from analysis.reports.soak_plots import soak_plots
from analysis.stats.compare import level_text
from analysis.stats.key_kinds import HORIZON_S, KeyGrowth
from analysis.stats.load import Run
from analysis.stats.soak import DesignSoak, Drift, Growth, Soak, soak_of
from analysis.stats.trend import Trend
from foundation.format import PLOTS_DIR, REPORT_HTML_FILE, REPORT_MD_FILE, SOAK_FILE, label

MIB = 2**20
GIB = 2**30


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / GIB:,.2f} GiB" if abs(value) >= GIB else f"{value / MIB:,.1f} MiB"


def _per_hour(trend: Trend | None, unit: float = MIB, name: str = "MiB", digits: int = 2) -> str:
    if trend is None:
        return "-"
    scale = 3600 / unit
    return (f"{trend.slope_per_s * scale:+,.{digits}f} {name}/h [{trend.low_per_s * scale:+,.{digits}f}, "
            f"{trend.high_per_s * scale:+,.{digits}f}]")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds < 3 * 24 * 3600 else f"{seconds / 86400:,.1f} days"


def _clock(seconds: float) -> str:
    """Seconds from the soak's start as minutes:seconds."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


def verdict(growth: Growth) -> str:
    """What the growth means, in a few words."""
    trend = growth.trend
    if trend is None:
        return f"not fitted: in {growth.present:.0%} of the samples (a passing process)"
    left = _size(growth.headroom_bytes)
    ends = growth.exhausts_in_s
    if growth.by_kinds_bytes is not None and trend.growing:
        said = f"by the kinds of key it holds a day adds {_size(growth.by_kinds_bytes)}"
        if growth.flagged:
            return f"GROWS: {said}, more than the {left} available"
        linear = f"; at its slope the {left} available would last {_hours(ends)}, but part of it expires" \
            if ends is not None and ends <= HORIZON_S else f" of the {left} available"
        return f"grows; {said}{linear}"
    if growth.flagged:
        return f"GROWS: would take the {left} available in {_hours(ends or 0)}"
    if trend.growing:
        return f"grows; the {left} available would last {_hours(ends)}" if ends is not None else "grows"
    if trend.high_per_s < 0:
        return "shrinks"
    if math.isinf(trend.low_per_s) or math.isinf(trend.high_per_s):
        # Its residuals run so long one way (a step, a line bending) that fewer than 3 samples are independent
        # (analysis/stats/trend.py): no interval, so neither growth nor its absence is shown.
        return "no trend to tell: it moves in long runs (compare its start and end)"
    return "flat (its interval includes 0)"


def memory_rows(soak: DesignSoak) -> list[dict[str, str]]:
    rows = []
    for growth in (*soak.processes, soak.redis_used, soak.total, *soak.load):
        if growth is None:
            continue
        day = growth.day_bytes
        rows.append({"series": growth.name, "tier": growth.tier + (" (apart)" if growth.tier == "load" else ""),
                     "after warm-up": _size(growth.first_bytes), "end": _size(growth.last_bytes),
                     "slope [95%]": _per_hour(growth.trend),
                     "a day adds": (_size(day) + (" (by kinds of key)" if growth.by_kinds_bytes is not None else ""))
                     if day is not None and growth.trend is not None and growth.trend.growing else "-",
                     "verdict": verdict(growth)})
    return rows


def key_rows(soak: DesignSoak) -> list[dict[str, str]]:
    rows = []
    for kind in soak.keys:
        pattern = kind.pattern
        rows.append({"kind of key": pattern.pattern, "type": pattern.type, "keys": f"{pattern.count:,}",
                     "per campaign": f"{kind.per_campaign:.2f}" if kind.per_campaign is not None else "-",
                     "expiry": kind.expiry,
                     "bytes each": f"{pattern.mean_bytes:,.0f}" if pattern.mean_bytes is not None else "-",
                     "bytes per campaign": f"{kind.bytes_per_campaign:,.0f}" if kind.bytes_per_campaign else "-",
                     "levels off at": _levels(kind)})
    return rows


def _levels(kind: KeyGrowth) -> str:
    if kind.levels_off_at is None:
        return "never" if kind.grows_with_campaigns and kind.pattern.with_ttl == 0 else "-"
    held = kind.levels_off_at * (kind.pattern.mean_bytes or 0)
    return f"~{kind.levels_off_at:,.0f} keys, {_size(held)}"


def bin_rows(soak: DesignSoak, names: dict[str, str]) -> list[dict[str, str]]:
    outcome = {b.index: b for b in soak.outcome_bins}
    request = names.get("request", label("request"))
    rows = []
    for bin_ in soak.request_bins:
        row = {"from": _clock(bin_.start_s), f"{request} n": f"{bin_.count:,}",
               "P50 ms": _ms(bin_.p50_us), "P99 ms": _ms(bin_.p99_us)}
        if soak.outcome_log:
            done = outcome.get(bin_.index)
            row |= {f"{label(soak.outcome_log)} n": f"{done.count:,}" if done else "-",
                    f"{label(soak.outcome_log)} P99 ms": _ms(done.p99_us) if done else "-"}
        rows.append(row)
    return rows


def _ms(value_us: float | None) -> str:
    return f"{value_us / 1000:,.1f}" if value_us is not None else "-"


def drift_text(drift: Drift | None, names: dict[str, str]) -> str:
    if drift is None:
        return ""
    name = names.get(drift.log, label(drift.log))
    if drift.row is None:
        return f"P99 drift of {name}: not judged ({drift.why})."
    row = drift.row
    (a0, a1), (b0, b1) = drift.first_s, drift.last_s
    said = {"worse": "DRIFTED UP beyond its interval", "better": "fell beyond its interval (not a growth)",
            "equivalent": f"no drift: the whole interval lies within ±{row.margin_pct:g}%",
            "undecided": "no drift shown: the interval includes 0"}[row.verdict]
    if row.note:
        said = f"not judged: {row.note}, fewer than 10 values beyond P99 on a side"
    interval = f"{level_text(row.confidence)} {row.ci_low_pct:+.1f}% … {row.ci_high_pct:+.1f}%" \
        if row.ci_low_pct is not None and row.ci_high_pct is not None else "no interval"
    return (f"P99 of {name}, {_clock(a0)}–{_clock(a1)} against {_clock(b0)}–{_clock(b1)}: {_ms(row.a)} → "
            f"{_ms(row.b)} ms, {row.delta_pct or 0:+.1f}% ({interval}; n {row.n_a:,} and {row.n_b:,}): {said}.")


def redis_text(soak: DesignSoak) -> str:
    """What Redis's growth per campaign is made of, by kind of key."""
    per = soak.bytes_per_campaign
    growing = [k for k in soak.keys if k.grows_with_campaigns]
    if per is None or not growing:
        return ""
    held = sum(k.bytes_per_campaign or 0 for k in growing)
    never = [k for k in growing if k.pattern.with_ttl == 0]
    never_bytes = sum(k.bytes_per_campaign or 0 for k in never)
    text = (f"Redis's used memory grew {per:,.0f} bytes per campaign ({soak.campaigns_per_s or 0:,.1f} campaigns/s); "
            f"the kinds of key that grow with the campaigns hold {held:,.0f} bytes per campaign by MEMORY USAGE "
            f"({held / per:.0%} of it)")
    if never:
        day = never_bytes * (soak.campaigns_per_s or 0) * HORIZON_S
        text += (f"; {never_bytes:,.0f} of them in keys that never expire ({', '.join(k.pattern.pattern for k in never)})"
                 f": a day at this rate adds {_size(day)} that stays")
    levelling = [k for k in growing if k.levels_off_at is not None]
    if levelling:
        plateau = sum((k.levels_off_at or 0) * (k.pattern.mean_bytes or 0) for k in levelling)
        text += (f"; the rest expire, levelling off at {_size(plateau)} once their TTL has passed (a soak shorter "
                 "than the TTL sees them grow in a line)")
    return text + "."


def keys_text(soak: DesignSoak) -> str:
    per = soak.keys_per_campaign
    if soak.redis_keys is None:
        return ""
    text = f"Keys in the design's database: {_per_hour(soak.redis_keys, 1, 'keys', 0)}"
    return text + (f", {per:.2f} per campaign." if per is not None else ".")


def p99_text(soak: DesignSoak, names: dict[str, str]) -> str:
    parts = [f"{names.get('request', 'request')} {_per_hour(soak.request_p99, 1000, 'ms', 1)}"]
    if soak.outcome_log:
        parts.append(f"{label(soak.outcome_log)} {_per_hour(soak.outcome_p99, 1000, 'ms', 1)}")
    return "P99 per bin after the warm-up, fitted: " + "; ".join(parts) + "."


def rate_text(soak: DesignSoak, run: Run) -> str:
    search = run.record.capacity_searches.get(soak.design)
    fraction = run.record.experiment.soak.load_fraction if run.record.experiment.soak else None
    rate = f"{soak.rate_per_s:g}/s" if soak.rate_per_s is not None else "?"
    measured = f"{soak.campaigns_per_s:,.1f}/s answered after the warm-up" if soak.campaigns_per_s else "none answered"
    if search is not None and fraction is not None:
        bracket = f"[{search.held_per_s:g}, {search.broke_per_s:g})/s" if search.broke_per_s else \
            f"held up to {search.held_per_s:g}/s, its limit not found"
        return (f"{rate} = {fraction:g} × {search.held_per_s:g}/s, the highest rate its capacity search held "
                f"({search.outcome}: {bracket}); {measured}, for {_duration(soak.duration_s)}")
    return f"{rate}, declared; {measured}, for {_duration(soak.duration_s)}"


def headline(soak: Soak) -> str:
    said = []
    for design in soak.designs:
        grown, drifted = design.grown, design.drifted
        parts = []
        if grown:
            parts.append("memory that would run out within a day: " + ", ".join(
                f"{g.name} (a day adds {_size(g.day_bytes)})" for g in grown))
        else:
            parts.append("no memory growth that would run out within a day")
        parts.append("P99 drifted up" if drifted else "no P99 drift")
        if design.missing:
            parts.append(f"missing {', '.join(design.missing)}")
        said.append(f"{design.design}: " + "; ".join(parts))
    return ". ".join(said) + "." if said else "No soak cell finished."


METHOD = (
    "Each design ran alone on fresh processes and a Redis emptied for it. Every sample_interval_s the harness read "
    "the resident memory of every process offpath started and of its descendants (/proc/<pid>/statm), the machine's "
    "available memory (MemAvailable), and Redis's INFO memory and keyspace; after the drain it counted the database's"
    " keys by kind (SCAN, PTTL, MEMORY USAGE of up to 20 of each). Slopes are least squares over the samples after "
    "the warm-up, each with a 95% interval that counts the samples as fewer by the residuals' lag-1 autocorrelation r"
    " (an effective n (1 − r) / (1 + r), Student's t). A series is flagged when its interval lies above 0 and what a "
    "day adds is at least the memory the machine had available at the soak's end: at its slope, except for Redis, "
    "where the kinds of key that expire level off at the rate × keys per campaign × TTL, and the rest (those that "
    "never expire, growth no kind accounts for) go on at their slope. Redis is judged by its used memory (its "
    "resident set keeps pages its allocator once had); the system's total is the web and worker processes' resident "
    "memory plus Redis's used memory; the load generator is shown apart. Latency per bin merges the 1-second interval"
    " histograms; the drift compares the merged P99 of the first drift_bins bins after the warm-up with the last "
    "drift_bins', by the comparison's block bootstrap with the bins as units and its verdict "
    "(analysis/stats/compare.py).")


@dataclass(frozen=True)
class DesignPart:
    soak: DesignSoak
    rate: str
    plots: list[Plot]


def render_soak(run: Run) -> Path:
    """Write report.md, report.html, soak.json and plots/ of a soak run; returns the HTML path."""
    soak = soak_of(run)
    names = run.names
    parts = []
    for design in soak.designs:
        cell = next(c for c in run.cells if c.id == design.cell)
        parts.append(DesignPart(design, rate_text(design, run), soak_plots(design, cell, run.dir / PLOTS_DIR, names)))
    (run.dir / SOAK_FILE).write_text(_json(soak))
    (run.dir / REPORT_MD_FILE).write_text(_markdown(run, soak, parts, names))
    html_path = run.dir / REPORT_HTML_FILE
    html_path.write_text(_html(run, soak, parts, names))
    return html_path


def _json(soak: Soak) -> str:
    return json.dumps(soak.to_dict(), indent=2) + "\n"


def _machine(soak: Soak) -> str:
    memory = _size(soak.machine_bytes)
    headrooms = [d.headroom_bytes for d in soak.designs if d.headroom_bytes is not None]
    left = f", {_size(min(headrooms))} of it available at the end of a soak (the least)" if headrooms else ""
    return f"The machine's memory: {memory}{left}; growth is projected over {HORIZON_S / 3600:g} h."


def _texts(part: DesignPart, names: dict[str, str]) -> list[str]:
    soak = part.soak
    return [t for t in (f"At {part.rate}.", redis_text(soak), keys_text(soak), p99_text(soak, names),
                        drift_text(soak.request_drift, names), drift_text(soak.outcome_drift, names),
                        f"Keys not counted: {soak.census_error}." if soak.census_error else "") if t]


def _markdown(run: Run, soak: Soak, parts: list[DesignPart], names: dict[str, str]) -> str:
    lines = [f"# offpath soak — run {run.id}", "", f"**{headline(soak)}**", "", _machine(soak), ""]
    if run.incomplete_reason:
        lines += [f"> The run did not finish ({run.incomplete_reason}): the report holds what it measured.", ""]
    for part in parts:
        lines += [f"## {part.soak.design}", ""] + [f"- {t}" for t in _texts(part, names)] + [""]
        lines += ["Memory after the warm-up:", "", markdown_table(memory_rows(part.soak)), ""]
        if part.soak.keys:
            lines += ["Keys at the end, by kind:", "", markdown_table(key_rows(part.soak)), ""]
        lines += [f"[{p.title}]({PLOTS_DIR}/{p.png.name}) — {p.caption}" for p in part.plots]
        lines += ["", "Latency per bin:", "", markdown_table(bin_rows(part.soak, names)), ""]
    return "\n".join(lines + ["## How it was measured", "", METHOD, ""])


def _html(run: Run, soak: Soak, parts: list[DesignPart], names: dict[str, str]) -> str:
    title = f"offpath soak — run {run.id}"
    body = [page_top(title, title, run.id, run.record), f"<div class='headline'>{escape(headline(soak))}</div>",
            f"<p>{escape(_machine(soak))}</p>"]
    if run.incomplete_reason:
        body.append(f"<div class='note'>The run did not finish ({escape(run.incomplete_reason)}): the report holds "
                    "what it measured.</div>")
    for part in parts:
        body += [f"<h2>{escape(part.soak.design)}</h2>", "<ul>"]
        body += [f"<li>{escape(t)}</li>" for t in _texts(part, names)] + ["</ul>"]
        body += [table(memory_rows(part.soak))]
        if part.soak.keys:
            body += ["<p class='sub'>Keys at the end, by kind</p>", table(key_rows(part.soak))]
        body += [figure(p) for p in part.plots]
        body += ["<p class='sub'>Latency per bin</p>", table(bin_rows(part.soak, names))]
    body += ["<h2>How it was measured</h2>", f"<p class='method'>{escape(METHOD)}</p>", "</main></body></html>"]
    return "\n".join(body) + "\n"
