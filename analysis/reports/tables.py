"""The report's tables as rows of display strings, shared by the Markdown and HTML renderers."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.stats.capacity import (
    ACKNOWLEDGEMENT,
    COMPLETION_SLO,
    DRAIN,
    Capacity,
    DesignCapacity,
    capacity_ratio_of,
    ratio_verdict_text,
)
from analysis.stats.compare import format_value
from analysis.stats.cost import SOURCE_LABELS
from analysis.stats.fixed_cost import FixedCost
from analysis.stats.histogram import Intervals, stats
from analysis.stats.load import Cell, Run
from foundation.format import (
    COMPLETION,
    CREATE,
    FAILED_SEEN,
    OUTCOME_SEEN,
    QUEUE_WAIT,
    RUN_TIME,
    SYSTEM_TIERS,
    TIERS,
)


def _limit(found: DesignCapacity, limit: str, applies: bool = True) -> str:
    """Where one limit lies: '-' where it does not apply, its bracket otherwise."""
    return found.limit_text(limit) if applies else "-"


def capacity_rows(cap: Capacity) -> list[dict[str, str]]:
    """Per design: where its capacity lies ([held, broke)), the limit that bound it, where each limit lies (a design
    with queue data is also judged on its drain and its completions), and how its search ended."""
    rows = []
    for design, found in cap.designs.items():
        rows.append({
            "design": design,
            "capacity": found.bracket().text(),
            "bound by": ", ".join(found.bound_by) or "no limit reached",
            "acknowledgement": _limit(found, ACKNOWLEDGEMENT),
            "drain": _limit(found, DRAIN, found.queued),
            "completion": _limit(found, COMPLETION_SLO, found.queued),
            "search": found.search_text(),
            "tested up to": f"{found.tested_up_to_per_s:g}/s",
        })
    return rows


def capacity_ratio_text(cap: Capacity) -> str:
    """'queued / inline: 1.33, between 1.00 and 1.67 from both brackets (both ends open): better'; empty without both
    designs' capacities."""
    ratio = capacity_ratio_of(cap)
    if ratio is None or ratio.value is None:
        return ""
    high = "∞" if math.isinf(ratio.high) else f"{ratio.high:.2f}"
    return (f"{cap.candidate} / {cap.baseline}: {ratio.value:.2f}, between {ratio.low:.2f} and {high} from both "
            f"brackets (both ends open): {ratio_verdict_text(ratio)}")


def step_rows(cap: Capacity) -> list[dict[str, str]]:
    rows = []
    for design, found in cap.designs.items():
        for p in found.points:
            rows.append({
                "design": design, "offered": f"{p.offered_rate_per_s:g}/s", "throughput": f"{p.throughput_per_s:.1f}/s",
                "n": f"{p.count:,}", "errors": f"{p.errors:,} ({p.error_rate:.1%})",
                "P50": format_value("p50_us", p.p50_us), "P99": format_value("p99_us", p.p99_us),
                "completion P99": format_value("p99_us", p.completion_p99_us),
                "backlog": {True: "flat", False: "GROWS", None: "-"}[p.sustainable],
                "within SLO": "yes" if p.within_slo else f"no: {', '.join(p.broken)}",
            })
    return rows


def _known(value: Any) -> bool:
    return value is not None and not pd.isna(value)


def completed_of_accepted(completed: Any, accepted: Any, failed: Any, pending: Any) -> str:
    """'1,077 of 1,080, 1 failed, 2 pending': how many accepted campaigns the completion percentiles stand on."""
    if not _known(completed):
        return "-"
    if not _known(accepted):
        return f"{int(completed):,}"
    rest = [f"{int(n):,} {what}" for n, what in ((failed, "failed"), (pending, "pending")) if _known(n) and n]
    return ", ".join([f"{int(completed):,} of {int(accepted):,}", *rest])


def phase_rows(phases: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for r in phases.to_dict("records"):
        if r["kind"] == "capacity":
            continue  # every capacity step has its own row in the capacity table
        completion = r.get("completion_p99_us")
        sustainable = r.get("sustainable")
        rows.append({
            "phase": r["phase"] if r["kind"] == r["phase"] else f"{r['phase']} ({r['kind']})",
            "design": r["design"], "reps": str(r["repetitions"]),
            "offered": "-" if r["offered_rate_per_s"] is None or pd.isna(r["offered_rate_per_s"])
                       else f"{r['offered_rate_per_s']:g}/s",
            "n": f"{r['count']:,}", "errors": f"{r['errors']:,}", "throughput": f"{r['throughput_per_s']:.1f}/s",
            "P50": format_value("p50_us", r.get("p50_us")), "P90": format_value("p90_us", r.get("p90_us")),
            "P99": format_value("p99_us", r.get("p99_us")), "P99.9": format_value("p999_us", r.get("p999_us")),
            "completion P99": "-" if completion is None or pd.isna(completion) else format_value("p99_us", completion),
            "completed": completed_of_accepted(r.get("completion_count"), r.get("completion_accepted"),
                                               r.get("completion_failed"), r.get("completion_pending")),
            "backlog": {True: "flat", False: "GROWS"}.get(sustainable, "-") if isinstance(sustainable, bool) else "-",
        })
    return rows


# What the outcome table shows per design and phase, where its cells recorded it: the request's answer, what the
# clients saw of the outcome, and the service's own timings.
OUTCOME_LOGS = ((CREATE, "answer"), (OUTCOME_SEEN, "outcome seen"), (COMPLETION, "completion (service)"),
                (QUEUE_WAIT, "waited in the queue"), (RUN_TIME, "ran"))


OUTCOME_NOTE = ("P50 / P99 (n), steady phases, repetitions merged: the answer to the request; the outcome as the "
                "clients saw it (from the intended send to the final state first seen); the service's own accepted → "
                "completed, and that split into the wait in the queue and the run (where it records its timestamps).")


def outcome_rows(run: Run) -> list[dict[str, str]]:
    """Per design and steady phase (repetitions merged): P50 / P99 (n) of the answer, of the outcome as the clients saw
    it (intended send -> the final state first seen), of the service's own accepted -> completed, and that split into
    the wait in the queue and the run; outcomes seen failed counted. Only the logs a design recorded get a value."""
    rows = []
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in run.cells:
        if cell.kind == "steady":
            groups.setdefault((cell.phase, cell.design), []).append(cell)
    for (phase, design), cells in groups.items():
        row = {"phase": phase, "design": design}
        for key, title in OUTCOME_LOGS:
            merged = Intervals.concat([c.log(key) for c in cells]).merged()
            figures = stats(merged)
            row[title] = "-" if not figures["count"] else (
                f"{format_value('p50_us', figures['p50_us'])} / {format_value('p99_us', figures['p99_us'])} "
                f"({int(figures['count']):,})")
        failed = sum(c.log(FAILED_SEEN).total_count for c in cells)
        row["failed seen"] = f"{failed:,}" if any(c.log(OUTCOME_SEEN).total_count for c in cells) or failed else "-"
        if any(row[title] != "-" for _, title in OUTCOME_LOGS[1:]):
            rows.append(row)
    return rows


def _cpu_ms(value: Any) -> str:
    return "-" if not _known(value) else f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def machine_check(cost: dict[str, Any]) -> str:
    """'others 3%, 1% unaccounted' — and GAP when the machine's CPU and the tiers' + others' are > 10% apart."""
    others, unaccounted = cost.get("others_share"), cost.get("unaccounted_share")
    if not _known(others) or not _known(unaccounted):
        return "-"
    text = f"others {others:.0%}, {unaccounted:+.0%} unaccounted"
    return f"GAP: {text}" if cost.get("accounting_gap") else text


def cost_rows(costs: list[dict[str, Any]], kinds: tuple[str, ...] = ("steady",)) -> list[dict[str, str]]:
    """CPU ms per campaign per tier (analysis/stats/cost.py's phase_costs), for the phases of the given kinds."""
    rows = []
    for r in costs:
        if r["kind"] not in kinds:
            continue
        per_campaign = r["cpu_ms_per_campaign"]
        counted = " + ".join(SOURCE_LABELS.get(s, s) for s in dict.fromkeys(str(r["campaigns_source"]).split("+")))
        row = {"phase": r["phase"] if r["kind"] == r["phase"] else f"{r['phase']} ({r['kind']})",
               "design": r["design"], "reps": str(r["repetitions"]),
               "campaigns": f"{r['campaigns']:,} {counted}"}
        row |= {tier: _cpu_ms(per_campaign.get(tier)) for tier in SYSTEM_TIERS}
        row["total"] = _cpu_ms(r["total_cpu_ms_per_campaign"])
        row["campaigns / CPU-s"] = "-" if not _known(r["campaigns_per_cpu_s"]) else f"{r['campaigns_per_cpu_s']:,.1f}"
        row |= {f"{tier} (not charged)": _cpu_ms(per_campaign.get(tier)) for tier in TIERS if tier not in SYSTEM_TIERS}
        row["machine check"] = machine_check(r)
        rows.append(row)
    return rows


FIXED_NOTE = ("A line through each design's capacity steps that held, CPU per second = fixed + per campaign × campaigns "
              "per second (analysis/stats/fixed_cost.py): the fixed part is what its processes spend whatever the load "
              "(idle workers polling, heartbeats, watches), which a phase's CPU per campaign shares among its "
              "campaigns; the steady column splits that phase's CPU per campaign into the two.")


def fixed_cost_rows(fixed: list[FixedCost], costs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Per design: its fixed CPU per second per tier, the CPU of one more campaign, how well the line holds, and the
    steady phases' CPU per campaign with the fixed share of it at that phase's rate."""
    rows = []
    for line in fixed:
        steady = []
        for r in costs:
            if r["kind"] == "steady" and r["design"] == line.design and r["wall_s"] and r["campaigns"]:
                rate = r["campaigns"] / r["wall_s"]
                share = line.fixed_ms_per_campaign(rate)
                steady.append(f"{r['phase']} ({rate:.1f}/s): {_cpu_ms(r['total_cpu_ms_per_campaign'])}, of it "
                              f"{_cpu_ms(share)} fixed")
        rows.append({
            "design": line.design,
            "capacity steps": f"{line.steps} ({line.low_per_s:g}–{line.high_per_s:g} campaigns/s)",
            "fixed CPU (ms/s)": f"{line.fixed_ms_per_s['system']:.1f}",
            "of it " + " · ".join(SYSTEM_TIERS): " · ".join(f"{line.fixed_ms_per_s[t]:.1f}" for t in SYSTEM_TIERS),
            "per campaign beyond it": _cpu_ms(line.marginal_ms["system"]),
            "R²": "-" if line.r2 is None else f"{line.r2:.2f}",
            "steady: CPU per campaign": "; ".join(steady) or "-",
        })
    return rows


COMMANDS_NOTE = ("The commands each design ran on the run's Redis (INFO commandstats), from each cell's start through "
                 "its drain, over the campaigns served, repetitions summed; by kind, most frequent first. The harness's "
                 "own commands (the queue probe, the census) are counted as it sends them and not charged.")
KINDS_SHOWN = 5  # command kinds a commands row names, most frequent first (comparison.json's `commands` has them all)


def _kinds(by_kind: dict[str, float]) -> str:
    shown = list(by_kind.items())[:KINDS_SHOWN]
    text = " · ".join(f"{kind} {n:,.2f}" for kind, n in shown)
    return text + (f" · +{len(by_kind) - len(shown)} more" if len(by_kind) > len(shown) else "")


def command_rows(records: list[dict[str, Any]], kinds: tuple[str, ...] = ("steady",)) -> list[dict[str, str]]:
    """Redis commands per campaign served, in all and by kind, with the harness's own (not charged) beside them
    (analysis/stats/commands.py's phase_commands), for the phases of the given kinds; a design whose commands are not
    on the run's Redis says why."""
    rows = []
    for r in records:
        if r["kind"] not in kinds:
            continue
        row = {"phase": r["phase"] if r["kind"] == r["phase"] else f"{r['phase']} ({r['kind']})",
               "design": r["design"], "reps": str(r["repetitions"])}
        if r.get("unmeasured"):
            rows.append(row | {"campaigns": "-", "per campaign": "-", "by kind": f"not measured: {r['unmeasured']}",
                               "harness, not charged": "-"})
            continue
        counted = " + ".join(SOURCE_LABELS.get(s, s) for s in dict.fromkeys(str(r["campaigns_source"]).split("+")))
        campaigns = r["campaigns"]
        harness = r.get("harness_commands")
        rows.append(row | {
            "campaigns": f"{campaigns:,} {counted}",
            "per campaign": "-" if not _known(r.get("per_campaign")) else f"{r['per_campaign']:,.2f}",
            "by kind": _kinds(r.get("by_kind_per_campaign") or {}) or "-",
            "harness, not charged": f"{harness / campaigns:,.2f}" if _known(harness) and campaigns else "-",
        })
    return rows
