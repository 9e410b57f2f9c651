"""Cell summaries: percentiles equal to the drawn values' within HDR precision, counts, errors and queue health."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from analysis.stats.load import load_run
from analysis.stats.summary import backlog_trend, format_table, is_sustainable, merged_figures, summarize, summarize_cell
from foundation.manifest_format import CellRecord
from tests.analysis_fixtures import CellSpec, Latency, Queue, write_run

pytestmark = pytest.mark.fast

EQUIVALENCE = HdrHistogram(1, 3_600_000_000, 3)


def exact_percentile(values: np.ndarray, percentile: float) -> int:
    """The value HdrHistogram's percentile stands for: the ceil-rounded rank's value in the sorted sample."""
    ordered = np.sort(values)
    rank = max(int(percentile * len(values) / 100 + 0.5), 1)
    return int(ordered[rank - 1])


def assert_equivalent(got: int, expected: int) -> None:
    assert EQUIVALENCE.values_are_equivalent(got, expected), f"{got} µs is not HDR-equivalent to {expected} µs"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    specs = [
        CellSpec("inline", "steady", rate_per_s=150, duration_s=20, latency=Latency(25_000, 0.8),
                 errors_per_s={503: 2, 0: 1}),
        CellSpec("queued", "steady", rate_per_s=150, duration_s=20, latency=Latency(5_000, 0.5),
                 queue=Queue(start=10, growth_per_s=0.0, noise=3)),
        CellSpec("queued", "overload", rate_per_s=150, duration_s=20, queue=Queue(start=10, growth_per_s=40, noise=3),
                 send_lag=Latency(50_000, 0.3)),
    ]
    run_dir, truth = write_run(tmp_path_factory.mktemp("summary"), specs)
    return load_run(run_dir), truth


@pytest.mark.parametrize("cell_id", ["inline.steady.r1", "queued.steady.r1"])
def test_percentiles_are_the_drawn_values_within_hdr_precision(run, cell_id):
    loaded, truth = run
    cell = next(c for c in loaded.cells if c.id == cell_id)
    post = summarize(cell)["endpoints"]["request"]
    values = truth[cell_id]["request"]
    assert post["count"] == len(values)
    for key, percentile in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99), ("p999_us", 99.9)):
        assert_equivalent(post[key], exact_percentile(values, percentile))
    assert_equivalent(post["max_us"], int(values.max()))


def test_summary_is_plain_json(run):
    loaded, _ = run
    for cell in loaded.cells:
        summary = summarize(cell)
        assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_throughput_is_successes_per_second(run):
    loaded, _ = run
    post = summarize(loaded.cells[0])["endpoints"]["request"]
    assert post["throughput_per_s"] == 150.0
    assert post["intervals"] == 20


def test_errors_are_counted_by_status_next_to_successes(run):
    loaded, _ = run
    post = summarize(loaded.cells[0])["endpoints"]["request"]
    assert post["errors"] == 60 and post["errors_by_status"] == {"0": 20, "503": 40}
    assert post["error_rate"] == pytest.approx(60 / 3060, abs=1e-6)


def test_raw_latency_is_summarised_beside_the_corrected(run):
    loaded, truth = run
    post = summarize(loaded.cells[0])["endpoints"]["request"]
    assert post["raw"]["count"] == 3000 and post["raw"]["p99_us"] > 0


def test_flat_backlog_is_sustainable_with_completion_latency(run):
    loaded, truth = run
    queue = summarize(loaded.cells[1])["queue"]
    assert queue["sustainable"] is True
    assert queue["completion"]["count"] == len(truth["queued.steady.r1"]["completion"])
    assert_equivalent(queue["completion"]["p99_us"], exact_percentile(truth["queued.steady.r1"]["completion"], 99))
    assert queue["drain_rate_per_s"] == pytest.approx(150.0)
    assert queue["depth_max"] >= queue["depth_end"] >= 0


def test_growing_backlog_is_not_sustainable(run):
    loaded, _ = run
    queue = summarize(loaded.cells[2])["queue"]
    assert queue["sustainable"] is False
    assert queue["backlog_slope_per_s"] == pytest.approx(40, rel=0.15)


def test_inline_has_no_queue_section(run):
    loaded, _ = run
    assert summarize(loaded.cells[0])["queue"] is None


def test_late_load_generator_is_flagged(run):
    loaded, _ = run
    assert summarize(loaded.cells[2])["driver_bottleneck"] is True
    assert summarize(loaded.cells[1])["driver_bottleneck"] is False


def test_sustainability_rule_needs_material_and_significant_growth():
    t = np.arange(10, 21, dtype=float)
    assert backlog_trend(t, 5 + 0 * t)[0] == 0
    slope, se = backlog_trend(t, 3.0 * t)
    assert slope == pytest.approx(3.0) and se == pytest.approx(0.0, abs=1e-9)
    assert not is_sustainable(slope, se, accepted_rate_per_s=20)  # 3 jobs/s > 5% of 20/s
    assert is_sustainable(slope, se, accepted_rate_per_s=100)  # 3 jobs/s is within 5% of 100/s
    assert is_sustainable(3.0, 2.0, accepted_rate_per_s=20)  # not significant: 3 < 3 standard errors


def test_partial_cell_with_only_a_latency_log_is_summarised(run, tmp_path):
    loaded, _ = run
    source = loaded.cells[0].dir / "request.hlog"
    (tmp_path / "request.hlog").write_bytes(source.read_bytes())
    summary = summarize_cell(tmp_path, CellRecord(id="inline.steady.r9", design="inline", phase="steady", kind="steady",
                                                  repetition=9, duration_s=20))
    assert summary["endpoints"]["request"]["count"] == 3000
    assert summary["send_lag"] is None and summary["queue"] is None and summary["driver_bottleneck"] is False


def test_empty_cell_folder_is_summarised_as_nothing_measured(tmp_path):
    summary = summarize_cell(tmp_path / "never-written", CellRecord(id="queued.steady.r1", design="queued"))
    assert summary["endpoints"] == {} and summary["queue"] is None


def test_repetitions_merge_histograms_not_percentiles(tmp_path):
    specs = [CellSpec("inline", "steady", repetition=1, duration_s=10, latency=Latency(10_000, 0.2)),
             CellSpec("inline", "steady", repetition=2, duration_s=10, latency=Latency(100_000, 0.2))]
    run_dir, truth = write_run(tmp_path, specs)
    figures = merged_figures(load_run(run_dir).cells)
    pooled = np.concatenate([truth[s.id]["request"] for s in specs])
    assert figures["count"] == len(pooled)
    assert_equivalent(figures["p99_us"], exact_percentile(pooled, 99))
    assert_equivalent(figures["p50_us"], exact_percentile(pooled, 50))


def test_table_shows_each_cell_with_counts_and_percentiles(run):
    loaded, _ = run
    text = format_table([summarize(c) for c in loaded.cells])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["cell", "n", "err", "rate/s"]
    assert "inline.steady.r1" in text and "3000" in text and "GROWING" in text and "(driver lagged)" in text
    assert len(lines) == 2 + 3
