"""manifest.json's records: manifests the harness wrote before the records existed read back to the same JSON, byte
for byte, and analysis reads the same facts from them as it did from the dicts; the fixtures' manifests round-trip;
and nothing outside foundation/ reads a manifest by key.

tests/manifests/ holds manifests written by real runs of 92b1c05, the last commit before the records (from a copy
outside git, so their git sha reads "unknown"): a plain run complete (`smoke`) and one interrupted by SIGINT mid-cell,
a two-point sweep complete, the same interrupted in its second point and then resumed, and a chaos run. Beside each,
`<name>.read.json` holds what analysis read of it at that commit: `reads` below, run there over each manifest.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from analysis.gate.baseline import run_context, run_facts
from analysis.reports.facts import facts
from analysis.reports.sweep_report import sweep_facts
from analysis.stats.decision_map import is_sweep, point_runs
from analysis.stats.load import Run, load_run
from foundation.format import MANIFEST_FILE
from foundation.manifest_format import CellRecord, PointRecord, RunRecord, TierGrant
from tests.analysis_fixtures import manifest_for, reference_specs

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
WRITTEN_BEFORE = sorted(p for p in (Path(__file__).parent / "manifests").glob("*.json")
                        if not p.name.endswith(".read.json"))
# Rows of the report's facts that say how analysis works, not what the manifest holds.
METHOD_ROWS = {"Cost", "Recording", "Comparison", "Rules"}


def reads(run: Run, report: bool = True) -> dict[str, Any]:
    """What analysis reads of a run's manifest, through functions that were public at 92b1c05 and still are; with the
    report's facts unless `report` is False (a chaos run's report is its fault table)."""
    def run_reads(r: Run) -> dict[str, Any]:
        found = {"id": r.id, "designs": r.designs, "baseline": r.baseline, "candidate": r.candidate, "slo": r.slo,
                 "incomplete_reason": r.incomplete_reason,
                 "cells": [[c.id, c.design, c.phase, c.kind, c.repetition, c.offered_rate_per_s, c.duration_s]
                           for c in r.cells]}
        if report:
            found["facts"] = [[k, v] for k, v in facts(r) if k not in METHOD_ROWS]
        return found
    found = run_reads(run) | {"gate_facts": run_facts(run), "gate_context": run_context(run), "sweep": is_sweep(run)}
    if is_sweep(run):
        found["sweep_facts"] = [[k, v] for k, v in sweep_facts(run) if k not in METHOD_ROWS]
        found["points"] = [run_reads(point) for _, point in point_runs(run)]
    return json.loads(json.dumps(found))


def folder_of(manifest: Path, root: Path) -> Path:
    """A run folder holding only `manifest` (what analysis reads of a manifest needs no cell's files)."""
    run_dir = root / manifest.stem
    run_dir.mkdir()
    shutil.copy(manifest, run_dir / MANIFEST_FILE)
    return run_dir


@pytest.mark.parametrize("path", WRITTEN_BEFORE, ids=lambda p: p.stem)
def test_a_manifest_written_before_the_records_reads_back_byte_for_byte(path):
    text = path.read_text()
    record = RunRecord.from_dict(json.loads(text))
    assert json.dumps(record.to_dict(), indent=2) + "\n" == text


@pytest.mark.parametrize("path", WRITTEN_BEFORE, ids=lambda p: p.stem)
def test_analysis_reads_the_same_of_a_manifest_written_before_the_records(path, tmp_path):
    expected = json.loads(path.with_suffix(".read.json").read_text())
    run = load_run(folder_of(path, tmp_path), allow_incomplete=True)
    assert reads(run, report=not path.stem.startswith("chaos")) == expected


def test_the_stored_manifests_cover_every_kind_and_state():
    records = {p.stem: RunRecord.from_dict(json.loads(p.read_text())) for p in WRITTEN_BEFORE}
    assert {r.kind for r in records.values()} == {"bench", "sweep", "chaos"}
    assert {r.status for r in records.values()} == {"complete", "incomplete"}
    cells = [c for r in records.values() for c in (*r.cells, *(c for p in r.points for c in p.cells))]
    assert {c.status for c in cells} == {"complete", "incomplete"}
    assert any(r.resumes and r.resumes[0].redone for r in records.values())


def test_the_fixtures_manifests_round_trip():
    manifest = manifest_for("20261129-101500-fixture-abcdef", reference_specs(), {"p99_ms": 500.0, "error_rate": 0.01},
                            True, ("inline", "queued"))
    assert RunRecord.from_dict(manifest).to_dict() == manifest


def test_a_cell_is_named_by_cell_id_and_ends_in_place():
    cell = CellRecord.start("queued", "steady", "steady", 2, rate_per_s=50.0, users=None, duration_s=30.0, at=1.0)
    assert (cell.id, cell.model, cell.status) == ("queued.steady.r2", "open", "running")
    closed = CellRecord.start("inline", "steady", "steady", 2, rate_per_s=None, users=10, duration_s=30.0, at=2.0)
    assert (closed.id, closed.model) == ("inline.steady.r2", "closed")
    point = PointRecord(id="01-workers=2").with_cell(cell).with_cell(closed)
    ended = point.with_cell(replace(cell, status="complete", ended_at=31.0))
    assert [(c.id, c.status) for c in ended.cells] == [("queued.steady.r2", "complete"), ("inline.steady.r2", "running")]
    assert [c.status for c in ended.cut_short().cells] == ["complete", "incomplete"]
    assert ended.restarted().cells == () and ended.restarted().status == "running"


def test_a_run_cut_short_marks_what_was_running_incomplete():
    running = CellRecord.start("inline", "steady", "steady", 1, rate_per_s=10.0, users=None, duration_s=5.0, at=1.0)
    points = (PointRecord(id="01-workers=1", status="complete"), PointRecord(id="02-workers=2", status="running",
                                                                            cells=(running,)))
    record = RunRecord(schema_version=1, kind="sweep", points=points).finished("2026-12-06T00:00:00+00:00", "SIGINT")
    assert (record.status, record.error) == ("incomplete", "SIGINT")
    assert [p.status for p in record.points] == ["complete", "incomplete"]
    assert record.points[1].cells[0].status == "incomplete"
    assert RunRecord.from_dict(record.to_dict()) == record


def test_a_tier_with_a_budget_keeps_its_cgroup_keys_and_one_without_has_none():
    budgeted = {"declared": {"shared": False, "cpus": [0], "cpu_budget": 0.5}, "processes": 2, "cpus_allowed": [0],
                "cgroup": "/sys/fs/cgroup/cpu/offpath/run/web", "quota_us": 50000, "period_us": 100000,
                "cpu_budget": 0.5, "accounting": "cgroup /sys/fs/cgroup/cpuacct/offpath/run/web"}
    plain = {"declared": {"shared": True, "cpus": [1], "cpu_budget": None}, "processes": 0, "cpus_allowed": None,
             "accounting": "/proc (no group)"}
    for granted in (budgeted, plain):
        assert TierGrant.from_dict(granted).to_dict() == granted
        assert list(TierGrant.from_dict(granted).to_dict()) == list(granted)


MANIFEST_BY_KEY = re.compile(r"manifest\[|manifest\.get\(")


def test_nothing_outside_the_foundation_reads_a_manifest_by_key():
    """The harness and analysis go through the records (foundation/manifest_format.py); a manifest read as a dict
    outside them is the format spelled a second time."""
    files = [p for top in ("analysis", "offpath") for p in (ROOT / top).rglob("*")
             if p.suffix in (".py", ".ipynb") and p.is_file()]
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in files
                 for n, line in enumerate(p.read_text().splitlines(), 1) if MANIFEST_BY_KEY.search(line)]
    assert files and not offenders, offenders


def test_the_key_check_finds_a_read_by_key():
    assert MANIFEST_BY_KEY.search('sweep = run.manifest["experiment"]["sweep"]')
    assert MANIFEST_BY_KEY.search("status = manifest.get('status')")
    assert not MANIFEST_BY_KEY.search("status = run.record.status")
