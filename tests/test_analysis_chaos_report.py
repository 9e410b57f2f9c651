"""The chaos report is rendered by analysis from chaos.json: the fault table, its headline, HTML and Markdown."""

from __future__ import annotations

import json

import pytest

from analysis.reports.chaos_report import render_chaos
from analysis.stats.load import ResultsFolderError

pytestmark = pytest.mark.fast


def fault(name: str, ok: bool = True, **overrides) -> dict:
    row = {"fault": name, "kind": "kill-worker", "load": "30/s for 20 s", "acknowledged": 600, "completed": 600,
           "failed": 0, "lost": 0, "duplicated": 0, "pending": 0, "ok": ok, "recovered_after_fault_s": 4.2,
           "drained_after_load_s": 1.0, "stuck": 0, "abandoned": 3, "false_abandonments": 0,
           "recovery_s": [5.8, 6.1, 6.4], "workers_alive": "4/4", "refused": {"503": 12}}
    return {**row, **overrides}


def test_report_holds_every_fault_and_says_the_promise_held(tmp_path):
    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker"), fault("calm", kind="none")]))
    html = render_chaos(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| kill-worker | 30/s for 20 s | 600 | 600 | 0 | 0 | 0 | 0 | 0 | 4.2 s |" in markdown
    assert "job running again after P50 6.1 s, P99 6.4 s, max 6.4 s over 3 killed jobs" in markdown
    assert "declared abandoned 3 (false 0)" in markdown and "refused 12 x 503" in markdown
    assert "| calm |" in markdown and "drained 1.0 s after load" in markdown
    assert "none lost, none duplicated" in markdown
    page = html.read_text()
    assert html.name == "report.html" and "<table>" in page and "kill-worker" in page


def test_a_stuck_job_and_an_unrecovered_kill_are_shown(tmp_path):
    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker", ok=False, stuck=2,
                                                          stuck_by_registry={"started": 2},
                                                          recovery_s=[5.9, None])]))
    render_chaos(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "1 killed jobs never ran again" in markdown and "stuck in started 2" in markdown
    assert "The promise was broken" in markdown


def test_a_lost_campaign_breaks_the_headline(tmp_path):
    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker", ok=False, lost=1, completed=599,
                                                          recovered_after_fault_s=None)]))
    render_chaos(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "The promise was broken" in markdown and "NOT recovered" in markdown


def test_an_incomplete_run_says_so(tmp_path):
    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker")]))
    (tmp_path / "INCOMPLETE").write_text("interrupted by SIGINT\n")
    render_chaos(tmp_path)
    assert "did not finish (interrupted by SIGINT)" in (tmp_path / "report.md").read_text()


def test_a_folder_without_chaos_results_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsFolderError, match="no chaos.json"):
        render_chaos(tmp_path)


def test_offpath_report_on_a_chaos_run_renders_the_chaos_report(tmp_path):
    from analysis.reports.render import render

    (tmp_path / "chaos.json").write_text(json.dumps([fault("kill-worker")]))
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "kind": "chaos", "status": "complete",
                                                        "cells": []}))
    html = render(tmp_path)
    assert "| kill-worker |" in (tmp_path / "report.md").read_text()
    assert "kill-worker" in html.read_text() and not (tmp_path / "comparison.json").exists()
