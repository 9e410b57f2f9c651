"""The queued design's two jobs, chained: automation starts as soon as generation succeeded, every time (no
campaign waits for RQ's registry maintenance), never before, never after a failed generation, and never twice."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.conftest import valid_body
from tests.test_queued import wait_for_status

RATE_PER_S = 15
DURATION_S = 10.0
WORKERS = 12
# Arrivals a few at a time, as concurrent clients send them: generations that finish together are what made RQ's
# workers race for its ready registry (evenly spaced single arrivals at 15/s rarely did on a quiet machine).
ARRIVALS_AT_ONCE = 3


def nearest_rank(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


async def _post_groups(base_url: str, rate_per_s: float, duration_s: float, at_once: int) -> list[str]:
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        started = time.monotonic()
        for group in range(int(rate_per_s * duration_s) // at_once):
            await asyncio.sleep(max(0.0, started + group * at_once / rate_per_s - time.monotonic()))
            answers = await asyncio.gather(*(client.post("/campaigns", json=valid_body(name=f"chained {group}.{i}"))
                                             for i in range(at_once)))
            for answer in answers:
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
    return ids


def drive(base_url: str, rate_per_s: float, duration_s: float, at_once: int = ARRIVALS_AT_ONCE) -> list[str]:
    """POST campaigns at a steady rate, `at_once` together (open model: each group at its intended time)."""
    return asyncio.run(_post_groups(base_url, rate_per_s, duration_s, at_once))


def wait_until_final(client: httpx.Client, ids: list[str], timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    final: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for campaign_id in [i for i in ids if i not in final]:
            campaign = client.get(f"/campaigns/{campaign_id}").json()
            if campaign["status"] in ("completed", "failed"):
                final[campaign_id] = campaign
        if len(final) == len(ids):
            return [final[i] for i in ids]
        time.sleep(0.2)
    raise AssertionError(f"{len(ids) - len(final)} of {len(ids)} campaigns not final after {timeout_s:g} s")


@pytest.mark.timeout(180)
def test_automation_follows_generation_at_once_with_racing_workers(launch, profiles):
    """Issue #17: `none` profile, 12 workers, 15/s. With RQ's dependency registry the workers raced for it and the
    losers left automation to maintenance: P99 4.9 s, max 7.2 s (measured here with arrivals three at a time:
    38 of 150 campaigns over 1 s, P99 9.1 s). Chained by generation itself, no campaign waits."""
    running = launch("queued", profiles["none"], workers=WORKERS)
    ids = drive(running.url, RATE_PER_S, DURATION_S)
    with running.client() as client:
        campaigns = wait_until_final(client, ids)
    assert [c["status"] for c in campaigns] == ["completed"] * len(ids)
    latencies_s = [c["completed_at"] - c["accepted_at"] for c in campaigns]
    p99, worst = nearest_rank(latencies_s, 99), max(latencies_s)
    assert p99 < 0.5 and worst < 1.0, (
        f"accepted -> completed over {len(ids)} campaigns: P50 {nearest_rank(latencies_s, 50) * 1000:.0f} ms, "
        f"P99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    )
    connection = running.redis()
    executions = [connection.hgetall(f"offpath:executions:{i}") for i in ids]
    assert all(e == {b"content": b"1", b"automation": b"1"} for e in executions)


def test_failed_generation_leaves_the_campaign_failed_and_no_automation(launch, profiles):
    broken = launch("queued", profiles["broken"], workers=1)
    with broken.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        campaign = wait_for_status(client, campaign_id, {"completed", "failed"}, timeout_s=60)
    assert campaign["status"] == "failed" and "ProviderError" in campaign["last_error"]
    assert campaign["content_digest"] is None and campaign["follow_ups_scheduled"] is None
    connection = broken.redis()
    assert not connection.exists(f"rq:job:{campaign_id}-automation"), "no automation job was ever created"
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {}
    failed = FailedJobRegistry("campaigns", connection=connection, serializer=JSONSerializer)
    assert f"{campaign_id}-generation" in failed.get_job_ids()


def test_a_redelivered_generation_does_not_run_automation_twice(launch, profiles):
    """A worker that crashed after generation recorded its outcome (and enqueued automation) but before RQ
    recorded the job's success: RQ delivers generation again. It must neither generate again nor chain a second
    automation."""
    running = launch("queued", profiles["quick"], workers=1)
    with running.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        wait_for_status(client, campaign_id, {"completed"})
        connection = running.redis()
        queue = Queue("campaigns", connection=connection, serializer=JSONSerializer)
        generation = Job.fetch(f"{campaign_id}-generation", connection=connection, serializer=JSONSerializer)
        automation = Job.fetch(f"{campaign_id}-automation", connection=connection, serializer=JSONSerializer)
        assert automation.get_status() == JobStatus.FINISHED
        automation_ended_at = automation.ended_at

        queue.enqueue_job(generation)  # RQ's redelivery: the same job, queued again
        deadline = time.monotonic() + 30
        while generation.get_status(refresh=True) != JobStatus.FINISHED or queue.count:
            assert time.monotonic() < deadline, "the redelivered generation job did not finish"
            time.sleep(0.05)
        time.sleep(0.5)  # time enough for a wrongly chained automation job to be picked up
        campaign = client.get(f"/campaigns/{campaign_id}").json()
    assert campaign["status"] == "completed" and campaign["attempts"] == 2
    assert connection.hgetall(f"offpath:executions:{campaign_id}") == {b"content": b"1", b"automation": b"1"}
    automation.refresh()
    assert automation.ended_at == automation_ended_at, "automation ran once"
    assert queue.count == 0
