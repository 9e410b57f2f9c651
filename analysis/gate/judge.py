"""The performance regression gate's judgement: a results folder, a baseline and rules in, a verdict out.

Pure: it reads a loaded run and a loaded baseline and returns a Verdict (analysis/gate/verdict.py); running the
experiment is the harness's job (offpath/gate.py), writing the verdict's files analysis/gate/verdict_formats.py's. The
rules, and the reasoning behind their limits, are in analysis/gate/rules.toml (loaded by analysis/gate/rules.py).

Noise-aware by design: the runner interleaves repetitions (inline, queued, inline, queued), and every delta carries
a 95% confidence interval from a circular-block bootstrap of 1-second interval histograms (analysis/stats/bootstrap.py).
Bootstrap rather than Mann-Whitney: the rules are about percentiles, which a rank test does not estimate; a run keeps
HDR interval histograms, not per-request samples; and resampling whole seconds in blocks respects the
autocorrelation of latencies that a per-request test would take for independent values.

Decisions, rule by rule (status pass | fail | error | skipped):
- regression (run against baseline) compares the *fastest repetition* of each side: the lowest per-repetition
  percentile, and per bootstrap replicate the lowest of the repetitions' replicates. Another process on the machine
  only ever adds latency, so one disturbed repetition is outvoted by an undisturbed one, while a regression of the
  code slows every repetition. Fails when the point delta is past the limit *and* the CI excludes 0. The CI knows
  the noise inside the runs, not the drift between them: the limit absorbs that (calibrated with
  benchmarks/gate_discrimination.py). A repetition must have 10 values beyond the percentile, or it is not judged.
- advantage (design against design, inside the run): the repetitions pooled (analysis/compare.compare_logs), so the
  tails have all their values; fails when the measured advantage is below the minimum (its CI is shown). Not "only
  when the whole CI lies below": a run whose P99s overlap must not pass as keeping an advantage. Side by side in one
  run, so immune to drift between runs.
- error_rate, throughput (held vs offered): absolute, inside the run, repetitions pooled. sustainable (the backlog
  of a design that queues its work): fails when the backlog grew in every repetition (one that grew alone is shown,
  not failed).
- cost (CPU per campaign) and count (Redis commands per campaign) are judged against a base commit measured in the
  same job only (`--against`), repetitions pooled; skipped against a stored baseline, which keeps neither. A count
  has no sampling error: its limit is in commands per campaign, and it fails when the increase is past the limit and
  every candidate repetition counted more than every base repetition.
- error: the rule could not be judged (no data, too few values beyond a percentile). skipped: no baseline given.
Verdict: regression if any rule fails; else harness error if anything could not be judged; else pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.gate.baseline import Baseline, mismatches, run_context, run_facts
from analysis.gate.rules import Rule, RuleSet
from analysis.gate.verdict import Outcome, Verdict, harness_error
from analysis.stats.bootstrap import interval_of, new_rng, resample
from analysis.stats.commands import ALL, EACH, count_changes, counted
from analysis.stats.compare import MIN_TAIL_SAMPLES, compare_logs, format_value
from analysis.stats.cost import cell_series, cost_replicates
from analysis.stats.histogram import Intervals, percentile_key, value_at_percentiles
from analysis.stats.load import Cell, Run
from analysis.stats.summary import backlog_health, driver_bottleneck, latency_figures, merged_figures
from foundation.format import COMPLETION, CREATE, SEND_LAG, SYSTEM_TIERS, label


@dataclass(frozen=True)
class Fastest:
    """One side of a regression rule: the percentile of each repetition, the fastest, and its bootstrap replicates."""

    repetitions_us: tuple[int, ...]
    counts: tuple[int, ...]
    replicates_us: np.ndarray  # (B,) per replicate, the lowest of the repetitions' replicate percentiles

    @property
    def value_us(self) -> int:
        return min(self.repetitions_us)


def fastest(logs: Sequence[Intervals], percentile: float) -> Fastest:
    """Each repetition bootstrapped on its own (a fixed seed: the same run always gets the same verdict)."""
    rng = new_rng()
    replicates = [resample([log], [percentile], rng).values_us[:, 0] for log in logs]
    return Fastest(repetitions_us=tuple(int(value_at_percentiles(log.merged(), [percentile])[0]) for log in logs),
                   counts=tuple(log.total_count for log in logs),
                   replicates_us=np.min(np.vstack(replicates), axis=0).astype(float))


def judge(run: Run, rules: RuleSet, baseline: Baseline | None, base_run: Run | None = None) -> Verdict:
    """`base_run`: the base commit's run the baseline was made from (`--against`); cost rules need its CPU."""
    name = baseline.name if baseline is not None else None
    rules = rules.against(run.baseline)
    problems = harness_problems(run, rules, baseline)
    if problems:
        return harness_error(problems, rules, run_id=run.id, run_dir=str(run.dir), baseline=name)
    context = _Context(run, rules.phase, baseline, base_run)
    outcomes = tuple(_JUDGES[rule.kind](rule, context) if baseline is not None or not rule.needs_baseline
                     else Outcome(rule, "skipped", "not judged: no baseline to judge against") for rule in rules.rules)
    statuses = {o.status for o in outcomes}
    status = "regression" if "fail" in statuses else ("error" if "error" in statuses or statuses == {"skipped"}
                                                      else "pass")
    errors = ("no rule could be judged without a baseline",) if statuses == {"skipped"} else ()
    return Verdict(status=status, outcomes=outcomes, errors=errors, notes=tuple(notes(run, rules.phase, baseline)),
                   run_id=run.id, run_dir=str(run.dir), baseline=name, phase=rules.phase)


def harness_problems(run: Run, rules: RuleSet, baseline: Baseline | None) -> list[str]:
    """Why this run cannot be judged with these rules and this baseline (empty: it can)."""
    if run.incomplete_reason is not None:
        return [f"run {run.id} is incomplete ({run.incomplete_reason}); an incomplete run is never judged"]
    problems = []
    judged = [r for r in rules.rules if baseline is not None or not r.needs_baseline]
    problems += [f"rule {r.name!r} names no reference design and run {run.id} declares none to judge it against; "
                 "give the rule a `reference`" for r in judged if r.kind == "advantage" and not r.reference]
    for design in dict.fromkeys(d for r in judged for d in r.designs):
        cells = run.select(kind="steady", design=design, phase=rules.phase)
        if not cells:
            problems.append(f"run {run.id} has no steady {design} cells in phase {rules.phase!r}, which the rules "
                            "judge; run the gate experiment (offpath/experiments/gate.toml) or pass its results")
        elif any(c.record.status != "complete" for c in cells):
            problems.append(f"run {run.id}: a {design} cell of phase {rules.phase!r} did not complete")
    if baseline is not None:
        differences = mismatches(baseline.facts, run_facts(run))
        if differences:
            problems.append(f"baseline {baseline.name!r} (run {baseline.run_id}) does not match run {run.id}: "
                            + "; ".join(differences) + ". Judge a run of the same experiment on the same machine, or "
                            "record a baseline for this one with `offpath gate --update-baseline`")
        for rule in judged:
            if rule.needs_baseline and not baseline.logs(rule.design, rules.phase, rule.endpoint):
                problems.append(f"baseline {baseline.name!r} has no {rule.design} {rule.endpoint} histograms for "
                                f"phase {rules.phase!r} (rule {rule.name!r})")
    return problems


def notes(run: Run, phase: str, baseline: Baseline | None) -> list[str]:
    """What a reviewer should know beside the rules: what differs from the baseline, a lagging load generator."""
    out = []
    if baseline is not None:
        now, then = run_context(run), baseline.context
        profile, base_profile = now.get("experiment_profile"), then.get("experiment_profile")
        if profile != base_profile:
            out.append(f"profile {profile!r} judged against a baseline recorded with {base_profile!r}")
        sha, base_sha = (now.get("git") or {}).get("sha"), (then.get("git") or {}).get("sha")
        if sha != base_sha:
            out.append(f"baseline recorded at git {str(base_sha)[:10]} (run {baseline.run_id}, {baseline.created_at})"
                       f"; this run at {str(sha)[:10]}" + (" with uncommitted changes"
                                                           if (now.get("git") or {}).get("dirty") else ""))
    lagged = [c.id for c in run.select(kind="steady", phase=phase)
              if c.log(SEND_LAG).n_intervals and driver_bottleneck(latency_figures(c.log(SEND_LAG).merged()))]
    if lagged:
        out.append(f"the load generator lagged in {', '.join(lagged)} (send lag P99 over the limit); latencies "
                   "still count from intended send times, so nothing is hidden, but the offered rate was lower")
    return out


class _Context:
    """The run's steady cells of the judged phase, by design, in repetition order."""

    def __init__(self, run: Run, phase: str, baseline: Baseline | None, base_run: Run | None = None):
        self.run, self.phase, self.baseline, self.base_run = run, phase, baseline, base_run

    def cells(self, design: str, run: Run | None = None) -> list[Cell]:
        return sorted((run or self.run).select(kind="steady", design=design, phase=self.phase),
                      key=lambda c: c.repetition)

    def logs(self, design: str, endpoint: str) -> list[Intervals]:
        return [c.log(endpoint) for c in self.cells(design)]


def _judge_regression(rule: Rule, context: _Context) -> Outcome:
    assert context.baseline is not None
    reference = context.baseline.label
    sides = {f"the {reference}": context.baseline.logs(rule.design, context.phase, rule.endpoint),
             "this run": context.logs(rule.design, rule.endpoint)}
    for side, logs in sides.items():
        empty = [number for number, log in enumerate(logs, start=1) if not log.total_count]
        if empty:
            return Outcome(rule, "error", f"repetition {empty[0]} of {rule.design} recorded no successful "
                           f"{label(rule.endpoint)} values in {side}")
        thinnest = min(log.total_count for log in logs)
        if thinnest * (1 - rule.percentile / 100) < MIN_TAIL_SAMPLES:
            return Outcome(rule, "error", f"few samples: a repetition of {thinnest:,} values in {side} leaves fewer "
                           f"than {MIN_TAIL_SAMPLES} beyond {rule.metric.upper()}; lengthen the gate experiment or "
                           "judge a lower percentile")
    base, now = fastest(sides[f"the {reference}"], rule.percentile), fastest(sides["this run"], rule.percentile)
    delta = (now.value_us / base.value_us - 1) * 100
    low, high = interval_of(now.replicates_us / base.replicates_us - 1)
    low_pct, high_pct = (round(low * 100, 2), round(high * 100, 2)) if math.isfinite(low) else (None, None)
    worse = delta > rule.limit and low_pct is not None and low_pct > 0
    key = percentile_key(rule.percentile)
    measured = (f"{format_value(key, now.value_us)} vs {format_value(key, base.value_us)} {reference} "
                f"({_pct(delta)}, 95% CI {_ci(low_pct, high_pct)}; fastest of {len(now.counts)} repetitions: "
                + ", ".join(format_value(key, v) for v in now.repetitions_us) + ")")
    figures = {"statistic": "fastest repetition", "baseline_value": base.value_us, "value": now.value_us,
               "delta_pct": round(delta, 2), "ci_low_pct": low_pct, "ci_high_pct": high_pct,
               "repetitions_us": list(now.repetitions_us), "baseline_repetitions_us": list(base.repetitions_us),
               "n": sum(now.counts), "n_baseline": sum(base.counts)}
    return Outcome(rule, "fail" if worse else "pass", measured, figures)


def _judge_advantage(rule: Rule, context: _Context) -> Outcome:
    a, b = context.logs(rule.reference, rule.endpoint), context.logs(rule.design, rule.endpoint)
    rows = compare_logs(a, b, context.phase, rule.endpoint, new_rng())
    row = next((r for r in rows if r.metric == percentile_key(rule.percentile)), None)
    if row is None:
        side = rule.design if not Intervals.concat(b).total_count else rule.reference
        return Outcome(rule, "error", f"no successful {label(rule.endpoint)} values recorded for {side}")
    if row.note:
        return Outcome(rule, "error", f"{row.note}: {min(row.n_a, row.n_b):,} values leave fewer than "
                       f"{MIN_TAIL_SAMPLES} beyond {rule.metric.upper()}; lengthen the gate experiment or judge a "
                       "lower percentile")
    advantage = -row.delta_pct if row.delta_pct is not None else None
    low = -row.ci_high_pct if row.ci_high_pct is not None else None
    high = -row.ci_low_pct if row.ci_low_pct is not None else None
    lost = advantage is None or advantage < rule.limit
    key = row.metric
    measured = (f"{rule.design} {format_value(key, row.b)} vs {rule.reference} {format_value(key, row.a)}: "
                f"{_pct(advantage, sign=False)} below (95% CI {_ci(low, high, sign=False)}; repetitions pooled)")
    figures = {"statistic": "repetitions pooled", "value": row.b, "reference_value": row.a, "advantage_pct": advantage,
               "ci_low_pct": low, "ci_high_pct": high, "n": row.n_b, "n_reference": row.n_a}
    return Outcome(rule, "fail" if lost else "pass", measured, figures)


def _judge_error_rate(rule: Rule, context: _Context) -> Outcome:
    cells = context.cells(rule.design)
    post = merged_figures(cells, CREATE)
    if rule.endpoint == COMPLETION:
        failed = sum(int(c.queue["campaigns_failed_total"].iloc[-1]) for c in cells
                     if c.queue is not None and not c.queue.empty)
        errors, total, what = failed, int(post["count"]), "accepted campaigns ended failed"
    else:
        errors, total, what = int(post["errors"]), int(post["count"]) + int(post["errors"]), "requests failed"
    if total == 0:
        return Outcome(rule, "error", f"no {label(rule.endpoint)} requests recorded for {rule.design}")
    rate = errors / total
    figures = {"errors": errors, "n": total, "error_rate": rate}
    return Outcome(rule, "fail" if rate > rule.limit else "pass", f"{errors:,} of {total:,} {what} ({rate:.2%})",
                   figures)


def _judge_throughput(rule: Rule, context: _Context) -> Outcome:
    cells = context.cells(rule.design)
    offered = cells[0].offered_rate_per_s
    if not offered:
        return Outcome(rule, "error", f"phase {context.phase!r} is closed-model: no offered rate to hold")
    held = float(merged_figures(cells, CREATE)["throughput_per_s"])
    held_pct = held / offered * 100
    figures = {"throughput_per_s": round(held, 3), "offered_rate_per_s": offered, "held_pct": round(held_pct, 2)}
    return Outcome(rule, "fail" if held_pct < rule.limit else "pass",
                   f"{held:,.1f}/s of {offered:g}/s offered ({held_pct:.1f}%)", figures)


def _judge_sustainable(rule: Rule, context: _Context) -> Outcome:
    verdicts, slopes = [], []
    for cell in context.cells(rule.design):
        queue = backlog_health(cell, float(cell.offered_rate_per_s or 0.0))
        verdicts.append(None if queue is None else queue.sustainable)
        slopes.append(None if queue is None else queue.backlog_slope_per_s)
    slope_text = ", ".join("?" if s is None else f"{s:+.2f}" for s in slopes)
    figures = {"backlog_slope_per_s": slopes, "sustainable": verdicts}
    if None in verdicts:
        return Outcome(rule, "error", f"too few queue samples to judge the backlog ({slope_text})", figures)
    # As against the baseline: a design that cannot keep up grows its backlog in every repetition; one repetition
    # that grew alone met something else on the machine. It is still shown, never hidden.
    grew = [number for number, ok in enumerate(verdicts, start=1) if not ok]
    if grew and len(grew) == len(verdicts):
        return Outcome(rule, "fail", f"backlog growing in every repetition (slopes {slope_text} jobs/s)", figures)
    if grew:
        return Outcome(rule, "pass", f"backlog grew in repetition {', '.join(map(str, grew))} only (slopes "
                       f"{slope_text} jobs/s): not in every repetition, so not the design", figures)
    return Outcome(rule, "pass", f"backlog steady (slopes {slope_text} jobs/s per repetition)", figures)


def _judge_cost(rule: Rule, context: _Context) -> Outcome:
    """CPU ms per campaign of a tier, candidate against base: CPU and campaigns pooled over the repetitions (never
    ratios averaged), the CI from the per-second series bootstrapped in blocks per repetition (analysis/stats/cost.py).
    CPU time is what the code spends, not how long it waited: another process on the machine moves it far less than
    latency, so a pooled figure, not the fastest repetition."""
    if context.base_run is None:
        return Outcome(rule, "skipped", "not judged: CPU per campaign is judged against a base commit measured in the "
                       "same job (--against); stored baselines keep no CPU accounting")
    tiers = SYSTEM_TIERS if rule.tier == "system" else (rule.tier,)
    sides = {"base": context.cells(rule.design, context.base_run), "candidate": context.cells(rule.design)}
    figures_of, replicates = {}, {}
    for side, cells in sides.items():
        series = cell_series(cells, tiers)
        if not series or not sum(float(s.campaigns.sum()) for s in series):
            return Outcome(rule, "error", f"the {side}'s {rule.design} cells have no CPU accounting or no campaigns")
        figures_of[side] = 1000 * sum(float(s.cpu_s.sum()) for s in series) / sum(float(s.campaigns.sum())
                                                                                   for s in series)
        replicates[side] = cost_replicates(series, new_rng())
    base, now = figures_of["base"], figures_of["candidate"]
    delta = (now / base - 1) * 100 if base > 0 else math.inf
    low, high = interval_of(replicates["candidate"] / replicates["base"] - 1)
    low_pct, high_pct = (round(low * 100, 2), round(high * 100, 2)) if math.isfinite(low) else (None, None)
    worse = delta > rule.limit and low_pct is not None and low_pct > 0
    measured = (f"{rule.tier} {now:.2f} vs {base:.2f} ms CPU per campaign base ({_pct(delta)}, 95% CI "
                f"{_ci(low_pct, high_pct)}; repetitions pooled)")
    figures = {"statistic": "repetitions pooled", "tier": rule.tier, "baseline_value": round(base, 4),
               "value": round(now, 4), "delta_pct": round(delta, 2), "ci_low_pct": low_pct, "ci_high_pct": high_pct}
    return Outcome(rule, "fail" if worse else "pass", measured, figures)


def _judge_count(rule: Rule, context: _Context) -> Outcome:
    """Redis commands per campaign — every command together, one kind, or each kind on its own (`command`) — candidate
    against base, commands and campaigns pooled over the repetitions. Counted, not sampled, so no bootstrap
    (analysis/stats/commands.py): a count fails when its increase is past the limit, in commands per campaign, and every
    candidate repetition counted more than every base one (with one repetition a side, the increase alone decides).
    With `each`, the kind with the largest increase past the limit decides (else the largest increase is shown)."""
    if context.base_run is None:
        return Outcome(rule, "skipped", "not judged: Redis commands per campaign are judged against a base commit "
                       "measured in the same job (--against); stored baselines keep no counts")
    sides = {}
    for side, run in (("base", context.base_run), ("candidate", context.run)):
        found = counted(context.cells(rule.design, run))
        if isinstance(found, str):
            return Outcome(rule, "error", f"the {side}'s {rule.design} cells have no Redis command counts ({found})")
        sides[side] = found
    changes = count_changes(sides["base"], sides["candidate"], rule.command)
    past = [change for change in changes if change.past(rule.limit)]
    change = (past or changes)[0]
    low, high = change.range
    what = "Redis commands" if change.command == ALL else f"{change.command} commands"
    spread = f"range of repetitions [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else "one repetition a side"
    measured = f"{change.value:.2f} vs {change.base:.2f} {what} per campaign base ({change.delta:+.2f}, {spread}"
    measured += f"; the largest increase of {len(changes)} kinds)" if rule.command == EACH else "; repetitions pooled)"
    figures = {"statistic": "repetitions pooled", "command": change.command, "baseline_value": round(change.base, 4),
               "value": round(change.value, 4), "delta_per_campaign": round(change.delta, 4),
               "delta_pct": round((change.value / change.base - 1) * 100, 2) if change.base > 0 else None,
               "range_low": round(low, 4) if math.isfinite(low) else None,
               "range_high": round(high, 4) if math.isfinite(high) else None,
               "repetitions": list(change.repetitions), "baseline_repetitions": list(change.base_repetitions),
               "past_limit": [c.command for c in past]}
    return Outcome(rule, "fail" if past else "pass", measured, figures)


_JUDGES: dict[str, Callable[[Rule, _Context], Outcome]] = {
    "regression": _judge_regression, "advantage": _judge_advantage, "error_rate": _judge_error_rate,
    "throughput": _judge_throughput, "sustainable": _judge_sustainable, "cost": _judge_cost, "count": _judge_count,
}


def _pct(value: float | None, sign: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.1f}%" if sign else f"{value:.1f}%"


def _ci(low: float | None, high: float | None, sign: bool = True) -> str:
    return f"[{_pct(low, sign)}, {_pct(high, sign)}]"
