"""The chaos report: the fault table read from a chaos run's chaos.json, as report.md and report.html."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

from analysis.reports.page import CSS, table
from analysis.stats.load import ResultsFolderError
from foundation.format import CHAOS_FILE, INCOMPLETE_MARKER, REPORT_HTML_FILE, REPORT_MD_FILE

EXPLANATION = (
    "Each fault ran on fresh processes and a fresh Redis under a steady open-model load; afterwards every campaign "
    "the client saw acknowledged (201/202, from the Locust acknowledgement logs) was checked against the service's "
    "state. *lost*: acknowledged but no state at all; *duplicated*: a recorded side effect (content generation, "
    "automation) ran more than once; *pending*: still not final when the audit stopped waiting; *stuck*: jobs of final "
    "campaigns still in RQ's queue or its started, intermediate, deferred, ready or scheduled registry; *time to "
    "recover*: from the fault until every acknowledged campaign was final. *Measured* holds what each fault is about: "
    "for a killed worker, how long until its job ran again (the abandonment watch, services/queued/liveness.py); for "
    "every queued fault, the jobs the watch declared abandoned and how many of those were still running (false), "
    "which must be 0; the requests the service refused, by status.")

COLUMNS = ("fault", "load", "acknowledged", "completed", "failed", "lost", "duplicated", "pending", "stuck",
           "time to recover", "measured")


def read_faults(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CHAOS_FILE
    if not path.exists():
        raise ResultsFolderError(f"{run_dir} has no chaos.json: not a chaos run, or it ended before its first fault")
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsFolderError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise ResultsFolderError(f"{path} should hold a list of fault results")
    return rows


def recovery(row: dict[str, Any]) -> str:
    if row["kind"] == "none" and row["ok"]:
        return f"drained {row['drained_after_load_s']} s after load"
    if row["recovered_after_fault_s"] is not None:
        return f"{row['recovered_after_fault_s']} s"
    return "NOT recovered"


def nearest_rank(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def fault_measures(row: dict[str, Any]) -> str:
    """The figures particular to a fault, in a few words."""
    said = []
    times = row.get("recovery_s")
    if times:
        done = [t for t in times if t is not None]
        if done:
            said.append(f"job running again after P50 {nearest_rank(done, 50):.1f} s, P99 {nearest_rank(done, 99):.1f} s, "
                        f"max {max(done):.1f} s over {len(times)} killed jobs")
        if len(done) < len(times):
            said.append(f"{len(times) - len(done)} killed jobs never ran again")
    for event in row.get("events", []):
        if event["what"].startswith("worker ") and "after_s" in event:
            said.append(f"{event['what']} {event['after_s']} s after SIGTERM (grace {event['grace_s']:g} s), "
                        f"its job {event.get('job_status') or 'none'}")
    if "abandoned" in row:
        said.append(f"declared abandoned {row['abandoned']} (false {row['false_abandonments']})")
    if row.get("workers_alive"):
        said.append(f"workers alive {row['workers_alive']}")
    refused = row.get("refused") or {}
    if refused:
        said.append("refused " + ", ".join(f"{count} x {'no answer' if status == '0' else status}"
                                           for status, count in sorted(refused.items())))
    disconnect = row.get("disconnect")
    if disconnect:
        said.append(f"{disconnect['aborted']} clients left mid-request; on retry {disconnect['same_campaign']} got the "
                    f"campaign they had started, {disconnect['created_by_retry']} created it; "
                    f"inconsistent {disconnect['inconsistent']}")
    if row.get("pending_jobs_by_place"):
        said.append("pending campaigns' jobs in " + ", ".join(f"{where} {n}"
                                                              for where, n in row["pending_jobs_by_place"].items()))
    if row.get("stuck_by_registry"):
        said.append("stuck in " + ", ".join(f"{where} {n}" for where, n in row["stuck_by_registry"].items()))
    return "; ".join(said)


def fault_name(row: dict[str, Any], with_design: bool) -> str:
    """The fault, and where it ran: its design when the run has faults on several, its queue backend when it names
    one."""
    where = [part for part in (row.get("design") if with_design else None, row.get("backend")) if part]
    return str(row["fault"]) + (f" ({', '.join(where)})" if where else "")


def fault_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    several = len({r.get("design") for r in rows}) > 1
    # A design audited through HTTP alone cannot show a side effect run twice or a job left in a broker: "not seen".
    return [dict(zip(COLUMNS, (fault_name(r, several), str(r["load"]), str(r["acknowledged"]), str(r["completed"]),
                               str(r["failed"]), str(r["lost"]), str(r.get("duplicated", "not seen")), str(r["pending"]),
                               str(r.get("stuck", "not seen")), recovery(r), fault_measures(r)), strict=True))
            for r in rows]


def fault_table(rows: list[dict[str, Any]]) -> str:
    """The fault table as Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(row.values()) + " |" for row in fault_rows(rows)]
    return "\n".join(lines) + "\n"


def headline(rows: list[dict[str, Any]], incomplete: str | None) -> str:
    if incomplete:
        return f"The run did not finish ({incomplete}): the table holds the faults it completed."
    if rows and all(r["ok"] for r in rows):
        return ("Every acknowledged campaign ended completed or visibly failed; none lost, none duplicated, no job "
                "stuck, none taken from a live worker.")
    return "The promise was broken, or not checked: see the table."


def render_chaos(run_dir: Path | str) -> Path:
    """Write run_dir/report.md and run_dir/report.html from chaos.json; returns the HTML path."""
    run_dir = Path(run_dir)
    rows = read_faults(run_dir)
    marker = run_dir / INCOMPLETE_MARKER
    incomplete = marker.read_text().strip() or "incomplete" if marker.exists() else None
    title = f"offpath chaos — run {run_dir.name}"
    said = headline(rows, incomplete)
    (run_dir / REPORT_MD_FILE).write_text(f"# {title}\n\n**{said}**\n\n{fault_table(rows)}\n{EXPLANATION}\n")
    html_path = run_dir / REPORT_HTML_FILE
    html_path.write_text(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body><main><h1>{escape(title)}</h1>"
        f"<div class='headline'>{escape(said)}</div>{table(fault_rows(rows))}"
        f"<p class='method'>{escape(EXPLANATION)}</p></main></body></html>\n")
    return html_path
