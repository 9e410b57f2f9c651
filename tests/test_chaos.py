"""Faults under load: acknowledged work is never lost — workers SIGKILLed mid-job, a Redis crash (AOF always) and a
Redis paused longer than the abandonment threshold still leave every acknowledged campaign completed or visibly failed,
none duplicated, no job stuck; a killed worker's job runs again within seconds, and no job is taken from a live one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.manifest_format import RunRecord

CHAOS = """
name = "chaos-test"
profile = "{profile}"
rate_per_s = 15
duration_s = 10
workers = 2
settle_timeout_s = 120

[[faults]]
name = "kill-worker"
kind = "kill-worker"
at_s = 2
kills = 3
every_s = 1.0

[[faults]]
name = "redis-pause"
kind = "pause-redis"
at_s = 3
for_s = 7

[[faults]]
name = "redis-crash-aof-always"
kind = "restart-redis"
aof = "always"
at_s = 4
down_s = 1.5

[[faults]]
name = "freeze-worker"
kind = "freeze-worker"
at_s = 3
for_s = 7

[[faults]]
name = "client-disconnect-inline"
kind = "client-disconnect"
design = "inline"
at_s = 2
count = 5
"""


@pytest.mark.timeout(600)
def test_faults_lose_nothing_and_duplicate_nothing(tmp_path, profiles):
    experiment = tmp_path / "chaos.toml"
    experiment.write_text(CHAOS.format(profile=profiles["quick"]))
    result = subprocess.run(
        [sys.executable, "-m", "offpath.cli", "chaos", str(experiment), "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    rows = {row["fault"]: row for row in json.loads((run_dir / "chaos.json").read_text())}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "chaos" and RunRecord.from_dict(manifest).to_dict() == manifest
    assert set(rows) == {"kill-worker", "redis-pause", "redis-crash-aof-always", "freeze-worker",
                         "client-disconnect-inline"}
    # The inline design keeps its campaigns in offpath's store too: audited there, not through a status URL it has not.
    inline = rows.pop("client-disconnect-inline")
    assert inline["acknowledged"] > 50 and inline["ok"] and inline["events"], inline
    assert inline["lost"] == 0 and inline["duplicated"] == 0 and inline["pending"] == 0, inline
    for row in rows.values():
        assert row["acknowledged"] > 50, row
        assert row["lost"] == 0 and row["duplicated"] == 0 and row["pending"] == 0 and row["stuck"] == 0, row
        assert row["completed"] + row["failed"] == row["acknowledged"]
        assert row["events"], "the fault was injected"
        assert row["ok"], row
    assert all(rows[name]["false_abandonments"] == 0 for name in ("kill-worker", "redis-pause", "redis-crash-aof-always"))
    # The frozen worker's job was taken for dead and ran again; the woken worker recorded nothing twice (duplicated 0).
    assert rows["freeze-worker"]["abandoned"] >= 1, rows["freeze-worker"]
    killed = rows["kill-worker"]
    hits = [event for event in killed["events"] if event["what"] == "SIGKILL worker"]
    assert len(hits) == 3 and all(event["job"] for event in hits), "each kill counted hit a job its worker held"
    assert len(killed["recovery_s"]) == 3 and all(t is not None and t <= 10.0 for t in killed["recovery_s"]), killed
    assert killed["abandoned"] >= 3
    assert rows["redis-pause"]["workers_alive"] == "2/2"
    report = (run_dir / "report.md").read_text()
    assert "| kill-worker (queued) |" in report and "| client-disconnect-inline (inline) |" in report
    assert "lost" in report


@pytest.mark.fast
def test_the_shipped_scenarios_read_into_one_model_per_kind():
    from offpath.chaos import load_chaos
    from offpath.faults import (
        ClientDisconnect,
        FreezeWorker,
        KillAllWorkers,
        KillWorker,
        NoFault,
        Partition,
        RestartRedis,
    )
    from services.campaign.profile import ProfileSpec

    chaos = load_chaos("chaos")
    faults = {fault.name: fault for fault in chaos.faults}
    assert len(faults) == len(chaos.faults) == 14
    killed = faults["kill-worker"]
    assert isinstance(killed, KillWorker) and (killed.kills, killed.every_s, killed.at_s, killed.duration_s) == \
        (22, 1.0, 3.0, 60.0)
    every = faults["kill-all-workers"]
    assert isinstance(every, KillAllWorkers) and (every.kills, every.every_s) == (20, 12.0)
    frozen = faults["freeze-worker"]
    assert isinstance(frozen, FreezeWorker) and frozen.for_s == 8.0 and frozen.takes_for_dead
    assert isinstance(faults["redis-crash-aof-always"], RestartRedis) and faults["redis-crash-aof-always"].aof == "always"
    slow_job = faults["slow-job"]
    assert isinstance(slow_job, NoFault) and slow_job.profile == ProfileSpec("slow-provider")
    assert (slow_job.rate_per_s, slow_job.duration_s) == (0.5, 8.0)
    leaving = faults["client-disconnect-inline"]
    assert isinstance(leaving, ClientDisconnect) and leaving.design == "inline" and leaving.abort_after_ms == (5.0, 150.0)
    assert [name for name, fault in faults.items() if fault.relayed] == ["partition"]
    assert isinstance(faults["partition"], Partition)
    resolved = json.loads(json.dumps(chaos.resolved()))  # what the manifest records: plain JSON, the spec as its text
    assert resolved["profile"] == "default" and resolved["faults"][7]["profile"] == "flaky"


FOREIGN = """
name = "chaos-foreign"
rate_per_s = 10
duration_s = 8
workers = 2
settle_timeout_s = 90

# offpath's queued service declared as any team's design would be: no census of its state, no queue adapter, so the
# audit can only ask its status URL.
[designs.orders]
contract = "{contract}"
[designs.orders.web]
command = "{{python}} -m uvicorn --factory services.queued.app:create_app --host 127.0.0.1 --port {{port}}"
cwd = "{root}"
env = {{ REDIS_URL = "{{redis_url}}", OFFPATH_PROFILE = "{profile}" }}
ready = {{ url = "/healthz" }}
[designs.orders.workers]
command = "{{python}} -m services.queued.worker --name {{name}}"
cwd = "{root}"
env = {{ REDIS_URL = "{{redis_url}}", OFFPATH_PROFILE = "{profile}" }}
ready = {{ log = "offpath worker ready" }}

[[faults]]
name = "kill-worker"
kind = "kill-worker"
design = "orders"
at_s = 2
kills = 2
every_s = 1.0
"""


@pytest.mark.timeout(400)
def test_a_design_offpath_cannot_look_into_is_audited_through_its_status_url(tmp_path, profiles):
    root = Path(__file__).resolve().parent.parent
    experiment = tmp_path / "chaos.toml"
    experiment.write_text(FOREIGN.format(contract=root / "services" / "campaign" / "contract.toml", root=root,
                                         profile=profiles["quick"]))
    result = subprocess.run(
        [sys.executable, "-m", "offpath.cli", "chaos", str(experiment), "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    (row,) = json.loads((run_dir / "chaos.json").read_text())
    assert row["design"] == "orders" and row["how"].startswith("HTTP")
    assert row["acknowledged"] > 50 and row["completed"] + row["failed"] == row["acknowledged"]
    assert (row["lost"], row["pending"], row["unanswered"]) == (0, 0, 0) and row["ok"]
    assert "duplicated" not in row and "stuck" not in row  # what HTTP cannot show is not claimed
    kills = [e for e in row["events"] if e["what"] == "SIGKILL worker"]
    assert len(kills) == 2 and "recovery_s" not in row  # its jobs cannot be read: no time to run again
    assert "| kill-worker | 10/s for 8 s |" in (run_dir / "chaos.md").read_text()
