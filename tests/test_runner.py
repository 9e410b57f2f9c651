"""The runner end to end: a smoke experiment produces a complete, schema-valid results folder, and a
harness fault (a service killed mid-run, Ctrl-C) leaves a folder marked incomplete, with partial
data, and no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.stats.load import load_run
from foundation.manifest_format import RunRecord

SHORT = """
name = "short"
profile = "{profile}"
designs = ["inline"]
repetitions = 1
[slo]
p99_ms = 1000
error_rate = 0.05
[layout]
workers = 2
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 20
duration_s = 12
"""


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _bench(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "offpath.cli", "bench", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_smoke_experiment_writes_a_complete_schema_valid_folder(tmp_path):
    process = _bench(["smoke", "--out", str(tmp_path)], Path.cwd())
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path
    assert not (run_dir / "INCOMPLETE").exists()
    text = (run_dir / "manifest.json").read_text()
    manifest = json.loads(text)
    assert json.dumps(RunRecord.from_dict(manifest).to_dict(), indent=2) + "\n" == text  # the record is the file
    assert manifest["schema_version"] == 2 and manifest["status"] == "complete"
    assert manifest["versions"]["redis_server"] and manifest["git"]["sha"]
    designs = {cell["design"] for cell in manifest["cells"]}
    assert designs == {"inline", "queued"}
    kinds = {cell["kind"] for cell in manifest["cells"]}
    assert {"warmup", "steady", "capacity"} <= kinds
    for cell in manifest["cells"]:
        cell_dir = run_dir / "cells" / cell["id"]
        assert cell["status"] == "complete"
        for name in ("summary.json", "request.hlog", "request.raw.hlog", "send_lag.hlog",
                     "errors.csv", "locust_stats.csv"):
            assert (cell_dir / name).is_file(), f"{cell['id']} lacks {name}"
        if cell["design"] == "queued":
            assert (cell_dir / "completion.hlog").is_file() and (cell_dir / "queue.csv").is_file()
        # The design's Redis commands through the cell: the server's count less the harness's own, which the probe's
        # reads and census make for a queued design.
        commands = json.loads((cell_dir / "commands.json").read_text())
        assert commands["commands"] > 0 and commands["processed"] == commands["commands"] + commands["harness_commands"]
        assert sum(commands["by_kind"].values()) == commands["commands"]
        if cell["design"] == "queued":
            assert commands["harness_by_kind"].get("multi", 0) > 0  # the probe's reads, one MULTI each
        summary = json.loads((cell_dir / "summary.json").read_text())
        post = summary["endpoints"]["request"]
        assert post["count"] > 0 and post["p99_us"] >= post["p50_us"] > 0
        assert summary["commands"]["per_campaign"] > 0
    run = load_run(run_dir)  # the analysis side accepts it
    assert len(run.cells) == len(manifest["cells"])
    assert "P99" in err  # the closing table
    # The main job ends with its report written, its path printed, and the run folder last.
    assert out.strip().splitlines()[-2] == f"report: {run_dir / 'report.html'}"
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()


@pytest.mark.parametrize("fault", ["kill-service", "kill-redis", "sigint"])
def test_harness_fault_marks_the_run_incomplete_and_leaves_no_process(fault, tmp_path, profiles):
    experiment = tmp_path / "short.toml"
    experiment.write_text(SHORT.format(profile=profiles["quick"]))
    process = _bench([str(experiment), "--out", str(tmp_path / "runs")], Path.cwd())
    deadline = time.monotonic() + 60
    manifest_path = None
    while time.monotonic() < deadline:  # wait until the load is running
        found = list((tmp_path / "runs").glob("*/cells/*/request.hlog"))
        if found and found[0].stat().st_size > 300:
            manifest_path = found[0].parents[2] / "manifest.json"
            break
        time.sleep(0.2)
    assert manifest_path is not None, process.communicate(timeout=30)
    started = _descendants(process.pid)
    assert len(started) >= 3  # redis-server, the service, locust
    if fault == "kill-service":
        layout = json.loads(manifest_path.read_text())["layout"]
        service = next(p for procs in layout.values() for p in procs if p["role"] == "service")
        os.kill(service["pid"], signal.SIGKILL)
    elif fault == "kill-redis":
        redis_pid = next(pid for pid in started if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(redis_pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2  # no answer: a harness error under foundation/errors.py's policy
    run_dir = Path(out.strip().splitlines()[-1])
    reason = (run_dir / "INCOMPLETE").read_text()
    assert ("SIGINT" in reason) if fault == "sigint" else ("died" in reason)
    if fault == "kill-redis":
        assert "redis-server" in reason
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert RunRecord.from_dict(manifest).to_dict() == manifest
    assert manifest["status"] == "incomplete" and manifest["error"]
    cell_dir = run_dir / "cells" / manifest["cells"][0]["id"]
    assert (cell_dir / "request.hlog").stat().st_size > 300  # what was measured is kept
    time.sleep(0.5)
    assert not _alive(started), f"orphans left behind: {_alive(started)}"
