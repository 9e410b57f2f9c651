"""A real sweep end to end (Redis, uvicorn, RQ and Dramatiq workers, Locust): a sweep over the queue backend (a
parameter of names: its values are text, its map has no order), two points in one run folder with one manifest and
the decision map in its report; and a sweep interrupted in its second point, then resumed with --resume, ends as
the folder an uninterrupted run writes: its redone point holds what its never-interrupted point holds, file for file,
beside the points only what a finished sweep writes, and its manifest has both points complete (one sweep run serves
both claims)."""

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
def resumed(experiment, tmp_path_factory) -> dict[str, Any]:
    """One sweep, interrupted once its second point has measured something, then resumed to the end: what both tests
    read (a sweep's whole run twice, uninterrupted and resumed, cost the suite 90 s more for the same claims)."""
    process = _bench([str(experiment), "--out", str(tmp_path_factory.mktemp("sweep"))])
    out_dir = Path(process.args[-1])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # interrupt once the second point has measured something
        logs = list(out_dir.glob(f"*/points/{POINTS[1]}/cells/*/request.hlog"))
        if logs and logs[0].stat().st_size > 200:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, first_err = process.communicate(timeout=60)
    assert process.returncode == 2, first_err[-3000:]
    run_dir = Path(out.strip().splitlines()[-1])
    cut = json.loads((run_dir / "manifest.json").read_text())
    stale = run_dir / "points" / POINTS[1] / "cells" / "stale-left-by-the-interrupted-attempt"
    stale.mkdir(parents=True)

    process = _bench([str(experiment), "--resume", str(run_dir)])
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    return {"run_dir": run_dir, "out": out, "first_err": first_err, "err": err, "cut": cut, "stale": stale}


def shape(run_dir: Path) -> list[str]:
    """Every file of a run folder by its path, the Locust processes' pids taken out of the acknowledgement logs."""
    return sorted(re.sub(r"acks-\d+\.txt$", "acks-<pid>.txt", str(p.relative_to(run_dir)))
                  for p in run_dir.rglob("*") if p.is_file())


def point_shape(point: dict[str, Any]) -> dict[str, Any]:
    """What two points of one sweep share in its manifest: their status, blocks and cells — not what they set, when
    they ran or what they measured."""
    return {"status": point["status"], "blocks": sorted(point["layout"]), "placement": sorted(point["placement"]),
            "cells": [(c["id"], c["kind"], c["design"], c["repetition"], c["offered_rate_per_s"], c["status"])
                      for c in point["cells"]]}


def test_a_two_point_sweep_writes_one_folder_one_manifest_and_the_map(resumed):
    run_dir, err = resumed["run_dir"], resumed["first_err"] + resumed["err"]
    assert "2 sweep points" in resumed["first_err"] and "planned" in resumed["first_err"]
    text = (run_dir / "manifest.json").read_text()
    manifest = json.loads(text)
    assert json.dumps(RunRecord.from_dict(manifest).to_dict(), indent=2) + "\n" == text  # the record is the file
    assert manifest["kind"] == "sweep" and manifest["status"] == "complete" and manifest["cells"] == []
    assert [p["id"] for p in manifest["points"]] == POINTS
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


def test_a_resumed_sweep_ends_as_the_same_folder_as_an_uninterrupted_one(resumed):
    run_dir, cut, err = resumed["run_dir"], resumed["cut"], resumed["err"]
    assert "--resume" in resumed["first_err"]  # the interrupted run says how to go on
    assert [p["status"] for p in cut["points"]] == ["complete", "incomplete"]
    assert RunRecord.from_dict(cut).to_dict() == cut
    kept = [c["started_at"] for c in cut["points"][0]["cells"]]

    assert Path(resumed["out"].strip().splitlines()[-1]) == run_dir
    assert f"point {POINTS[0]}: complete, kept" in err
    whole = json.loads((run_dir / "manifest.json").read_text())
    assert [c["started_at"] for c in whole["points"][0]["cells"]] == kept  # the finished point was not redone
    assert [r["redone"] for r in whole["resumes"]] == [[POINTS[1]]]
    assert RunRecord.from_dict(whole).to_dict() == whole
    assert not resumed["stale"].exists() and not (run_dir / "INCOMPLETE").exists()

    # The same folder as an uninterrupted run: the redone point holds what the point that was never interrupted
    # holds, file for file, and nothing else is left beside the points but what a finished sweep writes.
    points = run_dir / "points"
    assert shape(points / POINTS[1]) == shape(points / POINTS[0])
    assert [path for path in shape(run_dir) if not path.startswith("points/")] == sorted(
        ["manifest.json", "report.md", "report.html", "decision_map.json",
         *(f"plots/map-{m.key.replace('_', '-')}.{kind}" for m in MEASURES for kind in ("png", "svg")),
         *(f"logs/queued.contract-check/{log}.log" for log in ("queued-service", "worker-0", "worker-1"))])
    assert [point_shape(p) for p in whole["points"]] == [point_shape(whole["points"][0])] * 2
