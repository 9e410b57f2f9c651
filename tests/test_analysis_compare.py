"""A/B comparison: known deltas found with CIs that exclude 0, same distributions `equivalent` within the margin, too
few values `undecided` with what would decide them, reproducible."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from analysis.stats.compare import compare_designs, compare_runs, comparison_markdown, format_comparison
from analysis.stats.equivalence import decide
from analysis.stats.load import load_run
from tests.analysis_fixtures import CellSpec, Latency, Queue, write_run

EQUIVALENCE = HdrHistogram(1, 3_600_000_000, 3)


def rank_value(values: np.ndarray, percentile: float) -> int:
    return int(np.sort(values)[max(int(percentile * len(values) / 100 + 0.5), 1) - 1])


def steady(design: str, latency: Latency, rep: int = 1, rate: int = 200, duration: int = 30, **kw) -> CellSpec:
    return CellSpec(design, "steady", repetition=rep, rate_per_s=rate, duration_s=duration, latency=latency,
                    send_lag=None, **kw)


@pytest.fixture(scope="module")
def different(tmp_path_factory):
    specs = [steady(d, Latency(40_000, 0.6) if d == "inline" else Latency(8_000, 0.5), rep)
             for rep in (1, 2) for d in ("inline", "queued")]
    return write_run(tmp_path_factory.mktemp("different"), specs)


@pytest.fixture(scope="module")
def same(tmp_path_factory):
    specs = [steady(d, Latency(20_000, 0.6), rep) for rep in (1, 2) for d in ("inline", "queued")]
    return write_run(tmp_path_factory.mktemp("same"), specs, seed=5)


@pytest.mark.fast
def test_faster_design_is_better_with_the_true_delta(different):
    run_dir, truth = different
    comparison = compare_designs(run_dir)
    inline = np.concatenate([truth[f"inline.steady.r{r}"]["request"] for r in (1, 2)])
    queued = np.concatenate([truth[f"queued.steady.r{r}"]["request"] for r in (1, 2)])
    for metric, percentile in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99)):
        row = comparison.row(metric)
        assert EQUIVALENCE.values_are_equivalent(int(row.a), rank_value(inline, percentile))
        assert EQUIVALENCE.values_are_equivalent(int(row.b), rank_value(queued, percentile))
        assert row.delta_pct == pytest.approx((row.b / row.a - 1) * 100, abs=0.01)
        assert row.ci_low_pct <= row.delta_pct <= row.ci_high_pct < 0
        assert row.verdict == "better"
        assert row.n_a == row.n_b == 12_000


@pytest.mark.fast
def test_median_delta_is_the_distributions_ratio(different):
    run_dir, _ = different
    row = compare_designs(run_dir).row("p50_us")
    # lognormal medians 40 ms and 8 ms: the true delta is -80%; the CI must contain it
    assert row.ci_low_pct <= -80 <= row.ci_high_pct


@pytest.mark.fast
def test_equal_designs_are_equivalent_within_the_margin(same):
    run_dir, _ = same
    comparison = compare_designs(run_dir)
    assert len(comparison.rows) == 5
    for row in comparison.rows:
        assert row.ci_low_pct <= 0 <= row.ci_high_pct
        assert row.verdict in ("equivalent", "undecided"), row  # never better or worse
    for metric in ("throughput_per_s", "p50_us", "p90_us", "p99_us"):
        row = comparison.row(metric)
        assert row.verdict == "equivalent" and row.need is None, row
        assert -row.margin_pct < row.ci_low_pct and row.ci_high_pct < row.margin_pct


@pytest.mark.fast
def test_thin_tail_is_not_judged(tmp_path):
    specs = [steady("inline", Latency(40_000), rate=20, duration=10), steady("queued", Latency(8_000), rate=20,
                                                                             duration=10)]
    run_dir, _ = write_run(tmp_path, specs)
    row = compare_designs(run_dir).row("p999_us")
    assert row.verdict == "undecided" and row.note == "few samples"
    # 200 values a side leave 0.2 beyond P99.9; 10 need 50x as many: 49 more repetitions, or phases of 500 s.
    assert row.need is not None and row.need.factor == pytest.approx(50)
    assert row.need.more_repetitions == 49 and row.need.longer_phase_s == pytest.approx(500)


@pytest.mark.fast
def test_fewer_successes_is_worse_throughput(tmp_path):
    specs = [steady("inline", Latency(10_000), rate=200), steady("queued", Latency(10_000), rate=180)]
    run_dir, _ = write_run(tmp_path, specs)
    row = compare_designs(run_dir).row("throughput_per_s")
    assert row.a == 200 and row.b == 180 and row.delta_pct == -10.0
    assert row.verdict == "worse"


@pytest.mark.fast
def test_comparison_is_reproducible(different):
    run_dir, _ = different
    assert compare_designs(run_dir).rows == compare_designs(run_dir).rows


@pytest.mark.fast
def test_run_against_itself_is_unchanged(different):
    run_dir, _ = different
    comparison = compare_runs(run_dir, run_dir)
    assert comparison.rows and all(r.delta_pct == 0 and r.verdict in ("equivalent", "undecided") for r in comparison.rows)
    for row in comparison.rows:
        if row.metric != "p999_us":
            assert row.verdict == "equivalent", row
        elif row.verdict == "undecided":  # 12 values beyond P99.9 a side: an interval of about ±12% against ±10%
            assert row.need is not None and 1 < row.need.factor < 3


@pytest.mark.fast
def test_slower_run_is_a_regression(tmp_path):
    base, _ = write_run(tmp_path / "a", [steady("queued", Latency(8_000), queue=Queue())], run_id="run-a")
    slow, _ = write_run(tmp_path / "b", [steady("queued", Latency(12_000), queue=Queue())], run_id="run-b", seed=2)
    comparison = compare_runs(base, slow)
    assert comparison.row("p50_us", "queued steady").verdict == "worse"
    assert comparison.row("p50_us", "queued steady", endpoint="completion") is not None
    assert comparison.a_label == "run-a" and comparison.b_label == "run-b"


@pytest.mark.fast
def test_runs_with_different_phases_say_what_was_not_compared(tmp_path):
    a, _ = write_run(tmp_path / "a", [steady("inline", Latency(8_000))], run_id="run-a")
    b, _ = write_run(tmp_path / "b", [steady("queued", Latency(8_000), queue=Queue())], run_id="run-b")
    comparison = compare_runs(a, b)
    assert not comparison.rows
    assert comparison.missing == ("inline steady: only in run-a", "queued steady: only in run-b")
    assert "nothing to compare" in format_comparison(comparison)


@pytest.mark.fast
def test_one_design_only_says_what_is_missing(tmp_path):
    run_dir, _ = write_run(tmp_path, [steady("queued", Latency(8_000), queue=Queue())])
    comparison = compare_designs(load_run(run_dir))
    assert not comparison.rows
    assert any("no inline cells" in m for m in comparison.missing)


@pytest.mark.fast
def test_terminal_table_states_the_method_and_verdicts(different):
    run_dir, _ = different
    text = format_comparison(compare_designs(run_dir))
    assert "P99" in text and "better" in text and "95% CI" in text
    assert "bootstrap" in text and "1000 replicates" in text
    assert "\x1b[" not in text
    assert "\x1b[" in format_comparison(compare_designs(run_dir), color=True)


@pytest.mark.fast
def test_markdown_and_json_carry_every_row(different):
    run_dir, _ = different
    comparison = compare_designs(run_dir)
    assert comparison_markdown(comparison).count("\n| steady |") == 5
    data = json.loads(json.dumps(comparison.to_dict()))
    assert len(data["rows"]) == 5 and data["method"].startswith("95% confidence intervals by bootstrap")
    assert comparison.to_frame().shape[0] == 5


@pytest.mark.fast
@pytest.mark.parametrize(("low", "high", "higher_is_better", "expected"), [
    (-0.2, -0.1, False, "better"), (0.1, 0.2, False, "worse"), (-0.1, 0.1, False, "undecided"),
    (0.1, 0.2, True, "better"), (-0.2, -0.1, True, "worse"), (0.0, 0.0, True, "equivalent"),
    (-0.04, 0.04, True, "equivalent"), (0.01, 0.03, False, "equivalent"), (0.03, 0.12, False, "worse"),
    (-0.06, 0.02, True, "undecided"),
])
def test_verdict_is_decided_only_when_the_interval_excludes_zero_or_fits_the_margin(low, high, higher_is_better,
                                                                                   expected):
    assert decide(low, high, higher_is_better, margin=0.05) == expected


def test_piped_compare_prints_every_column_in_full(different):
    import subprocess
    import sys

    run_dir, _ = different
    result = subprocess.run([sys.executable, "-m", "offpath.cli", "compare", str(run_dir), str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    expected = comparison_markdown(compare_runs(run_dir, run_dir))
    assert expected in result.stdout and "method: 95% confidence intervals by bootstrap" in result.stdout
    assert max(len(line) for line in expected.splitlines()) > 120  # it would not have fitted the old width
