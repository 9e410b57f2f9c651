"""Capacity and the headline: the highest rate within SLO and error budget, told honestly either way."""

from __future__ import annotations

import pytest

from analysis.stats.capacity import capacity, equal_load_comparison, headline
from analysis.stats.load import load_run
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
    assert text.startswith("queued sustains 33% more throughput at P99 ≤ 500 ms and completion P99 ≤ 500 ms (160/s vs "
                           "120/s); at equal load (steady, 100/s) queued's completion P99 is ")
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
    assert text.startswith("queued sustains 33% less throughput at P99 ≤ 500 ms and completion P99 ≤ 500 ms (80/s vs "
                           "at least 120/s)")
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
    assert "queued sustains 50% more throughput" in text and "at least 120/s" in text


def test_thin_tail_at_equal_load_is_not_called_a_change(tmp_path):
    specs = capacity_specs("inline", [40, 80], p99_budget_rate=80) + capacity_specs("queued", [40, 80], p99_budget_rate=80)
    run_dir, _ = write_run(tmp_path, specs)
    _, text = headline_of(run_dir)
    assert "but too few samples lie beyond P99 to judge (n = 640 / 640)" in text


def test_one_design_only_says_what_is_missing(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=6, designs=("queued",)))
    cap, text = headline_of(run_dir)
    assert "inline" not in cap.designs
    assert text == ("Capacity not compared (inline did not run): queued sustains 160/s at P99 ≤ 500 ms and completion "
                    "P99 ≤ 500 ms; P99 at equal load was not compared (no inline cells in this run).")
