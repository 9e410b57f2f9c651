"""The queue probe's census in the analysis: a cell's summary says how many accepted campaigns its completion
percentiles stand on, and how many failed or were still pending; phases add them up; tables show them."""

from __future__ import annotations

import json

import pytest

from analysis.reports.tables import phase_rows
from analysis.stats.load import load_run
from analysis.stats.summary import format_table, merged_figures, phase_table, summarize
from tests.analysis_fixtures import CellSpec, Queue, write_run

pytestmark = pytest.mark.fast


@pytest.fixture
def run(tmp_path):
    specs = [CellSpec("queued", "steady", repetition=r, rate_per_s=50, duration_s=10, queue=Queue()) for r in (1, 2)]
    run_dir, truth = write_run(tmp_path, specs)
    loaded = load_run(run_dir)
    for cell, spec, (failed, pending) in zip(loaded.cells, specs, [(1, 2), (0, 3)], strict=True):
        completed = len(truth[spec.id]["completion"])
        (cell.dir / "completion.json").write_text(json.dumps(
            {"started_at": 0.0, "stopped_at": 13.0, "accepted": completed + failed + pending, "completed": completed,
             "failed": failed, "pending": pending}))
    return loaded, truth


def test_summary_accounts_for_every_accepted_campaign(run):
    loaded, truth = run
    queue = summarize(loaded.cells[0])["queue"]
    completed = len(truth["queued.steady.r1"]["completion"])
    assert queue["completion"]["count"] == completed
    assert (queue["accepted"], queue["failed"], queue["pending"]) == (completed + 3, 1, 2)
    assert queue["completion"]["count"] + queue["failed"] + queue["pending"] == queue["accepted"]


def test_repetitions_add_their_counts(run):
    loaded, truth = run
    figures = merged_figures(loaded.cells)
    completed = sum(len(truth[c.id]["completion"]) for c in loaded.cells)
    assert figures["completion_count"] == completed
    assert (figures["completion_accepted"], figures["completion_failed"], figures["completion_pending"]) == (
        completed + 6, 1, 5)


def test_tables_show_completed_of_accepted_and_pending(run):
    loaded, truth = run
    n1 = len(truth["queued.steady.r1"]["completion"])
    assert f"{n1}/{n1 + 3} (1 failed, 2 pending)" in format_table([summarize(loaded.cells[0])])
    completed = sum(len(truth[c.id]["completion"]) for c in loaded.cells)
    (row,) = phase_rows(phase_table(loaded))
    assert row["completed"] == f"{completed:,} of {completed + 6:,}, 1 failed, 5 pending"


def test_cell_without_a_census_has_unknown_counts(run):
    loaded, truth = run
    cell = loaded.cells[1]
    (cell.dir / "completion.json").unlink()
    queue = summarize(cell)["queue"]
    assert queue["completion"]["count"] == len(truth[cell.id]["completion"])
    assert queue["accepted"] is None and queue["pending"] is None and queue["failed"] is None
    assert merged_figures(loaded.cells)["completion_accepted"] is None


def test_damaged_census_is_reported_not_trusted(run):
    loaded, _ = run
    (loaded.cells[0].dir / "completion.json").write_text("{not json")
    queue = summarize(loaded.cells[0])["queue"]
    assert queue["accepted"] is None and "not valid JSON" in queue["census_error"]
