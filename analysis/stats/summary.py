"""Per-cell and per-phase figures from merged histograms: counts, errors, throughput, percentiles, queue health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats.commands import cell_commands
from analysis.stats.cost import cell_cost
from analysis.stats.histogram import Intervals, stats
from analysis.stats.load import Cell, Run
from foundation.format import (
    CREATE,
    SEND_LAG,
    CellSummary,
    CompletionCensus,
    EndpointFigures,
    LatencyFigures,
    QueueFigures,
    raw_log,
)
from foundation.manifest_format import CellRecord

# A load generator that starts requests more than 10 ms late at P99 is adding its own delay to what it
# measures (open model latencies count from the intended send time), and is no longer offering the load
# it was asked for. 10 ms is far above gevent's scheduling jitter and far below the service's latencies.
DRIVER_LAG_P99_LIMIT_US = 10_000

# The backlog (depth + deferred + scheduled jobs) is "not sustainable" when its least-squares slope over the
# second half of the load is both significant (more than 3 standard errors above zero) and material (more
# than 5% of the accepted rate, at least 0.5 jobs/s): the workers then finish < 95% of what arrives, and
# the backlog and completion latency grow without bound however fast the 202s are.
BACKLOG_GROWTH_FRACTION = 0.05
BACKLOG_GROWTH_FLOOR_PER_S = 0.5
BACKLOG_SIGNIFICANCE_SE = 3.0


def summarize_cell(cell_dir: Path, record: CellRecord) -> dict[str, Any]:
    """The cell's summary.json (results/README.md) from the files in cell_dir; missing files are tolerated."""
    return cell_summary(cell_dir, record).to_dict()


def cell_summary(cell_dir: Path, record: CellRecord) -> CellSummary:
    """The cell's figures from the files in cell_dir, as the record summary.json is written from."""
    return figures(Cell(record=record, dir=Path(cell_dir)))


def summarize(cell: Cell) -> dict[str, Any]:
    """summary.json of a loaded cell."""
    return figures(cell).to_dict()


def figures(cell: Cell) -> CellSummary:
    endpoints = {name: endpoint_summary(cell.log(name), cell.log(raw_log(name)), errors_by_status(cell.errors, name),
                                        _duration(cell, name))
                 for name in cell.endpoints()}
    lag = _lag_summary(cell.log(SEND_LAG))
    create = endpoints.get(CREATE)
    accepted_rate = (create.throughput_per_s if create is not None else 0.0) or cell.offered_rate_per_s or 0.0
    return CellSummary(
        cell=cell.id, design=cell.design, phase=cell.phase, kind=cell.kind, repetition=cell.repetition,
        model=cell.record.model, offered_rate_per_s=cell.offered_rate_per_s, duration_s=cell.duration_s,
        status=cell.record.status,
        endpoints=endpoints,
        send_lag=lag,
        driver_bottleneck=driver_bottleneck(lag),
        queue=queue_summary(cell.queue, cell.completion, cell.duration_s, float(accepted_rate), cell.census()),
        cost=cell_cost(cell),
        commands=cell_commands(cell),
    )


def latency_figures(counts: np.ndarray) -> LatencyFigures:
    """Count, percentiles, max and mean of one merged histogram."""
    return LatencyFigures.from_dict(stats(counts))


def endpoint_summary(intervals: Intervals, raw: Intervals, errors: dict[str, int], duration_s: float) -> EndpointFigures:
    """Latency figures of one endpoint: successes from the (CO-corrected) log, failures by status from errors.csv.
    Throughput is successes per second over the log's own span of intervals."""
    latency = latency_figures(intervals.merged())
    error_count = sum(errors.values())
    count = latency.count
    return EndpointFigures(
        count=count, errors=error_count,
        error_rate=round(error_count / (count + error_count), 6) if count + error_count else 0.0,
        errors_by_status=errors,
        throughput_per_s=round(count / duration_s, 3) if duration_s > 0 else 0.0,
        intervals=intervals.n_intervals,
        p50_us=latency.p50_us, p90_us=latency.p90_us, p99_us=latency.p99_us, p999_us=latency.p999_us,
        max_us=latency.max_us, mean_us=latency.mean_us,
        raw=latency_figures(raw.merged()) if raw.n_intervals else None,
    )


def errors_by_status(errors: pd.DataFrame, endpoint: str) -> dict[str, int]:
    rows = errors[errors["endpoint"] == endpoint]
    return {str(status): int(count) for status, count in rows.groupby("status")["count"].sum().items()}


def driver_bottleneck(send_lag: LatencyFigures | None) -> bool:
    return send_lag is not None and (send_lag.p99_us or 0) > DRIVER_LAG_P99_LIMIT_US


def _lag_summary(send_lag: Intervals) -> LatencyFigures | None:
    if not send_lag.n_intervals:
        return None  # closed model: requests have no intended send time
    return latency_figures(send_lag.merged())


def _duration(cell: Cell, endpoint: str) -> float:
    log = cell.log(endpoint)
    return log.duration_s if log.n_intervals else cell.duration_s


def backlog_trend(t_s: np.ndarray, backlog: np.ndarray) -> tuple[float, float]:
    """Least-squares slope (jobs/s) of the backlog over time, and its standard error."""
    n = len(t_s)
    if n < 3 or np.ptp(t_s) == 0:
        return 0.0, float("inf")
    t_centered = t_s - t_s.mean()
    sxx = float(np.dot(t_centered, t_centered))
    slope = float(np.dot(t_centered, backlog - backlog.mean()) / sxx)
    residuals = backlog - backlog.mean() - slope * t_centered
    se = float(np.sqrt(np.dot(residuals, residuals) / (n - 2) / sxx))
    return slope, se


def is_sustainable(slope_per_s: float, se_per_s: float, accepted_rate_per_s: float) -> bool:
    limit = max(BACKLOG_GROWTH_FRACTION * accepted_rate_per_s, BACKLOG_GROWTH_FLOOR_PER_S)
    return not (slope_per_s > limit and slope_per_s > BACKLOG_SIGNIFICANCE_SE * se_per_s)


def _accounting(census: CompletionCensus | None) -> dict[str, Any]:
    """Where the cell's accepted campaigns stood at its end; None figures when the census is missing."""
    census = census or CompletionCensus()
    return {"accepted": census.accepted, "failed": census.failed, "pending": census.pending,
            "census_error": census.error or None}


def queue_summary(queue: pd.DataFrame | None, completion: Intervals, load_duration_s: float,
                  accepted_rate_per_s: float, census: CompletionCensus | None = None) -> QueueFigures | None:
    """Completion latency and backlog health of a cell whose design queues its work; None without queue samples.
    `census` is the probe's (completion.json): the completion histogram holds every campaign it counted as
    completed, beside how many were accepted, failed, or still pending at the cell's end."""
    if queue is None:
        return None
    latency = latency_figures(completion.merged())
    accounting = _accounting(census)
    if queue.empty:
        return QueueFigures(completion=latency, **accounting, samples=0)
    t = queue["t_s"].to_numpy(float)
    backlog = (queue["depth"] + queue["deferred"] + queue["scheduled"]).to_numpy(float)
    end = load_duration_s if load_duration_s > 0 else float(t[-1])
    during = t <= end + 0.5
    if not during.any():
        during = np.ones_like(t, dtype=bool)
    late = during & (t >= end / 2)
    slope, se = backlog_trend(t[late], backlog[late])
    enough = int(late.sum()) >= 3
    # A queue without offpath's census has no live count of completions (empty columns): no drain rate from it.
    completed = queue["completed_total"].to_numpy(float)
    late_t = t[late]
    drain = (float((completed[late][-1] - completed[late][0]) / (late_t[-1] - late_t[0]))
             if enough and late_t[-1] > late_t[0] and not np.isnan(completed[late][[0, -1]]).any() else None)
    failed = queue["campaigns_failed_total"].iloc[-1]
    depth = queue["depth"].to_numpy(int)
    return QueueFigures(
        completion=latency, **accounting,
        depth_start=int(depth[during][0]), depth_end=int(depth[during][-1]), depth_max=int(depth[during].max()),
        backlog_end=int(backlog[during][-1]), backlog_max=int(backlog[during].max()),
        backlog_after_drain=int(backlog[-1]),
        backlog_slope_per_s=round(slope, 3) if enough else None,
        backlog_slope_se_per_s=round(se, 3) if enough else None,
        drain_rate_per_s=round(drain, 3) if drain is not None else None,
        campaigns_failed=None if pd.isna(failed) else int(failed),
        sustainable=is_sustainable(slope, se, accepted_rate_per_s) if enough else None,
        samples=len(queue),
    )


def backlog_health(cell: Cell, accepted_rate_per_s: float) -> QueueFigures | None:
    """The cell's backlog figures alone (no completion latency, no census); None when its design does not queue."""
    return queue_summary(cell.queue, Intervals.empty(), cell.duration_s, accepted_rate_per_s)


def summarize_run(run: Run) -> list[CellSummary]:
    return [figures(cell) for cell in run.cells]


def phase_table(run: Run, endpoint: str = CREATE) -> pd.DataFrame:
    """One row per design × phase: repetitions merged (histograms added, never percentiles averaged)."""
    rows = []
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in run.cells:
        groups.setdefault((cell.kind, cell.phase, cell.design), []).append(cell)
    for (kind, phase, design), cells in groups.items():
        rows.append({"kind": kind, "phase": phase, "design": design, "repetitions": len(cells),
                     "offered_rate_per_s": cells[0].offered_rate_per_s, **merged_figures(cells, endpoint)})
    return pd.DataFrame(rows)


def merged_figures(cells: Sequence[Cell], endpoint: str = CREATE) -> dict[str, Any]:
    """Figures of an endpoint over several cells (repetitions): merged histograms, summed counts and time; for
    cells that queue their work also completion latency, the census' counts and whether the backlog held."""
    logs = [c.log(endpoint) for c in cells]
    merged = Intervals.concat(logs)
    duration = sum(log.duration_s for log in logs)
    errors = sum(sum(errors_by_status(c.errors, endpoint).values()) for c in cells)
    latency = stats(merged.merged())
    count = int(latency["count"] or 0)
    out: dict[str, Any] = {"count": count, "errors": errors,
                           "error_rate": errors / (count + errors) if count + errors else 0.0,
                           "throughput_per_s": count / duration if duration else 0.0}
    out.update({k: v for k, v in latency.items() if k != "count"})
    queued = [c for c in cells if c.queue is not None]
    if queued:
        completion = latency_figures(Intervals.concat(c.completion for c in cells).merged())
        out["completion_count"] = completion.count
        accounts = [_accounting(c.census()) for c in queued]
        for key in ("accepted", "failed", "pending"):
            values = [a[key] for a in accounts]
            out[f"completion_{key}"] = None if None in values else sum(values)
        out["completion_p50_us"] = completion.p50_us
        out["completion_p99_us"] = completion.p99_us
        health = [backlog_health(cell, out["throughput_per_s"]) for cell in cells]
        verdicts = [None if queue is None else queue.sustainable for queue in health]
        out["sustainable"] = False if False in verdicts else (None if None in verdicts else True)
    return out


def _ms(value_us: float | None) -> str:
    return "-" if value_us is None else f"{value_us / 1000:.1f}"


def _completed_of_accepted(queue: QueueFigures) -> str:
    """'1077/1080 (1 failed, 2 pending)': the completions behind the percentiles, of the campaigns accepted."""
    completed = queue.completion.count
    if queue.accepted is None:
        return str(completed)
    rest = [f"{n} {what}" for what, n in (("failed", queue.failed), ("pending", queue.pending)) if n]
    return f"{completed}/{queue.accepted}" + (f" ({', '.join(rest)})" if rest else "")


def format_table(summaries: Sequence[CellSummary | Mapping[str, Any]]) -> str:
    """A compact plain-text table of cell summaries (records, or summary.json as read): POST /campaigns
    P50/P99/throughput, queue health, the system tiers' CPU ms and the design's Redis commands per campaign."""
    header = ("cell", "n", "err", "rate/s", "P50 ms", "P99 ms", "P99.9 ms", "compl. P99 ms", "completed", "backlog",
              "CPU ms/campaign", "Redis cmds/campaign")
    lines = [header]
    for summary in (s if isinstance(s, CellSummary) else CellSummary.from_dict(s) for s in summaries):
        create = summary.endpoint(CREATE)
        queue = summary.queue
        backlog = "-"
        completion = None
        completed = "-"
        if queue is not None:
            completion = queue.completion.p99_us
            completed = _completed_of_accepted(queue)
            backlog = {True: "ok", False: "GROWING", None: "?"}[queue.sustainable]
        flag = " (driver lagged)" if summary.driver_bottleneck else ""
        cost = summary.cost.total_cpu_ms_per_campaign if summary.cost is not None else None
        commands = summary.commands.per_campaign if summary.commands is not None else None
        lines.append(((summary.cell or "?") + flag, str(create.count), str(create.errors),
                      f"{create.throughput_per_s:.1f}", _ms(create.p50_us), _ms(create.p99_us), _ms(create.p999_us),
                      _ms(completion), completed, backlog, "-" if cost is None else f"{cost:.2f}",
                      "-" if commands is None else f"{commands:.2f}"))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = []
    for number, row in enumerate(lines):
        text.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                              enumerate(zip(row, widths, strict=True))).rstrip())
        if number == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)
