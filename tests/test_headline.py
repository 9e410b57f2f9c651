"""The headline tells both halves: what a campaign's owner waits for (the completion where the work is queued, the
answer where it is not) beside the acknowledgement, each with its CI; and capacity is judged on completions too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from analysis.reports.facts import facts
from analysis.reports.render import render
from analysis.reports.tables import capacity_rows
from analysis.stats.capacity import (
    ACKNOWLEDGEMENT,
    COMPLETION_SLO,
    DRAIN,
    StepFigures,
    broken_limits,
    capacity,
    rate_point,
)
from analysis.stats.compare import compare_designs, comparison_markdown
from analysis.stats.headline import equal_load_comparison, headline
from analysis.stats.load import load_run
from analysis.stats.summary import cell_summary
from foundation.format import COMPLETION, COMPLETION_FILE, CREATE, MANIFEST_FILE, OUTCOME, Slo
from tests.analysis_fixtures import CellSpec, Latency, Queue, capacity_specs, write_run

pytestmark = pytest.mark.fast

EQUIVALENCE = HdrHistogram(1, 3_600_000_000, 3)
INLINE = Latency(40_000, 0.6)  # end-to-end: P99 = 40 ms x e^(2.326 x 0.6) = 161 ms
QUEUED_ACK = Latency(8_000, 0.5)
QUEUED_COMPLETION = Latency(120_000, 0.4)  # P99 = 120 ms x e^(2.326 x 0.4) = 304 ms: +89% on inline's


def rank_value(values: np.ndarray, percentile: float) -> int:
    return int(np.sort(values)[max(int(percentile * len(values) / 100 + 0.5), 1) - 1])


def steady(design: str, rep: int) -> CellSpec:
    queued = design == "queued"
    return CellSpec(design, "steady", repetition=rep, rate_per_s=100, duration_s=20,
                    latency=QUEUED_ACK if queued else INLINE, send_lag=None,
                    queue=Queue(completion=QUEUED_COMPLETION) if queued else None)


@pytest.fixture(scope="module")
def both_halves(tmp_path_factory):
    specs = [steady(d, rep) for rep in (1, 2) for d in ("inline", "queued")]
    return write_run(tmp_path_factory.mktemp("halves"), specs)


def test_outcome_rows_set_the_completion_against_the_end_to_end_answer(both_halves):
    run_dir, truth = both_halves
    comparison = compare_designs(run_dir)
    inline = np.concatenate([truth[f"inline.steady.r{r}"][CREATE] for r in (1, 2)])
    completions = np.concatenate([truth[f"queued.steady.r{r}"][COMPLETION] for r in (1, 2)])
    rows = [r for r in comparison.rows if r.endpoint == OUTCOME]
    assert [r.metric for r in rows] == ["p50_us", "p90_us", "p99_us", "p999_us"]  # latency only
    for row, percentile in zip(rows[:3], (50, 90, 99), strict=False):
        assert (row.a_endpoint, row.b_endpoint) == (CREATE, COMPLETION)
        assert EQUIVALENCE.values_are_equivalent(int(row.a), rank_value(inline, percentile))
        assert EQUIVALENCE.values_are_equivalent(int(row.b), rank_value(completions, percentile))
        assert row.n_a == len(inline) and row.n_b == len(completions)
        assert row.ci_low_pct <= row.delta_pct <= row.ci_high_pct
    p99 = comparison.row("p99_us", "steady", endpoint=OUTCOME)
    true_pct = (120 * np.exp(2.3263 * 0.4) / (40 * np.exp(2.3263 * 0.6)) - 1) * 100
    assert p99.ci_low_pct <= true_pct <= p99.ci_high_pct and p99.verdict == "worse"
    # The acknowledgement rows are still there, as before.
    assert comparison.row("p99_us", "steady").verdict == "better"


def test_the_comparison_table_names_both_sides_of_the_outcome_row(both_halves):
    run_dir, _ = both_halves
    markdown = comparison_markdown(compare_designs(run_dir))
    assert "| steady | outcome: request vs completion | P99 |" in markdown
    assert "| steady | request | P99 |" in markdown


def test_the_headline_tells_the_completion_beside_the_acknowledgement(both_halves):
    run_dir, _ = both_halves
    run = load_run(run_dir)
    comparison = equal_load_comparison(run)
    outcome, ack = comparison.row("p99_us", "steady", endpoint=OUTCOME), comparison.row("p99_us", "steady")
    text = headline(capacity(run), comparison, run)
    assert (f"at equal load (steady, 100/s) queued's completion P99 is {outcome.delta_pct:.0f}% higher than inline's "
            f"end-to-end P99 (95% CI {outcome.ci_low_pct:+.0f}%…{outcome.ci_high_pct:+.0f}%); queued's "
            f"acknowledgement P99 is {abs(ack.delta_pct):.0f}% lower than inline's end-to-end P99 (95% CI "
            f"{ack.ci_low_pct:+.0f}%…{ack.ci_high_pct:+.0f}%)") in text


def test_with_the_queueing_design_as_baseline_the_sides_swap(tmp_path):
    specs = [steady(d, 1) for d in ("queued", "inline")]
    run_dir, _ = write_run(tmp_path, specs, designs=("queued", "inline"))
    run = load_run(run_dir)
    text = headline(capacity(run), equal_load_comparison(run), run)
    assert "inline's end-to-end P99 is " in text and "% lower than queued's completion P99 (95% CI" in text
    assert "; inline's end-to-end P99 is " in text and "% higher than queued's acknowledgement P99 (95% CI" in text


def test_without_queue_data_there_is_no_outcome_row_and_the_sentence_is_one_half(tmp_path):
    specs = [CellSpec(d, "steady", rate_per_s=100, duration_s=10, latency=INLINE if d == "inline" else QUEUED_ACK,
                      send_lag=None) for d in ("inline", "queued")]
    run_dir, _ = write_run(tmp_path, specs)
    run = load_run(run_dir)
    comparison = equal_load_comparison(run)
    assert not [r for r in comparison.rows if r.endpoint == OUTCOME]
    assert "at equal load (steady, 100/s) P99 is " in headline(capacity(run), comparison, run)


# -- capacity judged on completions --------------------------------------------------------------------------------

def late_completion_specs(completion_slow_above: int) -> list:
    """Capacity steps whose acknowledgement and backlog hold at every rate, but whose completions get slow past a
    rate: the owner waits longer than the SLO allows while the 202s stay fast."""
    specs = capacity_specs("inline", [40, 80, 120, 160], p99_budget_rate=120)
    queued = capacity_specs("queued", [40, 80, 120, 160], p99_budget_rate=160)
    for spec in queued:
        if spec.rate_per_s > completion_slow_above:
            assert spec.queue is not None
            spec.queue.completion = Latency(900_000, 0.3)
    return specs + queued


def test_a_completion_p99_past_its_slo_bounds_the_capacity(tmp_path):
    run_dir, _ = write_run(tmp_path, late_completion_specs(80), slo={"p99_ms": 500.0, "error_rate": 0.01,
                                                                     "completion_p99_ms": 1000.0})
    cap = capacity(load_run(run_dir))
    queued = cap.designs["queued"]
    # 900 ms median, sigma 0.3: P99 ~1.8 s, past the 1 s completion SLO from 120/s on.
    assert queued.ack_capacity_per_s == 160 and queued.drain_capacity_per_s == 160
    assert queued.completion_capacity_per_s == 80 and queued.capacity_per_s == 80
    assert queued.bound_by == (COMPLETION_SLO,)
    assert [p.within_slo for p in queued.points] == [True, True, False, False]
    assert cap.designs["inline"].bound_by == (ACKNOWLEDGEMENT,)
    rows = {r["design"]: r for r in capacity_rows(cap)}
    assert rows["queued"]["bound by"] == "completion" and rows["queued"]["capacity"] == "[80, 120)/s ±25.0%"
    assert rows["queued"]["acknowledgement"] == "≥ 160/s (not reached: the completion broke first)"
    assert rows["queued"]["completion"] == "[80, 120)/s ±25.0%"
    assert rows["inline"]["bound by"] == "acknowledgement" and rows["inline"]["drain"] == "-"
    text = headline(cap, equal_load_comparison(load_run(run_dir), cap), load_run(run_dir))
    assert text.startswith("queued sustains 33% less throughput at P99 ≤ 500 ms and completion P99 ≤ 1000 ms "
                           "([80, 120)/s ±25.0% vs [120, 160)/s ±16.7%: a change of -50%…+0%, worse)")
    assert "its completion P99 stays within 1000 ms only up to 80/s" in text


def test_the_completion_slo_defaults_to_the_request_slo(tmp_path):
    run_dir, _ = write_run(tmp_path, late_completion_specs(40))  # SLO P99 500 ms, no completion_p99_ms
    cap = capacity(load_run(run_dir))
    assert cap.slo.completion_ms == 500.0
    assert cap.designs["queued"].completion_capacity_per_s == 40  # ~300 ms holds, ~1.8 s does not


def test_campaigns_not_final_after_the_drain_break_the_completion_slo(tmp_path):
    specs = capacity_specs("queued", [40, 80], p99_budget_rate=160)
    run_dir, _ = write_run(tmp_path, specs, designs=("queued",))
    accepted = 80 * 8
    (run_dir / "cells" / "queued.capacity-0080.r1" / COMPLETION_FILE).write_text(json.dumps(
        {"started_at": 0, "stopped_at": 1, "accepted": accepted, "completed": accepted - 20, "failed": 0,
         "pending": 20}))
    queued = capacity(load_run(run_dir)).designs["queued"]
    assert queued.points[1].broken == (COMPLETION_SLO,) and queued.completion_capacity_per_s == 40


def test_the_rule_by_the_numbers():
    slo = Slo(p99_ms=500, error_rate=0.01, completion_p99_ms=1500)
    fine = StepFigures(count=100, error_rate=0.0, p99_us=20_000, queued=True, sustainable=True, completion_count=100,
                       completion_p99_us=1_400_000, accepted=100, pending=0)
    assert broken_limits(fine, slo) == ()
    assert broken_limits(StepFigures(100, 0.0, 20_000), slo) == ()  # no queue data: the answer alone
    late = StepFigures(100, 0.0, 20_000, True, True, 100, 1_600_000, 100, 0)
    assert broken_limits(late, slo) == (COMPLETION_SLO,)
    assert broken_limits(StepFigures(100, 0.02, 600_000, True, False, 0, None, 100, 100), slo) == (
        ACKNOWLEDGEMENT, DRAIN, COMPLETION_SLO)
    assert broken_limits(StepFigures(100, 0.0, 20_000, True, None, 98, 900_000, 100, 2), slo) == (COMPLETION_SLO,)
    assert broken_limits(StepFigures(100, 0.0, 20_000, True, None, 99, 900_000, 100, 1), slo) == ()


def test_the_runner_stops_on_the_rule_analysis_judges_by(tmp_path):
    """The runner judges the CellSummary it has just written; analysis judges the cells: the same verdicts."""
    run_dir, _ = write_run(tmp_path, late_completion_specs(80), slo={"p99_ms": 500.0, "error_rate": 0.01,
                                                                     "completion_p99_ms": 1000.0})
    run = load_run(run_dir)
    slo = run.record.experiment.slo
    assert slo is not None
    for cell in run.select(kind="capacity"):
        summary = cell_summary(cell.dir, cell.record)
        assert broken_limits(StepFigures.of_summary(summary), slo) == rate_point([cell], slo).broken, cell.id


# -- the report -------------------------------------------------------------------------------------------------------

def test_the_report_states_the_polling_mode_and_the_completion_slo(tmp_path):
    run_dir, _ = write_run(tmp_path, [steady(d, 1) for d in ("inline", "queued")],
                           slo={"p99_ms": 500.0, "error_rate": 0.01, "completion_p99_ms": 2000.0})
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    manifest["experiment"]["layout"]["poll"] = "wait"
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    stated = dict(facts(load_run(run_dir)))
    assert stated["Client polling"].startswith("wait: the client of a 202 sent GET /campaigns/{id}?wait=N")
    assert "completion P99 ≤ 2000.0 ms" in stated["SLO"]
    markdown = render(run_dir).with_suffix(".md").read_text()
    assert "**Client polling**: wait:" in markdown
    assert "queued's completion P99 is" in markdown.splitlines()[2]


def test_a_manifest_without_a_polling_mode_was_polled_on_a_timer(both_halves):
    run_dir, _ = both_halves
    assert dict(facts(load_run(run_dir)))["Client polling"] == (
        "interval: the client of a 202 sent GET /campaigns/{id} every 1 s until the campaign was final")
