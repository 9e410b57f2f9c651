"""The queued design on Celery: a killed worker's message goes back to its queue within seconds, and a live worker's
is never taken from it, also when Redis crashes or pauses (services/queued/celery_backend/holding.py). Real Redis, real
Celery workers, real SIGKILL and SIGSTOP. (The killed worker's job running again once: tests/test_backend_celery.py.)"""

from __future__ import annotations

import json
import signal
import time

import pytest

from services.queued.celery_backend.holding import FETCHING_KEY, HOLDERS_KEY, LOST_TRACK, WORKERS_KEY
from services.queued.halting import HALT_ENV
from services.queued.liveness import ABANDONED_KEY, GONE_AFTER_S
from tests.conftest import profile_file, stored_campaign, until, valid_body

WAIT_S = 6.0  # each generation: longer than GONE_AFTER_S and than the outages below


def _declared(connection) -> list[dict]:
    return [json.loads(item) for item in connection.lrange(ABANDONED_KEY.format(queue="campaigns"), 0, -1)]


def test_a_killed_workers_message_goes_back_to_its_queue_within_seconds(launch, own_redis, tmp_path):
    running = launch("queued", profile_file(tmp_path, "held", WAIT_S * 1000), workers=2,
                     redis_url=own_redis.url, backend="celery")
    connection = running.redis()
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    holder = until(lambda: next(iter(connection.hvals(HOLDERS_KEY)), None), 10).decode()
    victim = next(w for w in running.workers if w.argv[w.argv.index("--name") + 1] == holder)
    time.sleep(0.5)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    victim.expect_exit = True
    killed = time.monotonic()
    until(lambda: stored_campaign(connection, campaign_id).get("attempts") == "2", 15, every_s=0.05)
    assert GONE_AFTER_S <= time.monotonic() - killed <= GONE_AFTER_S + 3.0
    final = until(lambda: stored_campaign(connection, campaign_id).get("status") == "completed"
                   and stored_campaign(connection, campaign_id), WAIT_S + 10)
    assert final["attempts"] == "3"  # generation twice (the killed attempt counts), automation once
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
    assert [(d["worker"], d["what"]) for d in _declared(connection)] == [(holder, "requeued")]
    assert connection.hlen(HOLDERS_KEY) == 0  # acknowledged: forgotten with it


def test_a_worker_killed_between_its_fetch_and_its_record_loses_no_message(launch, own_redis, tmp_path):
    # kombu's window: a message fetched from the queue and not yet recorded as unacknowledged. The worker that fetched
    # it dies right there (OFFPATH_HALT_AT): the message waits on its fetching list, and goes back to the queue once
    # its worker has been gone for GONE_AFTER_S.
    marker = tmp_path / "halted"
    running = launch("queued", profile_file(tmp_path, "held", WAIT_S * 1000), workers=2,
                     redis_url=own_redis.url, backend="celery",
                     env={HALT_ENV: f"dequeued,KILL,{marker}"})
    connection = running.redis()
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    victim = until(lambda: next((m for m in running.workers if not m.alive()), None), 15)
    victim.expect_exit = True
    killed_at = float(marker.read_text())
    name = victim.argv[victim.argv.index("--name") + 1]
    assert connection.llen(FETCHING_KEY.format(holder=name)) == 1 and connection.hlen(HOLDERS_KEY) == 0

    until(lambda: stored_campaign(connection, campaign_id).get("status") == "generating", 15, every_s=0.05)
    assert GONE_AFTER_S <= time.time() - killed_at <= GONE_AFTER_S + 3.0
    final = until(lambda: stored_campaign(connection, campaign_id).get("status") == "completed"
                   and stored_campaign(connection, campaign_id), WAIT_S + 10)
    assert final["attempts"] == "2"  # it never ran before: generation once, automation once
    assert [(d["worker"], d["what"]) for d in _declared(connection)] == [(name, "requeued from its fetching list")]
    assert connection.llen(FETCHING_KEY.format(holder=name)) == 0
    assert name.encode() not in connection.smembers(WORKERS_KEY)  # looked at, and forgotten


@pytest.mark.parametrize("outage", ["crash", "pause"])
def test_no_message_is_taken_from_a_live_worker_when_redis_goes_away(launch, own_redis, tmp_path, outage):
    running = launch("queued", profile_file(tmp_path, "held", WAIT_S * 1000), workers=2,
                     redis_url=own_redis.url, backend="celery")
    connection = running.redis()
    with running.client() as client:
        ids = [client.post("/campaigns", json=valid_body()).json()["id"] for _ in range(2)]
    until(lambda: connection.hlen(HOLDERS_KEY) == 2, 10)
    time.sleep(0.5)
    if outage == "crash":  # every connection dropped: each watch's presence too, until it connects again
        own_redis.kill()
        time.sleep(1.0)
        own_redis.restart()
    else:
        own_redis.process.send_signal(signal.SIGSTOP)
        time.sleep(GONE_AFTER_S + 1.0)
        own_redis.process.send_signal(signal.SIGCONT)

    finals = until(lambda: all(stored_campaign(connection, i).get("status") in ("completed", "failed") for i in ids)
                    and [stored_campaign(connection, i) for i in ids], 3 * WAIT_S, every_s=0.2)
    assert [f["status"] for f in finals] == ["completed", "completed"]
    assert [f["attempts"] for f in finals] == ["2", "2"], "generation ran once per campaign, not again"
    assert _declared(connection) == []


@pytest.mark.parametrize("where", ["unacked", "fetching"])
def test_a_message_recorded_for_a_live_worker_that_none_of_its_channels_holds_goes_back(launch, own_redis, tmp_path,
                                                                                         where):
    # What a live worker loses track of (kombu's restore at a channel's close failing while Redis is away; a fetch
    # Redis ran as it crashed): a record of a message as this worker's that none of its open channels holds. Planted
    # here as a copy of a finished campaign's generation message: recorded as unacknowledged by the idle worker (an
    # unacked entry, its index, its holder) or left on its fetching list. Its watch puts it back on the queue after
    # GONE_AFTER_S; it runs again and finds its step done (no second side effect).
    running = launch("queued", profile_file(tmp_path, "quick", 200), workers=1, redis_url=own_redis.url,
                     backend="celery")
    connection = running.redis()
    name = running.workers[0].argv[running.workers[0].argv.index("--name") + 1]
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    payload = until(lambda: next(iter(connection.hvals("unacked")), None), 10, every_s=0.01)
    until(lambda: stored_campaign(connection, campaign_id).get("status") == "completed", 15)
    message = json.loads(payload)[0]
    assert message["headers"]["task"] == "offpath.generate"
    if where == "unacked":
        connection.hset("unacked", "planted-tag", payload)
        connection.zadd("unacked_index", {"planted-tag": time.time()})
        connection.hset(HOLDERS_KEY, "planted-tag", name)
        what = "requeued"
    else:
        connection.rpush(FETCHING_KEY.format(holder=name), json.dumps(message))
        what = "requeued from its fetching list"
    planted = time.monotonic()
    declared = until(lambda: _declared(connection), GONE_AFTER_S + 5, every_s=0.05)
    assert GONE_AFTER_S <= time.monotonic() - planted <= GONE_AFTER_S + 3.0
    assert [(d["worker"], d["how"], d["what"], d["job"]) for d in declared] == [
        (name, LOST_TRACK, what, message["headers"]["id"])]
    until(lambda: connection.hlen("unacked") == 0 and connection.llen("campaigns") == 0
          and connection.llen(FETCHING_KEY.format(holder=name)) == 0 and connection.hlen(HOLDERS_KEY) == 0, 10)
    time.sleep(0.5)
    final = stored_campaign(connection, campaign_id)
    assert final["status"] == "completed" and final["attempts"] == "2"
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
