"""The decision map's plots: per ratio, queued over inline against the swept parameter with its intervals, ratio = 1
and the crossovers marked (one parameter), or a heat map with the crossovers drawn between cells (two)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from analysis.reports.plots import Plot, save
from analysis.stats.decision_map import (
    EVEN,
    INLINE,
    MEASURES,
    QUEUE,
    DecisionMap,
    Measure,
    PointRatios,
    categorical,
    parameter_text,
)

SIDE_COLORS = {QUEUE: "#1a7f37", INLINE: "#c62828", EVEN: "#1f5fbf"}
UNRESOLVED_COLOR = "#8a8f98"
# Ratios are drawn on a log axis; an interval unbounded on one side is drawn to the axis' edge with an arrow.
RATIO_FLOOR, RATIO_CEILING = 1 / 64, 64.0


def _log_ratio_axis(axes: Axes, low: float, high: float) -> None:
    axes.set_yscale("log")
    axes.set_ylim(low, high)
    ticks = [t for t in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32) if low <= t <= high]
    axes.yaxis.set_major_locator(FixedLocator(ticks))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v >= 1 else f"1/{1 / v:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="major", alpha=0.3)


def _clip(value: float | None) -> float:
    if value is None or math.isnan(value):
        return math.nan
    return min(max(value, RATIO_FLOOR), RATIO_CEILING)


def line_figure(dmap: DecisionMap, measure: Measure) -> Figure:
    """One parameter: each point's ratio with its interval, coloured by the side it resolves to; ratio = 1 dashed;
    each crossover a shaded band between the two resolved points it lies between."""
    name, values = dmap.parameters[0]
    # A parameter of names (a queue backend) is drawn at evenly spaced places in the sweep's order.
    names = categorical(values)
    place = {value: float(index) for index, value in enumerate(values)} if names else {v: float(v) for v in values}
    points = sorted(dmap.points, key=lambda p: place.get(p.values.get(name, 0.0), 0.0))
    figure = Figure(figsize=(7.5, 3.8), layout="constrained")
    axes = figure.add_subplot()
    known = [p for p in points if p.ratios[measure.key].value is not None]
    ends = [b for p in known for b in (p.ratios[measure.key].low, p.ratios[measure.key].high, p.ratios[measure.key].value)
            if b is not None and math.isfinite(b) and b > 0]
    low = max(RATIO_FLOOR, min([0.5, *ends]) / 1.5)
    high = min(RATIO_CEILING, max([2.0, *ends]) * 1.5)
    for crossing in (c for c in dmap.crossovers if c.measure == measure.key):
        if crossing.low == crossing.high:  # at one point where the two are equivalent
            axes.axvline(crossing.low, color="#f2c14e", alpha=0.6, lw=6)
        else:
            axes.axvspan(crossing.low, crossing.high, color="#f2c14e", alpha=0.25, lw=0)
        axes.annotate("queue starts to win" if crossing.starts else "queue stops winning",
                      (math.sqrt(crossing.low * crossing.high), high), textcoords="offset points", xytext=(0, -12),
                      ha="center", fontsize="x-small", color="#7a5a00")
    axes.axhline(1.0, color="#333333", lw=1, ls="--")
    axes.annotate("ratio = 1", (1.0, 1.0), xycoords=("axes fraction", "data"), textcoords="offset points",
                  xytext=(-3, 3), ha="right", fontsize="x-small")
    xs = np.array([place[p.values[name]] for p in points])
    if not names:  # a line between names would say there is something between them
        axes.plot(xs, [_clip(p.ratios[measure.key].value) for p in points], color="#555555", lw=1, alpha=0.6)
    for point in known:
        _point_marker(axes, point, measure, place[point.values[name]], low, high)
    better = "above" if measure.higher_is_better else "below"
    axes.set_ylabel(f"{dmap.candidate} / {dmap.baseline}\n({better} 1: {dmap.candidate} better)")
    numbers = sorted(place.values())
    if not names and min(numbers) > 0 and max(numbers) / min(numbers) >= 4:
        axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(numbers))
    label_of = {x: value for value, x in place.items()}
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: parameter_text(name, label_of.get(float(v), float(v)))))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(name.replace("_", " "))
    axes.margins(x=0.1)
    _log_ratio_axis(axes, low, high)
    axes.set_title(f"{measure.heading}: {dmap.candidate} / {dmap.baseline} (with intervals)", loc="left",
                   fontsize="medium")
    return figure


def _point_marker(axes: Axes, point: PointRatios, measure: Measure, x: float, low: float, high: float) -> None:
    ratio = point.ratios[measure.key]
    side = point.side(measure)
    color = SIDE_COLORS.get(side, UNRESOLVED_COLOR)
    value = _clip(ratio.value)
    bottom = _clip(ratio.low) if ratio.low is not None else value
    top = _clip(ratio.high) if ratio.high is not None else value
    bottom, top = max(bottom, low), min(top, high)
    axes.plot([x, x], [bottom, top], color=color, lw=2.5, alpha=0.8, solid_capstyle="butt")
    axes.plot([x], [value], "o", color=color, ms=7, mfc=color if side in SIDE_COLORS else "white")
    if ratio.high is not None and ratio.high >= high:
        axes.annotate("", (x, high), xytext=(x, high / 1.25), arrowprops={"arrowstyle": "->", "color": color})
    label = side + (f" ({ratio.note})" if ratio.note else "")
    axes.annotate(f"{ratio.value:.2f}\n{label}", (x, value), textcoords="offset points", xytext=(6, 0),
                  fontsize="xx-small", color=color, va="center")


def heat_figure(dmap: DecisionMap, measure: Measure) -> Figure:
    """Two parameters: log2 of the ratio as colour (green where the queue is better), each cell's ratio, interval
    and side written in it; a thick line between neighbouring cells resolved to different sides (a crossover)."""
    (first, xs), (second, ys) = dmap.parameters[0], dmap.parameters[1]
    grid = np.full((len(ys), len(xs)), np.nan)
    cells: dict[tuple[int, int], PointRatios] = {}
    for point in dmap.points:
        i, j = ys.index(point.values[second]), xs.index(point.values[first])
        cells[(i, j)] = point
        value = point.ratios[measure.key].value
        if value is not None and value > 0:
            grid[i, j] = math.log2(value) * (1 if measure.higher_is_better else -1)
    figure = Figure(figsize=(max(1.8 * len(xs) + 2.5, 7.0), 1.1 * len(ys) + 1.8), layout="constrained")
    axes = figure.add_subplot()
    reach = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    image = axes.imshow(grid, cmap="RdYlGn", norm=TwoSlopeNorm(0.0, -reach, reach), origin="lower", aspect="auto")
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label(f"log2 of how much better {dmap.candidate} is (0: ratio = 1)")
    for (i, j), point in cells.items():
        ratio = point.ratios[measure.key]
        axes.text(j, i, f"{ratio.text()}\n{point.side(measure)}", ha="center", va="center", fontsize="x-small")
        for di, dj in ((0, 1), (1, 0)):
            other = cells.get((i + di, j + dj))
            sides = {point.side(measure), other.side(measure)} if other is not None else set()
            if sides == {QUEUE, INLINE}:
                if dj:
                    axes.plot([j + 0.5, j + 0.5], [i - 0.5, i + 0.5], color="black", lw=3)
                else:
                    axes.plot([j - 0.5, j + 0.5], [i + 0.5, i + 0.5], color="black", lw=3)
    axes.set_xticks(range(len(xs)), [parameter_text(first, x) for x in xs])
    axes.set_yticks(range(len(ys)), [parameter_text(second, y) for y in ys])
    axes.set_xlabel(f"{first.replace('_', ' ')} (thick lines: crossovers)")
    axes.set_ylabel(second.replace("_", " "))
    axes.set_title(f"{measure.heading}: {dmap.candidate} / {dmap.baseline}", loc="left", fontsize="medium")
    return figure


def map_plots(dmap: DecisionMap, out_dir: Path) -> list[Plot]:
    """A plot per ratio of the map, PNG + SVG in out_dir; none for a sweep without parameters."""
    if not dmap.parameters:
        return []
    plots = []
    for measure in MEASURES:
        figure = heat_figure(dmap, measure) if len(dmap.parameters) > 1 else line_figure(dmap, measure)
        name = f"map-{measure.key.replace('_', '-')}"
        png, svg = save(figure, out_dir, name)
        plots.append(Plot(name, measure.heading, f"{measure.how[:1].upper()}{measure.how[1:]}. "
                          + dmap.sentences.get(measure.key, ""), png, svg))
    return plots
