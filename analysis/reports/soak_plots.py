"""A soak's plots (matplotlib, PNG + SVG): each design's memory over time, process by process and Redis's, and its
P99 per bin with the bins the drift compares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.reports.plots import Plot, _plain_log_axis, save
from analysis.stats.load import Cell
from analysis.stats.soak import DesignSoak, Drift, LatencyBin
from foundation.format import MACHINE_TIER

MIB = 2**20
TIER_COLORS = {"web": "#1f77b4", "workers": "#2ca02c", "redis": "#d62728", "load": "#7f7f7f"}


def memory_figure(soak: DesignSoak, memory: pd.DataFrame, redis_memory: pd.DataFrame | None) -> Figure:
    """Resident memory of every process over time (one line each, coloured by tier), and Redis's used memory and
    keys; the warm-up shaded."""
    figure = Figure(figsize=(8.5, 6.4), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    processes = memory[memory["tier"] != MACHINE_TIER]
    for (tier, name), rows in processes.groupby(["tier", "process"], sort=False):
        by_t = rows.groupby("t_s")["rss_bytes"].sum()
        top.plot(by_t.index / 60, by_t.to_numpy() / MIB, color=TIER_COLORS.get(str(tier), "#555555"),
                 lw=1.6 if tier != "workers" else 0.8, alpha=0.9, label=f"{tier}: {name}" if tier != "workers" else None)
    top.plot([], [], color=TIER_COLORS["workers"], lw=0.8, label="workers (one line each)")
    top.set_ylabel("resident memory (MiB)")
    top.set_title(f"{soak.design}: resident memory of each process", loc="left")
    top.legend(fontsize="x-small", ncols=2)
    top.grid(True, alpha=0.3)
    if redis_memory is not None and len(redis_memory):
        minutes = redis_memory["t_s"].to_numpy(float) / 60
        bottom.plot(minutes, redis_memory["used_memory_bytes"].to_numpy(float) / MIB, color=TIER_COLORS["redis"],
                    label="Redis used memory (MiB)")
        keys = bottom.twinx()
        keys.plot(minutes, redis_memory["keys"].to_numpy(float), color="#444444", ls="--", lw=1, label="keys")
        keys.set_ylabel("keys in its database")
        keys.legend(loc="lower right", fontsize="x-small")
    bottom.set_ylabel("Redis used memory (MiB)")
    bottom.set_xlabel("minutes since the soak started")
    bottom.legend(loc="upper left", fontsize="x-small")
    bottom.grid(True, alpha=0.3)
    for axes in (top, bottom):
        axes.axvspan(0, soak.warmup_s / 60, color="#dddddd", alpha=0.5, lw=0)
    return figure


def _bins_line(axes: Axes, bins: tuple[LatencyBin, ...], color: str, label: str) -> None:
    seen = [b for b in bins if b.count and b.p99_us]
    if not seen:
        return
    width = bins[1].start_s - bins[0].start_s if len(bins) > 1 else 0.0
    minutes = (np.array([b.start_s for b in seen]) + width / 2) / 60  # each bin at its middle
    axes.plot(minutes, np.array([b.p99_us for b in seen]) / 1000, "o-", color=color, lw=1.6, ms=3, label=f"{label} P99")
    axes.plot(minutes, np.array([b.p50_us or 0 for b in seen]) / 1000, "-", color=color, lw=0.8, alpha=0.7,
              label=f"{label} P50")


def latency_figure(soak: DesignSoak, names: dict[str, str]) -> Figure:
    """P99 and P50 per bin of the request (and of the completion, for a design with queue data), the bins the drift
    compares shaded."""
    figure = Figure(figsize=(8.5, 4.2), layout="constrained")
    axes = figure.add_subplot()
    _bins_line(axes, soak.request_bins, "#1f77b4", names.get("request", "request"))
    if soak.outcome_log:
        _bins_line(axes, soak.outcome_bins, "#e6550d", names.get(soak.outcome_log, soak.outcome_log))
    drift: Drift | None = soak.request_drift
    if drift is not None and drift.row is not None:
        for start, end in (drift.first_s, drift.last_s):
            axes.axvspan(start / 60, end / 60, color="#ffe9a8", alpha=0.5, lw=0)
    _plain_log_axis(axes)
    width = soak.request_bins[1].start_s - soak.request_bins[0].start_s if len(soak.request_bins) > 1 else 60
    axes.set_xlabel(f"minutes since the soak started (bins of {width:g} s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(f"{soak.design}: latency per bin", loc="left")
    axes.legend(fontsize="x-small", ncols=2)
    return figure


def soak_plots(soak: DesignSoak, cell: Cell, out_dir: Path, names: dict[str, str]) -> list[Plot]:
    """The design's plots, written to out_dir."""
    plots = []
    if cell.memory is not None:
        png, svg = save(memory_figure(soak, cell.memory, cell.redis_memory), out_dir, f"memory-{soak.design}")
        plots.append(Plot(f"memory-{soak.design}", f"{soak.design}: memory over time",
                          "Resident memory of every process offpath started (workers one thin line each), and Redis's "
                          "used memory with its keys; the warm-up, not fitted, shaded grey.", png, svg))
    if soak.request_bins:
        png, svg = save(latency_figure(soak, names), out_dir, f"latency-{soak.design}")
        plots.append(Plot(f"latency-{soak.design}", f"{soak.design}: latency per bin",
                          "P99 (bold) and P50 of each bin; the first and last bins the drift compares shaded.",
                          png, svg))
    return plots
