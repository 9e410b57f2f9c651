"""Capacity and the headline: the highest rate within SLO and error budget, told honestly either way."""

from __future__ import annotations

import json

import pytest

from analysis.reports.render import render
from analysis.reports.tables import capacity_ratio_text, capacity_rows
from analysis.stats.capacity import ACKNOWLEDGEMENT, COMPLETION_SLO, DRAIN, DesignCapacity, RatePoint, capacity
from analysis.stats.headline import equal_load_comparison, headline
from analysis.stats.load import load_run
from foundation.format import MANIFEST_FILE
from tests.analysis_fixtures import CellSpec, Latency, capacity_specs, reference_specs, write_run

pytestmark = pytest.mark.fast


def headline_of(run_dir):
    run = load_run(run_dir)
    cap = capacity(run)
    return cap, headline(cap, equal_load_comparison(run, cap), run)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("reference"), reference_specs(repetitions=1, duration_s=10))[0]


def test_capacity_is_the_highest_rate_within_slo(reference):
    cap, _ = headline_of(reference)
    assert cap.slo_p99_ms == 500 and cap.error_budget == 0.01
    assert cap.designs["inline"].capacity_per_s == 120
    assert cap.designs["queued"].ack_capacity_per_s == 160
    assert cap.designs["queued"].drain_capacity_per_s == 200
    assert cap.designs["queued"].capacity_per_s == 160
    assert [p.within_slo for p in cap.designs["inline"].points] == [True, True, True, False, False]


def test_headline_reports_more_throughput_and_lower_p99(reference):
    _, text = headline_of(reference)
    # Brackets from steps of 40/s: queued in [160, 200), inline in [120, 160): queued's capacity is at least 160/s,
    # inline's below it: better, however little (the change lies in (+0%, +67%)).
    assert text.startswith("queued sustains 33% more throughput at P99 ≤ 500 ms and completion P99 ≤ 500 ms ([160, "
                           "200)/s ±12.5% vs [120, 160)/s ±16.7%: a change of +0%…+67%, better); at equal load (steady, "
                           "100/s) queued's completion P99 is ")
    assert "higher than inline's end-to-end P99 (95% CI" in text
    assert "; queued's acknowledgement P99 is " in text and "% lower than inline's end-to-end P99 (95% CI" in text
    assert "moved the pain" not in text


def test_headline_tells_the_honest_opposite(tmp_path):
    specs = reference_specs(repetitions=1, duration_s=10, capacity=False)
    specs = [CellSpec(s.design, s.phase, s.kind, s.repetition, s.rate_per_s, s.duration_s,
                      Latency(8_000 if s.design == "inline" else 40_000, 0.5)) for s in specs]
    specs += capacity_specs("inline", [40, 80, 120], p99_budget_rate=120)
    specs += capacity_specs("queued", [40, 80, 120], p99_budget_rate=80, drain_limit_rate=None)
    run_dir, _ = write_run(tmp_path, specs)
    _, text = headline_of(run_dir)
    assert text.startswith("queued sustains 33% less throughput at P99 ≤ 500 ms and completion P99 ≤ 500 ms ([80, "
                           "120)/s ±25.0% vs ≥ 120/s (not found): a change of -100%…+0%, worse); inline's limit was not "
                           "found (it still held at 120/s, the highest rate tested), so the difference is a bound")
    assert "P99 is" in text and "% higher" in text


def test_headline_says_when_a_limit_was_not_found(tmp_path):
    specs = capacity_specs("inline", [40, 80, 120], p99_budget_rate=200)
    specs += capacity_specs("queued", [40, 80, 120], p99_budget_rate=80, drain_limit_rate=None)
    run_dir, _ = write_run(tmp_path, specs)
    _, text = headline_of(run_dir)
    assert "inline's limit was not found (it still held at 120/s, the highest rate tested)" in text


def test_backlog_growing_past_the_drain_rate_moves_the_pain(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10, drain_limit_rate=80))
    cap, text = headline_of(run_dir)
    queued = cap.designs["queued"]
    assert queued.ack_capacity_per_s == 160 and queued.drain_capacity_per_s == 80 and queued.capacity_per_s == 80
    assert queued.moved_the_pain
    assert text.startswith("queued sustains 33% less throughput")
    assert "workers keep up only to 80/s" in text and "the queue only moved the pain" in text


def test_error_budget_limits_capacity(tmp_path):
    specs = capacity_specs("inline", [40, 80, 120], p99_budget_rate=200)
    specs[1].errors_per_s = {503: 2}  # 80/s with 2 failures a second: 2.4% > the 1% budget
    run_dir, _ = write_run(tmp_path, specs)
    cap = capacity(load_run(run_dir))
    assert cap.designs["inline"].ack_capacity_per_s == 40
    assert cap.designs["inline"].points[1].error_rate == pytest.approx(2 / 82, abs=1e-9)


def test_without_steady_phases_equal_load_uses_the_highest_common_capacity_step(tmp_path):
    specs = capacity_specs("inline", [40, 80, 120], p99_budget_rate=80, duration_s=20) + \
        capacity_specs("queued", [40, 80, 120], p99_budget_rate=120, duration_s=20)
    run_dir, _ = write_run(tmp_path, specs)
    cap, text = headline_of(run_dir)
    assert "at equal load (capacity-0080, 80/s) queued's completion P99 is" in text
    assert "queued sustains 50% more throughput" in text and "(≥ 120/s (not found) vs [80, 120)/s ±25.0%" in text


def test_thin_tail_at_equal_load_is_not_called_a_change(tmp_path):
    specs = capacity_specs("inline", [40, 80], p99_budget_rate=80) + capacity_specs("queued", [40, 80], p99_budget_rate=80)
    run_dir, _ = write_run(tmp_path, specs)
    _, text = headline_of(run_dir)
    # 640 values a side leave 6.4 beyond P99: 1,000 would give it 10, a phase of 12.5 s instead of 8 s.
    assert ("but too few samples lie beyond P99 to judge (n = 640 / 640; ~1.6× the values would put 10 values beyond "
            "P99 and decide it: 1 more repetition of each design (2 in all), or phases of 12 s (now 8 s))") in text


def test_one_design_only_says_what_is_missing(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=6, designs=("queued",)))
    cap, text = headline_of(run_dir)
    assert "inline" not in cap.designs
    assert text == ("Capacity not compared (inline did not run): queued sustains [160, 200)/s ±12.5% at P99 ≤ 500 ms "
                    "and completion P99 ≤ 500 ms; P99 at equal load was not compared (no inline cells in this run).")


def with_searches(run_dir, searches: dict) -> None:
    manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
    manifest["capacity_searches"] = searches
    (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_search_that_broke_at_its_first_rate_is_told_and_rendered(tmp_path):
    specs = capacity_specs("inline", [40], p99_budget_rate=20) + capacity_specs("queued", [40], p99_budget_rate=20)
    run_dir, _ = write_run(tmp_path, specs)
    below = {"outcome": "below", "held_per_s": None, "broke_per_s": 40.0, "probes": 1, "precision_pct": 5.0,
             "ceiling_per_s": 40.0, "reason": ""}
    with_searches(run_dir, {"inline": below, "queued": below})
    cap, text = headline_of(run_dir)
    assert text.startswith("Neither design sustains even the lowest rate tested")
    rows = {r["design"]: r for r in capacity_rows(cap)}
    assert rows["inline"]["capacity"] == "< 40/s" and rows["inline"]["search"] == "below the lowest rate tried (40/s)"
    assert "Neither design sustains" in render(run_dir).with_suffix(".md").read_text()


def test_the_capacity_table_says_how_each_search_ended(tmp_path):
    specs = capacity_specs("inline", [40, 80, 84], p99_budget_rate=80)
    specs += capacity_specs("queued", [40, 80, 120, 160], p99_budget_rate=200)
    run_dir, _ = write_run(tmp_path, specs)
    with_searches(run_dir, {
        "inline": {"outcome": "found", "held_per_s": 80.0, "broke_per_s": 84.0, "probes": 3, "precision_pct": 5.0,
                   "ceiling_per_s": 160.0, "reason": ""},
        "queued": {"outcome": "ceiling", "held_per_s": 160.0, "broke_per_s": None, "probes": 4, "precision_pct": 5.0,
                   "ceiling_per_s": 160.0, "reason": ""}})
    cap, text = headline_of(run_dir)
    rows = {r["design"]: r for r in capacity_rows(cap)}
    assert rows["inline"]["capacity"] == "[80, 84)/s ±2.5%" and rows["inline"]["search"] == "found to ±2.5% in 3 probes"
    assert rows["queued"]["capacity"] == "≥ 160/s (not found)"
    assert rows["queued"]["search"] == "not found: it held at the search's ceiling, 160/s"
    # queued holds at least 160/s, inline breaks below 84/s: better, however far queued's limit lies.
    assert "(≥ 160/s (not found) vs [80, 84)/s ±2.5%: a change of +90%…∞, better)" in text
    assert "queued's limit was not found (it held at the search's ceiling, 160/s), so the difference is a bound" in text
    assert capacity_ratio_text(cap) == ("queued / inline: 2.00, between 1.90 and ∞ from both brackets (both ends open): "
                                        "better")


def test_a_limit_the_search_never_reached_says_which_limit_ended_the_search():
    def step(rate: float, broken: tuple[str, ...]) -> RatePoint:
        return RatePoint(rate, rate, int(rate * 10), 0, 0.0, 2_000, 5_000, 900_000, not broken, DRAIN not in broken,
                         broken)

    # As the runner searches: it stops where the drain broke, so the acknowledgement held at every rate tried.
    queued = DesignCapacity("queued", (step(40, ()), step(75, ()), step(80, (DRAIN, COMPLETION_SLO))),
                            ack_capacity_per_s=80, drain_capacity_per_s=75, tested_up_to_per_s=80,
                            completion_capacity_per_s=75, queued=True)
    assert queued.limit_text(ACKNOWLEDGEMENT) == "≥ 80/s (not reached: the drain and the completion broke first)"
    assert queued.limit_text(DRAIN) == queued.bracket(DRAIN).text() == "[75, 80)/s ±3.3%"
    # A design whose every limit held at the highest rate tried: not found, as the bracket says.
    held = DesignCapacity("queued", (step(40, ()), step(80, ())), ack_capacity_per_s=80, drain_capacity_per_s=80,
                          tested_up_to_per_s=80, completion_capacity_per_s=80, queued=True)
    assert held.limit_text(ACKNOWLEDGEMENT) == "≥ 80/s (not found)"
