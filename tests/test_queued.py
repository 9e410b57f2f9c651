"""The queued design: 202 at once, RQ workers do the work, the state tells the client how it went."""

from __future__ import annotations

import json
import time
import zlib

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from tests.conftest import valid_body


@pytest.fixture(scope="module")
def queued(launch, profiles):
    return launch("queued", profiles["quick"], workers=2)


def wait_for_status(client, campaign_id: str, statuses: set[str], timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        campaign = client.get(f"/campaigns/{campaign_id}").json()
        if campaign["status"] in statuses:
            return campaign
        time.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} did not reach {statuses} in {timeout_s} s: {campaign}")


def test_post_returns_202_with_location_and_workers_complete_it(queued):
    with queued.client() as client:
        response = client.post("/campaigns", json=valid_body(follow_ups=4))
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "accepted"
        assert response.headers["location"] == f"/campaigns/{accepted['id']}"
        campaign = wait_for_status(client, accepted["id"], {"completed", "failed"})
    assert campaign["status"] == "completed"
    assert campaign["accepted_at"] <= campaign["started_at"] <= campaign["completed_at"]
    assert campaign["attempts"] == 2
    assert campaign["follow_ups_scheduled"] == 4


def test_state_and_the_generation_job_are_written_together(launch, profiles):
    # No workers: look at exactly what one admission wrote. The automation job does not exist yet: generation
    # enqueues it with its own outcome (tests/test_chaining.py).
    idle = launch("queued", profiles["quick"])
    with idle.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
    connection = idle.redis()
    queue = Queue("campaigns", connection=connection, serializer=JSONSerializer)
    generation = Job.fetch(f"{campaign_id}-generation", connection=connection, serializer=JSONSerializer)
    assert queue.job_ids == [generation.id]
    assert generation.get_status() == JobStatus.QUEUED
    assert not connection.exists(f"rq:job:{campaign_id}-automation")
    assert queue.deferred_job_registry.get_job_ids() == []
    assert generation.args == [campaign_id] and generation.retries_left == 2
    assert connection.hget(f"offpath:campaign:{campaign_id}", "status") == b"accepted"
    payload = zlib.decompress(connection.hget(f"rq:job:{generation.id}", "data"))  # RQ compresses job data
    assert json.loads(payload)  # JSON on the wire, never pickle


def test_idempotent_repeat_does_the_work_once(queued):
    with queued.client() as client:
        first = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "queued-once"}).json()
        wait_for_status(client, first["id"], {"completed"})
        repeat = client.post("/campaigns", json=valid_body(), headers={"Idempotency-Key": "queued-once"})
    assert repeat.status_code == 202
    assert repeat.json() == {"id": first["id"], "status": "completed"}
    executions = queued.redis().hgetall(f"offpath:executions:{first['id']}")
    assert executions == {b"content": b"1", b"automation": b"1"}


def test_failing_job_retries_with_backoff_then_campaign_is_visibly_failed(launch, profiles):
    broken = launch("queued", profiles["broken"], workers=1)
    with broken.client() as client:
        campaign_id = client.post("/campaigns", json=valid_body()).json()["id"]
        campaign = wait_for_status(client, campaign_id, {"completed", "failed"}, timeout_s=60)
    assert campaign["status"] == "failed"
    assert campaign["attempts"] == 3
    assert "ProviderError" in campaign["last_error"]
    # Two backoffs of 1 s, kept as the inline design keeps them: not RQ's scheduler, whose whole-second scores and
    # once-a-second polling made each retry come up to 1 s early or 2 s late (services/queued/retries.py).
    assert 2.0 <= campaign["failed_at"] - campaign["started_at"] < 2.5
    connection = broken.redis()
    failed = FailedJobRegistry("campaigns", connection=connection, serializer=JSONSerializer)
    assert f"{campaign_id}-generation" in failed.get_job_ids()
    assert Job.fetch(f"{campaign_id}-generation", connection=connection,
                     serializer=JSONSerializer).get_status() == JobStatus.FAILED
