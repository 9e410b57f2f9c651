"""The report's plots (matplotlib, PNG + SVG): percentile spectrum, latency, throughput and queue over time, capacity,
and the CPU each tier spends per campaign."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from analysis.stats.capacity import Capacity
from analysis.stats.cost import COST_SCOPE
from analysis.stats.histogram import HIGHEST_EQUIVALENT, Intervals
from analysis.stats.load import Cell, Run
from foundation.format import CREATE, SYSTEM_TIERS

# A design's colour is its position in the run (Run.designs): the baseline blue, the candidate orange, then others.
PALETTE = ("#1f77b4", "#e6550d", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
OTHER_COLOR = "#555555"
# A tier's colour in the cost bars, by its position in SYSTEM_TIERS: distinct from the designs' colours.
TIER_PALETTE = ("#4e79a7", "#b07aa1", "#59a14f", "#9c755f")
REP_STYLES = ["-", "--", ":", "-."]
MAX_POINTS = 60  # time series are merged into windows so that a plot has at most this many points


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def colors_for(designs: Sequence[str]) -> dict[str, str]:
    """Each design's colour by its position; designs past the palette share a grey."""
    return {design: PALETTE[number] if number < len(PALETTE) else OTHER_COLOR for number, design in enumerate(designs)}


def save(figure: Figure, out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    figure.savefig(png, dpi=110, metadata={"Software": None})
    figure.savefig(svg, metadata={"Date": None})
    return png, svg


def _figure(height: float = 4.2) -> Figure:
    figure = Figure(figsize=(8.5, height), layout="constrained")
    return figure


def _plain_log_axis(axes: Axes) -> None:
    """Log-scaled latency axis labelled 1, 2, 5, 10, 20, 50 … ms rather than powers of ten."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="major", alpha=0.3)


def _ms(value_us: np.ndarray | float) -> np.ndarray | float:
    return np.asarray(value_us, dtype=float) / 1000.0


def spectrum_points(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x = 1/(1-p), value_us) at every recorded bucket of one merged histogram, p being the fraction of values
    below the bucket: drawn as steps, the line reads "p of requests took at most this long"."""
    nonzero = np.flatnonzero(counts)
    cumulative = np.cumsum(counts[nonzero]).astype(float)
    fraction = cumulative / cumulative[-1]
    before = np.concatenate(([0.0], fraction[:-1]))
    return 1.0 / (1.0 - before), HIGHEST_EQUIVALENT[nonzero]


def spectrum_figure(series: Mapping[str, tuple[str, np.ndarray]], title: str) -> Figure:
    """HDR percentile spectrum: latency against percentile on a log 1/(1-p) axis; series: label -> (colour, counts)."""
    figure = _figure()
    axes = figure.add_subplot()
    longest = 10.0
    for label, (color, counts) in series.items():
        if not counts.sum():
            continue
        x, values = spectrum_points(counts)
        axes.step(x, _ms(values), where="post", color=color, label=f"{label} (n={int(counts.sum()):,})")
        longest = max(longest, float(x[-1]))
    ticks = [p for p in (1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000) if p <= longest * 10]
    names = {1: "0%", 2: "50%", 10: "90%", 100: "99%", 1_000: "99.9%", 10_000: "99.99%", 100_000: "99.999%",
             1_000_000: "99.9999%"}
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: names.get(round(v), "")))
    _plain_log_axis(axes)
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title, loc="left")
    axes.legend(loc="upper left", fontsize="small")
    return figure


def window_size(n_intervals: int) -> int:
    return max(1, -(-n_intervals // MAX_POINTS))


def latency_time_figure(series: Sequence[tuple[str, str, int, Intervals]], title: str) -> Figure:
    """P50 (thin) and P99 (bold) per time window; series: (label, colour, repetition, intervals)."""
    figure = _figure()
    axes = figure.add_subplot()
    widths = []
    for label, color, repetition, intervals in series:
        size = window_size(intervals.n_intervals)
        widths.append(size)
        windows = intervals.windows(size)
        values = windows.interval_percentiles([50.0, 99.0])
        counts = windows.interval_counts()
        seen = counts > 0
        t = windows.start_s - (windows.start_s[0] if windows.n_intervals else 0)
        style = REP_STYLES[(repetition - 1) % len(REP_STYLES)]
        axes.plot(t[seen], _ms(values[seen, 1]), style, color=color, lw=2, label=f"{label} P99")
        axes.plot(t[seen], _ms(values[seen, 0]), style, color=color, lw=0.8, alpha=0.7, label=f"{label} P50")
    _plain_log_axis(axes)
    axes.set_xlabel(f"seconds since the cell started (windows of {max(widths or [1])} s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title, loc="left")
    axes.legend(fontsize="x-small", ncols=2)
    return figure


def throughput_time_figure(series: Sequence[tuple[str, str, int, Intervals]], title: str,
                           offered: float | None = None) -> Figure:
    figure = _figure(3.6)
    axes = figure.add_subplot()
    for label, color, repetition, intervals in series:
        windows = intervals.windows(window_size(intervals.n_intervals))
        rate = np.divide(windows.interval_counts(), windows.length_s, out=np.zeros(windows.n_intervals),
                         where=windows.length_s > 0)
        t = windows.start_s - (windows.start_s[0] if windows.n_intervals else 0)
        axes.plot(t, rate, REP_STYLES[(repetition - 1) % len(REP_STYLES)], color=color, label=label)
    if offered:
        axes.axhline(offered, color="#777777", lw=0.8, ls=":", label=f"offered {offered:g}/s")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("seconds since the cell started")
    axes.set_ylabel("successful requests / s")
    axes.set_title(title, loc="left")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="x-small")
    return figure


def queue_time_figure(series: Sequence[tuple[str, str, int, pd.DataFrame, Intervals, float]], title: str) -> Figure:
    """Backlog (jobs waiting) and completion latency P99 over time; series: (label, colour, repetition, queue.csv,
    completion intervals, load duration in s)."""
    figure = _figure(5.2)
    backlog_axes, completion_axes = figure.subplots(2, 1, sharex=True)
    for label, color, repetition, queue, completion, duration_s in series:
        style = REP_STYLES[(repetition - 1) % len(REP_STYLES)]
        backlog = queue["depth"] + queue["deferred"] + queue["scheduled"]
        backlog_axes.plot(queue["t_s"], backlog, style, color=color, label=f"{label} backlog")
        backlog_axes.plot(queue["t_s"], queue["depth"], style, color="#999999", lw=0.8, label=f"{label} queue depth")
        windows = completion.windows(window_size(completion.n_intervals))
        values = windows.interval_percentiles([99.0])[:, 0]
        seen = windows.interval_counts() > 0
        completion_axes.plot(windows.start_s[seen] - (windows.start_s[0] if windows.n_intervals else 0),
                             _ms(values[seen]), style, color=color, label=f"{label} completion P99")
        for axes in (backlog_axes, completion_axes):
            axes.axvline(duration_s, color="#777777", lw=0.8, ls=":")
    backlog_axes.set_ylabel("jobs waiting")
    backlog_axes.set_title(title, loc="left")
    completion_axes.set_ylabel("accepted → completed,\nP99 (ms)")
    completion_axes.set_xlabel("seconds since the cell started (dotted: load stops, the queue drains)")
    for axes in (backlog_axes, completion_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="x-small")
    return figure


def _ms_or_nan(values_us: Sequence[int | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v / 1000.0 for v in values_us], dtype=float)


def capacity_figure(cap: Capacity, colors: Mapping[str, str]) -> Figure:
    """P99 (and P50) of POST /campaigns against offered rate, SLO line; completion P99 dashed where recorded."""
    figure = _figure()
    axes = figure.add_subplot()
    for design, found in cap.designs.items():
        color = colors.get(design, OTHER_COLOR)
        rates = [p.offered_rate_per_s for p in found.points]
        p99 = _ms_or_nan([p.p99_us for p in found.points])
        p50 = _ms_or_nan([p.p50_us for p in found.points])
        axes.plot(rates, p99, "o-", color=color, lw=2, label=f"{design} P99")
        axes.plot(rates, p50, ".-", color=color, lw=0.8, alpha=0.7, label=f"{design} P50")
        completion = _ms_or_nan([p.completion_p99_us for p in found.points])
        if not np.isnan(completion).all():
            axes.plot(rates, completion, "s--", color=color, lw=1, alpha=0.8, label=f"{design} completion P99")
        for point in found.points:
            if point.sustainable is False:
                axes.annotate("backlog grows", (point.offered_rate_per_s, _ms(point.p99_us or 1)), fontsize="x-small",
                              color=color, textcoords="offset points", xytext=(0, 8), ha="center")
        if found.capacity_per_s is not None:
            axes.axvline(found.capacity_per_s, color=color, lw=0.8, ls=":")
    axes.axhline(cap.slo_p99_ms, color="#c00000", lw=1, ls="--", label=f"SLO P99 ≤ {cap.slo_p99_ms:g} ms")
    if any(found.queued for found in cap.designs.values()) and cap.slo.completion_ms != cap.slo_p99_ms:
        axes.axhline(cap.slo.completion_ms, color="#c00000", lw=1, ls=":",
                     label=f"completion SLO P99 ≤ {cap.slo.completion_ms:g} ms")
    _plain_log_axis(axes)
    axes.set_xlabel("offered rate (requests / s); dotted: each design's capacity")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency against offered load (capacity search)", loc="left")
    axes.legend(fontsize="x-small", ncols=2)
    return figure


def _compared_cells(run: Run) -> list[Cell]:
    steady = run.select(kind="steady")
    return steady or [c for c in run.cells if c.kind != "warmup"]


def plots_for_run(run: Run, cap: Capacity, out_dir: Path) -> list[Plot]:
    """Every plot the run's data allows, written to out_dir as PNG + SVG."""
    plots: list[Plot] = []
    cells = _compared_cells(run)
    colors = colors_for(run.designs)

    def add(figure: Figure, name: str, title: str, caption: str) -> None:
        png, svg = save(figure, out_dir, name)
        plots.append(Plot(name, title, caption, png, svg))

    phases = list(dict.fromkeys(c.phase for c in cells if c.kind == "steady"))
    if phases:
        spectrum = {}
        for design in run.designs:
            parts = [c.log(CREATE) for c in cells if c.design == design and c.kind == "steady"]
            if parts:
                spectrum[design] = (colors[design], Intervals.concat(parts).merged())
        add(spectrum_figure(spectrum, "POST /campaigns percentile spectrum, steady phases, repetitions merged"),
            "spectrum", "Percentile spectrum", "Latency at every percentile of the merged steady histograms; the "
            "x axis stretches the tail (1/(1−p)), so P99.9 is as visible as P50.")
    for phase in phases:
        group = [c for c in cells if c.phase == phase]
        series = [(f"{c.design} r{c.repetition}", colors[c.design], c.repetition, c.log(CREATE)) for c in group]
        suffix = "" if len(phases) == 1 else f"-{phase}"
        add(latency_time_figure(series, f"POST /campaigns P50 / P99 over time — {phase}"), f"latency-over-time{suffix}",
            f"Latency over time ({phase})", "P99 (bold) and P50 (thin) per time window, each repetition its own line.")
        add(throughput_time_figure(series, f"Throughput over time — {phase}", group[0].offered_rate_per_s),
            f"throughput-over-time{suffix}", f"Throughput over time ({phase})",
            "Successful POST /campaigns per second; the dotted line is the offered rate.")
        queued = [(c, queue) for c in group if (queue := c.queue) is not None]
        one_design = len({c.design for c, _ in queued}) == 1
        queues = [(f"r{c.repetition}" if one_design else f"{c.design} r{c.repetition}", colors[c.design], c.repetition,
                   queue, c.completion, c.duration_s) for c, queue in queued]
        if queues:
            add(queue_time_figure(queues, f"Queue backlog and completion latency — {phase}"), f"queue-over-time{suffix}",
                f"Queue over time ({phase})", "Jobs waiting (depth + deferred + scheduled) and accepted → completed "
                "P99: a backlog that climbs while load is steady is not sustainable.")
    if cap.designs:
        add(capacity_figure(cap, colors), "capacity", "Latency against offered rate",
            "Each capacity step's P99 and P50; a design's capacity is the highest rate with P99 within the SLO and "
            "errors within budget (and, for a design with a queue, a backlog that does not grow and completion P99 "
            "within the completion SLO).")
    return plots


def cost_figure(bars: Sequence[tuple[str, Mapping[str, float], float | None]]) -> Figure:
    """One bar per design (and steady phase): SYSTEM_TIERS' CPU ms per campaign stacked, campaigns per CPU-second
    above it; bars: (label, CPU ms per campaign by tier, campaigns per CPU-second)."""
    figure = _figure(3.8)
    axes = figure.add_subplot()
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for number, tier in enumerate(SYSTEM_TIERS):
        heights = np.array([float(per_tier.get(tier) or 0.0) for _, per_tier, _ in bars])
        axes.bar(x, heights, 0.55, bottom=bottom, color=TIER_PALETTE[number % len(TIER_PALETTE)], label=tier)
        bottom += heights
    for position, total, (_, _, per_cpu_s) in zip(x, bottom, bars, strict=True):
        text = f"{total:,.2f} ms" + (f"\n{per_cpu_s:,.1f} campaigns/CPU-s" if per_cpu_s is not None else "")
        axes.annotate(text, (position, total), textcoords="offset points", xytext=(0, 3), ha="center",
                      va="bottom", fontsize="small")
    axes.set_xticks(x, [name for name, _, _ in bars])
    axes.set_ylim(0, max(float(bottom.max()) if len(bottom) else 0.0, 1e-9) * 1.3)
    axes.set_ylabel("CPU ms per campaign")
    axes.set_title(f"CPU per campaign served ({COST_SCOPE}), steady phases, repetitions summed", loc="left")
    axes.grid(True, axis="y", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    axes.legend(handles[::-1], labels[::-1], fontsize="small", loc="upper left")  # top to bottom, as stacked
    return figure


def cost_plots(costs: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Plot]:
    """The stacked cost bars of the steady phases (analysis/stats/cost.py's phase_costs); none without cost data."""
    steady = [r for r in costs if r["kind"] == "steady"]
    if not steady:
        return []
    several = len({r["phase"] for r in steady}) > 1
    bars = [(f"{r['design']}\n{r['phase']}" if several else str(r["design"]), r["cpu_ms_per_campaign"],
             r["campaigns_per_cpu_s"]) for r in steady]
    png, svg = save(cost_figure(bars), out_dir, "cost")
    return [Plot("cost", "CPU per campaign", f"CPU milliseconds each serving tier ({COST_SCOPE}) spent per campaign "
                 "it served, stacked, with campaigns per CPU-second above each bar. CPU and campaigns are summed over "
                 "repetitions before dividing. Campaigns served are successful creates for a design without a queue "
                 "and campaigns completed for one with a queue, whose CPU is counted through its drain; the load "
                 "generator is the client's and not charged (see the table).", png, svg)]
