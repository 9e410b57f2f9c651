"""No window left: a job whose worker dies (SIGKILL) at any moment of its life runs again within seconds, recovered by
offpath's abandonment watch and not by RQ's own minute-long backstops; a job dequeued when Redis crashes likewise; and a
worker taken for dead that wakes can record nothing (the fence). Each worker stops itself at a named point
(services/queued/halting.py), so the moment is exact, not a matter of timing."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from rq.job import Job
from rq.serializers import JSONSerializer

from services.campaign.schema import CampaignRequest, Status
from services.campaign.steps import FENCED_KEY, StepStore
from services.campaign.store import CampaignStore
from services.queued.halting import HALT_ENV, POINTS
from services.queued.liveness import ABANDONED_AFTER_S, ABANDONED_KEY
from tests.conftest import profile_file, stored_campaign, until, valid_body

RUN_AGAIN_WITHIN_S = 10.0


def _declared(connection: redis.Redis) -> list[dict]:
    return [json.loads(item) for item in connection.lrange(ABANDONED_KEY.format(queue="campaigns"), 0, -1)]


def _started_at(connection: redis.Redis, job_id: str) -> float | None:
    started = Job.fetch(job_id, connection=connection, serializer=JSONSerializer).started_at
    return started.timestamp() if started is not None else None


def _post(running) -> str:
    with running.client() as client:
        return client.post("/campaigns", json=valid_body()).json()["id"]


@pytest.mark.parametrize("point", POINTS)
def test_a_job_whose_worker_is_killed_at_any_point_runs_again_within_seconds(launch, own_redis, tmp_path, point):
    marker = tmp_path / "halted"
    running = launch("queued", profile_file(tmp_path, "windows", 300.0), workers=2, redis_url=own_redis.url,
                     env={HALT_ENV: f"{point},KILL,{marker}"})
    connection = running.redis()
    campaign_id = _post(running)
    job_id = f"{campaign_id}-generation"
    victim = until(lambda: next((m for m in running.workers if not m.alive()), None), 15)
    victim.expect_exit = True
    killed_at = float(marker.read_text())  # written by the worker just before its SIGKILL

    # Ran again: RQ's `started_at` of a delivery after the kill (the one the kill interrupted, if it got that far, is
    # older).
    again = until(lambda: (t := _started_at(connection, job_id)) is not None and t > killed_at and t, 20, every_s=0.05)
    assert again - killed_at <= RUN_AGAIN_WITHIN_S, (point, again - killed_at)
    assert [d["job"] for d in _declared(connection)] == [job_id], "recovered by the watch, not by RQ's backstop"

    final = until(lambda: stored_campaign(connection, campaign_id).get("status") in ("completed", "failed")
                   and stored_campaign(connection, campaign_id), 20)
    assert final["status"] == "completed", final
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
    assert connection.llen("rq:queue:campaigns:intermediate") == 0


def test_a_job_dequeued_when_redis_crashes_runs_again_within_seconds(launch, own_redis, tmp_path):
    # The chaos run's symptom (issue #26): after a Redis crash a job sat in RQ's intermediate queue, dequeued and never
    # started, and its campaign never completed. A crash leaves that state when Redis ran (and logged) a worker's BLMOVE
    # but died before the reply reached it: the worker retries its dequeue, and nobody holds the job. Here the worker
    # that dequeued the job dies right after the BLMOVE, and Redis crashes and restarts from its AOF with it.
    marker = tmp_path / "halted"
    running = launch("queued", profile_file(tmp_path, "windows", 5.0), workers=2, redis_url=own_redis.url,
                     env={HALT_ENV: f"dequeued,KILL,{marker}"})
    connection = running.redis()
    campaign_id = _post(running)
    victim = until(lambda: next((m for m in running.workers if not m.alive()), None), 15)
    victim.expect_exit = True
    own_redis.kill()
    time.sleep(1.0)
    own_redis.restart()
    back_at = time.time()
    assert connection.lrange("rq:queue:campaigns:intermediate", 0, -1) == [f"{campaign_id}-generation".encode()]

    final = until(lambda: stored_campaign(connection, campaign_id).get("status") == "completed"
                   and stored_campaign(connection, campaign_id), 30, every_s=0.05)
    assert float(final["completed_at"]) - back_at <= RUN_AGAIN_WITHIN_S + 1, final
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
    assert [d["what"] for d in _declared(connection)] == ["requeued from RQ's intermediate queue"]


def test_a_worker_taken_for_dead_that_wakes_records_nothing(launch, own_redis, tmp_path):
    # The fence: frozen (SIGSTOP) after its step began, for longer than the watch's threshold, the worker is taken for
    # dead and its job runs again elsewhere. When it wakes and finishes its work, its outcome is refused: the side
    # effect is recorded once, by the delivery that owns the step, and the refusal is on record.
    marker = tmp_path / "halted"
    running = launch("queued", profile_file(tmp_path, "windows", 300.0), workers=2, redis_url=own_redis.url,
                     env={HALT_ENV: f"begun,STOP,{marker}"})
    connection = running.redis()
    campaign_id = _post(running)
    until(marker.exists, 15)
    frozen = until(lambda: next((m for m in running.workers if _state(m.pid) == "T"), None), 5)
    try:
        final = until(lambda: stored_campaign(connection, campaign_id).get("status") == "completed"
                       and stored_campaign(connection, campaign_id), ABANDONED_AFTER_S + 15, every_s=0.05)
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    fenced = until(lambda: connection.lrange(FENCED_KEY, 0, -1), 10, every_s=0.05)

    assert [json.loads(f)["campaign"] for f in fenced] == [campaign_id]
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
    time.sleep(1.5)  # the woken worker's RQ bookkeeping, had it run, would have happened by now
    assert stored_campaign(connection, campaign_id) == final, "the woken worker changed nothing"
    assert frozen.alive(), "the woken worker goes on working"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_of_two_deliveries_of_one_step_only_the_last_begun_records(redis_server):
    # The fence as every backend meets it (services/campaign/steps.py): Celery's and Dramatiq's two copies of one message
    # running at once, or RQ's job run again while its first worker was frozen. Both begin; the later begin owns the
    # step; the earlier one's outcome, and what it would have enqueued with it, is refused and logged.
    async def admit() -> str:
        client = AsyncRedis.from_url(redis_server.url)
        try:
            return (await CampaignStore(client).admit(CampaignRequest.model_validate(valid_body()))).campaign_id
        finally:
            await client.aclose()

    connection = redis.Redis.from_url(redis_server.url)
    connection.delete(FENCED_KEY)
    campaign_id = asyncio.run(admit())
    steps = StepStore(connection)
    first = steps.begin(campaign_id, Status.generating, done="content_digest")
    second = steps.begin(campaign_id, Status.generating, done="content_digest")
    assert first is not None and second is not None and (first.attempt, second.attempt) == (1, 2)

    def chain(pipe, campaign: str) -> None:
        pipe.rpush(f"offpath:test-next:{campaign}", "automation")

    assert not steps.record_outcome(campaign_id, first.attempt, "content", {"content_digest": "a"}, also=chain)
    assert steps.record_outcome(campaign_id, second.attempt, "content", {"content_digest": "b"}, also=chain)
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1"}
    assert connection.hget(f"offpath:campaign:{campaign_id}", "content_digest") == b"b"
    assert connection.lrange(f"offpath:test-next:{campaign_id}", 0, -1) == [b"automation"], "enqueued once, by the owner"
    assert [json.loads(f)["attempt"] for f in connection.lrange(FENCED_KEY, 0, -1)] == [1]
    # A later step's begin takes it over in turn: the generation that lost can no longer finish anything.
    third = steps.begin(campaign_id, Status.automating, done="follow_ups_scheduled")
    assert third is not None
    assert not steps.finish(campaign_id, second.attempt, Status.completed, {"follow_ups_scheduled": 2}, {"automation": 1})
    assert steps.finish(campaign_id, third.attempt, Status.completed, {"follow_ups_scheduled": 2}, {"automation": 1})
    assert stored_campaign(connection, campaign_id)["status"] == "completed"
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
