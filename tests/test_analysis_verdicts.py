"""Verdicts that decide, on fixture runs with known answers: equal designs are `equivalent` within the margin, a 20%
difference is decided, a tiny sample is `undecided` with how many more values would decide it — and that estimate
follows how the interval really narrows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.stats.capacity import capacity
from analysis.stats.compare import compare_designs, comparison_markdown, format_comparison
from analysis.stats.equivalence import Need, spread_factor
from analysis.stats.headline import equal_load_comparison, headline
from analysis.stats.load import load_run
from foundation.config import ConfigError
from foundation.format import MANIFEST_FILE
from tests.analysis_fixtures import CellSpec, Latency, write_run

pytestmark = pytest.mark.fast

BASE = Latency(20_000, 0.5)
SLOWER = Latency(24_000, 0.5)  # every percentile 20% higher


def run_of(tmp_path, queued: Latency, repetitions: int = 2, rate: int = 100, duration: int = 30, seed: int = 1,
           margins: dict[str, float] | None = None):
    specs = [CellSpec(d, "steady", repetition=rep, rate_per_s=rate, duration_s=duration, send_lag=None,
                      latency=BASE if d == "inline" else queued)
             for rep in range(1, repetitions + 1) for d in ("inline", "queued")]
    run_dir, _ = write_run(tmp_path, specs, seed=seed)
    if margins is not None:
        manifest = json.loads((run_dir / MANIFEST_FILE).read_text())
        manifest["experiment"]["margins"] = margins
        (run_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    return run_dir


def test_equal_designs_are_equivalent_and_the_headline_says_within_what(tmp_path):
    run_dir = run_of(tmp_path, BASE)
    run = load_run(run_dir)
    comparison = equal_load_comparison(run)
    p99 = comparison.row("p99_us")
    assert p99.verdict == "equivalent" and p99.margin_pct == 10
    text = headline(capacity(run), comparison, run)
    assert f"at equal load (steady, 100/s) P99 is equivalent within ±10% ({p99.delta_pct:+.0f}%, 95% CI" in text
    assert "no significant change" not in text


def test_a_twenty_percent_difference_is_decided(tmp_path):
    comparison = compare_designs(run_of(tmp_path, SLOWER))
    for metric in ("p50_us", "p90_us", "p99_us"):
        row = comparison.row(metric)
        assert row.verdict == "worse", row
        assert row.ci_low_pct <= 20 <= row.ci_high_pct and row.need is None


def test_a_tiny_sample_is_undecided_with_what_would_decide_it(tmp_path):
    run_dir = run_of(tmp_path, Latency(21_000, 0.5), repetitions=1, rate=20, duration=10)
    comparison = compare_designs(run_dir)
    p50 = comparison.row("p50_us")
    assert p50.verdict == "undecided" and p50.need is not None and p50.need.factor > 1
    assert p50.need.factor == pytest.approx(spread_factor(p50.delta_pct / 100, p50.ci_low_pct / 100,
                                                          p50.ci_high_pct / 100, 0.10), rel=1e-3)
    assert p50.need.more_repetitions == int(np.ceil(p50.need.factor - 1e-9)) - 1
    # 200 values leave 2 beyond P99: 10 need 5x as many, as 4 more repetitions or phases of 50 s.
    p99 = comparison.row("p99_us")
    assert p99.verdict == "undecided" and p99.note == "few samples" and p99.need.factor >= 5
    table = comparison_markdown(comparison)
    assert "| undecided (few samples; +" in table and "~" not in table
    assert "undecided" in format_comparison(comparison)
    text = headline(capacity(load_run(run_dir)), equal_load_comparison(load_run(run_dir)), load_run(run_dir))
    assert "but too few samples lie beyond P99 to judge (n = 200 / 200; ~" in text
    assert "the values would put 10 values beyond P99 and decide it:" in text


def test_the_estimate_follows_how_the_interval_narrows(tmp_path):
    """More values narrow a P50 interval as 1/√k: what the estimate of the values that would decide it assumes."""
    few = compare_designs(run_of(tmp_path / "few", Latency(21_000, 0.5), repetitions=1, rate=50, duration=10))
    many = compare_designs(run_of(tmp_path / "many", Latency(21_000, 0.5), repetitions=4, rate=50, duration=40,
                                  seed=2))
    widths = [row.ci_high_pct - row.ci_low_pct for row in (few.row("p50_us"), many.row("p50_us"))]
    assert widths[1] / widths[0] == pytest.approx(1 / np.sqrt(16), rel=0.35)


def test_an_undecided_row_in_the_headline_says_what_would_decide_it(tmp_path):
    run_dir = run_of(tmp_path, Latency(21_400, 0.5), repetitions=1, rate=100, duration=20)
    run = load_run(run_dir)
    comparison = equal_load_comparison(run)
    row = comparison.row("p99_us")
    assert row.verdict == "undecided"
    text = headline(capacity(run), comparison, run)
    assert (f"P99 is undecided ({row.delta_pct:+.0f}%, 95% CI {row.ci_low_pct:+.0f}%…{row.ci_high_pct:+.0f}%, margin "
            f"±10%): {row.need.text()}") in text


def test_declared_margins_decide_the_rows(tmp_path):
    tight = compare_designs(run_of(tmp_path / "tight", BASE, margins={"latency_pct": 1.0}))
    assert tight.row("p99_us").verdict == "undecided" and tight.row("p99_us").margin_pct == 1
    loose = compare_designs(run_of(tmp_path / "loose", SLOWER, margins={"latency_pct": 40.0}))
    assert loose.row("p50_us").verdict == "equivalent"  # +20% does not matter to an experiment that allows 40%
    assert "latency ±40%" in loose.method


def test_bad_margins_are_refused_in_one_line(tmp_path):
    run_dir = run_of(tmp_path, BASE, repetitions=1, duration=5, margins={"latency_pct": 0})
    with pytest.raises(ConfigError) as caught:
        compare_designs(run_dir)
    assert str(caught.value) == (f"{run_dir / MANIFEST_FILE}: experiment: key 'margins.latency_pct' has value 0; "
                                 "allowed: a percentage > 0 and < 100")


@pytest.mark.parametrize(("delta", "low", "high", "margin", "factor"), [
    (0.05, -0.05, 0.15, 0.10, 4.0),  # exclude 0: the side towards 0 (0.10) must shrink to 0.05
    (0.0, -0.2, 0.2, 0.10, 4.0),  # only equivalence: ±0.2 must shrink to ±0.1
    (0.02, -0.06, 0.10, 0.10, 1.0),  # equivalence is nearer: (0.08 / 0.08)² = 1 against (0.08 / 0.02)² = 16
])
def test_the_values_that_would_decide_an_interval(delta, low, high, margin, factor):
    assert spread_factor(delta, low, high, margin) == pytest.approx(factor)


def test_a_need_in_words():
    need = Need(factor=2.4, repetitions=2, phase_s=40)
    assert need.more_repetitions == 3 and need.longer_phase_s == pytest.approx(96)
    assert need.text() == ("~2.4× the values would decide it: 3 more repetitions of each design (5 in all), or phases "
                           "of 96 s (now 40 s)")
    assert "repeating is no way to" in Need(factor=400, repetitions=2, phase_s=40).text()
