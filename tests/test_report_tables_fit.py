"""The sweep and chaos report pages in headless Chromium: at a desktop width every table is seen whole, and at a
narrow one a table wider than the page scrolls in its own box (the run report's check is in test_analysis_report.py,
the cost table's in test_analysis_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.reports.chaos_report import render_chaos
from analysis.reports.render import render
from tests.test_analysis_chaos_report import fault
from tests.test_sweep_map import point_specs, write_sweep

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium to "
                                                              "check the HTML reports in a real browser")


@pytest.fixture
def check_page():
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium's DevTools protocol")
    from tests.analysis_browser import check_page

    return check_page


def test_the_sweep_reports_point_table_fits(tmp_path, check_page):
    run_dir = write_sweep(tmp_path, [(0.5, point_specs(160, 40, 60_000)), (4.0, point_specs(40, 160, 400_000))])
    page = check_page(render(run_dir))
    assert [t.last_column for t in page.tables] == ["CPU per campaign"] * len(page.screenshots)
    assert not (unfit := page.unfit_tables()), "\n".join(unfit)


def test_the_chaos_reports_fault_table_fits(tmp_path, check_page):
    stuck = fault("kill-all-workers-at-once", ok=False, stuck=2, stuck_by_registry={"started": 2},
                  recovery_s=[5.9, None])
    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker"), stuck, fault("calm", kind="none")]))
    page = check_page(render_chaos(tmp_path))
    assert [t.last_column for t in page.tables] == ["measured"] * len(page.screenshots)
    assert not (unfit := page.unfit_tables()), "\n".join(unfit)
