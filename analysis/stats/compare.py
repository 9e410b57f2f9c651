"""A/B comparison (a run's candidate design against its baseline, or any run against any run): deltas with
bootstrap CIs and verdicts."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from analysis.stats.bootstrap import CONFIDENCE, Replicates, interval_of, method_text, new_rng, resample
from analysis.stats.commands import COMMANDS_SCOPE, merged_commands, ratio_range, repetition_values
from analysis.stats.cost import COST_SCOPE, cell_series, cost_replicates, merged_cost
from analysis.stats.equivalence import (
    BETTER,
    EQUIVALENT,
    UNDECIDED,
    WORSE,
    Need,
    decide,
    spread_factor,
    tail_factor,
    verdict_rule,
)
from analysis.stats.histogram import Intervals, value_at_percentiles
from analysis.stats.load import Cell, Run, load_run
from analysis.stats.verdict_settings import Margins, VerdictSettings, verdict_settings
from foundation.format import COMPLETION, CREATE, MANIFEST_FILE, OUTCOME, label

# (metric, percentile or None for throughput); latency: lower is better, throughput: higher is better.
METRICS: tuple[tuple[str, float | None], ...] = (
    ("throughput_per_s", None), ("p50_us", 50.0), ("p90_us", 90.0), ("p99_us", 99.0), ("p999_us", 99.9),
)
PERCENTILES = [p for _, p in METRICS if p is not None]
MIN_TAIL_SAMPLES = 10
# The cost row: the system tiers' CPU ms per campaign served (analysis/stats/cost.py); lower is better.
COST_METRIC = "cpu_ms_per_campaign"
# The count row: the design's Redis commands per campaign served (analysis/stats/commands.py); lower is better.
COMMANDS_METRIC = "commands_per_campaign"
# A count row's interval is the range of its repetitions, not a bootstrap CI (analysis/stats/commands.py says why).
RANGE_NOTE = "range of repetitions"
LABELS = {"throughput_per_s": "throughput", "p50_us": "P50", "p90_us": "P90", "p99_us": "P99", "p999_us": "P99.9",
          COST_METRIC: "CPU per campaign", COMMANDS_METRIC: "commands per campaign"}


@dataclass(frozen=True)
class DeltaRow:
    group: str  # what is compared: a phase ("steady"), or design and phase across runs ("<design> steady")
    endpoint: str
    metric: str
    a: float | None
    b: float | None
    n_a: int
    n_b: int
    delta_pct: float | None
    ci_low_pct: float | None
    ci_high_pct: float | None
    verdict: str  # analysis/stats/equivalence.py: "better" | "worse" | "equivalent" | "undecided"
    note: str = ""
    # Rows of endpoint OUTCOME set different logs side by side: which log A's figure comes from, and B's.
    a_endpoint: str = ""
    b_endpoint: str = ""
    confidence: float = CONFIDENCE  # the interval's level (above 95% in a sequential run: verdict_settings.py)
    margin_pct: float | None = None  # within ±margin_pct the change does not matter (equivalent)
    # An undecided row: how many times the values it rests on would decide it (None: decided, or nothing would), and
    # what it rests on now: repetitions (the fewer side) and seconds of each repetition's phase.
    need_factor: float | None = None
    repetitions: int = 1
    phase_s: float = 0.0

    @property
    def need(self) -> Need | None:
        """What would decide an undecided row; None for a decided one or one nothing would decide."""
        if self.verdict != UNDECIDED or self.need_factor is None:
            return None
        return Need(self.need_factor, self.repetitions, self.phase_s)


@dataclass(frozen=True)
class Comparison:
    title: str
    a_label: str
    b_label: str
    rows: tuple[DeltaRow, ...]
    method: str = ""
    missing: tuple[str, ...] = field(default_factory=tuple)
    confidence: float = CONFIDENCE
    # The run's own names of its logs ('request' -> 'POST /orders'): Run.names.
    names: Mapping[str, str] = field(default_factory=dict)

    def row(self, metric: str, group: str | None = None, endpoint: str = CREATE) -> DeltaRow | None:
        for row in self.rows:
            if row.metric == metric and row.endpoint == endpoint and (group is None or row.group == group):
                return row
        return None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows], columns=list(DeltaRow.__dataclass_fields__))

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "a": self.a_label, "b": self.b_label, "method": self.method,
                "confidence": self.confidence, "missing": list(self.missing),
                "rows": [_json_row(r) for r in self.rows]}


def _json_row(row: DeltaRow) -> dict[str, Any]:
    data = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(row).items()}
    need = row.need
    if need is not None:
        data |= {"need_more_repetitions": need.more_repetitions, "need_phase_s": round(need.longer_phase_s, 1),
                 "need": need.text()}
    return data


def method(settings: VerdictSettings) -> str:
    """The comparison's method note: how its intervals are obtained and how its verdicts read them."""
    rule = verdict_rule(settings.margins.text(), settings.confidence, MIN_TAIL_SAMPLES)
    text = f"{method_text(settings.confidence)} {rule}"
    text += (" Redis commands per campaign are counted, not sampled: their interval is the range of the repetitions "
             "(each of B against each of A), none with one repetition a side.")
    sequential = settings.sequential
    if sequential is not None:
        looks = sequential.looks(settings.repetitions)
        text += (f" Sequential: up to {looks} looks (after {settings.repetitions} to {sequential.max_repetitions} "
                 f"repetitions), each at {settings.confidence * 100:.3g}% = 1 − {1 - sequential.confidence:g}/{looks}, "
                 f"so that a row's chance of a wrong verdict over every look stays at most "
                 f"{1 - sequential.confidence:g} (the union bound: alpha spent evenly over the looks).")
    return text


def compare_cells(a_cells: Sequence[Cell], b_cells: Sequence[Cell], group: str, endpoint: str = CREATE,
                  rng: np.random.Generator | None = None, settings: VerdictSettings | None = None) -> list[DeltaRow]:
    """Rows for one endpoint: B (candidate) against A (baseline), repetitions pooled as bootstrap strata."""
    rng = rng if rng is not None else new_rng()
    settings = settings or VerdictSettings()
    a_logs = [c.log(endpoint) for c in a_cells]
    b_logs = [c.log(endpoint) for c in b_cells]
    return compare_logs(a_logs, b_logs, group, endpoint, rng, margins=settings.margins,
                        confidence=settings.confidence)


def compare_logs(a_logs: Sequence[Intervals], b_logs: Sequence[Intervals], group: str, endpoint: str,
                 rng: np.random.Generator, *, margins: Margins | None = None, confidence: float = CONFIDENCE,
                 metrics: Sequence[str] | None = None) -> list[DeltaRow]:
    """Rows of B's logs against A's, one per metric of METRICS (or of `metrics` only: the bootstrap then reads only
    their percentiles)."""
    margins = margins or Margins()
    chosen = [(m, p) for m, p in METRICS if metrics is None or m in metrics]
    percentiles = [p for _, p in chosen if p is not None]
    a_all, b_all = Intervals.concat(a_logs), Intervals.concat(b_logs)
    if not a_all.total_count or not b_all.total_count:
        return []
    a_point, b_point = _point(a_logs, a_all), _point(b_logs, b_all)
    a_rep, b_rep = resample(a_logs, percentiles, rng), resample(b_logs, percentiles, rng)
    n_a, n_b = a_all.total_count, b_all.total_count
    repetitions, phase_s = _extent(a_logs, b_logs)
    rows = []
    for metric, percentile in chosen:
        a_value, b_value = a_point[metric], b_point[metric]
        ratios = _replicate(b_rep, metric, percentiles) / _replicate(a_rep, metric, percentiles) - 1
        low, high = interval_of(ratios, confidence)
        margin = margins.for_metric(metric)
        delta = b_value / a_value - 1 if a_value else float("nan")
        row_verdict = decide(low, high, higher_is_better=percentile is None, margin=margin)
        need = spread_factor(delta, low, high, margin) if row_verdict == UNDECIDED else None
        note = ""
        if percentile is not None and min(n_a, n_b) * (1 - percentile / 100) < MIN_TAIL_SAMPLES:
            # Too few values beyond the percentile: its interval cannot be trusted, whatever it says.
            note, row_verdict = "few samples", UNDECIDED
            need = max(tail_factor(min(n_a, n_b), percentile, MIN_TAIL_SAMPLES), need or 1.0)
        rows.append(DeltaRow(group=group, endpoint=endpoint, metric=metric, a=a_value, b=b_value, n_a=n_a, n_b=n_b,
                             delta_pct=round(delta * 100, 2) if a_value else None,
                             ci_low_pct=round(low * 100, 2) if math.isfinite(low) else None,
                             ci_high_pct=round(high * 100, 2) if math.isfinite(high) else None,
                             verdict=row_verdict, note=note, confidence=confidence,
                             margin_pct=round(margin * 100, 4), need_factor=need, repetitions=repetitions,
                             phase_s=phase_s))
    return rows


def _extent(a_logs: Sequence[Intervals], b_logs: Sequence[Intervals]) -> tuple[int, float]:
    """(repetitions, seconds of each) the fewer side's values come from: what more of them would mean in a run."""
    sides = []
    for logs in (a_logs, b_logs):
        used = [log for log in logs if log.n_intervals]
        sides.append((len(used), float(sum(log.length_s.sum() for log in used)) / len(used) if used else 0.0))
    return min(n for n, _ in sides), min(s for _, s in sides)


def outcome_log(cells: Sequence[Cell]) -> str:
    """The log of what the request's owner waits for on this side: the completion, when the cells have queue data
    (the request only acknowledged the work: the service's own accepted → completed where it records it, else what
    its clients saw); otherwise the request's own answer, which is the outcome."""
    queued = [c for c in cells if c.queue is not None]
    return queued[0].completion_log if queued else CREATE


def outcome_rows(a_cells: Sequence[Cell], b_cells: Sequence[Cell], group: str,
                 settings: VerdictSettings | None = None) -> list[DeltaRow]:
    """Latency of the outcome, side against side (endpoint OUTCOME): e.g. a queueing design's completion against the
    answer of one that does not queue, with the same bootstrap as every latency row. None when neither side has
    queue data (the rows would repeat POST /campaigns'); no throughput row (completions are binned by when they
    happen, through the drain after the load: their rate is not comparable with the POSTs')."""
    a_log, b_log = outcome_log(a_cells), outcome_log(b_cells)
    if a_log == CREATE and b_log == CREATE:
        return []
    rng = new_rng()  # its own stream: adding these rows leaves the other rows' intervals as they were
    settings = settings or VerdictSettings()
    rows = compare_logs([c.log(a_log) for c in a_cells], [c.log(b_log) for c in b_cells], group, OUTCOME, rng,
                        margins=settings.margins, confidence=settings.confidence)
    return [replace(r, a_endpoint=a_log, b_endpoint=b_log) for r in rows if r.metric != "throughput_per_s"]


def row_label(row: DeltaRow, names: Mapping[str, str] | None = None) -> str:
    """How tables name a row's endpoint: 'POST /campaigns', or 'outcome: POST /campaigns vs completion' (`names`: the
    run's own names of its logs, Run.names)."""
    def name(key: str) -> str:
        return (names or {}).get(key) or label(key)

    if row.a_endpoint or row.b_endpoint:
        return f"{name(row.endpoint)}: {name(row.a_endpoint)} vs {name(row.b_endpoint)}"
    return name(row.endpoint)


def cost_row(a_cells: Sequence[Cell], b_cells: Sequence[Cell], group: str,
             settings: VerdictSettings | None = None) -> DeltaRow | None:
    """B's CPU per campaign (system tiers) against A's, with the block bootstrap of the latency rows over the cells'
    seconds (sum of CPU over sum of campaigns of the seconds drawn); None unless both sides have cpu.csv."""
    a, b = merged_cost(a_cells), merged_cost(b_cells)
    if a is None or b is None or a.total_cpu_ms_per_campaign is None or b.total_cpu_ms_per_campaign is None:
        return None
    settings = settings or VerdictSettings()
    a_value, b_value = a.total_cpu_ms_per_campaign, b.total_cpu_ms_per_campaign
    a_series, b_series = cell_series(a_cells), cell_series(b_cells)
    low = high = float("nan")
    if a_series is not None and b_series is not None:
        rng = new_rng()  # its own stream: adding cost data leaves the latency rows' intervals as they were
        low, high = interval_of(cost_replicates(b_series, rng) / cost_replicates(a_series, rng) - 1,
                                settings.confidence)
    margin = settings.margins.for_metric(COST_METRIC)
    delta = b_value / a_value - 1 if a_value else float("nan")
    row_verdict = decide(low, high, higher_is_better=False, margin=margin)
    repetitions = min(len({c.repetition for c in a_cells}), len({c.repetition for c in b_cells}))
    phase_s = min(sum(c.duration_s for c in cells) / max(len(cells), 1) for cells in (a_cells, b_cells))
    return DeltaRow(group=group, endpoint=COST_SCOPE, metric=COST_METRIC, a=a_value, b=b_value, n_a=a.campaigns,
                    n_b=b.campaigns, delta_pct=round(delta * 100, 2) if a_value else None,
                    ci_low_pct=round(low * 100, 2) if math.isfinite(low) else None,
                    ci_high_pct=round(high * 100, 2) if math.isfinite(high) else None,
                    verdict=row_verdict, note="" if math.isfinite(low) else "no per-second data",
                    confidence=settings.confidence, margin_pct=round(margin * 100, 4),
                    need_factor=spread_factor(delta, low, high, margin) if row_verdict == UNDECIDED else None,
                    repetitions=repetitions, phase_s=phase_s)


def commands_row(a_cells: Sequence[Cell], b_cells: Sequence[Cell], group: str,
                 settings: VerdictSettings | None = None) -> DeltaRow | None:
    """B's Redis commands per campaign against A's (repetitions pooled); its interval the range of B's repetitions
    against A's (analysis/stats/commands.py: a count has no sampling error to bootstrap), none with one repetition a
    side (then undecided). None unless both sides have counts."""
    a, b = merged_commands(a_cells), merged_commands(b_cells)
    if a is None or b is None or a.per_campaign is None or b.per_campaign is None:
        return None
    settings = settings or VerdictSettings()
    low, high = ratio_range(repetition_values(a_cells), repetition_values(b_cells))
    margin = settings.margins.for_metric(COMMANDS_METRIC)
    delta = b.per_campaign / a.per_campaign - 1 if a.per_campaign else float("nan")
    repetitions = min(len({c.repetition for c in a_cells}), len({c.repetition for c in b_cells}))
    phase_s = min(sum(c.duration_s for c in cells) / max(len(cells), 1) for cells in (a_cells, b_cells))
    return DeltaRow(group=group, endpoint=COMMANDS_SCOPE, metric=COMMANDS_METRIC, a=a.per_campaign, b=b.per_campaign,
                    n_a=a.campaigns, n_b=b.campaigns, delta_pct=round(delta * 100, 2) if a.per_campaign else None,
                    ci_low_pct=round(low * 100, 2) if math.isfinite(low) else None,
                    ci_high_pct=round(high * 100, 2) if math.isfinite(high) else None,
                    verdict=decide(low, high, higher_is_better=False, margin=margin),
                    note=RANGE_NOTE if math.isfinite(low) else "one repetition a side: no range",
                    confidence=settings.confidence, margin_pct=round(margin * 100, 4), repetitions=repetitions,
                    phase_s=phase_s)


def _point(logs: Sequence[Intervals], merged: Intervals) -> dict[str, float]:
    seconds = sum(log.length_s.sum() for log in logs)
    values = value_at_percentiles(merged.merged(), PERCENTILES)
    point: dict[str, float] = {"throughput_per_s": round(merged.total_count / seconds, 3) if seconds else 0.0}
    point.update({metric: float(v) for (metric, _), v in zip(METRICS[1:], values, strict=True)})
    return point


def _replicate(replicates: Replicates, metric: str, percentiles: Sequence[float]) -> np.ndarray:
    if metric == "throughput_per_s":
        return replicates.throughput_per_s
    column = list(percentiles).index(float(dict(METRICS)[metric] or 0.0))
    return replicates.values_us[:, column].astype(float)


def compare_designs(run: Run | Path | str, *, baseline: str | None = None, candidate: str | None = None,
                    kinds: Sequence[str] = ("steady",), phases: Sequence[str] | None = None) -> Comparison:
    """Candidate vs baseline design inside one run (by default the run's designs B and A, Run.candidate and
    Run.baseline), per phase of the given kinds present for both designs (or only the named phases)."""
    run = run if isinstance(run, Run) else load_run(run)
    settings = run_settings(run)
    baseline = baseline if baseline is not None else run.baseline
    candidate = candidate if candidate is not None else run.candidate
    if baseline is None or candidate is None:
        ran = baseline or "no design"
        return Comparison(title=f"run {run.id}: {ran} alone", a_label=baseline or "A", b_label=candidate or "B",
                          rows=(), missing=(f"this run has one design ({ran}): nothing to compare it with",),
                          method=method(settings), confidence=settings.confidence)
    rows: list[DeltaRow] = []
    missing: list[str] = []
    for design in (baseline, candidate):
        if not any(c.design == design for c in run.cells):
            missing.append(f"no {design} cells in this run")
    if phases is None:
        phases = list(dict.fromkeys(c.phase for c in run.cells if c.kind in kinds))
    rng = new_rng()
    for phase in phases:
        a_cells = run.select(design=baseline, phase=phase)
        b_cells = run.select(design=candidate, phase=phase)
        if not a_cells or not b_cells:
            if not missing:
                missing.append(f"phase {phase}: only {(a_cells or b_cells)[0].design} ran it")
            continue
        found = compare_cells(a_cells, b_cells, phase, CREATE, rng, settings)
        if not found:
            missing.append(f"phase {phase}: no successful {label(CREATE)} recorded on one side")
        rows += found
        rows += outcome_rows(a_cells, b_cells, phase, settings)
        rows += [row for row in [cost_row(a_cells, b_cells, phase, settings),
                                 commands_row(a_cells, b_cells, phase, settings)] if row is not None]
    if not phases:
        missing.append(f"no cells of kind {', '.join(kinds)} in this run")
    return Comparison(title=f"{candidate} vs {baseline} (run {run.id})", a_label=baseline, b_label=candidate,
                      rows=tuple(rows), missing=tuple(missing), method=method(settings),
                      confidence=settings.confidence, names=run.names)


def run_settings(run: Run) -> VerdictSettings:
    """The margins and interval level a run's experiment declares (defaults where it declares none)."""
    return verdict_settings(run.record.experiment.resolved, source=str(run.dir / MANIFEST_FILE))


def compare_runs(a: Run | Path | str, b: Run | Path | str) -> Comparison:
    """Run B against run A, per design and steady phase present in both: POST latency, and completion latency
    where the design recorded it; decided by run B's margins, on 95% intervals (two runs are one look)."""
    run_a = a if isinstance(a, Run) else load_run(a)
    run_b = b if isinstance(b, Run) else load_run(b)
    settings = VerdictSettings(margins=run_settings(run_b).margins)
    keys_a = list(dict.fromkeys((c.design, c.phase) for c in run_a.cells if c.kind == "steady"))
    keys_b = list(dict.fromkeys((c.design, c.phase) for c in run_b.cells if c.kind == "steady"))
    rows: list[DeltaRow] = []
    missing = [f"{d} {p}: only in {run_a.id}" for d, p in keys_a if (d, p) not in keys_b]
    missing += [f"{d} {p}: only in {run_b.id}" for d, p in keys_b if (d, p) not in keys_a]
    rng = new_rng()
    for design, phase in [k for k in keys_a if k in keys_b]:
        a_cells = run_a.select(design=design, phase=phase)
        b_cells = run_b.select(design=design, phase=phase)
        for endpoint in (CREATE, COMPLETION):
            rows += compare_cells(a_cells, b_cells, f"{design} {phase}", endpoint, rng, settings)
        rows += [row for row in [cost_row(a_cells, b_cells, f"{design} {phase}", settings),
                                 commands_row(a_cells, b_cells, f"{design} {phase}", settings)] if row is not None]
    return Comparison(title=f"{run_b.id} vs {run_a.id}", a_label=run_a.id, b_label=run_b.id, rows=tuple(rows),
                      missing=tuple(missing), method=method(settings), confidence=settings.confidence,
                      names=run_b.names)


def write_comparison(comparison: Comparison, path: Path, extra: dict[str, Any] | None = None) -> Path:
    data = comparison.to_dict() | (extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "throughput_per_s":
        return f"{value:,.1f}/s"
    if metric == COST_METRIC:
        return f"{value:,.2f} ms CPU" if value < 100 else f"{value:,.0f} ms CPU"
    if metric == COMMANDS_METRIC:
        return f"{value:,.2f} commands"
    return f"{value / 1000:,.1f} ms" if value >= 1000 else f"{value:,.0f} µs"


def format_delta(row: DeltaRow) -> tuple[str, str]:
    if row.delta_pct is None:
        return "-", "-"
    ci = "-" if row.ci_low_pct is None else f"[{row.ci_low_pct:+.1f}%, {row.ci_high_pct:+.1f}%]"
    return f"{row.delta_pct:+.1f}%", ci


def level_text(confidence: float) -> str:
    """'95%', '99%', '98.3%': an interval's level as column headings and sentences name it."""
    return f"{confidence * 100:.3g}%"


def verdict_text(row: DeltaRow) -> str:
    """'better', 'equivalent (±10%)', 'undecided (few samples; +3 repetitions)': the verdict column."""
    notes = [row.note] if row.note else []
    if row.verdict == EQUIVALENT and row.margin_pct is not None:
        notes.append(f"±{row.margin_pct:g}%")
    need = row.need
    if need is not None:
        notes.append(f"+{need.more_repetitions} repetitions" if need.factor <= 100 else "repeating will not decide it")
    return row.verdict + (f" ({'; '.join(notes)})" if notes else "")


def format_comparison(comparison: Comparison, *, width: int = 120, color: bool = False) -> str:
    """The delta table as terminal text (rich), the method under it; `color` adds ANSI colours."""
    table = Table(title=comparison.title, box=box.SIMPLE_HEAD, title_justify="left")
    for name, justify in (("phase", "left"), ("endpoint", "left"), ("metric", "left"), (comparison.a_label, "right"),
                          (comparison.b_label, "right"), ("delta", "right"),
                          (f"{level_text(comparison.confidence)} CI", "right"), ("verdict", "left"),
                          ("n (A / B)", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    styles = {BETTER: "green", WORSE: "red", EQUIVALENT: "cyan", UNDECIDED: "dim"}
    for row in comparison.rows:
        delta, ci = format_delta(row)
        table.add_row(row.group, row_label(row, comparison.names), LABELS[row.metric], format_value(row.metric, row.a),
                      format_value(row.metric, row.b), delta, ci, verdict_text(row), f"{row.n_a:,} / {row.n_b:,}",
                      style=styles.get(row.verdict))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    if comparison.rows:
        console.print(table)
    else:
        console.print(f"{comparison.title}: nothing to compare")
    for line in comparison.missing:
        console.print(f"not compared: {line}")
    console.print(f"method: {comparison.method}", soft_wrap=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip().splitlines()) + "\n"


def comparison_document(comparison: Comparison) -> str:
    """The whole comparison as Markdown, for output that is not a terminal: nothing is cut to fit a width."""
    lines = [f"## {comparison.title}", "", comparison_markdown(comparison), ""]
    lines += [f"not compared: {line}" for line in comparison.missing]
    lines.append(f"method: {comparison.method}")
    return "\n".join(lines) + "\n"


def comparison_markdown(comparison: Comparison) -> str:
    """The delta table as GitHub-flavoured Markdown."""
    lines = [f"| phase | endpoint | metric | {comparison.a_label} | {comparison.b_label} | delta | "
             f"{level_text(comparison.confidence)} CI | verdict | n (A / B) |", "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for row in comparison.rows:
        delta, ci = format_delta(row)
        text = verdict_text(row)
        mark = f"**{text}**" if row.verdict in (BETTER, WORSE) else text
        lines.append(f"| {row.group} | {row_label(row, comparison.names)} | {LABELS[row.metric]} | "
                     f"{format_value(row.metric, row.a)} | {format_value(row.metric, row.b)} | {delta} | {ci} | "
                     f"{mark} | {row.n_a:,} / {row.n_b:,} |")
    return "\n".join(lines) if comparison.rows else "_Nothing to compare._"
