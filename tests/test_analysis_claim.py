"""A claim measured elsewhere beside this run's figures: the step search's interval for throughput, the
bootstrap CI for P99, and whether the claim lies inside."""

from __future__ import annotations

import json

import pytest

from analysis.stats.capacity import capacity
from analysis.stats.claim import claim_rows
from analysis.stats.headline import equal_load_comparison
from analysis.stats.load import load_run
from foundation.format import MANIFEST_FILE
from tests.analysis_fixtures import reference_specs, write_run

pytestmark = pytest.mark.fast


def _with_claim(run_dir, throughput_pct: float, p99_pct: float) -> None:
    path = run_dir / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["experiment"]["claim"] = {"source": "a team elsewhere", "throughput_at_slo_change_pct": throughput_pct,
                                       "p99_at_equal_load_change_pct": p99_pct}
    path.write_text(json.dumps(manifest))


def _rows(run_dir):
    run = load_run(run_dir)
    cap = capacity(run)
    return claim_rows(run, cap, equal_load_comparison(run, cap))


def test_throughput_interval_comes_from_the_search_step(tmp_path):
    # inline holds up to 120/s (fails at 160), queued up to 160/s (fails at 200): +33%, in [160/160-1, 200/120-1].
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10))
    _with_claim(run_dir, 40.0, -25.0)
    source, rows = _rows(run_dir)
    throughput, p99 = rows
    assert source == "a team elsewhere"
    assert throughput.measured.startswith("+33% ([160, 200)/s ±12.5% vs [120, 160)/s ±16.7%; between +0% … +67% from "
                                          "both brackets")
    assert throughput.agrees == "yes"
    assert p99.measured.startswith("-") and "95% CI" in p99.measured
    assert p99.agrees == "no"  # the fixture's queued is ~80% faster at equal load, far from -25%


def test_a_claim_outside_the_interval_does_not_agree(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10))
    _with_claim(run_dir, 100.0, -80.0)
    _, (throughput, _) = _rows(run_dir)
    assert throughput.agrees == "no"


def test_no_claim_no_rows(tmp_path):
    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10))
    assert _rows(run_dir) is None


def test_the_report_sets_the_claim_beside_the_run(tmp_path):
    from analysis.reports.render import render

    run_dir, _ = write_run(tmp_path, reference_specs(repetitions=1, duration_s=10))
    _with_claim(run_dir, 40.0, -25.0)
    html = render(run_dir).read_text()
    markdown = (run_dir / "report.md").read_text()
    assert "## Against a team elsewhere" in markdown and "| throughput at the SLO | +40% | +33%" in markdown
    assert "Against a team elsewhere" in html and "P99 at equal load" in html
