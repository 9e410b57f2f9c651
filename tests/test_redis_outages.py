"""The queued design on Dramatiq and on Celery through a Redis outage: every campaign acknowledged before, during or
after it completes once Redis answers again, while the workers go on running.

The chaos run of 2026-12-06 (issue #24) left 3 campaigns pending on Dramatiq after a Redis crash and 3 after a pause:
what Dramatiq does after an actor returned (the ack, the pipeline's next message, a retry's enqueue) failed while Redis
was away, and its message stayed in a live worker's ack set (services/queued/dramatiq_backend/outages.py). The run of
2026-12-07 left 328 on Celery after a crash: an acknowledgement kombu gave up on kept a worker's one-message prefetch
window full, and Celery drops a message whose retry it cannot publish (services/queued/celery_backend/holding.py,
application.py). Real Redis, real workers, real SIGKILL and SIGSTOP. (RQ's: tests/test_liveness.py,
tests/test_windows.py.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from services.queued.halting import HALT_ENV
from tests.conftest import profile_file, stored_campaign, until, valid_body
from tests.queue_backend_contract import log_of

CAMPAIGNS = 8


def _admit(running) -> list[str]:
    with running.client() as client:
        return [client.post("/campaigns", json=valid_body()).json()["id"] for _ in range(CAMPAIGNS)]


def _all_final(connection, ids: list[str]) -> list[dict] | None:
    stored = [stored_campaign(connection, i) for i in ids]
    return stored if all(s.get("status") in ("completed", "failed") for s in stored) else None


def _outage(kind: str, server) -> None:
    if kind == "crash":
        server.kill()
        time.sleep(2.0)
        server.restart()
    else:
        # Longer than the broker's heartbeat timeout (10 s): every worker's heartbeat is stale when Redis answers.
        server.process.send_signal(signal.SIGSTOP)
        time.sleep(12.0)
        server.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("backend", ["dramatiq", "celery"])
@pytest.mark.parametrize("kind", ["crash", "pause"])
def test_every_campaign_completes_once_redis_answers_again(launch, own_redis, tmp_path, kind, backend):
    running = launch("queued", profile_file(tmp_path, "outage", 400.0, 0.3), workers=2, redis_url=own_redis.url,
                     backend=backend,
                     env={"OFFPATH_RETRIES": "5", "OFFPATH_RETRY_BACKOFF_S": "1"})
    connection = running.redis()
    ids = _admit(running)
    until(lambda: any(stored_campaign(connection, i).get("status") == "generating" for i in ids), 10, every_s=0.05)
    time.sleep(0.3)
    _outage(kind, own_redis)
    back = time.monotonic()
    ids += _admit(running)  # admitted after the outage too

    try:
        finals = until(lambda: _all_final(connection, ids), 60, every_s=0.2)
    except AssertionError:
        states = {i: stored_campaign(connection, i).get("status") for i in ids}
        raise AssertionError(f"not all final: {states}\n" + "\n".join(log_of(w)[-3000:] for w in running.workers)) from None
    pending = [f for f in finals if f.get("status") != "completed"]
    assert not pending, pending
    for campaign_id in ids:
        executions = connection.hgetall(f"offpath:executions:{campaign_id}")
        assert executions == {b"content": b"1", b"automation": b"1"}, (campaign_id, executions)
    assert time.monotonic() - back < 60
    assert all(w.alive() for w in running.workers), "the workers go on working"


@pytest.mark.parametrize("backend", ["dramatiq", "celery"])
def test_a_chain_whose_next_message_meets_redis_away_continues_once_it_answers(launch, own_redis, tmp_path, backend):
    # The narrowest window of the chaos runs: generation's outcome recorded, then Redis gone before the library sent
    # automation (Dramatiq's pipeline, Celery's chain). The worker stops itself right after the outcome
    # (OFFPATH_HALT_AT), Redis crashes, the worker goes on (its publish of automation fails), Redis comes back:
    # Dramatiq delivers generation again, which finds its outcome recorded, and the pipeline enqueues automation then;
    # Celery's publish waits for Redis (application.py: its retry policy).
    marker = tmp_path / "halted"
    running = launch("queued", profile_file(tmp_path, "quick"), workers=1, redis_url=own_redis.url,
                     backend=backend,
                     env={HALT_ENV: f"recorded,STOP,{marker}"})
    connection = running.redis()
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    until(marker.exists, 15)
    worker = running.workers[0]
    until(lambda: _state(worker.pid) == "T", 5)
    own_redis.kill()
    worker.process.send_signal(signal.SIGCONT)
    time.sleep(3.0)  # the publish of automation meets Redis away, longer than Celery gave it by default (0.6 s)
    own_redis.restart()

    final = until(lambda: stored_campaign(connection, campaign_id).get("status") in ("completed", "failed")
                   and stored_campaign(connection, campaign_id), 30, every_s=0.1)
    assert final["status"] == "completed", final
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
