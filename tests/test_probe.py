"""The queue probe end to end: every campaign a cell accepted is accounted for in its summary — completed
(with its latency in completion.hlog), failed, or pending at the cell's end — however many workers
finish jobs at once."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from analysis.stats.histogram import stats
from analysis.stats.load import load_run, read_interval_log
from offpath.probe import QueueProbe, take_census, write_census_logs
from offpath.queues.rq import RqQueue
from services.campaign.store import campaign_key
from tests.conftest import _databases, _with_db

# Queued only, 12 workers finishing jobs concurrently, no failures: a warm-up and a steady cell on one
# Redis database, so the steady cell must also tell its own campaigns from the warm-up's.
TWELVE_WORKERS = """
name = "twelve-workers"
profile = "{profile}"
designs = ["queued"]
repetitions = 1
payload_seed = 1
[slo]
p99_ms = 2000
error_rate = 0.05
[layout]
workers = 12
poll_interval_s = 0.0
drain_timeout_s = 20.0
[[phases]]
name = "warmup"
kind = "warmup"
rate_per_s = 20
duration_s = 2
[[phases]]
name = "steady"
kind = "steady"
rate_per_s = 60
duration_s = 10
"""


def test_every_accepted_campaign_is_counted_with_twelve_workers(tmp_path, profiles):
    experiment = tmp_path / "twelve.toml"
    experiment.write_text(TWELVE_WORKERS.format(profile=profiles["quick"]))
    process = subprocess.run([sys.executable, "-m", "offpath.cli", "bench", str(experiment), "--out",
                              str(tmp_path / "runs")], capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    run = load_run(Path(process.stdout.strip().splitlines()[-1]))
    assert [c.id for c in run.cells] == ["queued.warmup.r1", "queued.steady.r1"]
    for cell in run.cells:
        summary = json.loads((cell.dir / "summary.json").read_text())
        acknowledged = summary["endpoints"]["request"]["count"]  # the 202s Locust recorded
        queue = summary["queue"]
        assert acknowledged > 0
        assert queue["completion"]["count"] == acknowledged, cell.id
        assert queue["accepted"] == acknowledged, cell.id
        assert queue["pending"] == 0 and queue["failed"] == 0, cell.id  # the runner drained the queue
        assert queue["completion"]["count"] + queue["failed"] + queue["pending"] == acknowledged
        assert cell.log("completion").total_count == acknowledged


@pytest.fixture
def db_url(redis_server) -> str:
    url = _with_db(redis_server.url, next(_databases))
    redis.Redis.from_url(url).flushdb()
    return url


def _campaign(connection: redis.Redis, campaign_id: str, accepted_at: float, **final: float) -> None:
    connection.hset(campaign_key(campaign_id), mapping={"status": "accepted", "accepted_at": repr(accepted_at),
                                                        **{k: repr(v) for k, v in final.items()}})


def test_census_counts_the_window_s_campaigns_by_where_they_stood_at_its_end(db_url, tmp_path):
    connection = redis.Redis.from_url(db_url)
    start, stop = 1_000.0, 1_010.0
    _campaign(connection, "earlier-cell", start - 0.5, completed_at=start + 1)  # another cell's: not counted
    _campaign(connection, "next-cell", stop + 0.1)
    latencies_s = {f"done-{i}": (start + i, 0.010 * (i + 1)) for i in range(8)}  # completes in second i
    for campaign_id, (accepted_at, latency_s) in latencies_s.items():
        _campaign(connection, campaign_id, accepted_at, completed_at=accepted_at + latency_s)
    _campaign(connection, "failed", start + 2, failed_at=start + 3)
    _campaign(connection, "still-running", start + 9)
    _campaign(connection, "finished-after-the-end", start + 9.5, completed_at=stop + 0.2)

    census = take_census(connection, start, stop)

    assert census.counts() == {"started_at": start, "stopped_at": stop, "accepted": 11, "completed": 8, "failed": 1,
                               "pending": 2}
    total = write_census_logs(tmp_path, census, interval_s=1.0)
    log = read_interval_log(tmp_path / "completion.hlog")
    assert total.get_total_count() == log.total_count == 8
    assert log.n_intervals == 10 and list(log.start_s) == [float(i) for i in range(10)]
    assert list(log.interval_counts()) == [1] * 8 + [0, 0]  # binned by completion time
    assert stats(log.merged())["max_us"] == pytest.approx(80_000, rel=0.001)


def test_probe_writes_the_census_beside_its_samples(db_url, tmp_path):
    connection = redis.Redis.from_url(db_url)
    with QueueProbe(RqQueue(db_url, "probe-test"), tmp_path, census_redis_url=db_url) as probe:
        now = time.time()
        _campaign(connection, "a", now, completed_at=now + 0.02)
        _campaign(connection, "b", now, completed_at=now + 0.03)
        _campaign(connection, "c", now)
        time.sleep(0.1)
    assert json.loads((tmp_path / "completion.json").read_text()) | {"started_at": 0, "stopped_at": 0} == {
        "started_at": 0, "stopped_at": 0, "accepted": 3, "completed": 2, "failed": 0, "pending": 1}
    assert read_interval_log(tmp_path / "completion.hlog").total_count == 2
    with open(tmp_path / "queue.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert (last["completed_total"], last["campaigns_failed_total"]) == ("2", "0")
    assert probe.completion_total.get_total_count() == 2 and not probe.errors


def test_backlog_counts_jobs_between_rq_s_lists(db_url, tmp_path):
    connection = redis.Redis.from_url(db_url)
    queue = RqQueue(db_url, "probe-test")
    with QueueProbe(queue, tmp_path) as probe:
        assert probe.backlog() == 0
        # released by its dependency but not yet on the queue, and taken by a worker but not yet started
        connection.zadd(queue.queue.ready_job_registry.key, {"x-automation": time.time()})
        connection.rpush(queue.queue.intermediate_queue_key, "y-generation")
        assert probe.backlog() == 2
