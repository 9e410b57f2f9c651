"""A real sweep end to end (Redis, uvicorn, RQ and Dramatiq workers, Locust): a sweep over the queue backend (a
parameter of names: its values are text, its map has no order), two points in one run folder with one manifest and
the decision map in its report; and a sweep interrupted in its second point, then resumed with --resume, ends as
the same folder as one that ran uninterrupted (the same files and manifest; measured values differ, as they do)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from analysis.stats.decision_map import MEASURES, decision_map
from analysis.stats.load import load_run
from foundation.manifest_format import RunRecord

TINY = """
name = "tiny-sweep"
profile = "{profile}"
designs = ["inline", "queued"]
repetitions = 2
payload_seed = 1
[sweep]
backend = ["rq", "dramatiq"]
[slo]
p99_ms = 5000
error_rate = 0.05
[layout]
workers = 2
drain_timeout_s = 3
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 10
duration_s = 3
[capacity]
start_per_s = 10
step_per_s = 10
max_per_s = 10
step_duration_s = 2
"""
POINTS = ["01-backend=rq", "02-backend=dramatiq"]


def _bench(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "offpath.cli", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, profiles) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny-sweep.toml"
    path.write_text(TINY.format(profile=profiles["quick"]))
    return path


@pytest.fixture(scope="module")
def uninterrupted(experiment, tmp_path_factory) -> tuple[Path, str]:
    process = _bench([str(experiment), "--out", str(tmp_path_factory.mktemp("whole"))])
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    return Path(out.strip().splitlines()[-1]), err


def shape(run_dir: Path) -> list[str]:
    """Every file of a run folder by its path, the Locust processes' pids taken out of the acknowledgement logs."""
    return sorted(re.sub(r"acks-\d+\.txt$", "acks-<pid>.txt", str(p.relative_to(run_dir)))
                  for p in run_dir.rglob("*") if p.is_file())


def manifest_shape(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must agree between two runs of one sweep: the keys, the experiment, and per point what it set, its
    status, the experiment and profile it ran, its blocks and its cells — not when they ran or what they measured."""
    return {
        "keys": sorted(manifest), "kind": manifest["kind"], "status": manifest["status"],
        "experiment": {k: v for k, v in manifest["experiment"].items() if k != "source"},
        "points": [{"id": p["id"], "values": p["values"], "status": p["status"], "experiment": p["experiment"],
                    "profile": p["profile"], "blocks": sorted(p["layout"]), "placement": sorted(p["placement"]),
                    "cells": [(c["id"], c["kind"], c["design"], c["repetition"], c["offered_rate_per_s"], c["status"])
                              for c in p["cells"]]} for p in manifest["points"]],
    }


def test_a_two_point_sweep_writes_one_folder_one_manifest_and_the_map(uninterrupted):
    run_dir, err = uninterrupted
    assert "2 sweep points" in err and "planned" in err
    text = (run_dir / "manifest.json").read_text()
    manifest = json.loads(text)
    assert json.dumps(RunRecord.from_dict(manifest).to_dict(), indent=2) + "\n" == text  # the record is the file
    assert manifest["kind"] == "sweep" and manifest["status"] == "complete" and manifest["cells"] == []
    assert [p["id"] for p in manifest["points"]] == POINTS and manifest["resumes"] == []
    assert sorted(p.name for p in (run_dir / "points").iterdir()) == POINTS
    assert not list((run_dir / "points").rglob("manifest.json"))  # one manifest, at the top
    assert "point 01-backend=rq: backend rq" in err and "point 02-backend=dramatiq: backend dramatiq" in err
    for point, backend in zip(manifest["points"], ("rq", "dramatiq"), strict=True):
        assert point["status"] == "complete" and point["values"] == {"backend": backend}
        assert point["experiment"]["declarations"]["queued"]["params"]["backend"] == backend
        worker_log = run_dir / "points" / point["id"] / "logs" / "queued.r1" / "worker-0.log"
        assert f"offpath worker ready: backend={backend} " in worker_log.read_text()  # each point's own library
        # interleaved repetitions, then a capacity search per design
        assert [c["id"] for c in point["cells"]] == [
            "inline.steady.r1", "queued.steady.r1", "inline.steady.r2", "queued.steady.r2",
            "inline.capacity-0010_0.r1", "queued.capacity-0010_0.r1"]
        for cell in point["cells"]:
            cell_dir = run_dir / "points" / point["id"] / "cells" / cell["id"]
            assert cell["status"] == "complete" and (cell_dir / "summary.json").is_file()
            summary = json.loads((cell_dir / "summary.json").read_text())
            assert summary["endpoints"]["request"]["count"] > 0
        assert (run_dir / "points" / point["id"] / "report.html").is_file()
    dmap = decision_map(load_run(run_dir))
    for point in dmap.points:
        for measure in MEASURES:
            assert point.ratios[measure.key].value is not None, (point.id, measure.key)
        assert point.ratios["p99"].low is not None and point.ratios["cpu"].low is not None
    report = (run_dir / "report.md").read_text()
    for measure in MEASURES:
        assert (run_dir / "plots" / f"map-{measure.key.replace('_', '-')}.png").is_file()
        assert dmap.sentences[measure.key] in report
    assert (run_dir / "decision_map.json").is_file()


def test_a_resumed_sweep_ends_as_the_same_folder_as_an_uninterrupted_one(experiment, uninterrupted, tmp_path):
    whole, _ = uninterrupted
    process = _bench([str(experiment), "--out", str(tmp_path)])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # interrupt once the second point has measured something
        logs = list(tmp_path.glob(f"*/points/{POINTS[1]}/cells/*/request.hlog"))
        if logs and logs[0].stat().st_size > 200:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    run_dir = Path(out.strip().splitlines()[-1])
    assert "--resume" in err  # the interrupted run says how to go on
    cut = json.loads((run_dir / "manifest.json").read_text())
    assert [p["status"] for p in cut["points"]] == ["complete", "incomplete"]
    assert RunRecord.from_dict(cut).to_dict() == cut
    kept = [c["started_at"] for c in cut["points"][0]["cells"]]
    stale = run_dir / "points" / POINTS[1] / "cells" / "stale-left-by-the-interrupted-attempt"
    stale.mkdir(parents=True)

    process = _bench([str(experiment), "--resume", str(run_dir)])
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    assert Path(out.strip().splitlines()[-1]) == run_dir
    assert f"point {POINTS[0]}: complete, kept" in err
    resumed = json.loads((run_dir / "manifest.json").read_text())
    assert [c["started_at"] for c in resumed["points"][0]["cells"]] == kept  # the finished point was not redone
    assert [r["redone"] for r in resumed["resumes"]] == [[POINTS[1]]]
    assert RunRecord.from_dict(resumed).to_dict() == resumed
    assert not stale.exists() and not (run_dir / "INCOMPLETE").exists()

    assert shape(run_dir) == shape(whole)
    assert manifest_shape(resumed) == manifest_shape(json.loads((whole / "manifest.json").read_text()))
