"""A dead worker's job runs again within seconds; a live one's is never taken from it, also when Redis pauses
(services/queued/liveness.py). Real Redis, real workers, real SIGKILL and SIGSTOP."""

from __future__ import annotations

import json
import signal
import time

import redis
from rq import Worker

from services.queued.liveness import ABANDONED_AFTER_S, ABANDONED_KEY, FALSE_ABANDONMENTS_KEY, GONE, GONE_AFTER_S
from tests.conftest import profile_file, stored_campaign, until, valid_body


def _declarations(connection: redis.Redis, key: str) -> list[dict]:
    return [json.loads(item) for item in connection.lrange(key.format(queue="campaigns"), 0, -1)]


def test_a_killed_workers_job_runs_again_within_seconds(launch, own_redis, tmp_path):
    running = launch("queued", profile_file(tmp_path, "steady", 3000.0), workers=2, redis_url=own_redis.url)
    connection = running.redis()
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    job_id = f"{campaign_id}-generation"

    def holder():
        for worker in Worker.all(connection=connection):
            if worker.get_current_job_id() == job_id:
                return next(m for m in running.workers if m.argv[m.argv.index("--name") + 1] == worker.name)
        return None

    victim = until(holder, 10)
    time.sleep(1.5)  # a few pulses in: the watch has seen it alive
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    victim.expect_exit = True
    killed = time.monotonic()
    until(lambda: stored_campaign(connection, campaign_id).get("attempts") == "2", 15, every_s=0.05)
    recovered_s = time.monotonic() - killed
    # Not before the watch saw its pulse's connection gone for GONE_AFTER_S (it closed with the process).
    assert GONE_AFTER_S <= recovered_s <= 10.0, recovered_s

    final = until(lambda: stored_campaign(connection, campaign_id).get("status") in ("completed", "failed")
                   and stored_campaign(connection, campaign_id), 20)
    assert final["status"] == "completed"
    executions = connection.hgetall(f"offpath:executions:{campaign_id}")
    assert executions == {b"content": b"1", b"automation": b"1"}
    declared = _declarations(connection, ABANDONED_KEY)
    assert [d["job"] for d in declared] == [job_id] and declared[0]["what"] == "requeued"
    # Declared for its pulse's closed connection, without waiting for its heartbeat's ABANDONED_AFTER_S of silence.
    assert declared[0]["how"] == GONE, declared
    assert _declarations(connection, FALSE_ABANDONMENTS_KEY) == []


def test_no_job_is_taken_from_a_live_worker_when_redis_pauses(launch, own_redis, tmp_path):
    # Jobs that run 3 x ABANDONED_AFTER_S, with Redis stopped (SIGSTOP) for longer than ABANDONED_AFTER_S in the
    # middle: every heartbeat timestamp is stale the moment Redis answers again.
    wait_ms = 3 * ABANDONED_AFTER_S * 1000
    running = launch("queued", profile_file(tmp_path, "long", wait_ms), workers=2, redis_url=own_redis.url)
    connection = running.redis()
    with running.client() as client:
        ids = [client.post("/campaigns", json=valid_body()).json()["id"] for _ in range(2)]
    until(lambda: all(stored_campaign(connection, i).get("status") == "generating" for i in ids), 10)
    time.sleep(2.0)
    own_redis.process.send_signal(signal.SIGSTOP)
    time.sleep(ABANDONED_AFTER_S + 3)
    own_redis.process.send_signal(signal.SIGCONT)

    finals = until(lambda: all(stored_campaign(connection, i).get("status") in ("completed", "failed") for i in ids)
                    and [stored_campaign(connection, i) for i in ids], 60, every_s=0.2)
    assert [f["status"] for f in finals] == ["completed", "completed"]
    assert [f["attempts"] for f in finals] == ["2", "2"], "generation ran once per campaign, not again"
    assert _declarations(connection, ABANDONED_KEY) == []
    assert _declarations(connection, FALSE_ABANDONMENTS_KEY) == []
    assert all(w.alive() for w in running.workers), "every worker is working again after the pause"


def test_a_frozen_worker_is_taken_for_dead_and_says_so(launch, own_redis, tmp_path):
    # The limit of any liveness check: a worker process frozen (SIGSTOP here; a swap storm, a VM stall) for longer than
    # ABANDONED_AFTER_S cannot be told from a dead one, so its job is requeued. When it thaws, its pulse finds its
    # execution declared abandoned and records a false abandonment: the figure the chaos table shows, which would
    # stay at 0 only by luck if this record could not be made.
    running = launch("queued", profile_file(tmp_path, "frozen", 2 * ABANDONED_AFTER_S * 1000), workers=2,
                     redis_url=own_redis.url)
    connection = running.redis()
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    job_id = f"{campaign_id}-generation"
    by_name = {m.argv[m.argv.index("--name") + 1]: m for m in running.workers}
    frozen = until(lambda: next((by_name[w.name] for w in Worker.all(connection=connection)
                                  if w.get_current_job_id() == job_id), None), 10)
    time.sleep(1.5)
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        until(lambda: _declarations(connection, ABANDONED_KEY), ABANDONED_AFTER_S + 5, every_s=0.1)
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    false = until(lambda: _declarations(connection, FALSE_ABANDONMENTS_KEY), 5, every_s=0.1)
    assert [f["job"] for f in false] == [job_id]
